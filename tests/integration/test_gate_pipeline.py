"""The gate inside the running pipeline: a generated H.264 file of a still street with a ticking
timestamp where a parcel is put down at 25 s. PyAV decodes it, the real segmenter, gate, lanes and
rules run; the model is a stand-in at the backend seam that counts its calls.

Checked: the model sees only the first segment and the one with the parcel; every other segment
becomes an "unchanged" event, in the source's order with the captions; a rule raised by one
caption is raised by the repeated verdict of the next, skipped, segment; Prometheus and stats
count the gate's decisions."""
from __future__ import annotations

import time

import av
import pytest

from streamproc.backends.base import Result
from streamproc.bench.scenes import Event, Scene
from streamproc.config import config_from_data
from streamproc.app import App
from streamproc.bus import BasePlugin
from tests.support.segments import stand_in_capabilities

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Counting:
    name = "counting"
    model_id = "counting"
    seq_length = None
    capabilities = stand_in_capabilities()

    def __init__(self, builder):
        self.inputs = builder
        self.calls = 0

    def describe(self, inputs, params):
        self.calls += 1
        return Result("a parcel on the pavement", int(inputs.input_ids.shape[0]), int(inputs.visual_tokens), 5,
                      self.model_id)

    def close(self):
        pass


class Collect(BasePlugin):
    name = "collect"

    def __init__(self):
        self.events = []

    def handle(self, event):
        self.events.append(event)


def write_scene(path, scene: Scene, seconds: int) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.options = {"g": "8", "preset": "veryfast", "crf": "28"}
        for t in range(seconds):
            for packet in stream.encode(av.VideoFrame.from_ndarray(scene.frame(float(t), t), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_unchanged_segments_skip_the_model_and_keep_rules_and_order(tmp_path, tiny_model_dir, tiny_builder):
    video = tmp_path / "street.mp4"
    write_scene(video, Scene(height=224, width=224, seed=3, noise=3.0, clock=True,
                             events=[Event("object", 25.0, x=0.45, seed=0)]), 48)
    config = config_from_data({
        "sources": [{"name": "street", "path": str(video)}],
        "sampling": {"fps": 1, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": 4},
        "backend": {"type": "hf", "model": str(tiny_model_dir)},  # read for its geometry only
        # the timestamp overlay spans a third of these tiny 112x112 frames: its region is ignored,
        # as docs/gate.md advises (the flicker rule masks only small ticking spots, issue 22)
        "gate": {"mode": "scene_change", "ignore": [[0.0, 0.0, 0.35, 0.1]]},
        "rules": [{"name": "parcel", "keywords": ["parcel"], "raise_after": 2, "clear_after": 2}],
        "sinks": {"attachments": {"dir": str(tmp_path / "attachments")}},  # not the working directory
        "service": {"workers": 2, "metrics": {"enabled": False}, "stats_interval_s": 3600},
    })
    backends = []
    sink = Collect()
    pipeline = App(config, backend_factory=lambda: backends.append(Counting(tiny_builder)) or backends[-1],
                        plugins=[sink], serve_http=False)
    pipeline.start()
    deadline = time.monotonic() + 60
    while not pipeline.finished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.finished()
    stats = pipeline.stats()
    pipeline.stop()

    stream = [e for e in sink.events if e.source == "street" and e.type in ("caption", "unchanged", "alert")]
    described = [e.data["segment"]["index"] for e in stream if e.type == "caption"]
    unchanged = [e.data["segment"]["index"] for e in stream if e.type == "unchanged"]
    per_segment = [e.data["segment"]["index"] for e in stream if e.type != "alert"]
    assert per_segment == list(range(12)), "one caption or unchanged event per segment, in order"
    assert described == [0, 6]  # the first one, and 24-28 s with the parcel put down at 25 s
    assert sum(b.calls for b in backends) == 2
    assert all(e.data["score"] < 1.0 and e.data["reason"] == "unchanged" for e in stream if e.type == "unchanged")

    alerts = [(e.data["segment"]["index"], e.data["transition"]) for e in stream if e.type == "alert"]
    assert alerts == [(1, "raised")]  # caption 0 said parcel; skipped segment 1 repeated it
    gate = pipeline.metrics.gate
    assert gate.labels("street", "skipped", "unchanged")._value.get() == len(unchanged) == 10
    assert gate.labels("street", "described", "first")._value.get() == 1
    assert gate.labels("street", "described", "change")._value.get() == 1
    assert stats["sources"]["street"]["gate"]["unchanged"] == 10
