"""A new user's first hour: shipped configs work as shipped, sizes come from the model, errors
teach (missing extra, no sinks, values that do not fit), doctor is quick and checks the broker
with a real CONNECT, the runtime command, bench ingest on a given clip, caption's progress plan."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from streamproc.backends.geometry import ModelGeometry, fit_config, fit_to_model
from streamproc.config import config_from_data, load_config
from streamproc.errors import ConfigError
from streamproc.samples import write_video
from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason
from tests.support.prerequisites import unavailable
from tests.support.segments import stand_in_capabilities

pytestmark = [pytest.mark.integration, pytest.mark.cpu_bound]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SECRETS = {"CAM_PASSWORD": "cam-secret", "MQTT_PASSWORD": "mqtt-secret", "STREAMPROC_API_KEY": "site-api-key-123"}

# What the shipped configs are written for: the seed's 3B bmodel (2K, --max_pixels 672,896) and
# the Qwen2.5-VL-3B-Instruct checkpoint (its preprocessor_config and 128K positions).
SEED_BMODEL = ModelGeometry("qwen2.5-vl-3b.bmodel", 2048, 2048, 2048, 3136, 672 * 896, 3136, 672 * 896, False)
QWEN_3B = ModelGeometry("Qwen/Qwen2.5-VL-3B-Instruct", None, 128000, None, 3136, 12845056, 3136, 12845056, True)


def streamproc(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "streamproc", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=REPO)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamproc: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def demo_home(tmp_path, tiny_model_dir, monkeypatch):
    """A HOME with what `make demo` writes to ~/.cache/streamproc/demo (same names, same video)."""
    import shutil

    home = tmp_path / "home"
    demo = home / ".cache" / "streamproc" / "demo"
    demo.mkdir(parents=True)
    write_video(demo / "sample-24s.mp4", duration_s=24.0, fps=30, width=640, height=480, gop=60)
    shutil.copytree(tiny_model_dir, demo / "tiny-qwen2.5-vl")
    monkeypatch.setenv("HOME", str(home))
    return home


# -- item 3: every shipped file works as shipped ---------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_fits_its_model(path, demo_home, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = load_config(path)
    from streamproc.config.checks import require_a_sink

    require_a_sink(config)
    if path.name == "demo.yaml":  # its model is there: the real rule on the real files
        fitted, geometry = fit_to_model(config)
        assert Path(config.sources[0].path).is_file(), "demo.yaml names a file the demo does not write"
    else:
        geometry = SEED_BMODEL if config.backend.type == "tpu" else QWEN_3B
        fitted = fit_config(config, geometry)
    assert fitted.sampling.video_pixels <= geometry.video_max_pixels
    assert fitted.segmenting.seq_length <= (geometry.context_limit or 10**9)


@pytest.mark.slow
def test_demo_config_runs_end_to_end_on_what_the_demo_made(demo_home, tmp_path):
    pytest.importorskip("torch")
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    with Mosquitto(tmp_path) as broker:
        proc = streamproc("run", "configs/demo.yaml", timeout=600, env={
            "HOME": str(demo_home), "MQTT_PORT": str(broker.port), "STREAMPROC_DEMO_OUTBOX": str(tmp_path / "o.sqlite"),
        })
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    captions = [line for line in proc.stdout.splitlines() if "sample" in line]
    assert captions, proc.stdout[-2000:]


# -- item 1: sizes from the model, misfits refused before weights load ----------------------------


def test_caption_refuses_a_size_that_does_not_fit_before_loading_weights(tiny_model_dir, make_video, monkeypatch, capsys):
    from streamproc import cli
    from streamproc.backends import base

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were loaded before the settings were checked")

    monkeypatch.setattr(base, "create_backend", no_loading)
    clip = make_video(duration_s=2, fps=5, width=320, height=240)
    started = time.perf_counter()
    rc = cli.main(["caption", str(clip), "--model", str(tiny_model_dir), "--max-pixels", "224x448", "--out", "/nonexistent"])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "sampling.max_pixels (--max-pixels) 100352 (224x448)" in err and "allowed: 3137..25088" in err, err
    print(f"refused in {seconds:.2f} s")


def test_the_service_refuses_a_size_that_does_not_fit_before_loading_weights(tiny_model_dir):
    from streamproc.app import App

    config = config_from_data({
        "sources": [{"name": "a", "path": "/nonexistent.mp4"}],
        "backend": {"type": "hf", "model": str(tiny_model_dir)},
        "segmenting": {"seq_length": 8192},
        "sinks": {"stdout": {"enabled": True}},
    })

    def no_loading():
        raise AssertionError("weights were loaded before the settings were checked")

    pipeline = App(config, backend_factory=no_loading, serve_http=False)
    with pytest.raises(ConfigError, match=r"segmenting.seq_length \(--seq-length\) 8192: .* allowed: 64..4096"):
        pipeline.start()


# -- item 4: errors that teach ---------------------------------------------------------------------


def test_missing_optional_dependency_is_one_line_naming_the_extra(tiny_model_dir, make_video):
    clip = make_video(duration_s=2, fps=5, width=320, height=240)
    code = ("import sys; sys.modules['torch'] = None; from streamproc.cli import main; "
            f"sys.exit(main(['caption', {str(clip)!r}, '--model', {str(tiny_model_dir)!r}, '--out', '/tmp/x']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "pip install 'streamproc[hf]'" in one_error_line(proc)


def test_a_config_with_no_sinks_is_refused_listing_the_sinks(tiny_model_dir, tmp_path):
    path = tmp_path / "nosinks.yaml"
    path.write_text(f"sources: [{{name: a, path: /x.mp4}}]\nbackend: {{type: hf, model: {tiny_model_dir}}}\n")
    proc = streamproc("run", str(path), timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)
    for sink in ("sinks.mqtt", "sinks.files", "sinks.stdout"):
        assert sink in line


def test_doctor_loads_nothing_checks_what_the_config_uses_and_connects_to_the_broker(tmp_path, tiny_model_dir):
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    code = ("import sys, time; from streamproc.cli import main; t = time.perf_counter(); rc = main(sys.argv[1:]); "
            "print('SECONDS', round(time.perf_counter() - t, 2)); "
            "print('LOADED', [m for m in ('torch', 'transformers', 'streamproc._native') if m in sys.modules]); sys.exit(rc)")
    with Mosquitto(tmp_path, users={"streamproc": "right-pw"}) as broker:
        def doctor(password: str) -> subprocess.CompletedProcess:
            path = tmp_path / f"doctor-{len(password)}.yaml"
            path.write_text(
                "sources: []\n"
                f"backend: {{type: hf, model: {tiny_model_dir}}}\n"
                f"sinks: {{mqtt: {{host: 127.0.0.1, port: {broker.port}, username: streamproc, password: {password}}}}}\n"
            )
            return subprocess.run([sys.executable, "-c", code, "doctor", str(path), "--timeout", "5"],
                                  capture_output=True, text=True, timeout=120, cwd=REPO)

        good, bad = doctor("right-pw"), doctor("wrong-pw")
    assert good.returncode == 0, good.stdout
    assert "LOADED []" in good.stdout, good.stdout  # no torch, no engine: it only reads files
    assert "Sophgo runtime" not in good.stdout  # a transformers config does not need it
    assert "ok    model geometry" in good.stdout and "ok    sinks: mqtt" in good.stdout
    broker_line = next(line for line in bad.stdout.splitlines() if line.startswith("FAIL  broker"))
    assert "refused the connection" in broker_line and "username / password" in broker_line
    assert "wrong-pw" not in bad.stdout and bad.returncode == 1
    print(good.stdout.splitlines()[-3])  # the doctor's own time, for the record


def test_doctor_hints_name_commands_an_installed_user_has(tmp_path):
    proc = streamproc("doctor", "--runtime-dir", str(tmp_path), timeout=60,
                      env={"STREAMPROC_BMRT_DIR": str(tmp_path), "LD_LIBRARY_PATH": ""})
    runtime = [line for line in proc.stdout.splitlines() if "Sophgo runtime" in line]
    if runtime and not runtime[0].startswith("ok"):
        assert "streamproc runtime" in runtime[0] and "tools/" not in runtime[0]


def test_runtime_command_lays_out_the_simulator_from_a_wheel(tmp_path):
    wheel = tmp_path / "tpu_mlir-1.30.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("libbmrt.so", "libbmlib.so.0", "libcmodel_bm1684x.so", "libcmodel_bm1688.so"):
            archive.writestr(f"tpu_mlir/lib/{name}", f"contents of {name}")
    dest = tmp_path / "runtime"
    first = streamproc("runtime", "--dest", str(dest), "--wheel", str(wheel), timeout=60)
    assert first.returncode == 0, first.stderr
    for chip in ("bm1684x", "bm1688"):
        assert (dest / chip / "libcmodel.so").read_text() == f"contents of libcmodel_{chip}.so"
        assert os.readlink(dest / chip / "libbmrt.so.1.0") == "libbmrt.so"
    assert f"STREAMPROC_BMRT_DIR={dest / 'bm1684x'}" in first.stdout
    again = streamproc("runtime", "--dest", str(dest), "--wheel", str(tmp_path / "missing.whl"), timeout=60)
    assert again.returncode == 0 and "already has the runtime" in again.stdout
    broken = tmp_path / "broken.whl"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("tpu_mlir/lib/libbmrt.so", "x")
    proc = streamproc("runtime", "--dest", str(tmp_path / "other"), "--wheel", str(broken), timeout=60)
    assert proc.returncode == 5 and "lacks" in one_error_line(proc)


# -- item 5: CLI polish ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["caption", "chat", "doctor", "demo", "runtime", "make-tiny-model"])
def test_every_flag_has_help_and_defaults_are_shown(command):
    from streamproc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert sub.description, f"{command} has no description"
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    text = sub.format_help()
    shown = [a for a in sub._actions if a.option_strings and a.default not in (None, False, [], "==SUPPRESS==")]
    for action in shown:
        assert "default" in (sub.formatter_class("x")._get_help_string(action)).lower(), action.option_strings
    assert "examples:" in text


def test_bench_ingest_describes_and_measures_the_clip_it_was_given(make_video):
    from streamproc.bench import ingest

    clip = make_video(duration_s=3, fps=10, width=320, height=240)
    report = ingest.run(clip, 30.0, 1, ["full"], progress=lambda _: None, generate=False)
    assert abs(report["duration_s"] - 3.0) < 0.2  # the clip's own length, not the 30 s default
    assert ingest.describe_clip(report["info"]).startswith("3.0 s of 320x240 10 fps H264")
    row = next(line for line in ingest.table(report).splitlines() if line.startswith("| full"))
    cpu = float(row.split("|")[3])
    assert float(row.split("|")[5]) == pytest.approx(report["duration_s"] / cpu, rel=0.06)


class _InstantBackend:
    """A seam fake: answers at once, so the test counts segments, not model time."""

    name = "instant"
    model_id = "instant"
    seq_length = None
    capabilities = stand_in_capabilities()

    def __init__(self, builder):
        self.inputs = builder

    def describe(self, inputs, params):
        from streamproc.backends.base import Result

        return Result("ok", inputs.total_tokens, inputs.visual_tokens, 1, "instant", token_ids=(1,))

    def close(self):
        pass


@pytest.mark.parametrize("seconds, overlap", [(5, 0), (37, 0), (37, 2)])
def test_caption_progress_total_is_the_segments_the_file_is_cut_into(seconds, overlap, make_video, tiny_builder, tmp_path):
    from streamproc.cli.caption import planned_segments
    from streamproc.batch.captioner import BatchCaptioner

    clip = make_video(duration_s=seconds, fps=5, width=640, height=360)
    config = config_from_data({"backend": {"type": "hf", "model": "x"},
                               "segmenting": {"seq_length": 256, "max_duration_s": 10, "overlap_s": overlap}})
    config = fit_config(config, ModelGeometry("tiny", None, 4096, None, 3136, 25088, 784, 25088, True))
    captioner = BatchCaptioner(config, _InstantBackend(tiny_builder), tmp_path / "out", ["jsonl"])
    planned = planned_segments(captioner, clip)
    [outcome] = captioner.run([clip])
    assert outcome.status == "done", outcome.error
    assert planned == outcome.segments and planned >= seconds // 10


# -- must show: caption works without sizing flags on common clip sizes and on an image ------------

SIZES = [(320, 240), (1280, 720), (1920, 1080), (720, 1280)]  # width x height; the last is portrait


@pytest.fixture(scope="module")
def first_hour_media(tmp_path_factory) -> list[Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("first-hour-media")
    paths = [write_video(folder / f"clip-{w}x{h}.mp4", duration_s=2.0, fps=5, width=w, height=h) for w, h in SIZES]
    picture = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(picture)
    return paths + [picture]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "tpu"])
def test_caption_without_sizing_flags_on_common_sizes_and_an_image(backend, first_hour_media, tiny_model_dir, tmp_path):
    env = {}
    if backend == "hf":
        pytest.importorskip("torch")
        model = ["--model", str(tiny_model_dir)]
    else:
        runtime = os.environ.get("STREAMPROC_BMRT_DIR", "")
        if not runtime or not any(Path(runtime).glob("libbmrt.so*")):
            unavailable("STREAMPROC_BMRT_DIR does not point at the Sophgo runtime (streamproc runtime)")
        bmodel = REPO / "tests" / "fixtures" / "bmodels" / "dynamic_bf16_s256.bmodel"
        model = ["--bmodel", str(bmodel), "--tokenizer", str(tiny_model_dir)]
        env["STREAMPROC_BMRT_DIR"] = runtime
    out = tmp_path / "captions"
    # --max-new-tokens only keeps the simulator quick; sizes are the model's own.
    proc = streamproc("caption", *map(str, first_hour_media), *model, "--out", str(out), "--max-new-tokens", "1",
                      env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(first_hour_media)} captioned" in proc.stdout
    for path in first_hour_media:
        records = [json.loads(line) for line in (out / f"{path.stem}.jsonl").read_text().splitlines()]
        captions = [r for r in records if r.get("type") == "caption"]
        assert captions, f"{path.name}: no caption"
        if path.suffix == ".png":
            assert captions[0]["visual_tokens"] > 0 and captions[0]["size"] == [400, 300]
