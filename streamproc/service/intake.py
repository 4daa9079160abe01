"""Intake: one thread per source, from decoder to segments in the bounded queue.

The thread supervises its source: a live source that fails (even with wrong credentials, which
an operator may fix) is opened again after a capped backoff; an unexpected error restarts the
stage the same way. A file source ends when the file does, or with its error.
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
from .metrics import Metrics
from .queues import SegmentLanes

log = logging.getLogger(__name__)

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
        delay = self.config.reconnect.initial_delay_s
        try:
            while not self.stop.is_set():
                try:
                    self._read_once()
                    if not self.config.live:
                        return
                except StreamprocError as error:  # unreadable source, or frames the model cannot take
                    self.error = str(error)
                    self.metrics.errors.labels("source").inc()
                    if not self.config.live:
                        log.error("%s", error)
                        return
                    log.error("%s; opening it again in %.0f s", error, delay)
                except Exception:  # a bug must not take the other sources down
                    self.error = "internal error (see log)"
                    self.metrics.errors.labels("source").inc()
                    log.exception("%s: the intake stage failed; restarting it in %.0f s", self.name, delay)
                    if not self.config.live:
                        return
                self._status(SourceStatus(self.name, "reconnecting", self.error or "", 0))
                self.stop.wait(delay)
                delay = min(delay * self.config.reconnect.multiplier, self.config.reconnect.max_delay_s)
        finally:
            self.queue.close_source(self.name)
            self.done.set()

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
