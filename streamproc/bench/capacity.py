"""`streamproc bench capacity`: how many cameras one chip describes in real time, gate on and off.

Method (simulated time, stated in every table):

1. Scenes. Each camera is a generated `Scene` (bench/scenes.py) at the profile's frame size, at
   1 fps, with a timestamp overlay (and foliage in an ignore region on every other camera).
   Events (people walking in, standing, walking out; doors opening and closing; objects left and
   taken away) are drawn at random so that the share of segments whose pixels an event changed --
   the truth, computed from the events, not a parameter -- is close to the activity asked for.
   The measured share is what the table reports.
2. Tapes. Every frame goes through the real `Segmenter` (segments sized for the profile's
   sequence length) and the real `SceneGate` with the default config: each segment is recorded
   with its media end time and whether the gate passed it. `--tapes` distinct scenes are
   recorded; cameras beyond that replay a tape shifted in time.
3. Scheduling. The real `FairSegmentQueue` (live policy: drop_oldest, `--queue-size` per
   camera) gets every camera's segments at their end times on a simulated clock. One chip is one
   server (engines on one device take turns): it takes a segment round robin, is busy for the
   profile's latency of that segment, then acks it. A skipped segment costs nothing: delivered at
   once if its camera has nothing waiting or in flight (as `GatedLanes` does), else acked as soon
   as the chip takes it from its lane. A camera count is real time if no segment is dropped after
   the first WARMUP_S seconds and the chip is busy less than the whole run (a longer run would
   drop otherwise). At start every camera's first segment is due at once: drops then are
   reported separately; the caption delays are those of segments after the warm-up.
4. Latency per described segment = ViT (s per 768 visual tokens x visual tokens) + first token
   + caption tokens / decode rate, from a timing profile (profiles/*.json; `--bmodel` measures
   one on the hardware with the TPU backend).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Frame, Segment
from ..gate.gate import SceneGate
from ..gate import SkippedSegment
from ..ingest.segmenter import Segmenter, plan_segments
from ..lanes import FairSegmentQueue, LanePolicy
from .scenes import Event, Scene

PROFILES = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = PROFILES / "bm1684x-3b-2k.json"
PROMPT_RESERVE = 64  # chat template + a short prompt (segmenting.prompt_reserve's default)
WARMUP_S = 300.0  # start-up: every camera's first segment is due at once (reported, not judged)


@dataclass(frozen=True)
class Profile:
    name: str
    chip: str
    model: str
    seq_length: int
    frame: tuple[int, int]  # height, width
    vit_s_per_768_tokens: float
    first_token_s: float
    tokens_per_s: float
    caption_tokens: int
    kind: str = "published"  # published | estimate | measured
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> "Profile":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"{path}: unknown profile keys {', '.join(unknown)}")
        data["frame"] = tuple(data["frame"])
        return cls(**data)

    def latency(self, visual_tokens: int) -> float:
        """Seconds of the chip per described segment."""
        return (
            self.vit_s_per_768_tokens * visual_tokens / 768.0
            + self.first_token_s
            + self.caption_tokens / self.tokens_per_s
        )

    def planner(self, fps: float = 1.0):
        return lambda h, w: plan_segments(self.seq_length, h, w, fps, PROMPT_RESERVE, self.caption_tokens)


@dataclass(frozen=True)
class Recorded:
    """One segment of a tape: when it is complete, and what the gate said."""

    end: float
    index: int
    describe: bool
    reason: str
    change: bool  # truth: an event changed pixels in it
    visual_tokens: int


# -- scenes with a given activity ----------------------------------------------------------------


def _slots(rng: np.random.Generator, seconds: int, segment_s: float) -> list[tuple[float, Event]]:
    """One candidate event per segment slot, with a uniform draw that decides if it happens."""
    out = []
    for k in range(int(seconds // segment_s)):
        u = float(rng.uniform())
        start = k * segment_s + float(rng.uniform(0, segment_s))
        kind = rng.choice(["person", "person", "door", "object"])
        x = float(rng.uniform(0.15, 0.75))
        if kind == "person":
            event = Event("person", start, float(rng.uniform(5, 8)), float(rng.uniform(0, 40)), x, seed=k)
        elif kind == "door":
            event = Event("door", start, float(rng.uniform(2, 4)), x=x, seed=k, until=start + float(rng.uniform(15, 90)))
        else:
            event = Event("object", start, x=x, seed=k, until=start + float(rng.uniform(30, 240)))
        out.append((u, event))
    return out


def activity_scene(seed: int, seconds: int, activity: float, segment_s: float, frame: tuple[int, int],
                   foliage: bool) -> Scene:
    """A scene whose share of segments with change is as close to `activity` as its draws allow
    (bisection on the chance of an event per segment slot)."""
    slots = _slots(np.random.default_rng(seed), seconds, segment_s)
    scene = Scene(height=frame[0], width=frame[1], seed=seed, noise=4.0, clock=True, foliage=foliage)

    def share(p: float) -> float:
        scene.events = [event for u, event in slots if u < p]
        windows = [(k * segment_s - 1, (k + 1) * segment_s - 1) for k in range(1, int(seconds // segment_s))]
        return sum(scene.changed_between(a, b) for a, b in windows) / max(1, len(windows))

    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        if share(middle) < activity:
            low = middle
        else:
            high = middle
    share(low if activity - share(low) < share(high) - activity else high)  # the nearer of the two
    return scene


def record_tape(scene: Scene, seconds: int, profile: Profile, gate: GateConfig) -> list[Recorded]:
    """Every frame through the real segmenter and gate; the segments as the lanes would get them."""
    segmenter = Segmenter("tape", 1.0, profile.planner())
    scene_gate = SceneGate(gate, SourceGateConfig(ignore=scene.ignore))
    out: list[Recorded] = []

    def record(segment: Segment) -> None:
        decision = scene_gate.decide(segment)
        plan = segmenter.plan
        tokens = plan.tokens_per_pair * (len(segment.frames) // 2) if plan is not None else 0
        change = scene.changed_between(segment.start - 1.0, segment.end - 1.0)
        out.append(Recorded(segment.end, segment.index, decision.describe, decision.reason, change, tokens))

    for t in range(seconds):
        frame = Frame("tape", t, float(t), float(t), float(t), scene.frame(float(t), t))
        for segment in segmenter.push(frame):
            record(segment)
    return out


# -- the scheduler on a simulated clock ----------------------------------------------------------


def simulate(tapes: list[list[Recorded]], cameras: int, profile: Profile, gated: bool, queue_size: int,
             warmup_s: float = WARMUP_S) -> dict:
    """The real lanes and one chip on a simulated clock; see the module docstring."""
    length = max(r.end for tape in tapes for r in tape)
    clock = 0.0
    drops: list[float] = []
    waiting: Counter = Counter()  # per camera: in the lanes or in flight (as GatedLanes counts)

    def dropped(segment: Segment) -> None:
        drops.append(clock)
        waiting[segment.source] -= 1

    lanes = FairSegmentQueue(on_drop=dropped)
    arrivals = []
    copies = math.ceil(cameras / len(tapes))
    for camera in range(cameras):
        name = f"cam{camera:02d}"
        lanes.add_source(name, queue_size, LanePolicy.DROP_OLDEST)
        tape = tapes[camera % len(tapes)]
        shift = (camera // len(tapes)) * length / copies  # replayed tapes start elsewhere
        for position, r in enumerate(sorted(tape, key=lambda r: (r.end + shift) % length)):
            arrivals.append(((r.end + shift) % length, camera, position, r))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    records: dict[tuple[str, int], Recorded] = {}
    busy: Optional[tuple[float, Segment, float]] = None  # (done at, segment, segment end)
    delays, described, skipped, busy_s = [], 0, 0, 0.0
    i = 0

    def finish(segment: Segment) -> None:
        lanes.ack(segment)
        waiting[segment.source] -= 1

    def dispatch(now: float) -> Optional[tuple[float, Segment, float]]:
        nonlocal skipped, busy_s
        while True:
            segment = lanes.get(timeout=0)
            if segment is None:
                return None
            record = records.pop((segment.source, segment.index))
            if isinstance(segment, SkippedSegment):
                skipped += 1
                finish(segment)
                continue
            seconds = profile.latency(record.visual_tokens)
            busy_s += seconds
            return now + seconds, segment, segment.end

    while i < len(arrivals) or busy is not None:
        next_arrival = arrivals[i][0] if i < len(arrivals) else math.inf
        if busy is not None and busy[0] <= next_arrival:
            clock, segment, end = busy
            finish(segment)
            described += 1
            if end >= warmup_s:
                delays.append(clock - end)
            busy = dispatch(clock)
            continue
        clock, camera, position, record = arrivals[i]
        i += 1
        name = f"cam{camera:02d}"
        if gated and not record.describe:
            if waiting[name] == 0:  # delivered at once by the intake thread, like GatedLanes does
                skipped += 1
                continue
            segment: Segment = SkippedSegment(name, position, (), clock - 1.0, clock, 1.0, score=0.0)
        else:
            segment = Segment(name, position, (), clock - 1.0, clock, 1.0)
        records[(name, position)] = record
        waiting[name] += 1
        lanes.put(segment)
        if busy is None:
            busy = dispatch(clock)
    delays.sort()
    steady = [t for t in drops if t >= warmup_s]
    return {
        "cameras": cameras,
        "real_time": not steady and busy_s < length,
        "dropped": len(steady),
        "dropped_warmup": len(drops) - len(steady),
        "described": described,
        "skipped": skipped,
        "load": busy_s / length,
        "p95_delay_s": delays[int(0.95 * (len(delays) - 1))] if delays else 0.0,
        "max_delay_s": delays[-1] if delays else 0.0,
    }


def largest_real_time(tapes, profile: Profile, gated: bool, queue_size: int, limit: int = 64) -> tuple[int, dict]:
    """The largest camera count that stays real time, counting up from one (the first failure ends it)."""
    best, best_run = 0, {}
    for cameras in range(1, limit + 1):
        run = simulate(tapes, cameras, profile, gated, queue_size)
        if not run["real_time"]:
            break
        best, best_run = cameras, run
    return best, best_run


# -- the bench ------------------------------------------------------------------------------------


def run(profile: Profile, activities: list[float], *, tapes: int = 6, minutes: float = 30.0, queue_size: int = 4,
        progress: Callable[[str], None] = print) -> dict:
    seconds = int(minutes * 60)
    plan = profile.planner()(*profile.frame)
    gate = GateConfig(mode="scene_change")
    rows = []
    for activity in activities:
        recorded = []
        for t in range(tapes):
            scene = activity_scene(1000 + t, seconds, activity, plan.frames / 1.0, profile.frame, foliage=t % 2 == 1)
            recorded.append(record_tape(scene, seconds, profile, gate))
            progress(f"activity {activity:.0%}: tape {t + 1}/{tapes} recorded")
        every = [r for tape in recorded for r in tape]
        measured = statistics.fmean(r.change for r in every)
        passed = statistics.fmean(r.describe for r in every)
        missed = sum(r.change and not r.describe for r in every)
        for gated in (False, True):
            cameras, at = largest_real_time(recorded, profile, gated, queue_size)
            rows.append({
                "activity": activity, "measured_activity": measured, "gate": gated,
                "described_share": passed if gated else 1.0, "missed": missed if gated else 0,
                "load_per_camera": (at.get("load", 0.0) / max(1, cameras)) if cameras else None,
                "cameras": cameras, "p95_delay_s": at.get("p95_delay_s"), "max_delay_s": at.get("max_delay_s"),
                "dropped_warmup": at.get("dropped_warmup", 0),
            })
            progress(f"activity {activity:.0%}, gate {'on' if gated else 'off'}: {cameras} cameras")
    latency = profile.latency(plan.tokens_per_pair * plan.frames // 2)
    return {"profile": profile, "plan": plan, "latency_s": latency, "rows": rows, "tapes": tapes,
            "minutes": minutes, "queue_size": queue_size}


def table(report: dict) -> str:
    p: Profile = report["profile"]
    plan = report["plan"]
    seconds = plan.frames  # at 1 fps
    lines = [
        f"profile: {p.name} ({p.kind}); segments of {seconds} s ({plan.frames} frames of {p.frame[1]}x{p.frame[0]}, "
        f"{plan.tokens_per_pair * plan.frames // 2} visual tokens) take {report['latency_s']:.2f} s of the chip "
        f"({report['latency_s'] / seconds:.2f} of their duration)",
        f"method: simulated clock; {report['tapes']} generated scenes x {report['minutes']:g} min through the real "
        f"segmenter, gate (default config) and lanes (drop_oldest, {report['queue_size']} per camera); one chip serves "
        "one segment at a time; real time = nothing dropped after a 5-minute start-up and the chip busy < 100% of the "
        "run",
        "",
        "| activity asked | activity measured (truth) | gate | segments to the model | change missed "
        "| chip load per camera | cameras in real time | p95 / max caption delay | dropped in start-up |",
        "|---:|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in report["rows"]:
        load = f"{r['load_per_camera']:.3f}" if r["load_per_camera"] is not None else "-"
        delay = f"{r['p95_delay_s']:.0f} s / {r['max_delay_s']:.0f} s" if r["cameras"] else "-"
        lines.append(
            f"| {r['activity']:.0%} | {r['measured_activity']:.1%} | {'on' if r['gate'] else 'off'} | "
            f"{r['described_share']:.1%} | {r['missed']} | {load} | **{r['cameras']}** | {delay} | "
            f"{r['dropped_warmup']} |"
        )
    return "\n".join(lines)


def measure_profile(bmodel: Path, tokenizer: Path, runtime_dir: Optional[Path], cache: Path,
                    caption_tokens: int = 80, progress: Callable[[str], None] = print) -> Profile:
    """A profile measured on the hardware: the TPU backend describes segments of a generated clip
    (bench/engine.py) and the engine's own timers split each into ViT, prefill and decode."""
    from . import engine

    report = engine.run(bmodel=bmodel, tokenizer=tokenizer, runtime_dir=runtime_dir, clip=None, cache=cache,
                        segments=3, segment_s=8.0, max_new_tokens=caption_tokens, progress=progress)
    rows = report["rows"][1:] or report["rows"]  # the first call warms up
    info = report["info"]
    vit = statistics.fmean(r.device["vit"] / max(1, r.visual_tokens) * 768 for r in rows)
    first = statistics.fmean(r.device["prefill"] for r in rows)
    rate = statistics.fmean(r.generated / r.device["decode"] for r in rows if r.device["decode"] > 0)
    size = rows[0].frame_size
    return Profile(
        name=f"{info.chip}, {Path(bmodel).name}, seq {info.seq_length} (measured)", chip=str(info.chip),
        model=Path(bmodel).stem, seq_length=int(info.seq_length), frame=(int(size[0]), int(size[1])),
        vit_s_per_768_tokens=vit, first_token_s=first, tokens_per_s=rate, caption_tokens=caption_tokens,
        kind="measured", source=f"bench capacity --bmodel {bmodel} on {report['runtime']}",
    )
