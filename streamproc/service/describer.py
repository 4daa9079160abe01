"""One segment through the model: the caption, then each alert-rule question as a follow-up.

Questions follow the caption turn, so a backend that keeps its KV cache (the TPU engine on a
history bmodel) answers them without running the ViT again; each question starts from the same
caption turn, so answers do not depend on one another. Backends without follow_up() run the
whole conversation again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from ..backends.base import Backend, GenerationParams, Result
from ..config import Config
from ..frames import Segment
from ..rules.alerts import RuleEngine
from ..events import Event, caption_event

log = logging.getLogger(__name__)


@dataclass
class Described:
    segment: Segment
    result: Result
    answers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    seconds: float = 0.0


class SegmentDescriber:
    """Owns one backend; used by one worker thread at a time."""

    def __init__(self, backend: Backend, config: Config, rules: RuleEngine, live_sources: frozenset[str] = frozenset()):
        self.backend = backend
        self.config = config
        self.rules = rules
        self.live_sources = live_sources
        self.params = GenerationParams.from_config(config.generation)
        # Rule answers are short JSON objects: decode them greedily and briefly.
        self.rule_params = replace(self.params, max_new_tokens=config.service.rule_max_new_tokens, do_sample=False)
        self._prompts = {s.name: s.prompt or config.prompt.user for s in config.sources}

    def prompt_for(self, source: str) -> str:
        return self._prompts.get(source, self.config.prompt.user)

    def describe(self, segment: Segment) -> Described:
        started = time.perf_counter()
        builder = self.backend.inputs
        prompt = self.prompt_for(segment.source)
        reserve = self.config.segmenting.answer_reserve
        inputs = builder.build_segment(segment, prompt, system=self.config.prompt.system, answer_reserve=reserve)
        prepared = time.perf_counter() - started
        result = self.backend.describe(inputs, self.params)
        result.timings.preprocess_s += prepared
        result.timings.total_s += prepared
        answers: dict[str, str] = {}
        follow_up = getattr(self.backend, "follow_up", None)
        for rule, question in self.rules.questions_for(segment.source).items():
            turn = builder.follow_up(inputs, result.token_ids, question, answer_reserve=8)
            reply = follow_up(turn, self.rule_params) if follow_up else self.backend.describe(turn, self.rule_params)
            answers[rule] = reply.text
            log.debug("%s segment %d, rule %s: %r", segment.source, segment.index, rule, reply.text)
        live = segment.source in self.live_sources
        events = [caption_event(segment, result, prompt=prompt, live=live)]
        events += self.rules.evaluate(segment.source, segment, result.text, answers)
        return Described(segment, result, answers, events, time.perf_counter() - started)
