"""The caption store's writer: open (WAL, migrations), rows from events, batched inserts, retention.

One `CaptionStore` is used by one thread at a time (the store sink's writer thread, or a test);
readers open their own connections (`search.py`), which WAL lets run beside the writer.
Times are stored as UTC epoch seconds; output formats them timezone-aware.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import SinkError
from .schema import migrate

log = logging.getLogger(__name__)

STORED_TYPES = ("caption", "alert", "unchanged", "summary")
_ENTRY_COLUMNS = ("event_id", "kind", "source", "start_ts", "end_ts", "media_start", "media_end", "text", "data",
                  "verdicts", "snapshot")
_SUMMARY_COLUMNS = ("event_id", "source", "start_ts", "end_ts", "created_ts", "text", "ranges", "model", "data")


class StoreError(SinkError):
    """The caption store cannot be opened or written (path, permissions, disk, a newer schema)."""


def connect(path: Path, *, readonly: bool = False, timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit)."""
    if readonly:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return conn


@dataclass(frozen=True)
class Row:
    """One entries row, ready to insert."""

    event_id: str
    kind: str
    source: str
    start_ts: float
    end_ts: float
    media_start: Optional[float]
    media_end: Optional[float]
    text: str
    data: str
    verdicts: Optional[str] = None
    snapshot: Optional[str] = None

    def values(self) -> tuple:
        return tuple(getattr(self, c) for c in _ENTRY_COLUMNS)


def entry_row(data: dict[str, Any]) -> Optional[Row]:
    """The row of a caption, alert or unchanged event's JSON (None for other types)."""
    kind = data.get("type")
    if kind not in ("caption", "alert", "unchanged") or not data.get("source"):
        return None
    segment = data.get("segment") or {}
    ts = float(data.get("ts") or time.time())
    start = float(segment.get("start_wall") or data.get("start_wall") or ts)
    end = float(segment.get("end_wall") or data.get("end_wall") or start)
    verdicts = data.get("verdicts") or data.get("rules")
    if kind == "alert":
        text = f"{data.get('rule', '')} {data.get('transition', '')}: {data.get('reason', '')}".strip()
        verdicts = {data.get("rule", ""): data.get("verdict", "unknown")}
    elif kind == "unchanged":
        text = str(data.get("text") or data.get("reason") or "unchanged")
    else:
        text = str(data.get("text") or "")
    snapshot = ((data.get("attachments") or {}).get("snapshot") or {}).get("path")
    return Row(
        event_id=str(data["id"]), kind=kind, source=str(data["source"]), start_ts=start, end_ts=max(start, end),
        media_start=_float(segment.get("start")), media_end=_float(segment.get("end")), text=text,
        data=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        verdicts=json.dumps(verdicts, ensure_ascii=False) if isinstance(verdicts, dict) and verdicts else None,
        snapshot=str(snapshot) if snapshot else None,
    )


def summary_row(data: dict[str, Any]) -> tuple:
    return (
        str(data["id"]), str(data["source"]), float(data["start"]), float(data["end"]), float(data["ts"]),
        str(data["text"]), json.dumps(data.get("ranges", [])), str(data.get("model", "")),
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
    )


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


