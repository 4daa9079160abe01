"""What the pipeline needs from the scene-change gate, in one place.

- `lanes`: what the intake threads put segments into (the gate's `GatedLanes` over the real lanes,
  or the lanes themselves when the gate is off, so an ungated service runs exactly as before);
- `skipped(segment)`: the events of a skipped segment, for whoever delivers it (the worker that
  took it from its lane, or the intake thread when its camera was idle): the "unchanged" event,
  then any alert the repeated verdicts caused (`RuleEngine.repeat`);
- `finished(segment)`: the pipeline acked or dropped a segment (what "idle" is counted from);
- counters for Prometheus (`streamproc_gate_segments{source,decision,reason}`) and the stats topic.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable, Iterable, Optional

from ..events import Event, unchanged_event
from ..frames import Segment
from .gate import Decision
from .lanes import GatedLanes, SkippedSegment


class GateHooks:
    def __init__(
        self, config: Any, sources: Iterable[Any], lanes: Any, metrics: Any, rules: Any, live_sources: Iterable[str],
        deliver: Optional[Callable[[SkippedSegment], None]] = None,
    ):
        self.enabled = config.gate.mode != "off"
        self.metrics = metrics
        self.rules = rules
        self.live_sources = frozenset(live_sources)
        self._counts: dict[str, Counter] = {}
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()
        sources = list(sources)
        if self.enabled:
            self.lanes = GatedLanes(lanes, config.gate, {s.name: s.gate for s in sources}, self._decided, deliver)
            for source in sources:  # the series alerts are written against exist from the start
                metrics.gate.labels(source.name, "skipped", "unchanged")
                metrics.gate.labels(source.name, "described", "change")
        else:
            self.lanes = lanes

    @staticmethod
    def is_skipped(segment: Segment) -> bool:
        return isinstance(segment, SkippedSegment)

    def skipped(self, segment: SkippedSegment) -> list[Event]:
        """The events of a skipped segment, in order. Called by the one worker holding it."""
        live = segment.source in self.live_sources
        events = [unchanged_event(segment, segment.score, segment.reason, live)]
        events += self.rules.repeat(segment.source, segment)
        return events

    def finished(self, segment: Segment) -> None:
        """The pipeline acked (after its events) or dropped a segment from the lanes."""
        if isinstance(self.lanes, GatedLanes):
            self.lanes.finished(segment)

    def forget(self, source: str) -> None:
        """A segment the gate passed was dropped or failed: the next one is described."""
        if isinstance(self.lanes, GatedLanes):
            self.lanes.forget(source)

    def _decided(self, segment: Segment, decision: Decision) -> None:
        outcome = "described" if decision.describe else "skipped"
        self.metrics.gate.labels(segment.source, outcome, decision.reason).inc()
        with self._lock:
            self._counts.setdefault(segment.source, Counter())[outcome] += 1
            self._scores[segment.source] = decision.score

    def stats(self, source: str) -> dict[str, Any]:
        """For the stats topic: segments the gate passed and skipped, and the last change score."""
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
