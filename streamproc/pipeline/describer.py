"""The one describer: a segment (or images) through a backend, and a segment's rule questions.

`describe_segment` / `describe_images` build the inputs once, run the backend and add the host's
preparation time to the result's timings (the `caption` command and the service both use them).
`SegmentDescriber` owns one backend for one model worker: the caption, then each alert-rule
question as a follow-up turn. Questions follow the caption turn, so a backend that keeps its KV
cache (the TPU engine on a history bmodel) answers them without running the ViT again; each
question starts from the same caption turn, so answers do not depend on one another. Backends
without follow-up turns run the whole conversation again.
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

log = logging.getLogger(__name__)


def run_model(backend: Backend, build: Callable[[], Any], params: GenerationParams) -> Result:
    """`build()` makes the inputs; the result's timings include that preparation."""
    started = time.perf_counter()
    inputs = build()
    prepared = time.perf_counter() - started
    result = backend.describe(inputs, params)
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


@dataclass(frozen=True)
class DescribeSettings:
    """What a describer needs from the config, resolved once by the composition root."""

    prompts: Mapping[str, str]  # source -> its user prompt
    default_prompt: str
    system: Optional[str]
    answer_reserve: int
    params: GenerationParams
    rule_params: GenerationParams  # rule answers are short: greedy and brief
    live_sources: frozenset[str] = frozenset()

    def prompt_for(self, source: str) -> str:
        return self.prompts.get(source, self.default_prompt)


class SegmentDescriber:
    """Owns one backend; used by one worker thread at a time."""

    def __init__(self, backend: Backend, settings: DescribeSettings, rules: Any):
        self.backend = backend
        self.settings = settings
        self.rules = rules

    def describe(self, segment: Segment) -> Described:
        started = time.perf_counter()
        settings = self.settings
        builder = self.backend.inputs
        prompt = settings.prompt_for(segment.source)
        inputs = None

        def build() -> Any:
            nonlocal inputs
            inputs = builder.build_segment(segment, prompt, system=settings.system, answer_reserve=settings.answer_reserve)
            return inputs

        result = run_model(self.backend, build, settings.params)
        answers = self._ask_rules(segment, inputs, result)
        live = segment.source in settings.live_sources
        events = [caption_event(segment, result, prompt=prompt, live=live)]
        events += self.rules.evaluate(segment.source, segment, result.text, answers)
        return Described(segment, result, answers, events, time.perf_counter() - started)

    def _ask_rules(self, segment: Segment, inputs: Any, result: Result) -> dict[str, str]:
        answers: dict[str, str] = {}
        follow_up = getattr(self.backend, "follow_up", None)
        for rule, question in self.rules.questions_for(segment.source).items():
            turn = self.backend.inputs.follow_up(inputs, result.token_ids, question, answer_reserve=8)
            params = self.settings.rule_params
            reply = follow_up(turn, params) if follow_up else self.backend.describe(turn, params)
            answers[rule] = reply.text
            log.debug("%s segment %d, rule %s: %r", segment.source, segment.index, rule, reply.text)
        return answers


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
    )


def unchanged_events(rules: Any, live_sources: frozenset[str]) -> Callable[[Segment], list[Event]]:
    """What a segment the gate skipped says, in order: "unchanged", then any alert the rules'
    repeated verdicts raise or clear (`RuleEngine.repeat`)."""
    def events(segment: Any) -> list[Event]:
        live = segment.source in live_sources
        return [unchanged_event(segment, segment.score, segment.reason, live), *rules.repeat(segment.source, segment)]

    return events
