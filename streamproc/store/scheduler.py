"""Scheduled summaries in the service (`summaries:` in the config).

Every `every`, for each configured source, the captions and alerts stored over the last `window`
are summarised (summarize.py) and handed to the pipeline as a `summary` event: the store sink
keeps it, the MQTT sink publishes it on `<prefix>/<source>/summary`.

The model: a dedicated backend instance, made from the pipeline's backend factory at the first
summary and kept. Sharing a worker's backend was the alternative; it was not taken because
  - the hf backend is not safe to call from two threads, so a lock around it would hold a camera's
    captions back for the whole map-reduce (many model calls), and the live lanes would drop;
  - on the TPU, an extra engine over the same bmodel costs only its activations and KV cache
    (libbmrt shares the weights within a process), and launches on the device already take turns.
With the hf backend the cost is a second copy of the weights in memory; docs/store.md says so.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..config.store import SummaryConfig
from ..events import Event, summary_event

log = logging.getLogger(__name__)


class SummaryScheduler:
    def __init__(
        self,
        schedules: Sequence[SummaryConfig],
        store_path: Any,
        source_names: Sequence[str],
        backend_factory: Callable[[], Any],
        emit: Callable[[Event], None],
        *,
        before_read: Optional[Callable[[], Any]] = None,
        clock: Callable[[], float] = time.time,
    ):
        self.schedules = list(schedules)
        self.store_path = store_path
        self.source_names = list(source_names)
        self.backend_factory = backend_factory
        self.emit = emit
        self.before_read = before_read
        self.clock = clock
        self.backend: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        now = clock()
        self._due = [now + s.every for s in self.schedules]  # the first summary after one period
        self.counters = {"summaries": 0, "failures": 0}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="summaries", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            if self.backend is not None:
                try:
                    self.backend.abort()  # a summary in progress must not hold the shutdown
                except Exception:
                    pass
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("the summary scheduler did not stop; its backend is left open")
                return
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as error:
                log.error("closing the summary backend failed: %s", error)
            self.backend = None

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, max(0.05, min(self._due, default=60.0) - self.clock()))):
            self.run_due()

    def run_due(self) -> list[Event]:
        """Make the summaries that are due now (the loop calls it; tests may too)."""
        events = []
        now = self.clock()
        for index, schedule in enumerate(self.schedules):
            if now < self._due[index]:
                continue
            self._due[index] = now + schedule.every
            for source in schedule.sources or self.source_names:
                if self._stop.is_set():
                    return events
                event = self._summarise(schedule, source, now - float(schedule.window or schedule.every), now)
                if event is not None:
                    events.append(event)
        return events

    def _summarise(self, schedule: SummaryConfig, source: str, start: float, end: float) -> Optional[Event]:
        from .search import StoreReader
        from .summarize import Summarizer

        try:
            if self.before_read is not None:
                self.before_read()  # the store sink writes behind the pipeline: let it catch up
            with StoreReader(self.store_path) as reader:
                entries = reader.entries(since=start, until=end, sources=[source])
            if not entries:
                log.info("summary of %s: nothing stored in the window; none published", source)
                return None
            if self.backend is None:
                self.backend = self.backend_factory()
            summarizer = Summarizer(
                self.backend, context_tokens=schedule.context_tokens, max_new_tokens=schedule.max_new_tokens
            )
            summary = summarizer.summarize(entries, start=start, end=end, who=source)
        except Exception as error:  # one failed summary must not end the schedule
            self.counters["failures"] += 1
            log.error("summary of %s failed: %s", source, error)
            return None
        event = summary_event(
            source, start=start, end=end, text=summary.text, ranges=summary.ranges, entries=summary.entries,
            model=summary.model,
        )
        self.counters["summaries"] += 1
        log.info("summary of %s: %d entries in %d model calls", source, summary.entries, len(summary.steps))
        self.emit(event)
        return event
