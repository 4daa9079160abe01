"""The urgency policy under contention (issue 22): a call taken while other cameras wait is
marked and thinned by the lanes and asks for the short caption; once a joint call's verdicts are
out, an onset waiting in another camera ends its caption early (the alert already went out,
nothing is aborted). The simulator's side is in test_capacity.py."""
from __future__ import annotations

import dataclasses
import threading

import pytest

from streamproc.backends.base import BackendCapabilities, GenerationParams, Result
from streamproc.config.rules import RuleConfig
from streamproc.config.service import PolicyConfig
from streamproc.lanes import FairSegmentQueue, LanePolicy
from streamproc.metrics import Metrics
from streamproc.pipeline.describer import DescribeSettings, SegmentDescriber
from streamproc.pipeline.supervisor import WorkerSupervisor
from streamproc.rules.alerts import RuleEngine
from streamproc.urgency import URGENT, Order, RulesMode
from tests.support.segments import make_segment

CAPTION = "caption: A man walks along the fence and climbs over it, then he runs off toward the road. He is gone."


def _described(source: str, index: int, seconds: float = 12.0, onset: bool = False):
    segment = make_segment(source, index, duration=seconds, size=(56, 56))
    return dataclasses.replace(segment, gate_reason="change", onset=onset, budget_frames=18)


def _lanes(*sources: str) -> FairSegmentQueue:
    lanes = FairSegmentQueue(order=Order.URGENCY, busy_frames=URGENT.busy_frames)
    for source in sources:
        lanes.add_source(source, 4, LanePolicy.COALESCE)
    return lanes


def test_a_segment_taken_while_another_camera_waits_is_marked_and_thinned():
    lanes = _lanes("cam1", "cam2")
    lanes.put(_described("cam1", 0))
    lanes.put(_described("cam2", 0))
    first = lanes.get(timeout=1)
    assert first.contended and len(first.frames) == URGENT.busy_frames
    times = [f.media_time for f in first.frames]
    assert times[0] == 0.0 and times[-1] == 11.0 and times == sorted(times)  # thinned: the first and last kept
    lanes.ack(first)
    second = lanes.get(timeout=1)
    assert second.source != first.source and not second.contended and len(second.frames) == 12


def test_files_read_at_full_speed_neither_contend_nor_are_contended():
    lanes = FairSegmentQueue(order=Order.URGENCY, busy_frames=URGENT.busy_frames)
    lanes.add_source("file1", 4, LanePolicy.BLOCK)  # a file read as fast as it decodes: always work waiting
    lanes.add_source("file2", 4, LanePolicy.BLOCK)
    lanes.add_source("cam1", 4, LanePolicy.COALESCE)
    lanes.put(_described("file1", 0))
    lanes.put(_described("file2", 0, onset=True))
    lanes.put(_described("cam1", 0))
    assert not lanes.onset_waiting(besides="cam1")  # a file's onset has no deadline to keep
    taken = [lanes.get(timeout=1) for _ in range(3)]
    assert {s.source for s in taken} == {"file1", "file2", "cam1"}
    assert not any(s.contended for s in taken) and all(len(s.frames) == 12 for s in taken)


def test_the_lanes_say_whether_an_onset_waits_in_another_camera():
    lanes = _lanes("cam1", "cam2")
    lanes.put(_described("cam2", 0, seconds=2.0, onset=True))
    assert lanes.onset_waiting(besides="cam1") and not lanes.onset_waiting(besides="cam2")
    lanes.ack(lanes.get(timeout=1))
    assert not lanes.onset_waiting(besides="cam1")


class StoppableStreamer:
    """Streams a fixed joint answer token by token and stops where on_token says (as the TPU and
    transformers backends do); records the budget it was given."""

    name, model_id = "streamer", "stoppable-streamer"

    def __init__(self, builder, text: str):
        self.inputs, self.text = builder, text
        self.capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=False,
                                                sampling=False, streaming=True)
        self.max_new_tokens: list[int] = []

    def describe(self, inputs, params, on_token=None):
        self.max_new_tokens.append(params.max_new_tokens)
        ids = self.inputs.tokenizer.encode(self.text)
        sent, finish = [], "stop"
        for token in ids:
            sent.append(token)
            if on_token is not None and on_token(token):
                finish = "ended"
                break
        text = self.inputs.tokenizer.decode(sent)
        return Result(text, len(inputs.input_ids), inputs.visual_tokens, len(sent), self.model_id, finish_reason=finish)


