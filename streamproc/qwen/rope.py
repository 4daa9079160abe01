"""3-D mRoPE position ids for Qwen2.5-VL (the semantics of transformers 4.49-4.57 get_rope_index).

Text tokens share one counter on the t, h and w axes. A vision block of (t, h, w) merged tokens
starting after text that ended at position s-1 gets t index floor(k * second_per_grid *
tokens_per_second) (0 for images), h index row, w index column, each plus s. The text after a
block starts at max(every position so far) + 1, and decoding continues from there: token k of
the answer sits at next_position + k on all three axes.

second_per_grid is temporal_patch_size / fps (2.0 at 1 fps: a time step of 4 per frame pair).
transformers 4.57 casts second_per_grid to an integer before multiplying, which is harmless for
1, 2 or 0.5 fps (integral 2/fps) but flattens e.g. 3 fps to step 0; we keep the fraction, as
Qwen's original implementation did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class BlockPlacement:
    """Where a vision block sits in the token sequence and how its tokens are laid out."""

    offset: int  # index of its first pad token
    grid: tuple[int, int, int]  # merged tokens: (t, h // merge, w // merge)
    time_step: float  # second_per_grid * tokens_per_second (0 for images)

    @property
    def tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


def block_positions(grid: tuple[int, int, int], time_step: float) -> np.ndarray:
    """(3, t*h*w) int64 positions of one block relative to its start (t, h, w rows)."""
    t, h, w = grid
    # The small epsilon keeps e.g. 3 * (2/3) * 2 at 4, not 3.999..., before truncation.
    t_index = np.floor(np.arange(t, dtype=np.float64) * time_step + 1e-9).astype(np.int64)
    out = np.empty((3, t, h, w), dtype=np.int64)
    out[0] = t_index[:, None, None]
    out[1] = np.arange(h, dtype=np.int64)[None, :, None]
    out[2] = np.arange(w, dtype=np.int64)[None, None, :]
    return out.reshape(3, t * h * w)


def mrope_positions(length: int, blocks: Sequence[BlockPlacement], start: int = 0) -> tuple[np.ndarray, int]:
    """(position ids (3, length) int64, next position for decoding) of a sequence.

    `blocks` must be in order and not overlap; `start` is the position of the first token.
    """
    positions = np.empty((3, length), dtype=np.int64)
    cursor, next_pos = 0, start
    for block in blocks:
        if block.offset < cursor or block.offset + block.tokens > length:
            raise ValueError(f"vision block at {block.offset} ({block.tokens} tokens) does not fit the sequence")
        text = block.offset - cursor
        positions[:, cursor : block.offset] = next_pos + np.arange(text, dtype=np.int64)
        relative = block_positions(block.grid, block.time_step)
        base = next_pos + text
        positions[:, block.offset : block.offset + block.tokens] = base + relative
        next_pos = base + int(relative.max()) + 1
        cursor = block.offset + block.tokens
    tail = length - cursor
    positions[:, cursor:] = next_pos + np.arange(tail, dtype=np.int64)
    return positions, next_pos + tail


def rope_delta(length: int, next_position: int) -> int:
    """transformers' mrope_position_deltas: decode position = cache position + delta."""
    return next_position - length
