"""Qwen3-VL inputs and the transformers backend against transformers 4.57 itself (tiny checkpoint).

Compared: input ids (identical, per-frame-pair timestamps included), pixel rows (|diff| <= 1e-5),
grids, position ids and rope delta vs get_rope_index (identical), the position-grid taps vs
fast_pos_embed_interpolate (float32 rounding of the grid positions: 1e-5), rotary ids vs rot_pos_emb, the ViT run the TPU way (our rows, ids,
taps and masks, chunk by chunk) vs visual() with its DeepStack maps, and greedy tokens of our
decode loop (DeepStack at the visual positions) vs generate() on the processor's inputs.
Frames and images are at sizes the processor keeps (multiples of 32 within its limits).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.hf

PROMPT = "Describe what happens."


@pytest.fixture(scope="module")
def processor(tiny_qwen3_dir):
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoProcessor.from_pretrained(str(tiny_qwen3_dir))


@pytest.fixture(scope="module")
def hf3(tiny_qwen3_dir):
    from streamproc.backends.hf import HfBackend
    from streamproc.config.model import HfBackendConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    backend = HfBackend(HfBackendConfig(model=str(tiny_qwen3_dir), device="cpu", dtype="float32"))
    yield backend
    backend.close()


def frames(seed: int, count: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def reference(processor, content, images=None, video=None, fps=1.0, system=None):
    """The processor's inputs for pre-sampled frames at `fps` (metadata: frames 0..n-1)."""
    from transformers.video_utils import VideoMetadata

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    kwargs = {}
    if video is not None:
        meta = VideoMetadata(total_num_frames=len(video), fps=fps, frames_indices=list(range(len(video))))
        kwargs = {"videos": [video], "video_metadata": [meta], "do_sample_frames": False}
    return processor(text=[text], images=images, return_tensors="pt", **kwargs)


def assert_same(model, ours, ref):
    assert ref["input_ids"][0].tolist() == ours.input_ids.tolist()
    position_ids, delta = model.model.get_rope_index(
        ref["input_ids"], ref.get("image_grid_thw"), ref.get("video_grid_thw"), attention_mask=ref["attention_mask"]
    )
    np.testing.assert_array_equal(position_ids[:, 0].numpy(), ours.position_ids)
    assert int(delta) == ours.rope_delta
    for kind, values, grids in (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw")):
        if grids in ref:
            np.testing.assert_array_equal(ref[grids].numpy(), ours.grid_thw(kind))
            np.testing.assert_allclose(ours.pixel_values(kind), ref[values].numpy(), rtol=0, atol=1e-5)


VIDEOS = [(2, 64, 64, 1.0), (4, 64, 96, 1.0), (5, 96, 64, 2.0), (8, 64, 64, 0.5)]


@pytest.mark.parametrize("count,height,width,fps", VIDEOS)
def test_video_ids_timestamps_and_positions(processor, tiny_qwen3_builder, hf3, count, height, width, fps):
    video = frames(count, count, height, width)
    ours = tiny_qwen3_builder.build(PROMPT, video=video, fps=fps, system="You watch cameras.")
    ref = reference(processor, [{"type": "video"}, {"type": "text", "text": PROMPT}], video=video, fps=fps,
                    system="You watch cameras.")
    assert_same(hf3.model, ours, ref)
    assert "<0.5 seconds>" in ours.prompt if fps == 1.0 else True
    (block,) = ours.blocks
    assert len(block.runs) == (count + 1) // 2  # one vision block per frame pair


def test_images_then_video(processor, tiny_qwen3_builder, hf3):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (96, 64, 3), dtype=np.uint8), rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)]
    video = frames(4, 4, 64, 64)
    content = [{"type": "image"}, {"type": "image"}, {"type": "video"}, {"type": "text", "text": PROMPT}]
    ours = tiny_qwen3_builder.build(PROMPT, images=images, video=video, fps=1.0)
    assert_same(hf3.model, ours, reference(processor, content, images=images, video=video))


