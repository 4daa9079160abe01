"""The urgency policy's part of the lanes (streamproc/urgency.py): which camera goes next, and how
a camera's waiting segments become one.

- `rank(items)`: a lane's place in the URGENCY order: a light segment at its head first (it
  costs nothing and keeps the camera's order), then the class of its most urgent waiting
  segment (onset, changed, heartbeat), then the one waiting longest (since the wall time of the
  oldest described segment it has had waiting since the model last took it).
- `coalesce(items)`: a camera's waiting segments up to its last described one, as ONE segment:
  their frames in time order, thinned evenly to the model's frame budget (the segment plan's
  frame count, `Segment.budget_frames`). Nothing that changed is dropped, only thinned; a light
  (unchanged) segment between two described ones is covered by the merged one and leaves no
  event of its own.
- `contend(segment, busy_frames)`: the segment as the model takes it while another camera has
  described work waiting: marked `contended` (the describer then asks for the policy's shorter
  caption) and its frames thinned evenly to `busy_frames` (streamproc/urgency.py).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from ..frames import Segment
from ..urgency import thin, urgency

LIGHT_FIRST = 0  # rank class of a lane whose head is a light segment
# Cameras whose waiting began within this many wall seconds of each other are tied, and the one
# listed first goes: segments that end at the same media moment (cameras started together) are
# stamped a few ms apart by their threads, and that jitter must not decide the order.
TIE_S = 0.05


def pick(ranked: Sequence[tuple[tuple[int, float], int]]) -> int:
    """The position to serve among (rank, position) pairs: the best class, then the longest
    waiting, ties within TIE_S to the lowest position."""
    best = min(r[0] for r, _ in ranked)
    same = [(r[1], position) for r, position in ranked if r[0] == best]
    earliest = min(since for since, _ in same)
    return min(position for since, position in same if since <= earliest + TIE_S)


def rank(items: Sequence[Segment], waiting_since: Optional[float]) -> tuple[int, float]:
    """(class, waiting since) of a non-empty lane; lower goes first. `waiting_since`: the wall
    time of the last frame of the oldest described segment the camera has had waiting since the
    model last took it, counted even when a full lane has dropped that segment since (else a
    camera whose segments end a little earlier would always look older, and win every time).
    Wall time, not media time: cameras' media clocks are their own (a live one's starts at its
    connection)."""
    if items[0].light:
        return LIGHT_FIRST, items[0].end_wall
    heavy = [s for s in items if not s.light]
    since = waiting_since if waiting_since is not None else min(s.end_wall for s in heavy)
    return min(int(urgency(s.gate_reason, s.onset)) for s in heavy), since


def run_to_take(items: Sequence[Segment]) -> int:
    """How many items from the head one take hands out: a light head alone, else every item up
    to and including the last described one."""
    if items[0].light:
        return 1
    return max(i for i, s in enumerate(items) if not s.light) + 1


def coalesce(run: Sequence[Segment]) -> Segment:
    """One segment for the described segments in `run` (lights among them are covered)."""
    heavy = [s for s in run if not s.light]
    if len(run) == 1 or len(heavy) == 1:  # a light one alone, or one described (lights around it covered)
        return heavy[0] if heavy else run[0]
    first, last = heavy[0], heavy[-1]
    budget = max(s.budget_frames or len(s.frames) for s in heavy)
    frames = thin([f for s in heavy for f in s.frames], budget)
    span = max(last.end - first.start, 1e-6)
    most = min(heavy, key=lambda s: int(urgency(s.gate_reason, s.onset)))
    return dataclasses.replace(
        first, frames=tuple(frames), end=last.end, fps=len(frames) / span, last=any(s.last for s in heavy),
        padded=False, onset=any(s.onset for s in heavy), gate_reason=most.gate_reason, budget_frames=budget,
        parts=sum(s.parts for s in heavy) + sum(1 for s in run if s.light),
    )


def contend(segment: Segment, busy_frames: Optional[int]) -> Segment:
    """`segment` taken under contention: marked, and thinned to `busy_frames` (None: kept)."""
    frames = segment.frames if busy_frames is None else tuple(thin(segment.frames, busy_frames))
    if len(frames) == len(segment.frames):
        return dataclasses.replace(segment, contended=True)
    span = max(segment.end - segment.start, 1e-6)
    return dataclasses.replace(segment, frames=frames, fps=len(frames) / span, padded=False, contended=True)
