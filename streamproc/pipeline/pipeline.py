"""The data path: sources -> segmenters -> gate stage -> per-camera lanes -> model workers -> bus.

The pipeline builds nothing but its own threads: the composition root (streamproc/app.py) hands
it the lanes, the gate stage, the describers (one per loaded backend), the publisher (the event
bus, or the cluster's fenced commit before it) and the control switches.

Threads: one intake thread per source (PyAV and the native engine release the GIL), one model
worker per backend instance, and the stuck-call watchdog. Workers take segments by the lanes'
order (urgency or round robin, `service.policy`) and ack a camera's segment only after its events are published, so each camera's
events come out in segment order whatever the number of workers.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ..config.ingest import SourceConfig
from ..errors import ConfigError
from ..frames import Segment
from ..lanes import LanePolicy
from ..supervise import StuckWatchdog
from .describer import SegmentDescriber
from .intake import IntakeParts, SourceRunner
from .supervisor import WorkerSupervisor
from .worker import ModelWorker

log = logging.getLogger(__name__)

_ABORT_GRACE_S = 2.0  # on stop: calls still running this long before the deadline are aborted
_ABORT_LATE_S = 0.5  # and may take until this long after it to return (an engine step must end)


@dataclass(frozen=True)
class PipelineSettings:
    queue_size: int  # segments waiting per camera
    live_policy: LanePolicy  # what a live camera's full lane does (files read at their own pace block)
    stuck_after_s: float  # a model call running this long is aborted
    start_sources: bool = True  # False in cluster mode: the leases start and stop cameras


class DroppedSegments:
    """What the lanes call when a full lane drops a segment: counted, logged, and the gate told
    that the reference frames of a passed segment were never described."""

    def __init__(self, metrics: Any, forget: Callable[[str], None]):
        self.metrics = metrics
        self.forget = forget

    def __call__(self, segment: Segment) -> None:
        self.metrics.dropped.labels(segment.source).inc()
        if not segment.light:
            self.forget(segment.source)
        log.warning(
            "%s: the model cannot keep up; dropped segment %d (%.0f-%.0f s)",
            segment.source, segment.index, segment.start, segment.end,
        )


class Pipeline:
    def __init__(
        self, sources: Sequence[SourceConfig], parts: IntakeParts, describers: Sequence[SegmentDescriber],
        remake: Callable[[], SegmentDescriber], is_paused: Callable[[str], bool], settings: PipelineSettings,
    ):
        if not sources:
            raise ConfigError("no enabled sources in the config")
        self.sources = list(sources)
        self.parts = parts
        self.settings = settings
        self.intake_stop = threading.Event()  # stop reading sources
        self.work_stop = threading.Event()  # stop taking segments
        self.runners: list[SourceRunner] = []
        lanes, metrics = parts.lanes, parts.metrics
        for source in self.sources:
            policy = settings.live_policy if source.live else LanePolicy.BLOCK
            if source.realtime and settings.live_policy is LanePolicy.COALESCE:
                policy = LanePolicy.COALESCE  # a file read at camera pace stands in for a camera; nothing is lost
            lanes.add_source(source.name, settings.queue_size, policy)
        self.workers = [
            ModelWorker(
                WorkerSupervisor(index, describer, remake, self.work_stop, metrics), lanes, parts.publisher,
                parts.skipped_events, is_paused, parts.gate.forget, metrics, self.work_stop,
            )
            for index, describer in enumerate(describers)
        ]
        self.watchdog = StuckWatchdog(
            lambda: [w.busy_since for w in self.workers], self._abort_stuck, settings.stuck_after_s, self.work_stop
        )

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        for source in self.sources if self.settings.start_sources else ():
            self.start_source(source.name, self.intake_stop)
        self.watchdog.start()

    def start_source(self, name: str, stop: Optional[threading.Event] = None) -> None:
        """Start reading source `name` (at start, or later when cluster mode hands it to this box)."""
        source = next(s for s in self.sources if s.name == name)
        previous = next((r for r in self.runners if r.name == name), None)
        if previous is not None:  # stopped before: its thread must be gone before a new one puts
            previous.stop.set()
            previous.join()
        runner = SourceRunner(source, self.parts, stop or threading.Event())
        self.runners = [r for r in self.runners if r.name != name] + [runner]  # a new list: readers iterate the old
        runner.start()

    def stop_source(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop reading source `name` (cluster mode: another box takes it)."""
        for runner in self.runners:
            if runner.name == name:
                runner.stop.set()
                runner.join(timeout_s)

    # -- state --------------------------------------------------------------------------------

    def backends(self) -> list[Any]:
        """Each worker's current backend (a restart replaces one)."""
        return [w.supervisor.backend for w in self.workers]

    def workers_alive(self) -> int:
        return sum(w.thread.is_alive() for w in self.workers)

    def workers_gave_up(self) -> bool:
        """Every model worker gave up (its backend kept failing past the restart budget)."""
        return bool(self.workers) and all(w.gave_up for w in self.workers)

    def sources_failed(self) -> bool:
        """Every source ended with an error (none could be read, or every live one gave up)."""
        return bool(self.runners) and all(r.failed for r in self.runners)

    def finished(self) -> bool:
        """Every source ended (files read to the end) and every segment described."""
        return (
            all(r.done.is_set() for r in self.runners)
            and self.parts.lanes.drained()
            and all(w.busy_since is None for w in self.workers)
        )

    def stats(self) -> dict[str, Any]:
        lanes, gate = self.parts.lanes, self.parts.gate
        sources = {}
        for runner in self.runners:
            counters = runner.source.counters if runner.source else None
            sources[runner.name] = {
                "state": runner.state.value,
                "frames": counters.sampled if counters else 0,
                "reconnects": counters.reconnects if counters else 0,
                "corrupt": counters.corrupt if counters else 0,  # damaged packets or pictures
                "corrupt_bursts": counters.corrupt_bursts if counters else 0,  # runs of them (one warning each)
                "queued": lanes.depth(runner.name),
                "dropped": lanes.dropped(runner.name),
                "coalesced": lanes.coalesced(runner.name),  # merged into a later call, thinned (service.policy)
                "error": runner.error,
                **gate.stats(runner.name),
            }
        return {
            "described": sum(w.described for w in self.workers),
            "failed": sum(w.failed for w in self.workers),
            "sources": sources,
        }

    def busy_seconds(self) -> list[Optional[float]]:
        now = time.monotonic()
        return [None if w.busy_since is None else round(now - w.busy_since, 1) for w in self.workers]

    # -- stop ---------------------------------------------------------------------------------

    def stop(self, timeout_s: float) -> None:
        """Stop intake, let the segments in flight finish until shortly before the deadline, abort
        the calls still running then; a backend is left to its worker until the worker has left it
        (closing a native engine under a running call crashes the process)."""
        deadline = time.monotonic() + timeout_s
        self.intake_stop.set()
        for runner in self.runners:  # sources started by cluster mode have their own stop flag
            runner.stop.set()
        waiting = self.parts.lanes.discard_waiting()
        if waiting:
            log.info("stopping: %d queued segment(s) not described", waiting)
        self.work_stop.set()
        reserve = min(_ABORT_GRACE_S, timeout_s / 2)
        for worker in self.workers:
            worker.thread.join(max(0.0, deadline - reserve - time.monotonic()))
        running = [w for w in self.workers if w.thread.is_alive()]
        for worker in running:
            log.warning("stopping: aborting the model call of worker %d", worker.index)
            self._abort(worker)
        for worker in running:
            worker.thread.join(max(0.0, deadline + _ABORT_LATE_S - time.monotonic()))
        self.parts.lanes.shutdown()
        for runner in self.runners:
            runner.join(max(0.1, deadline - time.monotonic()))

    def _abort_stuck(self, index: int, running_s: float) -> None:
        log.error(
            "model worker %d: a call has run %.0f s (service.stuck_after_s is %.0f); aborting it",
            index, running_s, self.settings.stuck_after_s,
        )
        self.parts.metrics.errors.labels("model").inc()
        self._abort(self.workers[index])

    @staticmethod
    def _abort(worker: ModelWorker) -> None:
        try:
            worker.supervisor.backend.abort()
        except Exception as error:  # a plug-in without a working abort(): the call runs on
            log.error("model worker %d: the backend cannot abort its call: %s", worker.index, error)
