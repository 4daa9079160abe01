"""Home Assistant MQTT discovery: a binary_sensor per (rule, source), a caption sensor, a
connectivity binary_sensor and an alert-snapshot image per source, availability on the last will
(and the camera's status), republished when Home Assistant comes online. More (switches, removal,
the keys HA documents per platform): test_homeassistant_entities.py."""
from __future__ import annotations

import paho.mqtt.publish as publish
import pytest

from streamproc.config.rules import RuleConfig
from streamproc.rules.alerts import RuleEngine
from streamproc.events import caption_event
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

RULES = [
    RuleConfig(name="fence", question="Is a person climbing the fence?", device_class="safety"),
    RuleConfig(name="car", keywords=["car"], sources=["yard.north"]),
]
SOURCES = ["gate", "yard.north"]
HA = {"homeassistant": {"enabled": True, "node_id": "sp1"}}


def configs(sub):
    return {m.topic: m.json() for m in sub.on("homeassistant/+/+/+/config")}


def test_discovery_entities_and_availability(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/#", "sp/#"])
    sink = start_sink(broker, RULES, SOURCES, **HA)
    assert sink.wait_connected(10)
    assert sub.wait_for(lambda: len(configs(sub)) == 10, 5)
    found = configs(sub)
    assert sorted(found) == [
        "homeassistant/binary_sensor/sp1/gate_connected/config",
        "homeassistant/binary_sensor/sp1/gate_fence/config",
        "homeassistant/binary_sensor/sp1/yard_north_car/config",
        "homeassistant/binary_sensor/sp1/yard_north_connected/config",
        "homeassistant/binary_sensor/sp1/yard_north_fence/config",
        "homeassistant/image/sp1/gate_alert_snapshot/config",
        "homeassistant/image/sp1/yard_north_alert_snapshot/config",
        "homeassistant/sensor/sp1/gate_caption/config",
        "homeassistant/sensor/sp1/service_state/config",
        "homeassistant/sensor/sp1/yard_north_caption/config",
    ]
    late = subscribe(broker.port, ["homeassistant/#"])  # configs are retained
    assert late.wait_for(lambda: len(late.snapshot()) == 10, 5)
    assert all(m.retain for m in late.snapshot())
    assert len({c["unique_id"] for c in found.values()}) == 10
    for topic, config in found.items():
        if "connected" in topic or "service_state" in topic:  # the service's availability only: a camera that is down shows OFF
            assert config["availability_topic"] == "sp/available"
            assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        else:  # available while the service is online, its model ready, and the camera delivers
            assert config["availability_mode"] == "all"
            assert [a["topic"] for a in config["availability"]] == ["sp/available", "sp/service", config["availability"][-1]["topic"]]
    fence = found["homeassistant/binary_sensor/sp1/yard_north_fence/config"]
    assert fence["state_topic"] == "sp/yard.north/rules/fence/state"
    assert (fence["payload_on"], fence["payload_off"]) == ("ON", "OFF")
    assert fence["device_class"] == "safety" and fence["device"]["name"] == "yard.north"
    assert "device_class" not in found["homeassistant/binary_sensor/sp1/yard_north_car/config"]
    caption = found["homeassistant/sensor/sp1/gate_caption/config"]
    assert caption["state_topic"] == caption["json_attributes_topic"] == "sp/gate/captions/last"
    assert "value_json.text" in caption["value_template"]
    assert caption["device"]["identifiers"] == found["homeassistant/binary_sensor/sp1/gate_fence/config"]["device"]["identifiers"]

    # the entities' topics carry what Home Assistant expects
    engine = RuleEngine(RULES)
    segment = make_segment("yard.north", 0)
    sink.handle(caption_event(segment, make_result("a car stops")))
    for event in engine.evaluate("yard.north", segment, "a car stops", {"fence": '{"answer": "no", "reason": "-"}'}):
        sink.handle(event)
    assert sink.flush(5)
    assert sub.wait_for(lambda: [m.text for m in sub.on("sp/yard.north/rules/car/state")][-1:] == ["ON"], 5)
    assert [m.text for m in sub.on("sp/yard.north/rules/fence/state")] == ["OFF"]
    assert sub.wait_count("sp/yard.north/captions", 1, 5)[0].json()["text"] == "a car stops"


def test_discovery_is_republished_when_home_assistant_comes_online(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/+/+/+/config"])
    sink = start_sink(broker, RULES, SOURCES, **HA)
    assert sink.wait_connected(10)
    assert sub.wait_for(lambda: len(sub.snapshot()) == 10, 5)
    publish.single("homeassistant/status", "online", hostname=broker.host, port=broker.port)
    assert sub.wait_for(lambda: len(sub.snapshot()) == 20, 5)
    publish.single("homeassistant/status", "offline", hostname=broker.host, port=broker.port)
    sub.wait_for(lambda: len(sub.snapshot()) > 20, 0.5)
    assert len(sub.snapshot()) == 20


def test_no_discovery_unless_enabled(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/#", "sp/available"])
    sink = start_sink(broker, RULES, SOURCES)
    assert sink.wait_connected(10)
    assert sub.wait_for(lambda: sub.on("sp/available"), 5)
    sub.wait_for(lambda: sub.on("homeassistant/#"), 0.5)
    assert sub.on("homeassistant/#") == []
