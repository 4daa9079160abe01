"""A running pipeline (file source read at its own pace, the tiny model, a real mosquitto) as a
person acting on alerts sees it:

- /healthz and /metrics answer while the model loads (state "loading", 503), with every labelled
  series at zero, process and build metrics; then "ready" (200);
- a raised alert carries its snapshot and clip, served on the HTTP port, the snapshot also retained
  on <prefix>/<source>/alerts/snapshot;
- Home Assistant's `Describe` switch pauses the camera at run time: its state flips, no caption
  comes (the segments are counted as paused) until it is switched on again.
"""
from __future__ import annotations

import hashlib
import threading
import urllib.request

import paho.mqtt.publish as publish
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.config import config_from_data  # noqa: E402
from streamproc.app import App  # noqa: E402
from tests.integration.conftest import mqtt_section  # noqa: E402
from tests.support.service import healthz, metric, scrape, service_config, wait_until  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.slow, pytest.mark.timeout(180)]


def make_config(tmp_path, video, broker, tiny_model_dir):
    sinks = mqtt_section(broker, tmp_path, homeassistant={"enabled": True, "node_id": "sp1"})
    sinks["attachments"] = {"dir": str(tmp_path / "attachments")}
    data = service_config(
        tiny_model_dir,
        [{"name": "cam1", "path": str(video), "realtime": True}],
        sinks=sinks,
        service={"metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}},
    )
    data["rules"] = [{"name": "anything", "pattern": r"\S"}]  # the tiny model says something: raised at once
    return config_from_data(data)


def texts(sub, topic: str) -> list[str]:
    return [m.text for m in sub.on(topic)]


def test_loading_metrics_attachments_and_the_pause_switch(tmp_path, make_video, broker, subscribe, tiny_model_dir):
    video = make_video(duration_s=300, fps=2, width=320, height=240, gop=4)
    config = make_config(tmp_path, video, broker, tiny_model_dir)
    sub = subscribe(broker.port, ["sp/#"])
    loading = threading.Event()

    def factory():
        from streamproc.backends.base import create_backend

        loading.wait(60)  # the model "loads" until the test has looked at the HTTP port
        return create_backend(config.backend)

    pipeline = App(config, backend_factory=factory)
    starter = threading.Thread(target=pipeline.start)
    starter.start()
    try:
        # -- loading: the port answers, every series is there at zero ------------------------
        assert wait_until(lambda: pipeline.http is not None, 10)
        port = pipeline.http.port
        status, report = healthz(port)
        assert (status, report["state"], report["healthy"]) == (503, "loading", False)
        samples = scrape(port)
        for name in ("streamproc_segments_dropped_total", "streamproc_segments_described_total",
                     "streamproc_segments_paused_total", "streamproc_frames_total", "streamproc_source_up"):
            assert samples[(name, (("source", "cam1"),))] == 0.0, name
        assert samples[("streamproc_alerts_total", (("rule", "anything"), ("source", "cam1"), ("transition", "raised")))] == 0.0
        assert samples[("streamproc_rule_enabled", (("rule", "anything"),))] == 1.0
        assert samples[("streamproc_errors_total", (("stage", "model"),))] == 0.0
        assert metric(samples, "streamproc_state", state="loading") == 1.0
        assert any(name == "streamproc_build_info" and dict(labels).get("version") for name, labels in samples)
        assert metric(samples, "process_resident_memory_bytes") > 0
        loading.set()
        starter.join(60)
        assert wait_until(lambda: healthz(port)[0] == 200, 60), healthz(port)
        assert healthz(port)[1]["state"] == "ready"

        # -- a raised alert with its files -------------------------------------------------------
        assert wait_until(lambda: sub.on("sp/cam1/alerts"), 60), pipeline.stats()
        alert = sub.on("sp/cam1/alerts")[0].json()
        assert alert["transition"] == "raised" and alert["title"] == "Anything on cam1"
        files = alert["attachments"]
        assert files["clip"]["method"] == "remux" and files["clip"]["end"] >= alert["segment"]["end"]
        for item in files.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{item['url']}", timeout=5) as response:
                assert hashlib.sha256(response.read()).hexdigest() == item["sha256"]
        assert wait_until(lambda: sub.on("sp/cam1/alerts/snapshot"), 10)
        late = subscribe(broker.port, ["sp/cam1/alerts/snapshot"])  # retained: what HA's image shows
        assert wait_until(lambda: late.snapshot(), 10)
        snapshot = late.snapshot()[0]
        assert snapshot.retain and hashlib.sha256(snapshot.payload).hexdigest() == files["snapshot"]["sha256"]
        assert metric(scrape(port), "streamproc_alerts_total", source="cam1", rule="anything", transition="raised") == 1

        # -- the Describe switch pauses the camera --------------------------------------------
        assert wait_until(lambda: texts(sub, "sp/cam1/describe") == ["ON"], 10)
        publish.single("sp/cam1/describe/set", "OFF", hostname=broker.host, port=broker.port)
        assert wait_until(lambda: texts(sub, "sp/cam1/describe")[-1:] == ["OFF"], 10)
        # the segment in flight when it flipped may still finish; after the first paused one, none
        assert wait_until(lambda: metric(scrape(port), "streamproc_segments_paused_total", source="cam1") >= 1, 20)
        captions = len(sub.on("sp/cam1/captions"))
        assert wait_until(lambda: metric(scrape(port), "streamproc_segments_paused_total", source="cam1") >= 3, 20)
        assert len(sub.on("sp/cam1/captions")) == captions
        assert metric(scrape(port), "streamproc_source_paused", source="cam1") == 1
        publish.single("sp/cam1/describe/set", "ON", hostname=broker.host, port=broker.port)
        assert wait_until(lambda: texts(sub, "sp/cam1/describe")[-1:] == ["ON"], 10)
        assert wait_until(lambda: len(sub.on("sp/cam1/captions")) > captions, 30)
        assert metric(scrape(port), "streamproc_source_paused", source="cam1") == 0
    finally:
        loading.set()
        starter.join(60)
        pipeline.stop(timeout_s=10)
