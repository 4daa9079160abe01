"""The caption store on real SQLite: rows from events, ranked search, phrases, prefixes, time
filters, sources, time zones, retention by age and size, migration from version 1, bad queries."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from streamproc.errors import UsageError
from streamproc.events import validate
from streamproc.store.db import CaptionStore, StoreError
from streamproc.store.schema import VERSION
from streamproc.store.search import QueryError, StoreReader
from streamproc.store.timeparse import iso, parse_when, zone

T0 = 1_790_000_000.0  # a fixed wall clock (2026-09-21 UTC): every test is deterministic


def caption(
    i: int, text: str, *, source: str = "porch", start: float = T0, length: float = 20.0, check: bool = False
) -> dict:
    data = {
        "v": 1, "type": "caption", "id": f"{source}@{int(start * 1000):013d}", "source": source, "ts": start + length,
        "segment": {"index": i, "start": i * length, "end": (i + 1) * length, "start_wall": start,
                    "end_wall": start + length, "frames": 4, "fps": 1.0, "gap_before": False, "last": False},
        "text": text, "model": "tiny", "tokens": {"prompt": 10, "visual": 8, "generated": 5},
        "finish_reason": "stop", "timings": {"total_s": 0.5},
    }
    if check:  # the schema check is slow; the first test does it
        validate(data)
    return data


def alert(cap: dict, rule: str, transition: str = "raised", verdict: str = "yes", snapshot: str | None = None) -> dict:
    data = {
        "v": 1, "type": "alert", "id": f"{cap['id']}:{rule}:{transition}", "source": cap["source"], "ts": cap["ts"],
        "rule": rule, "kind": "question", "transition": transition, "state": "ON" if transition == "raised" else "OFF",
        "verdict": verdict, "reason": "a person stands at the door", "caption_id": cap["id"], "segment": cap["segment"],
    }
    if snapshot:
        data["attachments"] = {"snapshot": {"path": snapshot}}
    return data


@pytest.fixture
def store(tmp_path):
    s = CaptionStore(tmp_path / "captions.sqlite")
    yield s
    s.close()


def test_store_keeps_captions_alerts_unchanged_spans_in_wal(store):
    cap = caption(0, "A courier in a yellow vest leaves a parcel at the door.", check=True)
    unchanged = {"v": 1, "type": "unchanged", "id": "porch:unchanged:1", "source": "porch", "ts": T0 + 60,
                 "segment": {**cap["segment"], "start_wall": T0 + 20, "end_wall": T0 + 60}, "score": 0.01}
    door = alert(cap, "door", snapshot="/var/snap/a.jpg")
    added = store.add_events([cap, door, unchanged, {"type": "stats"}])
    assert added == 3
    assert store.add_events([cap]) == 0  # a redelivered event is kept once
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
    rows = store.conn.execute(
        "SELECT kind, source, start_ts, end_ts, media_start, media_end, verdicts, snapshot, data FROM entries ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == ["caption", "alert", "unchanged"]
    kind, source, start, end, media_start, media_end, verdicts, snapshot, data = rows[0]
    assert (source, start, end, media_start, media_end) == ("porch", T0, T0 + 20, 0.0, 20.0)
    assert json.loads(verdicts) == {"door": "yes"}  # the alert's verdict is merged into its caption
    assert json.loads(data) == cap
    assert rows[1][6:8] == ('{"door": "yes"}', "/var/snap/a.jpg")
    assert rows[2][2:4] == (T0 + 20, T0 + 60)


def test_ranking_phrases_prefixes_sources_and_time_filters(store):
    texts = [
        "A red car parks in the driveway.",
        "A red car and a red bicycle; a red sign. The red car leaves.",
        "A dog runs across the lawn.",
        "A delivery van stops; the driver carries a box to the door.",
        "Someone delivers a parcel at the door.",
    ]
    events = [caption(i, t, start=T0 + i * 3600) for i, t in enumerate(texts)]
    events.append(caption(9, "A red car waits at the gate.", source="gate", start=T0 + 3600))
    store.add_events(events)
    with StoreReader(store.path) as reader:
        hits = reader.search("red car")
        assert [h.event_id for h in hits][0] == events[1]["id"]  # most occurrences ranks first (bm25)
        assert {h.source for h in hits} == {"porch", "gate"} and len(hits) == 3
        assert hits[0].score <= hits[1].score <= hits[2].score
        assert "\x02red\x03" in hits[0].snippet and hits[0].snippet_marked().count("[red]") >= 2
        assert "<mark>car</mark>" in hits[0].snippet_html()
        # a phrase matches the words in order only; a prefix finds deliver/delivery/delivers
        assert [h.text for h in reader.search('"red bicycle"')] == [texts[1]]
        assert reader.search('"bicycle red"') == []
        assert {h.text for h in reader.search("deliver*")} == {texts[3], texts[4]}
        assert {h.text for h in reader.search("delivering")} == {texts[4]}  # porter stemming
        assert [h.source for h in reader.search("red car", sources=["gate"])] == ["gate"]
        # time filters: the window is [since, until] on the entry's start
        window = reader.search("red car", since=T0 + 1800, until=T0 + 3600)
        assert {h.event_id for h in window} == {events[1]["id"], events[5]["id"]}
        assert reader.search("red car", since=T0 + 7200) == []
        assert reader.search("dog", until=T0 + 7199) == []
        assert len(reader.search("red", limit=1)) == 1


def test_time_zones_in_queries_and_output(store):
    # 23:30 UTC is already the next day in Berlin (UTC+1 in winter): "that day" differs by zone
    late = datetime(2026, 1, 15, 23, 30, tzinfo=timezone.utc).timestamp()
    store.add_events([caption(0, "a fox crosses the yard", start=late)])
    berlin, utc = zone("Europe/Berlin"), zone("UTC")
    with StoreReader(store.path) as reader:
        day_utc = (parse_when("2026-01-15", tz=utc), parse_when("2026-01-15", tz=utc, end=True))
        day_berlin = (parse_when("2026-01-15", tz=berlin), parse_when("2026-01-15", tz=berlin, end=True))
        assert len(reader.search("fox", since=day_utc[0], until=day_utc[1])) == 1
        assert reader.search("fox", since=day_berlin[0], until=day_berlin[1]) == []
        offset = parse_when("2026-01-16T00:29+01:00", tz=utc)
        assert len(reader.search("fox", until=offset)) == 0 and len(reader.search("fox", since=offset)) == 1
    assert iso(late, berlin) == "2026-01-16T00:30:00+01:00"
    assert iso(late, utc) == "2026-01-15T23:30:00+00:00"


def test_relative_times():
    now = datetime(2026, 3, 30, 12, 0, tzinfo=timezone.utc).timestamp()
    berlin = zone("Europe/Berlin")
    assert parse_when("30m", now=now) == now - 1800
    assert parse_when("2h", now=now) == now - 7200
    yesterday = parse_when("yesterday", tz=berlin, now=now)
    assert datetime.fromtimestamp(yesterday, berlin).isoformat() == "2026-03-29T00:00:00+01:00"
    # yesterday was the day clocks went forward: it ended at today's midnight, 23 h after it began
    end = parse_when("yesterday", tz=berlin, now=now, end=True)
    assert end - yesterday == timedelta(hours=23).total_seconds()
    assert parse_when("2026-03-29T10:00Z") == datetime(2026, 3, 29, 10, tzinfo=timezone.utc).timestamp()
    assert parse_when("1790000000") == 1790000000.0
    with pytest.raises(UsageError, match="cannot read the time"):
        parse_when("last tuesday")
    with pytest.raises(UsageError, match="unknown time zone"):
        zone("Mars/Olympus")


@pytest.mark.parametrize("query", ['door AND', '"unclosed phrase', "nosuchcolumn: door", "*", "NEAR(a b"])
def test_a_malformed_query_is_one_typed_error(store, query):
    store.add_events([caption(0, "a door opens")])
    with StoreReader(store.path) as reader, pytest.raises(QueryError) as info:
        reader.search(query)
    assert info.value.exit_code == 2 and "\n" not in str(info.value) and "not valid" in str(info.value)


def test_retention_by_age(store):
    store.add_events([caption(i, f"old scene {i}", start=T0 + i * 3600) for i in range(10)])
    deleted = store.enforce_retention(max_age_s=3 * 3600, max_bytes=None, now=T0 + 9 * 3600 + 1)
    assert deleted == 7  # started more than 3 h before now: 0..6
    with StoreReader(store.path) as reader:
        assert reader.count() == 3
        assert len(reader.search("scene", limit=50)) == 3  # the FTS index follows the deletes
        assert reader.search("6") == [] and len(reader.search("7")) == 1
        assert len(reader.search("scene", since=T0, until=T0 + 8 * 3600, limit=50)) == 2
    hours = store.conn.execute("SELECT hour FROM entry_hours ORDER BY hour").fetchall()
    assert [h for (h,) in hours] == [int((T0 + i * 3600) // 3600) for i in (7, 8, 9)]  # the emptied hours went


def test_retention_by_size_keeps_the_newest(store):
    filler = " ".join(f"word{i}" for i in range(150))
    store.add_events([caption(i, f"scene {i} {filler}", start=T0 + i * 20) for i in range(600)])
    before = store.used_bytes()
    limit = 256 * 1024
    assert before > 2 * limit
    store.enforce_retention(max_age_s=None, max_bytes=limit)
    assert store.used_bytes() <= limit
    assert store.file_bytes() < before  # freed pages go back to the file system (incremental vacuum)
    with StoreReader(store.path) as reader:
        kept = reader.count()
        assert 0 < kept < 600
        newest = reader.entries(since=0, until=2e9)
        assert newest[-1]["text"].startswith("scene 599 ")  # the oldest went first
        assert newest[0]["start"] == T0 + (600 - kept) * 20
        assert len(reader.search("word3", limit=1000)) == kept


V1_SCHEMA = """
PRAGMA auto_vacuum = INCREMENTAL;
CREATE TABLE entries (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    source TEXT NOT NULL, start_ts REAL NOT NULL, end_ts REAL NOT NULL, media_start REAL, media_end REAL,
    text TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX entries_start ON entries (start_ts);
CREATE INDEX entries_source_start ON entries (source, start_ts);
CREATE VIRTUAL TABLE entries_fts USING fts5 (text, content='entries', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER entries_ad AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
INSERT INTO entries (event_id, kind, source, start_ts, end_ts, text, data) VALUES
    ('porch@1', 'caption', 'porch', 1790000000, 1790000020, 'a cat sleeps on the porch', '{"type":"caption"}'),
    ('porch@1:door:raised', 'alert', 'porch', 1790000000, 1790000020, 'door raised: a cat',
     '{"type":"alert","rule":"door","verdict":"yes"}');
PRAGMA user_version = 1;
"""


def test_migration_from_version_1(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    store = CaptionStore(path)
    try:
        assert store.migrated_from == 1
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
        columns = {row[1] for row in store.conn.execute("PRAGMA table_info(entries)")}
        assert {"verdicts", "snapshot"} <= columns
        assert store.conn.execute("SELECT verdicts FROM entries WHERE kind = 'alert'").fetchone()[0] == '{"door":"yes"}'
        assert store.conn.execute("SELECT * FROM entry_hours").fetchall() == [(1790000000 // 3600, 1, 2)]
        store.add_events([caption(5, "a cat walks away", start=T0 + 100)])
        with StoreReader(path) as reader:
            old_and_new = {h.event_id for h in reader.search("cat", kinds=["caption"])}
            assert old_and_new == {"porch@1", caption(5, "", start=T0 + 100)["id"]}
            assert len(reader.search("cat")) == 3
            assert reader.summaries() == []
    finally:
        store.close()
    again = CaptionStore(path)  # opening a current store migrates nothing
    assert again.migrated_from == VERSION
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this streamproc knows"):
        CaptionStore(path)


def test_store_and_summaries_config():
    from streamproc.config import config_from_text
    from streamproc.errors import ConfigError

    base = "sources: [{name: porch, path: a.mp4}]\n"
    config = config_from_text(base + "store: {enabled: true, retention: {max_age: 7d, max_size_mb: 50}}\n"
                              "summaries: [{every: 1h, window: 6h, sources: [porch]}]\n")
    assert config.store.retention.max_age == 7 * 86400 and config.store.retention.max_size_mb == 50
    assert (config.summaries[0].every, config.summaries[0].window) == (3600, 6 * 3600)
    assert config_from_text(base + "store: {enabled: true}\nsummaries: [{every: 30m}]\n").summaries[0].window == 1800
    with pytest.raises(ConfigError, match="summaries need the caption store"):
        config_from_text(base + "summaries: [{every: 1h}]\n")
    with pytest.raises(ConfigError, match="unknown sources: gate"):
        config_from_text(base + "store: {enabled: true}\nsummaries: [{every: 1h, sources: [gate]}]\n")
    with pytest.raises(ConfigError, match=r"<config>:2: store.retention.max_age: .*duration"):
        config_from_text(base + "store: {retention: {max_age: soon}}\n")
