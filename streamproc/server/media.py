"""Image and video parts of a chat request -> RGB arrays the model-input builder takes.

Where media may come from:
- `data:` URLs (base64), decoded in memory (videos through a temporary file, as FFmpeg needs
  to seek);
- local files (`/path` or `file:///path`), only inside the folders the server was started with
  (`--media-dir`), so an API client cannot read arbitrary files of the box;
- remote http(s) URLs are refused: the box may have no internet, and a server that fetches
  what clients name is an SSRF risk. Clients send the bytes instead.

Videos are sampled by streamproc's own ingest (VideoSource) at the model's video geometry; a
list of frames is resized to one video size by the same rule (smart_resize).
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np

from ..errors import MediaError, ModelError
from ..qwen.config import VisionSpec
from .errors import bad_request

MAX_VIDEO_FRAMES = 768  # a bound on decoding work per request; the context limit usually bites first


@dataclass(frozen=True)
class MediaPolicy:
    """Where local media may be read from (resolved folders); empty: no local files."""

    local_dirs: tuple[Path, ...] = ()

    @classmethod
    def of(cls, folders: Sequence[str | Path]) -> "MediaPolicy":
        return cls(tuple(Path(f).expanduser().resolve() for f in folders))

    def local_file(self, location: str, param: str) -> Path:
        path = Path(unquote(urlsplit(location).path) if location.startswith("file:") else location)
        if not path.is_absolute():
            raise bad_request(f"a local media path must be absolute, got {location!r}", param, "invalid_url")
        resolved = path.resolve()
        if not any(resolved == d or d in resolved.parents for d in self.local_dirs):
            where = ", ".join(str(d) for d in self.local_dirs) or "none: the server was started without --media-dir"
            raise bad_request(
                f"{path} is not inside a media folder this server may read ({where}); send the file as a data: URL",
                param,
                "invalid_url",
            )
        if not resolved.is_file():
            raise bad_request(f"{path} does not exist or is not a file", param, "invalid_url")
        return resolved


def _data_url_bytes(url: str, param: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma:
        raise bad_request("a data: URL needs a comma before its payload", param, "invalid_image")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return unquote(payload).encode("latin-1")
    except (binascii.Error, ValueError):
        raise bad_request("the data: URL's base64 payload is not valid base64", param, "invalid_image") from None


def _refuse_remote(url: str, param: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "ftp", "rtsp", "rtsps"):
        raise bad_request(
            f"remote {scheme} URLs are not fetched by this server (it may have no internet access): "
            "send the image as a data: URL (base64) or, for files on the server, a local path",
            param,
            "invalid_url",
        )


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """The first frame of an image file's bytes, as (H, W, 3) uint8 RGB."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, StopIteration, ValueError, IndexError) as error:
        raise MediaError(f"the {what} is not a readable image ({type(error).__name__})") from None


def load_image(url: str, policy: MediaPolicy, param: str) -> np.ndarray:
    if not isinstance(url, str) or not url:
        raise bad_request("an image_url part needs a url string", param)
    _refuse_remote(url, param)
    if url.startswith("data:"):
        return decode_image(_data_url_bytes(url, param))
    path = policy.local_file(url, param)
    return decode_image(path.read_bytes(), f"image {path.name}")


def video_size(height: int, width: int, vision: VisionSpec) -> tuple[int, int]:
    """The model's video frame size for a source of height x width (Qwen's smart_resize)."""
    from ..qwen.patches import smart_resize

    return smart_resize(height, width, vision.factor, vision.video_min_pixels, vision.video_max_pixels)


def frames_to_video(frames: Sequence[np.ndarray], vision: VisionSpec) -> np.ndarray:
    """A list of frames as one (T, H, W, 3) video at the model's size (the first frame's shape)."""
    from ..qwen.patches import resize_rgb

    if not frames:
        raise ModelError("a video needs at least one frame")
    height, width = video_size(frames[0].shape[0], frames[0].shape[1], vision)
    return np.stack([resize_rgb(frame, height, width) for frame in frames])


def load_video_file(url: str, policy: MediaPolicy, vision: VisionSpec, fps: float, param: str) -> np.ndarray:
    """A video file (local path or data: URL) sampled at `fps` by streamproc's ingest."""
    _refuse_remote(url, param)
    if url.startswith("data:"):
        data = _data_url_bytes(url, param)
        handle, name = tempfile.mkstemp(prefix="streamproc-serve-", suffix=".video")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            return _sample_video(Path(name), vision, fps)
        finally:
            os.unlink(name)
    return _sample_video(policy.local_file(url, param), vision, fps)


def _sample_video(path: Path, vision: VisionSpec, fps: float) -> np.ndarray:
    from ..config.ingest import SamplingConfig, SourceConfig
    from ..ingest.sources import VideoSource

    max_pixels = vision.video_max_pixels
    sampling = SamplingConfig(
        fps=fps,
        max_pixels=max_pixels,
        video_area_factor=1.0,
        min_pixels=max(784, min(vision.video_min_pixels, max_pixels)),
    )
    source = VideoSource(SourceConfig(name="serve", path=path), sampling)
    frames: list[np.ndarray] = []
    for frame in source.frames():
        frames.append(frame.image)
        if len(frames) > MAX_VIDEO_FRAMES:
            raise bad_request(f"the video has more than {MAX_VIDEO_FRAMES} frames at {fps} fps: lower fps", "messages")
    if not frames:
        raise MediaError("the video has no frames")
    return np.stack(frames)


def parse_fps(value: Optional[object], param: str) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= 30:
        raise bad_request("fps must be a number in (0, 30]", param)
    return float(value)
