"""The gate's place in the service: between each source's segmenter and the lanes.

`GatedLanes` is what the intake threads put segments into. It asks the source's `SceneGate`, then:

- a described segment goes on to the real lanes as it is;
- an unchanged one becomes a `SkippedSegment` (its frames' images dropped: it only needs their
  times). If the source has nothing waiting or in flight, its events are delivered at once, in
  the intake thread (`deliver`): nothing of the source can come out before them. Otherwise it
  goes through the lanes behind the source's earlier segments, so that it keeps its place in the
  source's order: the worker that takes it emits its "unchanged" event and repeats the rules'
  last verdicts after the previous segment's caption and alerts, never before. It never reaches
  the model, and it does not wait for a model worker when its camera is idle (with one engine,
  that worker is busy with other cameras most of the time).

"Waiting or in flight" is counted here: +1 when a segment is handed to the lanes, -1 when the
pipeline says it is finished (acked after its events, or dropped).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from typing import Callable, Optional

import numpy as np

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
    light = True  # lanes: no model time, no images; not counted against a lane's capacity

    @classmethod
    def of(cls, segment: Segment, decision: Decision) -> "SkippedSegment":
        fields = {f.name: getattr(segment, f.name) for f in dataclasses.fields(Segment)}
        # the frames' times stay (the event reports them), their images go: a skipped segment
        # may wait in its lane behind its camera's described ones
        fields["frames"] = tuple(dataclasses.replace(frame, image=_NO_IMAGE) for frame in segment.frames)
        return cls(**fields, score=decision.score, reason=decision.reason)


_NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


class GatedLanes:
    """A `SegmentLanes` front for producers: put() runs the source's gate first. Every other call
    goes to the wrapped lanes."""

    def __init__(
        self,
        lanes,
        config: GateConfig,
        sources: dict[str, Optional[SourceGateConfig]],
        on_decision: Optional[Callable[[Segment, Decision], None]] = None,
        deliver: Optional[Callable[[SkippedSegment], None]] = None,
    ):
        self.lanes = lanes
        self.gates = {name: SceneGate(config, source) for name, source in sources.items()}
        self.on_decision = on_decision
        self.deliver = deliver
        self._pending: Counter = Counter()  # per source: handed to the lanes, not yet finished
        self._lock = threading.Lock()

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
        if not decision.describe:
            segment = SkippedSegment.of(segment, decision)
            if self.deliver is not None:
                with self._lock:
                    idle = self._pending[segment.source] == 0
                if idle:  # only this thread adds to the source, so it stays idle while we deliver
                    self.deliver(segment)
                    return True
        with self._lock:
            self._pending[segment.source] += 1  # before the put: a worker may finish it at once
        return self.lanes.put(segment)

    def finished(self, segment: Segment) -> None:
        """A segment from the lanes is done with: acked after its events, or dropped."""
        with self._lock:
            if self._pending[segment.source] > 0:
                self._pending[segment.source] -= 1

    def forget(self, source: str) -> None:
        """`source`'s last passed segment was not described (dropped or failed)."""
        gate = self.gates.get(source)
        if gate is not None:
            gate.forget()

    def __getattr__(self, name: str):
        return getattr(self.lanes, name)
