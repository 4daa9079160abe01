"""Bad bmodels, the wrong chip, a missing runtime and inputs that do not fit: each is a clear typed
error (streamproc._native's BmodelError / RuntimeNotFoundError / InputError, which TpuBackend turns
into ModelError / DeviceError / InputTooLarge), never a crash, and the engine stays usable.

Whatever could kill the process (libbmrt parsing a damaged file) or needs another runtime runs in
a child process, which must also exit cleanly.
"""
from __future__ import annotations

import numpy as np
import pytest

from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend, vision_chunks
from streamproc.config.model import TpuBackendConfig
from streamproc.errors import DeviceError, InputTooLarge, ModelError

from .conftest import bmodel_path
from .support import assert_greedy_parity, child_report, image, run_child, video

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]


def backend_config(path, tiny_model_dir, runtime_dir):
    return TpuBackendConfig(bmodel=path, tokenizer=tiny_model_dir, runtime_dir=runtime_dir)


def engine_prefill(engine, inputs, start=0, max_new_tokens=2):
    """prefill + generate straight on a native engine (what TpuBackend does, minus its checks)."""
    info = engine.info
    first = engine.prefill(
        np.ascontiguousarray(inputs.input_ids[start:], dtype=np.int32),
        np.ascontiguousarray(inputs.position_ids[:, start:], dtype=np.int32),
        vision_chunks(inputs, info.max_patches, start),
        next_position=inputs.next_position,
    )
    return engine.generate(first, max_new_tokens, [])


@pytest.fixture(scope="module")
def engine(native, runtime_dir):
    with native.Engine(str(bmodel_path("dynamic_bf16_s256")), 0, runtime_dir) as engine:
        yield engine


# -- files ------------------------------------------------------------------------------------


def test_missing_bmodel(native, runtime_dir, tmp_path, tiny_model_dir):
    missing = tmp_path / "nope.bmodel"
    with pytest.raises(native.BmodelError, match="missing or unreadable"):
        native.Engine(str(missing), 0, runtime_dir)
    with pytest.raises(ModelError, match="nope.bmodel"):
        TpuBackend(backend_config(missing, tiny_model_dir, runtime_dir))


