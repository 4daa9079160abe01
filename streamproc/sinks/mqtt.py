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
from ..bus import BasePlugin
from ..events import Event, stats_event
from .outbox import Message, Outbox
from .topics import STATE_OFF, STATE_ON, Topics

log = logging.getLogger(__name__)


class MqttSink(BasePlugin):
    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        outbox: Optional[OutboxConfig] = None,
        *,
        homeassistant: Optional[HomeAssistantConfig] = None,
        rules: Sequence[RuleConfig] = (),
        source_names: Sequence[str] = (),
        control: Any = None,
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
        # The run-time switches (streamproc.control.PipelineControl), offered on MQTT as Home
        # Assistant's switches (`<prefix>/<source>/describe/set`, `<prefix>/rules/<rule>/enabled/set`)
        # with their retained state.
        self.control: Any = control
        if control is not None:
            control.add_listener(self._control_changed)
        self._discovery_topics: Optional[frozenset[str]] = None
        self._retained: Optional[frozenset[str]] = None  # the topics this run may retain, from start()

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
                from .homeassistant import birth_topic, node_configs

                on_connect = self._discovery
                subscriptions[birth_topic(self.homeassistant)] = self._ha_birth
                subscriptions[node_configs(self.homeassistant)] = self._ha_stale
            if self.control is not None:
                subscriptions.update(self._command_subscriptions())
            try:
                self.publisher = Publisher(
                    self.config, self.outbox, self.topics, on_connect=on_connect, subscriptions=subscriptions
                )
            except SinkError:
                self.outbox.close()
                raise
            # The rule engine starts with every rule OFF; say so, so that a state left ON by a
            # previous run does not stay ON forever (appended after any rows still pending from it).
            # Then clear what a previous run retained for cameras and rules no longer configured.
            clears, current = self._stale_retained()
            self.outbox.append_many(
                [
                    Message(self.topics.rule_state(source, rule.name), STATE_OFF.encode(), self.config.qos.state, True)
                    for source in self.source_names
                    for rule in self.rules
                    if rule.applies_to(source)
                ]
                + self._switch_states()
                + clears
            )
            from .retained import record_path, save_record

            save_record(record_path(self.outbox.path), current)
            self.publisher.start()

    def events_lost(self) -> int:
        return self.outbox.lost_since_open() if self.outbox is not None else 0

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

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            if self._closed or self.publisher is None:
                self._closed = True
                return
            self._closed = True
        if self.publisher.connected:
            delivered = self.flush(max(0.0, timeout_s - 2.0))
        else:
            delivered = self.outbox.count() == 0
        stored = self.outbox.count() - self.outbox.in_memory()  # held in memory (a full disk): see the outbox's log
        if not delivered and stored:
            log.warning("MQTT: %d messages not yet delivered; they stay in %s for the next run", stored, self.outbox.path)
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
        if event.type == "caption":
            # The current caption, retained: Home Assistant's sensor shows it again after a restart.
            self.publisher.publish_ephemeral(
                self.topics.last_caption(event.source), event.to_bytes(), self.config.qos.state, True
            )
        if event.type == "caption" and self.config.snapshots and event.snapshot is not None:
            image = event.snapshot
            self.publisher.publish_ephemeral(
                self.topics.snapshot(event.source), lambda: _jpeg(image), self.config.qos.snapshots, True
            )
        if event.type == "alert" and event.data.get("transition") == "raised":
            snapshot = (event.data.get("attachments") or {}).get("snapshot")
            if snapshot is not None:
                self.publisher.publish_ephemeral(
                    self.topics.alert_snapshot(event.source), lambda: _read(snapshot["path"]), self.config.qos.snapshots, True
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
        if event.type == "service":  # retained: the box's state from its first second (loading, ready)
            return [Message(topics.service, payload, qos.status, True, event.id)]
        if event.type == "unchanged":  # the gate skipped a segment: a span of "nothing new", in the
            # status subtree (not on `status` itself, whose retained online/offline HA reads)
            return [Message(topics.unchanged(event.source), payload, qos.status, False, event.id)]
        if event.type == "summary":  # retained: a dashboard that connects later sees the latest one
            return [Message(topics.summary(event.source), payload, qos.alerts, True, event.id)]
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
        messages = discovery_messages(
            self.homeassistant, self.topics, self.rules, self.source_names,
            switches=self.control is not None, snapshots=self.config.snapshots,
        )
        return [(topic, payload, 1, True) for topic, payload in messages]

    def _ha_birth(self, payload: bytes) -> list[tuple[str, bytes, int, bool]]:
        if payload.strip().lower() == b"online":
            log.info("Home Assistant came online: republishing discovery")
            return self._discovery()
        return []

    def _ha_stale(self, payload: bytes, topic: str) -> list[tuple[str, bytes, int, bool]]:
        """A retained config under our node: removed (empty payload) if no longer configured,
        with the retained state topics it read that nothing configured produces any more (the
        record of retained topics covers runs since it exists; this covers older ones)."""
        from .homeassistant import removals, state_topics

        if self._discovery_topics is None:  # sources and rules are fixed for the sink's life
            self._discovery_topics = frozenset(t for t, _, _, _ in self._discovery())
        found = removals(self._discovery_topics, topic, payload)
        for stale, _ in found:
            log.info("Home Assistant: removing the entity of %s (no longer configured)", stale)
        if found:
            retained = self._retained or frozenset()
            found += [(t, b"") for t in state_topics(payload, self.topics.prefix) if t not in retained]
        return [(t, p, 1, True) for t, p in found]

    def _stale_retained(self) -> tuple[list[Message], set[str]]:
        """Empty retained messages for the topics the previous run recorded and this one does not
        produce, and the topics this one may retain (sinks/retained.py)."""
        from .retained import load_record, record_path, retained_topics, stale

        current = retained_topics(self.topics, self.source_names, self.rules,
                                  switches=self.control is not None, snapshots=self.config.snapshots)
        self._retained = frozenset(current)
        gone = stale(load_record(record_path(self.outbox.path)), current)
        if gone:
            log.info("MQTT: clearing %d retained topic(s) no longer configured: %s%s", len(gone), ", ".join(gone[:5]),
                     " ..." if len(gone) > 5 else "")
        return [Message(t, b"", self.config.qos.state, True) for t in gone], current

    # -- run-time switches (service/control.py) --------------------------------------------------

    def _command_subscriptions(self) -> dict[str, Any]:
        subscriptions: dict[str, Any] = {}
        for source in self.control.sources:
            subscriptions[self.topics.describe_set(source)] = (
                lambda payload, source=source: self._command(payload, lambda on: self.control.set_paused(source, not on))
            )
        for rule in self.control.rules:
            subscriptions[self.topics.rule_enabled_set(rule)] = (
                lambda payload, rule=rule: self._command(payload, lambda on: self.control.enable_rule(rule, on))
            )
        return subscriptions

    @staticmethod
    def _command(payload: bytes, apply: Any) -> list[tuple[str, bytes, int, bool]]:
        value = payload.strip().upper()
        if value not in (STATE_ON.encode(), STATE_OFF.encode()):
            log.warning("MQTT: a switch command must be ON or OFF, got %r", payload[:20])
            return []
        apply(value == STATE_ON.encode())  # the state goes out through _control_changed
        return []

    def _switch_states(self) -> list[Message]:
        if self.control is None:
            return []
        state = self.control.snapshot()
        qos = self.config.qos.state
        return [
            Message(self.topics.describe(s), (STATE_ON if on else STATE_OFF).encode(), qos, True)
            for s, on in state["describing"].items()
        ] + [
            Message(self.topics.rule_enabled(r), (STATE_ON if on else STATE_OFF).encode(), qos, True)
            for r, on in state["rules"].items()
        ]

    def _control_changed(self, kind: str, name: str, on: bool) -> None:
        if self.outbox is None or self._closed:
            return
        qos, value = self.config.qos.state, (STATE_ON if on else STATE_OFF).encode()
        if kind == "source":
            messages = [Message(self.topics.describe(name), value, qos, True)]
        else:
            messages = [Message(self.topics.rule_enabled(name), value, qos, True)]
            if not on:  # a disabled rule forgets its state: it is OFF everywhere
                messages += [
                    Message(self.topics.rule_state(source, name), STATE_OFF.encode(), qos, True)
                    for source in self.source_names
                    for rule in self.rules
                    if rule.name == name and rule.applies_to(source)
                ]
        self.outbox.append_many(messages)
        self.publisher.notify()

    def _require_started(self) -> None:
        if self.publisher is None:
            raise SinkError("the MQTT sink was not started", retryable=False)

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected

    @property
    def last_error(self) -> Optional[str]:
        return None if self.publisher is None else self.publisher.last_error


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:  # removed by retention before it went out: nothing to send
        log.warning("alert snapshot %s is gone: %s", path, error.strerror)
        return None


def _jpeg(image: Any) -> bytes:
    from ..media.jpeg import encode_jpeg

    return encode_jpeg(image)


def _percentiles(samples) -> dict[str, float]:
    """p50/p99 in milliseconds of recent append-to-PUBACK delays (empty before any ack)."""
    ordered = sorted(samples)
    if not ordered:
        return {}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.50) * 1000, 2), "p99": round(pick(0.99) * 1000, 2), "samples": len(ordered)}
