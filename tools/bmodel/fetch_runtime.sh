#!/usr/bin/env bash
# Extract the Sophgo CPU-simulator runtime (libbmrt, libbmlib, libcmodel) from the PyPI
# tpu_mlir 1.30.2 wheel into a folder, one sub-folder per chip:
#
#   tools/bmodel/fetch_runtime.sh [DEST]      (default ${STREAMPROC_TPU_RUNTIME:-/work/cache/tpu-runtime})
#
#   DEST/bm1684x/{libbmrt.so, libbmrt.so.1.0 -> libbmrt.so, libbmlib.so.0, libcmodel.so}  (libcmodel_bm1684x.so)
#   DEST/bm1688/{same names}   (libcmodel.so = libcmodel_bm1688.so)
#
# libbmlib finds libcmodel.so next to itself, so point the loader at one chip folder
# (LD_LIBRARY_PATH or an explicit path). Needs only python3 with pip (any Python version: the
# wheel is downloaded for CPython 3.10 but never installed) and ~330 MB of temporary disk.
# Skips everything when both folders already hold their files.
#
# Environment: TPU_MLIR_WHEEL (use this local wheel instead of downloading),
#              PYTHON (default python3), TPU_MLIR_VERSION (default 1.30.2).
set -euo pipefail

DEST="${1:-${STREAMPROC_TPU_RUNTIME:-/work/cache/tpu-runtime}}"
VERSION="${TPU_MLIR_VERSION:-1.30.2}"
PY="${PYTHON:-python3}"
CHIPS=(bm1684x bm1688)
FILES=(libbmrt.so libbmrt.so.1.0 libbmlib.so.0 libcmodel.so)

complete() {
  local chip f
  for chip in "${CHIPS[@]}"; do
    for f in "${FILES[@]}"; do [[ -s "$DEST/$chip/$f" ]] || return 1; done
    [[ -s "$DEST/$chip/VERSION" ]] || return 1
  done
}

if complete; then
  echo "[fetch_runtime] $DEST already has the runtime ($(cat "$DEST/bm1684x/VERSION"))" >&2
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

wheel="${TPU_MLIR_WHEEL:-}"
if [[ -z "$wheel" ]]; then
  echo "[fetch_runtime] downloading tpu_mlir==$VERSION (about 312 MB)" >&2
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
    --disable-pip-version-check -q -d "$tmp/dl" "tpu_mlir==$VERSION" >&2
  wheel="$(ls "$tmp"/dl/tpu_mlir-*.whl)"
fi

# Unzip only the four libraries needed (python's zipfile: no unzip binary required).
"$PY" - "$wheel" "$tmp/x" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
want = {"tpu_mlir/lib/libbmrt.so", "tpu_mlir/lib/libbmlib.so.0",
        "tpu_mlir/lib/libcmodel_bm1684x.so", "tpu_mlir/lib/libcmodel_bm1688.so"}
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    missing = want - names
    if missing:
        sys.exit(f"wheel {wheel} lacks {sorted(missing)}")
    for n in sorted(want):
        z.extract(n, out)
EOF

lib="$tmp/x/tpu_mlir/lib"
for chip in "${CHIPS[@]}"; do
  d="$DEST/$chip"
  mkdir -p "$d"
  install -m 0755 "$lib/libbmrt.so" "$d/libbmrt.so"
  ln -sfn libbmrt.so "$d/libbmrt.so.1.0"   # its SONAME
  install -m 0755 "$lib/libbmlib.so.0" "$d/libbmlib.so.0"
  install -m 0755 "$lib/libcmodel_$chip.so" "$d/libcmodel.so"
  echo "tpu_mlir $VERSION ($(basename "$wheel")), libcmodel.so = libcmodel_$chip.so" > "$d/VERSION"
done
echo "[fetch_runtime] runtime for ${CHIPS[*]} written under $DEST" >&2
