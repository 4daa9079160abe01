"""The scene-change gate: its config, each reason to describe, scores against sensor nuisances, the
effect of a skipped segment on rules, and the "unchanged" event on MQTT. Generated frames, no video."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from streamproc.bench.scenes import Event, Scene
from streamproc.config.gate import GateConfig, SourceGateConfig
from streamproc.config.rules import RuleConfig
from streamproc.config.sinks import MqttConfig
from streamproc.events import unchanged_event, validate
from streamproc.frames import Frame, Segment
from streamproc.gate.gate import SceneGate
from streamproc.gate import GateStage, SkippedSegment
from streamproc.pipeline.intake import IntakeParts, hand_over
from streamproc.gate.score import FrameScorer, ScoreParams
from streamproc.rules.alerts import RuleEngine
from streamproc.lanes import FairSegmentQueue, LanePolicy
from streamproc.sinks.mqtt import MqttSink
from tests.support.segments import make_segment

ON = GateConfig(mode="scene_change")
FRAMES = 6


def segments(scene: Scene, count: int, *, gap_at: int = -1, source: str = "cam"):
    for index in range(count):
        first = index * FRAMES
        frames = tuple(Frame(source, i, float(i), float(i), 1e9 + i, scene.frame(float(i), i)) for i in range(first, first + FRAMES))
        yield Segment(source, index, frames, float(first), float(first + FRAMES), 1.0, gap_before=index == gap_at)


def reasons(gate: SceneGate, scene: Scene, count: int, **kwargs) -> list[str]:
    return [gate.decide(segment).reason for segment in segments(scene, count, **kwargs)]


def test_config_rejects_regions_outside_the_frame_and_unknown_modes():
    assert GateConfig().mode == "off"
    with pytest.raises(ValidationError, match="ignore region"):
        GateConfig(ignore=[[0.5, 0.0, 0.4, 1.0]])
    with pytest.raises(ValidationError, match="ignore region"):
        SourceGateConfig(ignore=[[0.0, 0.0, 1.2, 1.0]])
    with pytest.raises(ValidationError):
        GateConfig(mode="motion")


def test_a_static_scene_is_described_first_then_skipped():
    scene = Scene(seed=1, noise=5.0, clock=True)
    assert reasons(SceneGate(ON), scene, 5) == ["first"] + ["unchanged"] * 4


def test_gap_heartbeat_always_and_off_describe_whatever_the_scene_shows():
    scene = Scene(seed=2, noise=3.0)
    assert reasons(SceneGate(ON), scene, 4, gap_at=2) == ["first", "unchanged", "gap", "unchanged"]
    beat = GateConfig(mode="scene_change", heartbeat_s=12.0)  # two segments of 6 s
    assert reasons(SceneGate(beat), scene, 5) == ["first", "unchanged", "heartbeat", "unchanged", "heartbeat"]
    assert reasons(SceneGate(ON, SourceGateConfig(always=True)), scene, 2) == ["always", "always"]
    assert reasons(SceneGate(GateConfig()), scene, 2) == ["off", "off"]


def test_forget_makes_the_next_segment_described():
    gate = SceneGate(ON)
    parts = list(segments(Scene(seed=3, noise=3.0), 4))
    assert [gate.decide(s).reason for s in parts[:2]] == ["first", "unchanged"]
    gate.forget()  # e.g. the lane dropped the last described segment
    assert [gate.decide(s).reason for s in parts[2:]] == ["resync", "unchanged"]


def test_an_object_appearing_is_a_change_and_stays_described_once():
    scene = Scene(seed=4, noise=4.0, clock=True, events=[Event("object", 14.5, x=0.4, seed=1)])
    gate = SceneGate(ON)
    decisions = [gate.decide(s) for s in segments(scene, 5)]
    assert [d.reason for d in decisions] == ["first", "unchanged", "change", "unchanged", "unchanged"]
    assert decisions[2].score >= 1.0 > max(d.score for d in decisions[3:])


def test_a_slow_change_is_caught_against_the_last_described_segment():
    # a door opening over 40 s: too slow to see frame to frame, not against the reference
    scene = Scene(seed=5, noise=2.0, events=[Event("door", 7.0, duration=40.0, x=0.3)])
    gate = SceneGate(ON)
    got = [gate.decide(s) for s in segments(scene, 8)]
    assert any(d.reason == "change" for d in got)
    frame_to_frame = FrameScorer(280, 504, ScoreParams())
    a, b = frame_to_frame.thumb(scene.frame(20.0, 1)), frame_to_frame.thumb(scene.frame(21.0, 2))
    assert frame_to_frame.score(a, b) < 1.0  # one second of it alone is below the bar


def test_scores_ignore_exposure_and_the_ignore_regions():
    scene = Scene(seed=6, noise=4.0, foliage=True, exposure=(0.0, 4.0, 1.5))
    scorer = FrameScorer(280, 504, ScoreParams(), scene.ignore)
    dark, bright = scorer.thumb(scene.frame(0.0, 0)), scorer.thumb(scene.frame(5.0, 3))
    assert scorer.score(dark, bright) < 0.5
    blind = FrameScorer(280, 504, ScoreParams())  # the same frames, the tree not ignored
    assert blind.score(blind.thumb(scene.frame(0.0, 0)), blind.thumb(scene.frame(5.0, 3))) >= 1.0
    with pytest.raises(ValueError, match="whole frame"):
        FrameScorer(280, 504, ScoreParams(), [(0.0, 0.0, 1.0, 1.0)])


class Published:
    """The publisher intake hands skipped segments' events to (the bus in the service)."""

    def __init__(self) -> None:
        self.segments: list = []

    def publish(self, events, segment=None) -> None:
        self.segments.append(segment)


