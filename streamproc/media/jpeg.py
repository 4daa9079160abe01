"""JPEG snapshots of a representative frame, encoded with PyAV's mjpeg encoder (no PIL needed)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np


def encode_jpeg(image: np.ndarray, quality: int = 5) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as a baseline JPEG.

    `quality` is the encoder's q scale, 2 (best) .. 31 (smallest); 5 keeps text in the scene legible
    at a few tens of kB for model-sized frames.
    """
    import av  # the ingest already depends on PyAV; imported here so events stay import-light

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.qmin = codec.qmax = max(2, min(31, int(quality)))
    packets = list(codec.encode(frame.reformat(format="yuvj420p")))
    packets += list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)
