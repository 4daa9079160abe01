"""`streamproc demo`: the whole pipeline on embedded defaults, on a fresh machine.

A generated sample video and the project's tiny random model, described on the TPU engine with
the CPU simulator when a runtime and the tiny bmodel are there (else with transformers), events
published to a local MQTT broker (started if none runs) and printed as they arrive.

Several demos may run at once, by one user or several: the sample video and the tiny model are
shared in the user's cache (written under a temporary name and renamed, so a second demo never
reads half a file), and everything of one run (outbox, attachments, the broker's config) lives in
a private folder removed at the end. Each run has its own MQTT client id and topic prefix
(`streamproc-demo/<pid>`), whose retained topics it clears when it ends.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_BMODEL = REPO / "tests" / "fixtures" / "bmodels" / "dynamic_bf16_s256.bmodel"
TOPIC_PREFIX = "streamproc-demo"

BANNER = """\
streamproc demo: a {duration:.0f} s sample video -> 1 fps frames -> segments -> {backend} -> events over MQTT.
NOTE: the tiny model has random weights, so its words are random. For real descriptions point
the config at a real model, e.g.
  backend: {{type: hf, model: Qwen/Qwen2.5-VL-3B-Instruct}}
  backend: {{type: tpu, bmodel: qwen2.5-vl-3b.bmodel, tokenizer: Qwen2.5-VL-3B-Instruct/}}
