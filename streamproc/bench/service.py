"""`streamproc bench service`: what one host can carry, measured as the issue asks.

  streams   streams per CPU core at 1 fps for 1080p30 H.264 (~4 Mbit/s): CPU seconds the whole
            host path spends per second of video (decode, sampling, segmenting, model inputs,
            events), K streams at once through the real Pipeline, the model replaced by an
            instant stand-in (on a TPU the model runs on the TPU, not the CPU)
  latency   event latency from model result to PUBACK on loopback: caption_event + the MQTT
            sink's handle() (outbox append) measured in the caller, append -> PUBACK measured
            by the publisher, against a real mosquitto
  rss       RSS per extra stream: the service process with 1 and with N streams of the clip read
            at camera pace, steady-state RSS compared

Each measurement runs in its own process.
"""
from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .measure import cpu_seconds, run_worker

WORKER = "streamproc.bench.service"


# -- the model stand-in ----------------------------------------------------------------------


class InstantBackend:
    """Builds the real model inputs (so their CPU cost counts) and answers at once."""

    name = "bench"

    def __init__(self, tokenizer_dir: Path):
        from ..qwen import InputBuilder

        self.builder = InputBuilder.from_pretrained(tokenizer_dir)
        self.model_id = "bench-instant"
        self.seq_length = None

    @property
    def inputs(self):
        return self.builder

    def describe(self, inputs, params):
        from ..backends.base import Result

        return Result("a person walks past a parked car", int(inputs.input_ids.shape[0]), int(inputs.visual_tokens), 9,
                      self.model_id)

    def close(self) -> None:
        pass


def _tokenizer_dir(cache: Path) -> Path:
    """Only tokenizer.json: the input builder then uses Qwen2.5-VL's published pixel limits."""
    folder = cache / "bench-tokenizer"
    if not (folder / "tokenizer.json").exists():
        from ..qwen.tiny import make_tiny_model

        model = cache / "bench-tiny-model"
        if not (model / "tokenizer.json").exists():
            make_tiny_model(model, seed=0, overwrite=True)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(model / "tokenizer.json", folder / "tokenizer.json")
    return folder


def _pipeline_config(clip: Path, streams: int, realtime: bool):
    from ..config import config_from_data

    return config_from_data({
        "sources": [{"name": f"s{i}", "path": str(clip), "realtime": realtime} for i in range(streams)],
        "segmenting": {"seq_length": 2048},
        "service": {"stats_interval_s": 3600},
        "http": {"enabled": False},
    })


# -- workers (run in a fresh process each) ----------------------------------------------------


def _streams(clip: str, streams: int, cache: str) -> dict:
    from ..app import App

    tokenizer = _tokenizer_dir(Path(cache))
    app = App(_pipeline_config(Path(clip), streams, False),
              backend_factory=lambda: InstantBackend(tokenizer), plugins=[], serve_http=False)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    app.start()
    while not app.finished():
        time.sleep(0.05)
    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    described = app.stats()["described"]
    app.stop()
    return {"cpu_s": cpu, "wall_s": wall, "segments": described}


