"""Synthetic segments and model results for sink and rule tests (no video, no model)."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from streamproc.backends.base import Result, Timings
from streamproc.frames import Frame, Segment


def make_segment(
    source: str = "cam1",
    index: int = 0,
    *,
    duration: float = 2.0,
    fps: float = 1.0,
    start: Optional[float] = None,
    size: tuple[int, int] = (56, 84),
    wall: Optional[float] = None,
) -> Segment:
    """Segment `index` of `source`: consecutive windows of `duration` seconds from media time 0."""
    start = index * duration if start is None else start
    count = max(2, int(round(duration * fps)))
    count += count % 2
    wall0 = time.time() if wall is None else wall
    frames = []
    for i in range(count):
        image = np.full((size[0], size[1], 3), (index * 37 + i * 11) % 256, dtype=np.uint8)
        image[:, : size[1] // 3, 0] = 200  # not a flat image, so JPEG round trips mean something
        frames.append(Frame(source, index * count + i, start + i / fps, start + i / fps, wall0 + i / fps, image))
    return Segment(source, index, tuple(frames), start, start + count / fps, fps)


def make_result(text: str = "A person walks past a parked car.", model: str = "test-model") -> Result:
    return Result(
        text=text,
        prompt_tokens=420,
        visual_tokens=384,
        generated_tokens=12,
        model=model,
        timings=Timings(preprocess_s=0.01, vision_s=0.2, prefill_s=0.1, decode_s=0.3, total_s=0.61),
    )


def stand_in_capabilities(follow_up: bool = False):
    """What a test's stand-in backend declares (streamproc.backends.base.BackendCapabilities): no
    hard context, no KV history, greedy only, no token stream."""
    from streamproc.backends.base import BackendCapabilities

    return BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=follow_up,
                               sampling=False, streaming=False)
