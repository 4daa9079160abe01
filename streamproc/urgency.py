"""The urgency policy (issue 22): how the service cuts, orders and merges a camera's work, and how
it asks the rules. One description, run by the service (the segmenter's onset cuts, the urgent
lanes, the describer's joint call) and by `bench capacity`'s simulator alike.

Its parameters:

  onset_s          When the gate sees change start in a camera that was quiet (no frame-to-frame
                   change in its last quiet_s seconds, `SceneGate.moved`), the running segment is
                   closed `onset_s` seconds after the first changed frame (an even frame count: at
                   1 fps, onset_s=4 closes it after frames t, t+1, t+2, t+3 with t the first
                   changed one; frames before t that the segment held stay in it). That short
                   *onset* segment goes to the chip first. `None`: segments are never closed early
                   (nor by hold_s).
  quiet_s          "Quiet" above: no frame-to-frame change in the camera's last quiet_s seconds.
  hold_s           A segment never holds a change longer than this: change that starts while the
                   camera is not quiet closes the running segment hold_s seconds after its first
                   changed frame (same even-count rule). `None`: such segments run to full length.
  verdicts_first   The joint answer lists the rules' verdict lines BEFORE the caption, and the
                   describer parses them as they stream: the alert goes out when the verdicts are
                   decoded, the caption when the whole answer is (whether answering rules first
                   changes a real model's verdicts must be checked on a real checkpoint).
  caption_tokens   The caption's token budget: the prompt asks for at most this many and decoding
                   stops there. The joint call decodes caption_tokens + rules x verdict_tokens.
  verdict_tokens   Tokens per rule verdict in the joint answer ("fence: yes" on its own line).
  rules_mode       JOINT: one call per described segment answers the caption and every rule.
                   FOLLOWUP (the old way): a caption call, then one follow-up turn per rule
                   (history bmodel: only the question is prefilled; otherwise ViT and prefill
                   run again per rule). AUTO: FOLLOWUP where the backend declares it keeps its
                   KV history (`BackendCapabilities.keeps_history`), else JOINT.
  coalesce         True: a camera's waiting described segments become ONE call when the chip
                   takes the camera: their frames merged in time order and thinned evenly to the
                   model's frame budget (the segment plan's frame count); nothing that changed
                   is dropped, only thinned. False (the old way): segments wait one by one in a
                   lane of `queue_size` and a full lane drops its oldest (live drop_oldest).
  order            URGENCY: the chip takes the camera whose waiting work has the highest class,
                   then the oldest (earliest segment end among its waiting segments):
                     1. onset segments,
                     2. other changed segments (gate reasons change, first, gap, resync, off),
                     3. heartbeat segments of quiet cameras (gate reason heartbeat);
                   ROUND_ROBIN (the old way): cameras in turn, whatever they hold.
  preempt          (simulator only; evaluated, not adopted) an onset that arrives while the chip
                   runs a lower-class call aborts that call (its chip time is lost).
  busy_caption_tokens
                   Under contention (another live camera has described work waiting when the model
                   takes a live camera; files read as fast as they decode neither contend nor
                   count), the call's caption budget is this instead of caption_tokens: a
                   shorter caption frees the chip sooner for the cameras waiting. None: off.
  busy_frames      Under contention the call's frames are thinned evenly to this many (first and
                   last kept): less ViT work; nothing is dropped. None: off.
  yield_tokens     Once a running call's verdict lines are out (the alert has gone), an onset
                   segment waiting in ANOTHER live camera ends the call's caption within this many more
                   tokens (at a sentence end if one comes first; the caption so far is kept, its
                   event says finish_reason "ended"). The call is not aborted: nothing it spent is
                   lost, only caption words. Needs a streaming backend and at least one rule.
                   None: off.
  heartbeat_s      The gate's heartbeat (gate.heartbeat_s): a quiet camera is described at
                   least this often, at the lowest priority.

URGENT holds the defaults: onset 2 s after 2 s quiet, hold 8 s, verdicts first, 40-token
captions (16 and at most 6 frames under contention, a caption ended within 8 tokens for an onset
elsewhere), 6 tokens per verdict, joint call, coalescing, urgency order, no preempt.
docs/benchmarks.md ("Cameras per chip") has the figures behind these values and the
alternatives tried. OLD is the
service before issue 22. The service takes them as `service.policy.preset` (config/service.py).

Skipped (unchanged) segments never take the chip; their events go out at once when their camera
has nothing waiting, else after its waiting work.

This module imports nothing of the project: the config, the segmenter, the lanes, the describer
and the bench all read it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, TypeVar


class RulesMode(enum.Enum):
    JOINT = "joint"
    FOLLOWUP = "followup"
    AUTO = "auto"  # FOLLOWUP on a backend that keeps its KV history, else JOINT

    def resolve(self, keeps_history: bool) -> "RulesMode":
        if self is RulesMode.AUTO:
            return RulesMode.FOLLOWUP if keeps_history else RulesMode.JOINT
        return self


class Order(enum.Enum):
    URGENCY = "urgency"
    ROUND_ROBIN = "round_robin"


class Urgency(enum.IntEnum):
    """Priority classes (lower is served first)."""

    ONSET = 1
    CHANGED = 2
    HEARTBEAT = 3


class Preset(enum.Enum):
    URGENT = "urgent"
    OLD = "old"


@dataclass(frozen=True)
class Policy:
    onset_s: Optional[float] = 2.0
    quiet_s: float = 2.0
    hold_s: Optional[float] = 8.0
    verdicts_first: bool = True
    preempt: bool = False
    caption_tokens: int = 40
    verdict_tokens: int = 6
    rules_mode: RulesMode = RulesMode.JOINT
    coalesce: bool = True
    order: Order = Order.URGENCY
    queue_size: int = 4  # only without coalescing
    heartbeat_s: Optional[float] = 600.0
    busy_caption_tokens: Optional[int] = 16
    busy_frames: Optional[int] = 6
    yield_tokens: Optional[int] = 8

    def caption_budget(self, contended: bool) -> int:
        """The caption's token budget for a call taken with (or without) other cameras waiting."""
        if contended and self.busy_caption_tokens is not None:
            return min(self.caption_tokens, self.busy_caption_tokens)
        return self.caption_tokens

    def describe(self) -> str:
        onset = (f"onset {self.onset_s:g} s after {self.quiet_s:g} s quiet, hold {self.hold_s:g} s"
                 if self.onset_s is not None and self.hold_s is not None else
                 f"onset {self.onset_s:g} s" if self.onset_s is not None else "fixed segments")
        if self.verdicts_first and self.rules_mode is not RulesMode.FOLLOWUP:
            onset += ", verdicts first"
        if self.preempt:
            onset += ", onset preempts"
        if self.busy_caption_tokens is not None or self.busy_frames is not None:
            onset += (f", under contention {self.caption_budget(True)}-token captions"
                      f"{f' and {self.busy_frames} frames' if self.busy_frames else ''}")
        if self.yield_tokens is not None:
            onset += f", a caption ends within {self.yield_tokens} tokens for an onset elsewhere"
        lanes = "coalesced" if self.coalesce else f"lanes of {self.queue_size}, drop oldest"
        return (f"{self.rules_mode.value} rules, {self.caption_tokens}-token captions, {onset}, {lanes}, "
                f"{self.order.value.replace('_', ' ')}")


