"""The one describer: a segment (or images) through a backend, and a segment's rule questions.

`describe_segment` / `describe_images` build the inputs once, run the backend and add the host's
preparation time to the result's timings (the `caption` command and the service both use them).
`SegmentDescriber` owns one backend for one model worker. By default (`service.policy`,
streamproc/urgency.py) one call answers the caption and every alert rule's question together
(fixed verdict lines, then the caption). The follow-up way: the caption, then each question as a
follow-up turn; a backend that keeps its KV cache (the TPU engine on a history bmodel) answers
them without running the ViT again, each from the same caption turn; backends without history
run the whole conversation again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..backends.base import Backend, GenerationParams, Result
from ..config.model import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT
from ..events import Event, caption_event, unchanged_event
from ..frames import Segment
from ..rules.answers import CAPTION_LABEL, VerdictStream, joint_prompt, parse_joint
from ..urgency import URGENT, Policy, RulesMode

log = logging.getLogger(__name__)


def run_model(backend: Backend, build: Callable[[], Any], params: GenerationParams, **stream: Any) -> Result:
    """`build()` makes the inputs; the result's timings include that preparation. `stream`:
    on_token=callable for a backend whose capabilities say it streams."""
    started = time.perf_counter()
    inputs = build()
    prepared = time.perf_counter() - started
    result = backend.describe(inputs, params, **stream)
    result.timings.preprocess_s += prepared
    result.timings.total_s += prepared
    return result


def describe_segment(
    backend: Backend, segment: Segment, prompt: str = DEFAULT_USER_PROMPT, *,
    system: Optional[str] = DEFAULT_SYSTEM_PROMPT, params: Optional[GenerationParams] = None, answer_reserve: int = 1,
) -> Result:
    """The backend's answer to `prompt` about the segment's frames (one video block). With a
    backend of fixed sequence length the request must leave `answer_reserve` tokens for the
    answer (InputTooLarge otherwise)."""
    build = partial(backend.inputs.build_segment, segment, prompt, system=system, answer_reserve=answer_reserve)
    return run_model(backend, build, params or GenerationParams())


def describe_images(
    backend: Backend, images: Sequence[np.ndarray], prompt: str, *,
    system: Optional[str] = DEFAULT_SYSTEM_PROMPT, params: Optional[GenerationParams] = None, answer_reserve: int = 1,
) -> Result:
    """The backend's answer about one or more images (each its own vision block)."""
    build = partial(backend.inputs.build, prompt, images=list(images), system=system, answer_reserve=answer_reserve)
    return run_model(backend, build, params or GenerationParams())


@dataclass
class Described:
    segment: Segment
    result: Result
    answers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    seconds: float = 0.0
    raw_answer: str = ""  # the joint call's whole answer (verdict lines and caption), before parsing


@dataclass(frozen=True)
class DescribeSettings:
    """What a describer needs from the config, resolved once by the composition root."""

    prompts: Mapping[str, str]  # source -> its user prompt
    default_prompt: str
    system: Optional[str]
    answer_reserve: int
    params: GenerationParams
    rule_params: GenerationParams  # follow-up rule answers are short: greedy and brief
    live_sources: frozenset[str] = frozenset()
    policy: Policy = URGENT  # rules mode, caption budget, verdicts first (streamproc/urgency.py)

    def prompt_for(self, source: str) -> str:
        return self.prompts.get(source, self.default_prompt)

    def caption_budget(self, segment: Segment) -> int:
        """The caption's budget for this segment: the policy's (shorter when the segment was taken
        under contention), within generation.max_new_tokens (a cap on any answer)."""
        return min(self.policy.caption_budget(segment.contended), self.params.max_new_tokens)


EarlyEvents = Callable[[list[Event]], None]  # publishes a segment's alerts before its caption
OnsetElsewhere = Callable[[str], bool]  # is an onset segment of another source waiting? (the lanes')
SENTENCE_ENDS = (".", "!", "?")


