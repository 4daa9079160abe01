"""Segment plans from the token budget, and cutting frame streams into segments."""
from __future__ import annotations

import numpy as np
import pytest

from streamproc.config.ingest import SamplingConfig, SegmentingConfig
from streamproc.errors import InputTooLarge
from streamproc.frames import Frame, Gap
from streamproc.ingest.segmenter import plan_segments, segment_stream, segmenter_for


def frames(count, start=0.0, fps=1.0, size=(336, 448), source="s"):
    image = np.zeros((*size, 3), np.uint8)
    return [Frame(source, i, start + i / fps, start + i / fps, 1000.0 + i, image) for i in range(count)]


@pytest.mark.parametrize(
    "seq, size, expected_frames",
    [
        (2048, (336, 448), 20),  # (2048 - 128) // 192 = 10 pairs: 20 s
        (8192, (336, 448), 84),  # (8192 - 128) // 192 = 42 pairs: 84 s
        (2048, (280, 504), 20),  # 16:9 at 180 tokens a pair: 10 pairs
        (4096, (280, 504), 44),
        (512, (112, 112), 48),  # 16 tokens a pair: 24 pairs
    ],
)
def test_plans_come_from_the_budget(seq, size, expected_frames):
    plan = plan_segments(seq, *size, fps=1.0, prompt_reserve=64, answer_reserve=64)
    assert plan.frames == expected_frames
    assert plan.frames % 2 == 0
    assert plan.visual_tokens + 128 <= seq
    assert plan.visual_tokens + 128 + plan.tokens_per_pair > seq  # the largest that fits
    assert plan.duration_s == expected_frames


def test_plan_at_two_fps_and_caps():
    plan = plan_segments(2048, 336, 448, fps=2.0, prompt_reserve=64, answer_reserve=64)
    assert plan.frames == 20 and plan.duration_s == 10
    capped = plan_segments(8192, 336, 448, fps=1.0, prompt_reserve=64, answer_reserve=64, max_duration_s=30)
    assert capped.frames == 30
    overlap = plan_segments(2048, 336, 448, fps=1.0, prompt_reserve=64, answer_reserve=64, overlap_s=4)
    assert overlap.overlap_frames == 4


def test_plan_that_cannot_fit_is_a_clear_error():
    with pytest.raises(InputTooLarge, match="one pair of 448x336 frames needs 192"):
        plan_segments(256, 336, 448, fps=1.0, prompt_reserve=64, answer_reserve=64)


def _segmenter(seq=2048, overlap_s=0.0):
    return segmenter_for("s", SamplingConfig(), SegmentingConfig(overlap_s=overlap_s), seq)


def test_segments_of_a_finite_stream():
    segments = list(segment_stream(frames(45), _segmenter()))
    assert [len(s.frames) for s in segments] == [20, 20, 6]
    assert [(s.start, s.end) for s in segments] == [(0, 20), (20, 40), (40, 45)]
    assert [s.last for s in segments] == [False, False, True]
    assert segments[-1].padded  # 5 frames, last repeated
    assert segments[-1].frames[-1] is segments[-1].frames[-2]
    assert [s.index for s in segments] == [0, 1, 2]
    assert all(len(s.frames) % 2 == 0 for s in segments)


def test_exact_multiple_marks_the_final_segment_last():
    segments = list(segment_stream(frames(40), _segmenter()))
    assert [len(s.frames) for s in segments] == [20, 20]
    assert segments[-1].last and not segments[-1].padded


def test_overlap_repeats_frames():
    segments = list(segment_stream(frames(44), _segmenter(overlap_s=4)))
    assert [(s.start, s.end) for s in segments] == [(0, 20), (16, 36), (32, 44)]


def test_gap_closes_the_segment_and_flags_the_next():
    segmenter = _segmenter()
    out = []
    for frame in frames(7):
        out += segmenter.push(frame)
    out += segmenter.push(Gap("s", 30.0, 20.0, "stream resumed"))
    for frame in frames(20, start=30.0):
        out += segmenter.push(frame)
    out += segmenter.finish()
    assert [(s.start, len(s.frames), s.gap_before) for s in out] == [(0, 8, False), (30, 20, True)]


def test_frame_size_change_starts_a_new_segment():
    segmenter = _segmenter()
    out = []
    for frame in frames(6) + frames(4, start=6.0, size=(280, 504)):
        out += segmenter.push(frame)
    out += segmenter.finish()
    assert [(s.frame_size, len(s.frames)) for s in out] == [((336, 448), 6), ((280, 504), 4)]


def test_segment_ids_are_stable():
    first = list(segment_stream(frames(45), _segmenter()))
    again = list(segment_stream(frames(45), _segmenter()))
    assert [s.id for s in first] == [s.id for s in again]
    assert len({s.id for s in first}) == 3
