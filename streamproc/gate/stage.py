"""The gate as a stage of intake: `Segment -> Segment | SkippedSegment`, one `SceneGate` per source.

The intake thread of a source calls `apply` on each segment its segmenter cuts. A segment that
shows nothing new comes back as a `SkippedSegment`: its frames keep their times (the "unchanged"
event reports them) but lose their images, since it may wait in its lane behind the camera's
described segments. What happens to it next is intake's business (streamproc/pipeline/intake.py):
its events are published at once when the camera has nothing waiting or in flight, otherwise it
goes through the lane to keep the camera's order.

Counters: every decision goes to `on_decision(source, outcome, reason)` (Prometheus) and to the
per-source numbers `stats(source)` reports on the stats topic.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from typing import Callable, ClassVar, Mapping, Optional

import numpy as np

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Segment
from .gate import Decision, SceneGate

log = logging.getLogger(__name__)

DecisionHook = Callable[[str, str, str], None]  # (source, "described" | "skipped", reason)
_NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


@dataclasses.dataclass(frozen=True)
class SkippedSegment(Segment):
    """A segment the gate found unchanged: not for the model."""

    score: float = 0.0
    reason: str = "unchanged"
    light: ClassVar[bool] = True

    @classmethod
    def of(cls, segment: Segment, decision: Decision) -> "SkippedSegment":
        fields = {f.name: getattr(segment, f.name) for f in dataclasses.fields(Segment)}
        fields["frames"] = tuple(dataclasses.replace(frame, image=_NO_IMAGE) for frame in segment.frames)
        return cls(**fields, score=decision.score, reason=decision.reason)


class GateStage:
    """The scene-change gate of every source. `apply` is called by each source's own intake
    thread; `forget` and `stats` from any thread."""

    def __init__(
        self, config: GateConfig, sources: Mapping[str, Optional[SourceGateConfig]],
        on_decision: Optional[DecisionHook] = None,
    ):
        self.enabled = config.mode != "off"
        self._gates = {name: SceneGate(config, source) for name, source in sources.items()} if self.enabled else {}
        self._on_decision = on_decision
        self._counts: dict[str, Counter] = {name: Counter() for name in sources}
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()

    def apply(self, segment: Segment) -> Segment:
        """The segment itself (to describe), or a SkippedSegment."""
        gate = self._gates.get(segment.source)
        if gate is None:
            return segment
        try:
            decision = gate.decide(segment)
        except Exception:  # a scoring bug must not stop the camera: describe, as without a gate
            log.exception("%s segment %d: the scene-change gate failed; describing it", segment.source, segment.index)
            gate.forget()
            decision = Decision(True, "resync")
        outcome = "described" if decision.describe else "skipped"
        if self._on_decision is not None:
            self._on_decision(segment.source, outcome, decision.reason)
        with self._lock:
            self._counts.setdefault(segment.source, Counter())[outcome] += 1
            self._scores[segment.source] = decision.score
        if decision.describe:  # the lanes rank it by the reason (streamproc/urgency.py)
            return dataclasses.replace(segment, gate_reason=decision.reason)
        return SkippedSegment.of(segment, decision)

    def moved_check(self, source: str) -> Optional[Callable[[np.ndarray, np.ndarray], bool]]:
        """The source's frame-to-frame change check (`SceneGate.moved`), for the urgency policy's
        onset cuts; None when the gate is off for it (then segments are never cut early)."""
        gate = self._gates.get(source)
        return gate.moved if gate is not None and gate.enabled else None

    def forget(self, source: str) -> None:
        """A segment of `source` the gate passed was not described (dropped or failed): its
        reference frames describe nothing, so the next one is described."""
        gate = self._gates.get(source)
        if gate is not None:
            gate.forget()

    def stats(self, source: str) -> dict:
        """For the stats topic: segments passed and skipped, and the last change score."""
        if not self.enabled:
            return {}
        with self._lock:
            counts = self._counts.get(source, Counter())
            return {
                "gate": {
                    "described": counts["described"],
                    "unchanged": counts["skipped"],
                    "last_score": round(self._scores.get(source, 0.0), 3),
                }
            }
