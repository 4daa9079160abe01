"""Describe one segment (or images) with any backend: build the inputs once, run, return a Result.

The service and the `caption` command call this; it knows segments and prompts, not models.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import numpy as np

from .backends.base import Backend, GenerationParams, Result
from .config.model import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT
from .frames import Segment

log = logging.getLogger(__name__)


def describe_segment(
    backend: Backend,
    segment: Segment,
    prompt: str = DEFAULT_USER_PROMPT,
    *,
    system: Optional[str] = DEFAULT_SYSTEM_PROMPT,
    params: Optional[GenerationParams] = None,
    answer_reserve: int = 1,
) -> Result:
    """The backend's answer to `prompt` about the segment's frames (one video block).

    With a backend of fixed sequence length, the request must leave `answer_reserve` tokens for
    the answer (InputTooLarge otherwise); the answer itself stops at the sequence length.
    """
    params = params or GenerationParams()
    started = time.perf_counter()
    inputs = backend.inputs.build_segment(segment, prompt, system=system, answer_reserve=answer_reserve)
    prepared = time.perf_counter() - started
    result = backend.describe(inputs, params)
    result.timings.preprocess_s = prepared
    result.timings.total_s += prepared
    log.debug(
        "segment %s: %d tokens (%d visual), %d generated in %.2f s",
        segment.id, result.prompt_tokens, result.visual_tokens, result.generated_tokens, result.timings.total_s,
    )
    return result


def describe_images(
    backend: Backend,
    images: Sequence[np.ndarray],
    prompt: str,
    *,
    system: Optional[str] = DEFAULT_SYSTEM_PROMPT,
    params: Optional[GenerationParams] = None,
    answer_reserve: int = 1,
) -> Result:
    """The backend's answer about one or more images (each its own vision block)."""
    params = params or GenerationParams()
    started = time.perf_counter()
    inputs = backend.inputs.build(prompt, images=list(images), system=system, answer_reserve=answer_reserve)
    prepared = time.perf_counter() - started
    result = backend.describe(inputs, params)
    result.timings.preprocess_s = prepared
    result.timings.total_s += prepared
    return result
