"""The tiny checkpoints' architecture, per family: config.json, weight shapes, processor files.

Shapes follow what TPU-MLIR 1.30.2's converters accept: text head_dim 128 (mrope_section
[16, 24, 24] for Qwen2.5-VL, [24, 20, 20] interleaved for Qwen3-VL); Qwen2.5-VL's vision head_dim
80; Qwen3-VL's 64, with DeepStack on two of its four ViT layers and a 16x16 position grid.
Pixel limits are small (32 image tokens) to keep tests fast. The writer is tiny.py.
"""
from __future__ import annotations

from typing import Iterator, Mapping

from .family import TinySpec

# Qwen2.5-VL-*-Instruct's chat_template.json, verbatim.
QWEN2_5_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
# Renders conversations (system, user turns with images, videos and text, assistant turns) as
# Qwen3-VL-*-Instruct's template does; it adds no system turn of its own. Tools are left out.
QWEN3_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or "
    "'image' in content or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>{% elif "
    "content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' "
    "in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Shapes = Iterator[tuple[str, tuple[int, ...], str]]


def _token_ids(ids: Mapping[str, int]) -> dict:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _processor(proc_class: str, image_type: str, video_type: str, vision: dict, mean, std) -> tuple[dict, dict]:
    common = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": list(mean), "image_std": list(std), "rescale_factor": 1 / 255,
        "patch_size": vision["patch_size"], "temporal_patch_size": vision["temporal_patch_size"],
        "merge_size": vision["spatial_merge_size"], "processor_class": proc_class, "resample": 3,  # bicubic
    }
    return {**common, "image_processor_type": image_type}, {**common, "video_processor_type": video_type,
                                                            "do_sample_frames": False}  # streamproc samples itself


# -- Qwen2.5-VL ----------------------------------------------------------------------------------

Q25_TEXT = {
    "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,  # head_dim 128
    "num_key_value_heads": 1, "intermediate_size": 512, "vocab_size": 2048, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False, "use_sliding_window": False,
    "sliding_window": 4096, "max_window_layers": 2, "attention_dropout": 0.0, "initializer_range": 0.02,
}
Q25_VISION = {
    "depth": 4, "hidden_size": 160, "num_heads": 2,  # head_dim 80, as in the real model (the converter requires it)
    "intermediate_size": 320, "out_hidden_size": 256, "fullatt_block_indexes": [1, 3], "window_size": 112,
    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
    "in_chans": 3,  # the name TPU-MLIR's converter reads
    "hidden_act": "silu", "tokens_per_second": 2,
}


