"""HfBackend.abort(): from another thread, the request in progress raises Aborted (not
retryable) at its next step; when idle it does nothing; the backend answers normally after."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.backends import GenerationParams  # noqa: E402
from streamproc.errors import Aborted  # noqa: E402

pytestmark = pytest.mark.hf


def test_abort_stops_the_request_in_progress(tiny_hf_backend):
    backend = tiny_hf_backend
    inputs = backend.inputs.build("Describe what happens in the video.")
    backend.abort()  # idle: no effect on the next request
    reference = backend.describe(inputs, GenerationParams(max_new_tokens=4)).token_ids
    steps = []

    def on_token(token: int) -> None:
        steps.append(token)
        if len(steps) == 2:  # abort from another thread while the request runs
            aborter = threading.Thread(target=backend.abort)
            aborter.start()
            aborter.join()

    with pytest.raises(Aborted) as caught:
        backend.describe(inputs, GenerationParams(max_new_tokens=50), on_token=on_token)
    assert not caught.value.retryable and len(steps) == 2
    assert backend.describe(inputs, GenerationParams(max_new_tokens=4)).token_ids == reference


def test_on_token_can_end_the_answer_and_the_backend_answers_normally_after(tiny_hf_backend):
    backend = tiny_hf_backend
    inputs = backend.inputs.build("Describe what happens in the video.")
    reference = backend.describe(inputs, GenerationParams(max_new_tokens=6))
    seen: list[int] = []

    def on_token(token: int) -> bool:
        seen.append(token)
        return len(seen) == 2  # the describer's early caption end (an onset waits elsewhere)

    ended = backend.describe(inputs, GenerationParams(max_new_tokens=50), on_token=on_token)
    if reference.finish_reason == "stop" and len(reference.token_ids) <= 2:
        pytest.skip("the tiny model stops by itself within 2 tokens")
    assert ended.token_ids == reference.token_ids[:2] and ended.finish_reason == "ended" and len(seen) == 2
    assert backend.describe(inputs, GenerationParams(max_new_tokens=6)).token_ids == reference.token_ids
