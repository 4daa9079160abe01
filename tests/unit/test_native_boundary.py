"""The native module's Python face, without a runtime: SamplingParams defaults, read-only
ModelInfo/StepTimes types, and a docstring on every Engine binding saying what it returns and
what is thread-safe (the engine itself is tested on the simulator in tests/tpu)."""
from __future__ import annotations

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
        (native.ModelInfo, ["chip", "layout", "seq_length", "max_input", "max_patches", "supports_history", "runtime", "nets"]),
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
