"""`streamproc demo`: the whole pipeline on embedded defaults, on a fresh machine.

A generated sample video and the project's tiny random model, described on the TPU engine with
the CPU simulator when a runtime and the tiny bmodel are there (else with transformers), events
published to a local MQTT broker (started if none runs) and printed as they arrive.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_DIR = Path.home() / ".cache" / "streamproc" / "demo"
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
    parser.add_argument("--workdir", type=Path, default=DEFAULT_DIR, help="where the sample video and the tiny model go")
    parser.add_argument("--duration", type=float, default=24.0, help="sample video length in seconds")
    parser.add_argument("--backend", choices=["auto", "tpu", "hf"], default="auto",
                        help="auto: the TPU engine on the simulator when available, else transformers")
    parser.add_argument("--broker", default=None, help="HOST:PORT of an MQTT broker (default: 127.0.0.1:1883, "
                        "or a mosquitto the demo starts)")
    parser.set_defaults(func=run, default_verbosity=0)


def run(args) -> int:
    from ..qwen.tiny import make_tiny_model
    from ..samples import write_video

    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"sample-{int(args.duration)}s.mp4"
    if not video.exists():
        write_video(video, duration_s=args.duration, fps=30, width=640, height=480, gop=60)
    model = args.workdir / "tiny-qwen2.5-vl"
    if not (model / "model.safetensors").exists():
        make_tiny_model(model, seed=0, overwrite=True)
    backend = _choose_backend(args.backend, model)
    print(BANNER.format(duration=args.duration, backend=_describe_backend(backend)))
    with _broker(args.broker) as (host, port):
        config = _config(video, backend, host, port)
        printer = _print_events(host, port) if host else None
        try:
            return _run_pipeline(config)
        finally:
            time.sleep(0.5)  # let the last messages arrive before the printer goes
            if printer is not None:
                printer.disconnect()
                printer.loop_stop()


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


def _config(video: Path, backend: dict, host, port):
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
        "service": {"metrics": {"enabled": False}, "stats_interval_s": 3600},
    }
    if host is not None:
        data["sinks"]["mqtt"] = {"host": host, "port": port, "topic_prefix": TOPIC_PREFIX}
        data["sinks"]["outbox"] = {"path": str(Path(tempfile.gettempdir()) / "streamproc-demo-outbox.sqlite")}
    return config_from_data(data)


def _run_pipeline(config) -> int:
    from ..service.lifecycle import run_until_done
    from ..service.pipeline import Pipeline

    return run_until_done(Pipeline(config))


class _broker:
    """Use the given broker or one on 127.0.0.1:1883; else start mosquitto on a free port."""

    def __init__(self, spec):
        self.spec = spec
        self.process = None
        self.folder = None

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
        self.folder = tempfile.TemporaryDirectory(prefix="streamproc-demo-")
        conf = Path(self.folder.name) / "mosquitto.conf"
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
        if self.folder is not None:
            self.folder.cleanup()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _print_events(host: str, port: int):
    """Subscribe to the demo's topics and print what arrives, as a consumer would see it."""
    import paho.mqtt.client as mqtt

    def on_message(client, userdata, message):
        if message.retain:  # kept by the broker from an earlier run, not news of this one
            return
        topic = message.topic[len(TOPIC_PREFIX) + 1 :]
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
            return
        if data.get("type") == "caption":
            seg = data["segment"]
            print(f"  mqtt {topic}: [{seg['start']:.0f}-{seg['end']:.0f} s] {data['text']!r}")
        elif data.get("type") == "alert":
            print(f"  mqtt {topic}: rule {data['rule']} {data['transition']} ({data['reason']})")
        elif data.get("type") == "status":
            print(f"  mqtt {topic}: {data['state']} {data.get('detail', '')}".rstrip())
        sys.stdout.flush()

    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"streamproc-demo-viewer-{int(time.time())}")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(host, port)
    client.subscribe(f"{TOPIC_PREFIX}/#", qos=1)
    client.loop_start()
    subscribed.wait(5)  # so this run's messages come live, not as retained ones
    return client
