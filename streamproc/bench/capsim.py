"""The chip on a simulated clock: cameras' tapes in, delays, load and drops out (bench capacity).

`simulate(Scenario)` is the one entry point; a time-scaled live run (issue 22 item 5) is compared
with it by giving it the same inputs: the tapes recorded from the same clips (`tapes.record_clip`),
the same profile and policy, and reading the live run's delays multiplied by its speed-up k (the
simulation is in media seconds; a live run at k x camera speed with a stand-in backend that sleeps
cost / k has every delay divided by k).

Model: one chip serves one job at a time (engines on one device take turns). A job is what the
policy (streamproc/urgency.py) takes from one camera: its coalesced waiting segments, or its oldest
segment; it costs `profile.call_cost` for its visual tokens (frames thinned to the segment plan's
budget). Under contention (another camera has described work waiting when the job starts) the
job is priced with the policy's busy caption budget and frames; an onset arriving in another
camera while a job runs ends that job's caption `yield_tokens` after its verdicts (or at once
if they are out), as the service's describer does. Camera c replays tape c mod len(tapes),
rotated in time by c // len(tapes) shares of its length so that copies do not change at the same
moments. The first `warmup_s` seconds are start-up
(every camera's first segment is due at once): drops and delays there are not judged.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Optional

from .policy import Order, Policy, urgency
from .profile import Profile, call_cost
from .tapes import Recorded, Tape

WARMUP_S = 300.0


@dataclass(frozen=True)
class Scenario:
    tapes: list[Tape]
    cameras: int
    profile: Profile
    policy: Policy
    rules: int
    plan_frames: int  # the model's frame budget per call (coalesced jobs are thinned to it)
    warmup_s: float = WARMUP_S
    fixed: tuple[Tape, ...] = ()  # cameras always there, first (a mixed site's busy ones); in `cameras`

    def with_cameras(self, cameras: int) -> "Scenario":
        return Scenario(self.tapes, cameras, self.profile, self.policy, self.rules, self.plan_frames,
                        self.warmup_s, self.fixed)

    def layout(self) -> list["_Camera"]:
        """Camera c: a fixed tape, else tape c mod len(tapes) rotated by its copy's share."""
        rest = self.cameras - len(self.fixed)
        copies = max(1, math.ceil(rest / len(self.tapes)))
        out = [_Camera(tape, 0.0) for tape in self.fixed[:self.cameras]]
        for c in range(max(0, rest)):
            tape = self.tapes[c % len(self.tapes)]
            out.append(_Camera(tape, (c // len(self.tapes)) * tape.length / copies))
        return out


@dataclass
class Outcome:
    cameras: int
    load: float = 0.0
    caption_delays: list[float] = field(default_factory=list)  # event to caption, s
    alert_delays: list[float] = field(default_factory=list)  # event to the rules' verdicts, s
    missed: int = 0  # segments with change that the gate skipped (judged part of the run)
    dropped: int = 0  # described segments a full lane dropped (judged part)
    dropped_warmup: int = 0
    events: int = 0
    calls: int = 0
    aborted: int = 0  # calls aborted for an onset (policy.preempt)
    contended: int = 0  # calls taken while another camera had described work waiting
    ended: int = 0  # captions ended early for an onset in another camera (policy.yield_tokens)

    @staticmethod
    def _pick(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(math.ceil(q * len(ordered))) - 1)] if ordered else 0.0

    def alert(self, q: float) -> float:
        return self._pick(self.alert_delays, q)

    def caption(self, q: float) -> float:
        return self._pick(self.caption_delays, q)

    def fits(self, p95_alert_s: float = 20.0, max_load: float = 0.85) -> bool:
        """Issue 22's bar for "cameras per chip" (no judged event: no evidence, not a pass)."""
        return self.events > 0 and self.alert(0.95) <= p95_alert_s and self.load <= max_load and not self.missed and not self.dropped


@dataclass
class _Camera:
    tape: Tape
    shift: float
    waiting: list[Recorded] = field(default_factory=list)
    done: dict[int, tuple[float, float]] = field(default_factory=dict)  # index -> (caption at, alert at)
    dropped: set[int] = field(default_factory=set)

    def time(self, t: float) -> float:
        return (t + self.shift) % self.tape.length


def _arrivals(cameras: list[_Camera]) -> list[tuple[float, int, Recorded]]:
    out = [(camera.time(r.end), c, r) for c, camera in enumerate(cameras) for r in camera.tape.segments if r.describe]
    return sorted(out, key=lambda a: (a[0], a[1]))


def _choose(cameras: list[_Camera], policy: Policy, last: int) -> Optional[int]:
    ready = [c for c, camera in enumerate(cameras) if camera.waiting]
    if not ready:
        return None
    if policy.order is Order.ROUND_ROBIN:
        return min(ready, key=lambda c: (c - last - 1) % len(cameras))

    def key(c: int) -> tuple[int, float]:
        waiting = cameras[c].waiting
        return min(urgency(r.reason, r.onset) for r in waiting), min(cameras[c].time(r.end) for r in waiting)

    return min(ready, key=key)


def _take(camera: _Camera, policy: Policy) -> list[Recorded]:
    if policy.coalesce:
        job, camera.waiting = camera.waiting, []
    else:
        job, camera.waiting = camera.waiting[:1], camera.waiting[1:]
    return job


@dataclass
class _Chip:
    """The job in flight: which camera, its segments, its class, when it ends."""

    camera: int = -1
    job: list[Recorded] = field(default_factory=list)
    rank: int = 0
    until: float = 0.0
    alert_at: float = 0.0  # when the running job's verdicts are out
    busy_s: float = 0.0


def _arrive(s: Scenario, cameras: list[_Camera], chip: _Chip, clock: float, c: int, record: Recorded,
            outcome: Outcome) -> None:
    camera = cameras[c]
    camera.waiting.append(record)
    if not s.policy.coalesce and len(camera.waiting) > s.policy.queue_size:
        gone = camera.waiting.pop(0)  # drop_oldest
        camera.dropped.add(gone.index)
        outcome.dropped_warmup += clock < s.warmup_s
        outcome.dropped += clock >= s.warmup_s
    rank = urgency(record.reason, record.onset)
    if s.policy.preempt and chip.job and clock < chip.until and rank < chip.rank:
        # abort the running call (Backend.abort: the engine rolls its history back); its
        # segments wait again, the chip time it used is spent
        owner = cameras[chip.camera]
        owner.waiting[:0] = chip.job
        for r in chip.job:
            owner.done.pop(r.index, None)
        chip.busy_s -= chip.until - clock
        chip.until, chip.job = clock, []
        outcome.aborted += 1
    elif record.onset and chip.job and c != chip.camera and clock < chip.until:
        _end_caption(s, cameras[chip.camera], chip, clock, outcome)


def _end_caption(s: Scenario, owner: _Camera, chip: _Chip, clock: float, outcome: Outcome) -> None:
    """An onset elsewhere: the running job's caption ends `yield_tokens` tokens after its
    verdicts are out (or after now, if they already are)."""
    if s.policy.yield_tokens is None or not s.rules:
        return
    end = max(chip.alert_at, clock) + s.profile.decode(s.policy.yield_tokens)
    if end >= chip.until:
        return
    chip.busy_s -= chip.until - end
    chip.until = end
    for r in chip.job:
        owner.done[r.index] = (end, owner.done[r.index][1])
    outcome.ended += 1


def _serve(s: Scenario, cameras: list[_Camera], chip: _Chip, clock: float, outcome: Outcome) -> None:
    c = _choose(cameras, s.policy, chip.camera)
    assert c is not None
    job = _take(cameras[c], s.policy)
    frames = min(s.plan_frames, sum(r.frames for r in job))
    policy = s.policy
    if any(camera.waiting for k, camera in enumerate(cameras) if k != c):  # contention: others wait
        policy = replace(policy, caption_tokens=policy.caption_budget(True))
        frames = min(frames, policy.busy_frames or frames)
        outcome.contended += 1
    cost = call_cost(s.profile, policy, s.rules, frames // 2 * cameras[c].tape.tokens_per_pair)
    for r in job:
        cameras[c].done[r.index] = (clock + cost.caption_at, clock + cost.alert_at)
    chip.camera, chip.job, chip.until, chip.alert_at = c, job, clock + cost.total, clock + cost.alert_at
    chip.rank = min(urgency(r.reason, r.onset) for r in job)
    chip.busy_s += cost.total
    outcome.calls += 1


def simulate(scenario: Scenario) -> Outcome:
    s = scenario
    cameras = s.layout()
    arrivals = _arrivals(cameras)
    outcome, chip = Outcome(s.cameras), _Chip()
    clock, i = 0.0, 0
    while i < len(arrivals) or any(camera.waiting for camera in cameras):
        # arrivals up to the moment the chip is free (or now) first: segments that end together wait together
        if i < len(arrivals) and (arrivals[i][0] <= max(chip.until, clock) or not any(c.waiting for c in cameras)):
            clock, c, record = arrivals[i]
            i += 1
            _arrive(s, cameras, chip, clock, c, record, outcome)
            continue
        clock = max(clock, chip.until)
        _serve(s, cameras, chip, clock, outcome)
    outcome.load = chip.busy_s / max(camera.tape.length for camera in cameras)
    for camera in cameras:
        _judge(camera, s.warmup_s, outcome)
    return outcome


def _judge(camera: _Camera, warmup_s: float, outcome: Outcome) -> None:
    """Delays per truth event: to the first segment that holds the change's start (its last frame
    at or after it); a skipped one counts as missed, a dropped one as dropped (already counted)."""
    segments = camera.tape.segments
    outcome.missed += sum(r.change and not r.describe and camera.time(r.end) >= warmup_s for r in segments)
    k = 0
    for start in camera.tape.events:
        while k < len(segments) and segments[k].end - 1.0 < start:
            k += 1
        if k == len(segments):
            break
        seen = camera.time(start)
        r = segments[k]
        if seen < warmup_s or r.index not in camera.done or camera.time(r.end) < seen:
            continue  # start-up, skipped or dropped (counted apart), or across the replay's seam
        caption_at, alert_at = camera.done[r.index]
        outcome.events += 1
        outcome.caption_delays.append(caption_at - seen)
        outcome.alert_delays.append(alert_at - seen)


def pooled(scenario: Scenario) -> Outcome:
    """The scenario once per rotation of its tapes (camera c takes tape c + j for j = 0 .. T-1),
    events pooled: every tape counts at every camera count, so a small count is not judged on
    the first few tapes alone. Load is the highest of the rotations'; misses and drops add up."""
    tapes = list(scenario.tapes)
    out = Outcome(scenario.cameras)
    for j in range(len(tapes)):
        rotated = Scenario(tapes[j:] + tapes[:j], scenario.cameras, scenario.profile, scenario.policy,
                           scenario.rules, scenario.plan_frames, scenario.warmup_s, scenario.fixed)
        one = simulate(rotated)
        out.load = max(out.load, one.load)
        out.caption_delays += one.caption_delays
        out.alert_delays += one.alert_delays
        for name in ("missed", "dropped", "dropped_warmup", "events", "calls", "aborted", "contended", "ended"):
            setattr(out, name, getattr(out, name) + getattr(one, name))
    return out


def cameras_per_chip(scenario: Scenario, limit: int = 48, p95_alert_s: float = 20.0) -> tuple[int, Optional[Outcome]]:
    """The largest camera count whose pooled outcome meets `Outcome.fits`, counting up from one
    (the first count that fails ends the search)."""
    best, best_outcome = 0, None
    for cameras in range(max(1, len(scenario.fixed)), limit + 1):
        outcome = pooled(scenario.with_cameras(cameras))
        if not outcome.fits(p95_alert_s):
            break
        best, best_outcome = cameras, outcome
    return best, best_outcome


def median(values: list[int]) -> float:
    return statistics.median(values) if values else 0.0
