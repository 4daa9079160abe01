"""ModelInputs: everything a Qwen2.5-VL backend needs for one request, built once for all backends.

    builder = InputBuilder.from_pretrained("path/to/checkpoint-or-tokenizer-folder")
    inputs = builder.build("Describe the video.", video=frames, fps=1.0)
    inputs.input_ids, inputs.position_ids, inputs.blocks[0].pixel_values, ...

A backend embeds `input_ids`, runs each visual block's pixel rows through the ViT and writes the
merged outputs over that block's pad tokens (from `block.offset`, `block.tokens` rows), then
prefills with `position_ids` and decodes from `next_position`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InputTooLarge, ModelError
from .budget import check_seq_length
from .config import QwenSpec, VisionSpec
from .patches import as_frames, check_frame_size, image_size, normalisation_table, pixel_rows, resize_rgb
from .prompt import (
    TEMPLATE_DEFAULT, Message, SystemPrompt, Vision, continuation, conversation, expand_pads, render_chat,
)
from .rope import BlockPlacement, mrope_positions
from .tokenizer import QwenTokenizer
from .vit_layout import VitLayout, block_mask, grid_chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VitChunk:
    """One ViT call's inputs: whole temporal grids [t0, t1) of a block, in the ViT's order."""

    layout: VitLayout  # of the chunk's own grid (t1 - t0, h, w)
    pixel_values: np.ndarray  # float32 [P, 1176], rows in window order
    position_ids: np.ndarray  # int32 [P, 2], (h, w) per patch, window order
    reverse_index: np.ndarray  # int32 [P/4]
    token_start: int  # first merged token of the chunk within its block

    @property
    def patches(self) -> int:
        return self.layout.patches

    def full_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        return block_mask(self.layout.cu_seqlens, pad_to)

    def window_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        return block_mask(self.layout.cu_window_seqlens, pad_to)


@dataclass(frozen=True)
class VisualBlock:
    """One image or video: its pixel rows and where its tokens sit in input_ids."""

    kind: str  # "image" | "video"
    grid_thw: tuple[int, int, int]  # in patches, as transformers' image/video_grid_thw
    offset: int  # index in input_ids of the block's first pad token
    pixel_values: np.ndarray  # float32 [t*h*w, 1176], the processor's row order
    layout: VitLayout
    second_per_grid: Optional[float] = None  # video: temporal_patch_size / fps
    size: tuple[int, int] = (0, 0)  # (height, width) in pixels after resizing

    @property
    def patches(self) -> int:
        return self.pixel_values.shape[0]

    @property
    def tokens(self) -> int:
        return self.layout.tokens

    @property
    def window_index(self) -> np.ndarray:
        return self.layout.window_index

    @property
    def reverse_index(self) -> np.ndarray:
        return self.layout.reverse_index

    @property
    def rotary_pos(self) -> np.ndarray:
        return self.layout.rotary_pos

    @property
    def cu_seqlens(self) -> np.ndarray:
        return self.layout.cu_seqlens

    @property
    def cu_window_seqlens(self) -> np.ndarray:
        return self.layout.cu_window_seqlens

    def vit_chunks(self, max_patches: Optional[int] = None) -> list[VitChunk]:
        """The block cut into ViT calls of whole temporal grids, each laid out for its own grid."""
        t, h, w = self.grid_thw
        merge, unit = self.layout.merge, self.layout.merge**2
        runs = [(0, t)] if max_patches is None else grid_chunks(self.grid_thw, max_patches)
        chunks = []
        for start, stop in runs:
            layout = VitLayout.for_grid(stop - start, h, w, merge, self.layout.window)
            rows = self.pixel_values[start * h * w : stop * h * w]
            chunks.append(
                VitChunk(
                    layout=layout,
                    pixel_values=np.ascontiguousarray(layout.to_vit_order(rows)),
                    position_ids=layout.rotary_pos,
                    reverse_index=layout.reverse_index.astype(np.int32),
                    token_start=start * h * w // unit,
                )
            )
        return chunks


@dataclass(frozen=True)
class ModelInputs:
    input_ids: np.ndarray  # int64 [L]
    position_ids: np.ndarray  # int64 [3, L] (t, h, w rows)
    next_position: int  # position of the first generated token (all three axes)
    blocks: tuple[VisualBlock, ...] = ()
    prompt: str = ""  # the rendered template, one pad token per block (for logs and debugging)
    cached_tokens: int = 0  # leading tokens a previous turn already put in a KV cache
    messages: tuple[Message, ...] = field(default=(), repr=False)

    @property
    def rope_delta(self) -> int:
        """transformers' rope delta: decode position = cache position + rope_delta."""
        return self.next_position - len(self.input_ids)

    @property
    def total_tokens(self) -> int:
        return int(len(self.input_ids))

    @property
    def visual_tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    @property
    def text_tokens(self) -> int:
        return self.total_tokens - self.visual_tokens

    def grid_thw(self, kind: str) -> np.ndarray:
        """(n, 3) int64 grids of the image or video blocks, in order (transformers' *_grid_thw)."""
        grids = [block.grid_thw for block in self.blocks if block.kind == kind]
        return np.asarray(grids, dtype=np.int64).reshape(-1, 3)

    def pixel_values(self, kind: str) -> np.ndarray:
        """All rows of the image or video blocks, concatenated (transformers' pixel_values*)."""
        rows = [block.pixel_values for block in self.blocks if block.kind == kind]
        return np.concatenate(rows) if rows else np.zeros((0, 1176), dtype=np.float32)