def test_damaged_bmodels_are_refused_without_a_crash(runtime_dir, tmp_path):
    # In a child: libbmrt itself segfaults on some of these if the engine lets them through.
    real = bmodel_path("dynamic_bf16_s256").read_bytes()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, len(real), dtype=np.uint8).tobytes()
    files = {
        "random": noise,  # random bytes, the size of a real bmodel
        "header_then_noise": real[:64] + noise[64:],  # a valid header (magic, sizes), then garbage
        "truncated": real[: len(real) // 2],
        "empty": b"",
    }
    for name, data in files.items():
        (tmp_path / f"{name}.bmodel").write_bytes(data)
    code = f"""
import streamproc._native as native
for name in {list(files)!r}:
    try:
        native.Engine({str(tmp_path)!r} + "/" + name + ".bmodel", 0, {runtime_dir!r})
        emit([name, "loaded", ""])
    except native.NativeError as exc:
        emit([name, type(exc).__name__, str(exc)])
"""
    proc, results = run_child(code)
    assert proc.returncode == 0, child_report(proc)
    got = {name: (kind, message) for name, kind, message in results}
    expected = {
        "random": "not a bmodel (bad magic number)",
        "header_then_noise": "damaged",
        "truncated": "truncated",
        "empty": "file too small",
    }
    for name, text in expected.items():
        kind, message = got[name]
        assert kind == "BmodelError" and text in message and name in message, (name, kind, message)


def test_not_a_qwen_bmodel(native, runtime_dir, tiny_model_dir):
    path = bmodel_path("not_qwen_add")
    with pytest.raises(native.BmodelError, match=r"not a Qwen2\.5-VL or Qwen3-VL bmodel.*found not_qwen_add"):
        native.Engine(str(path), 0, runtime_dir)
    with pytest.raises(ModelError, match="not a Qwen2.5-VL or Qwen3-VL bmodel"):
        TpuBackend(backend_config(path, tiny_model_dir, runtime_dir))


def test_wrong_chip(native, runtime_dir, tiny_model_dir):
    path = bmodel_path("bm1688_dynamic_bf16_s128")
    with pytest.raises(native.BmodelError, match="built for BM1688, but the device is a BM1684X"):
        native.Engine(str(path), 0, runtime_dir)
    with pytest.raises(ModelError, match="BM1688"):
        TpuBackend(backend_config(path, tiny_model_dir, runtime_dir))


def test_runtime_not_found(tmp_path, tiny_model_dir):
    empty = tmp_path / "no-runtime"
    empty.mkdir()
    bmodel = str(bmodel_path("dynamic_bf16_s256"))
    code = f"""
import streamproc._native as native
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
from streamproc.errors import StreamprocError
try:
    native.Engine({bmodel!r}, 0, {str(empty)!r})
except native.NativeError as exc:
    emit(["explicit", type(exc).__name__, str(exc)])
try:  # $STREAMPROC_BMRT_DIR names the same empty folder
    TpuBackend(TpuBackendConfig(bmodel={bmodel!r}, tokenizer={str(tiny_model_dir)!r}))
except StreamprocError as exc:
    emit(["backend", type(exc).__name__, str(exc)])
emit(["loaded", native.runtime_path(), ""])
"""
    proc, results = run_child(code, env={"STREAMPROC_BMRT_DIR": str(empty)})
    assert proc.returncode == 0, child_report(proc)
    (explicit, backend, loaded) = results
    assert explicit[:2] == ["explicit", "RuntimeNotFoundError"]
    assert f"looked for {empty}/libbmlib.so" in explicit[2] and "STREAMPROC_BMRT_DIR" in explicit[2]
    assert backend[:2] == ["backend", "DeviceError"] and "not found" in backend[2]
    assert loaded[1] is None  # nothing half-loaded


# -- inputs -----------------------------------------------------------------------------------


def test_too_many_tokens(native, engine, tpu_backend, tiny_builder):
    long_text = " ".join(["a red car drives past the gate and a person walks a dog"] * 40)
    inputs = tiny_builder.build(long_text)  # no sequence limit in this builder
    assert inputs.total_tokens > engine.info.seq_length
    with pytest.raises(native.InputError, match="sequence length of 256"):
        engine_prefill(engine, inputs)
    backend = tpu_backend("dynamic_bf16_s256")
    with pytest.raises(InputTooLarge, match="sequence length"):
        backend.describe(inputs, GenerationParams(max_new_tokens=2))
    with pytest.raises(InputTooLarge):  # the backend's own builder refuses it before the engine
        backend.inputs.build(long_text)


def test_vit_chunk_larger_than_max_patches(native, engine, tpu_backend, tiny_builder):
    # Two 112x224 frame pairs: 256 patches, twice what one vit call of this bmodel takes.
    inputs = tiny_builder.build("What happens?", video=video(7, 4, 112, 224))
    chunks = vision_chunks(inputs, 10_000)  # one chunk of both pairs, as a careless caller would
    assert [c.patches for c in chunks] == [256]
    ids = np.ascontiguousarray(inputs.input_ids, dtype=np.int32)
    positions = np.ascontiguousarray(inputs.position_ids, dtype=np.int32)
    with pytest.raises(native.InputError, match="256 patches exceeds the bmodel's ViT limit of 128"):
        engine.prefill(ids, positions, chunks, next_position=inputs.next_position)
    # TpuBackend cuts videos into calls of whole frame pairs; a single pair (or image) larger
    # than the vit is refused before the engine: 128 patches on a 64-patch bmodel.
    small_vit = tpu_backend("sample_dynamic_bf16_s128")
    picture = tiny_builder.build("What is this?", images=[image(7, 112, 224)])
    with pytest.raises(InputTooLarge, match="exceeds the ViT's 64 patches"):
        small_vit.describe(picture, GenerationParams(max_new_tokens=2))


def test_malformed_calls(native, engine, tiny_builder):
    inputs = tiny_builder.build("Hello.", images=[image(8, 56, 56)])
    ids = np.ascontiguousarray(inputs.input_ids, dtype=np.int32)
    positions = np.ascontiguousarray(inputs.position_ids, dtype=np.int32)
    (layout,) = inputs.blocks[0].vit_chunks(128)
    window = layout.window
    with pytest.raises(native.InputError, match="position_ids has"):
        engine.prefill(ids, positions[:2], [], next_position=inputs.next_position)
    no_window = native.VisionChunk(layout.pixel_values, layout.position_ids, list(layout.grid_offsets))
    with pytest.raises(native.InputError, match="needs window_seqlens"):
        engine.prefill(ids, positions, [no_window], next_position=1)
    outside = native.VisionChunk(layout.pixel_values, layout.position_ids, [len(ids)],
                                 window_seqlens=window.cu_window_seqlens, reverse_index=window.reverse_index)
    with pytest.raises(native.InputError, match="outside the input"):
        engine.prefill(ids, positions, [outside], next_position=1)
    with pytest.raises(native.InputError, match="empty input"):
        engine.prefill(ids[:0], positions[:, :0], [], next_position=1)
    with pytest.raises(native.InputError, match="sampling needs"):
        engine.prefill(ids, positions, [], next_position=1, sampling=native.SamplingParams(do_sample=True, top_p=0.0))
    with pytest.raises(native.InputError, match="greedily only"):  # refused before anything runs
        engine.prefill(ids, positions, [], next_position=1, sampling=native.SamplingParams(do_sample=True))


def test_engine_still_answers_after_errors(engine, tiny_builder, hf_bf16):
    # The module's engine has refused everything above; it must still give transformers' answer.
    inputs = tiny_builder.build("Describe what happens in the video.")
    tokens = engine_prefill(engine, inputs, max_new_tokens=3)
    assert assert_greedy_parity(hf_bf16, inputs, tokens, 3) == "exact"


def test_closed_engine(native, runtime_dir, tpu_backend, tiny_builder):
    inputs = tiny_builder.build("Hi.")
    engine = native.Engine(str(bmodel_path("dynamic_bf16_s256")), 0, runtime_dir)
    engine.close()
    engine.close()  # twice is fine
    with pytest.raises(native.InputError, match="closed"):
        engine_prefill(engine, inputs)
    with pytest.raises(native.InputError, match="closed"):
        engine.decode(5)
    backend = TpuBackend(tpu_backend("dynamic_bf16_s256").config)
    backend.close()
    with pytest.raises(DeviceError, match="closed"):
        backend.describe(inputs, GenerationParams(max_new_tokens=2))


def test_third_turn_overflows_the_history(native, runtime_dir, tiny_builder, tpu_backend):
    """history_bf16_s256_c64 keeps 256 tokens: two turns fit, a long third one does not. The
    engine refuses it before touching the cache, and a short third turn still works."""
    words = "a person in a yellow jacket walks along the fence while a truck waits at the gate"
    turns = [" ".join([words] * 5), " ".join([words] * 3), " ".join([words] * 6)]
    with native.Engine(str(bmodel_path("history_bf16_s256_c64")), 0, runtime_dir) as engine:
        first = tiny_builder.build(turns[0])
        answer = engine_prefill(engine, first)
        second = tiny_builder.follow_up(first, answer, turns[1])
        assert engine.history_length == second.cached_tokens
        reply = engine_prefill(engine, second, start=second.cached_tokens)
        third = tiny_builder.follow_up(second, reply, turns[2])
        kept = engine.history_length
        assert kept == third.cached_tokens and third.total_tokens > engine.info.seq_length
        with pytest.raises(native.InputError, match=f"after {kept} in history"):
            engine_prefill(engine, third, start=third.cached_tokens)
        assert engine.history_length == kept  # nothing was written
        short = tiny_builder.follow_up(second, reply, "Yes?")
        engine_prefill(engine, short, start=short.cached_tokens)
        assert engine.history_length == short.total_tokens + 1
    # Through the backend, its builder knows the sequence length and refuses the request first.
    backend = tpu_backend("history_bf16_s256_c64")
    with pytest.raises(InputTooLarge, match="sequence length 256"):
        backend.inputs.follow_up(second, reply, turns[2])
