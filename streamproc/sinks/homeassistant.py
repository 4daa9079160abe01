"""Home Assistant MQTT discovery, current conventions (checked against HA's MQTT docs, 2025.10+).

Entities per source (one HA device per camera):
- sensor `Caption`: state from the retained `<prefix>/<source>/captions/last`, so HA shows the
  last caption again after it restarts (the full text and times go into attributes);
- binary_sensor per rule that applies to the source (`<prefix>/<source>/rules/<rule>/state`);
- binary_sensor `Connected` (device_class connectivity) from the retained source status: a camera
  that is down shows disconnected, and its caption, rule and image entities show unavailable;
- image `Alert snapshot` (the retained JPEG of the last raised alert), and `Snapshot` (the JPEG
  of every segment) when `sinks.mqtt.snapshots` is on;
- switch `Describe` (OFF pauses describing the camera) when the pipeline offers its controls.
Entities of the service (one device for the node): a sensor `State` (loading, ready, stopping,
from the retained `<prefix>/service`; the model backends loaded so far as attributes) and a
switch per rule to enable or disable it. The service connects and announces all this before the
model loads; a camera's caption, rule and image entities read unavailable until the model is
ready (a loading box looks loading, not off).

Every config carries `unique_id`, `default_entity_id` (`<domain>.<node>_<...>`; HA 2025.10
deprecated `object_id` for it), `origin` (name, sw_version, and support_url when `homeassistant.support_url` is set) and a `device` with its
`sw_version`. Configs are retained under <discovery_prefix>/<component>/<node_id>/<object>/config,
republished on every connect and whenever HA announces itself online on <discovery_prefix>/status.
A config found retained under this node that the current config no longer produces (a camera or
rule taken out) is removed with an empty retained payload, which makes HA delete the entity, and
so are the retained state topics it read (sinks/retained.py clears the rest from its record).
The service device is named "streamproc" for the default node id ("streamproc <node_id>"
otherwise, or `homeassistant.device_name`): HA puts it before its entities' names.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Collection, Iterable, Optional, Sequence

from ..config.sinks import DEFAULT_NODE_ID
from .topics import AVAILABLE_OFFLINE, AVAILABLE_ONLINE, STATE_OFF, STATE_ON, Topics

if TYPE_CHECKING:  # pragma: no cover
    from ..config.rules import RuleConfig
    from ..config.sinks import HomeAssistantConfig

# Home Assistant keeps a sensor's state to 255 characters; the full text goes into attributes.
_CAPTION_STATE_TEMPLATE = "{{ value_json.text[:255] }}"
_CAPTION_ATTRIBUTES_TEMPLATE = (
    "{{ {'text': value_json.text, 'model': value_json.model, 'start': value_json.segment.start,"
    " 'end': value_json.segment.end, 'id': value_json.id} | tojson }}"
)
_CONNECTED_TEMPLATE = "{{ 'ON' if value_json.state == 'online' else 'OFF' }}"
_SOURCE_AVAILABLE_TEMPLATE = "{{ 'online' if value_json.state == 'online' else 'offline' }}"
_SERVICE_READY_TEMPLATE = "{{ 'online' if value_json.state == 'ready' else 'offline' }}"
_SERVICE_STATE_TEMPLATE = "{{ value_json.state }}"
_SERVICE_ATTRIBUTES_TEMPLATE = "{{ {'model_loaded': value_json.model.loaded, 'model_of': value_json.model.of} | tojson }}"


def object_id(*parts: str) -> str:
    """Discovery object ids allow [A-Za-z0-9_-] only; source names may also hold dots."""
    return "_".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)


def _entity_slug(*parts: str) -> str:
    """Entity ids are lower-case [a-z0-9_]."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", "_".join(parts).lower())).strip("_")


def origin(support_url: Optional[str] = None) -> dict[str, str]:
    from .. import __version__

    found = {"name": "streamproc", "sw_version": __version__}
    if support_url:  # the operator's own page (docs, issue tracker): streamproc has no public one to name
        found["support_url"] = support_url
    return found


