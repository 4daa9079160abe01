"""FairSegmentQueue: round robin across sources, block for files, drop_oldest / drop_newest counted
for live sources, and shutdown waking every waiter. No video, no model."""
from __future__ import annotations

import threading
import time
from typing import Optional

import pytest

from streamproc.frames import Segment
from streamproc.lanes import FairSegmentQueue, LanePolicy
from tests.support.segments import make_segment

pytestmark = pytest.mark.timeout(20)


def seg(source: str, index: int) -> Segment:
    return make_segment(source, index, size=(28, 28))


def names(segments) -> list[tuple[str, int]]:
    return [(s.source, s.index) for s in segments]


def take(queue: FairSegmentQueue, timeout: Optional[float] = 0) -> Optional[Segment]:
    """get() and ack() at once: a worker that finished the segment straight away."""
    segment = queue.get(timeout=timeout)
    if segment is not None:
        queue.ack(segment)
    return segment


def take_all(queue: FairSegmentQueue) -> list[Segment]:
    out = []
    while True:
        segment = take(queue)
        if segment is None:
            return out
        out.append(segment)


class Background:
    """Runs fn in a thread; `result` and `done` once it returns."""

    def __init__(self, fn, *args):
        self.result: object = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self.result = fn(*args)
        finally:
            self.done.set()

    def wait(self, timeout: float = 10.0) -> object:
        assert self.done.wait(timeout), "the call did not return"
        return self.result


def stays_blocked(call: Background, for_s: float = 0.3) -> bool:
    return not call.done.wait(for_s)


# -- fairness ----------------------------------------------------------------------------------


def test_round_robin_across_sources():
    queue = FairSegmentQueue()
    for source in ("a", "b", "c"):
        queue.add_source(source, 10, LanePolicy.BLOCK)
    for i in range(3):
        queue.put(seg("a", i))
    for i in range(2):
        queue.put(seg("b", i))
    queue.put(seg("c", 0))
    assert names(take_all(queue)) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_a_busy_source_cannot_starve_a_quiet_one():
    queue = FairSegmentQueue()
    queue.add_source("busy", 100, LanePolicy.BLOCK)
    queue.add_source("quiet", 100, LanePolicy.BLOCK)
    for i in range(50):
        queue.put(seg("busy", i))
    taken = [take(queue, timeout=0)]
    queue.put(seg("quiet", 0))  # arrives while 49 of the busy source wait
    taken.append(take(queue, timeout=0))
    taken.append(take(queue, timeout=0))
    assert names(taken) == [("busy", 0), ("quiet", 0), ("busy", 1)]
    # Each source keeps its own order.
    rest = take_all(queue)
    assert [s.index for s in rest] == list(range(2, 50))


def test_round_robin_skips_empty_lanes_and_resumes_after_the_last_served():
    queue = FairSegmentQueue()
    for source in ("a", "b", "c"):
        queue.add_source(source, 10, LanePolicy.DROP_OLDEST)
    queue.put(seg("c", 0))
    assert names([take(queue, timeout=0)]) == [("c", 0)]
    queue.put(seg("a", 0))
    queue.put(seg("b", 0))
    queue.put(seg("c", 1))
    # After c, the turn goes back to a.
    assert names(take_all(queue)) == [("a", 0), ("b", 0), ("c", 1)]


# -- block: file sources -------------------------------------------------------------------------


def test_block_policy_waits_for_room_and_loses_nothing():
    dropped = []
    queue = FairSegmentQueue(on_drop=dropped.append)
    queue.add_source("file", 2, LanePolicy.BLOCK)
    assert queue.put(seg("file", 0)) and queue.put(seg("file", 1))
    third = Background(queue.put, seg("file", 2))
    assert stays_blocked(third), "a full file lane must make the producer wait"
    assert queue.depth("file") == 2
    assert names([take(queue, timeout=1)]) == [("file", 0)]
    assert third.wait() is True
    assert [s.index for s in take_all(queue)] == [1, 2]
    assert queue.dropped("file") == 0 and dropped == []


def test_block_policy_producer_threads_against_a_slow_consumer():
    queue = FairSegmentQueue()
    queue.add_source("f1", 2, LanePolicy.BLOCK)
    queue.add_source("f2", 2, LanePolicy.BLOCK)
    producers = [
        Background(lambda s=s: [queue.put(seg(s, i)) for i in range(40)]) for s in ("f1", "f2")
    ]
    got: list[Segment] = []
    deadline = time.monotonic() + 20
    while len(got) < 80 and time.monotonic() < deadline:
        segment = take(queue, timeout=1)
        if segment is not None:
            got.append(segment)
            assert queue.depth("f1") <= 2 and queue.depth("f2") <= 2
    for producer in producers:
        assert all(producer.wait())
    assert len(got) == 80
    for source in ("f1", "f2"):
        assert [s.index for s in got if s.source == source] == list(range(40))
        assert queue.dropped(source) == 0