def test_position_taps_and_rotary_ids(tiny_qwen3_builder, hf3):
    visual = hf3.model.model.visual
    weight = visual.pos_embed.weight.detach().numpy()
    table = visual.rotary_pos_emb(16)
    for grid in [(1, 4, 6), (2, 8, 4), (1, 16, 16), (3, 6, 10)]:
        layout = tiny_qwen3_builder.family.vit_layout(tiny_qwen3_builder.vision, *grid)
        taps = layout.interpolation_inputs()
        ours = (weight[taps.pos_idx] * taps.pos_weight[..., None]).sum(axis=1)
        expected = visual.fast_pos_embed_interpolate(torch.tensor([grid])).detach().numpy()
        # torch.linspace and numpy's differ in the last bit for some sizes: weights within 1 ulp.
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
        pos = torch.from_numpy(layout.rotary_pos).long()
        rotary = torch.cat([table[pos[:, 0]], table[pos[:, 1]]], dim=-1)
        torch.testing.assert_close(rotary, visual.rot_pos_emb(torch.tensor([grid])), rtol=0, atol=0)


def vit_the_tpu_way(visual, chunk):
    """visual() recomputed from a VitChunk's arrays as the bmodel's vit takes them: rows, (h, w)
    ids, the position-grid taps and an additive block mask (full attention per frame pair)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    x = visual.patch_embed(torch.from_numpy(chunk.pixel_values))
    taps = chunk.interpolation
    x = x + (visual.pos_embed.weight[torch.from_numpy(taps.pos_idx).long()] * torch.from_numpy(taps.pos_weight)[..., None]).sum(1)
    table = visual.rotary_pos_emb(int(chunk.position_ids.max()) + 1)
    pos = torch.from_numpy(chunk.position_ids).long()
    rotary = torch.cat([table[pos[:, 0]], table[pos[:, 1]]], dim=-1)
    emb = torch.cat([rotary, rotary], dim=-1)
    cos, sin, mask = emb.cos(), emb.sin(), torch.from_numpy(chunk.full_mask()[0, 0])
    deepstack = []
    for index, block in enumerate(visual.blocks):
        attn = block.attn
        h = block.norm1(x)
        q, k, v = attn.qkv(h).reshape(len(h), 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        scores = torch.einsum("qhd,khd->hqk", q, k) * attn.scaling + mask
        x = x + attn.proj(torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(len(h), -1))
        x = x + block.mlp(block.norm2(x))
        if index in visual.deepstack_visual_indexes:
            deepstack.append(visual.deepstack_merger_list[visual.deepstack_visual_indexes.index(index)](x))
    return visual.merger(x), deepstack


@pytest.mark.parametrize("count,size,max_patches", [(1, (64, 96), None), (6, (64, 64), 2 * 16), (4, (96, 64), None)])
def test_vit_fed_like_the_tpu_matches_transformers(tiny_qwen3_builder, hf3, count, size, max_patches):
    (block,) = tiny_qwen3_builder.build("x", video=frames(40, count, *size)).blocks
    visual = hf3.model.model.visual
    with torch.no_grad():
        merged, deepstack = visual(torch.from_numpy(block.pixel_values), grid_thw=torch.tensor([block.grid_thw]))
        runs = [vit_the_tpu_way(visual, c) for c in block.vit_chunks(max_patches)]
    torch.testing.assert_close(torch.cat([r[0] for r in runs]), merged, rtol=1e-4, atol=1e-4)
    for layer, expected in enumerate(deepstack):
        torch.testing.assert_close(torch.cat([r[1][layer] for r in runs]), expected, rtol=1e-4, atol=1e-4)


CASES = {
    "text": dict(content=[{"type": "text", "text": PROMPT}]),
    "image": dict(images=[(96, 64)]),
    "two images": dict(images=[(64, 96), (64, 64)]),
    "video": dict(video=(4, 64, 64)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_tokens_match_generate(processor, tiny_qwen3_builder, hf3, case):
    spec = CASES[case]
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in spec.get("images", [])] or None
    video = frames(8, *spec["video"]) if "video" in spec else None
    content = [{"type": "image"}] * len(images or []) + ([{"type": "video"}] if video is not None else [])
    content.append({"type": "text", "text": PROMPT})
    ref = reference(processor, content, images=images, video=video)
    with torch.no_grad():
        out = hf3.model.generate(**ref, max_new_tokens=10, do_sample=False)
    expected = out[0, ref["input_ids"].shape[1]:].tolist()
    from streamproc.backends import GenerationParams

    result = hf3.describe(tiny_qwen3_builder.build(PROMPT, images=images, video=video), GenerationParams(max_new_tokens=10))
    assert list(result.token_ids) == expected[: len(result.token_ids)] and len(result.token_ids) == len(expected)
    assert result.visual_tokens > 0 or case == "text"
