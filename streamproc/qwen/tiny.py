"""`make_tiny_model(dir, family)`: a seeded, random-weight model of ~4 M parameters for tests and demos.

Written with numpy, tokenizers and json only (no torch), byte for byte the same on every run:
- model.safetensors: bf16 weights in the key layout the family's checkpoints are published in
  (Qwen2.5-VL: visual.*, model.layers.*; Qwen3-VL: model.visual.*, model.language_model.*), which
  transformers 4.57 loads and TPU-MLIR converts;
- config.json as the family's releases write it, generation_config.json;
- a byte-level BPE tokenizer (Qwen2's pre-tokenizer) trained on streamproc.qwen.tiny_corpus, with
  Qwen's special tokens at 2030-2043 (Qwen's own offsets from <|endoftext|>), tokenizer_config.json
  and chat_template.json with the family's template;
- preprocessor_config.json / video_preprocessor_config.json for the family's processor.

The architecture of each family's tiny model is in tiny_specs.py. Weights are scaled (not
transformers' 0.02 init) so that greedy output depends on the input instead of collapsing to one
repeated token.
"""
from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

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
QWEN_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

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


def random_weights(seed: int, shapes) -> dict[str, np.ndarray]:
    """float32 weights: linears ~ N(0, 1/fan_in) so activations keep their scale through the
    layers, embeddings N(0, 1), a sharper lm_head (peaked, input-dependent logits) whose special
    token rows are damped, norms near 1, small biases."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape, kind in shapes:
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


def _tokenizer_config(chat_template: str, max_length: int) -> dict:
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
        "model_max_length": max_length,
        "chat_template": chat_template,
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def make_tiny_model(
    directory: str | Path, seed: int = 0, overwrite: bool = False, family: str = "qwen2.5-vl"
) -> Path:
    """Write the family's tiny checkpoint into `directory` (created if needed) and return its path."""
    from .families import get_family

    spec = get_family(family).tiny(SPECIAL_TOKENS)
    directory = Path(directory)
    existing = [name for name in MODEL_FILES if (directory / name).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"{directory} already holds a model ({', '.join(existing)}): use --force (overwrite=True) to replace it"
        )
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    weights = random_weights(seed, spec.weight_shapes)
    write_safetensors(
        directory / "model.safetensors",
        {name: ("BF16", array.shape, to_bf16_bytes(array)) for name, array in weights.items()},
    )
    _write_json(directory / "config.json", spec.config)
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
    text = spec.config.get("text_config") or spec.config
    _write_json(directory / "tokenizer_config.json", _tokenizer_config(spec.chat_template, text["max_position_embeddings"]))
    _write_json(directory / "chat_template.json", {"chat_template": spec.chat_template})
    _write_json(directory / "preprocessor_config.json", spec.image_processor)
    _write_json(directory / "video_preprocessor_config.json", spec.video_processor)
    params = sum(array.size for array in weights.values())
    log.info("wrote a tiny %s (%d parameters, seed %d) to %s", family, params, seed, directory)
    return directory
