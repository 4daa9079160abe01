#!/usr/bin/env bash
# Convert the tiny Qwen2.5-VL and Qwen3-VL checkpoints into the small .bmodel fixtures the engine tests use.
#
#   tools/bmodel/build_fixtures.sh [CHECKPOINT_DIR [OUT_DIR]]   (OUT_DIR default tests/fixtures/bmodels)
#
# Without CHECKPOINT_DIR it converts the project's own tiny model (`streamproc make-tiny-model`,
# written to $STREAMPROC_CONVERTER_CACHE/tiny-model), the one the tests and the demo use. The
# qwen3_* fixtures come from the tiny Qwen3-VL (`make-tiny-model --family qwen3-vl`, written to
# $STREAMPROC_CONVERTER_CACHE/tiny-model-qwen3).
#
# Each Qwen fixture is made by `streamproc convert` (which sets up the converter venvs on first
# use, normalizes the checkpoint and runs llm_convert.py) with the fixture's geometry given
# explicitly (--seq-length etc.) and a fixture config with small reserves (fixture_config.yaml),
# so seq 128 builds plan. The old-layout fixture needs the tpu_mlir 1.21 venv; it is skipped with
# a warning when that venv is missing (tools/bmodel/setup_converter.sh --with-old). One fixture
# is not a Qwen model at all: `not_qwen_add` (y = x + 1, written by make_not_qwen_onnx.py and
# compiled with TPU-MLIR's model_transform.py + model_deploy.py, F32) for the engine's "not a
# Qwen2.5-VL bmodel" error. Each fixture is converted in its own work folder under
# $STREAMPROC_CONVERTER_CACHE/fixture-build, stripped of its embedded kernel module (model_tool
# --kernel_remove: the simulator and the SDK runtime bring their own) and copied to
# OUT_DIR/NAME.bmodel; OUT_DIR/MANIFEST.json and OUT_DIR/README.md are then rewritten from
# `model_tool --info` of every fixture present (build records of fixtures not rebuilt this time
# are kept from the previous MANIFEST.json). Output is deterministic except for the timestamps
# the converter writes into each bmodel.
#
# Environment:
#   STREAMPROC_CONVERTER_CACHE  venvs and work folders (default ~/.cache/streamproc/converter)
#   FIXTURES                    space-separated subset of fixture names to (re)build (default: all)
#   KEEP_WORK=1                 keep the work folders (logs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${STREAMPROC_CONVERTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamproc/converter}"
export STREAMPROC_CONVERTER_CACHE="$CACHE"
STREAMPROC="${STREAMPROC:-$REPO/.venv/bin/streamproc}"
CKPT="${1:-}"
OUT="${2:-$REPO/tests/fixtures/bmodels}"
if [[ -z "$CKPT" ]]; then
  CKPT="$CACHE/tiny-model"
  "$STREAMPROC" make-tiny-model "$CKPT" --force >&2
fi
CKPT3="$CACHE/tiny-model-qwen3"
"$STREAMPROC" make-tiny-model "$CKPT3" --family qwen3-vl --force >&2
NEW_VENV="$CACHE/convert-1.30.2"
OLD_VENV="$CACHE/convert-1.21"
WORK="$CACHE/fixture-build"

CKPT="$(cd "$CKPT" && pwd)"
mkdir -p "$OUT" "$WORK"
OUT="$(cd "$OUT" && pwd)"

log() { echo "[build_fixtures] $*" >&2; }


