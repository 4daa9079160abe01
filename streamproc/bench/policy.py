"""The urgency policy, as `bench capacity` simulates it and the live service is to run it (issue 22).

One description, read by the simulator (bench/capacity.py) and meant to be implemented by the
service identically. Its parameters:

  onset_s          When the gate sees change start in a camera that was quiet (no frame-to-frame
                   change in its last quiet_s seconds, `SceneGate.moved`), the running segment is closed
                   `onset_s` seconds after the first changed frame (an even frame count: at 1 fps,
                   onset_s=4 closes it after frames t, t+1, t+2, t+3 with t the first changed one;
                   frames before t that the segment held stay in it). That short *onset* segment
                   goes to the chip first. `None`: segments are never closed early (nor by hold_s).
  quiet_s          "Quiet" above: no frame-to-frame change in the camera's last quiet_s seconds.
  hold_s           A segment never holds a change longer than this: change that starts while the
                   camera is not quiet closes the running segment hold_s seconds after its first
                   changed frame (same even-count rule). `None`: such segments run to full length.
  verdicts_first   The joint answer lists the rules' verdict lines BEFORE the caption, and the
                   service parses them as they stream: the alert goes out when the verdicts are
                   decoded, the caption when the whole answer is (whether answering rules first
                   changes a real model's verdicts must be checked on a real checkpoint).
  caption_tokens   The caption's token budget: the prompt asks for at most this many and decoding
                   stops there. The joint call decodes caption_tokens + rules x verdict_tokens.
  verdict_tokens   Tokens per rule verdict in the joint answer ("fence: yes" on its own line).
  rules_mode       JOINT: one call per described segment answers the caption and every rule.
                   FOLLOWUP (the old way): a caption call, then one follow-up turn per rule
                   (history bmodel: only the question is prefilled; otherwise ViT and prefill run
                   again per rule).
  coalesce         True: a camera's waiting described segments become ONE call when the chip
                   takes the camera: their frames merged in time order and thinned evenly to the
                   model's frame budget (the segment plan's frame count); nothing that changed
                   is dropped, only thinned. False (the old way): segments wait one by one in a
                   lane of `queue_size` and a full lane drops its oldest (live drop_oldest).
  order            URGENCY: the chip takes the camera whose waiting work has the highest class,
                   then the oldest (earliest segment end among its waiting segments):
                     1. onset segments,
                     2. other changed segments (gate reasons change, first, gap, resync),
                     3. heartbeat segments of quiet cameras (gate reason heartbeat);
                   ROUND_ROBIN (the old way): cameras in turn, whatever they hold.
  preempt          An onset segment that arrives while the chip runs a lower-class call aborts
                   that call (Backend.abort; the engine rolls its history back); the aborted
                   call's segments wait again (coalesced) and the time it had used is lost.
  heartbeat_s      The gate's heartbeat (gate.heartbeat_s): a quiet camera is described at
                   least this often, at the lowest priority.

URGENT below holds the defaults the benchmarks use: onset 4 s after 2 s quiet, hold 8 s, verdicts
first, 40-token captions, 6 tokens per verdict, joint call, coalescing, urgency order, no preempt.
OLD is the service before issue 22.

Skipped (unchanged) segments never take the chip; their events go out at once when their camera
has nothing waiting, else after its waiting work (as GatedLanes does).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Optional


class RulesMode(enum.Enum):
    JOINT = "joint"
    FOLLOWUP = "followup"


class Order(enum.Enum):
    URGENCY = "urgency"
    ROUND_ROBIN = "round_robin"


class Urgency(enum.IntEnum):
    """Priority classes (lower is served first)."""

    ONSET = 1
    CHANGED = 2
    HEARTBEAT = 3


@dataclass(frozen=True)
class Policy:
    onset_s: Optional[float] = 4.0
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

    def describe(self) -> str:
        onset = (f"onset {self.onset_s:g} s after {self.quiet_s:g} s quiet, hold {self.hold_s:g} s"
                 if self.onset_s is not None and self.hold_s is not None else
                 f"onset {self.onset_s:g} s" if self.onset_s is not None else "fixed segments")
        if self.verdicts_first and self.rules_mode is RulesMode.JOINT:
            onset += ", verdicts first"
        if self.preempt:
            onset += ", onset preempts"
        lanes = "coalesced" if self.coalesce else f"lanes of {self.queue_size}, drop oldest"
        return (f"{self.rules_mode.value} rules, {self.caption_tokens}-token captions, {onset}, {lanes}, "
                f"{self.order.value.replace('_', ' ')}")


URGENT = Policy()
# what the service did before issue 22: follow-up turns, 80-token captions, fixed segments,
# round robin over lanes of 4 that drop their oldest
OLD = Policy(onset_s=None, hold_s=None, verdicts_first=False, caption_tokens=80, rules_mode=RulesMode.FOLLOWUP,
             coalesce=False, order=Order.ROUND_ROBIN)


def urgency(reason: str, onset: bool) -> Urgency:
    """The class of a described segment, from the gate's reason."""
    if onset:
        return Urgency.ONSET
    return Urgency.HEARTBEAT if reason == "heartbeat" else Urgency.CHANGED


__all__ = ["OLD", "URGENT", "Order", "Policy", "RulesMode", "Urgency", "replace", "urgency"]