# -- drop policies: live sources -----------------------------------------------------------------


def test_drop_oldest_keeps_the_newest_and_counts_each_drop():
    dropped: list[Segment] = []
    queue = FairSegmentQueue(on_drop=dropped.append)
    queue.add_source("cam", 2, LanePolicy.DROP_OLDEST)
    queue.add_source("other", 2, LanePolicy.DROP_OLDEST)
    started = time.monotonic()
    results = [queue.put(seg("cam", i)) for i in range(5)]
    assert time.monotonic() - started < 1.0, "a live source must never wait"
    assert results == [True] * 5  # the new segment is always queued
    assert queue.depth("cam") == 2
    assert queue.dropped("cam") == 3 and queue.dropped("other") == 0
    assert [s.index for s in dropped] == [0, 1, 2]
    assert [s.index for s in take_all(queue)] == [3, 4]


def test_drop_newest_refuses_the_new_segment_and_counts_it():
    dropped: list[Segment] = []
    queue = FairSegmentQueue(on_drop=dropped.append)
    queue.add_source("cam", 2, LanePolicy.DROP_NEWEST)
    assert [queue.put(seg("cam", i)) for i in range(4)] == [True, True, False, False]
    assert queue.dropped("cam") == 2
    assert [s.index for s in dropped] == [2, 3]
    assert [s.index for s in take_all(queue)] == [0, 1]


def test_a_full_live_lane_does_not_hold_up_a_file_lane_or_the_reverse():
    queue = FairSegmentQueue()
    queue.add_source("cam", 1, LanePolicy.DROP_OLDEST)
    queue.add_source("file", 1, LanePolicy.BLOCK)
    queue.put(seg("file", 0))
    blocked = Background(queue.put, seg("file", 1))
    assert stays_blocked(blocked, 0.2)
    for i in range(3):  # the camera goes on while the file waits
        queue.put(seg("cam", i))
    assert queue.dropped("cam") == 2
    assert names([take(queue, timeout=1), take(queue, timeout=1)]) == [("cam", 2), ("file", 0)]
    assert blocked.wait() is True


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="LanePolicy"):
        LanePolicy("drop_everything")


# -- get, close, drained -------------------------------------------------------------------------


def test_get_times_out_with_none():
    queue = FairSegmentQueue()
    queue.add_source("cam", 1, LanePolicy.DROP_OLDEST)
    started = time.monotonic()
    assert take(queue, timeout=0.2) is None
    assert 0.15 <= time.monotonic() - started < 2.0


def test_get_timeout_holds_while_other_threads_notify():
    """Wake-ups that bring nothing for this consumer (another worker took the segment, a source
    closed) must not restart its timeout: the worker polls its stop flag on that timeout."""
    queue = FairSegmentQueue()
    queue.add_source("cam", 1, LanePolicy.DROP_OLDEST)
    queue.add_source("other", 1, LanePolicy.DROP_OLDEST)
    stop = threading.Event()

    def poke() -> None:
        while not stop.is_set():
            queue.close_source("other")  # notifies every waiter, queues nothing
            time.sleep(0.02)

    poker = threading.Thread(target=poke, daemon=True)
    poker.start()
    try:
        started = time.monotonic()
        assert take(queue, timeout=0.3) is None
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        poker.join(5)


def test_get_wakes_when_a_segment_arrives():
    queue = FairSegmentQueue()
    queue.add_source("cam", 2, LanePolicy.DROP_OLDEST)
    waiter = Background(queue.get, None)
    assert stays_blocked(waiter, 0.2)
    queue.put(seg("cam", 7))
    result: Optional[Segment] = waiter.wait()  # type: ignore[assignment]
    assert result is not None and result.index == 7


def test_drained_only_when_every_source_closed_and_nothing_waits_or_is_in_flight():
    queue = FairSegmentQueue()
    queue.add_source("a", 2, LanePolicy.BLOCK)
    queue.add_source("b", 2, LanePolicy.BLOCK)
    queue.put(seg("a", 0))
    queue.close_source("a")
    assert not queue.drained()  # a still has a segment, b is open
    queue.close_source("b")
    assert not queue.drained()
    taken = queue.get(timeout=0)
    assert taken is not None
    # Taken but not yet described: a file-only run must not end now and lose its last caption.
    assert not queue.drained()
    queue.ack(taken)
    assert queue.drained()


