"""How many tokens a segment's text needs besides its frames: the source's prompt in the chat
template, plus room for the longest alert-rule question and its answer (questions follow the
caption turn in the same context, one at a time). segmenting.prompt_reserve is the floor."""
from __future__ import annotations

from typing import Optional

from ..config import Config
from ..errors import ConfigError
from ..ingest.segmenter import DEFAULT_SEQ_LENGTH, Segmenter, SegmentPlan, plan_segments
from ..qwen.prompt import continuation
from ..rules.alerts import RuleEngine


def prompt_reserve(config: Config, builder, rules: RuleEngine, source: str) -> int:
    prompt = next((s.prompt for s in config.sources if s.name == source and s.prompt), None) or config.prompt.user
    tokens = builder.prompt_tokens(prompt, config.prompt.system)
    questions = rules.questions_for(source).values()
    if questions:
        longest = max(len(builder.tokenizer.encode(continuation(q))) for q in questions)
        tokens += longest + config.service.rule_max_new_tokens
    return max(tokens, config.segmenting.prompt_reserve)


def effective_seq_length(model_seq_length: Optional[int], config: Config) -> int:
    """The context segments are sized for: the model's own limit (bmodels have one), capped by
    segmenting.seq_length when given; 2048 when neither says."""
    configured = config.segmenting.seq_length
    if model_seq_length and configured and configured > model_seq_length:
        raise ConfigError(f"segmenting.seq_length {configured} is longer than the model's {model_seq_length}")
    return configured or model_seq_length or DEFAULT_SEQ_LENGTH


class SegmentSizer:
    """Segment plans per source for the loaded model: its sequence length (capped by the config)
    and each source's prompt reserve. `check()` fails now, not at the first segment, when a
    prompt leaves no room for frames."""

    def __init__(self, config: Config, builder, rules: RuleEngine, model_seq_length: Optional[int]):
        self.config = config
        self.seq_length = effective_seq_length(model_seq_length, config)
        enabled = [s for s in config.sources if s.enabled]
        self.reserves = {s.name: prompt_reserve(config, builder, rules, s.name) for s in enabled}

    def check(self) -> None:
        for source in self.reserves:
            self.plan(source, 28, 28)

    def plan(self, source: str, height: int, width: int) -> SegmentPlan:
        seg = self.config.segmenting
        return plan_segments(
            self.seq_length, height, width, self.config.sampling.fps, self.reserves[source], seg.answer_reserve,
            seg.overlap_s, seg.max_duration_s,
        )

    def segmenter(self, source: str) -> Segmenter:
        return Segmenter(source, self.config.sampling.fps, lambda h, w: self.plan(source, h, w))
