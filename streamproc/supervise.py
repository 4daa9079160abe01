"""One supervision rule for every stage that restarts itself: sources, intake, workers, publisher.

A base module (like errors and redact): ingest, sinks and service all use it, and it imports
nothing of streamproc.

- `Backoff`: capped exponential delay with jitter (so a fleet of cameras or publishers does not
  retry in lockstep after an outage), reset by success.
- `RestartBudget`: at most N restarts within a sliding window, in the manner of Frigate's
  watchdog; past it the stage gives up instead of restarting forever.
- `Supervisor`: both, plus an attempt limit (`max_attempts` failures in a row, None = never),
  so that a configured limit means what it says: one loop owns the retries of one stage.

Thread safety: one supervisor per supervised thread; `wait` sleeps on the caller's stop event.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Backoff:
    initial_s: float = 1.0
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1]
    rng: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        self._next = self.initial_s

    def peek(self) -> float:
        """The base (un-jittered) delay the next `next()` will use."""
        return self._next

    def next(self) -> float:
        """The delay before the next attempt; the one after grows by `multiplier`, up to `max_s`."""
        base = min(self._next, self.max_s)
        self._next = min(base * self.multiplier, self.max_s)
        return base * (1.0 - self.jitter * self.rng())

    def reset(self) -> None:
        self._next = self.initial_s


class RestartBudget:
    """At most `max_restarts` within `window_s` seconds (sliding)."""

    def __init__(self, max_restarts: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        if max_restarts < 0 or window_s <= 0:
            raise ValueError("max_restarts must be >= 0 and window_s > 0")
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def take(self) -> bool:
        """Record a restart; False if it exceeds the budget (the caller should give up)."""
        now = self._clock()
        self._trim(now)
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True

    def used(self) -> int:
        self._trim(self._clock())
        return len(self._times)


class GiveUp(Exception):
    """Raised by `Supervisor.failed` when the attempt limit or the restart budget is spent."""


class Supervisor:
    """Backoff, attempt limit and restart budget of one supervised stage.

        sup = Supervisor("cam1", backoff=Backoff(1, 30), max_attempts=5)
        while not stop.is_set():
            try:
                run_once(on_success=sup.succeeded)
            except Retryable as error:
                delay = sup.failed(str(error))   # raises GiveUp past the limits
                stop.wait(delay)
    """

    def __init__(
        self,
        name: str,
        *,
        backoff: Optional[Backoff] = None,
        max_attempts: Optional[int] = None,
        budget: Optional[RestartBudget] = None,
    ):
        self.name = name
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.budget = budget
        self.failures = 0  # in a row, since the last success
        self.restarts = 0  # over the whole life

    def succeeded(self) -> None:
        """The stage works again: the attempt count and the delay start over."""
        self.failures = 0
        self.backoff.reset()

    def failed(self, reason: str = "") -> float:
        """Count a failure; the delay before the next attempt, or GiveUp past the limits."""
        self.failures += 1
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            raise GiveUp(f"gave up after {self.failures} attempt{'s' if self.failures != 1 else ''}")
        if self.budget is not None and not self.budget.take():
            raise GiveUp(
                f"gave up: {self.budget.max_restarts} restarts within {self.budget.window_s:.0f} s"
            )
        self.restarts += 1
        return self.backoff.next()

    def wait(self, stop: threading.Event, delay: float) -> bool:
        """Sleep `delay` unless `stop` is set first; True if stopped."""
        return stop.wait(max(0.0, delay))


class StuckWatchdog:
    """Aborts calls that run past a limit: `busy()` gives each worker's call start (monotonic,
    None when idle); `abort(index)` asks worker `index`'s call to stop. Each call is aborted once.
    Checked every `interval_s` on its own thread until `stop` is set."""

    def __init__(
        self,
        busy: Callable[[], list],
        abort: Callable[[int, float], None],
        after_s: float,
        stop: threading.Event,
        interval_s: float = 1.0,
    ):
        self.busy = busy
        self.abort = abort
        self.after_s = after_s
        self.stop = stop
        self.interval_s = interval_s
        self.aborted = 0
        self._done: dict[int, float] = {}  # worker -> start of the call already aborted
        self._thread = threading.Thread(target=self._run, name="stuck-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        now = time.monotonic()
        for index, started in enumerate(self.busy()):
            if started is None or now - started <= self.after_s or self._done.get(index) == started:
                continue
            self._done[index] = started
            self.aborted += 1
            self.abort(index, now - started)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.check()
