"""`streamproc bench capacity`: cameras per chip with alerts, at an honest cost (issue 22).

1. Scenes (bench/scenes.py): generated cameras at the profile's frame size, 1 fps, a ticking
   timestamp (foliage in an ignore region on every other one); people, doors and objects drawn so
   that the share of segments with change (truth, from the events) is near the activity asked.
   Several seeds (scene sets); cameras per chip is reported as the min and median over them.
2. Tapes (bench/tapes.py): every frame through the real gate; segments cut as the policy says
   (onset segments or fixed ones).
3. The chip (bench/capsim.py): one job at a time, priced by the profile (bench/profile.py) for
   the policy's rule mode (streamproc/urgency.py); event-to-caption and event-to-alert delay per truth
   event, load, changes missed, segments dropped.
4. Cameras per chip = the largest count with p95 event-to-alert <= 20 s, load <= 85%, nothing
   missed, nothing dropped.
5. Host: decode + gate CPU per camera, measured on this machine with the real ingest and gate.
"""
from __future__ import annotations

import os
import pickle
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..ingest.segmenter import plan_segments
from .capsim import Outcome, Scenario, cameras_per_chip, pooled, simulate
from .policy import OLD, URGENT, Policy, RulesMode
from .profile import DEFAULT_PROFILE, PROFILES, Profile, describe, measure_profile  # noqa: F401 (re-exported)
from .scenes import activity_scene
from .tapes import Cuts, Tape, record_scene

PROMPT_RESERVE = 64 + 3 * 24  # chat template and prompt, and three rule questions
TRUTH_VERSION = 3  # in cached tapes' names: 3 judges a door by its drawn panel moving 2 px (scenes.changed_between)


@dataclass(frozen=True)
class Mode:
    label: str
    policy: Policy
    history: bool


def modes(caption_tokens: int) -> list[Mode]:
    urgent = replace(URGENT, caption_tokens=caption_tokens)
    calm = replace(urgent, busy_caption_tokens=None, busy_frames=None, yield_tokens=None)
    joint_old = replace(OLD, rules_mode=RulesMode.JOINT, caption_tokens=caption_tokens)
    return [Mode("joint call, urgency policy", urgent, False),
            Mode("joint call, urgency policy without contention rules", calm, False),
            Mode("joint call, old policy", joint_old, False),
            Mode("follow-ups, old policy, no history", OLD, False),
            Mode("follow-ups, old policy, history KV", OLD, True)]


def plan_frames(profile: Profile, policy: Policy) -> int:
    answer = policy.caption_tokens + 3 * policy.verdict_tokens
    # a build without history prefills a whole turn at once: it must fit its max input
    seq = min(profile.seq_length, profile.max_input + answer) if profile.max_input else profile.seq_length
    return plan_segments(seq, *profile.frame, 1.0, PROMPT_RESERVE, answer, factor=profile.token_pixels,
                         pair_text_tokens=profile.pair_text_tokens).frames


def record_set(profile: Profile, activity: float, seed: int, count: int, seconds: int, cuts: Cuts,
               frames: int) -> list[Tape]:
    """`count` scenes of one seed at one activity, recorded with the policy's cuts."""
    return [record_scene(activity_scene(10_000 * seed + 100 * t + int(activity * 100), seconds, activity, frames,
                                        profile.frame, foliage=t % 2 == 1), seconds, frames, cuts)
            for t in range(count)]


class TapeCache:
    """Tapes depend on the scene, the frame plan and the policy's cuts only: recorded once, shared
    by every profile, rule count and camera count."""

    def __init__(self, profile: Profile, frames: int, count: int, seconds: int, folder: Path | None = None):
        self.profile, self.frames, self.count, self.seconds = profile, frames, count, seconds
        self.folder = folder  # recorded tapes are kept here between runs (pickles of our own making)
        self._tapes: dict = {}

    def get(self, activity: float, seed: int, policy: Policy) -> list[Tape]:
        key = (activity, seed, Cuts.of(policy))
        if key not in self._tapes:
            self._tapes[key] = self._load(key) or record_set(self.profile, activity, seed, self.count, self.seconds,
                                                             key[2], self.frames)
            self._save(key, self._tapes[key])
        return self._tapes[key]

    def _path(self, key) -> Path | None:
        if self.folder is None:
            return None
        cuts = key[2]
        name = (f"{self.profile.frame[0]}x{self.profile.frame[1]}-f{self.frames}-n{self.count}-s{self.seconds}-"
                f"a{key[0]:g}-seed{key[1]}-cuts{int(cuts.enabled)}-{cuts.onset}-{cuts.quiet}-{min(cuts.hold, 999)}"
                f"-truth{TRUTH_VERSION}")
        return self.folder / f"{name}.pickle"

    def _load(self, key) -> list[Tape] | None:
        path = self._path(key)
        return pickle.loads(path.read_bytes()) if path is not None and path.is_file() else None

    def _save(self, key, tapes: list[Tape]) -> None:
        path = self._path(key)
        if path is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(tapes))