def _q25_shapes() -> Shapes:
    v, t = Q25_VISION, Q25_TEXT
    vh, vi, ps, tps = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["temporal_patch_size"]
    yield "visual.patch_embed.proj.weight", (vh, 3, tps, ps, ps), "linear"
    for i in range(v["depth"]):
        p = f"visual.blocks.{i}."
        yield p + "norm1.weight", (vh,), "norm"
        yield p + "norm2.weight", (vh,), "norm"
        yield from _linear(p + "attn.qkv", 3 * vh, vh)
        yield from _linear(p + "attn.proj", vh, vh)
        for name, (rows, cols) in (("gate_proj", (vi, vh)), ("up_proj", (vi, vh)), ("down_proj", (vh, vi))):
            yield from _linear(p + f"mlp.{name}", rows, cols)
    merged = vh * v["spatial_merge_size"] ** 2
    yield "visual.merger.ln_q.weight", (vh,), "norm"
    yield from _linear("visual.merger.mlp.0", merged, merged)
    yield from _linear("visual.merger.mlp.2", v["out_hidden_size"], merged)
    h, heads = t["hidden_size"], t["num_attention_heads"]
    kv = h // heads * t["num_key_value_heads"]
    yield "model.embed_tokens.weight", (t["vocab_size"], h), "embedding"
    for i in range(t["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,), "norm"
        yield p + "post_attention_layernorm.weight", (h,), "norm"
        for name, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            yield from _linear(p + f"self_attn.{name}", rows, h)
        yield p + "self_attn.o_proj.weight", (h, h), "linear"
        yield from _mlp(p, h, t["intermediate_size"])
    yield "model.norm.weight", (h,), "norm"
    yield "lm_head.weight", (t["vocab_size"], h), "head"


def qwen2_5_tiny(ids: Mapping[str, int], mean, std) -> TinySpec:
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", **Q25_TEXT,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        **_token_ids(ids), "vision_token_id": ids["<|vision_pad|>"], "vision_config": dict(Q25_VISION),
        "torch_dtype": "bfloat16", "use_cache": True,
    }
    image, video = _processor("Qwen2_5_VLProcessor", "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", Q25_VISION, mean, std)
    image.update(min_pixels=56 * 56, max_pixels=112 * 224, size={"shortest_edge": 56 * 56, "longest_edge": 112 * 224})
    video.update(min_pixels=28 * 28, max_pixels=112 * 224, size={"shortest_edge": 28 * 28, "longest_edge": 112 * 224})
    return TinySpec(config, tuple(_q25_shapes()), image, video, QWEN2_5_TEMPLATE)


# -- Qwen3-VL ------------------------------------------------------------------------------------

Q3_TEXT = {
    "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 128, "intermediate_size": 512, "vocab_size": 2048, "rope_theta": 5000000.0,
    "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True},
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False,
    "attention_dropout": 0.0, "initializer_range": 0.02, "model_type": "qwen3_vl_text", "dtype": "bfloat16",
}
Q3_VISION = {
    "depth": 4, "hidden_size": 128, "num_heads": 2,  # head_dim 64, as in the real model
    "intermediate_size": 256, "out_hidden_size": 256, "num_position_embeddings": 256,  # a 16x16 grid
    "deepstack_visual_indexes": [1, 2], "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "in_channels": 3, "hidden_act": "gelu_pytorch_tanh", "model_type": "qwen3_vl", "initializer_range": 0.02,
}


def _merger(prefix: str, norm_width: int, merged: int, out: int) -> Shapes:
    yield prefix + "norm.weight", (norm_width,), "norm"
    yield prefix + "norm.bias", (norm_width,), "bias"
    yield from _linear(prefix + "linear_fc1", merged, merged)
    yield from _linear(prefix + "linear_fc2", out, merged)


def _q3_shapes() -> Shapes:
    v, t = Q3_VISION, Q3_TEXT
    vh, vi, ps, tps = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["temporal_patch_size"]
    yield "model.visual.patch_embed.proj.weight", (vh, 3, tps, ps, ps), "linear"
    yield "model.visual.patch_embed.proj.bias", (vh,), "bias"
    yield "model.visual.pos_embed.weight", (v["num_position_embeddings"], vh), "embedding"
    for i in range(v["depth"]):
        p = f"model.visual.blocks.{i}."
        for norm in ("norm1", "norm2"):
            yield p + f"{norm}.weight", (vh,), "norm"
            yield p + f"{norm}.bias", (vh,), "bias"
        yield from _linear(p + "attn.qkv", 3 * vh, vh)
        yield from _linear(p + "attn.proj", vh, vh)
        yield from _linear(p + "mlp.linear_fc1", vi, vh)
        yield from _linear(p + "mlp.linear_fc2", vh, vi)
    merged = vh * v["spatial_merge_size"] ** 2
    yield from _merger("model.visual.merger.", vh, merged, v["out_hidden_size"])
    for j in range(len(v["deepstack_visual_indexes"])):
        yield from _merger(f"model.visual.deepstack_merger_list.{j}.", merged, merged, v["out_hidden_size"])
    h, hd = t["hidden_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    yield "model.language_model.embed_tokens.weight", (t["vocab_size"], h), "embedding"
    for i in range(t["num_hidden_layers"]):
        p = f"model.language_model.layers.{i}."
        yield p + "input_layernorm.weight", (h,), "norm"
        yield p + "post_attention_layernorm.weight", (h,), "norm"
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            yield p + f"self_attn.{name}.weight", (rows, h), "linear"
        yield p + "self_attn.o_proj.weight", (h, q), "linear"
        yield p + "self_attn.q_norm.weight", (hd,), "norm"
        yield p + "self_attn.k_norm.weight", (hd,), "norm"
        yield from _mlp(p, h, t["intermediate_size"])
    yield "model.language_model.norm.weight", (h,), "norm"
    yield "lm_head.weight", (t["vocab_size"], h), "head"


def qwen3_tiny(ids: Mapping[str, int], half) -> TinySpec:
    text = {**Q3_TEXT, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "tie_word_embeddings": False}
    config = {
        "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl", "text_config": text,
        "vision_config": dict(Q3_VISION), **_token_ids(ids), "tie_word_embeddings": False,
    }
    image, video = _processor("Qwen3VLProcessor", "Qwen2VLImageProcessorFast", "Qwen3VLVideoProcessor", Q3_VISION, half, half)
    image["size"] = {"shortest_edge": 32 * 32, "longest_edge": 128 * 256}  # 32 tokens
    # Over all of a video's frames: up to 16 frames of 128x256.
    video.update(size={"shortest_edge": 4 * 32 * 32, "longest_edge": 16 * 128 * 256}, fps=1, min_frames=2, max_frames=64)
    return TinySpec(config, tuple(_q3_shapes()), image, video, QWEN3_TEMPLATE)


# -- shared pieces -------------------------------------------------------------------------------


def _linear(prefix: str, rows: int, cols: int) -> Shapes:
    yield prefix + ".weight", (rows, cols), "linear"
    yield prefix + ".bias", (rows,), "bias"


def _mlp(prefix: str, hidden: int, inter: int) -> Shapes:
    yield prefix + "mlp.gate_proj.weight", (inter, hidden), "linear"
    yield prefix + "mlp.up_proj.weight", (inter, hidden), "linear"
    yield prefix + "mlp.down_proj.weight", (hidden, inter), "linear"
