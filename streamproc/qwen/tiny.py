"""`make_tiny_model(dir)`: a seeded, random-weight Qwen2.5-VL of ~4 M parameters for tests and demos.

Written with numpy, tokenizers and json only (no torch), byte for byte the same on every run:
- model.safetensors: bf16 weights in the ORIGINAL checkpoint key layout (visual.*, model.layers.*,
  model.embed_tokens, model.norm, lm_head), which transformers 4.57 loads and TPU-MLIR converts;
- config.json in the original flat layout (text keys at the top, vision_config with in_chans),
  generation_config.json;
- a byte-level BPE tokenizer (Qwen2's pre-tokenizer) trained on streamproc.qwen.tiny_corpus, with
  Qwen's special tokens at 2030-2043 (Qwen's own offsets from <|endoftext|>), tokenizer_config.json
  and chat_template.json with Qwen2.5-VL's published template;
- preprocessor_config.json / video_preprocessor_config.json for Qwen2_5_VLProcessor.

Shapes follow what TPU-MLIR's converter accepts: vision head_dim 80, text head_dim 128 with
mrope_section [16, 24, 24]. Weights are scaled (not transformers' 0.02 init) so that greedy output
depends on the input instead of collapsing to one repeated token.
"""
from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UsageError

log = logging.getLogger(__name__)

# Same offsets from <|endoftext|> as Qwen2.5's tokenizer (151643 + k -> 2030 + k).
SPECIAL_TOKENS = {
    "<|endoftext|>": 2030,
    "<|im_start|>": 2031,
    "<|im_end|>": 2032,
    "<|object_ref_start|>": 2033,
    "<|object_ref_end|>": 2034,
    "<|box_start|>": 2035,
    "<|box_end|>": 2036,
    "<|quad_start|>": 2037,
    "<|quad_end|>": 2038,
    "<|vision_start|>": 2039,
    "<|vision_end|>": 2040,
    "<|vision_pad|>": 2041,
    "<|image_pad|>": 2042,
    "<|video_pad|>": 2043,
}
BPE_VOCAB = 2030  # byte alphabet + merges, below the special tokens

TEXT = {
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # head_dim 128, which mrope_section [16, 24, 24] needs
    "num_key_value_heads": 1,
    "intermediate_size": 512,
    "vocab_size": 2048,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 2,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
}
VISION = {
    "depth": 4,
    "hidden_size": 160,
    "num_heads": 2,  # head_dim 80, as in the real model (the converter requires it)
    "intermediate_size": 320,
    "out_hidden_size": 256,
    "fullatt_block_indexes": [1, 3],
    "window_size": 112,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "in_channels": 3,
    "in_chans": 3,  # the name TPU-MLIR's converter reads
    "hidden_act": "silu",
    "tokens_per_second": 2,
}
IMAGE_MIN_PIXELS = 56 * 56
IMAGE_MAX_PIXELS = 112 * 224  # 32 tokens: keeps tests fast
VIDEO_MIN_PIXELS = 28 * 28
VIDEO_MAX_PIXELS = 112 * 224

QWEN_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5-VL-*-Instruct's chat_template.json, verbatim.
CHAT_TEMPLATE = (
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
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)


def weight_shapes() -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) of every weight in the original key layout; kind picks the init."""
    v, t = VISION, TEXT
    vh, vi, ps, tps = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["temporal_patch_size"]
    yield "visual.patch_embed.proj.weight", (vh, 3, tps, ps, ps), "linear"
    for i in range(v["depth"]):
        p = f"visual.blocks.{i}."
        yield p + "norm1.weight", (vh,), "norm"
        yield p + "norm2.weight", (vh,), "norm"
        yield p + "attn.qkv.weight", (3 * vh, vh), "linear"
        yield p + "attn.qkv.bias", (3 * vh,), "bias"
        yield p + "attn.proj.weight", (vh, vh), "linear"
        yield p + "attn.proj.bias", (vh,), "bias"
        for name, (rows, cols) in (("gate_proj", (vi, vh)), ("up_proj", (vi, vh)), ("down_proj", (vh, vi))):
            yield p + f"mlp.{name}.weight", (rows, cols), "linear"
            yield p + f"mlp.{name}.bias", (rows,), "bias"
    merged = vh * v["spatial_merge_size"] ** 2
    yield "visual.merger.ln_q.weight", (vh,), "norm"
    yield "visual.merger.mlp.0.weight", (merged, merged), "linear"
    yield "visual.merger.mlp.0.bias", (merged,), "bias"
    yield "visual.merger.mlp.2.weight", (v["out_hidden_size"], merged), "linear"
    yield "visual.merger.mlp.2.bias", (v["out_hidden_size"],), "bias"
    h, inter, vocab = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
    kv = h // t["num_attention_heads"] * t["num_key_value_heads"]
    yield "model.embed_tokens.weight", (vocab, h), "embedding"
    for i in range(t["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,), "norm"
        yield p + "post_attention_layernorm.weight", (h,), "norm"
        for name, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            yield p + f"self_attn.{name}.weight", (rows, h), "linear"
            yield p + f"self_attn.{name}.bias", (rows,), "bias"
        yield p + "self_attn.o_proj.weight", (h, h), "linear"
        yield p + "mlp.gate_proj.weight", (inter, h), "linear"
        yield p + "mlp.up_proj.weight", (inter, h), "linear"
        yield p + "mlp.down_proj.weight", (h, inter), "linear"
    yield "model.norm.weight", (h,), "norm"
    yield "lm_head.weight", (vocab, h), "head"


def random_weights(seed: int) -> dict[str, np.ndarray]:
    """float32 weights: linears ~ N(0, 1/fan_in) so activations keep their scale through the
    layers, embeddings N(0, 1), a sharper lm_head (peaked, input-dependent logits) whose special
    token rows are damped, norms near 1, small biases."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape, kind in weight_shapes():
        if kind == "norm":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif kind == "bias":
            value = 0.02 * rng.standard_normal(shape)
        elif kind == "embedding":
            value = rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            gain = 4.0 if kind == "head" else 1.0
            value = gain * rng.standard_normal(shape) / np.sqrt(fan_in)
            if kind == "head":
                # Quieter rows for the special tokens: a random model would otherwise often answer
                # <|im_end|> at once (empty captions) or emit vision markup.
                value[min(SPECIAL_TOKENS.values()) :] *= 0.25
        weights[name] = value.astype(np.float32)
    return weights


