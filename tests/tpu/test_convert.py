"""`streamproc convert` end to end: the tiny checkpoint (make-tiny-model) becomes a static, a
dynamic and a history bmodel sized by the plan (4 s segments of 112x224 -> 256 tokens), and each
answers on the simulator with transformers' greedy tokens (bf16, as tests/tpu/test_parity.py).

The converter environment is made by the same cached step the command uses (ensure_converter):
the first run downloads ~4 GB and takes minutes (CI caches ~/.cache/streamproc/converter).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from streamproc.backends import GenerationParams

from .conftest import unavailable
from .support import REPO, assert_greedy_parity

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]

COMMON = ["--chip", "bm1684x", "--segment-seconds", "4", "--max-pixels", "112x224", "--quantize", "bf16", "--strip-kernel"]
BUILDS = {  # name: extra flags, expected layout
    "static": ([], "static"),
    "dynamic": (["--dynamic"], "dynamic"),
    "history": (["--history"], "history"),
}


@pytest.fixture(scope="module")
def converter():
    from streamproc.convert.env import ConverterError, ensure_converter, find_python310

    if not find_python310():
        unavailable("no Python 3.10 for the converter (pyenv install 3.10, or set PYTHON310)")
    try:
        return ensure_converter(progress=lambda line: print(line, file=sys.stderr))
    except ConverterError as exc:
        unavailable(f"the converter could not be set up: {exc}")


@pytest.mark.parametrize("build", list(BUILDS))
def test_convert_answers_like_transformers(build, converter, runtime_dir, tiny_model_dir, tmp_path_factory, hf_bf16):
    from streamproc.backends.tpu import TpuBackend
    from streamproc.config.model import TpuBackendConfig

    flags, layout = BUILDS[build]
    out = tmp_path_factory.mktemp(f"convert-{build}")
    check = [] if build == "dynamic" else ["--no-check"]  # the command's own check, once
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc", "convert", str(tiny_model_dir), "--out", str(out), *COMMON, *flags, *check],
        capture_output=True, text=True, timeout=1800, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sequence length 256 tokens" in proc.stdout and "type: tpu" in proc.stdout
    if not check:
        assert "checked on the simulator: dynamic layout, seq 256" in proc.stdout, proc.stdout
    (bmodel,) = out.glob("*.bmodel")
    backend = TpuBackend(TpuBackendConfig(bmodel=bmodel, tokenizer=tiny_model_dir, runtime_dir=runtime_dir))
    try:
        assert (backend.info.layout, backend.info.seq_length, backend.info.max_patches) == (layout, 256, 128)
        if build == "history":
            assert backend.info.max_input == 128  # the chunk the plan asked for
        inputs = backend.inputs.build("Describe what happens in the video.")
        tokens = backend.describe(inputs, GenerationParams(max_new_tokens=3)).token_ids
        assert assert_greedy_parity(hf_bf16, inputs, tokens, 3) == "exact"
    finally:
        backend.close()
