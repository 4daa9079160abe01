"""InputBuilder / ModelInputs without transformers: layout, template, budget and bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from streamproc.errors import ConfigError, InputTooLarge, ModelError
from streamproc.qwen import InputBuilder, Message, Vision, render_chat
from streamproc.qwen.budget import check_plan, check_sampling, check_seq_length
from streamproc.qwen.patches import pixel_rows
from streamproc.qwen.prompt import continuation


def naive_rows(frames: np.ndarray, mean, std) -> np.ndarray:
    """Patch rows by explicit loops over the documented layout (the reference for the vectorised one)."""
    if len(frames) % 2:
        frames = np.concatenate([frames, frames[-1:]])
    t, height, width = len(frames) // 2, frames.shape[1], frames.shape[2]
    norm = (frames.astype(np.float64) / 255 - np.asarray(mean)) / np.asarray(std)
    rows = []
    for g in range(t):
        for br in range(height // 28):
            for bc in range(width // 28):
                for r in range(2):
                    for c in range(2):
                        y, x = br * 28 + r * 14, bc * 28 + c * 14
                        patch = norm[2 * g : 2 * g + 2, y : y + 14, x : x + 14, :]  # (time, y, x, C)
                        rows.append(patch.transpose(3, 0, 1, 2).reshape(-1))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("shape", [(2, 28, 28), (3, 56, 84), (4, 84, 56)])
def test_pixel_rows_match_the_documented_layout(tiny_builder, shape):
    frames = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rows, grid = pixel_rows(frames, tiny_builder.vision)
    v = tiny_builder.vision
    assert grid == ((shape[0] + 1) // 2, shape[1] // 14, shape[2] // 14)
    assert rows.dtype == np.float32 and rows.shape == (np.prod(grid), 1176)
    np.testing.assert_allclose(rows, naive_rows(frames, v.image_mean, v.image_std), atol=1e-6)


def test_build_video_counts_offsets_and_positions(tiny_builder):
    frames = np.zeros((5, 56, 84, 3), dtype=np.uint8)
    inputs = tiny_builder.build("Describe.", video=frames, fps=2.0)
    (block,) = inputs.blocks
    assert block.kind == "video" and block.grid_thw == (3, 4, 6) and block.second_per_grid == 1.0
    assert block.tokens == 3 * 2 * 3 == inputs.visual_tokens
    ids = inputs.input_ids
    pad = tiny_builder.tokens.video_pad
    assert ids[block.offset - 1] == tiny_builder.tokens.vision_start
    assert (ids[block.offset : block.offset + block.tokens] == pad).all()
    assert ids[block.offset + block.tokens] == tiny_builder.tokens.vision_end
    assert inputs.total_tokens == inputs.text_tokens + inputs.visual_tokens
    assert inputs.position_ids.shape == (3, len(ids)) and inputs.position_ids.dtype == np.int64
    assert inputs.next_position == inputs.position_ids.max() + 1
    # fps 2 -> second_per_grid 1 -> time step 2 per frame pair.
    t_axis = inputs.position_ids[0, block.offset : block.offset + block.tokens : 6]
    assert np.diff(t_axis).tolist() == [2, 2]
    as_list = tiny_builder.build("Describe.", video=list(frames), fps=2.0)  # a list of frames is one video
    assert np.array_equal(as_list.input_ids, ids) and np.array_equal(as_list.position_ids, inputs.position_ids)


def test_prompt_text_matches_the_published_template(tiny_builder):
    inputs = tiny_builder.build("Hi there", images=[np.zeros((56, 56, 3), np.uint8)], system="Be brief.")
    assert inputs.prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Hi there<|im_end|>\n<|im_start|>assistant\n"
    )
    default = render_chat([Message("user", [Vision.VIDEO, "x"])])
    assert default.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_images_are_resized_to_their_smart_size(tiny_builder):
    image = np.random.default_rng(1).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    inputs = tiny_builder.build("What?", images=[image, image[:60, :60]])
    sizes = [block.size for block in inputs.blocks]
    assert all(h % 28 == 0 and w % 28 == 0 and h * w <= 112 * 224 for h, w in sizes)
    assert sizes[1] == (56, 56)
    assert [block.grid_thw[0] for block in inputs.blocks] == [1, 1]
    assert inputs.blocks[0].offset < inputs.blocks[1].offset


def test_vit_chunks_cover_the_block(tiny_builder):
    frames = np.random.default_rng(2).integers(0, 256, (6, 56, 56, 3), dtype=np.uint8)
    (block,) = tiny_builder.build("x", video=frames).blocks
    chunks = block.vit_chunks(max_patches=2 * 16)
    assert [c.layout.grid for c in chunks] == [(2, 4, 4), (1, 4, 4)]
    assert [c.token_start for c in chunks] == [0, 8]
    whole = block.layout.to_vit_order(block.pixel_values)
    np.testing.assert_array_equal(np.concatenate([c.pixel_values for c in chunks]), whole)
    assert chunks[0].position_ids.dtype == np.int32 and chunks[0].reverse_index.dtype == np.int32
    assert chunks[0].full_mask(pad_to=64).shape == (1, 1, 64, 64)


def test_follow_up_continues_positions(tiny_builder):
    first = tiny_builder.build("Describe.", video=np.zeros((2, 56, 56, 3), np.uint8))
    said = tiny_builder.tokenizer.encode("A car.")
    second = tiny_builder.follow_up(first, said + [tiny_builder.tokens.im_end], "And then?")
    n, k = len(first.input_ids), len(said)
    assert second.cached_tokens == n + k  # the stop token is not part of the history
    assert np.array_equal(second.input_ids[:n], first.input_ids)
    assert second.input_ids[n : n + k].tolist() == said
    assert second.position_ids[:, n].tolist() == [first.next_position] * 3
    tail = tiny_builder.tokenizer.encode(continuation("And then?"))
    assert second.input_ids[n + k :].tolist() == tail
    assert second.blocks == first.blocks and second.next_position == second.position_ids.max() + 1


def test_prompt_budget(tiny_builder):
    used = tiny_builder.prompt_tokens("Describe.")
    assert tiny_builder.visual_budget(512, "Describe.", 64) == 512 - used - 64
    with pytest.raises(InputTooLarge, match="no|nothing is left"):
        tiny_builder.visual_budget(used + 10, "Describe.", 10)
    with pytest.raises(InputTooLarge, match="do not fit"):
        check_seq_length(100, 20, 20, visual_tokens=61)


def test_request_longer_than_seq_length_is_refused(tiny_model_dir):
    builder = InputBuilder.from_pretrained(tiny_model_dir, seq_length=64)
    with pytest.raises(InputTooLarge, match="sequence length 64"):
        builder.build("Describe.", video=np.zeros((8, 56, 84, 3), np.uint8), answer_reserve=16)


def test_bad_frames(tiny_builder):
    with pytest.raises(ModelError, match="multiples of 28"):
        tiny_builder.build("x", video=np.zeros((2, 50, 56, 3), np.uint8))
    with pytest.raises(InputTooLarge, match="max_pixels"):
        tiny_builder.build("x", video=np.zeros((2, 224, 224, 3), np.uint8))
    with pytest.raises(ModelError, match="uint8"):
        tiny_builder.build("x", video=np.zeros((2, 56, 56, 3), np.float32))
    with pytest.raises(ModelError, match="special tokens"):
        tiny_builder.build("look: <|video_pad|>", video=np.zeros((2, 56, 56, 3), np.uint8))


class _Sampling:
    def __init__(self, max_pixels, factor=0.25, min_pixels=784, token_pixels=28):
        self.max_pixels, self.video_area_factor, self.min_pixels = max_pixels, factor, min_pixels
        self.video_pixels = int(max_pixels * factor)
        self.token_pixels = token_pixels


class _Plan:
    def __init__(self, frames, per_pair):
        self.frames, self.tokens_per_pair = frames, per_pair


def test_sampler_and_segmenter_must_agree_with_the_model(tiny_builder):
    vision = tiny_builder.vision
    check_sampling(vision, _Sampling(112 * 224))
    with pytest.raises(ConfigError, match="video max_pixels"):
        check_sampling(vision, _Sampling(672 * 896))
    check_plan(vision, _Plan(20, 6), 56, 84)
    with pytest.raises(ModelError, match="multiples of 28"):
        check_plan(vision, _Plan(20, 6), 60, 84)
    with pytest.raises(ModelError, match="tokens per frame pair"):
        check_plan(vision, _Plan(20, 5), 56, 84)
    with pytest.raises(ConfigError, match="token size"):  # frames sized for Qwen3-VL's 32 px tokens
        check_sampling(vision, _Sampling(112 * 224, token_pixels=32))


def test_missing_files_and_bad_config(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="does not exist"):
        InputBuilder.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelError, match="no tokenizer.json"):
        InputBuilder.from_pretrained(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["video_token_id"] = 5
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="disagrees with its tokenizer"):
        InputBuilder.from_pretrained(broken)


def test_tokenizer_folder_alone_is_enough(tmp_path, tiny_model_dir, tiny_builder):
    shutil.copy(tiny_model_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    bare = InputBuilder.from_pretrained(tmp_path)
    assert bare.tokens == tiny_builder.tokens
    frames = np.zeros((2, 56, 56, 3), np.uint8)
    assert np.array_equal(bare.build("x", video=frames).input_ids, tiny_builder.build("x", video=frames).input_ids)


def test_qwen_package_does_not_import_torch(tiny_model_dir):
    code = (
        "import sys, numpy as np\n"
        "from streamproc.qwen import InputBuilder, ModelInputs\n"
        f"b = InputBuilder.from_pretrained({str(tiny_model_dir)!r})\n"
        "i = b.build('x', video=np.zeros((3, 56, 84, 3), np.uint8), images=[np.zeros((70, 90, 3), np.uint8)])\n"
        "i.blocks[0].vit_chunks(64)\n"
        "heavy = [m for m in ('torch', 'transformers', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