def to_bf16_bytes(array: np.ndarray) -> bytes:
    """float32 -> bfloat16 (round to nearest even), little-endian bytes."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """The safetensors format: u64 header size, JSON header (8-byte aligned), raw data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for name in sorted(tensors):
            handle.write(tensors[name][2])


def train_tokenizer(seed: int = 0):
    """Byte-level BPE on the built-in corpus, Qwen2's pre-tokenizer, special tokens on top."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers

    from .tiny_corpus import corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus(seed), trainer)
    if tokenizer.get_vocab_size() != BPE_VOCAB:  # the corpus must be rich enough to fill it
        raise RuntimeError(f"tokenizer training gave {tokenizer.get_vocab_size()} tokens, expected {BPE_VOCAB}")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    for token, expected in SPECIAL_TOKENS.items():
        assert tokenizer.token_to_id(token) == expected, token
    return tokenizer


def model_config() -> dict:
    ids = SPECIAL_TOKENS
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        **TEXT,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "vision_config": dict(VISION),
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }


def _processor_configs() -> tuple[dict, dict]:
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "rescale_factor": 1 / 255,
        "patch_size": VISION["patch_size"],
        "temporal_patch_size": VISION["temporal_patch_size"],
        "merge_size": VISION["spatial_merge_size"],
        "processor_class": "Qwen2_5_VLProcessor",
    }
    image = {
        **common,
        "image_processor_type": "Qwen2VLImageProcessor",
        "resample": 3,  # bicubic
        "min_pixels": IMAGE_MIN_PIXELS,
        "max_pixels": IMAGE_MAX_PIXELS,
        "size": {"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": IMAGE_MAX_PIXELS},
    }
    video = {
        **common,
        "video_processor_type": "Qwen2VLVideoProcessor",
        "resample": 3,
        "do_sample_frames": False,  # streamproc samples frames itself
        "min_pixels": VIDEO_MIN_PIXELS,
        "max_pixels": VIDEO_MAX_PIXELS,
        "size": {"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS},
    }
    return image, video


def _tokenizer_config() -> dict:
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    added = {str(i): {"content": t, **flags} for t, i in SPECIAL_TOKENS.items()}
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t != "<|endoftext|>"],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": TEXT["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def make_tiny_model(directory: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the tiny checkpoint into `directory` (created if needed) and return its path."""
    directory = Path(directory)
    existing = [name for name in MODEL_FILES if (directory / name).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"{directory} already holds a model ({', '.join(existing)}): use --force (overwrite=True) to replace it"
        )
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    weights = random_weights(seed)
    write_safetensors(
        directory / "model.safetensors",
        {name: ("BF16", array.shape, to_bf16_bytes(array)) for name, array in weights.items()},
    )
    _write_json(directory / "config.json", model_config())
    ids = SPECIAL_TOKENS
    _write_json(
        directory / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
            "do_sample": False,
            "repetition_penalty": 1.0,
        },
    )
    tokenizer = train_tokenizer()
    (directory / "tokenizer.json").write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
    _write_json(directory / "tokenizer_config.json", _tokenizer_config())
    _write_json(directory / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    image, video = _processor_configs()
    _write_json(directory / "preprocessor_config.json", image)
    _write_json(directory / "video_preprocessor_config.json", video)
    params = sum(array.size for array in weights.values())
    log.info("wrote a tiny Qwen2.5-VL (%d parameters, seed %d) to %s", params, seed, directory)
    return directory
