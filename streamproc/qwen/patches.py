"""Pixel rows for the ViT: frames -> float32 (t*h*w, C*2*p*p), as Qwen's processors lay them out.

Frames (T, H, W, 3) uint8 RGB, H and W multiples of the token size (28 px for Qwen2.5-VL, 32 px for
Qwen3-VL: patch x merge), are grouped in temporal pairs and cut in patches (14 or 16 px). Rows go (time pair, block row, block col, row in block, col in block) where a block
is the 2x2 patches one merged token covers; each row holds (channel, frame in pair, y, x).
Normalisation is x/255 then the checkpoint's mean/std (CLIP's or 0.5), done through a 256-entry table per channel (exact in
float64, then float32), so it costs one gather.

Images and frames not at a valid size are resized with FFmpeg's swscale (bicubic) through PyAV,
not torch or PIL: transformers resizes with PIL (slow processor) or torchvision (fast), so pixels
of a resized image differ slightly from transformers' (never the grid or token count). Frames
from streamproc's sampler are already at their size and need no resize.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputTooLarge, MediaError, ModelError
from ..ingest.sampling import smart_resize as _smart_resize
from .config import VisionSpec


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen's image size rule (the sampler's), raising ModelError for sizes it cannot take."""
    try:
        return _smart_resize(height, width, factor, min_pixels, max_pixels)
    except MediaError as exc:
        raise ModelError(str(exc)) from None


def normalisation_table(spec: VisionSpec) -> np.ndarray:
    """(3, 256) float32: value v of channel c -> (v/255 - mean[c]) / std[c]."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean = np.asarray(spec.image_mean, dtype=np.float64)[:, None]
    std = np.asarray(spec.image_std, dtype=np.float64)[:, None]
    return ((levels[None, :] - mean) / std).astype(np.float32)


def as_frames(frames) -> np.ndarray:
    """A (T, H, W, 3) uint8 array from one array or a sequence of (H, W, 3) arrays."""
    array = np.asarray(frames) if not isinstance(frames, (list, tuple)) else np.stack([np.asarray(f) for f in frames])
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ModelError(f"frames must be (T, H, W, 3) RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ModelError(f"frames must be uint8 RGB, got {array.dtype}")
    if len(array) == 0:
        raise ModelError("no frames")
    return array


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of one (H, W, 3) uint8 image with swscale; a no-op at the same size."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    import av  # a core dependency; imported here to keep `streamproc.qwen` light to import

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_ndarray()


def pixel_rows(
    frames: np.ndarray, spec: VisionSpec, table: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(rows float32 [t*h*w, 1176], grid (t, h, w) in patches) for frames at a valid size.

    An odd frame count repeats the last frame (one image becomes a pair of equal frames).
    """
    frames = as_frames(frames)
    count, height, width, channels = frames.shape
    factor, patch, tps, merge = spec.factor, spec.patch_size, spec.temporal_patch_size, spec.spatial_merge_size
    if height % factor or width % factor:
        raise ModelError(f"frame size {width}x{height} is not a multiple of {factor} on each side")
    if count % tps:
        frames = np.concatenate([frames, np.repeat(frames[-1:], tps - count % tps, axis=0)])
    grid = (len(frames) // tps, height // patch, width // patch)
    t, h, w = grid
    blocks = frames.reshape(t, tps, h // merge, merge, patch, w // merge, merge, patch, channels)
    # -> (t, block row, block col, row in block, col in block, channel, frame in pair, y, x)
    blocks = blocks.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    table = normalisation_table(spec) if table is None else table
    rows = np.empty(blocks.shape, dtype=np.float32)
    for c in range(channels):  # one table lookup per channel over the reordered uint8 values
        np.take(table[c], blocks[:, :, :, :, :, c], out=rows[:, :, :, :, :, c])
    return rows.reshape(t * h * w, channels * tps * patch * patch), grid


def check_frame_size(height: int, width: int, spec: VisionSpec, kind: str = "video", model: str = "the model") -> None:
    """Frames handed to the model unresized must be multiples of its token size and within its
    pixel limit."""
    factor = spec.factor
    if height % factor or width % factor:
        raise ModelError(
            f"{kind} frames of {width}x{height} are not multiples of {factor} on each side, as {model} "
            f"needs: make the sampler size frames with smart_resize"
        )
    limit = spec.video_max_pixels if kind == "video" else spec.image_max_pixels
    if height * width > limit:
        raise InputTooLarge(
            f"{kind} frames of {width}x{height} ({height * width} pixels) exceed the model's max_pixels "
            f"{limit}: lower sampling.max_pixels / video_area_factor to match the model"
        )


def image_size(height: int, width: int, spec: VisionSpec) -> tuple[int, int]:
    """The size an image is resized to before it is cut into patches."""
    return smart_resize(height, width, spec.factor, spec.image_min_pixels, spec.image_max_pixels)