# name | converter (new = 1.30.2, old = 1.21, onnx = 1.30.2's model_transform/model_deploy of
# make_not_qwen_onnx.py's model, qwen3 = 1.30.2 on the tiny Qwen3-VL) | chip | flags (`streamproc convert` besides CKPT --chip --out;
# model_deploy.py besides --mlir --chip --model) | purpose
# All bf16. Image-token budget: --max-pixels 112x224 -> 128 patches -> 32 image tokens (a 112x224
# image spans two 112 px attention windows; a 112x112 video frame pair is 64 patches, so a 6-frame
# video needs two ViT calls); 112x112 -> 64 patches -> 16 tokens (one frame pair per call).
FIXTURE_TABLE=(
  "static_bf16_s128|new|bm1684x|--seq-length 128 --max-pixels 112x224|static prefill (attention_mask input, full-length rows); static vit 128 patches"
  "dynamic_bf16_s256|new|bm1684x|--seq-length 256 --dynamic --max-pixels 112x224|dynamic prefill (no mask input) and dynamic vit 128 patches; the main fixture"
  "history_bf16_s256_c64|new|bm1684x|--seq-length 256 --history --input-length 64 --max-pixels 112x224|new history layout: block_N + block_kv_N (chunks of 64), 3-stage block_cache_N"
  "sample_dynamic_bf16_s128|new|bm1684x|--seq-length 128 --dynamic --do-sample --max-pixels 112x112|lm_head returns f32 logits; greedy_head and sample_head nets; dynamic vit 64 patches"
  "oldhist_bf16_s256_m64|old|bm1684x|--seq-length 256 --history --old-layout --input-length 64 --max-pixels 112x224|old history layout (tpu_mlir 1.21): static 5-input block_N, static vit 128 patches"
  "bm1688_dynamic_bf16_s128|new|bm1688|--seq-length 128 --dynamic --max-pixels 112x112|BM1688 (2-core build): needs libcmodel_bm1688.so; the BM1684X runtime must refuse it"
  "not_qwen_add|onnx|bm1684x|--quantize F32|not a Qwen model: one static net y = x + 1 on float32 [1,4] (ONNX); the engine must refuse it by its nets"
  # Qwen3-VL: 16 px patches, 128x256 -> 128 patches (32 image tokens); a 64x64 frame pair is 16 patches.
  "qwen3_static_bf16_s256_i128|qwen3|bm1684x|--seq-length 256 --input-length 128 --segment-seconds 8 --max-pixels 128x256|Qwen3-VL static: prefill of 128 rows (mask input) in a 256 sequence, static vit with a mask and 2 DeepStack outputs, add net"
  "qwen3_history_bf16_s256_c64|qwen3|bm1684x|--seq-length 256 --history --input-length 64 --segment-seconds 8 --max-pixels 128x256|Qwen3-VL history: block_N + block_kv_N (chunks of 64), dynamic vit without a mask (one frame pair a call)"
  "qwen3_bm1688_static_bf16_s256_i128|qwen3|bm1688|--seq-length 256 --input-length 128 --segment-seconds 8 --max-pixels 128x256|Qwen3-VL on BM1688 (2-core build): needs libcmodel_bm1688.so"
)

selected() {
  [[ -z "${FIXTURES:-}" ]] && return 0
  local f
  for f in $FIXTURES; do [[ "$f" == "$1" ]] && return 0; done
  return 1
}

RECORDS="$WORK/records"
rm -rf "$RECORDS"; mkdir -p "$RECORDS"
# The 1.30.2 venv with the onnx packages the not_qwen_add fixture's model_transform.py needs
# (`streamproc convert` alone sets it up without them).
bash "$HERE/setup_converter.sh" --with-onnx >&2

