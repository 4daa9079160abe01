"""`streamproc bench gate`: the scene-change gate on generated clips with known truth, and its cost.

Each clip is a `Scene` (bench/scenes.py) cut into segments of `segment_frames` frames at 1 fps
and fed, segment by segment, to one real `SceneGate` with the default config (plus the clip's
ignore region where it has foliage). A segment's truth is exact: an event changed pixels between
the previous segment's last frame and its own last frame. The first segment of a clip is always
described (nothing to compare with) and is left out of the table.

  static clips  sensor noise; H.264 at 150 kbit/s; an exposure ramp up and one down; a ticking
                timestamp; swaying foliage in an ignore region; all of these at once
  event clips   a person walking in, standing and walking out; a door opening; a small object
                left behind; each on a noisy scene with a timestamp, and again through H.264 with
                an exposure ramp

Cost: thumbnail + one comparison per frame at 504x280 (what a segment needs per frame; the few
reference comparisons per segment are spread over its frames), median of repeated runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Frame, Segment
from ..gate.gate import SceneGate
from ..gate.flicker import FlickerTracker
from ..gate.score import FrameScorer, ScoreParams
from .scenes import Event, Scene, compress

WIDTH, HEIGHT = 504, 280


@dataclass
class Clip:
    name: str
    kind: str  # static | event
    scene: Scene
    compressed: bool = False
    seconds: int = 120


@dataclass
class ClipResult:
    name: str
    kind: str
    segments: int = 0
    true_change: int = 0
    described_change: int = 0  # true positives
    missed: int = 0  # change, skipped
    skipped_static: int = 0  # true negatives
    described_static: int = 0  # false alarms
    missed_at: list = field(default_factory=list)


def clips(seed: int = 0, seconds: int = 120) -> list[Clip]:
    s = seed * 100
    noisy = dict(noise=4.0, clock=True)
    out = [
        Clip("noise", "static", Scene(seed=s + 1, noise=5.0)),
        Clip("h264 150 kbit/s", "static", Scene(seed=s + 2, noise=3.0), compressed=True),
        Clip("exposure ramp up", "static", Scene(seed=s + 3, noise=4.0, exposure=(25.0, 40.0, 1.5))),
        Clip("exposure ramp down", "static", Scene(seed=s + 4, noise=4.0, exposure=(15.0, 20.0, 0.6))),
        Clip("ticking timestamp", "static", Scene(seed=s + 5, noise=4.0, clock=True)),
        Clip("foliage (ignored)", "static", Scene(seed=s + 6, noise=4.0, foliage=True)),
        Clip("all of these", "static", Scene(seed=s + 7, noise=4.0, clock=True, foliage=True,
                                              exposure=(30.0, 30.0, 1.4)), compressed=True),
    ]
    rng = np.random.default_rng(seed)
    for hard in (False, True):
        extra = dict(exposure=(20.0, 60.0, 1.3)) if hard else {}
        suffix = " (h264, exposure)" if hard else ""
        people = [Event("person", 14.0 + rng.uniform(0, 5), 6.0, 12.0, rng.uniform(0.3, 0.6), seed=1),
                  Event("person", 75.0 + rng.uniform(0, 5), 8.0, 0.0, 0.9, seed=2)]  # crosses the frame
        doors = [Event("door", 33.0 + rng.uniform(0, 5), 3.0, x=0.18), Event("door", 81.0 + rng.uniform(0, 5), 2.0, x=0.5)]
        objects = [Event("object", 46.0 + rng.uniform(0, 5), x=rng.uniform(0.2, 0.4), seed=seed),
                   Event("object", 92.0 + rng.uniform(0, 5), x=rng.uniform(0.55, 0.7), seed=seed + 1)]
        out += [
            Clip("person enters" + suffix, "event", Scene(seed=s + 11, events=people, **noisy, **extra), hard),
            Clip("door opens" + suffix, "event", Scene(seed=s + 12, events=doors, **noisy, **extra), hard),
            Clip("object left behind" + suffix, "event", Scene(seed=s + 13, events=objects, **noisy, **extra), hard),
        ]
    for clip in out:
        clip.seconds = seconds
    return out


def run_clip(clip: Clip, config: GateConfig, segment_frames: int = 10, fps: float = 1.0) -> ClipResult:
    scene = clip.scene
    images = [image for _, image in scene.frames(0.0, clip.seconds, fps)]
    if clip.compressed:
        images = compress(images, fps)
    gate = SceneGate(config, SourceGateConfig(ignore=scene.ignore))
    result = ClipResult(clip.name, clip.kind)
    wall = time.time()
    for index in range(len(images) // segment_frames):
        first = index * segment_frames
        frames = tuple(
            Frame("bench", i, i / fps, i / fps, wall + i / fps, images[i]) for i in range(first, first + segment_frames)
        )
        segment = Segment("bench", index, frames, first / fps, (first + segment_frames) / fps, fps)
        decision = gate.decide(segment)
        if index == 0:
            continue  # always described: nothing to compare with
        result.segments += 1
        truth = scene.changed_between((first - 1) / fps, (first + segment_frames - 1) / fps, 1.0 / fps)
        if truth:
            result.true_change += 1
            if decision.describe:
                result.described_change += 1
            else:
                result.missed += 1
                result.missed_at.append((index, round(decision.score, 2)))
        elif decision.describe:
            result.described_static += 1
        else:
            result.skipped_static += 1
    return result


def evaluate(seeds: int = 1, seconds: int = 120, config: Optional[GateConfig] = None,
             progress: Optional[Callable[[str], None]] = None) -> list[ClipResult]:
    config = config or GateConfig(mode="scene_change")
    results = []
    for seed in range(seeds):
        for clip in clips(seed, seconds):
            results.append(run_clip(clip, config))
            if progress:
                progress(f"seed {seed}: {clip.name}: done")
    return results


def frame_cost(repeats: int = 200, rounds: int = 5) -> dict:
    """Milliseconds per frame at 504x280: thumbnail, one comparison with the flicker rule's update
    (the look-up of changed cells in the recent frames), and both (median of rounds). The scene
    has a ticking timestamp, so some cells change and are looked up every frame."""
    scene = Scene(seed=3, noise=4.0, clock=True)
    images = [scene.frame(float(t), t) for t in range(16)]
    scorer = FrameScorer(HEIGHT, WIDTH, ScoreParams())
    thumbs = [scorer.thumb(image) for image in images]
    tracker = FlickerTracker(0.3, 1.0)
    tracker.seed(thumbs[0])
    thumb_ms, compare_ms = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(repeats):
            scorer.thumb(images[i % 16])
        thumb_ms.append((time.perf_counter() - start) / repeats * 1e3)
        start = time.perf_counter()
        for i in range(repeats):
            before, after = thumbs[i % 15], thumbs[i % 15 + 1]
            _, cells, bar = scorer.compare(before, after, tracker.mask())
            tracker.update(after, cells, bar)
        compare_ms.append((time.perf_counter() - start) / repeats * 1e3)
    thumb, score = statistics.median(thumb_ms), statistics.median(compare_ms)
    return {"thumb_ms": thumb, "score_ms": score, "frame_ms": thumb + score}


def table(results: list[ClipResult], cost: Optional[dict] = None) -> str:
    lines = [
        "| clip | kind | segments | with change | described | missed | static skipped | static described |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    merged: dict[str, ClipResult] = {}
    for r in results:
        m = merged.setdefault(r.name, ClipResult(r.name, r.kind))
        for name in ("segments", "true_change", "described_change", "missed", "skipped_static", "described_static"):
            setattr(m, name, getattr(m, name) + getattr(r, name))
        m.missed_at += r.missed_at
    for r in merged.values():
        lines.append(
            f"| {r.name} | {r.kind} | {r.segments} | {r.true_change} | {r.described_change} | {r.missed} | "
            f"{r.skipped_static} | {r.described_static} |"
        )
    tp = sum(r.described_change for r in results)
    fn = sum(r.missed for r in results)
    tn = sum(r.skipped_static for r in results)
    fp = sum(r.described_static for r in results)
    lines += [
        "",
        "| confusion (segments) | described | skipped |",
        "|---|---:|---:|",
        f"| change | {tp} | {fn} |",
        f"| no change | {fp} | {tn} |",
        "",
        f"static segments skipped: {tn}/{tn + fp} ({100.0 * tn / max(1, tn + fp):.1f}%); "
        f"segments with change missed: {fn}/{tp + fn}",
    ]
    if cost:
        lines.append(
            f"gate cost at {WIDTH}x{HEIGHT}: {cost['frame_ms']:.2f} ms per frame "
            f"(thumbnail {cost['thumb_ms']:.2f} ms + comparison and flicker update {cost['score_ms']:.2f} ms; median of runs)"
        )
    return "\n".join(lines)


def totals(results: list[ClipResult]) -> dict:
    tn = sum(r.skipped_static for r in results)
    fp = sum(r.described_static for r in results)
    return {
        "static": tn + fp, "static_skipped": tn, "change": sum(r.true_change for r in results),
        "missed": sum(r.missed for r in results), "missed_at": [(r.name, m) for r in results for m in r.missed_at],
    }
