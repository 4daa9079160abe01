"""The one supervision rule: jittered capped backoff, reset on success, attempt limit, restart budget."""
from __future__ import annotations

import threading

import pytest

from streamproc.supervise import Backoff, GiveUp, RestartBudget, StuckWatchdog, Supervisor


def test_backoff_grows_to_its_cap_with_jitter_and_resets():
    backoff = Backoff(1.0, 8.0, 2.0, jitter=0.5, rng=lambda: 1.0)  # the largest jitter: half the base
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    unjittered = Backoff(1.0, 8.0, 2.0, jitter=0.5, rng=lambda: 0.0)
    assert [unjittered.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_jitter_spreads_retries():
    delays = {round(Backoff(10.0, 10.0, jitter=0.3).next(), 6) for _ in range(50)}
    assert len(delays) > 10 and all(7.0 <= d <= 10.0 for d in delays)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_max_attempts_means_what_it_says(limit):
    supervisor = Supervisor("cam", backoff=Backoff(0.01, 0.01), max_attempts=limit)
    attempts = 0
    with pytest.raises(GiveUp, match=f"after {limit} attempt"):
        while True:
            attempts += 1  # an attempt is made, and fails
            supervisor.failed("refused")
    assert attempts == limit


def test_success_starts_the_count_over():
    supervisor = Supervisor("cam", backoff=Backoff(1.0, 30.0, jitter=0.0), max_attempts=3)
    supervisor.failed()
    supervisor.failed()
    supervisor.succeeded()
    assert supervisor.failed() == 1.0  # the delay starts over too
    supervisor.failed()
    with pytest.raises(GiveUp):
        supervisor.failed()


def test_the_restart_budget_is_per_sliding_window():
    now = [0.0]
    budget = RestartBudget(3, 60.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 61.0  # the first three left the window
    assert budget.take() and budget.used() == 1
    supervisor = Supervisor("w", budget=RestartBudget(2, 60.0, clock=lambda: now[0]))
    supervisor.failed()
    supervisor.failed()
    with pytest.raises(GiveUp, match="2 restarts within 60 s"):
        supervisor.failed()


def test_the_watchdog_aborts_a_stuck_call_once():
    import time

    started = time.monotonic() - 100
    busy = [None, started]
    aborted = []
    dog = StuckWatchdog(lambda: busy, lambda i, s: aborted.append(i), after_s=50, stop=threading.Event())
    dog.check()
    dog.check()
    assert aborted == [1]
    busy[1] = time.monotonic() - 60  # the next stuck call is a new one
    dog.check()
    assert aborted == [1, 1]
