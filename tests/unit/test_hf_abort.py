"""HfBackend.abort(): from another thread, the request in progress raises Aborted (not
retryable) at its next step; when idle it does nothing; the backend answers normally after."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.backends import GenerationParams  # noqa: E402
from streamproc.errors import Aborted  # noqa: E402
from tests.support.ending import check_on_token_ends_the_answer  # noqa: E402

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
    check_on_token_ends_the_answer(tiny_hf_backend, 6)
