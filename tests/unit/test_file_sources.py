"""File sources on real generated videos: which frames are sampled, their size, and bad input."""
from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import pytest

from streamproc.config.ingest import SamplingConfig, SourceConfig
from streamproc.errors import MediaError, SourceError, SourceNotFound
from streamproc.frames import Frame
from streamproc.ingest.sources import VideoSource
from streamproc.samples import read_counter, write_audio_only


def read(path, **sampling) -> tuple[list[Frame], VideoSource]:
    source = VideoSource(SourceConfig(name="t", path=path), SamplingConfig(**sampling))
    return list(source.frames()), source


@pytest.mark.parametrize(
    "codec, suffix, fps",
    [
        ("h264", ".mp4", 30),
        ("h264", ".mkv", Fraction(30000, 1001)),
        ("h264", ".ts", 25),
        ("hevc", ".mp4", 25),
        ("mpeg4", ".avi", 25),  # without B-frames: AVI stores no pts and shifts them
        ("vp9", ".webm", 30),
    ],
)
def test_one_frame_per_second_nearest_the_grid(make_video, codec, suffix, fps):
    bframes = 0 if suffix == ".avi" else 2
    path = make_video(suffix, duration_s=8, fps=fps, width=640, height=480, codec=codec, gop=48, bframes=bframes)
    frames, source = read(path)
    rate = float(fps)
    assert 7 <= len(frames) <= 9
    for k, frame in enumerate(frames):
        number = read_counter(frame.image)
        # The sampled source frame is the one nearest k seconds: within half a frame interval.
        assert abs(number / rate - frames[0].media_time - k) <= 0.5 / rate + 1e-6, (k, number)
        assert abs(frame.media_time - frames[0].media_time - k) <= 0.5 / rate + 1e-6
        assert frame.image.shape == (336, 448, 3) and frame.image.dtype == np.uint8
        assert frame.source == "t" and frame.index == k and frame.wall_time > 0
    assert source.counters.sampled == len(frames)


def test_non_reference_frames_are_not_decoded(make_video):
    path = make_video(".mp4", duration_s=6, fps=30, width=320, height=240, bframes=2, gop=60)
    frames, source = read(path)
    assert len(frames) == 6
    # x264 with 2 B-frames and b-pyramid: a third of the frames are non-reference.
    assert source.counters.decoded < 0.75 * source.counters.packets


def test_variable_frame_rate(make_video):
    rng = np.random.default_rng(5)
    steps = rng.choice([1 / 50, 1 / 30, 1 / 24, 1 / 12, 0.1], size=400)
    times = np.concatenate([[0.0], np.cumsum(steps)])
    times = [float(t) for t in times if t < 12]
    path = make_video(".mp4", frame_times=times, width=320, height=240, bframes=2)
    frames, _ = read(path)
    assert len(frames) >= 11
    for k, frame in enumerate(frames):
        number = read_counter(frame.image)
        # The nearest frame to k seconds: within half the interval of the frames around k.
        before = max(t for t in times if t <= k + 1e-3)
        after = min((t for t in times if t >= k - 1e-3), default=before)
        assert abs(times[number] - k) <= (after - before) / 2 + 1e-3, (k, number, times[number])
        assert abs(frame.media_time - times[number]) < 2e-3


@pytest.mark.parametrize("size, expected", [((1080, 1920), (280, 504)), ((240, 320), (252, 308))])
def test_frames_are_scaled_to_the_model_size(make_video, size, expected):
    path = make_video(".mp4", duration_s=2, fps=10, width=size[1], height=size[0])
    frames, _ = read(path)
    assert {f.image.shape for f in frames} == {(*expected, 3)}


def test_sampling_rate_is_configurable(make_video):
    path = make_video(".mp4", duration_s=4, fps=30, width=320, height=240)
    frames, _ = read(path, fps=2.0)
    assert [read_counter(f.image) for f in frames] == [15 * k for k in range(8)]


# -- bad input --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(SourceNotFound, match=r"t: .*nope.mp4: no such file"):
        read(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(MediaError, match=r"the file is empty \(0 bytes\)"):
        read(path)


def test_directory(tmp_path):
    with pytest.raises(SourceError, match="is a directory"):
        read(tmp_path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError, match="not a readable video file"):
        read(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mkv"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError):
        read(path)


def test_audio_only_file(tmp_path):
    path = write_audio_only(tmp_path / "tone.m4a")
    with pytest.raises(MediaError, match="has no video track"):
        read(path)


def test_truncated_mp4_without_index(make_video, tmp_path):
    data = make_video(".mp4", duration_s=4, fps=25, width=320, height=240).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])  # the moov index sits at the end
    with pytest.raises(MediaError, match="not a readable video file"):
        read(path)


def test_truncated_stream_format_keeps_what_it_can(make_video, tmp_path, caplog):
    data = make_video(".ts", duration_s=10, fps=25, width=320, height=240).read_bytes()
    path = tmp_path / "truncated.ts"
    path.write_bytes(data[: len(data) // 2])
    frames, _ = read(path)
    assert 3 <= len(frames) <= 7


def test_corrupt_middle_is_skipped(make_video, tmp_path, caplog):
    data = bytearray(make_video(".ts", duration_s=10, fps=25, width=320, height=240, gop=25).read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    data[middle : middle + 20_000] = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.ts"
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        frames, _ = read(path)
    assert len(frames) >= 6  # frames before and after the damage
    assert frames[-1].media_time >= 8.5
    for frame in frames:  # no concealed garbage: every picture shows the frame of its time
        assert abs(read_counter(frame.image) - frame.media_time * 25) <= 1
