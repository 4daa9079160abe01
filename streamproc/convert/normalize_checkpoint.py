#!/usr/bin/env python3
"""Make a "converter view" of a Qwen2.5-VL or Qwen3-VL checkpoint for TPU-MLIR's llm_convert.py.

    python normalize_checkpoint.py SRC_DIR VIEW_DIR

Qwen2.5-VL: VIEW_DIR gets config.json in the released-checkpoint form (flat text settings,
rope_scaling type mrope, vision_config.in_chans), the other small json files, and the weights:
symlinked when they already use the original key layout (visual.*, model.layers.*,
model.embed_tokens.*, model.norm.*, lm_head.*), rewritten otherwise (needs torch + safetensors:
run it with a converter venv's python).
Qwen3-VL: its converter reads the released form as it is (nested text_config, keys
model.visual.*, model.language_model.*, lm_head.*), so the view is the checkpoint itself
(symlinked weights), after checking its keys.
Prints one line per change it had to make, so a checkpoint writer can be fixed at the source; with
--check it only reports and exits 1 when the checkpoint is not already in that form.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys

# The original (pre transformers 4.52) key layout, which llm_convert.py reads for Qwen2.5-VL.
ORIGINAL_KEY_RE = re.compile(r"^(visual\.|model\.layers\.|model\.embed_tokens\.|model\.norm\.|lm_head\.)")
# Qwen3-VL's released layout, which its converter reads (QWEN3VL_INFO, vit_path model.visual).
QWEN3_KEY_RE = re.compile(r"^(model\.visual\.|model\.language_model\.|lm_head\.)")


def to_original_key(key: str) -> str:
    """Map the transformers >= 4.52 in-memory layout back to the original checkpoint layout."""
    if key.startswith("model.visual."):
        return key[len("model.") :]
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model.") :]
    return key


def flatten_config(cfg: dict) -> dict:
    """The released-checkpoint form: text settings at the top level (tpu_mlir 1.21 reads them
    there), rope_scaling of type mrope, and vision_config.in_chans (4.57 calls it in_channels)."""
    flat = {k: v for k, v in cfg.items() if k != "text_config"}
    for key, value in (cfg.get("text_config") or {}).items():
        if key not in ("model_type", "architectures"):
            flat.setdefault(key, value)
    rope = dict(flat.get("rope_scaling") or {})
    if rope:
        rope["type"] = "mrope"
        rope.pop("rope_type", None)
        flat["rope_scaling"] = rope
    vision = dict(flat.get("vision_config") or {})
    channels = vision.get("in_chans") or vision.get("in_channels") or 3
    vision["in_chans"] = vision["in_channels"] = channels
    flat["vision_config"] = vision
    return flat


def config_changes(cfg: dict, changes: list[str]) -> None:
    """What a Qwen2.5-VL config.json needs for the converters (reported, then fixed in the view)."""
    if "text_config" in cfg:
        changes.append("config.json: text settings nested under text_config (tpu_mlir 1.21 needs them at the top level)")
    if not cfg.get("vision_config", {}).get("in_chans"):
        changes.append("config.json: vision_config.in_chans missing (both converters read it)")
    rs = cfg.get("rope_scaling") or (cfg.get("text_config") or {}).get("rope_scaling") or {}
    if rs.get("type") != "mrope" and rs.get("rope_type") != "mrope":
        changes.append(f"config.json: rope_scaling {rs} rewritten as type mrope (cosmetic: both converters accept it)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("view", nargs="?")
    ap.add_argument("--check", action="store_true", help="only report what would change")
    args = ap.parse_args()
    src = os.path.abspath(args.src)
    changes: list[str] = []

    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    qwen3 = cfg.get("model_type") == "qwen3_vl"
    flat = cfg if qwen3 else flatten_config(cfg)
    if not qwen3:
        config_changes(cfg, changes)

    weights = sorted(n for n in os.listdir(src) if n.endswith(".safetensors"))
    if not weights:
        print(f"no *.safetensors in {src}", file=sys.stderr)
        return 2
    from safetensors import safe_open

    need_rewrite = []
    for w in weights:
        with safe_open(os.path.join(src, w), "np") as f:
            keys = list(f.keys())
        if qwen3:
            bad = [k for k in keys if not QWEN3_KEY_RE.match(k)]
            if bad:
                print(f"{w}: keys the Qwen3-VL converter does not know: {bad[:5]}", file=sys.stderr)
                return 2
            continue
        renamed = [to_original_key(k) for k in keys]
        if renamed != keys:
            need_rewrite.append(w)
            changes.append(f"{w}: keys in the transformers>=4.52 layout (model.language_model.*, model.visual.*)")
        bad = [k for k in renamed if not ORIGINAL_KEY_RE.match(k)]
        if bad:
            print(f"{w}: keys the converter does not know: {bad[:5]}", file=sys.stderr)
            return 2

    for c in changes:
        print(f"[normalize] {c}", file=sys.stderr)
    if args.check:
        return 1 if [c for c in changes if "cosmetic" not in c] else 0
    if not args.view:
        ap.error("VIEW_DIR required without --check")

    view = os.path.abspath(args.view)
    if os.path.exists(view):
        shutil.rmtree(view)
    os.makedirs(view)
    with open(os.path.join(view, "config.json"), "w") as f:
        json.dump(flat, f, indent=2, sort_keys=True)
        f.write("\n")
    for n in os.listdir(src):
        p = os.path.join(src, n)
        if n == "config.json" or not os.path.isfile(p):
            continue
        if n.endswith(".safetensors"):
            if n in need_rewrite:
                from safetensors.torch import load_file, save_file

                t = load_file(p)
                save_file({to_original_key(k): v.contiguous() for k, v in t.items()}, os.path.join(view, n),
                          metadata={"format": "pt"})
            else:
                os.symlink(p, os.path.join(view, n))
        elif n.endswith(".json") and n != "model.safetensors.index.json":
            shutil.copy(p, os.path.join(view, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
