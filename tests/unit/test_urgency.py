"""The urgency policy in the service (issue 22 item 3): onset and hold cuts in the segmenter,
urgency order and coalescing in the lanes (nothing that changed dropped, only thinned), the
config's presets."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamproc.config.service import PolicyConfig
from streamproc.frames import Frame
from streamproc.ingest.segmenter import Segmenter, SegmentPlan, segment_stream
from streamproc.lanes import FairSegmentQueue, LanePolicy
from streamproc.urgency import OLD, URGENT, Cuts, OnsetCutter, Order, RulesMode, thin
from tests.support.segments import make_segment


def _frames(changed_at: set[int], seconds: int):
    """1 fps frames whose pixel value steps at each second in `changed_at`."""
    value = 0
    for t in range(seconds):
        value += 40 if t in changed_at else 0
        yield Frame("cam", t, float(t), float(t), float(t), np.full((4, 4, 3), value % 256, np.uint8))


def _cut(changed_at: set[int], seconds: int, cuts: Cuts, plan: int = 18):
    moved = lambda before, after: bool((before != after).any())  # noqa: E731
    segmenter = Segmenter("cam", 1.0, lambda h, w: SegmentPlan(plan, 0, 0, 0, 1.0), OnsetCutter(cuts, moved))
    return [(s.start, s.end, s.onset, s.budget_frames) for s in segment_stream(_frames(changed_at, seconds), segmenter)]


def test_change_in_a_quiet_camera_closes_a_short_onset_segment():
    # change starts at t=10 after 10 quiet s: the segment closes after frames 10, 11 (onset_s 2), an onset
    got = _cut({10, 11, 12}, 40, Cuts.of(URGENT))
    assert got[0] == (0.0, 12.0, True, 18)
    assert got[1][0] == 12.0 and not got[1][2]
    later = _cut({10, 11, 12}, 40, Cuts.of(dataclasses.replace(URGENT, onset_s=4)))
    assert later[0] == (0.0, 14.0, True, 18)  # onset_s 4: frames 10..13


def test_change_in_a_busy_camera_is_held_at_most_hold_frames():
    # moving every second: no quiet before, so cuts come hold_s (8) after the first change seen
    got = _cut(set(range(1, 60)), 40, Cuts.of(URGENT))
    assert all(not onset for _, _, onset, _ in got)
    assert max(end - start for start, end, _, _ in got) <= 10 and len(got) > 40 / 18 + 1


def test_fixed_segments_without_cuts():
    got = _cut({10, 11}, 40, Cuts.of(OLD))
    assert [(s, e) for s, e, _, _ in got] == [(0.0, 18.0), (18.0, 36.0), (36.0, 40.0)]


def test_thin_keeps_first_last_and_an_even_count():
    assert thin(list(range(10)), 18) == list(range(10))
    got = thin(list(range(40)), 18)
    assert len(got) == 18 and got[0] == 0 and got[-1] == 39 and got == sorted(got)


def _described(index, reason="change", onset=False, start=None, duration=4.0, source="cam1", wall=None):
    segment = make_segment(source, index, duration=duration, start=start, wall=wall)
    return dataclasses.replace(segment, gate_reason=reason, onset=onset, budget_frames=6)


def test_a_coalescing_lane_merges_what_waits_thinned_and_drops_nothing():
    dropped, merged = [], []
    lanes = FairSegmentQueue(on_drop=dropped.append, order=Order.URGENCY,
                             on_coalesce=lambda source, count: merged.append((source, count)))
    lanes.add_source("cam1", 2, LanePolicy.COALESCE)
    for index in range(5):  # 5 x 4 frames into a lane of 2: merged in place, never dropped
        assert lanes.put(_described(index))
    job = lanes.get(timeout=0)
    assert not dropped and lanes.depth("cam1") == 0 and lanes.dropped("cam1") == 0 and lanes.coalesced("cam1") == 4
    assert sum(count for _, count in merged) == 4 and {source for source, _ in merged} == {"cam1"}
    assert (job.start, job.end, job.parts, len(job.frames)) == (0.0, 20.0, 5, 6)
    assert [f.media_time for f in job.frames] == sorted(f.media_time for f in job.frames)
    lanes.ack(job)


def test_urgency_order_onset_first_then_changed_then_heartbeat_oldest_first():
    lanes = FairSegmentQueue(order=Order.URGENCY)
    for name in ("a", "b", "c", "d"):
        lanes.add_source(name, 4, LanePolicy.COALESCE)
    # oldest by wall time, not media time: each camera's media clock is its own (b's is behind)
    lanes.put(_described(0, "heartbeat", source="a", wall=1000.0))
    lanes.put(_described(0, "change", start=8.0, source="b", wall=1008.0))
    lanes.put(_described(0, "change", start=400.0, source="c", wall=1004.0))
    lanes.put(_described(0, "change", onset=True, start=20.0, source="d", wall=1020.0))
    taken = [lanes.get(timeout=0).source for _ in range(4)]
    assert taken == ["d", "c", "b", "a"]


def test_round_robin_ignores_urgency():
    lanes = FairSegmentQueue(order=Order.ROUND_ROBIN)
    for name in ("a", "b"):
        lanes.add_source(name, 4, LanePolicy.DROP_OLDEST)
    lanes.put(_described(0, "heartbeat", source="a"))
    lanes.put(_described(0, "change", onset=True, source="b"))
    assert [lanes.get(timeout=0).source for _ in range(2)] == ["a", "b"]


def test_presets_and_overrides():
    assert PolicyConfig().resolve() == URGENT
    assert PolicyConfig(preset="old").resolve() == OLD
    custom = PolicyConfig(rules_call="auto", caption_tokens=24, fixed_segments=True, order="round_robin").resolve()
    assert (custom.rules_mode, custom.caption_tokens, custom.onset_s, custom.order) == (RulesMode.AUTO, 24, None, Order.ROUND_ROBIN)
    assert RulesMode.AUTO.resolve(keeps_history=True) is RulesMode.FOLLOWUP
    assert RulesMode.AUTO.resolve(keeps_history=False) is RulesMode.JOINT
    with pytest.raises(ValueError):
        PolicyConfig(preset="fast")


def test_a_full_lane_behind_an_unchanged_segment_still_merges_and_keeps_the_order():
    from streamproc.gate.gate import Decision
    from streamproc.gate.stage import SkippedSegment

    lanes = FairSegmentQueue(order=Order.URGENCY)
    lanes.add_source("cam1", 2, LanePolicy.COALESCE)
    lanes.put(_described(0))
    held = lanes.get(timeout=0)  # in flight: what follows waits
    lanes.put(SkippedSegment.of(make_segment("cam1", 1, duration=4.0), Decision(False, "unchanged")))
    for index in range(2, 7):
        lanes.put(_described(index))
    assert lanes.depth("cam1") <= 3  # [unchanged, merged, newest]: bounded, nothing dropped
    lanes.ack(held)
    first = lanes.get(timeout=0)
    assert first.light and first.index == 1
    lanes.ack(first)
    rest = lanes.get(timeout=0)
    assert (rest.start, rest.end, rest.parts) == (8.0, 28.0, 5)


def test_urgency_order_stays_fair_when_full_lanes_drop_their_oldest():
    # two cameras at the same pace, b's segments ending 0.5 s after a's: with lanes that drop their
    # oldest, "oldest waiting segment" alone would pick a every time
    lanes = FairSegmentQueue(order=Order.URGENCY)
    for name in ("a", "b"):
        lanes.add_source(name, 2, LanePolicy.DROP_OLDEST)
    taken = []
    for k in range(12):
        lanes.put(_described(k, source="a", wall=1000.0 + 2 * k))
        lanes.put(_described(k, source="b", wall=1000.5 + 2 * k))
        if k % 3 == 2:  # the model takes one segment every 6 s
            segment = lanes.get(timeout=0)
            taken.append(segment.source)
            lanes.ack(segment)
    assert taken.count("a") == taken.count("b") == 2, taken
