"""Qwen3-VL bmodels (made by `streamproc convert` from the tiny Qwen3-VL) on the simulator: greedy
tokens equal transformers' in bf16 on the same checkpoint, for text, one image, two images and a
4-frame video; the history build reuses its KV cache for a follow-up; the BM1688 build runs on
the BM1688 simulator.

The static fixture's vit takes an attention mask, so a video's frame pairs go in one call; the
history fixture's vit (a --dynamic build) takes none, so each pair is its own call. DeepStack
features are added after the first two decoder layers through the bmodel's `add` net.
"""
from __future__ import annotations

import numpy as np
import pytest

from streamproc.backends import GenerationParams

from .conftest import bmodel_path
from .support import assert_greedy_parity, child_report, run_child

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]

STATIC, HISTORY, BM1688 = "qwen3_static_bf16_s256_i128", "qwen3_history_bf16_s256_c64", "qwen3_bm1688_static_bf16_s256_i128"
PROMPT = "Describe what happens."
TOKENS = 4


def pictures(seed: int, *sizes: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]


def video(seed: int, frames: int = 4, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)


CASES = {
    "text": {},
    "one image": {"images": pictures(1, (96, 64))},
    "two images": {"images": pictures(2, (64, 96), (64, 64))},
    "4-frame video": {"video": video(3)},
}


@pytest.mark.parametrize("case", list(CASES))
def test_static_build_matches_transformers(case, tpu_backend, hf_qwen3_bf16):
    backend = tpu_backend(STATIC)
    info = backend.info
    assert (info.family, info.layout, info.deepstack_layers, info.vit_masked) == ("qwen3-vl", "static", 2, True)
    assert backend.capabilities.family.value == "qwen3-vl" and not backend.capabilities.keeps_history
    inputs = backend.inputs.build(PROMPT, fps=1.0, **CASES[case])
    if case == "4-frame video":
        assert len(backend.vision_chunks(inputs)) == 1  # both frame pairs in one masked call
        assert "<0.5 seconds>" in inputs.prompt and "<2.5 seconds>" in inputs.prompt
    tokens = backend.describe(inputs, GenerationParams(max_new_tokens=TOKENS)).token_ids
    assert assert_greedy_parity(hf_qwen3_bf16, inputs, tokens, TOKENS) == "exact"


def test_history_build_video_and_follow_up(tpu_backend, hf_qwen3_bf16):
    backend = tpu_backend(HISTORY)
    assert (backend.info.layout, backend.info.vit_masked, backend.capabilities.keeps_history) == ("history", False, True)
    inputs = backend.inputs.build(PROMPT, video=video(4), fps=1.0)
    assert len(backend.vision_chunks(inputs)) == 2  # no mask input: one frame pair a call
    first = backend.describe(inputs, GenerationParams(max_new_tokens=TOKENS))
    assert assert_greedy_parity(hf_qwen3_bf16, inputs, first.token_ids, TOKENS) == "exact"
    later = backend.inputs.follow_up(inputs, first.token_ids, "Is anyone there?")
    second = backend.follow_up(later, GenerationParams(max_new_tokens=TOKENS))
    assert backend._engine.history_length >= later.cached_tokens  # only the question was prefilled
    assert assert_greedy_parity(hf_qwen3_bf16, later, second.token_ids, TOKENS) == "exact"


def test_a_chunk_for_the_other_family_is_refused(native, tpu_backend, tiny_builder):
    from streamproc.backends.tpu import vision_chunks

    backend = tpu_backend(STATIC)
    qwen25 = tiny_builder.build("x", images=pictures(5, (56, 56)))
    engine = backend._engine
    with pytest.raises(native.InputError, match="another model family"):
        engine.prefill(qwen25.input_ids.astype(np.int32), qwen25.position_ids.astype(np.int32),
                       vision_chunks(qwen25, 128), next_position=qwen25.next_position)


BM1688_CHILD = """
import numpy as np
from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
backend = TpuBackend(TpuBackendConfig(bmodel=BMODEL, tokenizer=TOKENIZER, runtime_dir=RUNTIME))
image = np.random.default_rng(1).integers(0, 256, (96, 64, 3), dtype=np.uint8)
inputs = backend.inputs.build("Describe what happens.", images=[image])
result = backend.describe(inputs, GenerationParams(max_new_tokens=3))
emit({"chip": backend.info.chip, "family": backend.info.family, "tokens": list(result.token_ids)})
backend.close()
"""


def test_bm1688_build_on_the_bm1688_simulator(runtime_dir_bm1688, tiny_qwen3_dir, hf_qwen3_bf16):
    code = f"BMODEL, TOKENIZER, RUNTIME = {str(bmodel_path(BM1688))!r}, {str(tiny_qwen3_dir)!r}, {runtime_dir_bm1688!r}\n"
    proc, results = run_child(code + BM1688_CHILD, timeout=600)
    assert proc.returncode == 0 and results, child_report(proc)
    (result,) = results
    assert (result["chip"], result["family"]) == ("BM1688", "qwen3-vl")
    inputs = hf_qwen3_bf16.inputs.build("Describe what happens.", images=pictures(1, (96, 64)))
    assert assert_greedy_parity(hf_qwen3_bf16, inputs, result["tokens"], 3) == "exact"
