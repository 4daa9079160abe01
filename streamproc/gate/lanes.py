"""The gate's place in the service: between each source's segmenter and the lanes.

`GatedLanes` is what the intake threads put segments into. It asks the source's `SceneGate`, then
passes every segment on to the real lanes: a described one as it is, an unchanged one as a
`SkippedSegment`. Skipped segments still travel through the lanes so that they keep their place in
the source's order: the worker that takes one emits its "unchanged" event and repeats the rules'
last verdicts after the previous segment's caption and alerts, never before. A worker handles a
skipped segment in microseconds; it never reaches the model.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Segment
from .gate import Decision, SceneGate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SkippedSegment(Segment):
    """A segment the gate found unchanged: not for the model. Its frames stay only until a worker
    has emitted its event."""

    score: float = 0.0
    reason: str = "unchanged"

    @classmethod
    def of(cls, segment: Segment, decision: Decision) -> "SkippedSegment":
        fields = {f.name: getattr(segment, f.name) for f in dataclasses.fields(Segment)}
        return cls(**fields, score=decision.score, reason=decision.reason)


class GatedLanes:
    """A `SegmentLanes` front for producers: put() runs the source's gate first. Every other call
    goes to the wrapped lanes."""

    def __init__(
        self,
        lanes,
        config: GateConfig,
        sources: dict[str, Optional[SourceGateConfig]],
        on_decision: Optional[Callable[[Segment, Decision], None]] = None,
    ):
        self.lanes = lanes
        self.gates = {name: SceneGate(config, source) for name, source in sources.items()}
        self.on_decision = on_decision

    def put(self, segment: Segment) -> bool:
        gate = self.gates.get(segment.source)
        if gate is None:
            return self.lanes.put(segment)
        try:
            decision = gate.decide(segment)
        except Exception:  # a scoring bug must not stop the camera: describe, as without a gate
            log.exception("%s segment %d: the scene-change gate failed; describing it", segment.source, segment.index)
            gate.forget()
            decision = Decision(True, "resync")
        if self.on_decision is not None:
            self.on_decision(segment, decision)
        return self.lanes.put(segment if decision.describe else SkippedSegment.of(segment, decision))

    def forget(self, source: str) -> None:
        """`source`'s last passed segment was not described (dropped or failed)."""
        gate = self.gates.get(source)
        if gate is not None:
            gate.forget()

    def __getattr__(self, name: str):
        return getattr(self.lanes, name)
