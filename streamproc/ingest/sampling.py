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
    """(height, width) of sampled frames for a source of this size (multiples of the model's token size)."""
    return smart_resize(height, width, sampling.token_pixels, sampling.min_pixels, sampling.video_pixels)


def tokens_per_frame_pair(height: int, width: int, factor: int = PATCH_FACTOR) -> int:
    """Visual tokens for two frames (one temporal patch) at a model frame size."""
    return (height // factor) * (width // factor)


class FrameSelector:
    """Picks one frame per 1/fps of media time: the frame nearest each target t_k = t0 + k/fps.

    The timeline is cut into bins [t_k - 1/(2 fps), t_k + 1/(2 fps)); each bin yields the frame
    nearest its target, or nothing if no frame falls in it (a gap). For constant-rate video that
    frame lies within half a frame interval of t_k; for variable-rate video, within half the
    local interval.

    `want_packet` is asked per packet, in decode order, before decoding: the frames a bin may
    need are those within half a frame of its target, and the first one seen in each bin (so
    no bin is left empty). Other packets may skip decoding when no frame references them.
    Timestamps off the nominal frame grid mark variable-frame-rate video, where durations
    cannot be trusted to find the nearest frame: from then on every packet is wanted.
    `offer` takes decoded frames in presentation order and returns those to keep; a frame
    just before a target is held until the next frame shows which one is nearer. At the end of
    the stream a held frame is kept only if it lies within half a frame (`frame_duration`) of
    its target: a target past the end of the video gets no frame.
    """

    def __init__(self, fps: float, frame_duration: float = 1 / 30):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        self.frame_duration = frame_duration
        self.t0: float | None = None
        self._bins_with_packet: set[int] = set()
        self._done = -1  # highest bin already answered
        self._held: tuple[int, float, float, object] | None = None  # bin, distance, time, item
        self.variable_rate = False

    def start_at(self, t0: float) -> None:
        """Anchor the target grid; done by the first packet or frame if not called."""
        if self.t0 is None:
            self.t0 = t0

    def _bin(self, time: float) -> int:
        return math.floor((time - self.t0) / self.interval + 0.5)  # type: ignore[operator]

    def _target(self, k: int) -> float:
        return self.t0 + k * self.interval  # type: ignore[operator]

    def want_packet(self, pts: float | None, duration: float) -> bool:
        """May the frame of this packet be sampled? Unknown timestamps are always decoded."""
        if pts is None:
            return True
        self.start_at(pts)
        k = self._bin(pts)
        if k <= self._done:
            return False
        if not self.variable_rate:
            steps = (pts - self.t0) / self.frame_duration  # type: ignore[operator]
            if abs(steps - round(steps)) > 0.1 or abs(duration - self.frame_duration) > 0.1 * self.frame_duration:
                self.variable_rate = True
        if self.variable_rate:
            return True
        near = abs(pts - self._target(k)) <= max(duration, 1e-6) / 2
        if near or k not in self._bins_with_packet:
            self._bins_with_packet.add(k)
            return True
        return False

    def offer(self, time: float, item: object) -> list[tuple[float, object]]:
        """Give a decoded frame (presentation order); returns the (time, item) pairs to keep."""
        self.start_at(time)
        k = self._bin(time)
        if k <= self._done:
            return []
        out = []
        if self._held is not None and self._held[0] != k:
            out += self._release()
        distance = abs(time - self._target(k))
        if self._held is None or distance < self._held[1]:
            self._held = (k, distance, time, item)
        if time >= self._target(k):  # later frames of this bin can only be farther away
            out += self._release()
        return out

    def flush(self) -> list[tuple[float, object]]:
        """End of stream: the frame still held, if it is near enough its target."""
        if self._held is None:
            return []
        if self._held[1] > self.frame_duration / 2 + 1e-9:
            self._held = None
            return []
        return self._release()

    def _release(self) -> list[tuple[float, object]]:
        k, _, time, item = self._held  # type: ignore[misc]
        self._held = None
        self._done = k
        self._bins_with_packet = {b for b in self._bins_with_packet if b > k}
        return [(time, item)]
