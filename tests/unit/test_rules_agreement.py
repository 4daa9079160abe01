"""Issue 22 item 2's must-show: rule verdicts from the joint answer equal the follow-up answers'.

Two levels:
- the transformers reference (the tiny random checkpoint): both ways run end to end through the
  service's describer; its answers are noise, so this judges the plumbing (one call per segment
  against 1 + rules, every question in the joint prompt, verdicts exactly what the parser makes
  of the raw answers, nothing raised or cleared on unknown) and not the model;
- a consistent answerer over the real input builder: it reads the rendered prompt the describer
  built and answers each question it finds from a fixed truth (per question and frames), in the
  format that prompt asks for. Both ways must then give the truth's verdicts, which fails when a
  question is missing from a prompt, a rule name is mapped wrongly, or either parser breaks.
How a real checkpoint is judged: streamproc/bench/rules_agreement.py.
"""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from streamproc.backends.base import BackendCapabilities, GenerationParams, Result
from streamproc.bench.rules_agreement import compare
from streamproc.config.rules import RuleConfig
from streamproc.pipeline.describer import DescribeSettings
from streamproc.rules.answers import parse_joint
from streamproc.urgency import URGENT
from tests.support.segments import make_segment

RULES = [RuleConfig(name="fence", question="Is a person climbing the fence?"),
         RuleConfig(name="parcel", question="Is a parcel left at the door?"),
         RuleConfig(name="car", question="Is a car parked in the driveway?")]


def _settings() -> DescribeSettings:
    params = GenerationParams(max_new_tokens=64)
    return DescribeSettings({}, "Describe what happens in this video.", None, 96, params,
                            GenerationParams(max_new_tokens=24), policy=URGENT)


def _segments(count: int = 4):
    return [make_segment("cam1", k, duration=2.0, size=(56, 56)) for k in range(count)]


def _truth(question: str, frames_key: str) -> str:
    return "yes" if hashlib.sha1(f"{question}|{frames_key}".encode()).digest()[0] % 2 else "no"


class ConsistentAnswerer:
    """Answers what the rendered prompt asks, from `_truth`: the joint lines when the prompt asks
    for them, strict JSON to a follow-up question, else a caption. Not a model: a stand-in that
    answers the same question the same way whichever way it is asked."""

    name, model_id = "answerer", "consistent-answerer"

    def __init__(self, builder):
        self.inputs = builder
        self.capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=True,
                                                sampling=False, streaming=False)

    def describe(self, inputs, params, **stream):
        key = hashlib.sha1(inputs.pixel_values("video").tobytes()).hexdigest()
        prompt = inputs.prompt
        if "Reply in exactly this form" in prompt:
            asked = re.findall(r"^([\w-]+): (.+\?)$", prompt.split("Questions:")[1], re.M)
            text = "\n".join(f"{name}: {_truth(question, key)}" for name, question in asked) + "\ncaption: A yard."
        elif "Answer this question about the video:" in prompt:
            question = prompt.rsplit("Answer this question about the video:", 1)[1].split("\n")[0].strip()
            text = json.dumps({"answer": _truth(question, key), "reason": "seen"})
        else:
            text = "A yard."
        return Result(text, len(inputs.input_ids), inputs.visual_tokens, 8, self.model_id)

    def follow_up(self, inputs, params, **stream):
        return self.describe(inputs, params)


def test_joint_verdicts_equal_follow_up_verdicts_for_a_consistent_answerer(tiny_builder):
    segments = _segments()
    result = compare(ConsistentAnswerer(tiny_builder), segments, RULES, _settings())
    keys = {s.index: hashlib.sha1(tiny_builder.build_segment(s, "x").pixel_values("video").tobytes()).hexdigest()
            for s in segments}
    expected = [_truth(rule.question, keys[s.index]) for s in segments for rule in RULES]
    assert [r.joint for r in result.rows] == expected == [r.followup for r in result.rows]
    assert {"yes", "no"} <= set(expected)  # the truth is not one-sided
    assert (result.joint_calls, result.followup_calls) == (len(segments), len(segments) * (1 + len(RULES)))


