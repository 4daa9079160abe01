"""Home Assistant discovery, current conventions, checked against a real mosquitto as HA sees it:

- every config uses only the keys HA's MQTT discovery documents for its platform (sensor,
  binary_sensor, image, switch), `default_entity_id` instead of the deprecated `object_id`,
  `origin` and a device `sw_version`; the templates render (jinja2, as HA does) to the states
  HA expects;
- the caption sensor's state topic is retained (HA shows it again after a restart);
- a camera that is down shows disconnected, and its entities unavailable;
- entities of cameras taken out of the config are removed (empty retained config);
- a round trip through a running pipeline: the `Describe` switch pauses a camera, its state flips,
  no caption comes until it is switched on again; the rule switch disables a rule.
"""
from __future__ import annotations

import json
import time

import jinja2
import paho.mqtt.publish as publish
import pytest

from streamproc.config.rules import RuleConfig
from streamproc.events import status_event, caption_event
from streamproc.control import PipelineControl
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

# The keys HA's MQTT docs list per platform (home-assistant.io/integrations/<platform>.mqtt/).
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin", "payload_available",
    "payload_not_available", "platform", "qos", "unique_id",
}
PLATFORM_KEYS = {
    "sensor": COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options", "state_class",
        "state_topic", "suggested_display_precision", "unit_of_measurement", "value_template",
    },
    "binary_sensor": COMMON | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on", "state_topic",
        "value_template",
    },
    "image": COMMON | {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
    "switch": COMMON | {
        "command_template", "command_topic", "device_class", "optimistic", "payload_off", "payload_on", "retain",
        "state_off", "state_on", "state_topic", "value_template",
    },
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "image": {"image_topic"}, "switch": {"command_topic"}}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
    "serial_number", "suggested_area", "sw_version", "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
BINARY_SENSOR_CLASSES = {"connectivity", "motion", "occupancy", "problem", "safety", "smoke", "sound", "moving", "presence"}

RULES = [RuleConfig(name="fence", question="Is a person climbing the fence?", device_class="safety")]
HA = {"homeassistant": {"enabled": True, "node_id": "sp1"}}


def configs(sub) -> dict[str, dict]:
    return {m.topic: m.json() for m in sub.on("homeassistant/+/+/+/config") if m.payload}


def render(template: str, payload: dict) -> str:
    return jinja2.Environment().from_string(template).render(value_json=payload).strip()


def check_documented(topic: str, config: dict) -> None:
    platform = topic.split("/")[1]
    assert platform in PLATFORM_KEYS, topic
    unknown = set(config) - PLATFORM_KEYS[platform]
    assert not unknown, f"{topic}: keys HA does not document for {platform}: {unknown}"
    assert REQUIRED[platform] <= set(config), topic
    assert "object_id" not in config  # deprecated in 2025.10, removed in 2026.4
    assert config["default_entity_id"].startswith(f"{platform}.")
    assert config["default_entity_id"].split(".", 1)[1].replace("_", "").isalnum()
    assert set(config["device"]) <= DEVICE_KEYS and config["device"]["sw_version"]
    assert {"name", "sw_version"} <= set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"] == "streamproc"
    assert ("availability" in config) != ("availability_topic" in config)  # HA forbids both
    for item in config.get("availability", []):
        assert set(item) <= AVAILABILITY_KEYS and "topic" in item
    if platform == "binary_sensor" and "device_class" in config:
        assert config["device_class"] in BINARY_SENSOR_CLASSES
    if "entity_category" in config:
        assert config["entity_category"] in ("config", "diagnostic")


