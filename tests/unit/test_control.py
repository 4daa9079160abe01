"""Run-time switches (streamproc/control.py, wired by app/wiring.py): pausing a source and disabling a rule reach the rule
engine and the metrics at once; unknown names are config errors; a failing listener stops nothing."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from streamproc.config.ingest import SourceConfig
from streamproc.config.rules import RuleConfig
from streamproc.errors import ConfigError
from streamproc.rules.alerts import RuleEngine
from streamproc.app.wiring import wire_control
from streamproc.control import PipelineControl
from streamproc.metrics import Metrics
from tests.support.segments import make_segment


def make():
    rules = [RuleConfig(name="car", keywords=["car"]), RuleConfig(name="dog", keywords=["dog"], sources=["gate"])]
    pipeline = SimpleNamespace(
        sources=[SourceConfig(name="gate", path="a.mp4"), SourceConfig(name="yard", path="b.mp4")],
        config=SimpleNamespace(rules=rules),
        metrics=Metrics(),
        rules=RuleEngine(rules),
    )
    names = [s.name for s in pipeline.sources]
    control = PipelineControl(names, [r.name for r in rules])
    return pipeline, wire_control(control, pipeline.metrics, pipeline.rules, rules)


def gauge(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels)


def test_disabling_a_rule_stops_it_and_forgets_its_state():
    pipeline, control = make()
    engine, metrics = pipeline.rules, pipeline.metrics
    (raised,) = [e for e in engine.evaluate("gate", make_segment("gate", 0), "a car", {}) if e.data["rule"] == "car"]
    assert engine.state("car", "gate").on
    control.enable_rule("car", False)
    assert not control.rule_enabled("car") and gauge(metrics, "streamproc_rule_enabled", rule="car") == 0
    assert [r.name for r in engine.rules_for("gate")] == ["dog"]
    assert engine.evaluate("gate", make_segment("gate", 1), "a car and a dog", {})[0].data["rule"] == "dog"
    assert not engine.state("car", "gate").on  # forgotten: it starts OFF when enabled again
    control.enable_rule("car", True)
    (again,) = [e for e in engine.evaluate("gate", make_segment("gate", 2), "a car", {}) if e.data["rule"] == "car"]
    assert again.data["transition"] == "raised"


def test_pausing_is_per_source_and_counted_in_metrics():
    pipeline, control = make()
    heard = []
    control.add_listener(lambda kind, name, on: heard.append((kind, name, on)))
    control.add_listener(lambda *args: 1 / 0)  # a broken listener does not stop the switch
    assert control.pause("gate") and not control.pause("gate")  # the second changes nothing
    assert control.is_paused("gate") and not control.is_paused("yard")
    assert gauge(pipeline.metrics, "streamproc_source_paused", source="gate") == 1
    assert control.snapshot()["describing"] == {"gate": False, "yard": True}
    control.resume("gate")
    assert gauge(pipeline.metrics, "streamproc_source_paused", source="gate") == 0
    assert heard == [("source", "gate", False), ("source", "gate", False), ("source", "gate", True)]
    with pytest.raises(ConfigError):
        control.pause("nowhere")
    with pytest.raises(ConfigError):
        control.enable_rule("nothing", True)
