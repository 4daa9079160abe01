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

Size before work: an image's width and height are read from its file header (imagesize.py) and
an image over `PIXEL_FACTOR` x the model's own max pixels is refused before it is decoded (a
one-colour 16000x16000 PNG is 268 KiB and would decode to 768 MB). Each image is resized to the
model's size as soon as it is decoded, so a request holds one full-size image at a time.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np

from ..errors import MediaError, ModelError
from ..qwen.config import VisionSpec
from .errors import bad_request
from .imagesize import image_dimensions

MAX_VIDEO_FRAMES = 768  # a bound on decoding work per request; the context limit usually bites first
PIXEL_FACTOR = 16  # images up to this many times the model's max pixels are decoded (then shrunk)


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


def load_image(url: str, policy: MediaPolicy, param: str, vision: VisionSpec, resize: bool = True) -> np.ndarray:
    """The image at `url` as (H, W, 3) RGB, at the model's image size (`resize`) or as decoded."""
    if not isinstance(url, str) or not url:
        raise bad_request("an image_url part needs a url string", param)
    _refuse_remote(url, param)
    if url.startswith("data:"):
        data, what = _data_url_bytes(url, param), "image"
    else:
        path = policy.local_file(url, param)
        data, what = path.read_bytes(), f"image {path.name}"
    limit = PIXEL_FACTOR * (vision.image_max_pixels if resize else vision.video_max_pixels)
    check_dimensions(image_dimensions(data), limit, param, what)
    image = decode_image(data, what)
    check_dimensions((image.shape[1], image.shape[0]), limit, param, what)  # a header that lied
    if not resize:
        return image
    from ..qwen.patches import image_size, resize_rgb

    # The size the input builder would pick (a no-op for it then): the full-size array goes now.
    return resize_rgb(image, *image_size(image.shape[0], image.shape[1], vision))


def check_dimensions(size: Optional[tuple[int, int]], limit: int, param: str, what: str = "image") -> None:
    """400 invalid_image for an unknown format or more than `limit` pixels, before any decoding."""
    if size is None:
        raise bad_request(f"the {what} is not a JPEG, PNG, WebP, GIF or BMP file", param, "invalid_image")
    width, height = size
    if width < 1 or height < 1 or width * height > limit:
        raise bad_request(
            f"the {what} is {width}x{height} pixels; this model takes at most {limit} ({PIXEL_FACTOR} times its "
            "own maximum, to which it shrinks every image): send a smaller image",
            param, "invalid_image",
        )


def video_size(height: int, width: int, vision: VisionSpec) -> tuple[int, int]:
    """The model's video frame size for a source of height x width (Qwen's smart_resize)."""
    from ..qwen.patches import smart_resize

    return smart_resize(height, width, vision.factor, vision.video_min_pixels, vision.video_max_pixels)


def frames_to_video(frames: Iterable[np.ndarray], vision: VisionSpec) -> np.ndarray:
    """Frames as one (T, H, W, 3) video at the model's size for the first frame's shape; each
    frame is resized as it comes, so only one full-size frame is held at a time."""
    from ..qwen.patches import resize_rgb

    resized: list[np.ndarray] = []
    size: Optional[tuple[int, int]] = None
    for frame in frames:
        if size is None:
            size = video_size(frame.shape[0], frame.shape[1], vision)
        resized.append(resize_rgb(frame, *size))
    if not resized:
        raise ModelError("a video needs at least one frame")
    return np.stack(resized)


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


def video_dimensions(path: Path) -> Optional[tuple[int, int]]:
    """A video file's frame size from its container and stream headers, or None if unreadable."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.codec_context.width), int(stream.codec_context.height)
    except (av.error.FFmpegError, OSError, IndexError, ValueError):
        return None


def _sample_video(path: Path, vision: VisionSpec, fps: float) -> np.ndarray:
    from ..config.ingest import SamplingConfig, SourceConfig
    from ..ingest.sources import VideoSource

    size = video_dimensions(path)
    if size is not None:  # an unreadable one fails in VideoSource with its own message
        check_dimensions(size, PIXEL_FACTOR * vision.video_max_pixels, "messages", "video")
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
