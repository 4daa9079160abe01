"""A store-and-forward outbox on disk: SQLite in WAL mode.

Every MQTT message that must not be lost is appended here before it is sent and deleted only after
the broker acknowledged it (PUBACK for QoS 1). After a broker outage or a process restart the
publisher sends whatever is left, oldest first. Sequence numbers come from AUTOINCREMENT, so they
only grow, across restarts too: "in order" means "by seq".

Bounded: when `max_messages` are waiting, `drop_oldest` deletes the oldest rows to make room and
`drop_newest` refuses the new message; either way the loss is counted (and kept in the file, so
a restart does not forget it) and logged.

Thread-safe: one connection guarded by a lock, shared by the producers (pipeline threads) and the
publisher thread. One process at a time: a second one opening the same outbox would send every
row twice, so an exclusive lock on `<path>.lock` refuses it (the OS drops the lock when a process
dies, so a killed process never blocks its successor).
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional, Sequence

from ..errors import SinkError

log = logging.getLogger(__name__)

DropPolicy = Literal["drop_oldest", "drop_newest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    qos      INTEGER NOT NULL,
    retain   INTEGER NOT NULL,
    event_id TEXT,
    created  REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    event_id: Optional[str] = None
    created: float = 0.0


@dataclass(frozen=True)
class Message:
    """A message to append (no seq yet)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    event_id: Optional[str] = None


class Outbox:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_messages: int = 100_000,
        when_full: DropPolicy = "drop_oldest",
        synchronous: Literal["full", "normal"] = "full",
    ):
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown policy {when_full!r}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.when_full = when_full
        self._lock = threading.Lock()
        self._db: Optional[sqlite3.Connection] = None
        self._lock_file = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_process_lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            self._reload_counts()
        except sqlite3.Error as exc:
            self._release_process_lock()
            raise SinkError(f"cannot open the outbox {self.path}: {exc}", retryable=False) from None
        self._last_drop_log = 0.0
        if self._count:
            log.info("outbox %s: %d messages pending from before", self.path, self._count)

    def _take_process_lock(self):
        handle = open(f"{self.path}.lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SinkError(
                f"the outbox {self.path} is in use by another streamproc process", retryable=False
            ) from None
        return handle

    def _release_process_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None

    # -- producers -------------------------------------------------------------------------------

    def append(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, event_id: Optional[str] = None
    ) -> Optional[int]:
        """Store one message; its seq, or None if the outbox was full and the policy dropped it."""
        seqs = self.append_many([Message(topic, payload, qos, retain, event_id)])
        return seqs[0] if seqs else None

    def append_many(self, messages: Sequence[Message]) -> list[int]:
        """Store messages atomically (an alert and its state topic go together, or not at all)."""
        if not messages:
            return []
        now = time.time()
        with self._lock:
            self._check_open()
            need = len(messages)
            room = self.max_messages - self._count
            seqs: list[int] = []
            self._db.execute("BEGIN IMMEDIATE")  # drops, counters and inserts commit together
            try:
                if need > room and (self.when_full == "drop_newest" or need > self.max_messages):
                    # drop_newest, or a group that cannot fit even into an empty outbox (tiny limit)
                    self._count_drop("dropped_newest", need)
                elif need > room:
                    self._drop_oldest(need - room)
                if need <= self.max_messages - self._count:
                    for m in messages:
                        cursor = self._db.execute(
                            "INSERT INTO outbox (topic, payload, qos, retain, event_id, created) VALUES (?,?,?,?,?,?)",
                            (m.topic, bytes(m.payload), int(m.qos), int(bool(m.retain)), m.event_id, now),
                        )
                        seqs.append(int(cursor.lastrowid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_counts()
                raise
            self._count += len(seqs)
            return seqs

    def _reload_counts(self) -> None:
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._dropped = {name: int(value) for name, value in self._db.execute("SELECT name, value FROM counters")}

    def _drop_oldest(self, n: int) -> None:
        cursor = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (n,)
        )
        self._count -= cursor.rowcount
        self._count_drop("dropped_oldest", cursor.rowcount)

    def _count_drop(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
        self._dropped[name] = self._dropped.get(name, 0) + n
        now = time.monotonic()
        if now - self._last_drop_log > 10.0:  # a flood of identical warnings helps nobody
            self._last_drop_log = now
            log.warning(
                "outbox %s is full (%d messages): %s (dropped so far: %s)",
                self.path, self.max_messages, name.replace("_", " "), self.dropped,
            )

    # -- the publisher ---------------------------------------------------------------------------

    def peek(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Up to `limit` messages with seq > `after_seq`, oldest first (nothing is removed)."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain, event_id, created FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def delete(self, seqs: int | Iterable[int]) -> int:
        """Remove acknowledged messages; returns how many were still there."""
        items = [seqs] if isinstance(seqs, int) else list(seqs)
        if not items:
            return 0
        with self._lock:
            self._check_open()
            cursor = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in items])
            removed = cursor.rowcount if cursor.rowcount >= 0 else 0
            self._count -= removed
            return removed

    # -- reporting -------------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return self._count

    def __len__(self) -> int:
        return self.count()

    @property
    def dropped(self) -> dict[str, int]:
        """Messages lost to the size bound, since the outbox file was created."""
        return {
            "oldest": self._dropped.get("dropped_oldest", 0),
            "newest": self._dropped.get("dropped_newest", 0),
        }

    def stats(self) -> dict[str, object]:
        return {"pending": self.count(), "max": self.max_messages, "policy": self.when_full, "dropped": self.dropped}

    def _check_open(self) -> None:
        if self._db is None:
            raise SinkError(f"the outbox {self.path} is closed", retryable=False)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            self._release_process_lock()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
