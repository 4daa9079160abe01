"""ModelInputs: everything a backend needs for one request, built once for all backends (by
builder.InputBuilder):

    inputs.input_ids, inputs.position_ids, inputs.blocks[0].pixel_values, ...

A backend embeds `input_ids`, runs each visual block's pixel rows through the ViT and writes the
merged outputs over that block's pad tokens (each temporal grid at `block.grid_offset(k)`), then
prefills with `position_ids` and decodes from `next_position`. What differs between model
families (prompt text of a video, positions, the ViT's layout) comes from `builder.family`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import ModelError
from .prompt import Message
from .rope import BlockPlacement
from .vit_layout import InterpolationInputs, VitLayout, WindowInputs, block_mask, grid_chunks


@dataclass(frozen=True)
class VitChunk:
    """One ViT call's inputs: whole temporal grids [t0, t1) of a block, in the ViT's order."""

    layout: VitLayout  # of the chunk's own grid (t1 - t0, h, w)
    pixel_values: np.ndarray  # float32 [P, patch_features], rows in ViT order
    position_ids: np.ndarray  # int32 [P, 2], (h, w) per patch, ViT order
    token_start: int  # first merged token of the chunk within its block
    grid_offsets: tuple[int, ...]  # per temporal grid: index in input_ids of its first merged token
    window: Optional[WindowInputs] = None  # Qwen2.5-VL
    interpolation: Optional[InterpolationInputs] = None  # Qwen3-VL

    @property
    def patches(self) -> int:
        return self.layout.patches

    @property
    def reverse_index(self) -> Optional[np.ndarray]:
        return None if self.window is None else self.window.reverse_index

    def full_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        return block_mask(self.layout.cu_seqlens, pad_to)

    def window_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        if self.window is None:
            raise ModelError("this model's ViT has no window attention")
        return block_mask(self.window.cu_window_seqlens, pad_to)


@dataclass(frozen=True)
class VisualBlock:
    """One image or video: its pixel rows and where its tokens sit in input_ids."""

    kind: str  # "image" | "video"
    grid_thw: tuple[int, int, int]  # in patches, as transformers' image/video_grid_thw
    offset: int  # index in input_ids of the block's first pad token
    pixel_values: np.ndarray  # float32 [t*h*w, patch_features], the processor's row order
    layout: VitLayout
    second_per_grid: Optional[float] = None  # video: temporal_patch_size / fps
    size: tuple[int, int] = (0, 0)  # (height, width) in pixels after resizing
    # (t0, t1, offset) per run of pad tokens: Qwen2.5-VL has one run a block, Qwen3-VL one per
    # frame pair of a video (its timestamp and vision markers sit between runs).
    runs: tuple[tuple[int, int, int], ...] = ()
    time_step: float = 0.0  # temporal position step per frame pair within a run
    layout_for: Optional[Callable[[int, int, int], VitLayout]] = field(default=None, repr=False, compare=False)

    @property
    def patches(self) -> int:
        return self.pixel_values.shape[0]

    @property
    def tokens(self) -> int:
        return self.layout.tokens

    @property
    def grid_tokens(self) -> int:
        """Merged tokens of one temporal grid (one frame pair)."""
        return self.grid_thw[1] * self.grid_thw[2] // (self.layout.merge**2)

    @property
    def window_index(self) -> np.ndarray:
        return self.layout.window_index  # type: ignore[attr-defined]  (Qwen2.5-VL layouts)

    @property
    def reverse_index(self) -> np.ndarray:
        return self.layout.reverse_index  # type: ignore[attr-defined]

    @property
    def rotary_pos(self) -> np.ndarray:
        return self.layout.rotary_pos

    @property
    def cu_seqlens(self) -> np.ndarray:
        return self.layout.cu_seqlens

    @property
    def cu_window_seqlens(self) -> np.ndarray:
        return self.layout.cu_window_seqlens  # type: ignore[attr-defined]

    def grid_offset(self, k: int) -> int:
        """Index in input_ids of temporal grid k's first merged token."""
        for t0, t1, offset in self.runs:
            if t0 <= k < t1:
                return offset + (k - t0) * self.grid_tokens
        raise IndexError(f"grid {k} is outside the block's {self.grid_thw[0]} temporal grids")

    def placements(self) -> list[BlockPlacement]:
        """Where each run's tokens sit for the 3-D positions."""
        _, h, w = self.grid_thw
        merge = self.layout.merge
        return [BlockPlacement(offset, (t1 - t0, h // merge, w // merge), self.time_step) for t0, t1, offset in self.runs]

    def vit_chunks(self, max_patches: Optional[int] = None, max_grids: Optional[int] = None) -> list[VitChunk]:
        """The block cut into ViT calls of whole temporal grids, each laid out for its own grid.
        `max_grids` caps the frame pairs a call (a ViT without a mask input takes one)."""
        t, h, w = self.grid_thw
        unit = self.layout.merge**2
        if max_patches is None:
            max_patches = self.patches
        layout_for = self.layout_for or (lambda tt, hh, ww: self.layout)
        chunks = []
        for start, stop in grid_chunks(self.grid_thw, max_patches, max_grids):
            layout = layout_for(stop - start, h, w)
            rows = self.pixel_values[start * h * w : stop * h * w]
            chunks.append(
                VitChunk(
                    layout=layout,
                    pixel_values=np.ascontiguousarray(layout.to_vit_order(rows)),
                    position_ids=np.ascontiguousarray(layout.rotary_pos, dtype=np.int32),
                    token_start=start * h * w // unit,
                    grid_offsets=tuple(self.grid_offset(k) for k in range(start, stop)),
                    window=layout.window_inputs(),
                    interpolation=layout.interpolation_inputs(),
                )
            )
        return chunks


@dataclass(frozen=True)
class ModelInputs:
    input_ids: np.ndarray  # int64 [L]
    position_ids: np.ndarray  # int64 [3, L] (t, h, w rows)
    next_position: int  # position of the first generated token (all three axes)
    blocks: tuple[VisualBlock, ...] = ()
    prompt: str = ""  # the rendered template, one pad token per run (for logs and debugging)
    cached_tokens: int = 0  # leading tokens a previous turn already put in a KV cache
    messages: tuple[Message, ...] = field(default=(), repr=False)
    media_text: tuple[str, ...] = field(default=(), repr=False)  # each block's part of the prompt

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
        width = self.blocks[0].pixel_values.shape[1] if self.blocks else 0
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)

    def visual_mask(self) -> np.ndarray:
        """bool [L]: the positions of visual tokens (where DeepStack features are added)."""
        mask = np.zeros(len(self.input_ids), dtype=bool)
        for block in self.blocks:
            for t0, t1, offset in block.runs:
                mask[offset : offset + (t1 - t0) * block.grid_tokens] = True
        return mask
