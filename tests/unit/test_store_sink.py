"""The store sink off the hot path (queue, batches, drops counted, flush), a store that cannot be
opened, the HTTP read API on the service's router, and `streamproc search` on the command line."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from streamproc.cli import main
from streamproc.config.store import StoreConfig
from streamproc.events import Event, summary_event
from streamproc.app.plugins import store_plugin
from streamproc.config import config_from_data
from streamproc.config.http import HttpConfig
from streamproc.http import HttpServer, build_app
from streamproc.store.sink import StoreSink
from streamproc.store.api import store_routes
from streamproc.store.search import StoreReader
from tests.unit.test_store import T0, alert, caption

READ_ONLY = Path("/proc/streamproc-test-store/captions.sqlite")  # read-only even for root


def event(data: dict) -> Event:
    return Event(data["type"], data["id"], data["source"], data)


def test_sink_batches_and_flushes(tmp_path):
    config = StoreConfig(enabled=True, path=tmp_path / "s.sqlite", batch_size=50)
    sink = store_plugin(config_from_data({"sources": [{"name": "porch", "path": "x.mp4"}], "store": config.model_dump()}),
                        ["porch"], None, None)
    assert sink.name == "store" and sink.routes()  # the read API comes with it
    sink.start()
    try:
        caps = [caption(i, f"a heron lands {i}", start=T0 + i * 20) for i in range(120)]
        for data in caps:
            sink.handle(event(data))
        sink.handle(event(alert(caps[0], "bird")))
        sink.handle(Event("stats", "stats:1", None, {"type": "stats"}))  # not stored
        sink.handle(summary_event("porch", start=T0, end=T0 + 3600, text="Herons.", ranges=[], entries=120, model="m"))
        assert sink.flush(10)
        stats = sink.stats()
        assert stats["stored"] == 122 and stats["dropped"] == 0 and stats["available"] is True
        assert stats["batches"] >= 3  # 122 rows in batches of at most 50
        with StoreReader(config.path) as reader:
            assert reader.count() == 121
            assert len(reader.search("heron", limit=500)) == 120
            assert reader.summaries()[0]["text"] == "Herons."
    finally:
        sink.stop()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    sink = StoreSink(StoreConfig(enabled=True, path=tmp_path / "s.sqlite", queue_size=5, batch_size=1))
    sink.start()
    release, writing = threading.Event(), threading.Event()
    real_add = sink.store.add_events

    def stuck_add(batch):  # a disk that stalls: the writer hangs, handle() must not
        writing.set()
        release.wait(30)
        return real_add(batch)

    sink.store.add_events = stuck_add
    try:
        sink.handle(event(caption(0, "first", start=T0)))
        assert writing.wait(10)
        for i in range(1, 50):
            sink.handle(event(caption(i, f"more {i}", start=T0 + i)))
        assert sink.stats()["dropped"] == 49 - 5 and sink.stats()["queued"] == 5
    finally:
        release.set()
    assert sink.flush(10)
    assert sink.stats()["stored"] == 6
    sink.stop()


def test_a_store_that_cannot_be_opened_is_reported_and_counted(caplog):
    sink = StoreSink(StoreConfig(enabled=True, path=READ_ONLY))
    sink.start()  # does not raise: the service runs on without the store
    sink.handle(event(caption(0, "unseen")))
    sink.handle(event(caption(1, "unseen", start=T0 + 20)))
    stats = sink.stats()
    assert stats["available"] is False and stats["unavailable"] == 2
    assert "cannot open the caption store at /proc/" in stats["error"]
    assert "runs on without the caption store" in caplog.text
    assert sink.flush(1)
    sink.stop()


@pytest.fixture
def filled_store(tmp_path):
    sink = StoreSink(StoreConfig(enabled=True, path=tmp_path / "s.sqlite"))
    sink.start()
    for i, text in enumerate(["a red car parks", "a red car and another red car", "a cat on the wall"]):
        sink.handle(event(caption(i, text, start=T0 + i * 3600)))
    sink.handle(event(caption(7, "a red car at the gate", source="gate", start=T0)))
    sink.handle(summary_event("porch", start=T0, end=T0 + 7200, text="Cars.", ranges=[], entries=3, model="m"))
    assert sink.flush(10)
    sink.stop()
    return tmp_path / "s.sqlite"


def test_http_search_and_summaries(filled_store):
    server = HttpServer(build_app(store_routes(filled_store), HttpConfig()))
    server.start()

    def get(path: str, **query):
        url = f"http://127.0.0.1:{server.port}{path}?{urllib.parse.urlencode(query, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        status, body = get("/api/search", q="red car", tz="Europe/Berlin")
        assert status == 200 and body["count"] == 3
        first = body["hits"][0]
        assert first["text"] == "a red car and another red car" and "<mark>red</mark>" in first["snippet_html"]
        assert first["start_iso"].endswith("+02:00")  # T0 is in Berlin summer time
        status, body = get("/api/search", q="red car", source="gate")
        assert [h["source"] for h in body["hits"]] == ["gate"]
        since = "2026-09-21T17:13:00+02:00"  # T0 is 14:13:20 UTC: after the first hour's start
        status, body = get("/api/search", q="red", since=since)
        assert status == 200 and [h["start"] for h in body["hits"]] == [T0 + 3600]
        status, body = get("/api/search", q="cat", since=since, until=str(T0 + 7200))
        assert body["count"] == 1 and body["hits"][0]["start"] == T0 + 7200
        status, body = get("/api/search", q="red AND")
        assert status == 400 and "not valid" in body["error"]
        status, body = get("/api/search", q="red", since="soon")
        assert status == 400 and "cannot read the time" in body["error"]
        status, body = get("/api/summaries", source="porch")
        assert status == 200 and body["summaries"][0]["text"] == "Cars." and body["summaries"][0]["end_iso"]
        status, body = get("/api/summaries", source="gate")
        assert body == {"count": 0, "summaries": []}
    finally:
        server.stop()


def test_http_without_a_store_answers_503(tmp_path):
    server = HttpServer(build_app(store_routes(tmp_path / "none.sqlite", lambda: False), HttpConfig()))
    server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/search?q=x", timeout=10)
        assert info.value.code == 503
    finally:
        server.stop()


def test_cli_search(filled_store, capsys):
    assert main(["search", "--store", str(filled_store), '"red car"', "--tz", "UTC", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["count"] == 3 and body["hits"][0]["start_iso"].endswith("+00:00")
    assert main(["search", "--store", str(filled_store), "red", "--source", "porch", "--tz", "UTC",
                 "--until", "2026-09-21T15:14Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(" porch " in line and "[red]" in line for line in lines)
    assert lines[0].startswith("2026-09-21T")


def test_cli_search_errors_are_one_line(filled_store, capsys):
    assert main(["search", "--store", str(filled_store), "red AND"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid" in err and "Traceback" not in err
    assert main(["search", "--store", str(filled_store), "red", "--since", "last week"]) == 2
    assert main(["search", "--store", str(filled_store.with_name("missing.sqlite")), "red"]) == 6
    assert "no caption store at" in capsys.readouterr().err


def test_events_from_the_real_builders(tmp_path):
    from streamproc.events import alert_event, caption_event, unchanged_event
    from tests.support.segments import make_result, make_segment

    first, still = make_segment("yard", 0, wall=T0), make_segment("yard", 1, wall=T0 + 2)
    cap = caption_event(first, make_result("A fox digs in the flower bed."), live=True)
    raised = alert_event(rule="animal", kind="question", source="yard", segment=first, transition="raised",
                         verdict="yes", reason="a fox is in the garden", live=True)
    raised.data["attachments"] = {"snapshot": {"path": "/var/lib/streamproc/attachments/yard/fox.jpg"}}
    quiet = unchanged_event(still, 0.02, "unchanged", live=True)
    sink = StoreSink(StoreConfig(enabled=True, path=tmp_path / "s.sqlite"))
    sink.start()
    for e in (cap, raised, quiet):
        sink.handle(e)
    assert sink.flush(10) and sink.stats()["stored"] == 3
    sink.stop()
    with StoreReader(tmp_path / "s.sqlite") as reader:
        (fox,) = reader.search("fox", kinds=["caption"])
        assert (fox.start, fox.end, fox.media_start, fox.media_end) == (T0, first.end_wall, 0.0, 2.0)
        assert fox.verdicts == {"animal": "yes"}
        (alert_hit,) = reader.search("fox", kinds=["alert"])
        assert alert_hit.snapshot == "/var/lib/streamproc/attachments/yard/fox.jpg"
        (span,) = reader.search("unchanged", kinds=["unchanged"])
        assert span.event_id == quiet.id and span.start == still.start_wall


def test_retention_runs_in_the_writer_while_the_sink_runs(tmp_path):
    import time

    from tests.support.service import wait_until

    config = StoreConfig(enabled=True, path=tmp_path / "s.sqlite",
                         retention={"max_age": "1h", "max_size_mb": None, "check_every_s": 0.2})
    sink = StoreSink(config)
    sink.start()
    try:
        now = time.time()
        for i in range(5):  # two months old: past max_age
            sink.handle(event(caption(i, f"an old owl {i}", start=T0 + i * 20)))
        sink.handle(event(caption(9, "a new owl", start=now - 60)))
        assert sink.flush(10)
        assert wait_until(lambda: sink.stats()["retention_deleted"] == 5, 10), sink.stats()
        with StoreReader(config.path) as reader:
            assert [h.text for h in reader.search("owl")] == ["a new owl"]
    finally:
        sink.stop()


def test_summaries_go_to_their_retained_mqtt_topic():
    pytest.importorskip("paho.mqtt")
    from streamproc.config.sinks import MqttConfig
    from streamproc.sinks.mqtt import MqttSink

    sink = MqttSink(MqttConfig(topic_prefix="home/cams"))
    summary = summary_event("porch", start=T0, end=T0 + 3600, text="Quiet.", ranges=[], entries=0, model="m")
    (message,) = sink.messages_for(summary)
    assert message.topic == "home/cams/porch/summary" and message.retain is True
    assert json.loads(message.payload) == summary.to_dict()
