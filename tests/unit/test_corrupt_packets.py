"""A file with damaged packets (issue 22): each damaged packet is counted on the source's counters,
each run of damage is logged once and counted as a burst, and the pictures predicted from the
damage are dropped until the next key frame, so nothing smeared reaches the gate or the model."""
from __future__ import annotations

import logging

import av
import numpy as np

from streamproc.config.ingest import SamplingConfig, SourceConfig
from streamproc.ingest.sources import VideoSource
from streamproc.samples import read_counter

FPS = 25


def damage(path, out, bursts: list[range]) -> list[int]:
    """Overwrite the middle of the given packets (by decode order) with random bytes; their pts."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size, p.pts * stream.time_base) for p in container.demux(stream) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(3)
    for burst in bursts:
        for index in burst:
            pos, size, _ = packets[index]
            start, length = pos + size // 3, size // 2
            data[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return [float(packets[b[0]][2]) for b in bursts]


def test_damaged_packets_are_counted_logged_once_per_burst_and_not_shown(make_video, tmp_path, caplog):
    clean = make_video(".mp4", duration_s=12, fps=FPS, width=320, height=240, gop=FPS * 2, bframes=0)
    path = tmp_path / "damaged.mp4"
    starts = damage(clean, path, [range(60, 63), range(205, 207)])  # 2.4-2.5 s and 8.2-8.3 s
    source = VideoSource(SourceConfig(name="yard", path=path), SamplingConfig())
    with caplog.at_level(logging.WARNING, logger="streamproc.ingest.sources"):
        frames = list(source.frames())
    warnings = [r for r in caplog.records if "damaged data" in r.getMessage()]
    assert len(warnings) == 2 and all(r.getMessage().startswith("yard: ") for r in warnings)
    assert source.counters.corrupt_bursts == 2
    assert 2 <= source.counters.corrupt <= 5  # the packets the decoder refused (some may decode)
    times = [round(f.media_time) for f in frames]
    # after each burst, pictures wait for the next key frame (every 2 s): 3 s and 9 s have none
    assert 3 not in times and 9 not in times and {0, 1, 2, 4, 5, 10, 11} <= set(times), (times, starts)
    for frame in frames:  # no concealed garbage: every picture shows its own frame number
        assert abs(read_counter(frame.image) - frame.media_time * FPS) <= 1


def test_a_clean_file_counts_no_damage(make_video):
    source = VideoSource(SourceConfig(name="yard", path=make_video(".mp4", duration_s=4, fps=FPS, width=320,
                                                                    height=240, gop=FPS * 2, bframes=0)), SamplingConfig())
    assert len(list(source.frames())) == 4
    assert source.counters.corrupt == 0 and source.counters.corrupt_bursts == 0
