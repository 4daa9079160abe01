"""`streamproc bench live`: the capacity simulation checked against the real service (issue 22
item 5).

1. N generated scenes (bench/scenes.py, the capacity bench's own kind, with known change times)
   are written as 1 fps H.264 files.
2. Simulated: each file through the project's ingest and the real gate, cut as the policy says
   (`tapes.record_clip`), one chip priced by the timing profile (`capsim.simulate`).
3. Live: `App` (the service itself: intake threads, segmenter with the onset cuts, gate stage,
   lanes, the model worker, the describer, the bus) with the N files read at k x camera speed
   (`realtime: true, speed: k`) and a stand-in backend that sleeps each call's profile cost / k
   for the visual tokens it is given (the rules' share included) and streams its verdict lines
   before its caption, as the joint call does. Every caption and alert event is timed as it
   reaches the bus.
4. Both judged the same way: per truth event, the delay to the caption and to the alert of the
   segment that holds the change's start; the live delays multiplied by k (media seconds).
   They should agree within 10% (p50 and p95), and neither drops a segment.

The stand-in answers rule r0 yes and no in turn on each camera (raise after 1, clear after 1), so
that every described segment makes an alert event whose time can be measured; the other rules
say no.
"""
from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..backends.base import BackendCapabilities, Result
from ..bus import BasePlugin
from ..ingest.sampling import tokens_per_frame_pair
from ..urgency import URGENT, Cuts, Policy
from .capacity import plan_frames
from .capsim import Outcome, Scenario, simulate
from .profile import Profile, call_cost
from .scenes import Scene, activity_scene
from .tapes import Tape, record_clip


# -- the files --------------------------------------------------------------------------------


