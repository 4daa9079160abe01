"""The streaming contract both model backends keep: an `on_token` that returns True ends the
answer after that token (the describer ends a caption early for an onset elsewhere)."""
from __future__ import annotations

from typing import Any

from streamproc.backends import GenerationParams


def check_on_token_ends_the_answer(backend: Any, reference_tokens: int) -> None:
    """The answer stops after the second token, as the first two tokens of the full answer, with
    finish_reason "ended"; the backend answers normally after."""
    inputs = backend.inputs.build("Describe what happens in the video.")
    reference = backend.describe(inputs, GenerationParams(max_new_tokens=reference_tokens))
    assert len(reference.token_ids) > 2 and reference.finish_reason == "length", "the tiny model stopped by itself"
    seen: list[int] = []

    def on_token(token: int) -> bool:
        seen.append(token)
        return len(seen) == 2

    ended = backend.describe(inputs, GenerationParams(max_new_tokens=50), on_token=on_token)
    assert ended.token_ids == reference.token_ids[:2] and ended.finish_reason == "ended" and len(seen) == 2
    assert backend.describe(inputs, GenerationParams(max_new_tokens=reference_tokens)).token_ids == reference.token_ids