def intake(lanes, decided=None) -> tuple[IntakeParts, Published]:
    gate = GateStage(ON, {"cam": None}, (lambda source, outcome, reason: decided.append(reason)) if decided is not None else None)
    published = Published()
    parts = IntakeParts(sampling=None, make_segmenter=None, gate=gate, lanes=lanes, publisher=published,
                        skipped_events=lambda segment: [], metrics=None)
    return parts, published


def test_skipped_segments_keep_their_place_in_the_cameras_lane():
    lanes = FairSegmentQueue()
    lanes.add_source("cam", 10, LanePolicy.BLOCK)
    decided: list = []
    parts, published = intake(lanes, decided)
    for segment in segments(Scene(seed=7, noise=3.0), 3):
        hand_over(segment, parts)  # segment 0 waits in the lane: the skipped ones go behind it
    taken = []
    while (segment := lanes.get(timeout=0)) is not None:
        taken.append((segment.index, type(segment).__name__))
        lanes.ack(segment)
    assert taken == [(0, "Segment"), (1, "SkippedSegment"), (2, "SkippedSegment")]
    assert decided == ["first", "unchanged", "unchanged"] and published.segments == []


def rule(**kwargs) -> RuleConfig:
    return RuleConfig(name="person", question="Is there a person?", **kwargs)


def test_a_skipped_segment_repeats_each_rules_last_verdict():
    engine = RuleEngine([rule(raise_after=2, clear_after=2, cooldown_s=30.0)])
    seg = lambda i: make_segment("cam", i, duration=10.0)  # noqa: E731
    assert engine.repeat("cam", seg(0)) == []  # no verdict yet: nothing to repeat
    assert engine.evaluate("cam", seg(1), answers={"person": '{"answer": "yes", "reason": "a man"}'}) == []
    raised = engine.repeat("cam", seg(2))  # still a man: the second positive raises
    assert [e.data["transition"] for e in raised] == ["raised"]
    assert raised[0].data["reason"] == "a man" and raised[0].data["segment"]["index"] == 2
    engine.evaluate("cam", seg(3), answers={"person": '{"answer": "no", "reason": "empty"}'})
    cleared = engine.repeat("cam", seg(4))
    assert [e.data["transition"] for e in cleared] == ["cleared"]
    # the cooldown runs on the skipped segments' media time too
    engine.evaluate("cam", seg(5), answers={"person": '{"answer": "yes", "reason": "again"}'})
    assert engine.repeat("cam", seg(6)) == []  # ends at 70 s, 20 s after the clear at 50 s: cooling down
    assert engine.state("person", "cam").on is False
    assert [e.data["transition"] for e in engine.repeat("cam", seg(8))] == ["raised"]