def _row(label: str, counts: list[int], outcome, extra: dict) -> dict:
    return {"label": label, "min": min(counts), "median": statistics.median(counts), "outcome": outcome, **extra}


def _search(cache: TapeCache, profile: Profile, mode: Mode, activity: float, rules: int, seeds: int) -> dict:
    chip = replace(profile, history=mode.history) if mode.history != profile.history else profile
    results = [cameras_per_chip(Scenario(cache.get(activity, s, mode.policy), 1, chip, mode.policy, rules,
                                         cache.frames)) for s in range(seeds)]
    looser = [cameras_per_chip(Scenario(cache.get(activity, s, mode.policy), 1, chip, mode.policy, rules,
                                        cache.frames), p95_alert_s=30.0)[0] for s in range(seeds)]
    truth = statistics.fmean(r.change for tape in cache.get(activity, 0, OLD) for r in tape.segments)
    return _row(mode.label, [n for n, _ in results], results[0][1],
                {"activity": activity, "truth": truth, "rules": rules, "profile": profile.name,
                 "at30": statistics.median(looser)})


def run(profile: Profile, activities: list[float], *, rules: tuple[int, ...] = (0, 1, 2, 3), seeds: int = 3,
        tapes: int = 4, minutes: float = 30.0, caption_tokens: int = 40, others: tuple[Profile, ...] = (),
        tape_cache: Path | None = None, progress: Callable[[str], None] = print) -> dict:
    """The table for `profile` (every mode and rule count), and for `others` (same frame size and
    sequence length: the same tapes) the joint urgency policy with 2 rules."""
    frames = plan_frames(profile, replace(URGENT, caption_tokens=caption_tokens))
    cache = TapeCache(profile, frames, tapes, int(minutes * 60), tape_cache)
    rows, sweep, other_rows = [], [], []
    for activity in activities:
        for mode in modes(caption_tokens):
            for r in rules:
                rows.append(_search(cache, profile, mode, activity, r, seeds))
                progress(f"{profile.name}, activity {activity:.0%}, {mode.label}, {r} rules: {rows[-1]['min']}")
        for other in others:
            other_rows.append(_search(cache, other, modes(caption_tokens)[0], activity, 2, seeds))
            progress(f"{other.name}, activity {activity:.0%}: {other_rows[-1]['min']}")
        if abs(activity - 0.15) < 1e-9:
            policy = replace(URGENT, caption_tokens=caption_tokens)
            base = Scenario(cache.get(activity, 0, policy), 1, profile, policy, 2, frames)
            sweep = [(n, pooled(base.with_cameras(n))) for n in range(1, 13)]
    return {"profile": profile, "frames": frames, "rows": rows, "sweep": sweep, "others": other_rows,
            "seeds": seeds, "tapes": tapes, "minutes": minutes, "caption_tokens": caption_tokens}


def mixed_site(profile: Profile, *, busy: int = 2, quiet_activity: float = 0.05, rules: int = 2, seeds: int = 3,
               tapes: int = 4, minutes: float = 30.0, caption_tokens: int = 40,
               progress: Callable[[str], None] = print) -> dict:
    """`busy` cameras that change in every segment beside quiet ones: how many cameras in all."""
    seconds = int(minutes * 60)
    policy = replace(URGENT, caption_tokens=caption_tokens)
    frames = plan_frames(profile, policy)
    counts, first = [], None
    for s in range(seeds):
        loud = record_set(profile, 1.0, 50 + s, busy, seconds, Cuts.of(policy), frames)
        calm = record_set(profile, quiet_activity, 70 + s, tapes, seconds, Cuts.of(policy), frames)
        n, outcome = cameras_per_chip(Scenario(calm, busy, profile, policy, rules, frames, fixed=tuple(loud)))
        counts.append(n)
        first = first or outcome
        progress(f"mixed site, seed {s}: {n} cameras")
    truth = statistics.fmean(r.change for tape in loud for r in tape.segments)
    return _row(f"{busy} busy ({truth:.0%} of segments change) + quiet at {quiet_activity:.0%}", counts, first,
                {"rules": rules})


