"""Home Assistant MQTT discovery: a binary_sensor per (rule, source) and a last-caption sensor per source.

Discovery configs are retained under <discovery_prefix>/<component>/<node_id>/<object_id>/config and
are republished on every connect and whenever Home Assistant announces itself online on
<discovery_prefix>/status (its birth message), so entities survive restarts of either side.
Every entity's availability is <prefix>/available, i.e. the publisher's last will.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Iterable, Sequence

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


def object_id(*parts: str) -> str:
    """Discovery object ids allow [A-Za-z0-9_-] only; source names may also hold dots."""
    return "_".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)


def _availability(topics: Topics) -> dict[str, str]:
    return {
        "availability_topic": topics.available,
        "payload_available": AVAILABLE_ONLINE,
        "payload_not_available": AVAILABLE_OFFLINE,
    }


def _device(node_id: str, source: str) -> dict[str, object]:
    return {
        "identifiers": [object_id(node_id, source)],
        "name": f"{source}",
        "manufacturer": "streamproc",
        "model": "video stream processor",
    }


def discovery_messages(
    config: "HomeAssistantConfig",
    topics: Topics,
    rules: Sequence["RuleConfig"],
    source_names: Iterable[str],
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config, to be published retained."""
    messages: list[tuple[str, bytes]] = []
    node = config.node_id
    for source in source_names:
        device = _device(node, source)
        uid = object_id(node, source, "caption")
        caption = {
            "name": "Caption",
            "unique_id": uid,
            "object_id": uid,
            "state_topic": topics.captions(source),
            "value_template": _CAPTION_STATE_TEMPLATE,
            "json_attributes_topic": topics.captions(source),
            "json_attributes_template": _CAPTION_ATTRIBUTES_TEMPLATE,
            "icon": "mdi:text-box-outline",
            "device": device,
            **_availability(topics),
        }
        messages.append((f"{config.discovery_prefix}/sensor/{node}/{object_id(source, 'caption')}/config", _json(caption)))
        for rule in rules:
            if not rule.applies_to(source):
                continue
            uid = object_id(node, source, rule.name)
            sensor = {
                "name": rule.name.replace("_", " "),
                "unique_id": uid,
                "object_id": uid,
                "state_topic": topics.rule_state(source, rule.name),
                "payload_on": STATE_ON,
                "payload_off": STATE_OFF,
                "device": device,
                **_availability(topics),
            }
            if rule.device_class:
                sensor["device_class"] = rule.device_class
            topic = f"{config.discovery_prefix}/binary_sensor/{node}/{object_id(source, rule.name)}/config"
            messages.append((topic, _json(sensor)))
    return messages


def birth_topic(config: "HomeAssistantConfig") -> str:
    """Home Assistant publishes 'online' here when it starts: time to republish discovery."""
    return f"{config.discovery_prefix}/status"


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
