"""The native boundary on a loaded bmodel: ModelInfo and StepTimes as read-only attributes read
from the nets and the engine's timers, SamplingParams taken by every call, and a failed call
(a refused input, a sampling request on a greedy-only bmodel) leaving the history as before."""
from __future__ import annotations

import numpy as np
import pytest

from .conftest import bmodel_path

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]


def test_info_times_and_a_failed_call(native, runtime_dir, tiny_builder):
    engine = native.Engine(str(bmodel_path("history_bf16_s256_c64")), 0, runtime_dir)
    info = engine.info
    assert (info.layout, info.seq_length, info.max_input, info.supports_history) == ("history", 256, 64, True)
    assert info.runtime == engine.runtime_path and "block_kv_0" in info.nets and info.decode_stages == 3
    with pytest.raises(AttributeError):
        info.seq_length = 1
    inputs = tiny_builder.build("Hi.")
    ids = np.ascontiguousarray(inputs.input_ids, dtype=np.int32)
    positions = np.ascontiguousarray(inputs.position_ids, dtype=np.int32)
    engine.reset_times()
    first = engine.prefill(ids, positions, next_position=inputs.next_position, sampling=native.SamplingParams())
    tokens = engine.generate(first, 2, [], native.SamplingParams())
    times = engine.times()
    assert len(tokens) == 2 and 0 < times.prefill_device_s <= times.prefill_s and 0 < times.decode_device_s <= times.decode_s
    with pytest.raises(AttributeError):
        times.decode_s = 0.0
    kept = engine.history_length
    assert kept == len(ids) + 1
    # Failed calls leave the history as it was: refused before or after anything ran.
    with pytest.raises(native.InputError, match="greedily only"):
        engine.decode(tokens[-1], native.SamplingParams(do_sample=True))
    too_long = np.zeros(256, dtype=np.int32)
    with pytest.raises(native.InputError, match="does not fit"):
        engine.prefill(too_long, np.zeros((3, 256), dtype=np.int32), next_position=300)
    assert engine.history_length == kept
    engine.close()
    assert engine.info.seq_length == 256  # a copy: still readable after close
    with pytest.raises(native.InputError, match="closed"):
        engine.decode(tokens[-1])
