"""A box's MQTT side in cluster mode: one connection (`MqttLink`) for the bridge's partitions
and for what the site says about itself.

Built by the box (cluster/box.py) when `sinks.mqtt` is on; `cluster.bridge: false` keeps a box
out of forwarding the events stream.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from .bridge import MqttBridge, MqttLink

log = logging.getLogger(__name__)


class ClusterMqtt:
    def __init__(self, config: Any):
        self.config = config
        self.cluster = config.cluster
        self.link = MqttLink(config.sinks.mqtt, self.cluster.box)
        self.bridge: Optional[MqttBridge] = MqttBridge(self.cluster, self.link) if self.cluster.bridge else None

    def start(self) -> None:
        self.link.start()
        if self.bridge is not None:
            self.bridge.start()

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        self.link.stop()


def cluster_mqtt(config: Any) -> Optional[ClusterMqtt]:
    """The box's MQTT side, or None when the config has no MQTT sink."""
    mqtt = config.sinks.mqtt
    return ClusterMqtt(config) if mqtt is not None and mqtt.enabled else None
