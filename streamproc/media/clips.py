"""Short MP4 clips of a segment, with PyAV.

Two ways, chosen per source:
- **remux** (files): the original packets of the segment's time range are copied into an MP4
  without re-encoding, starting at the keyframe at or before the segment's first frame (a clip
  cannot start between keyframes without re-encoding). Full resolution and quality, and cheap:
  about 0.1 s for 20 s of 720p (no decoding, no encoding).
- **encode** (live sources, or a file whose codec MP4 cannot hold): the live stream is gone by the
  time the model has answered, and only the sampled frames (model-sized, `sampling.fps`) are left,
  so they are encoded as H.264 in yuv420p with `faststart` (the index at the front): what every
  browser and phone plays inline. At 1 fps the clip is a slideshow of what the model saw.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

_MP4_OPTIONS = {"movflags": "+faststart"}
_REMUXABLE = {"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg"}  # video codecs an MP4 can hold


@dataclass(frozen=True)
class Clip:
    path: Path
    start: float  # media seconds (from the source's start) of the clip's first frame
    duration: float  # seconds
    method: str  # remux | encode


class ClipError(Exception):
    """This clip cannot be made this way (the caller falls back or goes without)."""


def remux_clip(source: Path, start_pts: float, end_pts: float, out: Path) -> Clip:
    """Copy the packets of [start_pts, end_pts) (stream seconds) of `source`'s video into `out`."""
    import av

    with av.open(str(source)) as container:
        if not container.streams.video:
            raise ClipError("no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name not in _REMUXABLE:
            raise ClipError(f"codec {stream.codec_context.name} is not remuxed into MP4")
        tb = stream.time_base
        origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        container.seek(int(start_pts / tb), stream=stream, backward=True, any_frame=False)
        packets = []
        for packet in container.demux(stream):
            if packet.dts is None or packet.pts is None:
                continue  # the demuxer's flush packet
            if not packets and not packet.is_keyframe:
                continue  # a clip starts at a keyframe
            if packet.dts * tb >= end_pts:
                break
            packets.append(packet)
        if not packets:
            raise ClipError(f"no packets between {start_pts:.3f} and {end_pts:.3f} s")
        first = min(p.pts for p in packets)
        last = max(p.pts + (p.duration or 0) for p in packets)
        shift = min(first, min(p.dts for p in packets))
        with av.open(str(out), "w", format="mp4", options=_MP4_OPTIONS) as output:
            copy = output.add_stream_from_template(stream)
            for packet in packets:
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = copy
                output.mux(packet)
    return Clip(out, float(first * tb) - origin, float((last - first) * tb), "remux")


def encode_clip(images: Sequence[np.ndarray], fps: float, out: Path) -> Clip:
    """Encode RGB frames taken at `fps` as a browser-playable H.264 MP4 (yuv420p, faststart)."""
    import av

    if not images:
        raise ClipError("no frames")
    height, width = images[0].shape[:2]
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(out), "w", format="mp4", options=_MP4_OPTIONS) as output:
        stream = output.add_stream("libx264" if "libx264" in av.codecs_available else "h264", rate=rate)
        stream.width, stream.height = width - width % 2, height - height % 2  # 4:2:0 needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"preset": "veryfast", "crf": "26", "tune": "stillimage"}
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: stream.height, : stream.width]), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return Clip(out, 0.0, len(images) / float(rate), "encode")


def probe_duration(path: Path) -> float:
    """Seconds of video in an MP4, from its packets (what a player shows)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base  # read while open: newer PyAV refuses a closed container's stream
        times = [(p.pts, p.duration or 0) for p in container.demux(stream) if p.pts is not None]
    if not times:
        return 0.0
    start = min(t for t, _ in times)
    end = max(t + d for t, d in times)
    return float((end - start) * time_base)
