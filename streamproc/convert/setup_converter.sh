#!/usr/bin/env bash
# Create (idempotently) the Python 3.10 virtual environments that run Sophgo's TPU-MLIR
# converter (llm_convert.py) for Qwen2.5-VL / Qwen3-VL, outside the repository.
#
#   setup_converter.sh              # tpu_mlir 1.30.2 venv: what llm_convert.py needs, nothing more
#   setup_converter.sh --with-onnx  # also onnx/onnxruntime/onnxsim (model_transform.py's ONNX front end)
#   setup_converter.sh --with-old   # also the tpu_mlir 1.21.x venv (old history layout)
#   setup_converter.sh --only-old   # only the 1.21.x venv (needs the 1.30.2 one)
#
# Environment:
#   STREAMPROC_CONVERTER_CACHE  where venvs and downloads go (default ~/.cache/streamproc/converter)
#   PYTHON310                   a Python 3.10 interpreter (default: pyenv's 3.10.x, then python3.10)
#   TPU_MLIR_WHEEL              a local tpu_mlir-1.30.2 wheel (default: $CACHE/tpu/..., else pip download)
#   TORCH_SPEC                  torch for the 1.30.2 venv (default torch==2.14.1: the converter only
#                               reads weights with it, on the CPU; PyPI has only CUDA builds for Linux
#                               x86_64, and this is the release streamproc's own venv uses, so a pip
#                               that has its CUDA libraries at hand takes them from there)
#   STREAMPROC_CUDA_WHEELS_FROM site-packages folders (':'-separated) whose nvidia-* wheels to
#                               hard-link instead of installing them again (link_wheels.py)
#   TPU_MLIR_OLD_VERSION        old converter version (default 1.21.1)
#
# Everything it does is skipped when already done (a .streamproc-ready stamp in each venv), and
# concurrent runs (parallel test workers, two `streamproc convert`) wait for each other (flock).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${STREAMPROC_CONVERTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamproc/converter}"
NEW_VERSION=1.30.2
OLD_VERSION="${TPU_MLIR_OLD_VERSION:-1.21.1}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"
ONNX_SPECS=(onnx==1.14.1 onnxruntime==1.16.3 onnxsim==0.4.17)
NEW_VENV="$CACHE/convert-$NEW_VERSION"
OLD_VENV="$CACHE/convert-1.21"

want_new=1
want_old=0
want_onnx=0
for arg in "$@"; do
  case "$arg" in
    --with-onnx) want_onnx=1 ;;
    --with-old|--with-1.21) want_old=1 ;;
    --only-old|--only-1.21) want_old=1; want_new=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[setup_converter] $*" >&2; }

find_python310() {
  if [[ -n "${PYTHON310:-}" ]]; then echo "$PYTHON310"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    local cand
    for cand in "$root"/versions/3.10.*/bin/python3.10; do
      [[ -x "$cand" ]] && { echo "$cand"; return; }
    done
  fi
  if command -v python3.10 >/dev/null 2>&1; then command -v python3.10; return; fi
  echo "no Python 3.10 found (set PYTHON310)" >&2; exit 1
}

# The wheel ships Ubuntu 22.04's libc/libm/libpthread/libpython in lib/third_party and puts that
# folder on LD_LIBRARY_PATH; on another distribution every child process then dies with
# "stack smashing detected". Move them aside (into third_party.disabled/).
fix_third_party() {
  local venv="$1"
  local tp
  tp="$(ls -d "$venv"/lib/python3.10/site-packages/tpu_mlir/lib/third_party 2>/dev/null || true)"
  [[ -d "$tp" ]] || { log "no third_party folder in $venv (nothing to fix)"; return; }
  mkdir -p "$tp.disabled"
  local f
  for f in libc.so.6 libm.so.6 libpthread.so.0 libpython3.10.so.1.0; do
    if [[ -e "$tp/$f" ]]; then mv -f "$tp/$f" "$tp.disabled/$f"; log "moved $f out of $tp"; fi
  done
}

ensure_parallel() {
  if command -v parallel >/dev/null 2>&1; then return; fi
  log "installing GNU parallel (llm_convert.py runs its compile jobs through it)"
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq parallel
}

ensure_new_wheel() {
  local wheel="${TPU_MLIR_WHEEL:-$CACHE/tpu/tpu_mlir-$NEW_VERSION-py3-none-any.whl}"
  if [[ ! -f "$wheel" ]]; then
    mkdir -p "$CACHE/tpu"
    log "downloading tpu_mlir==$NEW_VERSION (312 MB)"
    "$PY" -m pip download --no-deps --only-binary=:all: -d "$CACHE/tpu" "tpu_mlir==$NEW_VERSION" >&2
    wheel="$CACHE/tpu/tpu_mlir-$NEW_VERSION-py3-none-any.whl"
  fi
  echo "$wheel"
}

# What llm_convert.py and the model_deploy.py runs it starts import, traced on Qwen2.5-VL static,
# dynamic and history builds (and read off Qwen3VLConverter.py, which imports nothing more):
# tpu_mlir's own pins of numpy, Pillow, plotly, opencv and tqdm (utils/ imports them at the top),
# safetensors and torch (the weights), and psutil, flatbuffers and pkg_resources (setuptools<70),
# which it imports without declaring them. The wheel's other requirements (transformers, scipy,
# pandas, scikit-image/-learn, pycocotools, which builds from source) serve its other front ends:
# the wheel goes in with --no-deps.
CONVERT_SPECS=(numpy==1.24.3 Pillow==10.0.0 plotly==5.15.0 opencv-python-headless==4.8.0.74 tqdm==4.65.0
  safetensors psutil flatbuffers==24.12.23 'setuptools<70' typing_extensions)

