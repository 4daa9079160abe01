"""Metrics that can alert, without a model: every labelled series exists at zero after prepare(),
process and build metrics are exposed, and /healthz reports the state."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from streamproc import __version__
from streamproc.config.http import HttpConfig
from streamproc.http import HttpServer, build_app
from streamproc.http.health import health_routes
from streamproc.metrics import ERROR_STAGES, Metrics


def samples(metrics: Metrics) -> dict:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_every_series_is_there_at_zero_before_anything_happened():
    metrics = Metrics()
    metrics.prepare(["cam1", "cam2"], [("fence", ["cam1"]), ("car", ["cam1", "cam2"])])
    found = samples(metrics)
    for source in ("cam1", "cam2"):
        for name in ("frames", "segments", "segments_described", "segments_dropped", "segments_paused", "reconnects"):
            assert found[(f"streamproc_{name}_total", (("source", source),))] == 0.0
        for name in ("queue_depth", "source_up", "source_paused"):
            assert found[(f"streamproc_{name}", (("source", source),))] == 0.0
    for stage in ERROR_STAGES:
        assert found[("streamproc_errors_total", (("stage", stage),))] == 0.0
    assert found[("streamproc_alerts_total", (("rule", "car"), ("source", "cam2"), ("transition", "raised")))] == 0.0
    assert ("streamproc_alerts_total", (("rule", "fence"), ("source", "cam2"), ("transition", "raised"))) not in found
    assert found[("streamproc_rule_enabled", (("rule", "fence"),))] == 1.0
    assert found[("streamproc_rule_on", (("rule", "fence"), ("source", "cam1")))] == 0.0
    build = [dict(labels) for name, labels in found if name == "streamproc_build_info"]
    assert build and build[0]["version"] == __version__
    assert found[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in found)
    assert found[("streamproc_state", (("state", "loading"),))] == 1.0 and found[("streamproc_ready", ())] == 0.0
    metrics.set_state("ready")
    found = samples(metrics)
    assert found[("streamproc_state", (("state", "ready"),))] == 1.0 and found[("streamproc_ready", ())] == 1.0


def test_healthz_is_503_while_loading_and_200_when_ready():
    metrics = Metrics()
    state = {"healthy": False, "state": "loading"}
    server = HttpServer(build_app(health_routes(metrics, lambda: dict(state)), HttpConfig(port=0)))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        try:
            urllib.request.urlopen(url + "/healthz", timeout=5)
            raise AssertionError("expected 503 while loading")
        except urllib.error.HTTPError as error:
            assert error.code == 503 and json.loads(error.read())["state"] == "loading"
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            assert b"streamproc_build_info" in response.read()
        state.update(healthy=True, state="ready")
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            assert response.status == 200 and json.loads(response.read())["state"] == "ready"
    finally:
        server.stop()