def host_cost(seconds: float = 30.0) -> dict:
    """CPU seconds per video second of one camera on this machine: a 1080p30 H.264 clip through
    the real ingest (1 fps, quarter size) and gate (18-frame segments)."""
    from ..config.gate import GateConfig
    from ..frames import Segment
    from ..gate.gate import SceneGate
    from .ingest import make_clip
    from .realclips import decode

    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder) / "clip.mp4", seconds)
        start = time.process_time()
        frames = decode(clip, "host")
        decoded = time.process_time()
        gate = SceneGate(GateConfig(mode="scene_change"))
        for k in range(0, len(frames) - 1, 18):
            part = tuple(frames[k:k + 18])
            gate.decide(Segment("host", k // 18, part, part[0].media_time, part[-1].media_time + 1.0, 1.0))
        gated = time.process_time()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    return {"decode": (decoded - start) / seconds, "gate": (gated - decoded) / seconds, "machine": machine}


def _ms(value: float) -> str:
    return f"{value:.0f}"


def table(report: dict, host: dict | None = None) -> str:
    p: Profile = report["profile"]
    lines = [f"profile: {describe(p)}",
             f"segments of {report['frames']} s (1 fps, {p.frame[1]}x{p.frame[0]}); captions of "
             f"{report['caption_tokens']} tokens in the joint call (80 in the old way); "
             f"{report['seeds']} seeds x {report['tapes']} scenes x {report['minutes']:g} min",
             "cameras per chip: the largest count with p95 event-to-alert <= 20 s, load <= 85%, no change missed, "
             "no segment dropped, judged on every rotation of a seed's scenes with their events pooled; delays and "
             "load from seed 0 at its count", ""]
    if host:
        lines.insert(2, f"host per camera (1080p30 H.264, this machine: {host['machine']}): decode "
                        f"{host['decode']:.1%} + gate {host['gate']:.2%} of a core")
    lines += ["| activity (truth) | mode | rules | cameras per chip, min / median | median at p95 <= 30 s | load "
              "| event-to-alert p50 / p95 / max s | event-to-caption p50 / p95 / max s | missed | dropped |",
              "|---|---|---:|---|---:|---:|---|---|---:|---:|"]
    for r in report["rows"]:
        o: Outcome | None = r["outcome"]
        cells = ("-", "-", "-", "-", "-") if o is None else (
            f"{o.load:.0%}", f"{_ms(o.alert(0.5))} / {_ms(o.alert(0.95))} / {_ms(o.alert(1.0))} ({o.events} events)",
            f"{_ms(o.caption(0.5))} / {_ms(o.caption(0.95))} / {_ms(o.caption(1.0))}", str(o.missed), str(o.dropped))
        lines.append(f"| {r['activity']:.0%} ({r['truth']:.1%}) | {r['label']} | {r['rules']} | **{r['min']}** / "
                     f"{r['median']:g} | {r['at30']:g} | {' | '.join(cells)} |")
    if report["others"]:
        lines += ["", "other profiles (same tapes), joint call, urgency policy, 2 rules:", "",
                  "| profile | activity | cameras per chip, min / median | median at p95 <= 30 s | load "
                  "| event-to-alert p50 / p95 / max s |",
                  "|---|---|---|---:|---:|---|"]
        for r in report["others"]:
            o = r["outcome"]
            delays = "-" if o is None else f"{_ms(o.alert(0.5))} / {_ms(o.alert(0.95))} / {_ms(o.alert(1.0))}"
            lines.append(f"| {r['profile']} | {r['activity']:.0%} | **{r['min']}** / {r['median']:g} | {r['at30']:g} | "
                         f"{'-' if o is None else f'{o.load:.0%}'} | {delays} |")
    if report["sweep"]:
        lines += ["", "joint call, urgency policy, 2 rules, 15% activity (seed 0, every rotation of its scenes "
                  "pooled), per camera count:", "",
                  "| cameras | load | event-to-alert p50 / p95 / max s | event-to-caption p95 s | calls | missed | dropped |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for n, o in report["sweep"]:
            lines.append(f"| {n} | {o.load:.0%} | {_ms(o.alert(0.5))} / {_ms(o.alert(0.95))} / {_ms(o.alert(1.0))} | "
                         f"{_ms(o.caption(0.95))} | {o.calls} | {o.missed} | {o.dropped} |")
    return "\n".join(lines)


def mixed_table(rows: list[dict]) -> str:
    lines = ["| site | rules | cameras in all, min / median | load | event-to-alert p50 / p95 / max s |",
             "|---|---:|---|---:|---|"]
    for r in rows:
        o = r["outcome"]
        delays = "-" if o is None else f"{_ms(o.alert(0.5))} / {_ms(o.alert(0.95))} / {_ms(o.alert(1.0))}"
        lines.append(f"| {r['label']} | {r['rules']} | **{r['min']}** / {r['median']:g} | "
                     f"{'-' if o is None else f'{o.load:.0%}'} | {delays} |")
    return "\n".join(lines)


def simulate_clips(paths: list[Path], profile: Profile, policy: Policy = URGENT, rules: int = 2, k: float = 1.0,
                   events: dict[str, list[float]] | None = None, warmup_s: float = 0.0) -> Outcome:
    """What the simulation says for a time-scaled live run (issue 22 item 5): one camera per video
    file, read by the same ingest and gate the service uses, cut by `policy`, one chip priced by
    `profile`. Delays come back in the live run's wall seconds: a run at k x camera speed with a
    stand-in backend that sleeps each call's cost / k sees every delay divided by k. `events`
    (per file name: change start times in media seconds, e.g. judged by eye) are the truth the
    delays are measured from; without them, the start of each segment the gate described."""
    from .tapes import record_clip

    frames = plan_frames(profile, policy)
    tapes = [record_clip(path, frames, Cuts.of(policy), (events or {}).get(Path(path).name, ())) for path in paths]
    outcome = simulate(Scenario(tapes, len(tapes), profile, policy, rules, frames, warmup_s))
    outcome.caption_delays = [d / k for d in outcome.caption_delays]
    outcome.alert_delays = [d / k for d in outcome.alert_delays]
    return outcome
