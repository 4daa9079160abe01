"""Bad inputs, one per case: config, sources, models, sinks, secrets, disk, ports.

Each case runs `streamproc` as a user would (a subprocess; the model is the tiny one behind a
torch-free test backend, tests/support/fast_backend.py, unless the case is about the model) and
asserts what the user sees:
- the exit code (non-zero where the run cannot proceed; README: 2 config, 3 source, 4 model,
  5 backend, 6 sink);
- exactly one error line (`streamproc: error: ...` or a log line at ERROR), saying what is wrong;
- no traceback;
- no password in stdout, stderr, the MQTT payloads or the outbox (passwords are made of every
  URL-special character: tests/support/cli_runs.py);
- a good source next to a bad one is described all the same.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.support.cli_runs import (
    Outcome,
    assert_no_secret,
    fast_config,
    outbox_bytes,
    password,
    run_cli,
    write_yaml,
)
from tests.support.prerequisites import unavailable

GOOD = "good"


@dataclass
class Ctx:
    tmp: Path
    model: Path
    video: Path
    broker: object = None  # a Mosquitto with users, for the MQTT cases
    mqtt_password: str = ""


@dataclass
class Run:
    args: list
    secrets: list = field(default_factory=list)
    fast: bool = True
    env: dict = field(default_factory=dict)
    outbox: Optional[Path] = None
    good_source: bool = False  # a good file source runs beside the bad input
    cleanup: Optional[Callable[[], None]] = None


@dataclass
class Case:
    id: str
    make: Callable[[Ctx], Run]
    rc: int
    says: str  # a piece of the one error line (lower case)
    needs_broker: bool = False
    error_lines: int = 1  # 0: the run goes on; `says` is then in a warning


# -- building blocks ---------------------------------------------------------------------------


def good_source(ctx: Ctx) -> dict:
    return {"name": GOOD, "path": str(ctx.video)}


def run_config(ctx: Ctx, sources: list, *, with_good: bool = False, secrets=(), outbox=None, env=None,
               **sections) -> Run:
    all_sources = [*sources, good_source(ctx)] if with_good else list(sources)
    path = write_yaml(ctx.tmp / "service.yaml", fast_config(ctx.model, all_sources, **sections))
    return Run(["run", str(path)], list(secrets), outbox=outbox, good_source=with_good, env=env or {})


def raw_config(ctx: Ctx, text: str) -> Run:
    path = ctx.tmp / "service.yaml"
    path.write_text(text)
    return Run(["run", str(path)])


def edited(ctx: Ctx, **sections) -> Run:
    return run_config(ctx, [good_source(ctx)], **sections)


def live(name: str, url: str, **extra) -> dict:
    return {"name": name, "url": url, "open_timeout_s": 3.0, "read_timeout_s": 3.0,
            "reconnect": {"initial_delay_s": 0.1, "max_attempts": 1}, **extra}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_of(ctx: Ctx, name: str, data: bytes) -> str:
    path = ctx.tmp / name
    path.write_bytes(data)
    return str(path)


def png(ctx: Ctx) -> str:
    import av
    import numpy as np

    path = ctx.tmp / "still.png"
    frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def jpeg(ctx: Ctx) -> str:
    from streamproc.media.jpeg import encode_jpeg
    import numpy as np

    path = ctx.tmp / "still.jpg"
    path.write_bytes(encode_jpeg(np.zeros((32, 32, 3), np.uint8)))
    return str(path)


def truncated(ctx: Ctx) -> str:
    return file_of(ctx, "cut.mp4", ctx.video.read_bytes()[:2000])


def source_case(id_: str, source: Callable[[Ctx], dict], says: str, *, secret: Optional[str] = None) -> list[Case]:
    """A bad source alone (the run cannot proceed: 3), and beside a good one (exit 0, good described)."""
    def alone(ctx: Ctx) -> Run:
        return run_config(ctx, [source(ctx)], secrets=[secret] if secret else [])

    def beside(ctx: Ctx) -> Run:
        return run_config(ctx, [source(ctx)], with_good=True, secrets=[secret] if secret else [])

    return [Case(f"source-{id_}", alone, 3, says), Case(f"source-{id_}-beside-good", beside, 0, says)]


def refused_source_case(id_: str, source: Callable[[Ctx], dict], says: str, *, secret: Optional[str] = None) -> list[Case]:
    """A source the config check refuses: exit 2 at once, before any model is touched, alone and
    beside a good one (a config mistake is not a camera that is down)."""
    def alone(ctx: Ctx) -> Run:
        return run_config(ctx, [source(ctx)], secrets=[secret] if secret else [])

    def beside(ctx: Ctx) -> Run:
        run = run_config(ctx, [source(ctx)], with_good=True, secrets=[secret] if secret else [])
        run.good_source = False  # nothing runs
        return run

    return [Case(f"source-{id_}", alone, 2, says), Case(f"source-{id_}-beside-good", beside, 2, says)]


def before_the_model(ctx: Ctx) -> Run:
    """A bad scheme with a model folder that does not exist: the config error comes first (2, not
    4), so the check ran before anything read the model."""
    sources = [{"name": "bad", "url": f"foo://u:{password(6)}@h/x"}, good_source(ctx)]
    path = write_yaml(ctx.tmp / "s.yaml", fast_config(ctx.tmp / "no-model", sources))
    return Run(["run", str(path)], [password(6)], fast=False)


# -- the cases ---------------------------------------------------------------------------------

CONFIG_CASES = [
    Case("config-missing-file", lambda c: Run(["run", str(c.tmp / "nope.yaml")]), 2, "nope.yaml"),
    Case("config-is-a-directory", lambda c: Run(["run", str(c.tmp)]), 2, ""),
    Case("config-empty", lambda c: raw_config(c, ""), 2, ""),
    Case("config-yaml-syntax", lambda c: raw_config(c, "sources: [\n  - {name: a\n"), 2, "yaml:2"),
    Case("config-unknown-key", lambda c: edited(c, sampling={"fsp": 2}), 2, "fsp"),
    Case("config-wrong-type", lambda c: edited(c, sampling={"fps": "fast"}), 2, "fps"),
    Case("config-no-sources", lambda c: run_config(c, []), 2, "source"),
    Case("config-url-and-path", lambda c: run_config(c, [{"name": "x", "url": "rtsp://h/x", "path": "/a.mp4"}]), 2, "url"),
    Case("config-bad-source-name", lambda c: run_config(c, [{"name": "front door", "path": str(c.video)}]), 2, "name"),
    Case("config-negative-queue", lambda c: edited(c, service={"queue_size": -1}), 2, "queue_size"),
    Case("config-max-attempts-zero", lambda c: run_config(c, [live("cam", "rtsp://127.0.0.1:1/x", reconnect={"max_attempts": 0})]), 2, "max_attempts"),
    Case("config-unknown-backend", lambda c: edited(c, backend={"type": "cuda9000"}), 2, "cuda9000"),
    Case("config-bad-pixels", lambda c: edited(c, sampling={"max_pixels": "lots"}), 2, "max_pixels"),
    Case("config-seq-length-tiny", lambda c: edited(c, segmenting={"seq_length": 8}), 2, "seq_length"),
    Case("config-no-sink", lambda c: edited(c, sinks={"stdout": {"enabled": False}}), 2, "sink"),
    Case("config-missing-env", lambda c: run_config(c, [live("cam", "rtsp://viewer:${SP_TEST_UNSET_PW}@127.0.0.1:1/x")]), 2, "sp_test_unset_pw"),
    Case("config-fps-too-high", lambda c: edited(c, sampling={"fps": 300}), 2, "fps"),
    Case("config-rule-unknown-field", lambda c: edited(c, rules=[{"name": "r", "question": "Is it?", "bogus": 1}]), 2, "bogus"),
    Case("config-checked-before-the-model", before_the_model, 2, "sources[0].url: unknown url scheme 'foo://'"),
    Case("config-mqtt-host-with-scheme", lambda c: sink_run(c, mqtt(c, host="mqtt://127.0.0.1")), 2, "sinks.mqtt.host"),
    Case("config-mqtt-host-with-port", lambda c: sink_run(c, mqtt(c, host="127.0.0.1:1883")), 2, "sinks.mqtt.port"),
    Case("config-webhook-url-bad-port", lambda c: edited(c, sinks={"webhook": {"url": "http://127.0.0.1:99999/x"}}), 2,
         "sinks.webhook.url"),
    Case("config-store-in-a-file", lambda c: edited(c, store={"enabled": True, "path": str(a_file(c) / "s.sqlite")}), 2,
         "store.path"),
    Case("config-attachments-dir-unwritable", lambda c: edited(c, sinks={"attachments": {"dir": "/proc/sp-test"}}), 2,
         "sinks.attachments.dir"),
]

SOURCE_CASES = [
    *refused_source_case("missing-file", lambda c: {"name": "bad", "path": str(c.tmp / "gone.mp4")},
                         "gone.mp4: no such file"),
    *refused_source_case("directory", lambda c: {"name": "bad", "path": str(c.tmp)}, "is a folder, not a video file"),
    *source_case("empty-file", lambda c: {"name": "bad", "path": file_of(c, "empty.mp4", b"")}, "empty"),
    *source_case("garbage", lambda c: {"name": "bad", "path": file_of(c, "junk.mp4", b"not a video " * 500)}, "not a readable video"),
    *source_case("png", lambda c: {"name": "bad", "path": png(c)}, "still image"),
    *source_case("jpeg", lambda c: {"name": "bad", "path": jpeg(c)}, "still image"),
    *source_case("truncated", lambda c: {"name": "bad", "path": truncated(c)}, "bad:"),
    *refused_source_case("typo-scheme", lambda c: {"name": "bad", "url": f"rstp://admin:{password(1)}@127.0.0.1/s"},
                         "unknown url scheme 'rstp://' (did you mean rtsp://?", secret=password(1)),
    *refused_source_case("unknown-scheme", lambda c: {"name": "bad", "url": f"foo://u:{password(2)}@h/x"},
                         "unknown url scheme 'foo://'", secret=password(2)),
    *source_case("rtsp-closed-port", lambda c: live("bad", f"rtsp://admin:{password(3)}@127.0.0.1:{closed_port()}/s"),
                 "gave up after 1 attempt", secret=password(3)),
    *source_case("rtsp-unresolvable", lambda c: live("bad", f"rtsp://admin:{password(4)}@no-such-camera.invalid/s"),
                 "cannot resolve the host name 'no-such-camera.invalid'", secret=password(4)),
    *source_case("http-closed-port", lambda c: live("bad", f"http://u:{password(5)}@127.0.0.1:{closed_port()}/v.mp4"),
                 "gave up after 1 attempt", secret=password(5)),
]

MODEL_CASES = [
    Case("model-prompt-too-long", lambda c: edited(c, prompt={"user": "describe " * 400}), 4, "the prompt does not fit"),
    Case("model-duration-too-short", lambda c: edited(c, segmenting={"max_duration_s": 0.5}), 4, "max_duration_s"),
    Case("model-bmodel-missing", lambda c: Run(["run", str(write_yaml(c.tmp / "s.yaml", fast_config(
        c.model, [good_source(c)], backend={"type": "tpu", "bmodel": str(c.tmp / "none.bmodel"), "tokenizer": str(c.model)})))],
        fast=False), 4, "none.bmodel"),
    Case("model-bmodel-garbage", lambda c: Run(["run", str(write_yaml(c.tmp / "s.yaml", fast_config(
        c.model, [good_source(c)], backend={"type": "tpu", "bmodel": file_of(c, "bad.bmodel", b"\0" * 4096), "tokenizer": str(c.model)})))],
        fast=False), 4, "bad.bmodel"),
    Case("model-hf-folder-missing", lambda c: Run(["run", str(write_yaml(c.tmp / "s.yaml", fast_config(
        c.tmp / "no-model", [good_source(c)])))], fast=False), 4, "no-model"),
    Case("caption-model-missing", lambda c: Run(["caption", str(c.video), "--model", str(c.tmp / "no-model"),
                                                  "--out", str(c.tmp / "out")], fast=False), 4, "no-model"),
]


def mqtt(ctx: Ctx, **overrides) -> dict:
    section = {"host": "127.0.0.1", "port": closed_port(), "client_id": f"bad-{ctx.tmp.name}"[:60],
               "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 0.5, "connect_timeout_s": 2}
    section.update(overrides)
    return section


def sink_run(ctx: Ctx, mqtt_section: dict, outbox: Optional[dict] = None, secrets=(), **sections) -> Run:
    outbox = {"path": str(ctx.tmp / "outbox.sqlite"), "synchronous": "normal", **(outbox or {})}
    run = run_config(ctx, [good_source(ctx)], sinks={"mqtt": mqtt_section, "outbox": outbox}, secrets=secrets, **sections)
    run.outbox = Path(outbox["path"])
    return run


def a_file(ctx: Ctx) -> Path:
    path = ctx.tmp / "plain-file"
    path.write_text("x")
    return path


SINK_CASES = [
    # what the config names but this machine cannot give: refused by the config check (exit 2)
    Case("sink-outbox-parent-is-a-file", lambda c: sink_run(c, mqtt(c), {"path": str(a_file(c) / "sub" / "o.sqlite")}), 2, "sinks.outbox.path"),
    Case("sink-outbox-in-proc", lambda c: sink_run(c, mqtt(c), {"path": "/proc/streamproc-test/o.sqlite"}), 2, "sinks.outbox.path"),
    Case("sink-outbox-is-a-directory", lambda c: sink_run(c, mqtt(c), {"path": str(c.tmp)}), 2, "is a folder, not a file"),
    Case("sink-tls-ca-missing", lambda c: sink_run(c, mqtt(c, tls={"enabled": True, "ca_file": str(c.tmp / "ca.pem")})), 2, "sinks.mqtt.tls.ca_file"),
    Case("sink-tls-cert-missing", lambda c: sink_run(c, mqtt(c, tls={"enabled": True, "cert_file": str(c.tmp / "c.pem"), "key_file": str(c.tmp / "k.pem")})), 2, "cert_file"),
    Case("sink-tls-ca-not-pem", lambda c: sink_run(c, mqtt(c, tls={"enabled": True, "ca_file": str(a_file(c))})), 6, "tls"),
    Case("sink-files-dir-is-a-file", lambda c: edited(c, sinks={"files": {"dir": str(a_file(c))}}), 2, "plain-file is a file"),
]


def secret_url_case(i: int) -> Case:
    def make(ctx: Ctx) -> Run:
        secret = password(10 + i)
        run = sink_run(ctx, broker_section(ctx), secrets=[secret, ctx.mqtt_password])
        config = fast_config(ctx.model, [live("cam", f"rtsp://admin:{secret}@127.0.0.1:{closed_port()}/s"), good_source(ctx)],
                             sinks={"mqtt": broker_section(ctx), "outbox": {"path": str(run.outbox), "synchronous": "normal"}})
        run.args = ["run", str(write_yaml(ctx.tmp / "service.yaml", config))]
        run.good_source = True
        return run

    return Case(f"secret-camera-password-{i}", make, 0, "gave up after 1 attempt", needs_broker=True)


def broker_section(ctx: Ctx, **overrides) -> dict:
    return mqtt(ctx, **{"port": ctx.broker.port, "username": "streamproc", "password": ctx.mqtt_password, **overrides})


def wrong_mqtt_password(ctx: Ctx) -> Run:
    wrong = password(40)
    return sink_run(ctx, broker_section(ctx, password=wrong), secrets=[wrong, ctx.mqtt_password])


def env_secret(ctx: Ctx) -> Run:
    secret = password(41)
    run = run_config(ctx, [live("cam", f"rtsp://admin:${{SP_TEST_CAM_PW}}@127.0.0.1:{closed_port()}/s")], with_good=True,
                     secrets=[secret], env={"SP_TEST_CAM_PW": secret})
    return run


def json_logs_secret(ctx: Ctx) -> Run:
    run = source_case("x", lambda c: live("bad", f"rtsp://admin:{password(42)}@127.0.0.1:{closed_port()}/s"), "")[1].make(ctx)
    run.args = ["--log-format", "json", *run.args]
    run.secrets = [password(42)]
    return run


def debug_logs_secret(ctx: Ctx) -> Run:
    run = source_case("x", lambda c: live("bad", f"rtsp://admin:{password(43)}@127.0.0.1:{closed_port()}/s"), "")[1].make(ctx)
    run.args = ["-vv", *run.args]
    run.secrets = [password(43)]
    return run


SECRET_CASES = [
    *[secret_url_case(i) for i in range(6)],
    Case("secret-wrong-mqtt-password", wrong_mqtt_password, 0, "refused the connection", needs_broker=True),
    Case("secret-from-environment", env_secret, 0, "gave up after 1 attempt"),
    Case("secret-json-logs", json_logs_secret, 0, "gave up after 1 attempt"),
    Case("secret-debug-logs", debug_logs_secret, 0, "gave up after 1 attempt"),
    Case("secret-url-given-as-path", lambda c: run_config(
        c, [{"name": "cam", "path": f"rtsp://admin:{password(44)}@127.0.0.1/s"}], secrets=[password(44)]), 2, "url:"),
]


def disk_full(ctx: Ctx) -> Run:
    from tests.integration.test_outbox_disk_full import fill, small_filesystem

    manager = small_filesystem(ctx.tmp / "fs", "1m")
    fs = manager.__enter__()
    run = sink_run(ctx, mqtt(ctx), {"path": str(fs / "outbox.sqlite")})
    # the disk fills during the run: what cannot be written waits in memory, and is lost at the end
    from streamproc.sinks.outbox import Outbox

    Outbox(fs / "outbox.sqlite").close()  # the outbox exists; then the disk fills, but for room
    filler = fill(fs)  # to open it again (its -shm file), not to write
    os.truncate(filler, max(0, filler.stat().st_size - 40 * 1024))
    run.cleanup = lambda: manager.__exit__(None, None, None)
    return run


DISK_CASES = [
    Case("disk-full-outbox", disk_full, 6, "lost"),
    Case("disk-outbox-dir-unwritable", lambda c: sink_run(c, mqtt(c), {"path": "/sys/streamproc/o.sqlite"}), 2, "cannot write in /sys"),
]


def port_in_use(ctx: Ctx) -> Run:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    run = edited(ctx, http={"enabled": True, "host": "127.0.0.1", "port": port})
    run.cleanup = holder.close
    return run


PORT_CASES = [
    Case("port-metrics-in-use", port_in_use, 2, "already in use"),
    Case("port-metrics-foreign-address", lambda c: edited(c, http={"enabled": True, "host": "192.0.2.1", "port": 9,
                                                                   "allow_anonymous": True}), 2, "cannot listen"),
    Case("port-beyond-loopback-without-a-key", lambda c: edited(c, http={"enabled": True, "host": "0.0.0.0"}), 2,
         "http.api_key"),
    Case("port-mqtt-out-of-range", lambda c: sink_run(c, mqtt(c, port=70000)), 2, "port"),
    Case("port-mqtt-closed", lambda c: sink_run(c, mqtt(c)), 0, "cannot connect to the mqtt broker", error_lines=0),
    Case("port-mqtt-unresolvable", lambda c: sink_run(c, mqtt(c, host="no-such-broker.invalid")), 0,
         "cannot resolve the mqtt broker host 'no-such-broker.invalid'", error_lines=0),
]

CASES = CONFIG_CASES + SOURCE_CASES + MODEL_CASES + SINK_CASES + SECRET_CASES + DISK_CASES + PORT_CASES


def test_the_suite_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# -- the runner --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason

    if mosquitto_unavailable_reason():
        yield None, ""
        return
    secret = password(99)
    server = Mosquitto(tmp_path_factory.mktemp("bad-inputs-broker"), users={"streamproc": secret, "watcher": "watch-pw"})
    server.start()
    yield server, secret
    server.kill()


@pytest.fixture(scope="module")
def clip(make_video) -> Path:
    return make_video(duration_s=3.0, fps=5, width=64, height=48, gop=5)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, tiny_model_dir, clip, module_broker):
    broker, mqtt_password = module_broker
    if case.needs_broker and broker is None:
        unavailable("mosquitto is not installed")
    ctx = Ctx(tmp_path, tiny_model_dir, clip, broker, mqtt_password)
    run = case.make(ctx)
    subscriber = None
    try:
        if case.needs_broker:
            from tests.support.mqtt_subscriber import Subscriber

            subscriber = Subscriber(broker.port, ["#"], username="watcher", password="watch-pw").start()
        outcome: Outcome = run_cli(run.args, fast=run.fast, env=run.env)
        if subscriber is not None:
            time.sleep(0.3)
        payloads = b"\n".join(m.payload + m.topic.encode() for m in subscriber.snapshot()) if subscriber else b""
        store = outbox_bytes(run.outbox)
    finally:
        if subscriber is not None:
            subscriber.stop()
        if run.cleanup is not None:
            run.cleanup()

    details = outcome.describe()
    assert outcome.rc == case.rc, details
    assert "Traceback" not in outcome.stderr and "Traceback" not in outcome.stdout, details
    errors = outcome.error_lines
    assert len(errors) == case.error_lines, details
    assert case.says in (errors[0] if errors else outcome.stderr).lower(), details
    assert_no_secret(run.secrets, outcome.stdout, outcome.stderr, payloads, store)
    if run.good_source:
        assert outcome.captions_of(GOOD), details