URGENT = Policy()
# what the service did before issue 22: follow-up turns, 80-token captions, fixed segments,
# round robin over lanes of 4 that drop their oldest
OLD = Policy(onset_s=None, hold_s=None, verdicts_first=False, caption_tokens=80, rules_mode=RulesMode.FOLLOWUP,
             coalesce=False, order=Order.ROUND_ROBIN, busy_caption_tokens=None, busy_frames=None, yield_tokens=None)
PRESETS = {Preset.URGENT: URGENT, Preset.OLD: OLD}


def urgency(reason: str, onset: bool) -> Urgency:
    """The class of a described segment, from the gate's reason and the onset cut."""
    if onset:
        return Urgency.ONSET
    return Urgency.HEARTBEAT if reason == "heartbeat" else Urgency.CHANGED


# -- onset and hold cuts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cuts:
    """The policy's early cuts, in frames (1 fps: seconds); enabled=False: fixed segments only."""

    enabled: bool
    onset: int = 4
    quiet: int = 2
    hold: int = 1 << 30

    @classmethod
    def of(cls, policy: Policy, fps: float = 1.0) -> "Cuts":
        if policy.onset_s is None:
            return cls(False)
        hold = 1 << 30 if policy.hold_s is None else max(2, int(round(policy.hold_s * fps)))
        return cls(True, max(1, int(round(policy.onset_s * fps))), max(1, int(round(policy.quiet_s * fps))), hold)


Image = TypeVar("Image")
Moved = Callable[[Image, Image], bool]  # does the second frame differ from the first (the gate's check)


class OnsetCutter:
    """Watches one camera's frames as a segment fills and says when to close it early.

    `observe(image, buffered)` after each frame is appended (`buffered`: the frames the running
    segment now holds); True: close the segment now. A segment closes `onset` frames after the
    first changed frame when the camera was quiet before it (`onset_started` tells which), or
    `hold` frames after it otherwise, and only at an even frame count. `closed()` after each
    segment the caller cuts (early or full)."""

    def __init__(self, cuts: Cuts, moved: Moved):
        self.cuts = cuts
        self.moved = moved
        self._last = None
        self._still = 0  # frames in a row without frame-to-frame change
        self._first: Optional[int] = None  # position in the segment of its first changed frame
        self.onset_started = False

    def observe(self, image, buffered: int) -> bool:
        cuts = self.cuts
        if not cuts.enabled:
            return False
        if self._last is not None:
            changed = self.moved(self._last, image)
            if changed and self._first is None:
                self._first, self.onset_started = buffered - 1, self._still >= cuts.quiet
            self._still = 0 if changed else self._still + 1
        self._last = image
        if self._first is None:
            return False
        wait = cuts.onset if self.onset_started else cuts.hold
        return buffered >= self._first + wait and buffered % 2 == 0

    def closed(self) -> None:
        self._first, self.onset_started = None, False

    def reset(self) -> None:
        """A gap or a new frame size: forget the last frame."""
        self._last, self._still = None, 0
        self.closed()


# -- coalescing ---------------------------------------------------------------------------------

T = TypeVar("T")


def thin(frames: Sequence[T], budget: int) -> list[T]:
    """`budget` frames (even, at least 2) spread evenly over `frames` in time order, the first and
    the last kept; all of them when they fit."""
    budget = max(2, budget - budget % 2)
    if len(frames) <= budget:
        return list(frames)
    step = (len(frames) - 1) / (budget - 1)
    return [frames[int(round(i * step))] for i in range(budget)]


__all__ = ["OLD", "PRESETS", "URGENT", "Cuts", "OnsetCutter", "Order", "Policy", "Preset", "RulesMode",
           "Urgency", "replace", "thin", "urgency"]
