"""InputBuilder: prompts plus frames/images -> ModelInputs, for one checkpoint (or tokenizer folder).

    builder = InputBuilder.from_pretrained("path/to/checkpoint-or-tokenizer-folder")
    inputs = builder.build("Describe the video.", video=frames, fps=1.0)
    later = builder.follow_up(inputs, result.token_ids, "and then?")

The builder renders the chat template once, with each image or video written as its family says
(one vision block for a Qwen2.5-VL video, one per frame pair after its timestamp for Qwen3-VL),
tokenises it, repeats each pad token once per merged visual token, and lays out the 3-D positions.
`RequestBuilder` is the part every model-input builder shares (the openai backend's included):
segments as videos and the sequence-length check.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InputTooLarge, ModelError
from .budget import check_seq_length
from .config import QwenSpec
from .family import MediaText, ModelFamily
from .inputs import ModelInputs, VisualBlock
from .patches import as_frames, check_frame_size, image_size, normalisation_table, pixel_rows, resize_rgb
from .prompt import TEMPLATE_DEFAULT, Message, SystemPrompt, Vision, continuation, conversation, expand_pads, render_chat
from .rope import mrope_positions
from .tokenizer import QwenTokenizer
from .vision import VisionSpec
from .vit_layout import VitLayout

log = logging.getLogger(__name__)


class RequestBuilder:
    """What every model-input builder shares: a segment is one video; a request that leaves less
    than `answer_reserve` tokens of `seq_length` for the answer is refused. Subclasses provide
    build() and the request's token counts (total_tokens, visual_tokens)."""

    seq_length: Optional[int] = None
    pair_text_tokens: int = 0  # text a video adds per frame pair besides its visual tokens

    def build(self, prompt: str, video: Any = None, images: Any = None, fps: float = 1.0,
              system: Any = TEMPLATE_DEFAULT, answer_reserve: int = 0) -> Any:
        raise NotImplementedError

    def build_segment(self, segment: Any, prompt: str, system: Any = TEMPLATE_DEFAULT, answer_reserve: int = 0) -> Any:
        """A streamproc Segment (frames already at the model size) as one video."""
        frames = [frame.image for frame in segment.frames]
        return self.build(prompt, video=frames, fps=segment.fps, system=system, answer_reserve=answer_reserve)

    def check_budget(self, request: Any, answer_reserve: int, hint: str = "use shorter segments, smaller frames or a shorter prompt") -> None:
        if self.seq_length is None:
            return
        need = request.total_tokens + max(answer_reserve, 1)
        if need > self.seq_length:
            raise InputTooLarge(
                f"the request needs {request.total_tokens} input tokens ({request.visual_tokens} visual, "
                f"{request.total_tokens - request.visual_tokens} text) plus "
                f"{max(answer_reserve, 1)} for the answer, more than the model's sequence length {self.seq_length}: {hint}"
            )


