"""The lanes between the segmenters and the model workers.

A camera is the unit of ownership: each source has one lane, and at most one segment of a
source is in flight (taken by `get()` and not yet `ack()`ed) at any time, whatever the number of
workers. So a source's captions, rule states and alerts come out in segment order, and rule
state of a source is only ever touched by the one worker that holds its segment.

`SegmentLanes` is the interface the pipeline uses; `FairSegmentQueue` is the in-process
implementation. A distributed one (several boxes) keeps the same contract.

Each lane is bounded, with a `LanePolicy` when full:
  BLOCK        the producer waits (file sources: nothing is lost, reading just slows down)
  DROP_OLDEST  the oldest waiting segment is dropped and counted (live sources: stay current)
  DROP_NEWEST  the new segment is dropped and counted
  COALESCE     nothing is dropped: a take hands out the camera's waiting segments merged into one
               (frames thinned to the model's budget, lanes/urgent.py); a full lane merges what
               waits at once, so it holds at most `capacity` segments' frames
Workers take segments from the sources that have nothing in flight, round robin (the old way) or
by urgency (`Order.URGENCY`, streamproc/urgency.py: onset segments first, then other changed
ones, then heartbeats; the oldest first within a class). Either way a camera's own segments
come out in its order.

A light segment (`Segment.light`: a `SkippedSegment`: the scene-change gate found nothing
new, so no model time is needed and its images are gone) waits in its lane to keep the source's
order, but does not count against the capacity and is never the one dropped or waited for.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from ..frames import Segment
from ..urgency import Order
from .urgent import coalesce, contend, pick, rank, run_to_take


class LanePolicy(enum.Enum):
    """What a full lane does with a new segment."""

    BLOCK = "block"  # the producer waits (files: nothing lost)
    DROP_OLDEST = "drop_oldest"  # the oldest waiting segment goes (live: stay current)
    DROP_NEWEST = "drop_newest"  # the new segment goes
    COALESCE = "coalesce"  # nothing goes: waiting segments merge into one, frames thinned (urgent.py)


class SegmentLanes(Protocol):
    """Segments keyed by source, handed out one source at a time.

    Thread-safe: any number of producers (one per source) and consumers (workers)."""

    def add_source(self, source: str, capacity: int, policy: LanePolicy) -> None:
        """Open a lane for `source` with `capacity` waiting segments (light ones not counted)."""

    def put(self, segment: Segment) -> bool:
        """Queue a segment; False if it was dropped or the lanes are shut. A light segment
        (`Segment.light`: skipped by the gate) keeps its place but never counts against the
        capacity, never blocks and is never the one dropped."""

    def close_source(self, source: str) -> None:
        """The source will put nothing more."""

    def get(self, timeout: Optional[float] = None) -> Optional[Segment]:
        """The next segment of a source with none in flight; None on timeout or shutdown. A live
        camera's (COALESCE lane's) described segment taken while another live camera has described
        work waiting comes marked `contended` (and thinned to the policy's busy frame budget:
        urgent.contend)."""

    def ack(self, segment: Segment) -> None:
        """`segment` (from get) is finished with: described, skipped or failed. Its source's next
        segment may now be taken."""

    def idle(self, source: str) -> bool:
        """Nothing of `source` waiting or in flight: only its producer can change that."""

    def drained(self) -> bool:
        """Every source closed, nothing waiting and nothing in flight."""

    def shutdown(self) -> None:
        """Wake everyone; puts and gets return at once from now on."""

    def depth(self, source: str) -> int:
        """Segments of `source` waiting (not counting the one in flight)."""

    def dropped(self, source: str) -> int:
        """Segments of `source` dropped by its policy so far."""

    def coalesced(self, source: str) -> int:
        """Segments of `source` merged into others (COALESCE: described, thinned) so far."""

    def discard_waiting(self) -> int:
        """Drop every waiting segment (graceful stop); returns how many."""

    def onset_waiting(self, besides: str) -> bool:
        """Does a live camera (COALESCE lane) other than `besides` have an onset segment waiting?
        (The describer then ends the running call's caption early: urgency.Policy.yield_tokens.)"""


@dataclass
class _Lane:
    capacity: int
    policy: LanePolicy
    items: deque = field(default_factory=deque)
    heavy: int = 0  # items that count against the capacity (not light)
    dropped: int = 0
    coalesced: int = 0
    accepted: int = 0
    waiting_since: Optional[float] = None  # end_wall of the oldest described segment waiting since the last take
    closed: bool = False  # the producer is done
    in_flight: Optional[int] = None  # index of the segment taken and not yet acked


class FairSegmentQueue:
    """The in-process `SegmentLanes`. Thread-safe; any number of producers (one per source) and
    consumers (workers)."""

    def __init__(self, on_drop: Optional[Callable[[Segment], None]] = None, order: Order = Order.ROUND_ROBIN,
                 on_coalesce: Optional[Callable[[str, int], None]] = None, busy_frames: Optional[int] = None):
        self.order = order
        self.busy_frames = busy_frames  # a segment taken while others wait is thinned to this (urgent.contend)
        self._on_coalesce = on_coalesce  # (source, segments merged into another): counted in metrics
        self._lanes: dict[str, _Lane] = {}
        self._order: list[str] = []
        self._next = 0
        self._cond = threading.Condition()
        self._shutdown = False
        self._on_drop = on_drop

    def add_source(self, source: str, capacity: int, policy: LanePolicy) -> None:
        with self._cond:
            self._lanes[source] = _Lane(max(1, capacity), policy)
            self._order.append(source)

    def put(self, segment: Segment) -> bool:
        """Queue a segment; False if it (or nothing, for drop_oldest) was dropped or the queue is shut."""
        dropped: Optional[Segment] = None
        light = segment.light
        with self._cond:
            lane = self._lanes[segment.source]
            while not light and lane.policy is LanePolicy.BLOCK and lane.heavy >= lane.capacity and not self._shutdown:
                self._cond.wait()
            if self._shutdown:
                return False
            if not light and lane.heavy >= lane.capacity and lane.policy is LanePolicy.COALESCE:
                self._merge_waiting(lane)
            elif not light and lane.heavy >= lane.capacity:
                lane.dropped += 1
                if lane.policy is LanePolicy.DROP_NEWEST:
                    dropped = segment
                else:
                    dropped = next(item for item in lane.items if not item.light)
                    lane.items.remove(dropped)
                    lane.heavy -= 1
            if dropped is not segment:
                lane.items.append(segment)
                lane.accepted += 1
                lane.heavy += 0 if light else 1
                if not light and lane.waiting_since is None:
                    lane.waiting_since = segment.end_wall
            self._cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped is not segment

    def close_source(self, source: str) -> None:
        """The source will put nothing more."""
        with self._cond:
            self._lanes[source].closed = True
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Segment]:
        """The next segment of a source with nothing in flight (by urgency or round robin, as
        `order` says); None on timeout or shutdown."""
        # A deadline, not `timeout` per wait: every put, take and close wakes all waiters, and a
        # consumer woken for nothing would otherwise start its timeout again, for as long as the
        # others keep busy (workers poll their stop flag on this timeout).
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                segment = self._take()
                if segment is not None:
                    self._cond.notify_all()  # a blocked producer may go on
                    return segment
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _take(self) -> Optional[Segment]:
        count = len(self._order)
        ready = [(index, self._lanes[self._order[index]]) for index in range(count)]
        ready = [(index, lane) for index, lane in ready if lane.items and lane.in_flight is None]
        if not ready:
            return None
        if self.order is Order.URGENCY:  # ties go to the camera listed first, as in the simulator
            index = pick([(rank(lane.items, lane.waiting_since), index) for index, lane in ready])
            lane = self._lanes[self._order[index]]
        else:  # round robin: the first ready camera from the one after the last taken
            index, lane = min(ready, key=lambda pair: (pair[0] - self._next) % count)
        self._next = (index + 1) % count
        if lane.policy is LanePolicy.COALESCE:
            segment = self._merge_head(lane)
        else:
            segment = lane.items.popleft()
            lane.heavy -= 0 if segment.light else 1
        heavy = [s.end_wall for s in lane.items if not s.light]
        lane.waiting_since = min(heavy) if heavy else None
        lane.in_flight = segment.index
        if not segment.light and self._contended(lane):
            segment = contend(segment, self.busy_frames)
        return segment

    def _contended(self, lane: _Lane) -> bool:
        """A live camera's segment taken while another live camera has described work waiting.
        Files read as fast as they decode (BLOCK lanes) always have work waiting and no deadline:
        they neither count nor are counted."""
        live = LanePolicy.COALESCE
        return lane.policy is live and any(o.heavy for o in self._lanes.values() if o is not lane and o.policy is live)

    def _merge_head(self, lane: _Lane) -> Segment:
        """The lane's head run (a light segment alone, or everything up to the last described
        one) as one segment, removed from the lane."""
        run = [lane.items.popleft() for _ in range(run_to_take(lane.items))]
        lane.heavy -= sum(1 for s in run if not s.light)
        self._count_coalesced(run[0].source, lane, len(run) - 1)
        return coalesce(run)

    def _count_coalesced(self, source: str, lane: _Lane, merged: int) -> None:
        lane.coalesced += merged
        if merged and self._on_coalesce is not None:  # a metric's inc: safe under the lanes' lock
            self._on_coalesce(source, merged)

    def _merge_waiting(self, lane: _Lane) -> None:
        """A full coalescing lane: its described segments waiting (and the lights between them)
        become one, in place; lights before and after keep their places."""
        items = list(lane.items)
        heavy = [i for i, s in enumerate(items) if not s.light]
        first, last = heavy[0], heavy[-1]
        merged = coalesce(items[first:last + 1])
        self._count_coalesced(merged.source, lane, last - first)
        lane.items = deque(items[:first] + [merged] + items[last + 1:])
        lane.heavy = 1

    def ack(self, segment: Segment) -> None:
        """A segment from get() is finished with (described, skipped or failed)."""
        with self._cond:
            lane = self._lanes[segment.source]
            if lane.in_flight != segment.index:
                raise ValueError(f"{segment.source} segment {segment.index} is not in flight")
            lane.in_flight = None
            self._cond.notify_all()

    def in_flight(self, source: str) -> bool:
        with self._cond:
            return self._lanes[source].in_flight is not None

    def idle(self, source: str) -> bool:
        with self._cond:
            lane = self._lanes[source]
            return not lane.items and lane.in_flight is None

    def drained(self) -> bool:
        """Every source closed, nothing waiting and nothing in flight.

        In flight counts here, under the same lock as the take: a worker that has just taken the
        last segment has not yet marked itself busy, and "drained" then would end a file-only run
        with that segment's caption still to come."""
        with self._cond:
            return all(
                lane.closed and not lane.items and lane.in_flight is None for lane in self._lanes.values()
            )

    def shutdown(self) -> None:
        """Wake everyone; puts and gets return at once from now on."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def depth(self, source: str) -> int:
        with self._cond:
            return len(self._lanes[source].items)

    def dropped(self, source: str) -> int:
        with self._cond:
            return self._lanes[source].dropped

    def coalesced(self, source: str) -> int:
        with self._cond:
            return self._lanes[source].coalesced

    def onset_waiting(self, besides: str) -> bool:
        with self._cond:
            return any(name != besides and lane.policy is LanePolicy.COALESCE
                       and any(s.onset and not s.light for s in lane.items) for name, lane in self._lanes.items())

    def discard_waiting(self) -> int:
        """Drop every waiting segment (graceful stop: only the ones in flight finish)."""
        with self._cond:
            count = sum(len(lane.items) for lane in self._lanes.values())
            for lane in self._lanes.values():
                lane.items.clear()
                lane.heavy = 0
                lane.waiting_since = None
            self._cond.notify_all()
            return count