class CaptionStore:
    """The writing side of the store file."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL"):
        self.path = Path(path)
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = connect(self.path)
            # Before anything is written (WAL mode writes the header): lets retention give freed
            # pages back to the file system. A no-op on a store that has tables already.
            self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a process crash; a power cut may lose the last ones.
            self.conn.execute(f"PRAGMA synchronous = {synchronous}")
            self.migrated_from = migrate(self.conn)
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"cannot open the caption store at {self.path}: {error}", retryable=False) from None

    # -- writing --------------------------------------------------------------------------------

    def add_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Insert the JSON of caption/alert/unchanged/summary events in one transaction; returns
        rows added (a repeated event id is kept once). An alert's verdict is also merged into the
        verdicts of the caption of its segment."""
        entries, summaries, verdicts = [], [], []
        for data in events:
            if data.get("type") == "summary":
                summaries.append(summary_row(data))
                continue
            row = entry_row(data)
            if row is None:
                continue
            entries.append(row.values())
            if row.kind == "alert" and data.get("caption_id"):
                verdicts.append((data.get("rule", ""), data.get("verdict", "unknown"), str(data["caption_id"])))
        if not (entries or summaries):
            return 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            added = 0 if not entries else self.conn.executemany(
                f"INSERT OR IGNORE INTO entries ({', '.join(_ENTRY_COLUMNS)}) VALUES ({', '.join('?' * len(_ENTRY_COLUMNS))})",
                entries,
            ).rowcount
            added += 0 if not summaries else self.conn.executemany(
                f"INSERT OR IGNORE INTO summaries ({', '.join(_SUMMARY_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_SUMMARY_COLUMNS))})",
                summaries,
            ).rowcount
            self.conn.executemany(
                "UPDATE entries SET verdicts = json_set(coalesce(verdicts, '{}'), '$.' || json_quote(?), ?) "
                "WHERE event_id = ? AND kind = 'caption'",
                verdicts,
            )
            self.conn.execute("COMMIT")
            return added
        except sqlite3.Error as error:
            self._rollback()
            raise StoreError(f"the caption store at {self.path} could not be written: {error}", retryable=True) from None

    def add_rows(self, rows: Iterable[tuple]) -> None:
        """Bulk insert of prepared `Row.values()` tuples (the benchmark's 1M rows)."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            f"INSERT OR IGNORE INTO entries ({', '.join(_ENTRY_COLUMNS)}) VALUES ({', '.join('?' * len(_ENTRY_COLUMNS))})",
            rows,
        )
        self.conn.execute("COMMIT")

    # -- retention ------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes in pages that hold data (the file keeps free pages until they are vacuumed)."""
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def file_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def enforce_retention(
        self, max_age_s: Optional[float], max_bytes: Optional[int], now: Optional[float] = None
    ) -> int:
        """Delete rows older than `max_age_s`, then the oldest rows until the data fits `max_bytes`;
        give the freed pages back to the file system. Returns rows deleted."""
        now = time.time() if now is None else now
        deleted = 0
        try:
            if max_age_s is not None:
                cutoff = now - max_age_s
                deleted += self._delete("DELETE FROM entries WHERE start_ts < ?", (cutoff,))
                deleted += self._delete("DELETE FROM summaries WHERE end_ts < ?", (cutoff,))
            if max_bytes is not None:
                for _ in range(8):  # each round deletes in proportion to the excess; FTS merges lag a little
                    used = self.used_bytes()
                    if used <= max_bytes:
                        break
                    count = self.conn.execute("SELECT count(*) FROM entries").fetchone()[0]
                    if count == 0:
                        break
                    share = min(1.0, 1.0 - 0.9 * max_bytes / used)  # aim 10% below the limit
                    batch = max(1, int(count * share))
                    deleted += self._delete(
                        "DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY start_ts LIMIT ?)", (batch,)
                    )
                    oldest = self.conn.execute("SELECT min(start_ts) FROM entries").fetchone()[0]
                    if oldest is not None:
                        self._delete("DELETE FROM summaries WHERE end_ts < ?", (oldest,))
                    self.conn.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('merge', 500)")
                    self.conn.execute("PRAGMA incremental_vacuum")
            if deleted:  # hours whose rows are all gone; a partly deleted hour keeps a wider range
                self._delete("DELETE FROM entry_hours WHERE max_id < (SELECT coalesce(min(id), 1 << 62) FROM entries)", ())
                self.conn.execute("PRAGMA incremental_vacuum")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            self._rollback()
            raise StoreError(f"retention on the caption store at {self.path} failed: {error}", retryable=True) from None
        if deleted:
            log.info("caption store: retention removed %d rows", deleted)
        return deleted

    def _delete(self, sql: str, args: tuple) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        cursor = self.conn.execute(sql, args)
        self.conn.execute("COMMIT")
        return max(cursor.rowcount, 0)

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