@pytest.mark.hf
def test_both_ways_on_the_transformers_reference(tiny_hf_backend):
    segments = _segments(3)
    result = compare(tiny_hf_backend, segments, RULES, _settings())
    assert (result.joint_calls, result.followup_calls) == (3, 3 * (1 + len(RULES)))
    assert {r.joint for r in result.rows} <= {"yes", "no", "unknown"}
    # the plumbing: a joint verdict is exactly what the parser makes of that call's raw answer
    from streamproc.bench.rules_agreement import CountingBackend
    from streamproc.pipeline.describer import SegmentDescriber
    from streamproc.rules.alerts import RuleEngine

    counted, engine = CountingBackend(tiny_hf_backend), RuleEngine(RULES)
    described = SegmentDescriber(counted, _settings(), engine).describe(segments[0])
    prompt = counted.prompts[0].prompt
    assert all(rule.question in prompt and f"{rule.name}: yes or no" in prompt for rule in RULES)
    caption, verdicts = parse_joint(described.raw_answer, [r.name for r in RULES])
    assert {n: v.answer for n, v in verdicts.items()} == {r.name: described.answers[r.name] for r in RULES}
    assert described.events[0].data["text"] == caption
    unknown = [n for n, v in verdicts.items() if not v.known]
    assert not [e for e in described.events[1:] if e.data.get("rule") in unknown]  # unknown raises/clears nothing


class StreamingAnswerer:
    """Streams a fixed joint answer token by token (as the TPU and transformers backends do)."""

    name, model_id = "streamer", "streaming-answerer"

    def __init__(self, builder, text: str, fail_after_verdicts: bool = False):
        self.inputs, self.text, self.fail = builder, text, fail_after_verdicts
        self.capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=False,
                                                sampling=False, streaming=True)
        self.early_seen_at: list[int] = []

    def describe(self, inputs, params, on_token=None):
        ids = self.inputs.tokenizer.encode(self.text)
        for k, token in enumerate(ids):
            on_token(token)
            if self.fail and "caption" in self.inputs.tokenizer.decode(ids[: k + 1]):
                self.fail = False
                from streamproc.errors import BackendError

                raise BackendError("lost the device mid-answer")
        return Result(self.text, len(inputs.input_ids), inputs.visual_tokens, len(ids), self.model_id)


@pytest.mark.parametrize("fail_once", [False, True])
def test_streamed_verdicts_raise_alerts_before_the_caption_and_only_once(tiny_builder, fail_once):
    from streamproc.pipeline.describer import SegmentDescriber
    from streamproc.pipeline.supervisor import WorkerSupervisor
    from streamproc.rules.alerts import RuleEngine

    rules = RULES[:2] + [RuleConfig(name="walker", keywords=["walks"])]
    engine = RuleEngine(rules)
    backend = StreamingAnswerer(tiny_builder, "fence: yes\nparcel: no\ncaption: A man walks to the fence.", fail_once)
    early: list = []

    import threading

    from streamproc.metrics import Metrics

    supervisor = WorkerSupervisor(0, SegmentDescriber(backend, _settings(), engine), lambda: None, threading.Event(), Metrics())
    described = supervisor.describe(make_segment("cam1", 0, duration=2.0, size=(56, 56)), early.append)
    assert [[(e.data["rule"], e.data["transition"]) for e in batch] for batch in early] == [[("fence", "raised")]]
    assert described.events[0].type == "caption" and described.events[0].data["text"] == "A man walks to the fence."
    assert [(e.data["rule"], e.data["transition"]) for e in described.events[1:]] == [("walker", "raised")]
    assert engine.counters["raised"] == 2 and engine.counters["evaluated"] == 3  # no rule stepped twice
