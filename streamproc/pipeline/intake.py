"""Intake: one thread per source, from decoder to segmenter to the gate stage to the lanes.

A segment the gate found unchanged is published at once by this thread when its camera has
nothing waiting or in flight (nothing of the camera can come out before it, and only this thread
adds to the camera's lane); otherwise it goes through the lane behind the camera's earlier
segments, so that its "unchanged" event and repeated verdicts keep the camera's order.

A live source retries its own connection (`VideoSource`, with the source's `reconnect` policy:
`max_attempts` failures in a row and it gives up); this thread does not retry a source error a
second time, or `max_attempts: 2` would mean "forever". It restarts the stage only after an
unexpected error (a bug), with the shared supervision rule (`streamproc.supervise`): jittered,
capped backoff and a restart budget per window. A file source ends when the file does, or with
its error. One failed source never stops the others.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..bus import Publisher
from ..config.ingest import SamplingConfig, SourceConfig
from ..errors import StreamprocError
from ..events import status_event
from ..frames import Frame, Segment
from ..gate import GateStage
from ..ingest.segmenter import Segmenter
from ..ingest.sources import SourceStatus, VideoSource
from ..ingest.state import SourceState, checked_move
from ..lanes import SegmentLanes
from ..supervise import Backoff, GiveUp, RestartBudget, Supervisor
from ..urgency import Cuts, OnsetCutter
from .worker import SkippedEvents

log = logging.getLogger(__name__)

# Unexpected errors (bugs) restart the intake stage at most this often; past it the source fails
# rather than spin.
_RESTARTS_PER_WINDOW = 5
_RESTART_WINDOW_S = 300.0

# Source states as plug-ins know them (events.SOURCE_STATES); a first connection attempt is not
# news (the retained status already says offline), so it is not published.
PUBLISHED_STATE = {
    SourceState.RECONNECTING: "reconnecting",
    SourceState.ONLINE: "online",
    SourceState.FINISHED: "offline",
    SourceState.STOPPED: "offline",
    SourceState.FAILED: "offline",
}


@dataclass(frozen=True)
class IntakeParts:
    """What every source's intake shares, built once by the pipeline."""

    sampling: SamplingConfig
    make_segmenter: Callable[[str, Optional[OnsetCutter]], Segmenter]
    gate: GateStage
    lanes: SegmentLanes
    publisher: Publisher
    skipped_events: SkippedEvents
    metrics: Any
    cuts: Cuts = Cuts(False)  # the urgency policy's onset and hold cuts (streamproc/urgency.py)

    def cutter(self, source: str) -> Optional[OnsetCutter]:
        """The source's onset cutter over its gate's change check; None without cuts or gate."""
        moved = self.gate.moved_check(source) if self.cuts.enabled else None
        return OnsetCutter(self.cuts, moved) if moved is not None else None


class SourceRunner:
    def __init__(self, config: SourceConfig, parts: IntakeParts, stop: threading.Event):
        self.config = config
        self.name = config.name
        self.parts = parts
        self.metrics = parts.metrics
        self.stop = stop
        self.state = SourceState.IDLE
        self.error: Optional[str] = None  # the last error, one line
        self.failed = False  # ended with an error (a file that cannot be read, a source that gave up)
        self.done = threading.Event()
        self.source: Optional[VideoSource] = None
        self._been_online = False
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    def status(self, status: SourceStatus) -> None:
        """A new state of this source: metrics, and a `status` event on the bus."""
        self.state = checked_move(self.name, self.state, status.state)
        self.metrics.source_up.labels(self.name).set(1 if status.state is SourceState.ONLINE else 0)
        if status.state is SourceState.ONLINE:
            if self._been_online:  # back after a drop: a reconnect (failed attempts are not)
                self.metrics.reconnects.labels(self.name).inc()
            self._been_online = True
        published = PUBLISHED_STATE.get(status.state)
        if published is not None:
            self.parts.publisher.publish([status_event(self.name, published, status.detail)])

    def _run(self) -> None:
        policy = self.config.reconnect
        supervisor = Supervisor(
            self.name,
            backoff=Backoff(policy.initial_delay_s, policy.max_delay_s, policy.multiplier),
            budget=RestartBudget(_RESTARTS_PER_WINDOW, _RESTART_WINDOW_S),
        )
        try:
            while not self.stop.is_set():
                try:
                    self._read_once()
                    return  # a file ended, or the service stops
                except StreamprocError as error:  # unreadable source, a live one that gave up, or
                    self._fail(str(error))  # frames the model cannot take: retried already, if at all
                    log.error("%s", error)
                    return
                except Exception:  # a bug must not take the other sources down
                    delay = self._restart_after_bug(supervisor)
                    if delay is None:
                        return
                self.status(SourceStatus(self.name, SourceState.RECONNECTING, self.error or "", supervisor.failures))
                self.stop.wait(delay)
        finally:
            self.parts.lanes.close_source(self.name)
            self.done.set()

    def _restart_after_bug(self, supervisor: Supervisor) -> Optional[float]:
        self.metrics.errors.labels("source").inc()
        try:
            delay = supervisor.failed()
        except GiveUp as give_up:
            self._fail(f"{self.name}: the intake stage keeps failing ({give_up}; see log)")
            log.exception("%s: the intake stage failed; %s", self.name, give_up)
            return None
        self.error = "internal error (see log)"
        log.exception("%s: the intake stage failed; restarting it in %.1f s", self.name, delay)
        return delay

    def _fail(self, message: str) -> None:
        self.error = message
        self.failed = True
        self.metrics.errors.labels("source").inc()
        if self.state is not SourceState.FAILED:
            self.status(SourceStatus(self.name, SourceState.FAILED, message))

    def _read_once(self) -> None:
        self.source = VideoSource(self.config, self.parts.sampling, on_status=self.status)
        segmenter = self.parts.make_segmenter(self.name, self.parts.cutter(self.name))
        frames, corrupt = self.metrics.frames.labels(self.name), self.metrics.corrupt.labels(self.name)
        counters, seen = self.source.counters, 0
        for item in self.source.items(self.stop):
            if isinstance(item, Frame):
                frames.inc()
            if counters.corrupt != seen:  # the decoder counts damage; Prometheus gets the news here
                corrupt.inc(counters.corrupt - seen)
                seen = counters.corrupt
            for segment in segmenter.push(item):
                self._put(segment)
        if not self.stop.is_set():  # the file ended: its last, partial segment too
            for segment in segmenter.finish():
                self._put(segment)

    def _put(self, segment: Segment) -> None:
        self.metrics.segments.labels(self.name).inc()
        hand_over(segment, self.parts)
        self.metrics.queue_depth.labels(self.name).set(self.parts.lanes.depth(self.name))


def hand_over(segment: Segment, parts: IntakeParts) -> None:
    """A segment just cut, through the gate stage: to the camera's lane, or, when the gate found
    it unchanged and nothing of the camera is waiting or in flight, its events published at once
    (called by the camera's own intake thread, the only one that adds to its lane)."""
    segment = parts.gate.apply(segment)
    if segment.light and parts.lanes.idle(segment.source):
        parts.publisher.publish(parts.skipped_events(segment), segment)
        return
    parts.lanes.put(segment)