def test_discovery_payloads_use_only_documented_keys(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/#", "sp/#"])
    ha = {"homeassistant": {**HA["homeassistant"], "support_url": "https://nvr.lan/streamproc-help"}}
    sink = start_sink(broker, RULES, ["gate"], mqtt={"snapshots": True}, **ha)
    assert sink.wait_connected(10)
    # caption, connected, alert snapshot, snapshot, fence; the service's state
    assert sub.wait_for(lambda: len(configs(sub)) == 6, 5), sorted(configs(sub))
    for topic, config in configs(sub).items():
        check_documented(topic, config)
        assert config["origin"]["support_url"] == "https://nvr.lan/streamproc-help"


def test_switches_are_documented_and_answer_commands(broker, subscribe, tmp_path):
    from streamproc.config.sinks import SinksConfig
    from streamproc.sinks import create_sinks
    from tests.integration.conftest import mqtt_section

    sub = subscribe(broker.port, ["homeassistant/#", "sp/#"])
    config = SinksConfig.model_validate(mqtt_section(broker, tmp_path, **HA))
    control = PipelineControl(["gate"], ["fence"])
    (sink,) = create_sinks(config, RULES, ["gate"], control=control)
    sink.start()
    try:
        assert sink.wait_connected(10)
        # caption, connected, alert snapshot, fence, describe switch, rule switch; the service's state
        assert sub.wait_for(lambda: len(configs(sub)) == 7, 5), sorted(configs(sub))
        found = configs(sub)
        for topic, payload in found.items():
            check_documented(topic, payload)
        describe = found["homeassistant/switch/sp1/gate_describe/config"]
        rule = found["homeassistant/switch/sp1/service_rule_fence/config"]
        assert describe["command_topic"] == "sp/gate/describe/set" and describe["state_topic"] == "sp/gate/describe"
        assert rule["command_topic"] == "sp/rules/fence/enabled/set" and rule["device"]["identifiers"] == ["sp1"]
        # states are published (retained) at start
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/gate/describe")] == ["ON"], 5)
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/rules/fence/enabled")] == ["ON"], 5)

        publish.single("sp/gate/describe/set", "OFF", hostname=broker.host, port=broker.port)
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/gate/describe")][-1] == "OFF", 5)
        assert control.is_paused("gate")
        publish.single("sp/rules/fence/enabled/set", "OFF", hostname=broker.host, port=broker.port)
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/rules/fence/enabled")][-1] == "OFF", 5)
        assert not control.rule_enabled("fence")
        assert [m.text for m in sub.on("sp/gate/rules/fence/state")][-1] == "OFF"
        publish.single("sp/gate/describe/set", "garbage", hostname=broker.host, port=broker.port)
        publish.single("sp/gate/describe/set", "ON", hostname=broker.host, port=broker.port)
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/gate/describe")][-1] == "ON", 5)
        assert not control.is_paused("gate")
        late = subscribe(broker.port, ["sp/gate/describe", "sp/rules/fence/enabled"])
        assert late.wait_for(lambda: len(late.snapshot()) == 2, 5)
        assert {m.topic: (m.text, m.retain) for m in late.snapshot()} == {
            "sp/gate/describe": ("ON", True), "sp/rules/fence/enabled": ("OFF", True),
        }
    finally:
        sink.stop(2.0)


def test_caption_restores_and_connectivity_follows_the_camera(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/#", "sp/#"])
    sink = start_sink(broker, RULES, ["gate"], **HA)
    assert sink.wait_connected(10)
    assert sub.wait_for(lambda: len(configs(sub)) == 5, 5)
    found = configs(sub)
    caption_cfg = found["homeassistant/sensor/sp1/gate_caption/config"]
    connected_cfg = found["homeassistant/binary_sensor/sp1/gate_connected/config"]
    fence_cfg = found["homeassistant/binary_sensor/sp1/gate_fence/config"]

    sink.handle(status_event("gate", "online"))
    sink.handle(caption_event(make_segment("gate", 0), make_result("Tom & Jerry at the gate")))
    sink.handle(status_event("gate", "offline", "connection refused"))
    assert sink.flush(5)
    # a Home Assistant that starts now (a late subscriber) gets the last caption and the status
    late = subscribe(broker.port, [caption_cfg["state_topic"], connected_cfg["state_topic"]])
    assert late.wait_for(lambda: len(late.snapshot()) == 2, 5), late.snapshot()
    retained = {m.topic: m for m in late.snapshot()}
    caption = retained[caption_cfg["state_topic"]]
    assert caption.retain and render(caption_cfg["value_template"], caption.json()) == "Tom & Jerry at the gate"
    attributes = json.loads(render(caption_cfg["json_attributes_template"], caption.json()))
    assert attributes["text"] == "Tom & Jerry at the gate" and attributes["end"] > attributes["start"]
    status = retained[connected_cfg["state_topic"]].json()
    assert render(connected_cfg["value_template"], status) == connected_cfg["payload_off"]  # disconnected
    # the camera's other entities are unavailable while it is down ...
    camera = next(c for c in fence_cfg["availability"] if c["topic"] == "sp/gate/status")
    assert render(camera["value_template"], status) == camera["payload_not_available"]
    # ... and available again once it delivers
    sink.handle(status_event("gate", "online"))
    assert sink.flush(5)
    assert sub.wait_for(lambda: sub.on("sp/gate/status")[-1].json()["state"] == "online", 5)
    online = sub.on("sp/gate/status")[-1].json()
    assert render(camera["value_template"], online) == camera["payload_available"]
    assert render(connected_cfg["value_template"], online) == connected_cfg["payload_on"]


def test_entities_of_removed_cameras_and_rules_are_deleted(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["homeassistant/#"])
    first = start_sink(broker, RULES, ["gate", "old_cam"], **HA)
    assert first.wait_connected(10)
    assert sub.wait_for(lambda: len(configs(sub)) == 9, 5)
    first.stop(2.0)
    # the next run has no old_cam and no rules
    publish.single("homeassistant/sensor/other_node/x/config", "{}", retain=True, hostname=broker.host, port=broker.port)
    second = start_sink(broker, [], ["gate"], **HA)
    assert second.wait_connected(10)
    gone = {
        "homeassistant/binary_sensor/sp1/gate_fence/config",
        "homeassistant/binary_sensor/sp1/old_cam_fence/config",
        "homeassistant/sensor/sp1/old_cam_caption/config",
        "homeassistant/binary_sensor/sp1/old_cam_connected/config",
        "homeassistant/image/sp1/old_cam_alert_snapshot/config",
    }
    assert sub.wait_for(lambda: {m.topic for m in sub.snapshot() if not m.payload} == gone, 5), [
        m.topic for m in sub.snapshot() if not m.payload
    ]
    late = subscribe(broker.port, ["homeassistant/#"])
    assert late.wait_for(lambda: len(late.snapshot()) == 5, 5)
    time.sleep(0.3)
    assert sorted(m.topic for m in late.snapshot()) == [
        "homeassistant/binary_sensor/sp1/gate_connected/config",
        "homeassistant/image/sp1/gate_alert_snapshot/config",
        "homeassistant/sensor/other_node/x/config",  # another node's entities are not ours to remove
        "homeassistant/sensor/sp1/gate_caption/config",
        "homeassistant/sensor/sp1/service_state/config",
    ]
