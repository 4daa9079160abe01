"""What the MQTT sink leaves retained, read back from a real mosquitto as a new subscriber (Home
Assistant after a restart) sees it: a camera or rule taken out of the config leaves nothing behind,
not its discovery config and not its state topics; another service's topics on the same prefix
stay; the service device has a sensible name. Discovery payloads are checked against the keys HA
documents, as tests/integration/test_homeassistant_entities.py does."""
from __future__ import annotations

import json
import time

import paho.mqtt.publish as publish
import pytest

from streamproc.config.rules import RuleConfig
from streamproc.config.sinks import SinksConfig
from streamproc.events import alert_event, caption_event, summary_event
from streamproc.control import PipelineControl
from streamproc.events import status_event
from streamproc.sinks import create_sinks
from tests.integration.conftest import mqtt_section
from tests.integration.test_homeassistant_entities import check_documented
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

FENCE = RuleConfig(name="fence", question="Is a person climbing the fence?", device_class="safety")
GONE = RuleConfig(name="gone_rule", question="Is the gate open?")


def retained(subscribe, broker, filters=("sp/#",), settle_s: float = 0.4) -> dict[str, bytes]:
    """The broker's retained set under `filters`: what a subscriber that connects now receives."""
    late = subscribe(broker.port, list(filters))
    seen, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        count = len(late.snapshot())
        if count != seen:
            seen, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= settle_s:
            break
        time.sleep(0.05)
    late.stop()
    return {m.topic: m.payload for m in late.snapshot() if m.retain and m.payload}


def started(broker, tmp_path, rules, sources, **overrides):
    """An MQTT sink with the pipeline's switches bound (so describe/enabled topics exist too)."""
    config = SinksConfig.model_validate(mqtt_section(broker, tmp_path, **overrides))
    control = PipelineControl(list(sources), [r.name for r in rules])
    (sink,) = create_sinks(config, list(rules), list(sources), control=control)
    sink.start()
    assert sink.wait_connected(10)
    return sink


def first_run(broker, tmp_path, **overrides):
    """Two cameras and two rules, every kind of retained topic written, then a clean stop."""
    sink = started(broker, tmp_path, [FENCE, GONE], ["gate", "old_cam"], mqtt={"snapshots": True}, **overrides)
    for source in ("gate", "old_cam"):
        sink.handle(status_event(source, "online"))
        segment = make_segment(source, 0)
        sink.handle(caption_event(segment, make_result(f"Someone at the {source}")))
    segment = make_segment("old_cam", 1)
    sink.handle(alert_event(rule="gone_rule", kind="question", source="old_cam", segment=segment,
                            transition="raised", verdict="yes", reason="The gate is open."))
    sink.handle(summary_event("old_cam", start=0.0, end=60.0, text="Quiet.", ranges=[], entries=1, model="m"))
    assert sink.flush(5)
    time.sleep(0.2)  # the ephemeral retained ones (last caption, snapshot) go straight out
    sink.stop(2.0)


def test_a_removed_camera_and_rule_leave_no_retained_topic(broker, subscribe, tmp_path):
    ha = {"homeassistant": {"enabled": True, "node_id": "sp1"}}
    first_run(broker, tmp_path, **ha)
    publish.single("sp/other_cam/status", b'{"state": "online"}', retain=True, hostname=broker.host, port=broker.port)
    before = retained(subscribe, broker, ["sp/#"])
    for topic in ("sp/old_cam/status", "sp/old_cam/captions/last", "sp/old_cam/snapshot", "sp/old_cam/summary",
                  "sp/old_cam/rules/gone_rule/state", "sp/old_cam/rules/fence/state", "sp/gate/rules/gone_rule/state",
                  "sp/rules/gone_rule/enabled", "sp/old_cam/describe"):
        assert topic in before, sorted(before)

    second = started(broker, tmp_path, [FENCE], ["gate"], mqtt={"snapshots": True}, **ha)
    try:
        assert second.flush(5)
        time.sleep(0.3)
        after = retained(subscribe, broker, ["sp/#"])
        assert sorted(after) == [
            "sp/available", "sp/gate/captions/last", "sp/gate/describe", "sp/gate/rules/fence/state",
            "sp/gate/snapshot", "sp/gate/status",
            "sp/other_cam/status",  # not this sink's: never recorded by it, so never cleared
            "sp/rules/fence/enabled",
        ]
        configs = {t: p for t, p in retained(subscribe, broker, ["homeassistant/#"]).items()}
        assert not [t for t in configs if "old_cam" in t or "gone_rule" in t], sorted(configs)

        for topic, payload in configs.items():
            check_documented(topic, json.loads(payload))
    finally:
        second.stop(2.0)


def test_without_home_assistant_the_record_alone_clears(broker, subscribe, tmp_path):
    first_run(broker, tmp_path)
    second = started(broker, tmp_path, [FENCE], ["gate"], mqtt={"snapshots": False})
    try:
        assert second.flush(5)
        time.sleep(0.3)
        after = retained(subscribe, broker, ["sp/#"])
        # snapshots were turned off: the old picture goes too
        assert sorted(after) == ["sp/available", "sp/gate/captions/last", "sp/gate/describe",
                                 "sp/gate/rules/fence/state", "sp/gate/status", "sp/rules/fence/enabled"]
    finally:
        second.stop(2.0)


def test_a_changed_prefix_clears_the_old_one(broker, subscribe, tmp_path):
    first_run(broker, tmp_path)
    second = started(broker, tmp_path, [FENCE], ["gate"], mqtt={"topic_prefix": "sp2"})
    try:
        assert second.flush(5)
        time.sleep(0.3)
        assert retained(subscribe, broker, ["sp/#"]) == {}
        assert "sp2/gate/rules/fence/state" in retained(subscribe, broker, ["sp2/#"])
    finally:
        second.stop(2.0)


def test_home_assistant_evidence_clears_what_an_older_run_left(broker, subscribe, tmp_path):
    """A run from before the record existed: the removed entities' own configs name the state
    topics they read, and those go with them."""
    ha = {"homeassistant": {"enabled": True, "node_id": "sp1"}}
    first_run(broker, tmp_path, **ha)
    (tmp_path / "outbox.sqlite.retained.json").unlink()
    second = started(broker, tmp_path, [FENCE], ["gate"], **ha)
    try:
        assert second.flush(5)
        time.sleep(0.5)
        after = retained(subscribe, broker, ["sp/#"])
        for topic in ("sp/old_cam/status", "sp/old_cam/captions/last", "sp/old_cam/rules/gone_rule/state",
                      "sp/old_cam/rules/fence/state", "sp/gate/rules/gone_rule/state", "sp/rules/gone_rule/enabled",
                      "sp/old_cam/describe"):
            assert topic not in after, sorted(after)
        assert "sp/gate/status" in after and "sp/gate/rules/fence/state" in after
    finally:
        second.stop(2.0)


@pytest.mark.parametrize("section, name", [
    ({}, "streamproc"),
    ({"node_id": "garage"}, "streamproc garage"),
    ({"node_id": "garage", "device_name": "Garage box"}, "Garage box"),
])
def test_service_device_name(broker, subscribe, tmp_path, section, name):
    sink = started(broker, tmp_path, [FENCE], ["gate"], homeassistant={"enabled": True, **section})
    try:
        configs = retained(subscribe, broker, ["homeassistant/switch/#"])

        devices = {json.loads(p)["device"]["name"] for t, p in configs.items() if "/service_" in t}
        assert devices == {name}
    finally:
        sink.stop(2.0)