def write_scene(scene: Scene, seconds: int, path: Path) -> Path:
    """The scene as a 1 fps H.264 file (high quality: the truth must stay visible)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.options = {"crf": "18", "g": "10", "preset": "veryfast"}
        for t in range(seconds):
            frame = av.VideoFrame.from_ndarray(scene.frame(float(t), t), format="rgb24")
            frame.pts = t
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truth(scene: Scene, seconds: int) -> list[float]:
    """Media times at which a change starts (as record_scene has them)."""
    return sorted(a for event in scene.events for a, _ in event.visible_changes(scene.width, scene.height)
                  if 0 < a < seconds - 1)


# -- the stand-in model -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScaledRequest:
    visual_tokens: int
    prompt: str
    source: str
    contended: bool = False  # taken while other cameras waited: the policy's busy caption budget


class ScaledInputs:
    """The real input builder for what sizing reads (tokenizer, prompt tokens, vision limits);
    a segment's request is only its visual token count (no pixel rows: their CPU time is not
    the chip's, and the profile's host figure already counts it)."""

    def __init__(self, builder: Any):
        self.builder = builder
        self.tokenizer, self.vision = builder.tokenizer, builder.vision

    def prompt_tokens(self, prompt: str, system: Any = None) -> int:
        return self.builder.prompt_tokens(prompt, system)

    def build_segment(self, segment: Any, prompt: str, system: Any = None, answer_reserve: int = 0) -> ScaledRequest:
        height, width = segment.frame_size
        return ScaledRequest(len(segment.frames) // 2 * tokens_per_frame_pair(height, width), prompt, segment.source,
                             segment.contended)


CAPTION_WORDS = "caption: a person walks past a parked car and on along the fence "  # no sentence end


class ScaledBackend:
    """Sleeps each call's cost from the timing profile, divided by k; streams the verdict lines
    (at the time the profile says they are decoded) before the caption."""

    name = "scaled"

    def __init__(self, builder: Any, profile: Profile, policy: Policy, rules: int, speed: float):
        self.model_id = f"scaled stand-in: {profile.name} / {speed:g}"
        self.inputs = ScaledInputs(builder)
        self.profile, self.policy, self.rules, self.speed = profile, policy, rules, speed
        self.capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=profile.history,
                                                follow_up=False, sampling=False, streaming=True)
        self.seq_length = None
        self.calls = 0
        self._answered: dict[str, int] = {}  # calls per camera: r0 says yes and no in turn on each
        self.busy_s = 0.0
        self._stop = threading.Event()

    def describe(self, inputs: ScaledRequest, params: Any, on_token: Optional[Callable[[int], Any]] = None) -> Result:
        """Sleeps until the verdicts are due and streams them, then streams the caption's tokens at
        the profile's decode rate; a true on_token return ends the caption there (the describer's
        yield for an onset elsewhere)."""
        started = time.monotonic()
        policy = replace(self.policy, caption_tokens=self.policy.caption_budget(inputs.contended))
        cost = call_cost(self.profile, policy, self.rules, inputs.visual_tokens)
        self.calls += 1
        turn = self._answered[inputs.source] = self._answered.get(inputs.source, 0) + 1
        verdicts = "".join(f"r{j}: {'yes' if j == 0 and turn % 2 else 'no'}\n" for j in range(self.rules))
        encode = self.inputs.tokenizer.encode
        self._until(started + cost.alert_at / self.speed)
        for token in encode(verdicts) if on_token is not None else ():
            on_token(token)
        words = encode(CAPTION_WORDS)
        caption: list[int] = []
        for i in range(policy.caption_tokens if on_token is not None and cost.alert_at < cost.total else 0):
            self._until(started + (cost.alert_at + self.profile.decode(i + 1)) / self.speed)
            caption.append(words[i % len(words)])
            if on_token(caption[-1]):
                break
        if not caption:
            self._until(started + cost.total / self.speed)
        self.busy_s += time.monotonic() - started
        text = verdicts + self.inputs.tokenizer.decode(caption) if caption else verdicts + "caption: " + CAPTION_WORDS
        ended = bool(caption) and len(caption) < policy.caption_tokens
        return Result(text, len(encode(inputs.prompt)) + inputs.visual_tokens, inputs.visual_tokens,
                      len(encode(verdicts)) + (len(caption) or policy.caption_tokens), self.model_id,
                      finish_reason="ended" if ended else "length")

    def _until(self, deadline: float) -> None:
        self._stop.wait(max(0.0, deadline - time.monotonic()))

    def follow_up(self, inputs: Any, params: Any) -> Result:
        raise NotImplementedError("the stand-in answers joint calls only")

    def abort(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass


class Timeline(BasePlugin):
    """Every caption and alert as it reaches the bus: (wall time, type, source, segment)."""

    name = "timeline"

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, dict]] = []
        self._lock = threading.Lock()

    def handle(self, event: Any) -> None:
        if event.type in ("caption", "alert"):
            with self._lock:
                self.seen.append((time.time(), event.type, event.source, dict(event.data["segment"])))


# -- the two runs -----------------------------------------------------------------------------


@dataclass
class Setup:
    cameras: int = 4
    speed: float = 8.0
    seconds: int = 180
    activity: float = 0.3
    rules: int = 2
    seed: int = 0
    policy: Policy = URGENT


def scenes(setup: Setup, profile: Profile, frames: int) -> list[Scene]:
    return [activity_scene(1000 * setup.seed + c, setup.seconds, setup.activity, frames, profile.frame, foliage=c % 2 == 1)
            for c in range(setup.cameras)]


def _config(paths: list[Path], setup: Setup, frames: int) -> Any:
    from ..config import config_from_data

    policy = setup.policy
    return config_from_data({
        "sources": [{"name": f"cam{c}", "path": str(p), "realtime": True, "speed": setup.speed}
                    for c, p in enumerate(paths)],
        "segmenting": {"seq_length": 8192, "max_duration_s": float(frames)},
        "gate": {"mode": "scene_change"},
        "rules": [{"name": f"r{j}", "question": f"Is thing number {j} happening?", "raise_after": 1, "clear_after": 1}
                  for j in range(setup.rules)],
        "service": {"stats_interval_s": 3600, "queue_size": policy.queue_size, "policy": {
            "preset": "urgent", "caption_tokens": policy.caption_tokens, "verdicts_first": policy.verdicts_first,
            "coalesce": policy.coalesce, "order": policy.order.value, "rules_call": "joint", **_contention(policy),
            **({"fixed_segments": True} if policy.onset_s is None else
               {"onset_s": policy.onset_s, "quiet_s": policy.quiet_s, "hold_s": policy.hold_s})}},
        "http": {"enabled": False},
        # alert snapshots are part of the service's work: kept beside the files, not in the working directory
        "sinks": {"attachments": {"dir": str(paths[0].parent / "attachments")}},
    })


def _contention(policy: Policy) -> dict:
    values = {name: getattr(policy, name) for name in ("busy_caption_tokens", "busy_frames", "yield_tokens")}
    if all(v is None for v in values.values()):
        return {"contention": False}
    return {name: value for name, value in values.items() if value is not None}


def run_live(paths: list[Path], setup: Setup, profile: Profile, frames: int, tokenizer_dir: Path) -> tuple[Timeline, dict]:
    """The service over the files at k x speed; its timeline and counters."""
    from ..app import App
    from ..qwen import InputBuilder

    builder = InputBuilder.from_pretrained(tokenizer_dir)
    backends: list[ScaledBackend] = []

    def factory() -> ScaledBackend:
        backends.append(ScaledBackend(builder, profile, setup.policy, setup.rules, setup.speed))
        return backends[-1]

    timeline = Timeline()
    app = App(_config(paths, setup, frames), backend_factory=factory, plugins=[timeline], serve_http=False)
    started = time.monotonic()
    app.start()
    while not app.finished() and time.monotonic() - started < 10 * setup.seconds / setup.speed + 60:
        time.sleep(0.05)
    stats = app.stats()
    app.stop()
    return timeline, {"dropped": sum(s["dropped"] for s in stats["sources"].values()), "calls": backends[0].calls,
                      "busy_s": backends[0].busy_s, "coalesced": sum(s["coalesced"] for s in stats["sources"].values()),
                      "wall_s": time.monotonic() - started}


def judge_live(tapes: list[Tape], timeline: Timeline, speed: float) -> Outcome:
    """The simulator's judgement (capsim._judge) on what the live run published: per truth event,
    the first caption and alert whose segment covers the tape segment that holds its start."""
    outcome = Outcome(len(tapes))
    for c, tape in enumerate(tapes):
        mine = [(t, kind, seg) for t, kind, source, seg in timeline.seen if source == f"cam{c}"]
        if not mine:
            continue
        origin = min(seg["start_wall"] - seg["start"] / speed for _, _, seg in mine)
        segments, k = tape.segments, 0
        outcome.missed += sum(r.change and not r.describe for r in segments)
        for start in tape.events:
            while k < len(segments) and segments[k].end - 1.0 < start:
                k += 1
            if k == len(segments):
                break
            r = segments[k]
            if not r.describe:
                continue
            covering = {kind: next((t for t, kk, seg in mine if kk == kind and seg["start"] <= r.start + 0.01
                                    and seg["end"] >= r.end - 0.01), None) for kind in ("caption", "alert")}
            if covering["caption"] is None:
                continue
            outcome.events += 1
            seen = origin + start / speed
            outcome.caption_delays.append((covering["caption"] - seen) * speed)
            alert_at = covering["alert"] if covering["alert"] is not None else covering["caption"]
            outcome.alert_delays.append((alert_at - seen) * speed)
    return outcome


def run(setup: Setup, profile: Profile, tokenizer_dir: Path, folder: Optional[Path] = None,
        progress: Callable[[str], None] = print) -> dict:
    frames = plan_frames(profile, setup.policy)
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(folder or scratch)
        made = scenes(setup, profile, frames)
        paths = [write_scene(scene, setup.seconds, where / f"cam{c}.mp4") for c, scene in enumerate(made)]
        progress(f"{len(paths)} clips of {setup.seconds} s written")
        tapes = [record_clip(p, frames, Cuts.of(setup.policy), truth(scene, setup.seconds))
                 for p, scene in zip(paths, made)]
        simulated = simulate(Scenario(tapes, len(tapes), profile, setup.policy, setup.rules, frames, warmup_s=0.0))
        progress(f"simulated: {simulated.events} events, p95 alert {simulated.alert(0.95):.1f} s")
        timeline, counters = run_live(paths, setup, profile, frames, tokenizer_dir)
    live = judge_live(tapes, timeline, setup.speed)
    progress(f"live: {live.events} events, p95 alert {live.alert(0.95):.1f} s")
    live.load = counters["busy_s"] * setup.speed / max(t.length for t in tapes)
    return {"setup": setup, "profile": profile, "frames": frames, "simulated": simulated, "live": live,
            "counters": counters}


def agreement(report: dict) -> dict[str, float]:
    """Relative differences, live against simulated, of p50/p95 caption and alert delays."""
    sim, live = report["simulated"], report["live"]
    out = {}
    for name in ("caption", "alert"):
        for q in (0.5, 0.95):
            a, b = getattr(sim, name)(q), getattr(live, name)(q)
            out[f"{name} p{int(q * 100)}"] = abs(b - a) / a if a > 0 else math.inf
    return out


def table(report: dict) -> str:
    s: Setup = report["setup"]
    sim, live, counters = report["simulated"], report["live"], report["counters"]
    lines = [f"{s.cameras} cameras, {s.seconds} s scenes at {s.activity:.0%} activity read at {s.speed:g} x camera speed, "
             f"{s.rules} rules, {report['frames']}-frame segments; policy: {s.policy.describe()}",
             f"profile: {report['profile'].name}; live run {counters['wall_s']:.0f} s wall, {counters['calls']} calls, "
             f"{counters['coalesced']} segments coalesced into others", "",
             "| run | events | load | event-to-alert p50 / p95 / max s | event-to-caption p50 / p95 / max s | dropped |",
             "|---|---:|---:|---|---|---:|"]
    for name, o, dropped in (("simulated", sim, sim.dropped), ("live service", live, counters["dropped"])):
        lines.append(f"| {name} | {o.events} | {o.load:.0%} | {o.alert(0.5):.1f} / {o.alert(0.95):.1f} / {o.alert(1.0):.1f} | "
                     f"{o.caption(0.5):.1f} / {o.caption(0.95):.1f} / {o.caption(1.0):.1f} | {dropped} |")
    lines += ["", "live against simulated: " + ", ".join(f"{k} {v:+.1%}".replace("+", "") for k, v in agreement(report).items())]
    return "\n".join(lines)


__all__ = ["Setup", "agreement", "run", "table"]
