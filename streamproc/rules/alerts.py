"""Alert rules: per (rule, source) state with hysteresis and cooldown, raised/cleared events.

Per segment, every rule that applies to the source gets a verdict: question rules from the model's
answer to `question_prompt(rule.question)`, keyword/pattern rules from the caption text. Then:

- yes: count positives in a row; OFF -> ON (a `raised` event) once `raise_after` are reached,
  unless the rule is cooling down (`cooldown_s` since it last cleared); it then raises on the first
  positive after the cooldown.
- no: count negatives in a row; ON -> OFF (a `cleared` event) once `clear_after` are reached.
- unknown (malformed or missing answer): counted and logged, changes nothing -- neither the state
  nor the runs of positives/negatives, so one garbled answer cannot raise, clear or reset an alert.

A segment the scene-change gate skipped (nothing changed) goes through `repeat()`: each rule gets
its last known verdict again, so hysteresis and cooldown keep counting in segments and media time.

Segments of one source must be evaluated in order, by one thread at a time: the lanes hand out at
most one segment per source, and a worker emits its events before it acks the segment. Different
sources may be evaluated from different threads; one lock guards the table of states.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Iterable, Mapping, Optional, Sequence, Union

from ..events import Event, alert_event
from .answers import Verdict, parse_answer, question_prompt
from .keywords import TextMatcher

if TYPE_CHECKING:  # pragma: no cover
    from ..config.rules import RuleConfig
    from ..frames import Segment

__all__ = ["RuleEngine", "RuleState", "Verdict", "parse_answer", "question_prompt"]

log = logging.getLogger(__name__)


@dataclass
class RuleState:
    on: bool = False
    positives: int = 0  # yes verdicts in a row
    negatives: int = 0  # no verdicts in a row
    raised_at: Optional[float] = None  # rule clock
    raised_wall: Optional[float] = None  # wall time of the segment that raised it
    cleared_at: Optional[float] = None  # rule clock
    last_answer: str = "unknown"
    last_reason: str = ""


class RuleEngine:
    def __init__(self, rules: Sequence["RuleConfig"], *, live_sources: Iterable[str] = ()):
        self.rules = list(rules)
        self.live_sources = set(live_sources)  # ids of live sources use wall time (see events.py)
        self._matchers = {r.name: TextMatcher(r) for r in self.rules if not r.asks_model}
        self._prompts = {r.name: question_prompt(r.question) for r in self.rules if r.asks_model}
        self._states: dict[tuple[str, str], RuleState] = {}
        self._lock = threading.Lock()
        self.disabled: set[str] = set()  # rules switched off at run time (service/control.py)
        self.counters = {"evaluated": 0, "yes": 0, "no": 0, "unknown": 0, "raised": 0, "cleared": 0, "suppressed": 0}

    def rules_for(self, source: str) -> list["RuleConfig"]:
        return [r for r in self.rules if r.applies_to(source) and r.name not in self.disabled]

    def set_enabled(self, rule: str, on: bool) -> list[str]:
        """Enable or disable a rule at run time. Disabling forgets its state on every source (it
        starts OFF when enabled again); returns the sources where it was ON."""
        with self._lock:
            if on:
                self.disabled.discard(rule)
                return []
            self.disabled.add(rule)
            was_on = [source for (name, source), state in self._states.items() if name == rule and state.on]
            for key in [key for key in self._states if key[0] == rule]:
                del self._states[key]
        return was_on

    def questions_for(self, source: str) -> dict[str, str]:
        """{rule name: prompt} to ask the model for each segment of `source` (in config order)."""
        return {r.name: self._prompts[r.name] for r in self.rules_for(source) if r.asks_model}

    def raw_questions_for(self, source: str) -> dict[str, str]:
        """{rule name: its question as configured} for the joint call (rules.answers.joint_prompt)."""
        return {r.name: r.question for r in self.rules_for(source) if r.question is not None}

    def state(self, rule: str, source: str) -> RuleState:
        with self._lock:
            return self._states.setdefault((rule, source), RuleState())

    # The states live here (in memory) by default; a state store (cluster/rulestate.py: JetStream
    # KV) saves a source's snapshot after each segment and restores it when a box takes the source.
    def snapshot(self, source: str) -> dict[str, dict]:
        """{rule: state fields} of every rule of `source` (JSON-safe)."""
        with self._lock:
            return {rule: dict(vars(s)) for (rule, src), s in self._states.items() if src == source}

    def restore(self, source: str, states: Mapping[str, Mapping]) -> None:
        """Replace the states of `source` with a snapshot; unknown rules and fields are ignored."""
        fields = set(vars(RuleState()))
        with self._lock:
            for key in [k for k in self._states if k[1] == source]:
                del self._states[key]
            for rule, values in states.items():
                if any(r.name == rule for r in self.rules):
                    self._states[(rule, source)] = RuleState(**{k: v for k, v in values.items() if k in fields})

    def evaluate(
        self,
        source: str,
        segment: "Segment",
        caption_text: str = "",
        answers: Optional[Mapping[str, Union[str, Verdict, None]]] = None,
        now: Optional[float] = None,
        only: Optional[Collection[str]] = None,
    ) -> list[Event]:
        """Update every rule of `source` with this segment (or the rules named in `only`); the
        raised/cleared events it caused.

        `answers` maps question-rule names to the model's raw reply (or a parsed Verdict).
        `now` is the rule clock for cooldowns, in seconds; by default the segment's end media time,
        so a batch job running faster than real time cools down in video time.
        """
        answers = answers or {}
        clock = segment.end if now is None else now
        events: list[Event] = []
        for rule in self.rules_for(source):
            if only is not None and rule.name not in only:
                continue
            verdict = self._verdict(rule, caption_text, answers)
            event = self._step(rule, source, segment, verdict, clock)
            if event is not None:
                events.append(event)
        return events

    def repeat(self, source: str, segment: "Segment", now: Optional[float] = None) -> list[Event]:
        """A segment the scene-change gate skipped: nothing changed, so each rule's verdict is the
        one it last had on this source, given again. Runs of positives and negatives keep growing
        and the rule clock moves on, so `raise_after`, `clear_after` and `cooldown_s` mean what
        they mean when every segment is described. A rule with no known verdict yet stays as it
        is (an unknown answer changes nothing either)."""
        clock = segment.end if now is None else now
        events: list[Event] = []
        for rule in self.rules_for(source):
            with self._lock:
                state = self._states.get((rule.name, source))
                last = (state.last_answer, state.last_reason) if state is not None else ("unknown", "")
                self.counters["repeated"] = self.counters.get("repeated", 0) + 1
            if last[0] not in ("yes", "no"):
                continue
            event = self._step(rule, source, segment, Verdict(last[0], last[1]), clock)
            if event is not None:
                events.append(event)
        return events

    def _verdict(self, rule: "RuleConfig", caption: str, answers: Mapping[str, object]) -> Verdict:
        if not rule.asks_model:
            return self._matchers[rule.name].match(caption)
        reply = answers.get(rule.name)
        if isinstance(reply, Verdict):
            return reply
        if reply is None:
            return Verdict("unknown", "", "no answer from the model")
        return parse_answer(str(reply))

    def _step(self, rule: "RuleConfig", source: str, segment: "Segment", verdict: Verdict, clock: float) -> Optional[Event]:
        with self._lock:
            state = self._states.setdefault((rule.name, source), RuleState())
            self.counters["evaluated"] += 1
            self.counters[verdict.answer] += 1
            if not verdict.known:
                log.warning(
                    "rule %s on %s, segment %d: unusable answer (%s); state unchanged",
                    rule.name, source, segment.index, verdict.error,
                    extra={"rule": rule.name, "source": source},
                )
                return None
            state.last_answer, state.last_reason = verdict.answer, verdict.reason
            if verdict.answer == "yes":
                state.positives += 1
                state.negatives = 0
                if state.on or state.positives < rule.raise_after:
                    return None
                if state.cleared_at is not None and clock - state.cleared_at < rule.cooldown_s:
                    self.counters["suppressed"] += 1
                    log.info("rule %s on %s: positive during cooldown, not raised", rule.name, source)
                    return None
                state.on, state.raised_at, state.raised_wall = True, clock, segment.end_wall
                self.counters["raised"] += 1
                transition, raised_wall = "raised", None
            else:
                state.negatives += 1
                state.positives = 0
                if not state.on or state.negatives < rule.clear_after:
                    return None
                state.on, state.cleared_at = False, clock
                self.counters["cleared"] += 1
                transition, raised_wall = "cleared", state.raised_wall
        log.info("rule %s on %s %s: %s", rule.name, source, transition, verdict.reason or "-")
        return alert_event(
            rule=rule.name,
            kind=rule.kind,
            source=source,
            segment=segment,
            transition=transition,
            verdict=verdict.answer,
            reason=verdict.reason,
            question=rule.question,
            raised_at=raised_wall,
            live=source in self.live_sources,
        )
