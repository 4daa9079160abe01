"""Frame size (Qwen's smart_resize) and which frames to keep for a target sampling rate.

`FrameSelector` is pure logic so it can be tested without video: the source asks it, per packet
(before decoding), whether that packet's frame may be sampled, and per decoded frame whether to keep it.
Packets that cannot be sampled and are not referenced by other frames are not decoded at all.
"""
from __future__ import annotations

import math

from ..config.ingest import SamplingConfig
from ..errors import MediaError

PATCH_FACTOR = 28  # Qwen2.5-VL: patch 14 x spatial merge 2
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, factor: int = PATCH_FACTOR, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Qwen2.5-VL's resize rule: sides multiples of `factor`, area within [min_pixels, max_pixels]."""
    if height <= 0 or width <= 0:
        raise MediaError(f"invalid frame size {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise MediaError(
            f"aspect ratio of {width}x{height} is above {MAX_ASPECT_RATIO}, which Qwen2.5-VL does not take"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def model_frame_size(height: int, width: int, sampling: SamplingConfig) -> tuple[int, int]:
    """(height, width) of sampled frames for a source of this size."""
    return smart_resize(height, width, PATCH_FACTOR, sampling.min_pixels, sampling.video_pixels)


def tokens_per_frame_pair(height: int, width: int) -> int:
    """Visual tokens for two frames (one temporal patch) at a model frame size."""
    return (height // PATCH_FACTOR) * (width // PATCH_FACTOR)


class FrameSelector:
    """Picks one frame per 1/fps of media time: for target t_k = t0 + k/fps, the first frame at or
    after t_k - d/2 (d = that frame's duration), which for constant-rate video is the frame nearest t_k.

    Decisions per packet, in decode order, let the decoder skip non-reference frames that no
    target needs: a packet is wanted when its timestamp lies within half a frame of a target not
    yet claimed, or beyond a target still open (variable frame rate, missing frames).
    """

    def __init__(self, fps: float):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        self.t0: float | None = None
        self._next = 0  # index of the first target not yet filled by an output frame
        self._claimed: set[int] = set()

    def _target(self, k: int) -> float:
        assert self.t0 is not None
        return self.t0 + k * self.interval

    def start_at(self, t0: float) -> None:
        """Anchor the target grid; done by the first packet or frame if not called."""
        if self.t0 is None:
            self.t0 = t0

    def want_packet(self, pts: float | None, duration: float) -> bool:
        """May the frame of this packet be sampled? Unknown timestamps are always decoded."""
        if pts is None:
            return True
        self.start_at(pts)
        half = max(duration, 1e-6) / 2
        nearest = round((pts - self.t0) / self.interval)  # type: ignore[operator]
        if nearest >= self._next and nearest not in self._claimed and abs(pts - self._target(nearest)) < half:
            self._claimed.add(nearest)
            return True
        # Fallback for irregular timing: past an open target nobody claimed yet.
        return self._next not in self._claimed and pts > self._target(self._next) + half

    def accept_frame(self, time: float, duration: float) -> bool:
        """Keep this decoded frame (frames arrive in presentation order)?"""
        self.start_at(time)
        half = max(duration, 1e-6) / 2
        if time < self._target(self._next) - half:
            return False
        # Frames far past their target fill it; targets they jumped over stay empty.
        while self._target(self._next) - half <= time:
            self._claimed.discard(self._next)
            self._next += 1
        return True
