"""Does the sampler/segmenter's plan agree with the model? Clear errors before any frame is read.

The sampler sizes frames from `sampling` (max_pixels x video_area_factor, min_pixels) and the
segmenter counts (h/f)*(w/f) tokens per frame pair (f: the model's token size, 28 or 32 px); the
model takes frames unresized, so their size must be a multiple of its token size and within its
video pixel limit.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError, InputTooLarge, ModelError
from .config import VisionSpec
from .patches import check_frame_size


def check_sampling(vision: VisionSpec, sampling: Any) -> None:
    """`sampling` (a SamplingConfig) must size frames in the model's token size and not ask for
    frames larger than the model takes."""
    if sampling.token_pixels != vision.factor:
        raise ConfigError(
            f"sampling.token_pixels {sampling.token_pixels} is not the model's token size ({vision.factor} px): "
            f"leave it unset, the model's is used"
        )
    if sampling.video_pixels > vision.video_max_pixels:
        raise ConfigError(
            f"sampling gives video frames of up to {sampling.video_pixels} pixels (max_pixels {sampling.max_pixels} x "
            f"video_area_factor {sampling.video_area_factor}), above the model's video max_pixels "
            f"{vision.video_max_pixels}: lower sampling.max_pixels"
        )
    if sampling.max_pixels > vision.image_max_pixels:
        raise ConfigError(
            f"sampling.max_pixels {sampling.max_pixels} is above the model's max_pixels {vision.image_max_pixels}"
        )


def check_plan(vision: VisionSpec, plan: Any, height: int, width: int, pair_text_tokens: int = 0) -> None:
    """A SegmentPlan for frames of height x width must count tokens as the model does (its
    visual tokens per frame pair, plus the text it adds per pair)."""
    check_frame_size(height, width, vision, "video")
    per_pair = (height // vision.factor) * (width // vision.factor) + pair_text_tokens
    if plan.tokens_per_pair != per_pair:
        raise ModelError(
            f"the segmenter counts {plan.tokens_per_pair} tokens per frame pair of {width}x{height}, "
            f"the model {per_pair}: the sampler's token size is not the model's ({vision.factor} px)"
        )
    if plan.frames % vision.temporal_patch_size:
        raise ModelError(f"segments of {plan.frames} frames are not whole frame pairs")


def check_seq_length(seq_length: int, prompt_tokens: int, answer_reserve: int, visual_tokens: int = 0) -> int:
    """Visual tokens that fit; InputTooLarge when the prompt leaves no room for the answer."""
    room = seq_length - prompt_tokens - answer_reserve
    if room <= 0:
        raise InputTooLarge(
            f"the prompt takes {prompt_tokens} of the model's {seq_length} tokens and {answer_reserve} are "
            f"reserved for the answer: nothing is left for the video; shorten the prompt or lower the reserve"
        )
    if visual_tokens > room:
        raise InputTooLarge(
            f"{visual_tokens} visual tokens do not fit the {room} left beside the prompt ({prompt_tokens}) and the "
            f"answer ({answer_reserve}) in {seq_length}: use shorter segments or smaller frames"
        )
    return room
