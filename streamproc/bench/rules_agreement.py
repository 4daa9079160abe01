"""Do the joint call's rule verdicts equal the follow-up turns' (issue 22 item 2)?

`compare(backend, segments, rules)` describes each segment twice with the same backend: once the
joint way (one call: verdict lines, then the caption) and once the follow-up way (a caption call,
then one question turn per rule, strict-JSON answers), each through the service's own
`SegmentDescriber` and a fresh `RuleEngine`, and lists the two verdicts of every (segment, rule),
with the calls each way made.

With the tiny random checkpoint this judges the parsing and the plumbing only (its answers are
noise, so most verdicts are `unknown` both ways). A real checkpoint is judged with the same
function (`streamproc bench rules --checkpoint DIR --clip FILE --rules rules.yaml`): segments
of labelled clips, the agreement rate between the two ways, and each way's accuracy against the
labels; the joint call is adopted for a model where its accuracy is not below the follow-ups'.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from ..rules.alerts import RuleEngine
from ..rules.answers import parse_answer
from ..urgency import URGENT, RulesMode


@dataclass(frozen=True)
class Row:
    segment: int
    rule: str
    joint: str  # yes | no | unknown
    followup: str


@dataclass
class Agreement:
    rows: list[Row]
    joint_calls: int
    followup_calls: int

    @property
    def agreed(self) -> int:
        return sum(r.joint == r.followup for r in self.rows)

    @property
    def known_both(self) -> int:
        return sum(r.joint != "unknown" and r.followup != "unknown" for r in self.rows)


class CountingBackend:
    """The backend under test, with its calls counted (describe and follow_up alike)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.name, self.model_id = backend.name, backend.model_id
        self.capabilities, self.inputs = backend.capabilities, backend.inputs
        self.calls = 0
        self.prompts: list[Any] = []

    def describe(self, inputs: Any, params: Any, **stream: Any) -> Any:
        self.calls += 1
        self.prompts.append(inputs)
        return self.backend.describe(inputs, params, **stream)

    def follow_up(self, inputs: Any, params: Any, **stream: Any) -> Any:
        self.calls += 1
        self.prompts.append(inputs)
        return self.backend.follow_up(inputs, params, **stream)


def compare(backend: Any, segments: Sequence[Any], rules: Sequence[Any], settings: Any) -> Agreement:
    """Both ways over `segments` (`settings`: a DescribeSettings; its policy's rules mode is set
    per way)."""
    from ..pipeline.describer import SegmentDescriber

    ways = {}
    calls = {}
    for mode in (RulesMode.JOINT, RulesMode.FOLLOWUP):
        counted = CountingBackend(backend)
        policy = replace(settings.policy if settings.policy is not None else URGENT, rules_mode=mode)
        describer = SegmentDescriber(counted, replace(settings, policy=policy), RuleEngine(rules))
        ways[mode] = [describer.describe(segment).answers for segment in segments]
        calls[mode] = counted.calls
    rows = []
    for k, segment in enumerate(segments):
        for rule in rules:
            joint = ways[RulesMode.JOINT][k].get(rule.name, "unknown")
            followup = parse_answer(ways[RulesMode.FOLLOWUP][k].get(rule.name)).answer
            rows.append(Row(segment.index, rule.name, joint, followup))
    return Agreement(rows, calls[RulesMode.JOINT], calls[RulesMode.FOLLOWUP])