class InputBuilder(RequestBuilder):
    """Turns prompts plus frames/images into ModelInputs for one checkpoint (or tokenizer folder)."""

    def __init__(self, spec: QwenSpec, tokenizer: QwenTokenizer, seq_length: Optional[int] = None):
        self.spec = spec
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.tokens = spec.tokens
        self._table = normalisation_table(spec.vision)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, seq_length: Optional[int] = None, family: Optional[ModelFamily] = None
    ) -> "InputBuilder":
        """`family`: the model's when known from elsewhere (a bmodel's nets), else config.json's."""
        spec = QwenSpec.from_dir(path, family=family)
        tokenizer = QwenTokenizer.from_dir(path)
        return cls(spec, tokenizer, seq_length)

    def with_limits(self, vision: VisionSpec, seq_length: Optional[int]) -> "InputBuilder":
        """The same builder for a model with other pixel limits and context (a bmodel's)."""
        return InputBuilder(replace(self.spec, vision=vision), self.tokenizer, seq_length=seq_length)

    @property
    def family(self) -> ModelFamily:
        return self.spec.family

    @property
    def vision(self) -> VisionSpec:
        return self.spec.vision

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return self.tokens.stop_ids

    @property
    def pair_text_tokens(self) -> int:
        """Text tokens a video adds per frame pair besides its visual tokens (Qwen3-VL's timestamps)."""
        return self.family.pair_text_tokens(self.tokenizer.encode)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens)

    # -- building -----------------------------------------------------------------------------

    def build(
        self,
        prompt: str,
        video: Any = None,
        images: Optional[Sequence[np.ndarray]] = None,
        fps: float = 1.0,
        system: SystemPrompt = TEMPLATE_DEFAULT,
        answer_reserve: int = 0,
    ) -> ModelInputs:
        """One user turn: each image its own block, then the video (frames at the model size,
        (T, H, W, 3) uint8 or a list of frames), then the prompt text.

        `system`: a string is the system turn; None (TEMPLATE_DEFAULT) gives what the folder's chat
        template adds by itself (Qwen2.5-VL's: "You are a helpful assistant."; Qwen3-VL's: none);
        False (NO_SYSTEM) none. With `seq_length` set, a request that leaves fewer than
        `answer_reserve` (at least 1) tokens for the answer is refused.
        """
        media = [self._image(image) for image in images or ()]
        if video is not None:
            media.append(self._video(video, fps))
        messages = conversation(prompt, [item.kind for item in media], system)
        return self._turns(messages, media, self._default_system(system), answer_reserve)

    def build_messages(
        self, messages: Sequence[Message], visuals: Sequence[tuple[str, Any, float]], answer_reserve: int = 0
    ) -> ModelInputs:
        """A whole conversation (any turns; its Vision parts in order) with `visuals` as
        (kind "image" | "video", frames, fps) for those parts. For a system turn plus one user
        turn this is exactly build(...), so answers match."""
        media = [self._image(frames) if kind == "image" else self._video(frames, fps) for kind, frames, fps in visuals]
        return self._turns(list(messages), media, self.spec.default_system, answer_reserve)

    def follow_up(
        self, previous: ModelInputs, answer_ids: Sequence[int], text: str, answer_reserve: int = 0
    ) -> ModelInputs:
        """The whole conversation so far plus a text-only question, positions continuing.

        `answer_ids` are the previous answer's tokens exactly as generated (Result.token_ids,
        its final stop token included when there was one). A backend that keeps its KV cache
        has fed every generated token but the last, so `cached_tokens` of the result is
        len(previous.input_ids) + len(answer_ids) - 1: it prefills only input_ids[cached_tokens:].
        """
        generated = [int(i) for i in answer_ids]
        answer = generated[:-1] if generated and generated[-1] in self.stop_ids else generated
        tail = self.tokenizer.encode(continuation(text))
        if any(i in (self.tokens.image_pad, self.tokens.video_pad) for i in tail):
            raise ModelError("follow-up text must not contain Qwen's special tokens (<|image_pad|>, <|video_pad|>)")
        ids = np.concatenate([previous.input_ids, np.asarray(answer + tail, dtype=np.int64)])
        answer_text = self.decode(answer, skip_special_tokens=False)
        messages = previous.messages + (Message("assistant", answer_text), Message("user", text))
        cached = len(previous.input_ids) + max(len(generated) - 1, 0)
        prompt = previous.prompt + answer_text + continuation(text)
        inputs = self._assemble(ids, previous.blocks, prompt, cached, messages, previous.media_text)
        self.check_budget(inputs, answer_reserve)
        return inputs

    # -- budget -------------------------------------------------------------------------------

    def prompt_tokens(
        self, prompt: str, system: SystemPrompt = TEMPLATE_DEFAULT, visuals: Sequence[Vision] = (Vision.VIDEO,)
    ) -> int:
        """Tokens of the templated prompt without visual tokens (one vision start/end each)."""
        text = render_chat(conversation(prompt, visuals, system), default_system=self._default_system(system))
        ids = self.tokenizer.encode(text)
        return len(ids) - len(visuals)  # each block's single pad is replaced by its visual tokens

    def visual_budget(
        self,
        seq_length: int,
        prompt: str,
        answer_reserve: int,
        system: SystemPrompt = TEMPLATE_DEFAULT,
        visuals: Sequence[Vision] = (Vision.VIDEO,),
    ) -> int:
        """How many visual tokens fit beside this prompt and the answer reserve (InputTooLarge
        when the prompt leaves no room)."""
        return check_seq_length(seq_length, self.prompt_tokens(prompt, system, visuals), answer_reserve)

    # -- helpers ------------------------------------------------------------------------------

    def _default_system(self, system: SystemPrompt) -> Optional[str]:
        """The system turn the template adds: its own default when `system` is TEMPLATE_DEFAULT."""
        return self.spec.default_system if system is TEMPLATE_DEFAULT else None

    def _turns(self, messages: list[Message], media: list["_Media"], default_system: Optional[str],
               answer_reserve: int) -> ModelInputs:
        texts = tuple(item.text.text for item in media)
        text = render_chat(messages, default_system=default_system, media=texts)
        pads = (self.tokens.image_pad, self.tokens.video_pad)
        counts = [len(range(run.t0, run.t1)) * item.grid_tokens for item in media for run in item.text.runs]
        ids = expand_pads(self.tokenizer.encode(text), pads, counts)
        offsets = iter(_pad_offsets(ids, pads, counts))
        blocks = tuple(item.block([next(offsets) for _ in item.text.runs]) for item in media)
        inputs = self._assemble(ids, blocks, text, 0, tuple(messages), texts)
        self.check_budget(inputs, answer_reserve)
        log.debug(
            "inputs: %d tokens (%d visual) in %d blocks %s",
            inputs.total_tokens, inputs.visual_tokens, len(blocks), [b.grid_thw for b in blocks],
        )
        return inputs

    def _image(self, image: np.ndarray) -> "_Media":
        frames = as_frames(image)
        if len(frames) != 1:
            raise ModelError(f"an image must be one (H, W, 3) array, got {len(frames)} frames")
        height, width = image_size(frames.shape[1], frames.shape[2], self.vision)
        return self._media(Vision.IMAGE, resize_rgb(frames[0], height, width)[None], None)

    def _video(self, video: Any, fps: float) -> "_Media":
        if not fps > 0:
            raise ModelError(f"fps must be positive, got {fps}")
        frames = as_frames(video)
        check_frame_size(frames.shape[1], frames.shape[2], self.vision, "video", self.family.label)
        return self._media(Vision.VIDEO, frames, fps)

    def _media(self, kind: Vision, frames: np.ndarray, fps: Optional[float]) -> "_Media":
        v = self.vision
        rows, grid = pixel_rows(frames, v, self._table)
        layout_for = partial(self.family.vit_layout, v)
        spg = None if fps is None else v.temporal_patch_size / fps
        return _Media(
            kind, rows, grid, layout_for(*grid), spg, (frames.shape[1], frames.shape[2]),
            self.family.media_text(kind.value, len(frames), fps), self.family.time_step(v, kind.value, fps), layout_for,
        )

    def _assemble(
        self, ids: np.ndarray, blocks: tuple[VisualBlock, ...], prompt: str, cached: int, messages: tuple,
        media_text: tuple[str, ...],
    ) -> ModelInputs:
        placements = [placement for block in blocks for placement in block.placements()]
        positions, next_position = mrope_positions(len(ids), placements)
        return ModelInputs(ids, positions, next_position, blocks, prompt, cached, messages, media_text)


