"""/healthz and /metrics of a running pipeline (in this process, a file source, the tiny model):
200 and the counters while it works, 503 while a model call is stuck, closed after stop."""
from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.config import config_from_data  # noqa: E402
from streamproc.app import App  # noqa: E402
from tests.support.service import healthz, http_get, metric, scrape, service_config, wait_until  # noqa: E402
from tests.support.slow_backend import SlowBackend  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(120)]


class GatedBackend(SlowBackend):
    """Paced; while `hold` is set, a request waits for it to clear (a hung model call)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()
        self.released = threading.Event()

    def describe(self, inputs, params):
        if self.hold.is_set():
            self.released.wait(60)
        return super().describe(inputs, params)


def test_healthz_and_metrics_of_a_running_pipeline(make_video, tiny_model_dir):
    video = make_video(duration_s=600, fps=1, width=320, height=240, gop=10)
    config = config_from_data(
        service_config(
            tiny_model_dir,
            [{"name": "clip", "path": str(video)}],
            service={"metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}, "stuck_after_s": 1.0},
        )
    )
    backends: list[GatedBackend] = []

    def factory() -> GatedBackend:
        backends.append(GatedBackend(config.backend, factor=0.05))  # 0.1 s per 2-s segment
        return backends[-1]

    pipeline = App(config, backend_factory=factory, plugins=[])  # events are not what this test checks
    pipeline.start()
    try:
        assert pipeline.http is not None
        port = pipeline.http.port
        assert port != 0
        assert wait_until(lambda: pipeline.health()["described"] >= 3, 60), pipeline.stats()

        # Healthy: 200 and a JSON report.
        status, report = healthz(port)
        assert status == 200, report
        assert report["healthy"] is True
        assert report["workers"]["alive"] == 1 and len(report["workers"]["busy_s"]) == 1
        assert report["sources"] == {"clip": "online"}
        assert report["described"] >= 3

        # Prometheus text with the pipeline's counters.
        code, kind, _ = http_get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and kind.startswith("text/plain")
        samples = scrape(port)
        described = metric(samples, "streamproc_segments_described_total", source="clip")
        assert described >= 3
        assert metric(samples, "streamproc_segments_total", source="clip") >= described
        assert metric(samples, "streamproc_frames_total", source="clip") >= 2 * described
        assert metric(samples, "streamproc_events_total", type="caption") >= described
        assert metric(samples, "streamproc_model_request_seconds_count") >= described
        assert metric(samples, "streamproc_generated_tokens_total") >= described
        assert metric(samples, "streamproc_source_up", source="clip") == 1
        assert metric(samples, "streamproc_segments_dropped_total", source="clip") == 0  # files wait, never drop
        assert samples[("streamproc_errors_total", (("stage", "model"),))] == 0  # there at zero: alertable
        assert http_get(f"http://127.0.0.1:{port}/nothing-here")[0] == 404

        # A model call that hangs past service.stuck_after_s makes /healthz fail ...
        backends[0].hold.set()
        assert wait_until(lambda: healthz(port)[0] == 503, 30), healthz(port)
        status, report = healthz(port)
        assert report["healthy"] is False and report["workers"]["busy_s"][0] > 1.0
        # ... and healthy again once it returns.
        backends[0].hold.clear()
        backends[0].released.set()
        assert wait_until(lambda: healthz(port)[0] == 200, 30), healthz(port)
    finally:
        pipeline.stop(timeout_s=30)

    with pytest.raises(urllib.error.URLError):  # the server is gone with the pipeline
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
