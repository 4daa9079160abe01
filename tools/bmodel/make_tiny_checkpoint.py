#!/usr/bin/env python3
"""Write a tiny random Qwen2.5-VL checkpoint that TPU-MLIR's llm_convert.py accepts.

Stand-in for `streamproc make-tiny-model DIR` until that command exists; both must produce the
same architecture (see tools/bmodel/README.md, "The tiny checkpoint").

    .venv/bin/python tools/bmodel/make_tiny_checkpoint.py /work/cache/tiny-ckpt

Needs torch, transformers (4.5x) and safetensors (the project's main venv has them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

# Special tokens sit at the top of the 2048-token vocabulary, at the same offsets from
# <|endoftext|> as in the real Qwen2.5 tokenizer (151643 + k -> 2030 + k).
SPECIAL_TOKENS = {
    "<|endoftext|>": 2030,  # bos (config) and pad
    "<|im_start|>": 2031,
    "<|im_end|>": 2032,  # eos
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

TEXT = dict(
    hidden_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,  # head_dim 128: required by mrope_section [16, 24, 24]
    num_key_value_heads=1,
    intermediate_size=512,
    vocab_size=2048,
    rope_theta=1000000.0,
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    tie_word_embeddings=False,
    use_sliding_window=False,
    sliding_window=None,
    max_window_layers=2,
    attention_dropout=0.0,
    bos_token_id=SPECIAL_TOKENS["<|endoftext|>"],
    eos_token_id=SPECIAL_TOKENS["<|im_end|>"],
    pad_token_id=SPECIAL_TOKENS["<|endoftext|>"],
)

VISION = dict(
    depth=4,
    hidden_size=160,
    num_heads=2,  # head_dim 80, as in the real model: the converter requires it
    intermediate_size=320,
    out_hidden_size=256,  # = text hidden_size
    fullatt_block_indexes=[1, 3],
    window_size=112,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    in_channels=3,
    in_chans=3,  # the converter reads vision_config.in_chans (older transformers name)
    hidden_act="silu",
    tokens_per_second=2,
)

# Original (pre transformers 4.52) key layout, which llm_convert.py reads.
ORIGINAL_KEY_RE = re.compile(r"^(visual\.|model\.layers\.|model\.embed_tokens\.|model\.norm\.|lm_head\.)")


def to_original_key(key: str) -> str:
    """Map the transformers >= 4.52 in-memory layout back to the original checkpoint layout."""
    if key.startswith("model.visual."):
        return key[len("model.") :]
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model.") :]
    return key


def build(out_dir: str, seed: int, dtype_name: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    top = dict(TEXT)
    config = Qwen2_5_VLConfig(
        text_config=dict(TEXT),
        vision_config=dict(VISION),
        image_token_id=SPECIAL_TOKENS["<|image_pad|>"],
        video_token_id=SPECIAL_TOKENS["<|video_pad|>"],
        vision_start_token_id=SPECIAL_TOKENS["<|vision_start|>"],
        vision_end_token_id=SPECIAL_TOKENS["<|vision_end|>"],
        vision_token_id=SPECIAL_TOKENS["<|vision_pad|>"],
        **top,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype_name]
    model = model.to(dtype)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)

    # Enforce the original key layout, whatever this transformers version saved.
    path = os.path.join(out_dir, "model.safetensors")
    tensors = load_file(path)
    renamed = {to_original_key(k): v.contiguous() for k, v in tensors.items()}
    changed = sum(1 for k in tensors if to_original_key(k) != k)
    if changed:
        print(f"rewrote {changed} weight keys to the original layout", file=sys.stderr)
        save_file(renamed, path, metadata={"format": "pt"})
    bad = [k for k in renamed if not ORIGINAL_KEY_RE.match(k)]
    if bad:
        raise SystemExit(f"unexpected weight keys: {bad[:5]}")

    # Make sure config.json carries what the converter reads.
    cfg_path = os.path.join(out_dir, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.setdefault("vision_config", {})["in_chans"] = VISION["in_chans"]
    cfg["torch_dtype"] = dtype_name
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens.json"), "w") as f:
        json.dump(SPECIAL_TOKENS, f, indent=2)
        f.write("\n")
    n = sum(v.numel() for v in renamed.values())
    print(f"wrote {out_dir}: {len(renamed)} tensors, {n} parameters, {dtype_name}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    args = ap.parse_args()
    build(args.out_dir, args.seed, args.dtype)


if __name__ == "__main__":
    main()