@dataclass(frozen=True)
class _Media:
    """An image or video cut into pixel rows, before its place in the token sequence is known."""

    kind: Vision
    rows: np.ndarray
    grid: tuple[int, int, int]
    layout: VitLayout
    second_per_grid: Optional[float]
    size: tuple[int, int]
    text: MediaText
    time_step: float
    layout_for: Any

    @property
    def grid_tokens(self) -> int:
        return self.grid[1] * self.grid[2] // (self.layout.merge**2)

    def block(self, run_offsets: Sequence[int]) -> VisualBlock:
        runs = tuple((run.t0, run.t1, offset) for run, offset in zip(self.text.runs, run_offsets))
        return VisualBlock(
            self.kind.value, self.grid, run_offsets[0], self.rows, self.layout, self.second_per_grid, self.size,
            runs, self.time_step, self.layout_for,
        )


def _pad_offsets(ids: np.ndarray, pad_ids: Sequence[int], counts: Sequence[int]) -> list[int]:
    """Index of the first token of each expanded pad run, in order."""
    is_pad = np.isin(ids, np.asarray(pad_ids))
    starts = np.flatnonzero(is_pad & ~np.concatenate([[False], is_pad[:-1]]))
    # Runs cannot merge: vision_end/vision_start always sit between two of them.
    if len(starts) != len(counts):
        raise ModelError(f"found {len(starts)} visual token runs for {len(counts)} expected")
    return [int(s) for s in starts]
