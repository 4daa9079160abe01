"""Parity of streamproc.qwen with transformers 4.57's Qwen2.5-VL processor and model (tiny model).

Compared: input ids (identical), pixel rows (float32, |diff| <= 1e-5; the processor fuses rescale
and normalise in float32, we use an exact table, so they differ by float rounding only),
grid_thw and second_per_grid_ts (identical), position ids and rope delta vs get_rope_index
(identical), window index and cu_window_seqlens vs get_window_index (identical), rotary
embeddings from our (h, w) ids vs rot_pos_emb (identical), and the ViT run the TPU way (our
window-ordered rows, position ids, additive masks, reverse index, per chunk) vs visual() (1e-4).
Frames and images are at their smart_resize size, so no resampling is involved.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.hf, pytest.mark.cpu_bound]

PROMPT = "Describe what happens."


@pytest.fixture(scope="module")
def hf_model(tiny_hf_backend):
    return tiny_hf_backend.model


def random_frames(rng, count, max_pixels=112 * 224):
    while True:
        h, w = 28 * rng.integers(1, 9, size=2)
        if h * w <= max_pixels:
            return rng.integers(0, 256, (count, h, w, 3), dtype=np.uint8)


def reference(processor, content, images=None, videos=None, fps=None, system=None, history=()):
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages += [*history, {"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    kwargs = {"fps": fps} if fps is not None else {}
    return processor(text=[text], images=images, videos=videos, return_tensors="pt", **kwargs)


def rope_reference(model, ref):
    spg = ref.get("second_per_grid_ts")
    return model.model.get_rope_index(
        ref["input_ids"],
        ref.get("image_grid_thw"),
        ref.get("video_grid_thw"),
        second_per_grid_ts=None if spg is None else torch.as_tensor(spg),
        attention_mask=ref["attention_mask"],
    )


def assert_same(model, ours, ref):
    assert ref["input_ids"][0].tolist() == ours.input_ids.tolist()
    position_ids, delta = rope_reference(model, ref)
    np.testing.assert_array_equal(position_ids[:, 0].numpy(), ours.position_ids)
    assert int(delta) == ours.rope_delta
    fields = (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw"))
    for kind, values, grids in fields:
        if grids in ref:
            np.testing.assert_array_equal(ref[grids].numpy(), ours.grid_thw(kind))
            np.testing.assert_allclose(ours.pixel_values(kind), ref[values].numpy(), rtol=0, atol=1e-5)
        else:
            assert len(ours.grid_thw(kind)) == 0
    if "second_per_grid_ts" in ref:
        assert [b.second_per_grid for b in ours.blocks if b.kind == "video"] == list(ref["second_per_grid_ts"])
    visual = model.model.visual
    for block in ours.blocks:
        grid = torch.tensor([block.grid_thw])
        window, cu_window = visual.get_window_index(grid)
        np.testing.assert_array_equal(window.numpy(), block.window_index)
        cu_window = torch.unique_consecutive(torch.tensor(cu_window)).numpy()
        np.testing.assert_array_equal(cu_window, block.cu_window_seqlens)


# (frame count, fps): odd counts repeat the last frame; sizes are drawn per seed.
VIDEOS = [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 1.0), (7, 0.5), (6, 1.0), (8, 2.0)]
CASES = [(frames, fps, seed) for seed, (frames, fps) in enumerate(VIDEOS)]
VIDEO_PROMPT = [{"type": "video"}, {"type": "text", "text": PROMPT}]


@pytest.mark.parametrize("frames,fps,seed", CASES)
def test_video_parity(tiny_processor, tiny_builder, hf_model, frames, fps, seed):
    video = random_frames(np.random.default_rng(seed), frames)
    ours = tiny_builder.build(PROMPT, video=video, fps=fps, system="You watch cameras.")
    ref = reference(tiny_processor, VIDEO_PROMPT, videos=[video], fps=fps, system="You watch cameras.")
    assert_same(hf_model, ours, ref)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_single_image_parity(tiny_processor, tiny_builder, hf_model, seed):
    (image,) = random_frames(np.random.default_rng(seed), 1)
    ours = tiny_builder.build("What is this?", images=[image], system=None)
    ref = reference(tiny_processor, [{"type": "image"}, {"type": "text", "text": "What is this?"}], images=[image])
    assert_same(hf_model, ours, ref)


def test_slow_image_processor_agrees(tiny_model_dir, tiny_builder):
    from transformers import Qwen2VLImageProcessor

    slow = Qwen2VLImageProcessor.from_pretrained(str(tiny_model_dir))  # numpy + PIL, not torchvision
    (image,) = random_frames(np.random.default_rng(5), 1)
    ref = slow(images=[image], return_tensors="np")
    ours = tiny_builder.build("x", images=[image])
    np.testing.assert_array_equal(ref["image_grid_thw"], ours.grid_thw("image"))
    np.testing.assert_allclose(ours.pixel_values("image"), ref["pixel_values"], rtol=0, atol=1e-5)


def test_multi_image_and_video_parity(tiny_processor, tiny_builder, hf_model):
    rng = np.random.default_rng(20)
    images = [random_frames(rng, 1)[0] for _ in range(3)]
    video = random_frames(rng, 5)
    content = [{"type": "image"}] * 3 + [{"type": "video"}, {"type": "text", "text": PROMPT}]
    ref = reference(tiny_processor, content, images=images, videos=[video], fps=1.0)
    ours = tiny_builder.build(PROMPT, images=images, video=video, fps=1.0)
    assert [b.kind for b in ours.blocks] == ["image"] * 3 + ["video"]
    assert_same(hf_model, ours, ref)


def test_follow_up_turn_parity(tiny_processor, tiny_builder, hf_model):
    video = random_frames(np.random.default_rng(30), 4)
    first = tiny_builder.build(PROMPT, video=video, fps=1.0)
    answer = "A red square moves to the right."
    second = tiny_builder.follow_up(first, tiny_builder.tokenizer.encode(answer), "Is there a person?")
    history = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]},
        {"role": "assistant", "content": answer},
    ]
    question = [{"type": "text", "text": "Is there a person?"}]
    ref = reference(tiny_processor, question, videos=[video], fps=1.0, history=history)
    assert_same(hf_model, second, ref)


def test_rotary_ids_match_rot_pos_emb(hf_model):
    from streamproc.qwen.vit_layout import WindowLayout as VitLayout, rotary_positions

    visual = hf_model.model.visual
    for grid in [(1, 4, 6), (3, 8, 16), (2, 16, 8)]:
        expected = visual.rot_pos_emb(torch.tensor([grid]))  # processor (2x2-block-major) order
        table = visual.rotary_pos_emb(max(grid[1:]))

        def embed(ids):
            ids = torch.from_numpy(ids).long()
            return torch.cat([table[ids[:, 0]], table[ids[:, 1]]], dim=-1)

        torch.testing.assert_close(embed(rotary_positions(*grid)), expected, rtol=0, atol=0)
        layout = VitLayout.for_grid(*grid)
        windowed = expected.reshape(-1, 4, expected.shape[-1])[torch.from_numpy(layout.window_index)]
        torch.testing.assert_close(embed(layout.rotary_pos), windowed.reshape(expected.shape), rtol=0, atol=0)


def vit_the_tpu_way(visual, chunk, max_grid):
    """visual() recomputed from a VitChunk's arrays: window-ordered rows and (h, w) ids, additive
    masks (full for fullatt_block_indexes, window otherwise) and the reverse index."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    x = visual.patch_embed(torch.from_numpy(chunk.pixel_values))
    table = visual.rotary_pos_emb(max_grid)
    pos = torch.from_numpy(chunk.position_ids).long()
    rotary = torch.cat([table[pos[:, 0]], table[pos[:, 1]]], dim=-1)
    emb = torch.cat([rotary, rotary], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    masks = {True: torch.from_numpy(chunk.full_mask()[0, 0]), False: torch.from_numpy(chunk.window_mask()[0, 0])}
    for index, block in enumerate(visual.blocks):
        attn = block.attn
        h = block.norm1(x)
        q, k, v = attn.qkv(h).reshape(len(h), 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        scores = torch.einsum("qhd,khd->hqk", q, k) * attn.scaling + masks[index in visual.fullatt_block_indexes]
        out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(len(h), -1)
        x = x + attn.proj(out)
        x = x + block.mlp(block.norm2(x))
    return visual.merger(x)[torch.from_numpy(chunk.reverse_index).long()]


# Frames of 140x168 and 112x224 px span several 112 px windows; max_patches cuts into chunks.
VIT_CASES = [(1, (56, 84), None), (6, (168, 140), 2 * 120), (2, (112, 224), None), (4, (140, 168), None)]


@pytest.mark.parametrize("frames,size,max_patches", VIT_CASES)
def test_vit_fed_like_the_tpu_matches_transformers(tiny_builder, hf_model, frames, size, max_patches):
    video = np.random.default_rng(40).integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    (block,) = tiny_builder.build("x", video=video).blocks
    visual = hf_model.model.visual
    with torch.no_grad():
        expected = visual(torch.from_numpy(block.pixel_values), grid_thw=torch.tensor([block.grid_thw]))
        chunks = block.vit_chunks(max_patches)
        ours = torch.cat([vit_the_tpu_way(visual, c, max(block.grid_thw[1:])) for c in chunks])
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_fractional_fps_differs_from_transformers_only_on_the_time_axis(tiny_processor, tiny_builder, hf_model):
    """At 3 fps, transformers 4.57 truncates second_per_grid (2/3) to 0; we keep the fraction."""
    video = random_frames(np.random.default_rng(50), 6)
    ours = tiny_builder.build(PROMPT, video=video, fps=3.0)
    ref = reference(tiny_processor, VIDEO_PROMPT, videos=[video], fps=3.0)
    position_ids, _ = rope_reference(hf_model, ref)
    theirs = position_ids[:, 0].numpy()
    (block,) = ours.blocks
    span = slice(block.offset, block.offset + block.tokens)
    mine = ours.position_ids
    np.testing.assert_array_equal(theirs[1:, span] - theirs[1, block.offset], mine[1:, span] - mine[1, block.offset])
    assert len(set(theirs[0, span])) == 1  # flattened by the integer cast
    assert sorted(set(ours.position_ids[0, span] - ours.position_ids[0, block.offset])) == [0, 1, 2]
