"""ViT layout (window order, reverse index, rotary ids, masks) without transformers.

Parity with transformers' own get_window_index / rot_pos_emb is in test_qwen_parity.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from streamproc.errors import InputTooLarge
from streamproc.qwen.vit_layout import MASK_VALUE, WindowLayout as VitLayout, block_mask, grid_chunks, rotary_positions, window_index

GRIDS = [(1, 2, 2), (1, 4, 6), (2, 8, 8), (3, 10, 14), (1, 16, 8), (2, 18, 30)]


@pytest.mark.parametrize("grid", GRIDS)
def test_window_index_is_a_permutation_and_reverse_undoes_it(grid):
    layout = VitLayout.for_grid(*grid)
    tokens = grid[0] * grid[1] * grid[2] // 4
    assert sorted(layout.window_index.tolist()) == list(range(tokens))
    assert np.array_equal(layout.window_index[layout.reverse_index], np.arange(tokens))
    assert layout.cu_window_seqlens[0] == 0 and layout.cu_window_seqlens[-1] == layout.patches
    assert np.all(np.diff(layout.cu_window_seqlens) > 0)  # no empty windows
    assert layout.cu_seqlens.tolist() == [i * grid[1] * grid[2] for i in range(grid[0] + 1)]


def test_window_order_worked_example():
    # 1 frame pair, 6x10 merged tokens (12x20 patches): windows of 4x4 tokens -> 2 x 3 windows,
    # the right and bottom ones partial.
    order, cu = window_index(1, 12, 20)
    first_window = [r * 10 + c for r in range(4) for c in range(4)]
    assert order[:16].tolist() == first_window
    assert order[16:32].tolist() == [r * 10 + c for r in range(4) for c in range(4, 8)]
    assert order[32:40].tolist() == [r * 10 + c for r in range(4) for c in range(8, 10)]
    assert (np.diff(cu) // 4).tolist() == [16, 16, 8, 8, 8, 4]


def test_rotary_positions_are_2x2_block_major():
    pos = rotary_positions(1, 4, 4)
    assert pos[:8].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [0, 2], [0, 3], [1, 2], [1, 3]]
    assert np.array_equal(rotary_positions(2, 4, 4)[16:], pos)  # repeated per temporal grid


def test_vit_order_permutes_groups_of_four():
    layout = VitLayout.for_grid(1, 12, 20)
    rows = np.arange(layout.patches * 3).reshape(layout.patches, 3)
    permuted = layout.to_vit_order(rows)
    for place, token in enumerate(layout.window_index[:10]):
        assert np.array_equal(permuted[4 * place : 4 * place + 4], rows[4 * token : 4 * token + 4])
    assert np.array_equal(layout.rotary_pos, layout.to_vit_order(rotary_positions(1, 12, 20)))


@pytest.mark.parametrize("grid", [(4, 6, 8), (5, 12, 20)])
def test_chunk_layout_equals_rows_of_the_whole(grid):
    t, h, w = grid
    whole = VitLayout.for_grid(*grid)
    per_grid_tokens = h * w // 4
    start = 0
    for a, b in grid_chunks(grid, max_patches=2 * h * w):
        chunk = VitLayout.for_grid(b - a, h, w)
        rows = slice(a * per_grid_tokens, b * per_grid_tokens)
        assert np.array_equal(chunk.window_index + a * per_grid_tokens, whole.window_index[rows])
        assert np.array_equal(chunk.rotary_pos, whole.rotary_pos[a * h * w : b * h * w])
        start = b
    assert start == t


def test_grid_chunks():
    assert grid_chunks((5, 4, 4), 32) == [(0, 2), (2, 4), (4, 5)]
    assert grid_chunks((2, 4, 4), 1000) == [(0, 2)]
    with pytest.raises(InputTooLarge, match="exceeds the ViT"):
        grid_chunks((1, 16, 16), 64)


def test_masks_follow_cu_seqlens():
    mask = block_mask(np.array([0, 4, 12]))
    assert mask.shape == (1, 1, 12, 12) and mask.dtype == np.float32
    m = mask[0, 0]
    assert (m[:4, :4] == 0).all() and (m[4:, 4:] == 0).all()
    assert (m[:4, 4:] == MASK_VALUE).all() and (m[4:, :4] == MASK_VALUE).all()


def test_padded_mask_is_masked_outside_the_real_block():
    layout = VitLayout.for_grid(2, 4, 4)
    full = layout.full_mask(pad_to=64)
    assert full.shape == (1, 1, 64, 64)
    assert np.array_equal(full[0, 0, :32, :32], layout.full_mask()[0, 0])
    assert (full[0, 0, 32:, :] == MASK_VALUE).all() and (full[0, 0, :, 32:] == MASK_VALUE).all()
    with pytest.raises(InputTooLarge):
        layout.window_mask(pad_to=16)


def test_window_mask_groups_each_window():
    layout = VitLayout.for_grid(1, 12, 12)  # 6x6 tokens -> windows 16, 8, 8, 4 tokens
    mask = layout.window_mask()[0, 0]
    assert (mask[:64, :64] == 0).all() and (mask[:64, 64:] == MASK_VALUE).all()
    assert (np.diff(layout.cu_window_seqlens) // 4).tolist() == [16, 8, 8, 4]
