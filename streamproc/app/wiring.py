"""Small pieces of wiring the composition root does: the control switches' listeners."""
from __future__ import annotations

from typing import Any, Sequence

from ..control import Kind, PipelineControl


def wire_control(control: PipelineControl, metrics: Any, engine: Any, rules: Sequence[Any]) -> PipelineControl:
    """The switches wired to the rule engine and the metrics (every series made at zero first).
    The engine hears a change before any plug-in says so."""
    sources = control.sources
    metrics.prepare(sources, [(r.name, [s for s in sources if r.applies_to(s)]) for r in rules])

    def changed(kind: Kind, name: str, on: bool) -> None:
        if kind == "source":
            metrics.source_paused.labels(name).set(0 if on else 1)
            return
        engine.set_enabled(name, on)
        metrics.rule_enabled.labels(name).set(1 if on else 0)
        if not on:
            for rule in rules:
                if rule.name == name:
                    for source in sources:
                        if rule.applies_to(source):
                            metrics.rule_on.labels(source, name).set(0)

    control.add_listener(changed)
    return control
