"""The store's tables and the migrations between their versions (`PRAGMA user_version`).

A new database runs every migration in order, so a fresh store and an upgraded one end up with
the same tables. Each migration runs in one transaction with the version bump: a crash half-way
leaves the previous version, and the next open tries again.

Version 1: `entries` (one row per caption, alert or unchanged span; times as UTC epoch seconds)
           and its FTS5 index, kept in step by triggers.
Version 2: rule verdicts and the snapshot path on entries; the `summaries` table.
Version 3: `entry_hours`, the smallest and largest entry id that starts in each hour, kept by a
           trigger: a search's time window becomes a rowid range in a few index lookups
           instead of a scan of the start-time index (15 ms at 1M rows). Retention only removes
           whole stale hours, so a range may be wider than needed, never narrower.
"""
from __future__ import annotations

import sqlite3

# The FTS5 tokenizer: porter stemming so "walking" finds "walks"; accents folded.
TOKENIZE = "porter unicode61 remove_diacritics 2"

_V1 = f"""
CREATE TABLE entries (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    start_ts    REAL NOT NULL,
    end_ts      REAL NOT NULL,
    media_start REAL,
    media_end   REAL,
    text        TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX entries_start ON entries (start_ts);
CREATE INDEX entries_source_start ON entries (source, start_ts);
CREATE VIRTUAL TABLE entries_fts USING fts5 (text, content='entries', content_rowid='id', tokenize='{TOKENIZE}');
CREATE TRIGGER entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER entries_ad AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""

_V2 = """
ALTER TABLE entries ADD COLUMN verdicts TEXT;
ALTER TABLE entries ADD COLUMN snapshot TEXT;
UPDATE entries SET verdicts = json_object(json_extract(data, '$.rule'), json_extract(data, '$.verdict'))
    WHERE kind = 'alert' AND json_valid(data) AND json_extract(data, '$.rule') IS NOT NULL;
CREATE TABLE summaries (
    id         INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    source     TEXT NOT NULL,
    start_ts   REAL NOT NULL,
    end_ts     REAL NOT NULL,
    created_ts REAL NOT NULL,
    text       TEXT NOT NULL,
    ranges     TEXT NOT NULL,
    model      TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX summaries_source_end ON summaries (source, end_ts);
"""

_V3 = """
CREATE TABLE entry_hours (hour INTEGER PRIMARY KEY, min_id INTEGER NOT NULL, max_id INTEGER NOT NULL);
INSERT INTO entry_hours (hour, min_id, max_id)
    SELECT CAST(start_ts / 3600 AS INTEGER), min(id), max(id) FROM entries GROUP BY 1;
CREATE TRIGGER entries_hours AFTER INSERT ON entries BEGIN
    INSERT INTO entry_hours (hour, min_id, max_id) VALUES (CAST(new.start_ts / 3600 AS INTEGER), new.id, new.id)
        ON CONFLICT (hour) DO UPDATE SET min_id = min(min_id, excluded.min_id), max_id = max(max_id, excluded.max_id);
END;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)  # MIGRATIONS[i] takes version i to version i + 1
VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to VERSION; return the version it had. Refuses a newer database."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > VERSION:
        raise sqlite3.DatabaseError(
            f"the store has schema version {found}, newer than this streamproc knows ({VERSION}): upgrade streamproc"
        )
    for version in range(found, VERSION):
        statements = [s.strip() for s in _split(MIGRATIONS[version]) if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _split(script: str) -> list[str]:
    """Statements of a migration script; a trigger body's inner semicolons stay with it."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements
