"""A store-and-forward outbox on disk: SQLite in WAL mode.

Every MQTT message that must not be lost is appended here before it is sent and deleted only after
the broker acknowledged it (PUBACK for QoS 1). After a broker outage or a process restart the
publisher sends whatever is left, oldest first. Sequence numbers come from AUTOINCREMENT, so they
only grow, across restarts too: "in order" means "by seq".

Bounded: when `max_messages` are waiting, `drop_oldest` deletes the oldest rows to make room and
`drop_newest` refuses the new message; either way the loss is counted (and kept in the file, so
a restart does not forget it) and logged.

A full disk is back-pressure, not a silent loss: when SQLite cannot write (SQLITE_FULL, or an
I/O error with the disk out of space) the outbox says so in one line (path and free space) and
keeps the messages in a bounded memory overflow, in order, behind the stored rows; they are
written as soon as space returns (each publisher poll and append tries again, at most twice a
second). What the overflow cannot hold, or what is still in it at close, is lost: counted as
`dropped["disk_full"]` and logged. `lost_since_open()` tells the service whether this run lost
anything (its exit code says so).

Thread-safe: one connection guarded by a lock, shared by the producers (pipeline threads) and the
publisher thread. One process at a time: a second one opening the same outbox would send every
row twice, so an exclusive lock on `<path>.lock` refuses it (the OS drops the lock when a process
dies, so a killed process never blocks its successor).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional, Sequence

from ..errors import SinkError

log = logging.getLogger(__name__)

DropPolicy = Literal["drop_oldest", "drop_newest"]

_RETRY_WRITE_S = 0.5  # while the disk is full, try to write the overflow at most this often
_DROP_KINDS = {"dropped_oldest": "oldest", "dropped_newest": "newest", "dropped_disk_full": "disk_full"}


class _DiskFull(Exception):
    """SQLite could not write: the disk (or the file's quota) is full."""


def _is_disk_full(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "full" in text or "disk i/o error" in text


def free_space(path: Path) -> str:
    """Free space on the filesystem holding `path`, for messages ('12.0 MB free')."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "free space unknown"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit} free" if unit == "bytes" else f"{free:.1f} {unit} free"
        free /= 1024
    return ""

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
        memory_overflow: int = 10_000,
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
        self.memory_overflow = max(0, memory_overflow)
        self._overflow: deque[list[Message]] = deque()  # groups held while the disk is full
        self._overflow_count = 0
        self._unsaved_drops: dict[str, int] = {}  # counted while the counters table could not be written
        self._next_write_try = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(
                f"cannot create the outbox folder {self.path.parent}: {exc.strerror or exc} "
                "(check sinks.outbox.path)", retryable=False,
            ) from None
        self._lock_file = self._take_process_lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            self._reload_counts()
        except sqlite3.Error as exc:
            self._release_process_lock()
            space = f" ({free_space(self.path.parent)})" if _is_disk_full(exc) else ""
            raise SinkError(f"cannot open the outbox {self.path}: {exc}{space}", retryable=False) from None
        self._dropped_at_open = dict(self._dropped)
        self._last_drop_log = 0.0
        if self._count:
            log.info("outbox %s: %d messages pending from before", self.path, self._count)

    def _take_process_lock(self):
        try:
            handle = open(f"{self.path}.lock", "a+")
        except OSError as exc:
            raise SinkError(
                f"cannot open the outbox {self.path}: {exc.strerror or exc} (check sinks.outbox.path)",
                retryable=False,
            ) from None
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
        """Store messages atomically (an alert and its state topic go together, or not at all).

        Their seqs; empty if the bound dropped them, or if the disk is full and they wait in
        memory (they get seqs, in order, once written)."""
        if not messages:
            return []
        group = list(messages)
        with self._lock:
            self._check_open()
            if self._overflow:
                self._write_overflow()
            if self._overflow:  # keep the order: behind what is already waiting
                self._hold(group)
                return []
            try:
                return self._insert([group])
            except _DiskFull as exc:
                self._disk_full(exc)
                self._hold(group)
                return []

    def _insert(self, groups: list[list[Message]]) -> list[int]:
        """One transaction: per group, drops for the bound and inserts; the counters. Raises
        _DiskFull. (Several groups at once: one commit, not one WAL frame set per group.)"""
        now = time.time()
        seqs: list[int] = []
        count, dropped = self._count, dict(self._dropped)
        try:
            self._db.execute("BEGIN IMMEDIATE")  # drops, counters and inserts commit together
            self._save_unsaved_drops()
            for messages in groups:
                seqs.extend(self._insert_group(messages, now))
            self._db.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls a transaction back by itself on some errors (SQLITE_FULL among them);
            # a second ROLLBACK would fail with "no transaction is active" and hide the cause.
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._count, self._dropped = count, dropped
            if isinstance(exc, sqlite3.Error) and _is_disk_full(exc):
                raise _DiskFull(str(exc)) from None
            raise
        self._unsaved_drops.clear()
        return seqs

    def _insert_group(self, messages: list[Message], now: float) -> list[int]:
        need = len(messages)
        room = self.max_messages - self._count
        seqs: list[int] = []
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
            self._count += len(seqs)
        return seqs

    # -- a full disk -----------------------------------------------------------------------------

    def _shrink_wal(self) -> None:
        """Give the WAL's space back to the filesystem (its frames are in the database file)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass

    def _disk_full(self, exc: Exception) -> None:
        if self._overflow:
            return  # said already
        log.warning(  # nothing is lost yet: back-pressure; losses are errors (_lose, close)
            "outbox %s: cannot write, the disk is full (%s; %s); keeping up to %d messages in memory "
            "until space returns", self.path, exc, free_space(self.path.parent), self.memory_overflow,
        )
        self._next_write_try = time.monotonic() + _RETRY_WRITE_S

    def _hold(self, group: list[Message]) -> None:
        """Keep `group` in the memory overflow, within its bound (the drop policy decides)."""
        if self.memory_overflow and len(group) <= self.memory_overflow:
            while self._overflow_count + len(group) > self.memory_overflow and self.when_full == "drop_oldest":
                lost = self._overflow.popleft()
                self._overflow_count -= len(lost)
                self._lose(len(lost))
            if self._overflow_count + len(group) <= self.memory_overflow:
                self._overflow.append(group)
                self._overflow_count += len(group)
                return
        self._lose(len(group))

    def _lose(self, n: int, *, quiet: bool = False) -> None:
        self._dropped["dropped_disk_full"] = self._dropped.get("dropped_disk_full", 0) + n
        self._unsaved_drops["dropped_disk_full"] = self._unsaved_drops.get("dropped_disk_full", 0) + n
        now = time.monotonic()
        if not quiet and now - self._last_drop_log > 10.0:
            self._last_drop_log = now
            log.error(
                "outbox %s: the disk is still full (%s) and %d messages wait in memory: %d lost so far",
                self.path, free_space(self.path.parent), self._overflow_count, self._dropped["dropped_disk_full"],
            )

    def _save_unsaved_drops(self) -> None:
        for name, n in self._unsaved_drops.items():
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    def _write_overflow(self, force: bool = False) -> None:
        """Write the held groups, oldest first, while the disk takes them (lock held)."""
        now = time.monotonic()
        if not force and now < self._next_write_try:
            return
        self._shrink_wal()
        written = 0
        while self._overflow:
            batch: list[list[Message]] = []
            size = 0
            for group in self._overflow:  # a few hundred per commit
                if batch and size + len(group) > 500:
                    break
                batch.append(group)
                size += len(group)
            try:
                self._insert(batch)
            except _DiskFull:
                self._next_write_try = now + _RETRY_WRITE_S
                return
            for _ in batch:
                self._overflow.popleft()
            self._overflow_count -= size
            written += size
        log.warning("outbox %s: space is back (%s); wrote %d messages kept in memory",
                    self.path, free_space(self.path.parent), written)

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
            if self._overflow:
                self._write_overflow()
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
            try:
                cursor = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in items])
            except sqlite3.Error as exc:  # the rows stay and go out again later (at least once)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.warning("outbox %s: cannot delete %d delivered messages yet: %s", self.path, len(items), exc)
                return 0
            removed = cursor.rowcount if cursor.rowcount >= 0 else 0
            self._count -= removed
            if self._overflow:  # deleted rows free pages for what waits in memory
                self._next_write_try = 0.0
                self._write_overflow()
            return removed

    # -- reporting -------------------------------------------------------------------------------

    def count(self) -> int:
        """Messages waiting: stored, and held in memory while the disk is full."""
        with self._lock:
            return self._count + self._overflow_count

    def in_memory(self) -> int:
        with self._lock:
            return self._overflow_count

    def __len__(self) -> int:
        return self.count()

    @property
    def dropped(self) -> dict[str, int]:
        """Messages lost since the outbox file was created: to the size bound (oldest, newest)
        and to a full disk (disk_full)."""
        return {short: self._dropped.get(name, 0) for name, short in _DROP_KINDS.items()}

    def lost_since_open(self) -> int:
        """Messages this process lost (bound or full disk): non-zero makes the run's exit code 6."""
        return sum(self._dropped.get(n, 0) - self._dropped_at_open.get(n, 0) for n in _DROP_KINDS)

    def stats(self) -> dict[str, object]:
        return {
            "pending": self.count(), "in_memory": self.in_memory(), "max": self.max_messages,
            "policy": self.when_full, "dropped": self.dropped,
        }

    def _check_open(self) -> None:
        if self._db is None:
            raise SinkError(f"the outbox {self.path} is closed", retryable=False)

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._overflow:
                self._write_overflow(force=True)
                if self._overflow:
                    lost = self._overflow_count
                    self._overflow.clear()
                    self._overflow_count = 0
                    self._lose(lost, quiet=True)
                    log.error(
                        "outbox %s: the disk is still full (%s): %d messages kept in memory are lost",
                        self.path, free_space(self.path.parent), lost,
                    )
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            self._release_process_lock()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
