"""The caption store inside a running pipeline (this process, a file source, the tiny model):
captions stored while it runs, searchable over the service's HTTP port, a scheduled summary
stored and served; a store on a read-only path is reported and counted while captions go on."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.config import config_from_data  # noqa: E402
from streamproc.app import App  # noqa: E402
from streamproc.store.search import StoreReader  # noqa: E402
from tests.support.service import service_config, wait_until  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(180)]


def get_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pipeline_with_store(make_video, tiny_model_dir, store: dict, **extra) -> App:
    video = make_video(duration_s=16, fps=1, width=160, height=120, gop=4)
    data = service_config(
        tiny_model_dir, [{"name": "yard", "path": str(video)}],
        service={"metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}},
    )
    data.update(store=store, **extra)
    return App(config_from_data(data))


def test_captions_are_stored_searchable_and_summarised(make_video, tiny_model_dir, tmp_path):
    path = tmp_path / "captions.sqlite"
    pipeline = pipeline_with_store(
        make_video, tiny_model_dir, {"enabled": True, "path": str(path)},
        summaries=[{"every": "3s", "window": "1h", "max_new_tokens": 8, "context_tokens": 2048}],
    )
    pipeline.start()
    store = pipeline.bus.find("store")
    scheduler = store.scheduler
    try:
        port = pipeline.http.port
        assert wait_until(pipeline.finished, 120), pipeline.stats()
        assert store.flush(10)
        described = pipeline.stats()["described"]
        assert described >= 4 and pipeline.stats()["sinks"]["store"]["stored"] >= described
        with StoreReader(path) as reader:
            rows = reader.entries(since=0, until=4e9, kinds=["caption"])
        assert len(rows) == described and all(r["source"] == "yard" and r["end"] >= r["start"] for r in rows)
        word = next(w for r in rows for w in re.findall(r"[A-Za-z]{3,}", r["text"]))
        status, body = get_json(port, f"/api/search?q={word}&source=yard&since=1h")
        assert status == 200 and body["count"] >= 1
        assert all(word.lower() in h["text"].lower() for h in body["hits"]) and body["hits"][0]["start_iso"]
        assert wait_until(lambda: get_json(port, "/api/summaries?source=yard")[1].get("count"), 90)
        summary = get_json(port, "/api/summaries?source=yard")[1]["summaries"][0]
        assert summary["type"] == "summary" and summary["entries"] >= 1 and "Based on" in summary["text"]
    finally:
        pipeline.stop()
    assert scheduler.backend is None  # its dedicated backend was closed


def test_a_read_only_store_path_is_reported_and_the_service_goes_on(make_video, tiny_model_dir):
    pipeline = pipeline_with_store(
        make_video, tiny_model_dir, {"enabled": True, "path": "/proc/streamproc-test/captions.sqlite"}
    )
    pipeline.start()
    try:
        assert wait_until(pipeline.finished, 120), pipeline.stats()
        stats = pipeline.stats()
        store = stats["sinks"]["store"]
        assert stats["described"] >= 4
        assert store["available"] is False and "cannot open the caption store" in store["error"]
        assert store["unavailable"] >= stats["described"]  # every caption handed in was counted
        status, body = get_json(pipeline.http.port, "/api/search?q=anything")
        assert status == 503 and "not available" in body["error"]
    finally:
        pipeline.stop()
