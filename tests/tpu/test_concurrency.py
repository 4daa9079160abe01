"""Two engines over one bmodel in one process, driven from two threads at once.

libbmrt shares the weights of identical bmodels between runtimes, and (1.30.2) also places the
embedding and vit nets' inputs and outputs at the same device addresses in every runtime: two
engines that interleave "write inputs, launch, read outputs" of those nets corrupt each other's
answers. The engine holds a per-device turn for each such step; this test runs two streams'
requests (each with an image, so both nets are involved) concurrently and checks every answer
equals the one a single engine gives alone. (Without the per-device turn, a lighter version of
this test, one request per thread, failed in two of three runs with all-zero or wrong tokens.) It also checks the GIL is released while the engines
work: a Python thread keeps ticking every few milliseconds through seconds of native calls.
"""
from __future__ import annotations

import threading
import time

import pytest

from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend

from .support import image

pytestmark = pytest.mark.slow

PARAMS = GenerationParams(max_new_tokens=2)


def requests(builder):
    return {
        "a": builder.build("What is in the picture?", images=[image(21, 56, 56)]),
        "b": builder.build("Is the gate open or closed?", images=[image(22, 56, 112)]),
    }


def overlaps(a, b) -> bool:
    return a[1] < b[1] + b[2] and b[1] < a[1] + a[2]


def test_engines_keep_their_buffers_and_cache_to_themselves(tpu_backend):
    """What each engine writes outside a device turn (its hidden-state buffers, its KV cache)
    must not be memory another engine uses; net I/O memory may be shared (that is what the turn
    is for). libbmrt 1.30.2 does share the embedding and vit nets' I/O between runtimes."""
    one = tpu_backend("dynamic_bf16_s256")
    two = TpuBackend(one.config)
    try:
        first, second = one._engine.memory_map(), two._engine.memory_map()
        for mine, theirs in ((first, second), (second, first)):
            clashes = [(a, b) for a in mine if a[3] for b in theirs if overlaps(a, b)]
            assert not clashes, clashes[:5]
    finally:
        two.close()


def test_two_engines_two_threads_same_answers(tpu_backend):
    one = tpu_backend("dynamic_bf16_s256")
    two = TpuBackend(one.config)  # a second engine over the same bmodel
    try:
        inputs = requests(one.inputs)
        alone = {name: one.describe(item, PARAMS).token_ids for name, item in inputs.items()}

        answers: dict[tuple[str, str], tuple] = {}
        errors: list[BaseException] = []

        def stream(label, backend, order):
            try:
                for name in order:
                    answers[(label, name)] = backend.describe(inputs[name], PARAMS).token_ids
            except BaseException as exc:  # re-raised in the main thread
                errors.append(exc)

        ticks: list[float] = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(time.perf_counter())
                time.sleep(0.005)

        threads = [
            threading.Thread(target=stream, args=("one", one, ["a", "b"])),
            threading.Thread(target=stream, args=("two", two, ["b", "a"])),
        ]
        clock = threading.Thread(target=ticker)
        clock.start()
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        ended = time.perf_counter()
        stop.set()
        clock.join()
        assert not errors, errors
        assert answers == {(label, name): alone[name] for label in ("one", "two") for name in ("a", "b")}

        # The GIL is released during native calls: the ticker never stalled for long while the
        # engines ran for several seconds (holding it through one prefill would stall it for
        # that whole call).
        inside = [t for t in ticks if began <= t <= ended]
        gaps = [b - a for a, b in zip(inside, inside[1:])]
        assert ended - began > 1.0
        assert len(inside) > 50 and max(gaps) < 0.5, (len(inside), max(gaps, default=None))
    finally:
        two.close()