(configs/demo.yaml spells this demo out; configs/camera.yaml is a camera deployment.)
"""


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline end to end on a generated sample video and the tiny model",
        description="Writes a sample video (sample-<duration>s.mp4) and the tiny random model to --workdir, "
        "then runs the whole pipeline on them and prints the MQTT events. configs/demo.yaml is the same run "
        "as a config file.",
        formatter_class=HelpFormatter,
        epilog="examples:\n  streamproc demo\n  streamproc demo --backend hf --duration 60",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the sample video and the tiny model go "
                        "(default: $XDG_CACHE_HOME/streamproc/demo, else ~/.cache/streamproc/demo)")
    parser.add_argument("--duration", type=float, default=24.0, help="sample video length in seconds")
    parser.add_argument("--backend", choices=["auto", "tpu", "hf"], default="auto",
                        help="auto: the TPU engine on the simulator when available, else transformers")
    parser.add_argument("--broker", default=None, help="HOST:PORT of an MQTT broker (default: 127.0.0.1:1883, "
                        "or a mosquitto the demo starts)")
    parser.set_defaults(func=run, default_verbosity=0)


def run(args) -> int:
    from ..paths import cache_dir, run_folder

    workdir = args.workdir or cache_dir() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    video, model = _sample_files(workdir, args.duration)
    backend = _choose_backend(args.backend, model)
    print(BANNER.format(duration=args.duration, backend=_describe_backend(backend)))
    with run_folder("streamproc-demo") as folder, _broker(args.broker, Path(folder)) as (host, port):
        prefix = f"{TOPIC_PREFIX}/{os.getpid()}"  # this run's own: another demo on the same broker has its own
        config = _config(video, backend, host, port, Path(folder), prefix)
        printer = _Printer(host, port, prefix) if host else None
        try:
            return _run_pipeline(config)
        finally:
            time.sleep(0.5)  # let the last messages arrive before the printer goes
            if printer is not None:
                printer.close(config)


def _sample_files(workdir: Path, duration: float) -> tuple[Path, Path]:
    """The sample video and the tiny model in the shared cache, made once. Each is written under
    a name of this process's own and renamed into place: a demo starting beside this one sees
    either nothing (and makes its own) or the whole file."""
    from ..qwen.tiny import make_tiny_model
    from ..samples import write_video

    video = workdir / f"sample-{int(duration)}s.mp4"
    if not video.exists():
        partial = workdir / f".{video.name}.{os.getpid()}.mp4"
        write_video(partial, duration_s=duration, fps=30, width=640, height=480, gop=60)
        os.replace(partial, video)
    model = workdir / "tiny-qwen2.5-vl"
    if not (model / "model.safetensors").exists():
        partial_model = workdir / f".{model.name}.{os.getpid()}"
        make_tiny_model(partial_model, seed=0, overwrite=True)
        try:
            os.replace(partial_model, model)  # a folder: refused when another demo's is already there
        except OSError:
            if not (model / "model.safetensors").exists():
                shutil.rmtree(model, ignore_errors=True)  # a left-over without weights (an older demo killed)
                os.replace(partial_model, model)
        shutil.rmtree(partial_model, ignore_errors=True)
    return video, model


def _choose_backend(choice: str, model: Path) -> dict:
    hf = {"type": "hf", "model": str(model), "device": "cpu"}
    if choice == "hf":
        return hf
    tpu = {"type": "tpu", "bmodel": str(TINY_BMODEL), "tokenizer": str(model)}
    if not TINY_BMODEL.exists():
        if choice == "tpu":
            from ..errors import UsageError

            raise UsageError(f"the tiny bmodel is not at {TINY_BMODEL} (it comes with a source checkout)")
        return hf
    from .common import quiet_simulator

    try:
        from ..backends.tpu import load_runtime

        load_runtime("")
    except Exception:
        if choice == "tpu":
            raise
        return _fallback(hf)
    quiet_simulator(None)
    return tpu


def _fallback(hf: dict) -> dict:
    try:
        import transformers  # noqa: F401
    except ImportError:
        from ..errors import UsageError

        raise UsageError("neither the Sophgo runtime (STREAMPROC_BMRT_DIR) nor transformers is available; "
                         "run `make demo`, which installs both") from None
    return hf


def _describe_backend(backend: dict) -> str:
    if backend["type"] == "tpu":
        from ..backends.tpu import runtime_path

        return f"the native TPU engine ({Path(backend['bmodel']).name} on {runtime_path()})"
    return "transformers on the CPU"


def _config(video: Path, backend: dict, host, port, folder: Path, prefix: str):
    from ..config import config_from_data

    data = {
        "sources": [{"name": "sample", "path": str(video)}],
        # The tiny model takes 112x224 pixels (its bmodel's ViT too) and its bmodel 256 tokens.
        "sampling": {"max_pixels": "112x224", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256},
        "backend": backend,
        "generation": {"max_new_tokens": 12},
        "rules": [{"name": "busy-scene", "keywords": ["person", "people", "car"], "raise_after": 1, "clear_after": 1}],
        "sinks": {"stdout": {"enabled": host is None}},
        "service": {"stats_interval_s": 3600},
        "http": {"enabled": False},
    }
    data["sinks"]["attachments"] = {"dir": str(folder / "attachments")}
    if host is not None:
        data["sinks"]["mqtt"] = {"host": host, "port": port, "topic_prefix": prefix,
                                 "client_id": f"streamproc-demo-{os.getpid()}"}
        data["sinks"]["outbox"] = {"path": str(folder / "outbox.sqlite"), "synchronous": "normal"}
    return config_from_data(data)


def _run_pipeline(config) -> int:
    from ..app import App
    from ..app.lifecycle import run_until_done

    return run_until_done(App(config))


class _broker:
    """Use the given broker or one on 127.0.0.1:1883; else start mosquitto on a free port, its
    config in this run's folder."""

    def __init__(self, spec, folder: Path):
        self.spec = spec
        self.process = None
        self.folder = folder

    def __enter__(self):
        if self.spec:
            host, _, port = self.spec.rpartition(":")
            return host or "127.0.0.1", int(port)
        if _listening("127.0.0.1", 1883):
            return "127.0.0.1", 1883
        mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if mosquitto is None:
            print("(no MQTT broker found and mosquitto is not installed: events go to stdout only)")
            return None, None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        conf = self.folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not _listening("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"(started a mosquitto broker for the demo on 127.0.0.1:{port})")
        return "127.0.0.1", port

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Printer:
    """Subscribes to this run's topics and prints what arrives, as a consumer would see it; at
    the end clears the run's retained topics, so a shared broker keeps nothing of the demo."""

    def __init__(self, host: str, port: int, prefix: str):
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"streamproc-demo-viewer-{os.getpid()}")
        self.client.on_message = lambda client, userdata, message: self._print(message)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()
        subscribed.wait(5)  # so this run's messages come live, not as retained ones

    def close(self, config=None) -> None:
        from ..sinks.retained import retained_topics
        from ..sinks.topics import Topics

        rules = config.rules if config is not None else []
        for topic in sorted(retained_topics(Topics(self.prefix), ["sample"], rules, switches=True, snapshots=True)):
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def _print(self, message) -> None:
        if message.retain or not message.payload:  # kept from before, or a clear: not news of this run
            return
        topic = message.topic[len(self.prefix) + 1 :]
        payload = bytes(message.payload)
        try:
            data = json.loads(payload)
        except ValueError:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:  # a snapshot image: name it, do not print its bytes
                kind = "JPEG" if payload[:3] == b"\xff\xd8\xff" else "binary"
                text = f"({kind}, {len(payload)} bytes)"
            print(f"  mqtt {topic}: {text}")
            return
        if not isinstance(data, dict):
            print(f"  mqtt {topic}: {data}")
        elif data.get("type") == "caption":
            seg = data["segment"]
            print(f"  mqtt {topic}: [{seg['start']:.0f}-{seg['end']:.0f} s] {data['text']!r}")
        elif data.get("type") == "alert":
            print(f"  mqtt {topic}: rule {data['rule']} {data['transition']} ({data['reason']})")
        elif data.get("type") == "status":
            print(f"  mqtt {topic}: {data['state']} {data.get('detail', '')}".rstrip())
        sys.stdout.flush()
