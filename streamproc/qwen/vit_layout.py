"""The ViT's token order, attention layout and position inputs for one grid of patches.

`VitLayout` is what every family's ViT call has: the grid, per-patch (row, column) rotary ids,
one full-attention run per temporal grid (frame pair). The families add their own:

`WindowLayout` (Qwen2.5-VL). The ViT does not see patches in raster order: merged tokens (groups of 2x2 patches) are
reordered window by window (windows of 112 px = 4x4 merged tokens, row-major per temporal grid),
so that window attention is attention over contiguous runs. Full-attention blocks attend within
one temporal grid (one frame pair), window blocks within one window. After the merger, the
reverse index puts the merged tokens back in raster order.

`InterpolatedLayout` (Qwen3-VL). Patches stay in the processor's order (2x2 blocks, raster),
attention is full within each frame pair, and each patch carries the four indices and bilinear
weights into the learned position-embedding grid (transformers' fast_pos_embed_interpolate),
computed here so the ViT net only gathers and sums.

Everything here is per grid (t, h, w) in patches, so a video can be run through the ViT in chunks
of whole temporal grids: each chunk gets the layout of its own grid (t_i, h, w), with indices
restarting at 0. A chunk's layout equals the corresponding rows of the whole grid's layout,
because windows never cross temporal grids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InputTooLarge

MASK_VALUE = -10000.0  # additive mask for "no attention" (large negative, finite: no NaN rows)


def window_index(t: int, h: int, w: int, merge: int = 2, window: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(window index int64 [t*h*w/merge^2], cu_window_seqlens int32) for a grid in patches.

    window_index[i] is the raster index of the merged token the ViT sees at place i;
    cu_window_seqlens are the window boundaries in patches (empty windows dropped, as
    transformers' unique_consecutive does).
    """
    lh, lw = h // merge, w // merge
    nh, nw = -(-lh // window), -(-lw // window)
    index = np.full((t, nh * window, nw * window), -1, dtype=np.int64)
    index[:, :lh, :lw] = np.arange(t * lh * lw, dtype=np.int64).reshape(t, lh, lw)
    index = index.reshape(t, nh, window, nw, window).transpose(0, 1, 3, 2, 4).reshape(t * nh * nw, window * window)
    valid = index >= 0
    seqlens = valid.sum(axis=1) * merge * merge
    order = index[valid]
    cu = np.concatenate([[0], np.cumsum(seqlens[seqlens > 0])]).astype(np.int32)
    return order, cu


def rotary_positions(t: int, h: int, w: int, merge: int = 2) -> np.ndarray:
    """(t*h*w, 2) int32 (row, column) of each patch in the processor's order (2x2-block-major)."""
    rows = np.broadcast_to(np.arange(h).reshape(h // merge, merge, 1, 1), (h // merge, merge, w // merge, merge))
    cols = np.broadcast_to(np.arange(w).reshape(1, 1, w // merge, merge), (h // merge, merge, w // merge, merge))
    pairs = np.stack([rows.transpose(0, 2, 1, 3).reshape(-1), cols.transpose(0, 2, 1, 3).reshape(-1)], axis=-1)
    return np.tile(pairs, (t, 1)).astype(np.int32)


def block_mask(cu_seqlens: np.ndarray, pad_to: Optional[int] = None) -> np.ndarray:
    """(1, 1, P, P) float32: 0 where two patches share a run of cu_seqlens, -10000 elsewhere.

    With pad_to, the real P x P block sits top-left of a pad_to x pad_to mask that is -10000
    everywhere else (a static ViT's padding rows and columns must be masked, not 0).
    """
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    size = int(cu[-1])
    total = size if pad_to is None else int(pad_to)
    if total < size:
        raise InputTooLarge(f"{size} patches do not fit a ViT input of {total}")
    mask = np.full((1, 1, total, total), MASK_VALUE, dtype=np.float32)
    for start, stop in zip(cu[:-1], cu[1:]):  # one slice per run (window or frame pair), not per patch
        mask[0, 0, start:stop, start:stop] = 0.0
    return mask


@dataclass(frozen=True)
class WindowInputs:
    """Qwen2.5-VL's window attention for one ViT call."""

    cu_window_seqlens: np.ndarray  # int32: window runs in patches, ViT order
    reverse_index: np.ndarray  # int32 [P/4]: ViT place of each raster token


@dataclass(frozen=True)
class InterpolationInputs:
    """Qwen3-VL's learned position grid, bilinearly interpolated, for one ViT call."""

    pos_idx: np.ndarray  # int32 [P, 4]
    pos_weight: np.ndarray  # float32 [P, 4]


@dataclass(frozen=True)
class VitLayout:
    """What every family's ViT call needs for a grid (t, h, w) in patches."""

    grid: tuple[int, int, int]
    merge: int  # patches a merged token spans on each side (2)
    rotary_pos: np.ndarray  # int32 [P, 2]: (h, w) of each patch, in ViT order
    cu_seqlens: np.ndarray  # int32 [t+1]: full attention runs (one per temporal grid)

    @property
    def patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def tokens(self) -> int:
        return self.patches // (self.merge * self.merge)

    def to_vit_order(self, rows: np.ndarray) -> np.ndarray:
        """Rows (or any per-patch array) from the processor's order into the ViT's (the same here)."""
        return rows

    def full_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        return block_mask(self.cu_seqlens, pad_to)

    def window_inputs(self) -> Optional[WindowInputs]:
        """The window-attention inputs of a ViT that has them (None: full attention only)."""
        return None

    def interpolation_inputs(self) -> Optional[InterpolationInputs]:
        """The position-grid taps of a ViT that takes them (None: rotary ids only)."""
        return None


def _full_runs(t: int, h: int, w: int) -> np.ndarray:
    return (np.arange(t + 1, dtype=np.int64) * h * w).astype(np.int32)


@dataclass(frozen=True)
class WindowLayout(VitLayout):
    """Qwen2.5-VL: merged tokens in window order, window attention runs, the reverse index."""

    window: int = 4  # merged tokens a window spans on each side
    window_index: np.ndarray = field(default=None, repr=False)  # int64 [P/4]: raster token at each ViT place
    reverse_index: np.ndarray = field(default=None, repr=False)  # int64 [P/4]: argsort(window_index)
    cu_window_seqlens: np.ndarray = field(default=None, repr=False)  # int32: window runs, in ViT order

    @classmethod
    def for_grid(cls, t: int, h: int, w: int, merge: int = 2, window: int = 4) -> "WindowLayout":
        if h % merge or w % merge:
            raise ValueError(f"grid {h}x{w} patches is not a multiple of the merge size {merge}")
        order, cu_window = window_index(t, h, w, merge, window)
        reverse = np.empty_like(order)
        reverse[order] = np.arange(len(order), dtype=np.int64)
        unit = merge * merge
        rotary = rotary_positions(t, h, w, merge).reshape(-1, unit, 2)[order].reshape(-1, 2)
        return cls((t, h, w), merge, rotary, _full_runs(t, h, w), window, order, reverse, cu_window)

    def to_vit_order(self, rows: np.ndarray) -> np.ndarray:
        """Rows (or any per-patch array) from the processor's order into the ViT's window order."""
        unit = self.merge * self.merge
        return rows.reshape(-1, unit, *rows.shape[1:])[self.window_index].reshape(rows.shape)

    def window_mask(self, pad_to: Optional[int] = None) -> np.ndarray:
        return block_mask(self.cu_window_seqlens, pad_to)

    def window_inputs(self) -> WindowInputs:
        return WindowInputs(self.cu_window_seqlens.astype(np.int32), self.reverse_index.astype(np.int32))


@dataclass(frozen=True)
class InterpolatedLayout(VitLayout):
    """Qwen3-VL: processor order, and per patch the bilinear taps into the position grid."""

    pos_idx: np.ndarray = field(default=None, repr=False)  # int32 [P, 4]: embedding rows (floor/ceil taps)
    pos_weight: np.ndarray = field(default=None, repr=False)  # float32 [P, 4]: their weights

    @classmethod
    def for_grid(cls, t: int, h: int, w: int, merge: int, side: int) -> "InterpolatedLayout":
        """`side`: the learned grid is side x side embeddings (num_position_embeddings = side^2)."""
        if h % merge or w % merge:
            raise ValueError(f"grid {h}x{w} patches is not a multiple of the merge size {merge}")
        index, weight = position_taps(h, w, side)  # [h*w, 4] in raster order
        # -> the processor's order: 2x2 blocks of patches, blocks in raster order, for each frame pair
        order = np.arange(h * w).reshape(h // merge, merge, w // merge, merge).transpose(0, 2, 1, 3).reshape(-1)
        index, weight = np.tile(index[order], (t, 1)), np.tile(weight[order], (t, 1))
        return cls((t, h, w), merge, rotary_positions(t, h, w, merge), _full_runs(t, h, w), index, weight)

    def interpolation_inputs(self) -> InterpolationInputs:
        return InterpolationInputs(self.pos_idx, self.pos_weight)


def position_taps(h: int, w: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32 [h*w, 4], float32 [h*w, 4]) in raster order: for each patch the four neighbouring
    cells of a side x side grid spread evenly over the image (floor/ceil of rows and columns) and
    their bilinear weights, in float32 as transformers computes them."""
    rows = np.linspace(0, side - 1, h).astype(np.float32)
    cols = np.linspace(0, side - 1, w).astype(np.float32)
    r0, c0 = rows.astype(np.int64), cols.astype(np.int64)
    r1, c1 = np.minimum(r0 + 1, side - 1), np.minimum(c0 + 1, side - 1)
    dr, dc = (rows - r0.astype(np.float32))[:, None], (cols - c0.astype(np.float32))[None, :]
    one = np.float32(1)
    index = np.stack(
        [(r0[:, None] * side + c0[None, :]), (r0[:, None] * side + c1[None, :]),
         (r1[:, None] * side + c0[None, :]), (r1[:, None] * side + c1[None, :])], axis=-1)
    weight = np.stack([(one - dr) * (one - dc), (one - dr) * dc, dr * (one - dc), dr * dc], axis=-1)
    return index.reshape(-1, 4).astype(np.int32), weight.reshape(-1, 4).astype(np.float32)


def grid_chunks(grid: tuple[int, int, int], max_patches: int, max_grids: Optional[int] = None) -> list[tuple[int, int]]:
    """Split a grid's temporal axis into [start, stop) runs of whole temporal grids that each fit
    `max_patches` (and at most `max_grids` temporal grids: a ViT without an attention mask input
    attends across everything it is given, so it takes one frame pair a call); raises
    InputTooLarge when not even one temporal grid fits."""
    t, h, w = grid
    per_grid = h * w
    if per_grid > max_patches:
        raise InputTooLarge(
            f"one frame pair of {h}x{w} patches ({per_grid}) exceeds the ViT's {max_patches} patches: "
            f"lower the frame size (max_pixels)"
        )
    step = max_patches // per_grid if max_grids is None else min(max_patches // per_grid, max_grids)
    return [(start, min(start + step, t)) for start in range(0, t, step)]
