"""Config of the scene-change gate: which segments are worth the model's time.

The gate sits between the segmenter and the lanes, one per source. With `mode: scene_change` a
segment that shows nothing new is not described; it becomes an "unchanged" event and each rule
repeats its last verdict (docs/gate.md explains every knob and how the score is made).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from .base import Section

Region = tuple[float, float, float, float]


def _check_regions(value: list) -> list:
    for region in value:
        x0, y0, x1, y1 = region
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(
                f"an ignore region is [x0, y0, x1, y1] as shares of the frame, 0 <= x0 < x1 <= 1 "
                f"and 0 <= y0 < y1 <= 1; got {list(region)}"
            )
    return value


class GateConfig(Section):
    """The service-wide gate settings (section `gate`)."""

    mode: Literal["off", "scene_change"] = Field(
        "off", description="off: every segment goes to the model; scene_change: unchanged segments are skipped"
    )
    heartbeat_s: Optional[float] = Field(
        600.0, gt=0, description="describe a source at least this often (media seconds), changed or not; null = never"
    )
    area: float = Field(
        0.15, gt=0, le=1,
        description="share of a 2x2-cell window (32x32 px at 504x280) whose pixels must change to count as a change",
    )
    noise_k: float = Field(
        4.0, gt=0, description="a pixel changed if it moved more than noise_k x the frame's estimated noise"
    )
    min_delta: float = Field(6.0, ge=0, description="... and more than this many luma levels (0-255) in any case")
    mean_delta: float = Field(
        25.0, gt=0, description="a cell whose mean moved this many luma levels beyond the global brightness change counts whole"
    )
    flicker_rate: float = Field(
        0.3, gt=0, le=1,
        description="cells whose change returns to what they showed in the last 12 s in more than this share of "
        "recent frames are left out (only those cells, never their neighbours); 1 = no flicker rule",
    )
    reference_frames: int = Field(
        3, ge=1, le=16, description="frames kept from the last described segment to compare each new segment with"
    )
    thumb_width: int = Field(128, ge=16, le=512, description="width (px) of the luma thumbnail the scores are made on")
    ignore: list[Region] = Field(
        default_factory=list,
        description="regions never scored, for every source: [x0, y0, x1, y1] as shares of the frame (0-1)",
    )

    @field_validator("ignore")
    @classmethod
    def _regions(cls, value: list) -> list:
        return _check_regions(value)


class SourceGateConfig(Section):
    """Per-source gate settings (`sources[].gate`)."""

    always: bool = Field(False, description="describe every segment of this source, whatever the gate says")
    ignore: list[Region] = Field(
        default_factory=list,
        description="this source's regions never scored (trees, a timestamp, a screen): [x0, y0, x1, y1] in 0-1",
    )

    @field_validator("ignore")
    @classmethod
    def _regions(cls, value: list) -> list:
        return _check_regions(value)
