"""3-D mRoPE position ids on worked examples (parity with transformers in test_qwen_parity.py)."""
from __future__ import annotations

import numpy as np

from streamproc.qwen.rope import BlockPlacement, block_positions, mrope_positions, rope_delta


def test_text_only_is_one_counter_on_all_axes():
    positions, next_pos = mrope_positions(5, [])
    assert positions.tolist() == [list(range(5))] * 3
    assert next_pos == 5 and rope_delta(5, next_pos) == 0


def test_transformers_docstring_example():
    # get_rope_index's docstring: 3 temporal patches of 2x2 tokens, interval 50, then 5 text tokens.
    positions, next_pos = mrope_positions(17, [BlockPlacement(0, (3, 2, 2), 50.0)])
    assert positions[0, :12].tolist() == [0] * 4 + [50] * 4 + [100] * 4
    assert positions[1, :12].tolist() == [0, 0, 1, 1] * 3
    assert positions[2, :12].tolist() == [0, 1, 0, 1] * 3
    assert positions[:, 12:].tolist() == [[101, 102, 103, 104, 105]] * 3
    assert next_pos == 106


def test_text_after_video_starts_at_max_plus_one():
    # 3 text tokens, a video of 4 frame pairs of 2x3 tokens at 1 fps (time step 2*2 = 4), 2 text tokens.
    block = BlockPlacement(3, (4, 2, 3), 4.0)
    positions, next_pos = mrope_positions(3 + 24 + 2, [block])
    assert positions[:, :3].tolist() == [[0, 1, 2]] * 3
    video = positions[:, 3:27].reshape(3, 4, 2, 3)
    assert video[0, :, 0, 0].tolist() == [3, 7, 11, 15]
    assert video[1, 0, :, 0].tolist() == [3, 4] and video[2, 0, 0, :].tolist() == [3, 4, 5]
    assert positions[:, 27:].tolist() == [[16, 17]] * 3  # max(15, 4, 5) + 1, not 3 + max(h, w)
    assert next_pos == 18 and rope_delta(29, next_pos) == -11


def test_image_has_no_time_axis_and_blocks_chain():
    image = BlockPlacement(1, (1, 2, 2), 0.0)
    video = BlockPlacement(7, (2, 1, 1), 2.0)
    positions, next_pos = mrope_positions(10, [image, video])
    assert positions[:, :1].tolist() == [[0]] * 3
    assert positions[:, 1:5].tolist() == [[1, 1, 1, 1], [1, 1, 2, 2], [1, 2, 1, 2]]
    assert positions[:, 5:7].tolist() == [[3, 4]] * 3
    assert positions[:, 7:9].tolist() == [[5, 7], [5, 5], [5, 5]]
    assert positions[:, 9].tolist() == [8, 8, 8]
    assert next_pos == 9


def test_fractional_time_step_keeps_the_fraction():
    # 3 fps: second_per_grid 2/3, time step 4/3 per frame pair -> floor(k * 4/3).
    rel = block_positions((6, 1, 1), 2 / 3 * 2)
    assert rel[0].tolist() == [0, 1, 2, 4, 5, 6]


def test_start_offsets_everything():
    a, na = mrope_positions(6, [BlockPlacement(2, (1, 2, 1), 0.0)])
    b, nb = mrope_positions(6, [BlockPlacement(2, (1, 2, 1), 0.0)], start=10)
    assert np.array_equal(b, a + 10) and nb == na + 10