def _latency(events: int, rate: float) -> dict:
    from ..backends.base import Result
    from ..config.sinks import MqttConfig, OutboxConfig
    from ..frames import Frame, Segment
    from ..events import caption_event
    from ..sinks.mqtt import MqttSink

    import numpy as np

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="streamproc-bench-"))
    (folder / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([mosquitto, "-c", str(folder / "m.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        sink = MqttSink(MqttConfig(port=port, topic_prefix="bench"), OutboxConfig(path=folder / "outbox.sqlite"))
        sink.start()
        sink.wait_connected(10)
        image = np.zeros((336, 448, 3), np.uint8)
        handle_s = []
        for i in range(events):
            frames = tuple(Frame("cam", j, 20 * i + j, 20 * i + j, time.time(), image) for j in range(2))
            segment = Segment("cam", i, frames, 20.0 * i, 20.0 * i + 2, 1.0)
            result = Result(f"caption {i}: a person walks past a parked car", 2000, 1920, 12, "bench")
            t0 = time.perf_counter()
            sink.handle(caption_event(segment, result))
            handle_s.append(time.perf_counter() - t0)
            time.sleep(1.0 / rate)
        sink.flush(30)
        acks = list(sink.publisher.latencies)
        sink.stop(5)
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(folder, ignore_errors=True)
    return {"handle_s": handle_s, "ack_s": acks}


def _rss(clip: str, streams: int, seconds: float, cache: str) -> dict:
    from ..app import App

    tokenizer = _tokenizer_dir(Path(cache))
    app = App(_pipeline_config(Path(clip), streams, True),
              backend_factory=lambda: InstantBackend(tokenizer), plugins=[], serve_http=False)
    app.start()
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples.append(_rss_mb())
    described = app.stats()["described"]
    app.stop()
    steady = samples[len(samples) // 3:]  # after decoders, segment buffers and queues filled
    return {"rss_mb_max": max(steady), "rss_mb_median": statistics.median(steady), "described": described}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- the report -------------------------------------------------------------------------------


def run(clip: Path, duration_s: float, cache: Path, streams: int = 4, rss_streams: int = 5, rss_seconds: float = 40,
        latency_events: int = 400, progress=print) -> dict:
    from .ingest import make_clip

    make_clip(clip, duration_s)
    report: dict = {"duration_s": duration_s}
    progress(f"  streams: {streams} streams through the pipeline")
    r = run_worker(WORKER, ["streams", str(clip), str(streams), str(cache)])
    per_stream_s = r["cpu_s"] / (streams * duration_s)
    report["streams"] = {**r, "streams": streams, "cpu_per_stream_second": per_stream_s,
                         "streams_per_core": 1.0 / per_stream_s}
    progress(f"  latency: {latency_events} events to a local mosquitto")
    r = run_worker(WORKER, ["latency", str(latency_events), "50"])
    report["latency"] = {
        "handle_p50_ms": 1000 * _q(r["handle_s"], 0.5), "handle_p99_ms": 1000 * _q(r["handle_s"], 0.99),
        "ack_p50_ms": 1000 * _q(r["ack_s"], 0.5), "ack_p99_ms": 1000 * _q(r["ack_s"], 0.99), "events": len(r["ack_s"]),
    }
    report["rss"] = {}
    for n in (1, rss_streams):
        progress(f"  rss: {n} stream(s) at camera pace for {rss_seconds:.0f} s")
        report["rss"][n] = run_worker(WORKER, ["rss", str(clip), str(n), str(rss_seconds), str(cache)])
    one, many = report["rss"][1]["rss_mb_max"], report["rss"][rss_streams]["rss_mb_max"]
    report["rss_per_extra_stream_mb"] = (many - one) / (rss_streams - 1)
    report["rss_streams"] = rss_streams
    return report


def _q(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def table(report: dict) -> str:
    s, lat = report["streams"], report["latency"]
    n = report["rss_streams"]
    return "\n".join([
        "| measure | result | target |",
        "|---|---|---|",
        f"| host CPU per stream (1080p30 H.264, 1 fps, {s['streams']} streams at once) | "
        f"{s['cpu_per_stream_second'] * 100:.1f}% of a core | |",
        f"| streams per CPU core | **{s['streams_per_core']:.1f}** | >= 4 |",
        f"| caption_event + MQTT handle() (outbox append), p50 / p99 | {lat['handle_p50_ms']:.2f} / {lat['handle_p99_ms']:.2f} ms | |",
        f"| outbox append -> PUBACK on loopback, p50 / p99 | {lat['ack_p50_ms']:.2f} / {lat['ack_p99_ms']:.2f} ms | |",
        f"| model result -> PUBACK, p99 (sum of the two p99s, an upper bound) | "
        f"**{lat['handle_p99_ms'] + lat['ack_p99_ms']:.1f} ms** | <= 20 ms |",
        f"| service RSS, 1 stream / {n} streams (steady max) | {report['rss'][1]['rss_mb_max']:.0f} / "
        f"{report['rss'][n]['rss_mb_max']:.0f} MB | |",
        f"| RSS per extra stream | **{report['rss_per_extra_stream_mb']:.1f} MB** | <= 60 MB |",
    ])


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "streams":
        out = _streams(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif kind == "latency":
        out = _latency(int(sys.argv[2]), float(sys.argv[3]))
    else:
        out = _rss(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    sys.stdout.write(json.dumps(out) + "\n")  # the worker protocol: one JSON line
