"""The MQTT sink: events -> topics, through the disk outbox, published by one background thread.

`handle(event)` only appends to the outbox (an SQLite insert) and returns: the pipeline never waits
for the network. The publisher thread (mqtt_publisher.py) sends the rows in order and deletes each
on PUBACK, so a broker outage or a process restart loses nothing (up to the outbox bound). Stats and
snapshots are current values rather than history: they are sent only while connected, never stored.

Topics: see streamproc/sinks/topics.py and docs/mqtt.md.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional, Sequence

from ..config.rules import RuleConfig
from ..config.sinks import HomeAssistantConfig, MqttConfig, OutboxConfig
from ..errors import SinkError
from .base import BaseSink, StatusEventsMixin
from ..events import Event, stats_event
from .outbox import Message, Outbox
from .topics import STATE_OFF, STATE_ON, Topics

log = logging.getLogger(__name__)


class MqttSink(StatusEventsMixin, BaseSink):
    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        outbox: Optional[OutboxConfig] = None,
        *,
        homeassistant: Optional[HomeAssistantConfig] = None,
        rules: Sequence[RuleConfig] = (),
        source_names: Sequence[str] = (),
    ):
        self.config = config
        self.outbox_config = outbox if outbox is not None else OutboxConfig()
        self.homeassistant = homeassistant if homeassistant is not None and homeassistant.enabled else None
        self.rules = list(rules)
        self.source_names = list(source_names)
        self.topics = Topics(config.topic_prefix)
        self.outbox: Optional[Outbox] = None
        self.publisher: Any = None  # mqtt_publisher.Publisher once started
        self._lock = threading.Lock()
        self._closed = False
        self._handled = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        from .mqtt_publisher import Publisher  # paho is imported only when MQTT is used

        with self._lock:
            if self.publisher is not None:
                return
            cfg = self.outbox_config
            self.outbox = Outbox(
                cfg.path, max_messages=cfg.max_events, when_full=cfg.when_full, synchronous=cfg.synchronous
            )
            subscriptions = {}
            on_connect = None
            if self.homeassistant is not None:
                from .homeassistant import birth_topic

                on_connect = self._discovery
                subscriptions[birth_topic(self.homeassistant)] = self._ha_birth
            try:
                self.publisher = Publisher(
                    self.config, self.outbox, self.topics, on_connect=on_connect, subscriptions=subscriptions
                )
            except SinkError:
                self.outbox.close()
                raise
            # The rule engine starts with every rule OFF; say so, so that a state left ON by a
            # previous run does not stay ON forever (appended after any rows still pending from it).
            self.outbox.append_many(
                [
                    Message(self.topics.rule_state(source, rule.name), STATE_OFF.encode(), self.config.qos.state, True)
                    for source in self.source_names
                    for rule in self.rules
                    if rule.applies_to(source)
                ]
            )
            self.publisher.start()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """True once connected; raises SinkError at once if the broker refused the credentials or
        TLS failed (the publisher keeps retrying in the background either way)."""
        self._require_started()
        return self.publisher.wait_connected(timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        if self.publisher is None:
            return True
        deadline = time.monotonic() + timeout_s
        while not (self.publisher.idle() and self.publisher.inflight == 0):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            if self._closed or self.publisher is None:
                self._closed = True
                return
            self._closed = True
        if self.publisher.connected:
            delivered = self.flush(max(0.0, timeout_s - 2.0))
        else:
            delivered = self.outbox.count() == 0
        if not delivered:
            log.warning(
                "MQTT: %d messages not yet delivered; they stay in %s for the next run",
                self.outbox.count(), self.outbox.path,
            )
        self.publisher.stop(timeout_s=5.0)
        self.outbox.close()

    # -- events ----------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        self._require_started()
        if self._closed:
            raise SinkError("the MQTT sink is closed", retryable=False)
        self._handled += 1
        if event.type == "stats":
            self._publish_stats(event)
            return
        messages = self.messages_for(event)
        if messages:
            self.outbox.append_many(messages)
            self.publisher.notify()
        if event.type == "caption" and self.config.snapshots and event.snapshot is not None:
            image = event.snapshot
            self.publisher.publish_ephemeral(
                self.topics.snapshot(event.source), lambda: _jpeg(image), self.config.qos.snapshots, True
            )

    def messages_for(self, event: Event) -> list[Message]:
        """The outbox rows for one event (stats and snapshots excepted: they are not stored)."""
        qos, topics, payload = self.config.qos, self.topics, event.to_bytes()
        if event.type == "caption":
            return [Message(topics.captions(event.source), payload, qos.captions, False, event.id)]
        if event.type == "alert":
            state = STATE_ON if event.data["transition"] == "raised" else STATE_OFF
            rule = event.data["rule"]
            return [
                Message(topics.alerts(event.source), payload, qos.alerts, False, event.id),
                Message(topics.rule_state(event.source, rule), state.encode(), qos.state, True, event.id),
            ]
        if event.type == "status":
            return [Message(topics.status(event.source), payload, qos.status, True, event.id)]
        log.debug("MQTT sink ignores %s events", event.type)
        return []

    def _publish_stats(self, event: Event) -> None:
        stats = dict(event.data.get("stats", {}))
        if "mqtt" not in (stats.get("sinks") or {}):  # the service may have included ours already
            stats["mqtt"] = self.stats()
        merged = stats_event(stats, now=event.data.get("ts"))
        self.publisher.publish_ephemeral(self.topics.stats, merged.to_bytes(), self.config.qos.stats, False)

    def stats(self) -> dict[str, Any]:
        """Delivery counters: connected, outbox pending/dropped, published/acked/rejected, reconnects."""
        if self.publisher is None:
            return {"connected": False, "started": False}
        return {
            "connected": self.publisher.connected,
            "inflight": self.publisher.inflight,
            "outbox": self.outbox.stats() if not self._closed else {},
            "handled": self._handled,
            **self.publisher.counters,
            "delivery_ms": _percentiles(self.publisher.latencies),
            "last_error": self.publisher.last_error,
        }

    # -- Home Assistant --------------------------------------------------------------------------

    def _discovery(self) -> list[tuple[str, bytes, int, bool]]:
        from .homeassistant import discovery_messages

        assert self.homeassistant is not None
        return [
            (topic, payload, 1, True)
            for topic, payload in discovery_messages(self.homeassistant, self.topics, self.rules, self.source_names)
        ]

    def _ha_birth(self, payload: bytes) -> list[tuple[str, bytes, int, bool]]:
        if payload.strip().lower() == b"online":
            log.info("Home Assistant came online: republishing discovery")
            return self._discovery()
        return []

    def _require_started(self) -> None:
        if self.publisher is None:
            raise SinkError("the MQTT sink was not started", retryable=False)

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected

    @property
    def last_error(self) -> Optional[str]:
        return None if self.publisher is None else self.publisher.last_error


def _jpeg(image: Any) -> bytes:
    from .snapshot import encode_jpeg

    return encode_jpeg(image)


def _percentiles(samples) -> dict[str, float]:
    """p50/p99 in milliseconds of recent append-to-PUBACK delays (empty before any ack)."""
    ordered = sorted(samples)
    if not ordered:
        return {}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.50) * 1000, 2), "p99": round(pick(0.99) * 1000, 2), "samples": len(ordered)}
