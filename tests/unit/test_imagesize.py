"""Image sizes from file headers (streamproc/openai_api/imagesize.py), on files FFmpeg writes:
JPEG, PNG, GIF, BMP and WebP (lossy and lossless) in odd sizes, and what is not an image."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from streamproc.openai_api.imagesize import image_dimensions

CODECS = [("mjpeg", "yuvj420p", {}), ("png", "rgb24", {}), ("gif", "rgb8", {}), ("bmp", "bgr24", {}),
          ("libwebp", "yuv420p", {}), ("libwebp", "bgra", {"lossless": "1"})]


def encode(codec: str, pix_fmt: str, options: dict, width: int, height: int) -> bytes:
    try:
        context = av.CodecContext.create(codec, "w")
    except (av.error.FFmpegError, ValueError):
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = Fraction(1, 25)
    context.options = options
    image = (np.random.default_rng(width).random((height, width, 3)) * 255).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in [*context.encode(frame), *context.encode(None)])


@pytest.mark.parametrize("codec, pix_fmt, options", CODECS, ids=[c[0] + "-" + c[1] for c in CODECS])
@pytest.mark.parametrize("width, height", [(97, 61), (640, 360)])
def test_sizes_from_headers_match_the_decoded_image(codec, pix_fmt, options, width, height):
    data = encode(codec, pix_fmt, options, width, height)
    assert image_dimensions(data) == (width, height)


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xd9", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                                  b"II*\x00" + b"\x00" * 40])
def test_what_is_not_a_known_image_has_no_size(data):
    assert image_dimensions(data) is None