failed=()
for row in "${FIXTURE_TABLE[@]}"; do
  IFS='|' read -r name which chip flags purpose <<<"$row"
  selected "$name" || continue
  venv="$NEW_VENV"; [[ "$which" == old ]] && venv="$OLD_VENV"
  ckpt="$CKPT"; family=qwen2.5-vl; [[ "$which" == qwen3 ]] && ckpt="$CKPT3" family=qwen3-vl
  [[ "$which" == onnx ]] && family=none
  if [[ ! -f "$venv/.streamproc-ready" ]]; then
    log "SKIP $name: $venv missing (tools/bmodel/setup_converter.sh --with-old)"; continue
  fi
  if [[ "$which" == onnx ]] && ! "$venv/bin/python" -c 'import onnx, onnxruntime, onnxsim' 2>/dev/null; then
    log "SKIP $name: no onnx packages in $venv (tools/bmodel/setup_converter.sh --with-onnx)"; continue
  fi
  wd="$WORK/$name"
  rm -rf "$wd"; mkdir -p "$wd"
  version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tpu_mlir"))')"
  if [[ "$which" == onnx ]]; then
    command="make_not_qwen_onnx.py $name.onnx; model_transform.py --model_name $name --model_def $name.onnx --input_shapes [[1,4]] --mlir $name.mlir; model_deploy.py --mlir $name.mlir --chip $chip $flags --model OUT.bmodel; model_tool --kernel_remove OUT.bmodel"
  else
    command="streamproc convert CHECKPOINT --chip $chip --out OUT --quantize bf16 --config fixture_config.yaml $flags; model_tool --kernel_remove OUT/$name.bmodel"
  fi
  log "converting $name with tpu_mlir $version: ${command%%;*}"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  if [[ "$which" == onnx ]]; then
    ok=1
    ( cd "$wd" && export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" &&
      "$venv/bin/python" "$HERE/make_not_qwen_onnx.py" "$name.onnx" &&
      model_transform.py --model_name "$name" --model_def "$name.onnx" --input_shapes '[[1,4]]' \
        --mlir "$name.mlir" &&
      mkdir -p out && model_deploy.py --mlir "$name.mlir" --chip "$chip" $flags --model "out/$name.bmodel"
    ) >"$wd/convert.log" 2>&1 </dev/null || ok=0
  else
    ok=1
    "$STREAMPROC" convert "$ckpt" --chip "$chip" --out "$wd/out" --quantize bf16 --config "$HERE/fixture_config.yaml" \
      --name "$name" --no-check $flags >"$wd/convert.log" 2>&1 </dev/null || ok=0
  fi
  if [[ $ok -eq 0 ]]; then
    log "FAILED $name (log: $wd/convert.log):"; grep -v 'local:\|/dev/tty' "$wd/convert.log" | tail -15 >&2 || true
    failed+=("$name"); continue
  fi
  end=$(date +%s.%N)
  secs=$(python3 -c "print(round($end - $start, 1))")
  bm="$(ls "$wd"/out/*.bmodel 2>/dev/null | head -1 || true)"
  if [[ -z "$bm" ]]; then log "FAILED $name: no bmodel in $wd/out"; failed+=("$name"); continue; fi
  cp "$bm" "$wd/$name.bmodel"
  unstripped=$(stat -c %s "$wd/$name.bmodel")
  # strip with the same release's model_tool (1.30.2's would restamp the header version)
  "$venv/bin/model_tool" --kernel_remove "$wd/$name.bmodel" >/dev/null
  mv -f "$wd/$name.bmodel" "$OUT/$name.bmodel"
  "$NEW_VENV/bin/python" -c '
import json, sys
keys = ["converter", "chip", "flags", "purpose", "convert_seconds", "unstripped_bytes", "built_at", "command", "family"]
vals = sys.argv[2:]
rec = dict(zip(keys, vals))
rec["convert_seconds"] = round(float(rec["convert_seconds"]), 1)
rec["unstripped_bytes"] = int(rec["unstripped_bytes"])
json.dump(rec, open(sys.argv[1], "w"), indent=1)
' "$RECORDS/$name.json" "tpu_mlir $version" "$chip" "$flags" "$purpose" "$secs" \
    "$unstripped" "$(date -u +%FT%TZ)" "$command" "$family"
  log "built $name in ${secs}s: $(stat -c %s "$OUT/$name.bmodel") bytes stripped ($unstripped before)"
  [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$wd"
done

"$NEW_VENV/bin/python" "$HERE/write_manifest.py" "$OUT" "$CKPT" "$RECORDS" "$NEW_VENV/bin/model_tool" "$CKPT3"
if ((${#failed[@]})); then log "failed: ${failed[*]}"; exit 1; fi
log "fixtures in $OUT"
