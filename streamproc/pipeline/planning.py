"""How many tokens a segment's text needs besides its frames: the source's prompt in the chat
template with the rules as the policy asks them (every question in the joint call, or the longest
follow-up question and its answer after the caption turn). segmenting.prompt_reserve is the
floor."""
from __future__ import annotations

from typing import Optional

from ..config import Config
from ..errors import ConfigError
from ..ingest.segmenter import DEFAULT_SEQ_LENGTH, Segmenter, SegmentPlan, plan_segments
from ..qwen.prompt import continuation
from ..rules.alerts import RuleEngine
from ..rules.answers import CAPTION_LABEL, joint_prompt
from ..urgency import OnsetCutter, RulesMode


def prompt_reserve(config: Config, builder, rules: RuleEngine, source: str) -> int:
    """Tokens for the source's prompt and rules: the joint call's prompt (every question, the
    caption budget) and the part of its answer beyond segmenting.answer_reserve; or the caption
    prompt plus the longest follow-up question and its answer; the larger of the two where the
    backend decides (AUTO)."""
    prompt = next((s.prompt for s in config.sources if s.name == source and s.prompt), None) or config.prompt.user
    policy = config.service.policy.resolve()
    encode = builder.tokenizer.encode
    budget = min(policy.caption_tokens, config.generation.max_new_tokens)  # as DescribeSettings.caption_tokens
    questions = rules.raw_questions_for(source)
    joint = builder.prompt_tokens(joint_prompt(prompt, questions, budget), config.prompt.system)
    answer = budget + sum(max(policy.verdict_tokens, len(encode(f"{n}: yes\n"))) for n in questions)
    answer += len(encode(f"{CAPTION_LABEL}: ")) if questions else 0
    joint += max(0, answer - config.segmenting.answer_reserve)
    followup = builder.prompt_tokens(joint_prompt(prompt, {}, budget), config.prompt.system)
    followup += max(0, budget - config.segmenting.answer_reserve)  # the caption's own budget
    follow_ups = rules.questions_for(source).values()
    if follow_ups:
        followup += max(len(encode(continuation(q))) for q in follow_ups) + config.service.rule_max_new_tokens
    tokens = {RulesMode.JOINT: joint, RulesMode.FOLLOWUP: followup}.get(policy.rules_mode, max(joint, followup))
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
            self.plan(source, self.config.sampling.token_pixels, self.config.sampling.token_pixels)

    def plan(self, source: str, height: int, width: int) -> SegmentPlan:
        seg = self.config.segmenting
        return plan_segments(
            self.seq_length, height, width, self.config.sampling.fps, self.reserves[source], seg.answer_reserve,
            seg.overlap_s, seg.max_duration_s, self.config.sampling.token_pixels, seg.pair_text_tokens,
        )

    def segmenter(self, source: str, cutter: Optional[OnsetCutter] = None) -> Segmenter:
        return Segmenter(source, self.config.sampling.fps, lambda h, w: self.plan(source, h, w), cutter)