class InputBuilder:
    """Turns prompts plus frames/images into ModelInputs for one checkpoint (or tokenizer folder)."""

    def __init__(self, spec: QwenSpec, tokenizer: QwenTokenizer, seq_length: Optional[int] = None):
        self.spec = spec
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.tokens = spec.tokens
        self._table = normalisation_table(spec.vision)

    @classmethod
    def from_pretrained(cls, path: str | Path, seq_length: Optional[int] = None) -> "InputBuilder":
        spec = QwenSpec.from_dir(path)
        tokenizer = QwenTokenizer.from_dir(path)
        return cls(spec, tokenizer, seq_length)

    @property
    def vision(self) -> VisionSpec:
        return self.spec.vision

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return self.tokens.stop_ids

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
        template adds by itself (Qwen's: "You are a helpful assistant."); False (NO_SYSTEM) none. With `seq_length` set, a request
        that leaves fewer than `answer_reserve` (at least 1) tokens for the answer is refused.
        """
        media = [self._image(image) for image in images or ()]
        if video is not None:
            media.append(self._video(video, fps))
        messages = conversation(prompt, [item.kind for item in media], system)
        text = render_chat(messages, default_system=self._default_system(system))
        pads = (self.tokens.image_pad, self.tokens.video_pad)
        counts = [item.tokens for item in media]
        ids = expand_pads(self.tokenizer.encode(text), pads, counts)
        blocks = tuple(item.block(offset) for item, offset in zip(media, _pad_offsets(ids, pads, counts)))
        inputs = self._assemble(ids, blocks, text, 0, tuple(messages))
        self.check_budget(inputs, answer_reserve)
        log.debug(
            "inputs: %d tokens (%d visual) in %d blocks %s",
            inputs.total_tokens, inputs.visual_tokens, len(blocks), [b.grid_thw for b in blocks],
        )
        return inputs

    def build_segment(
        self, segment: Any, prompt: str, system: SystemPrompt = TEMPLATE_DEFAULT, answer_reserve: int = 0
    ) -> ModelInputs:
        """A streamproc Segment (frames already at the model size) as one video."""
        frames = np.stack([frame.image for frame in segment.frames])
        return self.build(prompt, video=frames, fps=segment.fps, system=system, answer_reserve=answer_reserve)

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
        inputs = self._assemble(ids, previous.blocks, prompt, cached, messages)
        self.check_budget(inputs, answer_reserve)
        return inputs

    # -- budget -------------------------------------------------------------------------------

    def prompt_tokens(
        self, prompt: str, system: SystemPrompt = TEMPLATE_DEFAULT, visuals: Sequence[Vision] = (Vision.VIDEO,)
    ) -> int:
        """Tokens of the templated prompt without visual tokens (vision start/end included)."""
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

    def check_budget(self, inputs: ModelInputs, answer_reserve: int) -> None:
        if self.seq_length is None:
            return
        need = inputs.total_tokens + max(answer_reserve, 1)
        if need > self.seq_length:
            raise InputTooLarge(
                f"the request needs {inputs.total_tokens} input tokens ({inputs.visual_tokens} visual, "
                f"{inputs.text_tokens} text) plus {max(answer_reserve, 1)} for the answer, more than the model's "
                f"sequence length {self.seq_length}: use shorter segments, smaller frames or a shorter prompt"
            )

    # -- helpers ------------------------------------------------------------------------------

    def _default_system(self, system: SystemPrompt) -> Optional[str]:
        """The system turn the template adds: its own default when `system` is TEMPLATE_DEFAULT."""
        return self.spec.default_system if system is TEMPLATE_DEFAULT else None

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
        check_frame_size(frames.shape[1], frames.shape[2], self.vision, "video")
        return self._media(Vision.VIDEO, frames, self.vision.temporal_patch_size / fps)

    def _media(self, kind: Vision, frames: np.ndarray, second_per_grid: Optional[float]) -> "_Media":
        v = self.vision
        rows, grid = pixel_rows(frames, v, self._table)
        layout = VitLayout.for_grid(*grid, merge=v.spatial_merge_size, window=v.window_tokens)
        return _Media(kind, rows, grid, layout, second_per_grid, (frames.shape[1], frames.shape[2]))

    def _assemble(
        self, ids: np.ndarray, blocks: tuple[VisualBlock, ...], prompt: str, cached: int, messages: tuple
    ) -> ModelInputs:
        merge, per_second = self.vision.spatial_merge_size, self.vision.tokens_per_second
        placements = [
            BlockPlacement(
                block.offset,
                (block.grid_thw[0], block.grid_thw[1] // merge, block.grid_thw[2] // merge),
                0.0 if block.second_per_grid is None else block.second_per_grid * per_second,
            )
            for block in blocks
        ]
        positions, next_position = mrope_positions(len(ids), placements)
        return ModelInputs(ids, positions, next_position, blocks, prompt, cached, messages)


@dataclass(frozen=True)
class _Media:
    """An image or video cut into pixel rows, before its place in the token sequence is known."""

    kind: Vision
    rows: np.ndarray
    grid: tuple[int, int, int]
    layout: VitLayout
    second_per_grid: Optional[float]
    size: tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.layout.tokens

    def block(self, offset: int) -> VisualBlock:
        return VisualBlock(
            self.kind.value, self.grid, offset, self.rows, self.layout, self.second_per_grid, self.size
        )


def _pad_offsets(ids: np.ndarray, pad_ids: Sequence[int], counts: Sequence[int]) -> list[int]:
    """Index of the first token of each expanded pad run, in order."""
    is_pad = np.isin(ids, np.asarray(pad_ids))
    starts = np.flatnonzero(is_pad & ~np.concatenate([[False], is_pad[:-1]]))
    # Runs of two blocks cannot merge: vision_end/vision_start always sit between them.
    if len(starts) != len(counts):
        raise ModelError(f"found {len(starts)} visual token runs for {len(counts)} images/videos")
    return [int(s) for s in starts]
