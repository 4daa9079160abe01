"""A model worker whose backend keeps failing makes it anew and goes on; failed requests are
retried once when the error says retrying can help."""
from __future__ import annotations

import time

import pytest

from streamproc.backends.hf import HfBackend
from streamproc.config import config_from_data
from streamproc.config.model import HfBackendConfig
from streamproc.errors import BackendError
from streamproc.app import App
from streamproc.bus import BasePlugin

pytestmark = pytest.mark.integration


class Collect(BasePlugin):
    name = "collect"

    def __init__(self):
        self.events = []

    def handle(self, event):
        self.events.append(event)


class Broken:
    """A backend whose device has gone bad: every request fails (retryable, as a BackendError)."""

    name = "broken"
    model_id = "broken"
    seq_length = None

    def __init__(self, inputs):
        self.inputs = inputs
        self.calls = 0
        self.closed = False

    def describe(self, inputs, params):
        self.calls += 1
        raise BackendError("the accelerator stopped answering")

    def close(self):
        self.closed = True


def test_failing_backend_is_restarted_and_segments_are_retried(make_video, tiny_model_dir):
    video = make_video(".mp4", duration_s=12, fps=25, width=224, height=224, seed=9)
    config = config_from_data({
        "sources": [{"name": "clip", "path": str(video)}],
        "sampling": {"max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": 4},
        "backend": {"type": "hf", "model": str(tiny_model_dir)},
        "generation": {"max_new_tokens": 4},
        "service": {"metrics": {"enabled": False}},
    })
    made = []

    def factory():
        real = HfBackend(HfBackendConfig(model=str(tiny_model_dir)))
        backend = Broken(real.inputs) if not made else real
        made.append(backend)
        return backend

    sink = Collect()
    pipeline = App(config, backend_factory=factory, plugins=[sink], serve_http=False)
    pipeline.start()
    deadline = time.monotonic() + 120
    while not pipeline.finished() and time.monotonic() < deadline:
        time.sleep(0.1)
    pipeline.stop()

    broken = made[0]
    assert len(made) == 2, "the failing backend was made anew once"
    assert broken.closed and broken.calls == 3  # two tries of the first segment, one of the second
    captions = [e for e in sink.events if e.type == "caption"]
    # The first segment was given up after its retry; the second was retried on the new backend.
    assert [e.data["segment"]["index"] for e in captions] == [1, 2]
    assert pipeline.stats()["failed"] == 1
    value = pipeline.metrics.registry.get_sample_value("streamproc_errors_total", {"stage": "model_restart"})
    assert value == 1
