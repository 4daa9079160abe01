"""Frame size rule and the 1 fps frame selector, without video."""
from __future__ import annotations

import random

import pytest

from streamproc.config.ingest import SamplingConfig
from streamproc.errors import MediaError
from streamproc.ingest.sampling import FrameSelector, model_frame_size, smart_resize, tokens_per_frame_pair


@pytest.mark.parametrize(
    "source, expected",
    [
        ((480, 640), (336, 448)),  # 4:3 -> the quarter of 672x896
        ((1080, 1920), (280, 504)),
        ((720, 1280), (280, 504)),
        ((2160, 3840), (280, 504)),
        ((240, 320), (252, 308)),  # small sources are only rounded to multiples of 28
        ((1920, 1080), (504, 280)),  # portrait
    ],
)
def test_model_frame_size(source, expected):
    assert model_frame_size(*source, SamplingConfig()) == expected


def test_smart_resize_matches_qwen_vl_utils():
    reference = pytest.importorskip("qwen_vl_utils.vision_process")
    rng = random.Random(7)
    for _ in range(500):
        height, width = rng.randint(28, 4000), rng.randint(28, 4000)
        if max(height, width) / min(height, width) > 200:
            continue
        max_pixels = rng.choice([112 * 112, 336 * 448, 672 * 896, 1280 * 28 * 28])
        min_pixels = rng.choice([4 * 28 * 28, 56 * 56])
        ours = smart_resize(height, width, 28, min_pixels, max_pixels)
        theirs = reference.smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
        if min(theirs) == 0:  # theirs floors very thin frames to 0 px; ours keeps one token row
            assert min(ours) == 28
            continue
        assert ours == tuple(theirs), (height, width, max_pixels)


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(MediaError, match="aspect ratio"):
        smart_resize(10, 3000)


def test_tokens_per_frame_pair():
    assert tokens_per_frame_pair(336, 448) == 192
    assert tokens_per_frame_pair(280, 504) == 180


def _decode_order(pts_list, bframes):
    """Reorder presentation-order pts into a typical decode order: the I frame, then each P
    before the B frames that precede it in presentation order."""
    order, i = [pts_list[0]], 1
    while i < len(pts_list):
        group = pts_list[i : i + bframes + 1]
        order.append(group[-1])
        order.extend(group[:-1])
        i += bframes + 1
    return order


def _run_selector(pts_list, duration_of, fps=1.0, bframes=2, nonref=lambda k: False, frame_duration=1 / 30):
    """Simulate a decoder: packets in decode order, frames out in presentation order after a
    reorder delay of `bframes` frames. Frames whose packet was not wanted and which are
    non-reference are not decoded. Returns (sampled times, number of decoded frames)."""
    selector = FrameSelector(fps, frame_duration)
    index_of = {pts: k for k, pts in enumerate(pts_list)}
    reorder: list[float] = []
    sampled: list[float] = []
    decoded = 0

    def output(keep: int) -> None:
        reorder.sort()
        while len(reorder) > keep:
            t = reorder.pop(0)
            sampled.extend(time for time, _ in selector.offer(t, None))

    for pts in _decode_order(pts_list, bframes):
        if selector.want_packet(pts, duration_of(pts)) or not nonref(index_of[pts]):
            reorder.append(pts)
            decoded += 1
        output(bframes)
    output(0)
    sampled.extend(time for time, _ in selector.flush())
    return sampled, decoded


@pytest.mark.parametrize("rate", [25.0, 30.0, 30000 / 1001])
def test_selector_constant_rate(rate):
    count = int(60 * rate)
    pts_list = [k / rate for k in range(count)]
    # With two B-frames per P, one of them non-reference (as in x264's b-pyramid).
    nonref = lambda k: k % 3 == 1  # noqa: E731
    sampled, decoded = _run_selector(pts_list, lambda t: 1 / rate, nonref=nonref, frame_duration=1 / rate)
    assert len(sampled) == 60
    for k, t in enumerate(sampled):
        assert abs(t - k) <= 0.5 / rate + 1e-9
    # Non-reference frames that no target needs are skipped.
    assert decoded < count - count // 3 + 61


def test_selector_variable_rate():
    rng = random.Random(3)
    times, t = [], 0.0
    while t < 40:
        times.append(t)
        t += rng.choice([1 / 60, 1 / 30, 1 / 24, 1 / 15, 0.1])
    # Durations as containers often report them for VFR: the nominal rate, not the real gaps.
    sampled, _ = _run_selector(times, lambda t: 1 / 30, nonref=lambda k: k % 2 == 1)
    assert len(sampled) == 40
    for k, t in enumerate(sampled):
        # The nearest frame: within half the local frame interval of the target.
        before = max(x for x in times if x <= k)
        after = min(x for x in times if x >= k)
        assert abs(t - k) <= (after - before) / 2 + 1e-9


def test_selector_skips_only_for_constant_rate():
    selector = FrameSelector(1.0, 1 / 30)
    selector.start_at(0.0)
    assert selector.want_packet(0.0, 1 / 30)  # the frame at the target
    assert not selector.want_packet(2 / 30, 1 / 30) and not selector.variable_rate
    selector.want_packet(0.5 + 1 / 90, 1 / 30)  # off the 30 fps grid
    assert selector.variable_rate and selector.want_packet(0.6, 1 / 30)


def test_selector_other_rates_and_start_offset():
    pts_list = [1.4 + k / 30 for k in range(300)]
    sampled, _ = _run_selector(pts_list, lambda t: 1 / 30, fps=2.0)
    assert [round(t - 1.4, 3) for t in sampled] == [k / 2 for k in range(20)]


def test_selector_gap_skips_targets():
    pts_list = [k / 10 for k in range(30)] + [10 + k / 10 for k in range(30)]
    sampled, _ = _run_selector(pts_list, lambda t: 0.1, bframes=0, frame_duration=0.1)
    # 2.9 is the frame nearest 3 (the next is at 10); nothing for 4..9; 12.9 is too far from 13.
    assert [round(t, 3) for t in sampled] == [0, 1, 2, 2.9, 10, 11, 12]


def test_selector_holds_a_frame_before_the_target_until_the_next_one():
    selector = FrameSelector(1.0)
    selector.start_at(0.0)
    assert [t for t, _ in selector.offer(0.0, "a")] == [0.0]
    assert selector.offer(0.96, "b") == []  # nearer than anything before; wait for the next
    assert [item for _, item in selector.offer(1.1, "c")] == ["b"]
    assert selector.offer(1.9, "d") == []
    assert selector.flush() == []  # 0.1 s from its target, more than half a frame: dropped
    selector.offer(2.99, "e")
    assert [item for _, item in selector.flush()] == ["e"]


def test_selector_unknown_timestamps_are_decoded():
    selector = FrameSelector(1.0)
    assert selector.want_packet(None, 1 / 30)
