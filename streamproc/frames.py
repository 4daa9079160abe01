"""What flows between the ingest stages: sampled frames, stream gaps and segments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One sampled frame, already scaled to the model's frame size by the decoder."""

    source: str
    index: int  # sample number within the source, from 0
    media_time: float  # seconds since the start of the source's media (continues across reconnects)
    pts: float  # raw presentation timestamp in seconds (pts * time_base) of this connection
    wall_time: float  # time.time() when the frame was decoded
    image: np.ndarray  # (height, width, 3) uint8 RGB

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Gap:
    """A live stream dropped and came back (or a file skipped damaged data)."""

    source: str
    media_time: float  # media time where the stream resumed
    duration_s: float  # how long nothing came
    reason: str


@dataclass(frozen=True)
class Segment:
    """A window of frames described by the model in one request. Frame count is always even."""

    source: str
    index: int
    frames: tuple[Frame, ...]
    start: float  # media time of the first frame
    end: float  # media time after the last frame (last frame + 1/fps)
    fps: float
    gap_before: bool = False
    last: bool = False
    padded: bool = False  # the last frame was repeated to make the count even
    onset: bool = False  # closed early by the urgency policy's onset cut (streamproc/urgency.py)
    gate_reason: str = ""  # why the gate passed it (gate.DESCRIBE_REASONS); "" before the gate
    budget_frames: int = 0  # the model's frame budget for it (the segment plan's); 0: its own count
    parts: int = 1  # segments coalesced into this one by the urgent lanes
    contended: bool = False  # taken while another camera had described work waiting (urgency.py)
    # A light segment needs no model time and holds no images (the gate's SkippedSegment): it
    # keeps its place in its lane but never counts against the lane's capacity.
    light: ClassVar[bool] = False

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def start_wall(self) -> float:
        return self.frames[0].wall_time

    @property
    def end_wall(self) -> float:
        return self.frames[-1].wall_time

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frames[0].height, self.frames[0].width

    @property
    def id(self) -> str:
        """Stable id: the same source and start time give the same id across restarts."""
        return f"{self.source}:{int(round(self.start * 1000)):010d}"
