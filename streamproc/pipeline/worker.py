"""A model worker: take a segment from the lanes, describe it, publish its events, ack.

One worker per backend instance (the TPU backend: one engine per worker over one loaded bmodel).
Workers take segments in the lanes' order (urgency or round robin: the lanes' job), and ack a segment only after
its events are published, so a camera's captions, rule states and alerts come out in order.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..bus import Publisher
from ..events import Event
from ..frames import Segment
from ..lanes import SegmentLanes
from .describer import Described
from .supervisor import WorkerGaveUp, WorkerSupervisor

log = logging.getLogger(__name__)

SkippedEvents = Callable[[Segment], Sequence[Event]]  # a skipped segment's "unchanged" + repeated verdicts


class ModelWorker:
    def __init__(
        self, supervisor: WorkerSupervisor, lanes: SegmentLanes, publisher: Publisher, skipped_events: SkippedEvents,
        is_paused: Callable[[str], bool], forget: Callable[[str], None], metrics: Any, stop: threading.Event,
    ):
        self.supervisor = supervisor
        self.index = supervisor.index
        self.lanes = lanes
        self.publisher = publisher
        self.skipped_events = skipped_events
        self.is_paused = is_paused
        self.forget = forget  # the gate's reference frames of a source were never described
        self.metrics = metrics
        self.stop = stop
        self.busy_since: Optional[float] = None  # monotonic start of the current call (the watchdog reads it)
        self.described = 0
        self.failed = 0
        self.gave_up = False
        self.thread = threading.Thread(target=self._run, name=f"model-{self.index}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            segment = self.lanes.get(timeout=0.5)
            if segment is None:
                continue
            try:
                self._handle(segment)
            except WorkerGaveUp:
                self.gave_up = True
                return
            finally:  # only now may the camera's next segment go: its events stay in segment order
                self.lanes.ack(segment)

    def _handle(self, segment: Segment) -> None:
        if self.is_paused(segment.source):  # switched off at run time: not described
            self.metrics.paused_segments.labels(segment.source).inc()
            return
        if segment.light:  # the gate found it unchanged: no model
            self.publisher.publish(self.skipped_events(segment), segment)
            return
        self.metrics.queue_depth.labels(segment.source).set(self.lanes.depth(segment.source))
        self.busy_since = time.monotonic()
        def early(events: list[Event]) -> None:  # alerts from verdicts streamed before the caption
            if events:
                self.publisher.publish(events, segment)

        try:
            described = self.supervisor.describe(segment, early)
        finally:
            self.busy_since = None
        if described is None:
            self.failed += 1
            self.forget(segment.source)
            return
        self.described += 1
        self._count(described)
        self.publisher.publish(described.events, segment)

    def _count(self, described: Described) -> None:
        result, metrics = described.result, self.metrics
        metrics.described.labels(described.segment.source).inc()
        metrics.request_seconds.observe(described.seconds)
        metrics.first_token_seconds.observe(result.timings.first_token_s)
        metrics.generated.inc(result.generated_tokens)
        if result.tokens_per_s:
            metrics.tokens_per_s.set(result.tokens_per_s)
