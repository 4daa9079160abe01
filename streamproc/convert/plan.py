"""The geometry of a bmodel, chosen from what the user wants to run, by the same planner the
service sizes its segments with (streamproc.ingest.segmenter.plan_segments).

A segment of S seconds at `fps` holds ceil(S * fps / 2) frame pairs; each pair costs
(h/f) * (w/f) tokens at the video frame size (max_pixels x video_area_factor, Qwen's resize
rule; f is the family's token size, 28 px for Qwen2.5-VL and 32 px for Qwen3-VL), plus the text
the family writes per pair (Qwen3-VL's timestamp and vision markers). The sequence length must hold those tokens plus the prompt reserve (chat template, prompt,
the longest rule question and its answer; at least segmenting.prompt_reserve) and the answer
reserve, and is rounded up to the lengths bmodels are built with (a multiple of 1024 above 1024,
else of 128). The seed's published settings come out of it: 672x896 images with quarter-area
video frames (336x448, 192 tokens per pair) give 2048 tokens for 20 s and 8192 for 80 s.

History builds prefill each turn after the cached ones, one launch per chunk: the chunk (new
layout, --chunk_length) or the input length (old layout, --max_input_length) is the longest turn
the plan needs -- the caption turn (frames + prompt) -- rounded up to 64, and at most half the
sequence (the old layout's limit); a longer turn runs as several chunks. A build without history
may still take a shorter input than its sequence (--input-length: --max_input_length, as Sophgo
builds Qwen3-VL 4B: 2048 / 1024): then frames and prompt must fit the input, the answer the rest,
and the service sizes its segments by that (Qwen3-VL 4B at 768x768: 12 s at 1 fps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..errors import UsageError
from ..ingest.sampling import smart_resize, tokens_per_frame_pair
from ..ingest.segmenter import SegmentPlan, plan_segments

CHUNK_ALIGN = 64


@dataclass(frozen=True)
class ConvertPlan:
    seq_length: int
    max_pixels: tuple[int, int]  # (height, width) of the largest image the ViT takes
    frame_size: tuple[int, int]  # (height, width) of a sampled video frame
    tokens_per_pair: int
    segment_s: float
    fps: float
    visual_tokens: int
    prompt_reserve: int
    answer_reserve: int
    input_length: Optional[int]  # history builds: chunk / max input length; else --input-length
    segments: SegmentPlan  # what the service's planner makes of this seq_length
    seq_given: bool = False  # --seq-length, not derived
    patch: int = 14  # the family's ViT patch side; MAX_PATCHES = max_pixels / patch^2
    history: bool = False

    @property
    def max_patches(self) -> int:
        return self.max_pixels[0] * self.max_pixels[1] // (self.patch * self.patch)

    def describe(self) -> str:
        h, w = self.frame_size
        lines = [
            f"sequence length {self.seq_length} tokens for {self.visual_tokens} visual "
            f"({self.segment_s:g} s at {self.fps:g} fps, {h}x{w} frames, {self.tokens_per_pair} tokens per frame pair)"
            f" + {self.prompt_reserve} prompt + {self.answer_reserve} answer"
            + (" (--seq-length)" if self.seq_given else ", rounded up"),
            f"ViT: max_pixels {self.max_pixels[0]}x{self.max_pixels[1]} ({self.max_patches} patches per call)",
            f"the service will cut segments of up to {self.segments.duration_s:g} s ({self.segments.frames} frames) "
            "with this bmodel",
        ]
        if self.input_length and self.history:
            lines.append(f"history: turns prefilled in chunks of up to {self.input_length} tokens")
        elif self.input_length:
            lines.append(f"input: frames and prompt in one prefill of up to {self.input_length} tokens")
        return "\n".join(lines)


def parse_size(text: str, factor: int = 28) -> tuple[int, int]:
    """'672x896' (height x width, as Qwen's max_pixels is written) -> (672, 896), multiples of the
    family's token size (28 Qwen2.5-VL, 32 Qwen3-VL)."""
    try:
        height, width = (int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise UsageError(f"--max-pixels takes HEIGHTxWIDTH, e.g. 672x896, not {text!r}") from None
    if height <= 0 or width <= 0 or height % factor or width % factor:
        raise UsageError(f"--max-pixels {text}: both sides must be positive multiples of {factor}")
    return height, width


def round_sequence(tokens: int) -> int:
    step = 1024 if tokens > 1024 else 128
    return int(math.ceil(tokens / step) * step)


@dataclass(frozen=True)
class FamilyGeometry:
    """What the plan needs of the model family: token and patch size, text per frame pair."""

    factor: int = 28
    patch: int = 14
    pair_text_tokens: int = 0


def plan_conversion(
    *,
    segment_s: float,
    max_pixels: tuple[int, int],
    prompt_reserve: int,
    answer_reserve: int,
    fps: float = 1.0,
    video_area_factor: float = 0.25,
    history: bool = False,
    seq_length: Optional[int] = None,
    input_length: Optional[int] = None,
    family: FamilyGeometry = FamilyGeometry(),
) -> ConvertPlan:
    """The bmodel geometry for segments of `segment_s` seconds (see the module docstring).
    `seq_length` / `input_length` override the derived values (checked against the plan)."""
    if segment_s <= 0 or fps <= 0:
        raise UsageError("--segment-seconds and the sampling rate must be positive")
    height, width = max_pixels
    f = family.factor
    frame = smart_resize(height, width, f, f * f, int(height * width * video_area_factor))
    per_pair = tokens_per_frame_pair(*frame, f) + family.pair_text_tokens
    visual = max(1, math.ceil(segment_s * fps / 2)) * per_pair
    turn = visual + prompt_reserve  # the caption turn: frames and prompt
    needed = turn + answer_reserve
    if input_length and not history:
        needed = max(needed, input_length + answer_reserve)
        if input_length < turn:
            raise UsageError(f"--input-length {input_length} is too short for {segment_s:g} s segments: "
                             f"{visual} visual + {prompt_reserve} prompt tokens = {turn} in one prefill")
    seq = seq_length or round_sequence(needed)
    if seq < needed:
        raise UsageError(
            f"--seq-length {seq} is too short for {segment_s:g} s segments: {visual} visual + {prompt_reserve} prompt "
            f"+ {answer_reserve} answer tokens = {needed}"
        )
    chunk = _input_length(turn, seq, history, input_length)
    # What the service's planner will make of this bmodel (the same call the pipeline makes).
    context = seq if history or not chunk else min(seq, chunk + answer_reserve)
    segments = plan_segments(context, frame[0], frame[1], fps, prompt_reserve, answer_reserve,
                             factor=f, pair_text_tokens=family.pair_text_tokens)
    return ConvertPlan(
        seq_length=seq, max_pixels=(height, width), frame_size=frame, tokens_per_pair=per_pair, segment_s=segment_s,
        fps=fps, visual_tokens=visual, prompt_reserve=prompt_reserve, answer_reserve=answer_reserve,
        input_length=chunk, segments=segments, seq_given=seq_length is not None, patch=family.patch, history=history,
    )


def _input_length(turn: int, seq: int, history: bool, given: Optional[int]) -> Optional[int]:
    """History builds: the chunk a turn is prefilled in (the caption turn rounded up to 64, at
    most half the sequence); other builds: --input-length if given."""
    if not history:
        return given
    chunk = given or min(int(math.ceil(turn / CHUNK_ALIGN) * CHUNK_ALIGN), seq // 2)
    if chunk > seq // 2:
        raise UsageError(f"--input-length {chunk} is more than half the sequence length {seq}")
    return chunk
