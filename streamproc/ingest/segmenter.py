"""Cut sampled frames into segments that fit the model's token budget.

A segment of F frames at h x w costs (F/2) * (h/28) * (w/28) visual tokens. The budget is the
model's sequence length minus the tokens reserved for the chat template / prompt and the answer,
so a 2048-token model gets ~20 s at 1 fps and 336x448, an 8192-token one ~80 s.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from ..config.ingest import SamplingConfig, SegmentingConfig
from ..errors import InputTooLarge
from ..frames import Frame, Gap, Segment
from .sampling import PATCH_FACTOR, tokens_per_frame_pair

if TYPE_CHECKING:  # pragma: no cover
    from ..urgency import OnsetCutter

log = logging.getLogger(__name__)

DEFAULT_SEQ_LENGTH = 2048


@dataclass(frozen=True)
class SegmentPlan:
    """How many frames a segment holds, derived from the model's budget."""

    frames: int  # even
    overlap_frames: int  # even, < frames
    tokens_per_pair: int
    visual_budget: int
    fps: float

    @property
    def visual_tokens(self) -> int:
        return self.frames // 2 * self.tokens_per_pair

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def plan_segments(
    seq_length: int,
    frame_height: int,
    frame_width: int,
    fps: float,
    prompt_reserve: int,
    answer_reserve: int,
    overlap_s: float = 0.0,
    max_duration_s: Optional[float] = None,
    factor: int = PATCH_FACTOR,
    pair_text_tokens: int = 0,
) -> SegmentPlan:
    """The largest even frame count whose tokens fit; raises InputTooLarge if not even two fit.
    `factor`: the model's pixels per token side; `pair_text_tokens`: text the model adds per
    frame pair (Qwen3-VL's timestamps), counted with the pair's visual tokens."""
    budget = seq_length - prompt_reserve - answer_reserve
    per_pair = tokens_per_frame_pair(frame_height, frame_width, factor) + pair_text_tokens
    pairs = budget // per_pair if budget > 0 else 0
    if max_duration_s is not None:
        pairs = min(pairs, int(max_duration_s * fps) // 2)
    if pairs < 1 and budget < 1 + pair_text_tokens:
        # Not even the smallest frames would fit: the text is what does not fit, not the frames.
        raise InputTooLarge(
            f"the prompt does not fit: a model with sequence length {seq_length} has {max(budget, 0)} tokens "
            f"left for frames after {prompt_reserve} for the prompt (with the chat template and the longest "
            f"rule question and its answer) and {answer_reserve} for the answer: shorten the prompt or the "
            f"rule questions, lower segmenting.answer_reserve, or use a model with a longer context"
        )
    if pairs < 1 and max_duration_s is not None and budget >= per_pair:
        raise InputTooLarge(
            f"segmenting.max_duration_s {max_duration_s:g} at {fps:g} fps gives fewer than the 2 frames a "
            f"segment needs: raise it to at least {2 / fps:g}"
        )
    if pairs < 1:
        raise InputTooLarge(
            f"a model with sequence length {seq_length} has {max(budget, 0)} tokens left after reserving "
            f"{prompt_reserve} for the prompt and {answer_reserve} for the answer, but one pair of "
            f"{frame_width}x{frame_height} frames needs {per_pair}: lower sampling.max_pixels or the reserves, "
            f"or use a model with a longer context"
        )
    frames = 2 * pairs
    overlap = min(2 * int(round(overlap_s * fps / 2)), frames - 2)
    return SegmentPlan(frames, max(0, overlap), per_pair, budget, fps)


class Segmenter:
    """Groups one source's frames into segments.

    The plan depends on the frame size, known only from the first frame, so it is made by a
    callback `planner(height, width)`; a change of frame size closes the current segment.
    A full segment is released with the next frame (or at the end), so the final segment of a
    stream is always marked `last`.

    With a `cutter` (the urgency policy's onset and hold cuts, `streamproc.urgency.OnsetCutter`)
    a segment also closes early, a few frames after change starts; an onset cut is marked
    `onset` and goes to the model first.
    """

    def __init__(self, source: str, fps: float, planner, cutter: Optional["OnsetCutter"] = None):
        self.source = source
        self.fps = fps
        self._planner = planner
        self._cutter = cutter
        self._plan: SegmentPlan | None = None
        self._size: tuple[int, int] | None = None
        self._frames: list[Frame] = []
        self._index = 0
        self._gap_pending = False
        self._fresh = 0  # frames in the buffer that no earlier segment has carried
        self._held: Segment | None = None

    @property
    def plan(self) -> SegmentPlan | None:
        return self._plan

    def push(self, item: Frame | Gap) -> list[Segment]:
        out = self._release()
        cutter = self._cutter
        if isinstance(item, Gap):
            out += self._flush()
            self._gap_pending = True
            if cutter is not None:
                cutter.reset()
            return out
        size = (item.height, item.width)
        if size != self._size:
            out += self._flush()
            self._size = size
            self._plan = self._planner(*size)
            if cutter is not None:
                cutter.reset()
        self._frames.append(item)
        self._fresh += 1
        assert self._plan is not None
        full = len(self._frames) >= self._plan.frames
        early = cutter is not None and cutter.observe(item.image, len(self._frames))
        if full or early:
            onset = early and not full and cutter is not None and cutter.onset_started
            self._held = replace(self._emit(self._frames), onset=onset)
            if cutter is not None:
                cutter.closed()
            keep = self._plan.overlap_frames
            self._frames = self._frames[-keep:] if keep else []
            self._fresh = 0
        return out

    def finish(self) -> list[Segment]:
        """End of input: what is left, the final segment marked last."""
        out = self._release() + self._flush()
        if out:
            out[-1] = replace(out[-1], last=True)
        return out

    def _release(self) -> list[Segment]:
        held, self._held = self._held, None
        return [held] if held is not None else []

    def _flush(self) -> list[Segment]:
        frames, fresh = self._frames, self._fresh
        self._frames, self._fresh = [], 0
        if self._cutter is not None:
            self._cutter.closed()
        if fresh == 0:  # only overlap left: nothing new to describe
            return []
        return [self._emit(frames)]

    def _emit(self, frames: list[Frame]) -> Segment:
        padded = len(frames) % 2 == 1
        if padded:  # Qwen takes frames in pairs: repeat the last one, as its processor does
            frames = frames + [frames[-1]]
        real_end = frames[-1].media_time + 1.0 / self.fps
        segment = Segment(
            source=self.source,
            index=self._index,
            frames=tuple(frames),
            start=frames[0].media_time,
            end=real_end,
            fps=self.fps,
            gap_before=self._gap_pending,
            padded=padded,
            budget_frames=self._plan.frames if self._plan is not None else 0,
        )
        self._index += 1
        self._gap_pending = False
        return segment


def segment_stream(items: Iterable[Frame | Gap], segmenter: Segmenter) -> Iterator[Segment]:
    """All segments of a finite stream of frames, the final partial one included."""
    for item in items:
        yield from segmenter.push(item)
    yield from segmenter.finish()


def segmenter_for(source: str, sampling: SamplingConfig, segmenting: SegmentingConfig, seq_length: int) -> Segmenter:
    """A segmenter sized by the config's reserves for a model of `seq_length` tokens."""

    def planner(height: int, width: int) -> SegmentPlan:
        return plan_segments(
            seq_length,
            height,
            width,
            sampling.fps,
            segmenting.prompt_reserve,
            segmenting.answer_reserve,
            segmenting.overlap_s,
            segmenting.max_duration_s,
            sampling.token_pixels,
            segmenting.pair_text_tokens,
        )

    return Segmenter(source, sampling.fps, planner)
