"""Engine lifetime: no leak over repeated load/free, a clean exit without close(), the BM1688
fixture running on its own runtime, and the ABI the engine declares for libbmrt's structs."""
from __future__ import annotations

import numpy as np
import pytest

from streamproc.qwen import block_mask

from .conftest import bmodel_path
from .support import assert_greedy_parity, child_report, image, run_child

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]


LEAK_CHILD = """
import streamproc._native as native
path, wrong_chip, runtime = {path!r}, {wrong_chip!r}, {runtime!r}

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

def cycle():
    engine = native.Engine(path, 0, runtime)
    engine.info
    engine.close()
    try:  # a refused load must not leak either
        native.Engine(wrong_chip, 0, runtime)
    except native.BmodelError:
        pass
    native.Engine(path, 0, runtime)  # freed by its destructor, no close()

for _ in range(3):  # warm-up: the first loads fill libbmrt's process-wide caches
    cycle()
before = rss_mib()
for _ in range(20):
    cycle()
alone = rss_mib() - before
# With another engine open, closed engines are parked, not freed (see Engine::close), until the
# last engine on the device closes: then all of them go. The first rounds grow the C heap
# (which keeps its pages); later rounds must fit in what earlier ones freed.
def parked_round():
    keeper = native.Engine(path, 0, runtime)
    for _ in range(10):
        cycle()
    keeper.close()

for _ in range(3):
    parked_round()
settled = rss_mib()
for _ in range(3):
    parked_round()
emit({{"alone": alone, "parked_rounds": rss_mib() - settled}})
"""


def test_load_and_free_does_not_leak(runtime_dir):
    # In a child: the session's own engines would keep every closed engine parked.
    code = LEAK_CHILD.format(
        path=str(bmodel_path("dynamic_bf16_s256")), wrong_chip=str(bmodel_path("bm1688_dynamic_bf16_s128")),
        runtime=runtime_dir,
    )
    proc, results = run_child(code)
    assert proc.returncode == 0 and results, child_report(proc)
    (grown,) = results
    # One engine holds ~9 MB of bmodel in (simulated) device memory plus host-side tables:
    # 40 loads that leaked would grow by hundreds of MiB.
    assert grown["alone"] < 8 and grown["parked_rounds"] < 8, grown


def test_closing_engines_does_not_break_later_loads(runtime_dir, tiny_model_dir, tiny_builder, hf_bf16):
    """Three engines open, two closed, then a static bmodel loaded: libbmrt lays it out wrongly on
    device memory fragmented by the two frees (all-zero tokens) unless the engine parks closed
    engines until the device is idle. In a child, for a known memory layout."""
    prompt = "Describe what happens in the video."
    code = f"""
import streamproc._native as native
from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
dynamic = {str(bmodel_path("dynamic_bf16_s256"))!r}
kept, first, second = (native.Engine(dynamic, 0, {runtime_dir!r}) for _ in range(3))
second.close()
first.close()
static = TpuBackend(TpuBackendConfig(bmodel={str(bmodel_path("static_bf16_s128"))!r},
                                     tokenizer={str(tiny_model_dir)!r}, runtime_dir={runtime_dir!r}))
emit(list(static.describe(static.inputs.build({prompt!r}), GenerationParams(max_new_tokens=3)).token_ids))
"""
    proc, results = run_child(code)
    assert proc.returncode == 0 and results, child_report(proc)
    assert assert_greedy_parity(hf_bf16, tiny_builder.build(prompt), results[0], 3) == "exact"


def test_exit_without_close_is_clean(runtime_dir, tiny_model_dir):
    """libbmrt's static destructors crash if runtimes outlive the interpreter: the backend's atexit
    hook closes its engines, and bare engines are freed by their destructors at shutdown."""
    code = f"""
import numpy as np
import streamproc._native as native
from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
path = {str(bmodel_path("dynamic_bf16_s256"))!r}
bare = [native.Engine(path, 0, {runtime_dir!r}) for _ in range(2)]
cycle = {{"engine": native.Engine(path, 0, {runtime_dir!r})}}
cycle["self"] = cycle  # only the cycle collector frees this one
backend = TpuBackend(TpuBackendConfig(bmodel=path, tokenizer={str(tiny_model_dir)!r}, runtime_dir={runtime_dir!r}))
result = backend.describe(backend.inputs.build("Hi."), GenerationParams(max_new_tokens=2))
emit(list(result.token_ids))
# mid-conversation: the KV cache of this engine holds the answer when the process ends
"""
    proc, results = run_child(code)
    assert proc.returncode == 0 and len(results) == 1, child_report(proc)
    output = proc.stdout + proc.stderr
    assert "Segmentation fault" not in output and "ASSERT" not in output, child_report(proc)


def test_bm1688_bmodel_runs_on_its_runtime(runtime_dir_bm1688, tiny_model_dir, tiny_builder, hf_bf16):
    """The 2-core BM1688 build on its own simulator, text and an image (its vit), in a child.

    Two things only this chip shows: libbmrt turns shared neuron memory on by default only for
    single-core chips (without it a BM1688 net's memory is not device memory: the firmware
    asserts on the first dynamic launch), and the BM1688 simulator's firmware asserts on every
    device-to-device copy, so the engine stages those through the host there."""
    prompts = {"text": ("Describe what happens in the video.", None), "image": ("What is this?", [image(9, 112, 112)])}
    code = f"""
from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
from tests.tpu.support import image
backend = TpuBackend(TpuBackendConfig(bmodel={str(bmodel_path("bm1688_dynamic_bf16_s128"))!r},
                                      tokenizer={str(tiny_model_dir)!r}, runtime_dir={runtime_dir_bm1688!r}))
runs = {{}}
for name, (prompt, images) in {{"text": ({prompts["text"][0]!r}, None), "image": ({prompts["image"][0]!r}, [image(9, 112, 112)])}}.items():
    result = backend.describe(backend.inputs.build(prompt, images=images), GenerationParams(max_new_tokens=4))
    runs[name] = list(result.token_ids)
emit({{"chip": backend.info.chip, "runtime": backend.info.runtime, "tokens": runs}})
"""
    proc, results = run_child(code, env={"STREAMPROC_BMRT_DIR": runtime_dir_bm1688})
    assert proc.returncode == 0 and results, child_report(proc)
    (run,) = results
    assert run["chip"] == "BM1688" and "bm1688" in run["runtime"]
    for name, (prompt, images) in prompts.items():
        inputs = tiny_builder.build(prompt, images=images)
        assert assert_greedy_parity(hf_bf16, inputs, run["tokens"][name], 4) == "exact", name


def test_abi_sizes_are_pinned(native):
    # x86_64, libbmrt 1.30.2 (and libsophon's bmdef.h): bm_device_mem_t, bm_shape_t, bm_tensor_t.
    assert native.abi_sizes() == {
        "device_mem": 24,
        "shape": 36,
        "tensor": 72,
        "tensor.shape": 4,
        "tensor.device_mem": 40,
        "tensor.st_mode": 64,
    }


def test_vit_block_mask_matches_python(native):
    rng = np.random.default_rng(0)
    for _ in range(25):
        runs = rng.integers(1, 40, size=rng.integers(1, 6))
        cu = np.concatenate([[0], np.cumsum(runs)]).astype(np.int32)
        pad = int(rng.integers(0, 20))
        size = int(cu[-1]) + pad
        expected = block_mask(cu, pad_to=size if pad else None)[0, 0]
        np.testing.assert_array_equal(native.vit_block_mask(cu.tolist(), size), expected)