def test_an_unknown_answer_is_not_what_gets_repeated():
    engine = RuleEngine([rule(raise_after=2)])
    engine.evaluate("cam", make_segment("cam", 0), answers={"person": '{"answer": "yes", "reason": "x"}'})
    engine.evaluate("cam", make_segment("cam", 1), answers={"person": "garbled"})
    assert [e.data["transition"] for e in engine.repeat("cam", make_segment("cam", 2))] == ["raised"]


def test_unchanged_event_is_valid_and_goes_to_the_status_subtree_unretained():
    segment = make_segment("cam", 3)
    event = unchanged_event(SkippedSegment.of(segment, SceneGate(ON).decide(segment)), 0.31, "unchanged", False)
    validate(event.data)
    assert event.type == "unchanged" and event.data["segment_id"] == segment.id
    assert event.id == f"{segment.id}:unchanged"
    live = unchanged_event(segment, 0.0, "unchanged", True)
    assert live.id != event.id
    sink = MqttSink(MqttConfig(topic_prefix="site"))
    [message] = sink.messages_for(event)
    assert message.topic == "site/cam/status/unchanged" and message.retain is False


def test_gate_cost_is_small_enough_to_run_per_frame():
    # not a timed assert: only that one frame needs one thumbnail and one comparison of arrays of
    # about 128 px wide, whatever the frame size (`streamproc bench gate` measures the time)
    scorer = FrameScorer(280, 504, ScoreParams())
    thumb = scorer.thumb(np.zeros((280, 504, 3), np.uint8))
    assert thumb.luma.shape == (68, 124) and thumb.cells.shape == (17, 31)


def test_a_skipped_segment_of_an_idle_camera_is_delivered_at_once_else_queued_behind():
    lanes = FairSegmentQueue()
    lanes.add_source("cam", 4, LanePolicy.DROP_OLDEST)
    parts, published = intake(lanes)
    delivered = published.segments
    cut = list(segments(Scene(seed=8, noise=3.0), 4))
    hand_over(cut[0], parts)  # first: described, to the lanes
    hand_over(cut[1], parts)  # unchanged, but segment 0 is still waiting: behind it, in the lane
    assert delivered == [] and lanes.depth("cam") == 2
    first = lanes.get(timeout=0)
    hand_over(cut[2], parts)  # unchanged, segment 0 in flight: still behind it
    assert delivered == [] and lanes.depth("cam") == 2
    lanes.ack(first)
    for _ in range(2):
        lanes.ack(lanes.get(timeout=0))
    hand_over(cut[3], parts)  # unchanged, the camera idle: delivered now, never in the lane
    assert [s.index for s in delivered] == [3] and lanes.depth("cam") == 0
    assert isinstance(delivered[0], SkippedSegment) and delivered[0].frames[0].image.size == 3
    assert len(delivered[0].frames) == FRAMES  # the times stay, the images go


def test_a_later_door_at_the_same_place_never_hides_an_earlier_one():
    # an earlier bench drew a later, still closed door over an earlier open one: its opening was
    # invisible while the truth counted it (two fake misses)
    doors = [Event("door", 10.0, 2.0, x=0.3, until=30.0), Event("door", 60.0, 2.0, x=0.3)]
    scene = Scene(seed=8, noise=0.0, events=doors)
    region = np.s_[100:160, 140:200]  # around the door at x = 0.3 of 504 px
    closed, opened = scene.frame(5.0)[region].astype(int), scene.frame(20.0)[region].astype(int)
    assert np.abs(opened - closed).mean() > 10
    assert scene.changed_between(11.0, 20.0)


def test_generated_doors_and_objects_never_share_a_place_at_the_same_time():
    from streamproc.bench.scenes import candidate_events

    events = [e for _, e in candidate_events(np.random.default_rng(5), 3600, 18.0) if e.kind in ("door", "object")]
    assert len(events) > 40
    for a in events:
        for b in events:
            if a is not b and a.kind == b.kind and a.x == b.x and a.start < b.start:
                assert b.start > (a.until or a.start) + a.duration, (a, b)
