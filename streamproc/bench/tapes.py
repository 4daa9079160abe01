"""Tapes for `bench capacity`: one camera's segments as the gate stage hands them on, with truth.

A tape is recorded once per camera scene (or per real clip, `record_clip`), independent of how
many cameras share the chip: where segments end depends only on the camera's own frames. Every
frame goes through the real `SceneGate` (default config); segments are cut as the urgency policy
says (streamproc/urgency.py), by the service's own Segmenter: `frames` frames each, or closed
early `onset_s` seconds after change starts in a quiet camera (no frame-to-frame change in its
last `quiet_s` seconds, by the gate's own check, `SceneGate.moved`), or `hold_s` after change
starts in a camera that was not quiet.

Truth comes from the scene's events: a segment shows a change if an event changed pixels between
the previous segment's last frame and its own last frame; each change's start time is an *event*
whose delay (to its caption, to its alert) the simulator measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Frame, Segment
from ..gate.gate import SceneGate
from ..ingest.sampling import tokens_per_frame_pair
from ..ingest.segmenter import Segmenter, SegmentPlan, segment_stream
from ..urgency import Cuts, OnsetCutter
from .scenes import Scene


@dataclass(frozen=True)
class Recorded:
    """One segment of a tape."""

    start: float  # media time of its first frame
    end: float  # when it is complete (its last frame + 1 s)
    index: int
    frames: int
    describe: bool
    reason: str
    onset: bool  # closed early by the onset rule
    change: bool  # truth: an event changed pixels in it


@dataclass(frozen=True)
class Tape:
    segments: list[Recorded]
    events: list[float]  # truth: media times at which a change started
    tokens_per_pair: int
    length: float


def _cut(frames: Iterable[Frame], gate: SceneGate, plan_frames: int, cuts: Cuts):
    """(segment, decision, onset) as the service cuts them: its own Segmenter with the policy's
    onset and hold cuts (`urgency.OnsetCutter` over the gate's frame-to-frame check), the gate
    deciding each segment as the intake thread would (after the segmenter releases it)."""
    plan = SegmentPlan(plan_frames, 0, 0, 0, 1.0)
    segmenter = Segmenter("tape", 1.0, lambda height, width: plan, OnsetCutter(cuts, gate.moved))
    for segment in segment_stream(frames, segmenter):
        yield segment, gate.decide(segment), segment.onset


def record(frames: Iterable[Frame], plan_frames: int, cuts: Cuts, truth: Optional[Scene] = None,
           ignore=()) -> list[tuple[Segment, Recorded]]:
    gate = SceneGate(GateConfig(mode="scene_change"), SourceGateConfig(ignore=list(ignore)))
    out = []
    for segment, decision, onset in _cut(frames, gate, plan_frames, cuts):
        change = truth.changed_between(segment.start - 1.0, segment.end - 1.0) if truth is not None else decision.describe
        out.append((segment, Recorded(segment.start, segment.end, segment.index, len(segment.frames),
                                      decision.describe, decision.reason, onset, change)))
    return out


def record_scene(scene: Scene, seconds: int, plan_frames: int, cuts: Cuts) -> Tape:
    """A generated scene through the real gate, cut as the policy says."""
    frames = (Frame("tape", t, float(t), float(t), float(t), scene.frame(float(t), t)) for t in range(seconds))
    recorded = [r for _, r in record(frames, plan_frames, cuts, scene, scene.ignore)]
    events = sorted(a for event in scene.events for a, _ in event.visible_changes(scene.width, scene.height)
                    if 0 < a < seconds - 1)
    return Tape(recorded, events, tokens_per_frame_pair(scene.height, scene.width), float(seconds))


def record_clip(path: Path, plan_frames: int, cuts: Cuts, events: Iterable[float] = ()) -> Tape:
    """A video file through the project's ingest (default sampling) and the real gate: the same
    input a time-scaled live run reads (issue 22 item 5). Truth is what the gate described unless
    `events` (change start times, judged by eye) are given."""
    from .realclips import decode

    frames = decode(path, "clip")
    height, width = frames[0].height, frames[0].width
    recorded = [r for _, r in record(frames, plan_frames, cuts)]
    starts = sorted(events) or [r.start for r in recorded if r.describe and r.index > 0]
    return Tape(recorded, starts, tokens_per_frame_pair(height, width), frames[-1].media_time + 1.0)
