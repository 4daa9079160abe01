"""The restart policy of a model worker, beside the stuck-call watchdog (streamproc/supervise.py).

A worker asks its `WorkerSupervisor` to describe each segment; the policy lives here, not in the
worker loop:
- a request that fails with a retryable error is tried once more;
- an error about the segment's own input (`ModelError`) skips only that segment;
- a backend that fails three times in a row is closed and made anew (the stage restarts),
  counted in metrics; at most 5 restarts per 10 minutes, past which `WorkerGaveUp` is raised
  (the run exits 5 when no worker is left);
- failed requests back off with jitter;
- an aborted call (stop, or stuck past `service.stuck_after_s`) is not retried.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ..errors import Aborted, ModelError, StreamprocError
from ..frames import Segment
from ..supervise import Backoff, RestartBudget, Supervisor
from .describer import Described, EarlyEvents, SegmentDescriber

log = logging.getLogger(__name__)

RETRIES = 1  # a segment whose request failed with a retryable error is tried once more
RESTART_AFTER = 3  # backend failures in a row before the worker makes its backend anew
RESTARTS_PER_WINDOW, RESTART_WINDOW_S = 5, 600.0  # backend restarts a worker may make per window


class WorkerGaveUp(Exception):
    """The worker's backend kept failing past the restart budget."""


class WorkerSupervisor:
    """Describes segments with one backend, and restarts that backend by the policy above.
    `remake()` builds a new describer over a new backend."""

    def __init__(
        self, index: int, describer: SegmentDescriber, remake: Callable[[], SegmentDescriber],
        stop: threading.Event, metrics: Any,
    ):
        self.index = index
        self.describer = describer
        self.remake = remake
        self.stop = stop
        self.metrics = metrics
        self.failures = 0  # backend failures in a row, across segments
        self._policy = Supervisor(
            f"model-{index}", backoff=Backoff(1.0, 60.0, 2.0), budget=RestartBudget(RESTARTS_PER_WINDOW, RESTART_WINDOW_S)
        )

    @property
    def backend(self) -> Any:
        return self.describer.backend

    def describe(self, segment: Segment, early: Optional[EarlyEvents] = None) -> Optional[Described]:
        """The segment described, or None (failed, skipped or aborted). Raises WorkerGaveUp.
        `early`: publishes the rules' alerts as soon as their verdicts stream in."""
        for attempt in range(1 + RETRIES):
            try:
                described = self.describer.describe(segment, early)
            except Aborted as error:
                self._log_aborted(segment, error)
                return None
            except Exception as error:  # typed or a bug: one request must not stop the worker
                if not self._failed(segment, error, attempt):
                    return None
                continue
            self.failures = 0
            self._policy.succeeded()
            return described
        return None

    def _failed(self, segment: Segment, error: Exception, attempt: int) -> bool:
        """Count a failure; True to try the segment again."""
        self.metrics.errors.labels("model").inc()
        retry = isinstance(error, StreamprocError) and error.retryable and attempt < RETRIES
        what = f"{segment.source} segment {segment.index}"
        if isinstance(error, StreamprocError):
            log.error("%s: %s%s", what, error, "; trying again" if retry else "")
        else:
            log.exception("%s: the model stage failed", what, exc_info=error)
        if isinstance(error, ModelError):  # this segment's input, not the backend
            return False
        self.failures += 1
        if self.failures % RESTART_AFTER == 0:
            self._restart()
        delay = 1.0 if retry else self._policy.backoff.next()
        return not self.stop.wait(delay) and retry

    def _restart(self) -> None:
        budget = self._policy.budget
        if budget is not None and not budget.take():
            log.error(
                "model worker %d: its backend failed %d times in a row, restarted %d times within %.0f s; "
                "the worker gives up", self.index, self.failures, budget.used(), RESTART_WINDOW_S,
            )
            raise WorkerGaveUp(f"model worker {self.index}")
        log.warning("model worker %d: %d failures in a row; restarting its backend", self.index, self.failures)
        self.metrics.errors.labels("model_restart").inc()
        try:
            self.describer.backend.close()
        except Exception as error:
            log.error("model worker %d: closing the backend failed: %s", self.index, error)
        try:
            self.describer = self.remake()
        except Exception as error:  # the next attempt fails fast and tries again later
            log.error("model worker %d: the backend did not come back: %s", self.index, error)

    def _log_aborted(self, segment: Segment, error: Aborted) -> None:
        if self.stop.is_set():
            log.info("%s segment %d: not described (stopping): %s", segment.source, segment.index, error)
            return
        self.metrics.errors.labels("model").inc()
        log.error("%s segment %d: %s", segment.source, segment.index, error)
