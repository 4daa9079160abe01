"""Synthetic test and demo videos, written with PyAV.

Each frame shows a textured background, a moving shape and a burned-in counter: the frame number
as a row of black/white blocks across the top, large enough to survive scaling to the model size
and lossy coding, so tests can tell exactly which source frames were sampled (`read_counter`).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

COUNTER_BITS = 12  # frame numbers up to 4095
_COUNTER_ROWS = 1 / 8  # share of the height the counter strip takes

_ENCODERS = {"h264": "libx264", "hevc": "libx265", "mpeg4": "mpeg4", "vp9": "libvpx-vp9"}


def _background(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    base = np.stack([80 + 60 * x + 0 * y, 70 + 80 * y + 0 * x, 120 - 40 * x * y], axis=-1)
    noise = rng.integers(-12, 13, size=(height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return np.clip(base + noise[:height, :width], 0, 255).astype(np.uint8)


def draw_frame(background: np.ndarray, number: int, total: int) -> np.ndarray:
    """A frame: a panning background, a square moving left to right, and the counter strip on top."""
    image = np.roll(background, 3 * number, axis=1)
    height, width = image.shape[:2]
    strip = max(8, int(height * _COUNTER_ROWS))
    side = max(8, height // 5)
    x = int((width - side) * (number % max(total, 1)) / max(total - 1, 1))
    y = strip + (height - strip - side) // 2
    image[y : y + side, x : x + side] = (230, 40, 40)
    block = width // COUNTER_BITS
    for bit in range(COUNTER_BITS):
        value = 255 if (number >> (COUNTER_BITS - 1 - bit)) & 1 else 0
        image[:strip, bit * block : (bit + 1) * block] = value
    return image


def read_counter(image: np.ndarray) -> int:
    """The frame number burned in by `draw_frame`, read back from a (possibly scaled) frame."""
    height, width = image.shape[:2]
    strip = max(2, int(height * _COUNTER_ROWS))
    block = width / COUNTER_BITS
    number = 0
    for bit in range(COUNTER_BITS):
        x0, x1 = int(bit * block + block * 0.3), int(bit * block + block * 0.7)
        level = image[strip // 4 : 3 * strip // 4, x0:x1].mean()
        number = (number << 1) | int(level > 127)
    return number


def write_video(
    path: str | Path,
    *,
    duration_s: float = 10.0,
    fps: float | Fraction = 30,
    width: int = 640,
    height: int = 480,
    codec: str = "h264",
    bframes: int = 2,
    gop: int | None = None,
    bitrate: int | None = None,
    frame_times: Sequence[float] | None = None,
    preset: str = "veryfast",
    seed: int = 0,
) -> Path:
    """Write a synthetic video. `frame_times` (seconds) makes a variable-frame-rate file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    if frame_times is None:
        count = int(round(duration_s * rate))
        time_base = 1 / rate
        pts_list = list(range(count))
    else:
        time_base = Fraction(1, 1000)
        pts_list = [int(round(t * 1000)) for t in frame_times]
        count = len(pts_list)
    background = _background(height, width, seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(_ENCODERS.get(codec, codec), rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        # The encoder's own time base must be as fine as the timestamps, or VFR times get rounded.
        stream.codec_context.time_base = time_base
        options: dict[str, str] = {}
        if stream.codec_context.name == "libx264":
            # b-adapt=0: always use the B-frames asked for, so tests see non-reference frames.
            options = {"preset": preset, "bf": str(bframes), "x264-params": "b-adapt=0"}
            if gop:
                options["g"] = str(gop)
        elif stream.codec_context.name == "libx265":
            options = {"preset": preset, "x265-params": f"bframes={bframes}:log-level=error"}
        elif stream.codec_context.name == "libvpx-vp9":
            options = {"deadline": "realtime", "cpu-used": "8"}
        elif gop:
            stream.codec_context.gop_size = gop
        if stream.codec_context.name == "mpeg4" and bframes:
            stream.codec_context.max_b_frames = bframes
        if gop and stream.codec_context.name != "libx264":
            stream.codec_context.gop_size = gop
        if bitrate:
            stream.bit_rate = bitrate
        stream.options = options
        for number, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(draw_frame(background, number, count), format="rgb24")
            frame.pts = pts
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: str | Path, duration_s: float = 2.0) -> Path:
    """A file with one audio track and no video (for the 'no video track' error)."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * duration_s)
        tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000) * 0.2).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[None, start : start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
