"""The caption store sink: every caption, alert, unchanged span and summary into SQLite + FTS5.

`handle()` never blocks the pipeline: it serialises the event and puts it on a bounded queue; a
writer thread takes what is waiting (up to `batch_size`) and inserts it in one transaction, and
enforces retention every `retention.check_every_s`. A full queue drops the event (counted).

A store that cannot be opened (read-only path, full disk, a newer schema) does not stop the
service: the error is logged once, `stats()` says so, and events handed in are counted as
`unavailable`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Optional

from ..config.store import StoreConfig
from ..events import Event
from ..bus import BasePlugin

log = logging.getLogger(__name__)

_STORED = frozenset(("caption", "alert", "unchanged", "summary"))
_FLUSH = object()  # a marker: the writer sets the event it carries once everything before it is written


class StoreSink(BasePlugin):
    name = "store"

    def __init__(self, config: StoreConfig):
        self.config = config
        self.store: Any = None  # store.db.CaptionStore once started
        self.error: Optional[str] = None
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=config.queue_size)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._counter_lock = threading.Lock()
        self.counters = {"stored": 0, "dropped": 0, "unavailable": 0, "write_errors": 0, "retention_deleted": 0,
                         "batches": 0}

    @property
    def available(self) -> bool:
        return self.store is not None

    def start(self) -> None:
        from .db import CaptionStore, StoreError

        try:
            self.store = CaptionStore(self.config.path)
        except StoreError as error:
            self.error = str(error)
            log.error("%s; the service runs on without the caption store", error)
            return
        if self.store.migrated_from:
            log.info("caption store %s migrated from schema version %d", self.config.path, self.store.migrated_from)
        self._thread = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._thread.start()

    def handle(self, event: Event) -> None:
        if event.type not in _STORED:
            return
        if self.store is None:
            self._count("unavailable")
            return
        try:
            self._queue.put_nowait(event.to_dict())
        except queue.Full:
            dropped = self._count("dropped")
            if dropped in (1, 10, 100) or dropped % 1000 == 0:
                log.warning("caption store: the writer is behind; %d events dropped", dropped)

    def _count(self, name: str, amount: int = 1) -> int:
        with self._counter_lock:  # model workers hand events in from several threads
            self.counters[name] += amount
            return self.counters[name]

    def flush(self, timeout_s: float = 10.0) -> bool:
        if self._thread is None or not self._thread.is_alive():
            return self._queue.empty()
        done = threading.Event()
        try:
            self._queue.put((_FLUSH, done), timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self.flush(timeout_s)
            self._stop.set()
            self._thread.join(timeout_s)
            self._thread = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def stats(self) -> dict[str, Any]:
        return {"available": self.available, "error": self.error, "queued": self._queue.qsize(), **self.counters}

    # -- the writer thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        retention = self.config.retention
        max_bytes = None if retention.max_size_mb is None else int(retention.max_size_mb * 1024 * 1024)
        next_check = 0.0  # at once: a store left over the limits by a previous run is trimmed on start
        while not self._stop.is_set():
            if time.monotonic() >= next_check:
                self._retention(retention.max_age, max_bytes)
                next_check = time.monotonic() + retention.check_every_s
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            batch, flushes = [], []
            item = first
            while True:
                if isinstance(item, tuple) and item and item[0] is _FLUSH:
                    flushes.append(item[1])
                else:
                    batch.append(item)
                if len(batch) >= self.config.batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            for done in flushes:
                done.set()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        from .db import StoreError

        try:
            self._count("stored", self.store.add_events(batch))
            self._count("batches")
        except StoreError as error:
            self._count("write_errors")
            self._count("dropped", len(batch))
            self.error = str(error)
            log.error("%s (%d events lost)", error, len(batch))

    def _retention(self, max_age: Optional[float], max_bytes: Optional[int]) -> None:
        from .db import StoreError

        try:
            self._count("retention_deleted", self.store.enforce_retention(max_age, max_bytes))
        except StoreError as error:
            self._count("write_errors")
            log.error("%s", error)
