"""Do the joint call's rule verdicts equal the follow-up turns' (issue 22 item 2)?

`compare(backend, segments, rules)` describes each segment twice with the same backend: once the
joint way (one call: verdict lines, then the caption) and once the follow-up way (a caption call,
then one question turn per rule, strict-JSON answers), each through the service's own
`SegmentDescriber` and a fresh `RuleEngine`, and lists the two verdicts of every (segment, rule),
with the calls each way made.

With the tiny random checkpoint this judges the parsing and the plumbing only (its answers are
noise, so most verdicts are `unknown` both ways). A real checkpoint is judged with the same
function (`streamproc bench rules --config CONFIG [--labels labels.csv]`: the config's backend,
e.g. the hf backend over the real Qwen2.5-VL-3B checkpoint or the tpu one over its bmodel, its
question rules, its first file source cut into segments): the agreement rate between the two
ways, and with labels (segment,rule,yes|no, judged by eye) each way's accuracy. The joint call is
kept for a model where its accuracy is not below the follow-ups' (else `rules_call: followup`,
or `auto` on a history bmodel).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

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


def _labels(path: Optional[Path]) -> dict[tuple[int, str], str]:
    """segment,rule,answer rows (a header line is skipped): the truth, judged by eye."""
    if path is None:
        return {}
    rows = [line.split(",") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(int(r[0]), r[1].strip()): r[2].strip().lower() for r in rows if r[0].strip().isdigit()}


def table(result: Agreement, labels: dict[tuple[int, str], str]) -> str:
    lines = [f"calls: joint {result.joint_calls}, follow-ups {result.followup_calls}", "",
             "| rule | segments | same verdict | known both ways | joint yes / no / unknown | follow-up yes / no / unknown "
             "| joint right | follow-up right |", "|---|---:|---:|---:|---|---|---:|---:|"]
    for rule in sorted({r.rule for r in result.rows}):
        rows = [r for r in result.rows if r.rule == rule]
        judged = [r for r in rows if (r.segment, rule) in labels]

        def right(way: str) -> str:
            return f"{sum(getattr(r, way) == labels[(r.segment, rule)] for r in judged)} / {len(judged)}" if judged else "-"

        def spread(way: str) -> str:
            return " / ".join(str(sum(getattr(r, way) == a for r in rows)) for a in ("yes", "no", "unknown"))

        lines.append(f"| {rule} | {len(rows)} | {sum(r.joint == r.followup for r in rows)} | "
                     f"{sum(r.joint != 'unknown' and r.followup != 'unknown' for r in rows)} | {spread('joint')} | "
                     f"{spread('followup')} | {right('joint')} | {right('followup')} |")
    return "\n".join(lines)


def run_command(args: Any) -> str:
    """`streamproc bench rules`: both ways on the first file source of a config, its model and
    its question rules."""
    from ..backends.base import create_backend
    from ..config import load_config
    from ..errors import UsageError
    from ..ingest.sources import VideoSource
    from ..pipeline.describer import describe_settings
    from .realclips import segments as cut

    config = load_config(args.config)
    source = next((s for s in config.sources if s.enabled and s.path is not None), None)
    rules = [r for r in config.rules if r.asks_model]
    if source is None or not rules or config.backend is None:
        raise UsageError("the config needs a backend, a file source and at least one question rule")
    frames = list(VideoSource(source, config.sampling).frames())
    segments = cut(frames, max(2, args.frames - args.frames % 2))[: args.segments]
    backend = create_backend(config.backend)
    try:
        result = compare(backend, segments, rules, describe_settings(config))
    finally:
        backend.close()
    return table(result, _labels(args.labels))
