"""The native module's Python face, without a runtime: SamplingParams defaults, read-only
ModelInfo/StepTimes types, the typed VisionChunk (made from a family's ViT chunk, validated at
construction), a docstring on every Engine binding saying what it returns and what is
thread-safe (the engine itself is tested on the simulator in tests/tpu; that backends/tpu.py is
the module's only importer, in test_import_graph.py)."""
from __future__ import annotations

import numpy as np
import pytest

native = pytest.importorskip("streamproc._native", reason="the native extension is not built")


def test_sampling_params_defaults_are_greedy():
    params = native.SamplingParams()
    assert (params.do_sample, params.temperature, params.top_p, params.top_k, params.repetition_penalty) == (
        False, 1.0, 1.0, 50, 1.0)
    hot = native.SamplingParams(do_sample=True, temperature=0.7, top_k=5)
    assert hot.do_sample and hot.top_k == 5 and hot.top_p == 1.0 and abs(hot.temperature - 0.7) < 1e-6
    assert "top_k=5" in repr(hot)
    with pytest.raises(TypeError):
        native.SamplingParams(True)  # keywords only: five positional floats were the old trap


def test_info_and_times_are_read_only_types():
    for cls, names in [
        (native.ModelInfo, ["chip", "family", "layout", "seq_length", "max_input", "max_patches", "patch_features",
                            "deepstack_layers", "vit_masked", "supports_history", "runtime", "nets"]),
        (native.StepTimes, ["vit_s", "prefill_s", "decode_s", "vit_device_s", "copies_s", "lock_wait_s"]),
    ]:
        for name in names:
            attribute = getattr(cls, name)
            assert isinstance(attribute, property) and attribute.fset is None, f"{cls.__name__}.{name}"


def test_every_engine_binding_is_documented():
    for name in ["prefill", "decode", "generate", "abort", "close", "times", "info", "truncate_history"]:
        doc = getattr(native.Engine, name).__doc__ or ""
        assert len(doc.split("\n")[-1]) > 20 or len(doc) > 80, name
    doc = native.Engine.__doc__
    assert "Ownership" in doc and "Threads" in doc and "before that call" in doc
    assert "return" in native.Engine.prefill.__doc__ and "Thread-safe" in native.Engine.abort.__doc__


def chunk_args(block, max_patches=None):
    (chunk,) = block.vit_chunks(max_patches)
    window, taps = chunk.window, chunk.interpolation
    return chunk, dict(
        window_seqlens=None if window is None else window.cu_window_seqlens,
        reverse_index=None if window is None else window.reverse_index,
        pos_idx=None if taps is None else taps.pos_idx,
        pos_weight=None if taps is None else taps.pos_weight,
    )


def test_vision_chunks_of_both_families(tiny_builder, tiny_qwen3_builder):
    rng = np.random.default_rng(0)
    video25 = tiny_builder.build("x", video=rng.integers(0, 256, (4, 56, 84, 3), dtype=np.uint8))
    chunk, extra = chunk_args(video25.blocks[0])
    made = native.VisionChunk(chunk.pixel_values, chunk.position_ids, list(chunk.grid_offsets), **extra)
    assert (made.patches, made.features, made.grids, made.tokens) == (48, 1176, 2, 12)
    assert made.has_window and not made.has_position_grid
    # Qwen2.5-VL: one vision block, its frame pairs' tokens back to back.
    assert made.grid_offsets[1] - made.grid_offsets[0] == 6
    video3 = tiny_qwen3_builder.build("x", video=rng.integers(0, 256, (4, 64, 96, 3), dtype=np.uint8))
    chunk, extra = chunk_args(video3.blocks[0])
    made = native.VisionChunk(chunk.pixel_values, chunk.position_ids, list(chunk.grid_offsets), **extra)
    assert (made.patches, made.features, made.grids, made.tokens) == (48, 1536, 2, 12)
    assert made.has_position_grid and not made.has_window
    # Qwen3-VL: a timestamp and vision markers between the frame pairs' tokens.
    assert made.grid_offsets[1] - made.grid_offsets[0] > 6
    assert "VisionChunk(patches=48" in repr(made)


def test_malformed_chunks_are_refused_when_made():
    rows = np.zeros((16, 1536), np.float32)
    ids = np.zeros((16, 2), np.int32)
    with pytest.raises(native.InputError, match="position_ids has 16 values, expected 32"):
        native.VisionChunk(rows, ids[:8], [0])
    with pytest.raises(native.InputError, match="whole frame pairs"):
        native.VisionChunk(rows, ids, [0, 4, 8])  # 16 patches do not split in 3 grids
    with pytest.raises(native.InputError, match="positive multiple of 4 patches"):
        native.VisionChunk(rows[:6], ids[:6], [0])
    with pytest.raises(native.InputError, match="pos_idx has"):
        native.VisionChunk(rows, ids, [0], pos_idx=np.zeros((16, 3), np.int32))
    with pytest.raises(native.InputError, match="must not be negative"):
        native.VisionChunk(rows, ids, [-1])
    with pytest.raises(TypeError):
        native.VisionChunk(rows, ids, [0], None, None)  # the family parts are keywords only

