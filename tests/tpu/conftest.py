"""Fixtures for the native engine's tests on the Sophgo CPU simulator (tests/fixtures/bmodels).

The simulator is slow (a decode step of the tiny model takes ~0.5 s on 2 cores), so these tests
keep answers short and share engines per module. Every test here is marked slow.

Runtime: $STREAMPROC_BMRT_DIR (the BM1684X folder of tools/bmodel/fetch_runtime.sh; `make test`
sets it). The BM1688 runtime is looked for in $STREAMPROC_BMRT_1688_DIR, else in a `bm1688`
folder beside the BM1684X one. One process can load only one runtime, so whatever needs the
other one (BM1688, a missing runtime) runs in a subprocess.

Missing pieces (runtime, fixtures, torch) skip with the reason; STREAMPROC_TEST_STRICT=1 (CI)
turns those skips into failures, so a misconfigured CI cannot pass by skipping everything.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bmodels"
STRICT = os.environ.get("STREAMPROC_TEST_STRICT", "") not in ("", "0")


def unavailable(reason: str):
    """Skip (or, with STREAMPROC_TEST_STRICT=1, fail) because a test prerequisite is missing."""
    if STRICT:
        pytest.fail(f"{reason} (STREAMPROC_TEST_STRICT=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


def has_runtime(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("libbmrt.so*")) and any(folder.glob("libbmlib.so*"))


def bmodel_path(name: str) -> Path:
    path = FIXTURES / f"{name}.bmodel"
    if not path.is_file():
        unavailable(f"bmodel fixture {path} is missing (tools/bmodel/build_fixtures.sh)")
    return path


@pytest.fixture(scope="session")
def native():
    try:
        from streamproc import _native
    except ImportError as exc:
        unavailable(f"the native extension is not built: {exc}")
    return _native


@pytest.fixture(scope="session")
def runtime_dir(native) -> str:
    """The BM1684X runtime folder, as given (the same string everywhere: one runtime per process)."""
    value = os.environ.get("STREAMPROC_BMRT_DIR", "")
    if not value:
        unavailable("STREAMPROC_BMRT_DIR is not set (make runtime; tools/bmodel/fetch_runtime.sh DEST, then DEST/bm1684x)")
    if not has_runtime(Path(value)):
        unavailable(f"STREAMPROC_BMRT_DIR={value} has no libbmrt.so / libbmlib.so (tools/bmodel/fetch_runtime.sh)")
    loaded = native.runtime_path()
    if loaded and Path(loaded).resolve().parent != Path(value).resolve():
        pytest.fail(f"this process already loaded another Sophgo runtime ({loaded})", pytrace=False)
    return value


@pytest.fixture(scope="session")
def runtime_dir_bm1688(runtime_dir) -> str:
    value = os.environ.get("STREAMPROC_BMRT_1688_DIR") or str(Path(runtime_dir).resolve().parent / "bm1688")
    if not has_runtime(Path(value)):
        unavailable(f"no BM1688 simulator runtime at {value} (set STREAMPROC_BMRT_1688_DIR)")
    return value


@pytest.fixture(scope="session")
def hf_bf16(tiny_model_dir):
    """transformers on the tiny checkpoint in bfloat16: the bmodels' own number format, so
    greedy tokens are expected to match exactly (a difference must be a bf16 logit tie)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        unavailable(f"the parity reference needs torch and transformers (pip install 'streamproc[hf]'): {exc}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from streamproc.backends.hf import HfBackend
    from streamproc.config.model import HfBackendConfig

    backend = HfBackend(HfBackendConfig(model=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_qwen3_bf16(tiny_qwen3_dir):
    """transformers on the tiny Qwen3-VL checkpoint in bfloat16 (the Qwen3-VL fixtures' reference)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        unavailable(f"the parity reference needs torch and transformers (pip install 'streamproc[hf]'): {exc}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from streamproc.backends.hf import HfBackend
    from streamproc.config.model import HfBackendConfig

    backend = HfBackend(HfBackendConfig(model=str(tiny_qwen3_dir), device="cpu", dtype="bfloat16"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tpu_backend(runtime_dir, tiny_model_dir, tiny_qwen3_dir):
    """tpu_backend(fixture_name) -> a TpuBackend over that bmodel (with its family's tiny tokenizer
    folder), made once per session."""
    from streamproc.backends.tpu import TpuBackend
    from streamproc.config.model import TpuBackendConfig

    made = {}

    def get(name: str) -> TpuBackend:
        if name not in made:
            tokenizer = tiny_qwen3_dir if name.startswith("qwen3_") else tiny_model_dir  # each family's own
            config = TpuBackendConfig(bmodel=bmodel_path(name), tokenizer=tokenizer, runtime_dir=runtime_dir)
            made[name] = TpuBackend(config)
        return made[name]

    yield get
    for backend in made.values():
        backend.close()
