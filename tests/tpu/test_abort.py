"""Aborting a native call from another thread, and the engine's state after an aborted or
failed call: the history as before the call, and the next call answering as if nothing happened
(greedy parity with transformers on the same conversation).

The engine checks its abort flag before every net launch and once more before a call returns;
these tests abort a long generate, a chunked prefill over a history, an idle engine, a
TpuBackend request, and close() an engine while another thread is inside generate.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamproc.backends import GenerationParams
from streamproc.errors import Aborted
from tests.support.ending import check_on_token_ends_the_answer

from .conftest import bmodel_path
from .support import assert_greedy_parity, child_report, run_child

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]

WORDS = "a person in a yellow jacket walks along the fence while a truck waits at the gate"


def prefill(engine, inputs, start=0):
    from streamproc.backends.tpu import vision_chunks

    return engine.prefill(
        np.ascontiguousarray(inputs.input_ids[start:], dtype=np.int32),
        np.ascontiguousarray(inputs.position_ids[:, start:], dtype=np.int32),
        vision_chunks(inputs, engine.info.max_patches, start),
        next_position=inputs.next_position,
    )


def in_thread(call):
    """Run `call` in a thread; returns (thread, outcome) where outcome fills with the result or error."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


@pytest.fixture(scope="module")
def history_engine(native, runtime_dir):
    with native.Engine(str(bmodel_path("history_bf16_s256_c64")), 0, runtime_dir) as engine:
        yield engine


def test_abort_a_long_generate_then_answer_as_before(native, history_engine, tiny_builder, hf_bf16):
    engine = history_engine
    engine.clear_history()
    inputs = tiny_builder.build("Describe what happens in the video.")
    first = prefill(engine, inputs)
    after_prefill = engine.history_length
    # 200 decode steps take minutes on the simulator: the abort lands in the middle.
    thread, outcome = in_thread(lambda: engine.generate(first, 200, []))
    time.sleep(2.0)
    engine.abort()
    thread.join(timeout=120)
    assert not thread.is_alive(), "generate did not stop after abort()"
    assert isinstance(outcome.get("error"), native.AbortedError), outcome
    assert engine.history_length == after_prefill  # generate's steps are rolled back
    tokens = engine.generate(first, 4, [])
    assert assert_greedy_parity(hf_bf16, inputs, tokens, 4) == "exact"


def test_abort_a_chunked_prefill_over_a_history(native, history_engine, tiny_builder, hf_bf16):
    """Turn 2 (> 64 tokens) runs as two block_kv chunks over turn 1's KV cache; aborted, the
    cache keeps turn 1 only, and running turn 2 again gives transformers' answer to both turns."""
    engine = history_engine
    engine.clear_history()
    turn1 = tiny_builder.build(" ".join([WORDS] * 2))
    answer = engine.generate(prefill(engine, turn1), 3, [])
    turn2 = tiny_builder.follow_up(turn1, answer, " ".join([WORDS] * 6))
    kept = engine.history_length
    assert kept == turn2.cached_tokens and turn2.total_tokens - kept > engine.info.max_input  # two chunks or more
    thread, outcome = in_thread(lambda: prefill(engine, turn2, start=turn2.cached_tokens))
    time.sleep(0.3)
    engine.abort()
    thread.join(timeout=120)
    assert isinstance(outcome.get("error"), native.AbortedError), outcome
    assert engine.history_length == kept
    tokens = engine.generate(prefill(engine, turn2, start=turn2.cached_tokens), 4, [])
    assert assert_greedy_parity(hf_bf16, turn2, tokens, 4) == "exact"


def test_a_refused_call_and_an_idle_abort_leave_the_history(native, history_engine, tiny_builder):
    engine = history_engine
    engine.clear_history()
    inputs = tiny_builder.build("Hi.")
    first = prefill(engine, inputs)
    kept = engine.history_length
    engine.abort()  # nothing runs: the next call is the one aborted, before any launch
    with pytest.raises(native.AbortedError):
        engine.decode(first)
    assert engine.history_length == kept
    with pytest.raises(native.InputError):  # refused (sampling on a greedy-only bmodel)
        engine.generate(first, 3, [], native.SamplingParams(do_sample=True))
    assert engine.history_length == kept
    engine.abort()
    engine.clear_abort()  # a pending abort can be dropped
    engine.decode(first)
    assert engine.history_length == kept + 1


def test_backend_abort_from_another_thread(tpu_backend):
    backend = tpu_backend("dynamic_bf16_s256")
    inputs = backend.inputs.build("Describe what happens in the video.")
    backend.abort()  # idle: a no-op, the next request runs
    reference = backend.describe(inputs, GenerationParams(max_new_tokens=3)).token_ids
    seen: list[int] = []

    def on_token(token: int) -> None:
        seen.append(token)
        if len(seen) == 2:  # abort from another thread while the request is in progress
            aborter = threading.Thread(target=backend.abort)
            aborter.start()
            aborter.join()

    with pytest.raises(Aborted) as caught:
        backend.describe(inputs, GenerationParams(max_new_tokens=100), on_token=on_token)
    assert not caught.value.retryable
    assert len(seen) == 2  # the decode step after the abort did not run
    assert backend.describe(inputs, GenerationParams(max_new_tokens=3)).token_ids == reference


def test_close_while_another_thread_is_inside_generate(runtime_dir, tiny_model_dir):
    """What crashed the service on stop: close() frees the engine while a worker is in a native
    call. close() now aborts that call and waits for it; the process exits cleanly."""
    code = f"""
import threading, time
import numpy as np
import streamproc._native as native
from streamproc.qwen import InputBuilder
builder = InputBuilder.from_pretrained({str(tiny_model_dir)!r})
inputs = builder.build("Describe what happens in the video.")
engine = native.Engine({str(bmodel_path("dynamic_bf16_s256"))!r}, 0, {runtime_dir!r})
first = engine.prefill(inputs.input_ids.astype(np.int32), inputs.position_ids.astype(np.int32), [],
                       next_position=inputs.next_position)
outcome = {{}}
def run():
    try:
        outcome["tokens"] = len(engine.generate(first, 200, []))
    except native.NativeError as exc:
        outcome["error"] = type(exc).__name__
worker = threading.Thread(target=run)
worker.start()
time.sleep(1.5)
engine.close()
worker.join()
emit(outcome)
"""
    proc, results = run_child(code, timeout=300)
    assert proc.returncode == 0, child_report(proc)
    assert results == [{"error": "AbortedError"}], child_report(proc)



def test_on_token_can_end_the_answer(tpu_backend):
    check_on_token_ends_the_answer(tpu_backend("dynamic_bf16_s256"), 4)