class SegmentDescriber:
    """Owns one backend; used by one worker thread at a time.

    JOINT rules (the default, `service.policy`): one call answers the caption and every question
    rule (`rules.answers.joint_prompt`: verdict lines first, then the caption). With a streaming
    backend the verdict lines are parsed as they are decoded and the rules' alerts handed to
    `early` before the caption is done. FOLLOWUP: a caption call, then a follow-up turn per rule
    (cheap on a backend that keeps its KV history; AUTO picks it there).

    `onset_elsewhere` (the lanes' `onset_waiting`): once a joint call's verdicts are out, an onset
    waiting in another camera ends its caption within the policy's `yield_tokens` (urgency.py)."""

    def __init__(self, backend: Backend, settings: DescribeSettings, rules: Any,
                 onset_elsewhere: Optional[OnsetElsewhere] = None):
        self.backend = backend
        self.settings = settings
        self.rules = rules
        self.onset_elsewhere = onset_elsewhere
        capabilities = backend.capabilities
        self.mode = settings.policy.rules_mode.resolve(capabilities.keeps_history)
        self._evaluated: Optional[tuple[str, int]] = None  # rules already stepped for this segment

    def describe(self, segment: Segment, early: Optional[EarlyEvents] = None) -> Described:
        started = time.perf_counter()
        if self.mode is RulesMode.JOINT:
            described = self._joint(segment, early)
        else:
            described = self._followup(segment)
        described.seconds = time.perf_counter() - started
        return described

    def _build(self, segment: Segment, prompt: str, reserve: int) -> tuple[Callable[[], Any], list]:
        settings, builder, made = self.settings, self.backend.inputs, []

        def build() -> Any:
            made.append(builder.build_segment(segment, prompt, system=settings.system,
                                              answer_reserve=max(settings.answer_reserve, reserve)))
            return made[-1]

        return build, made

    def _joint(self, segment: Segment, early: Optional[EarlyEvents]) -> Described:
        settings, source = self.settings, segment.source
        questions = self.rules.raw_questions_for(source)
        names = list(questions)
        policy = settings.policy
        budget = settings.caption_budget(segment)
        prompt = joint_prompt(settings.prompt_for(source), questions, budget)
        encode = self.backend.inputs.tokenizer.encode
        verdict_tokens = sum(max(policy.verdict_tokens, len(encode(f"{name}: yes\n"))) for name in names)
        answer = budget + verdict_tokens + (len(encode(f"{CAPTION_LABEL}: ")) if names else 0)
        params = replace(settings.params, max_new_tokens=answer)
        build, _ = self._build(segment, prompt, answer)
        on_token = self._watcher(segment, names, early) if names and early is not None else None
        if on_token is not None:
            result = run_model(self.backend, build, params, on_token=on_token)
        else:
            result = run_model(self.backend, build, params)
        caption, verdicts = parse_joint(result.text, names)
        for name, verdict in verdicts.items():
            log.debug("%s segment %d, rule %s: %s", source, segment.index, name, verdict.answer)
        answer_text = result.text
        result = replace(result, text=caption)
        live = source in settings.live_sources
        events = [caption_event(segment, result, prompt=settings.prompt_for(source), live=live)]
        already = self._evaluated == (source, segment.index)
        rest = [r.name for r in self.rules.rules_for(source) if not (already and r.asks_model)]
        events += self.rules.evaluate(source, segment, caption, verdicts, only=rest)
        self._evaluated = None
        return Described(segment, result, {n: v.answer for n, v in verdicts.items()}, events, raw_answer=answer_text)

    def _watcher(self, segment: Segment, names: list[str], early: EarlyEvents) -> Optional[Callable[[int], bool]]:
        """An on_token callable that evaluates the question rules as soon as their lines are
        decoded and hands the events to `early`, then (policy.yield_tokens) ends the caption
        early for an onset waiting elsewhere; None where the policy or the backend does not
        stream verdicts."""
        if not (self.settings.policy.verdicts_first and self.backend.capabilities.streaming):
            return None
        decode = self.backend.inputs.tokenizer.decode
        stream = VerdictStream(names, decode)
        ending = _CaptionEnd(self.settings.policy.yield_tokens, self.onset_elsewhere, segment.source, decode)

        def on_token(token_id: int) -> bool:
            if stream.feed(token_id):
                if self._evaluated != (segment.source, segment.index):  # not again on a retry
                    self._evaluated = (segment.source, segment.index)
                    early(self.rules.evaluate(segment.source, segment, "", stream.verdicts, only=names))
                return False
            return stream.ready and ending.after(token_id)

        return on_token

    def _followup(self, segment: Segment) -> Described:
        settings, source = self.settings, segment.source
        budget = settings.caption_budget(segment)  # shorter under contention, as in the joint call
        prompt = joint_prompt(settings.prompt_for(source), {}, budget)
        params = replace(settings.params, max_new_tokens=budget)
        build, made = self._build(segment, prompt, budget)
        result = run_model(self.backend, build, params)
        answers = self._ask_rules(segment, made[-1], result)
        live = source in settings.live_sources
        events = [caption_event(segment, result, prompt=settings.prompt_for(source), live=live)]
        events += self.rules.evaluate(source, segment, result.text, answers)
        return Described(segment, result, answers, events)

    def _ask_rules(self, segment: Segment, inputs: Any, result: Result) -> dict[str, str]:
        answers: dict[str, str] = {}
        follow_up = self.backend.capabilities.follow_up
        for rule, question in self.rules.questions_for(segment.source).items():
            turn = self.backend.inputs.follow_up(inputs, result.token_ids, question, answer_reserve=8)
            params = self.settings.rule_params
            reply = self.backend.follow_up(turn, params) if follow_up else self.backend.describe(turn, params)
            answers[rule] = reply.text
            log.debug("%s segment %d, rule %s: %r", segment.source, segment.index, rule, reply.text)
        return answers