# torch with what it requires, less triton (torch.compile's GPU kernels; `import torch` and the
# converter's tensor reads do not load it): a quarter of a GB fewer to fetch and 0.6 GB less disk.
# Its ~3 GB of nvidia-* CUDA wheels are hard-linked from the environments named in
# STREAMPROC_CUDA_WHEELS_FROM (`streamproc convert` passes its own) where they are there already
# (link_wheels.py): nothing to download or unpack; pip installs whatever is missing or differs.
install_torch() {
  local py="$1"
  "$py" -m pip --disable-pip-version-check install -q --no-deps "$TORCH_SPEC" >&2
  "$py" - >"$NEW_VENV/torch-requirements.txt" <<'PYEOF'
import importlib.metadata as metadata
for requirement in metadata.requires("torch") or []:
    name = requirement.split(";")[0].strip().lower()
    if "extra ==" not in requirement and not name.startswith("triton"):
        print(requirement)
PYEOF
  local site from
  site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  IFS=: read -ra froms <<<"${STREAMPROC_CUDA_WHEELS_FROM:-}"
  for from in "${froms[@]}"; do
    if [[ -n "$from" ]]; then "$py" "$HERE/link_wheels.py" "$from" "$site" >&2; fi
  done
  "$py" -m pip --disable-pip-version-check install -q -r "$NEW_VENV/torch-requirements.txt" >&2
}

setup_new() {
  if [[ -f "$NEW_VENV/.streamproc-ready" ]]; then log "$NEW_VENV is ready"; return; fi
  local wheel; wheel="$(ensure_new_wheel)"
  log "creating $NEW_VENV"
  [[ -x "$NEW_VENV/bin/python" ]] || "$PY" -m venv "$NEW_VENV"
  local pip=("$NEW_VENV/bin/python" -m pip --disable-pip-version-check)
  "${pip[@]}" install -q --upgrade pip >&2
  log "installing $TORCH_SPEC (CPU use only; without triton)"
  install_torch "$NEW_VENV/bin/python"
  log "installing tpu_mlir $NEW_VERSION and what its LLM converter imports"
  "${pip[@]}" install -q --no-deps "$wheel" >&2
  "${pip[@]}" install -q "${CONVERT_SPECS[@]}" >&2
  fix_third_party "$NEW_VENV"
  "$NEW_VENV/bin/python" -c 'import tpu_mlir, torch, safetensors, numpy, cv2, PIL, plotly, tqdm, psutil, flatbuffers, pkg_resources' >&2
  date -u +%FT%TZ > "$NEW_VENV/.streamproc-ready"
  log "$NEW_VENV done"
}

# model_transform.py (the ONNX front end, for the not_qwen_add fixture of tools/bmodel/build_fixtures.sh)
# imports onnx, onnxruntime and onnxsim at the versions of tpu_mlir's `onnx` extra: only on request.
ensure_onnx() {
  [[ -f "$NEW_VENV/.streamproc-ready" ]] || return 0
  if "$NEW_VENV/bin/python" -c 'import onnx, onnxruntime, onnxsim' 2>/dev/null; then return; fi
  log "adding ${ONNX_SPECS[*]} to $NEW_VENV"
  "$NEW_VENV/bin/python" -m pip --disable-pip-version-check install -q --only-binary=:all: "${ONNX_SPECS[@]}" >&2
}

setup_old() {
  if [[ -f "$OLD_VENV/.streamproc-ready" ]]; then log "$OLD_VENV is ready"; return; fi
  [[ -f "$NEW_VENV/.streamproc-ready" ]] || { log "the old venv reuses torch from $NEW_VENV: build that first"; exit 1; }
  log "creating $OLD_VENV (tpu_mlir==$OLD_VERSION)"
  [[ -x "$OLD_VENV/bin/python" ]] || "$PY" -m venv "$OLD_VENV"
  local pip=("$OLD_VENV/bin/python" -m pip --disable-pip-version-check)
  "${pip[@]}" install -q --upgrade pip >&2
  # transformers 4.51.1: newer ones break 1.21's Qwen2.5-VL converter on rope_scaling.
  "${pip[@]}" install "tpu_mlir==$OLD_VERSION" transformers==4.51.1 onnx==1.14.1 onnxruntime==1.16.3 \
    psutil flatbuffers==24.12.23 'setuptools<70' >&2
  # Reuse torch (and its CUDA libraries) from the new venv instead of a second 6 GB copy. The .pth is
  # added after the installs so pip never sees (or tries to replace) that torch.
  local sp_old sp_new
  sp_old="$("$OLD_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  sp_new="$("$NEW_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$sp_new" > "$sp_old/zz_streamproc_torch_from_1_30_2.pth"
  fix_third_party "$OLD_VENV"
  "$OLD_VENV/bin/python" -c 'import tpu_mlir, torch, transformers; assert transformers.__version__ == "4.51.1", transformers.__version__' >&2
  date -u +%FT%TZ > "$OLD_VENV/.streamproc-ready"
  log "$OLD_VENV done"
}

PY="$(find_python310)"
ensure_parallel
mkdir -p "$CACHE"
# One set-up at a time per cache: a second caller waits here, then finds the stamps and returns.
exec 9>"$CACHE/.setup.lock"
flock 9
if [[ $want_new -eq 1 ]]; then setup_new; fi
if [[ $want_onnx -eq 1 ]]; then ensure_onnx; fi
if [[ $want_old -eq 1 ]]; then setup_old; fi
log "all requested converter venvs are ready under $CACHE"