def _service_availability(topics: Topics) -> dict[str, str]:
    return {
        "availability_topic": topics.available,
        "payload_available": AVAILABLE_ONLINE,
        "payload_not_available": AVAILABLE_OFFLINE,
    }


def _camera_availability(topics: Topics, source: str, service_state: bool) -> dict[str, object]:
    """Available while the service is online, its model ready (`service_state`: a box that
    publishes its state) AND the camera delivers (its retained status)."""
    conditions: list[dict[str, str]] = [
        {"topic": topics.available, "payload_available": AVAILABLE_ONLINE, "payload_not_available": AVAILABLE_OFFLINE},
    ]
    if service_state:
        conditions.append({
            "topic": topics.service,
            "value_template": _SERVICE_READY_TEMPLATE,
            "payload_available": AVAILABLE_ONLINE,
            "payload_not_available": AVAILABLE_OFFLINE,
        })
    conditions.append({
        "topic": topics.status(source),
        "value_template": _SOURCE_AVAILABLE_TEMPLATE,
        "payload_available": AVAILABLE_ONLINE,
        "payload_not_available": AVAILABLE_OFFLINE,
    })
    return {"availability": conditions, "availability_mode": "all"}


def service_device_name(config: "HomeAssistantConfig") -> str:
    """The service device's name: HA prefixes it to its entities' names ("streamproc Rule fence"),
    so the default node is plain "streamproc", another node "streamproc <node_id>"."""
    if config.device_name:
        return config.device_name
    return "streamproc" if config.node_id == DEFAULT_NODE_ID else f"streamproc {config.node_id}"


def _device(config: "HomeAssistantConfig", source: Optional[str]) -> dict[str, object]:
    from .. import __version__

    node_id = config.node_id
    return {
        "identifiers": [object_id(node_id, source) if source is not None else node_id],
        "name": source if source is not None else service_device_name(config),
        "manufacturer": "streamproc",
        "model": "video stream processor" if source is None else "camera described by streamproc",
        "sw_version": __version__,
    }


class _Builder:
    def __init__(self, config: "HomeAssistantConfig", topics: Topics):
        self.config, self.topics, self.node = config, topics, config.node_id
        self.messages: list[tuple[str, bytes]] = []

    def add(self, component: str, source: Optional[str], key: str, payload: dict[str, object]) -> None:
        parts = (source, key) if source is not None else ("service", key)
        uid = object_id(self.node, *parts)
        payload = {
            "unique_id": uid,
            "default_entity_id": f"{component}.{_entity_slug(self.node, *parts)}",
            **payload,
            "device": _device(self.config, source),
            "origin": origin(self.config.support_url),
        }
        topic = f"{self.config.discovery_prefix}/{component}/{self.node}/{object_id(*parts)}/config"
        self.messages.append((topic, _json(payload)))