def test_discard_waiting_empties_every_lane_and_frees_blocked_producers():
    queue = FairSegmentQueue()
    queue.add_source("file", 1, LanePolicy.BLOCK)
    queue.add_source("cam", 3, LanePolicy.DROP_OLDEST)
    queue.put(seg("file", 0))
    for i in range(2):
        queue.put(seg("cam", i))
    blocked = Background(queue.put, seg("file", 1))
    assert stays_blocked(blocked, 0.2)
    assert queue.discard_waiting() == 3
    assert blocked.wait() is True  # room again: it goes in
    assert queue.depth("cam") == 0 and queue.depth("file") == 1
    assert queue.dropped("cam") == 0  # a stop is not a drop from a full queue


# -- shutdown ------------------------------------------------------------------------------------


def test_shutdown_wakes_blocked_producers_and_consumers():
    queue = FairSegmentQueue()
    queue.add_source("file", 1, LanePolicy.BLOCK)
    queue.add_source("cam", 1, LanePolicy.DROP_OLDEST)
    queue.put(seg("file", 0))
    producer = Background(queue.put, seg("file", 1))
    empty = FairSegmentQueue()
    empty.add_source("cam", 1, LanePolicy.DROP_OLDEST)
    consumers = [Background(empty.get, None) for _ in range(3)]  # no timeout: only shutdown ends them
    assert stays_blocked(producer, 0.2) and all(stays_blocked(c, 0.01) for c in consumers)
    queue.shutdown()
    empty.shutdown()
    assert producer.wait() is False
    assert [c.wait() for c in consumers] == [None, None, None]


def test_after_shutdown_put_and_get_return_at_once():
    queue = FairSegmentQueue()
    queue.add_source("cam", 2, LanePolicy.DROP_OLDEST)
    queue.put(seg("cam", 0))
    queue.shutdown()
    started = time.monotonic()
    assert queue.put(seg("cam", 1)) is False
    assert queue.get(timeout=None) is None  # even with a segment waiting
    assert time.monotonic() - started < 1.0


# -- one segment per source in flight ---------------------------------------------------------------


def test_a_source_with_a_segment_in_flight_is_not_handed_out_again():
    queue = FairSegmentQueue()
    queue.add_source("cam", 10, LanePolicy.BLOCK)
    queue.add_source("other", 10, LanePolicy.BLOCK)
    for i in range(3):
        queue.put(seg("cam", i))
    first = queue.get(timeout=0)
    assert first is not None and (first.source, first.index) == ("cam", 0)
    # A second worker asks: cam's next segment must wait for the first to be acked.
    assert queue.get(timeout=0.1) is None
    queue.put(seg("other", 0))
    assert names([queue.get(timeout=0)]) == [("other", 0)]
    waiter = Background(queue.get, 5.0)
    assert stays_blocked(waiter, 0.2)
    queue.ack(first)
    second = waiter.wait()
    assert second is not None and (second.source, second.index) == ("cam", 1)


def test_ack_of_a_segment_not_in_flight_is_refused():
    queue = FairSegmentQueue()
    queue.add_source("cam", 10, LanePolicy.BLOCK)
    queue.put(seg("cam", 0))
    taken = queue.get(timeout=0)
    with pytest.raises(ValueError):
        queue.ack(seg("cam", 5))
    queue.ack(taken)
    with pytest.raises(ValueError):
        queue.ack(taken)


# -- light segments (skipped by the scene-change gate) --------------------------------------------


def light(source: str, index: int) -> Segment:
    from streamproc.gate.gate import Decision
    from streamproc.gate import SkippedSegment

    return SkippedSegment.of(seg(source, index), Decision(False, "unchanged", 0.2))


def test_light_segments_keep_their_place_but_not_the_capacity():
    dropped = []
    queue = FairSegmentQueue(on_drop=dropped.append)
    queue.add_source("cam", 2, LanePolicy.DROP_OLDEST)
    for i, make in enumerate((seg, light, light, light, seg)):
        assert queue.put(make("cam", i))
    assert dropped == []  # five waiting, two of them heavy: not full
    assert queue.put(seg("cam", 5))
    assert [s.index for s in dropped] == [0]  # the oldest heavy one goes, the light ones stay
    assert names(take_all(queue)) == [("cam", i) for i in (1, 2, 3, 4, 5)]


def test_light_segments_never_block_a_file_source():
    queue = FairSegmentQueue()
    queue.add_source("file", 1, LanePolicy.BLOCK)
    queue.put(seg("file", 0))
    call = Background(queue.put, light("file", 1))
    assert call.wait() is True  # a full lane does not hold back a skipped segment
    blocked = Background(queue.put, seg("file", 2))
    assert stays_blocked(blocked)
    take(queue)
    assert blocked.wait() is True
