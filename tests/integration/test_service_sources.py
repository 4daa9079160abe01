"""Two live RTSP cameras and one file through one backend, events checked at an MQTT subscriber.

The pipeline runs in this process (so a failure can show its state) over the `hf` backend on
the tiny model, paced (tests/support/slow_backend.py, 0.1 x real time) so that the long file
is still being described when the test ends: at full speed the tiny model would finish it in
seconds and "the file keeps producing events" could not be seen. A camera is killed (SIGKILL)
while the others run, and started again on the same port.
"""
from __future__ import annotations

import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.config import config_from_data  # noqa: E402
from streamproc.app import App  # noqa: E402
from streamproc.events import validate  # noqa: E402
from tests.integration.conftest import mqtt_section  # noqa: E402
from tests.support.service import camera, service_config, wait_until  # noqa: E402
from tests.support.slow_backend import SlowBackend  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf]

SOURCES = ("cam1", "cam2", "clip")


def captions(sub, source: str, after: float = 0.0) -> list:
    return [m for m in sub.on(f"sp/{source}/captions") if m.at >= after]


def statuses(sub, source: str, after: float = 0.0) -> list[dict]:
    return [m.json() for m in sub.on(f"sp/{source}/status") if m.at >= after]


def progress(sub, pipeline, after: float = 0.0) -> str:
    counts = {s: len(captions(sub, s, after)) for s in SOURCES}
    states = {s: [x["state"] for x in statuses(sub, s)] for s in SOURCES}
    return f"captions since then: {counts}; statuses: {states}; stats: {pipeline.stats()['sources']}"


@pytest.mark.timeout(240)
def test_two_cameras_and_a_file_one_camera_dies_and_comes_back(
    tmp_path, broker, subscribe, make_rtsp_server, make_video, tiny_model_dir
):
    cam1, cam2 = make_rtsp_server(), make_rtsp_server()
    # 20 minutes at 1 fps: far more than the test can describe at 0.2 s per 2-s segment.
    video = make_video(duration_s=1200, fps=1, width=320, height=240, gop=10)
    sub = subscribe(broker.port, ["sp/#"])
    config = config_from_data(
        service_config(
            tiny_model_dir,
            [camera("cam1", cam1.url), camera("cam2", cam2.url), {"name": "clip", "path": str(video)}],
            sinks=mqtt_section(broker, tmp_path),
        )
    )
    pipeline = App(config, backend_factory=lambda: SlowBackend(config.backend, factor=0.1), serve_http=False)
    pipeline.start()
    try:
        # 1. Every source produces captions.
        assert wait_until(lambda: all(len(captions(sub, s)) >= 2 for s in SOURCES), 90), progress(sub, pipeline)
        before_kill = captions(sub, "cam1")[-1].json()

        # 2. Camera 1 dies: it reports reconnecting, the other camera and the file go on.
        killed_at = time.time()
        cam1.kill()
        down = wait_until(lambda: [s for s in statuses(sub, "cam1", killed_at) if s["state"] == "reconnecting"], 30)
        assert down, progress(sub, pipeline, killed_at)
        down_at = time.time()
        assert wait_until(
            lambda: len(captions(sub, "cam2", down_at)) >= 3 and len(captions(sub, "clip", down_at)) >= 3, 30
        ), progress(sub, pipeline, down_at)
        assert pipeline.health()["healthy"]
        assert pipeline.stats()["sources"]["cam1"]["state"] in ("reconnecting", "connecting")
        assert not cam1.running

        # 3. Camera 1 comes back on the same port and describes again; the others never stopped.
        cam1.start()
        up_at = time.time()

        def resumed() -> bool:
            after = [m.json() for m in captions(sub, "cam1", up_at)]
            first_gap = next((i for i, c in enumerate(after) if c["segment"]["gap_before"]), None)
            return first_gap is not None and len(after) > first_gap + 1  # and one more after it

        assert wait_until(resumed, 60), progress(sub, pipeline, up_at)
        assert any(s["state"] == "online" for s in statuses(sub, "cam1", up_at))
        assert len(captions(sub, "cam2", up_at)) >= 2 and len(captions(sub, "clip", up_at)) >= 2
        back = [m.json() for m in captions(sub, "cam1", up_at)]
        gap = next(c for c in back if c["segment"]["gap_before"])
        # The camera's media clock continues across the reconnect.
        assert gap["segment"]["start"] > before_kill["segment"]["end"]
        assert pipeline.stats()["sources"]["cam1"]["reconnects"] >= 1
    finally:
        delivered = pipeline.stop(timeout_s=30)
    assert delivered

    # Every caption is a valid event with the source's kind of id.
    for source in SOURCES:
        events = [m.json() for m in captions(sub, source)]
        for event in events:
            validate(event)
            assert event["source"] == source and event["text"] is not None
        ids = [e["id"] for e in events]
        separator = ":" if source == "clip" else "@"
        assert all(i.startswith(source + separator) for i in ids), ids[:3]
    # The file in order with nothing skipped (ids deduplicate an at-least-once redelivery), and
    # still going when the test ended.
    clip = {m.json()["id"]: m.json()["segment"] for m in captions(sub, "clip")}
    starts = [s["start"] for s in clip.values()]
    assert starts == [2.0 * i for i in range(len(starts))]
    assert not list(clip.values())[-1]["last"]
    # A clean stop says offline (delivered before stop returned; the subscriber may lag a little).
    assert wait_until(lambda: all(statuses(sub, s)[-1]["state"] == "offline" for s in SOURCES), 10), {
        s: [x["state"] for x in statuses(sub, s)] for s in SOURCES
    }