def discovery_messages(
    config: "HomeAssistantConfig",
    topics: Topics,
    rules: Sequence["RuleConfig"],
    source_names: Iterable[str],
    *,
    switches: bool = False,
    snapshots: bool = False,
    service_state: bool = True,
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config, to be published retained. `switches`: the
    pipeline's controls are bound (pause a camera, enable a rule); `snapshots`: per-segment JPEGs;
    `service_state`: the box publishes its state on `<prefix>/service` (loading, ready)."""
    b = _Builder(config, topics)
    for source in source_names:
        _camera_entities(b, topics, source, snapshots=snapshots, switches=switches, service_state=service_state)
        _rule_sensors(b, topics, source, rules, service_state)
    if service_state:
        _service_state_sensor(b, topics)
    if switches:
        _rule_switches(b, topics, rules)
    return b.messages


def _service_state_sensor(b: _Builder, topics: Topics) -> None:
    b.add("sensor", None, "state", {
        "name": "State",
        "state_topic": topics.service,
        "value_template": _SERVICE_STATE_TEMPLATE,
        "json_attributes_topic": topics.service,
        "json_attributes_template": _SERVICE_ATTRIBUTES_TEMPLATE,
        "icon": "mdi:progress-clock",
        "entity_category": "diagnostic",
        **_service_availability(topics),
    })


def _camera_entities(
    b: _Builder, topics: Topics, source: str, *, snapshots: bool, switches: bool, service_state: bool
) -> None:
    camera = _camera_availability(topics, source, service_state)
    b.add("sensor", source, "caption", {
        "name": "Caption",
        "state_topic": topics.last_caption(source),
        "value_template": _CAPTION_STATE_TEMPLATE,
        "json_attributes_topic": topics.last_caption(source),
        "json_attributes_template": _CAPTION_ATTRIBUTES_TEMPLATE,
        "icon": "mdi:text-box-outline",
        **camera,
    })
    b.add("binary_sensor", source, "connected", {
        "name": "Connected",
        "state_topic": topics.status(source),
        "value_template": _CONNECTED_TEMPLATE,
        "payload_on": STATE_ON,
        "payload_off": STATE_OFF,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        **_service_availability(topics),
    })
    b.add("image", source, "alert_snapshot", {
        "name": "Alert snapshot",
        "image_topic": topics.alert_snapshot(source),
        "content_type": "image/jpeg",
        **camera,
    })
    if snapshots:
        b.add("image", source, "snapshot", {
            "name": "Snapshot",
            "image_topic": topics.snapshot(source),
            "content_type": "image/jpeg",
            **camera,
        })
    if switches:
        b.add("switch", source, "describe", {
            "name": "Describe",
            **_switch(topics.describe_set(source), topics.describe(source)),
            "icon": "mdi:cctv",
            **_service_availability(topics),
        })


def _rule_sensors(b: _Builder, topics: Topics, source: str, rules: Sequence["RuleConfig"], service_state: bool) -> None:
    camera = _camera_availability(topics, source, service_state)
    for rule in rules:
        if not rule.applies_to(source):
            continue
        sensor: dict[str, object] = {
            "name": rule.name.replace("_", " "),
            "state_topic": topics.rule_state(source, rule.name),
            "payload_on": STATE_ON,
            "payload_off": STATE_OFF,
            **camera,
        }
        if rule.device_class:
            sensor["device_class"] = rule.device_class
        b.add("binary_sensor", source, rule.name, sensor)


def _rule_switches(b: _Builder, topics: Topics, rules: Sequence["RuleConfig"]) -> None:
    """The service device's switches: one per rule, to enable or disable it."""
    for rule in rules:
        b.add("switch", None, f"rule_{rule.name}", {
            "name": f"Rule {rule.name.replace('_', ' ')}",
            **_switch(topics.rule_enabled_set(rule.name), topics.rule_enabled(rule.name)),
            "icon": "mdi:bell-cog-outline",
            **_service_availability(topics),
        })


def _switch(command_topic: str, state_topic: str) -> dict[str, object]:
    return {
        "command_topic": command_topic,
        "state_topic": state_topic,
        "payload_on": STATE_ON,
        "payload_off": STATE_OFF,
        "state_on": STATE_ON,
        "state_off": STATE_OFF,
        "optimistic": False,
        "retain": False,
        "entity_category": "config",
    }


def birth_topic(config: "HomeAssistantConfig") -> str:
    """Home Assistant publishes 'online' here when it starts: time to republish discovery."""
    return f"{config.discovery_prefix}/status"


def node_configs(config: "HomeAssistantConfig") -> str:
    """Subscription filter for every discovery config of this node (to find stale ones)."""
    return f"{config.discovery_prefix}/+/{config.node_id}/+/config"


def state_topics(payload: bytes, prefix: str) -> list[str]:
    """The retained topics under `prefix` that a discovery config reads its state from (for
    clearing them with a removed entity); [] for a payload that is not such a config."""
    try:
        config = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(config, dict):
        return []
    found = [config.get(key) for key in ("state_topic", "json_attributes_topic", "image_topic")]
    return sorted({t for t in found if isinstance(t, str) and t.startswith(prefix + "/")})


def removals(current: Collection[str], retained_topic: str, payload: bytes) -> list[tuple[str, bytes]]:
    """An empty retained payload for a config found under this node that is no longer produced."""
    if not payload or retained_topic in current:
        return []
    return [(retained_topic, b"")]


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