def _describe(builder, onset_elsewhere, segment=None):
    settings = DescribeSettings({}, "Describe what happens in this video.", None, 96, GenerationParams(max_new_tokens=64),
                                GenerationParams(max_new_tokens=24), policy=URGENT)
    backend = StoppableStreamer(builder, "fence: yes\n" + CAPTION)
    describer = SegmentDescriber(backend, settings, RuleEngine([RuleConfig(name="fence", question="Is a man climbing?")]),
                                 onset_elsewhere=onset_elsewhere)
    early: list = []
    supervisor = WorkerSupervisor(0, describer, lambda: None, threading.Event(), Metrics())
    described = supervisor.describe(segment or make_segment("cam1", 0, duration=2.0, size=(56, 56)), early.append)
    return described, early, backend


def test_an_onset_elsewhere_ends_the_caption_after_the_verdicts(tiny_builder):
    asked: list[str] = []

    def onset_elsewhere(source: str) -> bool:
        asked.append(source)
        return True

    described, early, _ = _describe(tiny_builder, onset_elsewhere)
    assert [[(e.data["rule"], e.data["transition"]) for e in batch] for batch in early] == [[("fence", "raised")]]
    caption = described.events[0].data
    assert caption["finish_reason"] == "ended"
    assert caption["text"] and CAPTION.removeprefix("caption: ").startswith(caption["text"])
    assert len(tiny_builder.tokenizer.encode(caption["text"])) <= URGENT.yield_tokens
    assert set(asked) == {"cam1"}  # asked for the others, never before the verdicts were out

    calm, _, _ = _describe(tiny_builder, lambda source: False)
    assert calm.events[0].data["finish_reason"] == "stop"
    assert calm.events[0].data["text"] == CAPTION.removeprefix("caption: ")


def test_a_contended_segment_asks_for_the_short_caption(tiny_builder):
    contended = dataclasses.replace(make_segment("cam1", 0, duration=2.0, size=(56, 56)), contended=True)
    _, _, backend = _describe(tiny_builder, None, contended)
    _, _, calm = _describe(tiny_builder, None)
    assert calm.max_new_tokens[0] - backend.max_new_tokens[0] == URGENT.caption_tokens - URGENT.busy_caption_tokens


def test_the_follow_up_way_asks_for_the_short_caption_too(tiny_builder):
    settings = DescribeSettings({}, "Describe what happens in this video.", None, 96, GenerationParams(max_new_tokens=64),
                                GenerationParams(max_new_tokens=24), policy=dataclasses.replace(URGENT, rules_mode=RulesMode.FOLLOWUP))
    backend = StoppableStreamer(tiny_builder, "A man walks along the fence.")
    describer = SegmentDescriber(backend, settings, RuleEngine([RuleConfig(name="walker", keywords=["walks"])]))
    segment = make_segment("cam1", 0, duration=2.0, size=(56, 56))
    describer.describe(dataclasses.replace(segment, contended=True))
    describer.describe(segment)
    assert backend.max_new_tokens == [URGENT.busy_caption_tokens, URGENT.caption_tokens]


@pytest.mark.parametrize("data, expected", [
    ({}, (16, 6, 8)),
    ({"contention": False}, (None, None, None)),
    ({"busy_caption_tokens": 24, "yield_tokens": 4}, (24, 6, 4)),
    ({"preset": "old"}, (None, None, None)),
])
def test_the_config_sets_or_switches_off_the_contention_rules(data, expected):
    policy = PolicyConfig(**data).resolve()
    assert (policy.busy_caption_tokens, policy.busy_frames, policy.yield_tokens) == expected
