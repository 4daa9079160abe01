"""Intake: one thread per source, from decoder to segments in the bounded queue.

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
from typing import Callable, Optional

from ..config.ingest import SamplingConfig, SourceConfig
from ..errors import StreamprocError
from ..frames import Frame
from ..ingest.segmenter import Segmenter
from ..ingest.sources import SourceStatus, VideoSource
from ..supervise import Backoff, GiveUp, RestartBudget, Supervisor
from .metrics import Metrics
from .queues import SegmentLanes

log = logging.getLogger(__name__)

# Unexpected errors (bugs) restart the intake stage at most this often; past it the source fails
# rather than spin.
_RESTARTS_PER_WINDOW = 5
_RESTART_WINDOW_S = 300.0

# Source states as the sinks know them (events.SOURCE_STATES); a first connection attempt is
# not news (the retained status already says offline), so it is not passed on.
SINK_STATE = {
    "reconnecting": "reconnecting",
    "online": "online",
    "finished": "offline",
    "stopped": "offline",
    "failed": "offline",
}


class SourceRunner:
    def __init__(
        self,
        config: SourceConfig,
        sampling: SamplingConfig,
        make_segmenter: Callable[[str], Segmenter],
        queue: SegmentLanes,
        metrics: Metrics,
        on_status: Callable[[SourceStatus], None],
        stop: threading.Event,
    ):
        self.config = config
        self.name = config.name
        self.sampling = sampling
        self.make_segmenter = make_segmenter
        self.queue = queue
        self.metrics = metrics
        self.on_status = on_status
        self.stop = stop
        self.state = "idle"
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

    def _status(self, status: SourceStatus) -> None:
        self.state = status.state
        self.metrics.source_up.labels(self.name).set(1 if status.state == "online" else 0)
        if status.state == "online":
            if self._been_online:  # back after a drop: a reconnect (failed attempts are not)
                self.metrics.reconnects.labels(self.name).inc()
            self._been_online = True
        self.on_status(status)

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
                    self.metrics.errors.labels("source").inc()
                    try:
                        delay = supervisor.failed()
                    except GiveUp as give_up:
                        self._fail(f"{self.name}: the intake stage keeps failing ({give_up}; see log)")
                        log.exception("%s: the intake stage failed; %s", self.name, give_up)
                        return
                    self.error = "internal error (see log)"
                    log.exception("%s: the intake stage failed; restarting it in %.1f s", self.name, delay)
                self._status(SourceStatus(self.name, "reconnecting", self.error or "", supervisor.failures))
                self.stop.wait(delay)
        finally:
            self.queue.close_source(self.name)
            self.done.set()

    def _fail(self, message: str) -> None:
        self.error = message
        self.failed = True
        self.metrics.errors.labels("source").inc()
        if self.state != "failed":
            self._status(SourceStatus(self.name, "failed", message))

    def _read_once(self) -> None:
        self.source = VideoSource(self.config, self.sampling, on_status=self._status)
        segmenter = self.make_segmenter(self.name)
        frames = self.metrics.frames.labels(self.name)
        for item in self.source.items(self.stop):
            if isinstance(item, Frame):
                frames.inc()
            for segment in segmenter.push(item):
                self._put(segment)
        if not self.stop.is_set():  # the file ended: its last, partial segment too
            for segment in segmenter.finish():
                self._put(segment)

    def _put(self, segment) -> None:
        self.metrics.segments.labels(self.name).inc()
        self.queue.put(segment)
        self.metrics.queue_depth.labels(self.name).set(self.queue.depth(self.name))