class _CaptionEnd:
    """Counts a joint answer's caption tokens once an onset waits in another camera: ends the
    caption at the first sentence end, or after `tokens` of them (urgency.Policy.yield_tokens)."""

    def __init__(self, tokens: Optional[int], onset_elsewhere: Optional[OnsetElsewhere], source: str,
                 decode: Callable[[list[int]], str]):
        self.tokens, self.onset_elsewhere, self.source, self.decode = tokens, onset_elsewhere, source, decode
        self.left: Optional[int] = None  # tokens still allowed, once an onset waits

    def after(self, token_id: int) -> bool:
        """True: end the answer after this token."""
        if self.tokens is None or self.onset_elsewhere is None:
            return False
        if self.left is None:
            if not self.onset_elsewhere(self.source):
                return False
            self.left = self.tokens
            log.debug("%s: an onset waits elsewhere, the caption ends within %d tokens", self.source, self.tokens)
        self.left -= 1
        return self.left <= 0 or self.decode([token_id]).rstrip().endswith(SENTENCE_ENDS)


def describe_settings(config: Any, live_sources: frozenset[str] = frozenset()) -> DescribeSettings:
    """The describer's settings from a `Config`."""
    params = GenerationParams.from_config(config.generation)
    return DescribeSettings(
        prompts={s.name: s.prompt or config.prompt.user for s in config.sources},
        default_prompt=config.prompt.user,
        system=config.prompt.system,
        answer_reserve=config.segmenting.answer_reserve,
        params=params,
        rule_params=replace(params, max_new_tokens=config.service.rule_max_new_tokens, do_sample=False),
        live_sources=live_sources,
        policy=config.service.policy.resolve(),
    )


def unchanged_events(rules: Any, live_sources: frozenset[str]) -> Callable[[Segment], list[Event]]:
    """What a segment the gate skipped says, in order: "unchanged", then any alert the rules'
    repeated verdicts raise or clear (`RuleEngine.repeat`)."""
    def events(segment: Any) -> list[Event]:
        live = segment.source in live_sources
        return [unchanged_event(segment, segment.score, segment.reason, live), *rules.repeat(segment.source, segment)]

    return events
