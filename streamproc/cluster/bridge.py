"""The events stream to MQTT: one logical bridge, run by every box.

All boxes pull from one durable consumer with max_ack_pending 1, so exactly one message is in
flight cluster-wide and MQTT gets every camera's events in stream order. A message is acked only
after the broker's PUBACK; if the box forwarding it dies, JetStream hands it to another box
after ack_wait. No election is needed and no box's disk holds events the others cannot reach
(the choice against per-box outboxes is explained in docs/scale-out.md).

A box that dies (or freezes) after the broker took a message but before its JetStream ack would
make the next box send it again. Two checks close that window: every bridge subscribes to the
topics it feeds and remembers the event ids the broker has delivered, skipping any it has seen
(a redelivery comes ack_wait later, long after the broker routed the first copy); and a bridge
that held a message for longer than fence_after_s (it was frozen) does not send it at all, since
another box may have it by now. Retained rule states are sent in any case (they are idempotent).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from ..sinks.topics import STATE_OFF, STATE_ON, Topics
from .layout import H_BOX, H_EPOCH, H_KIND, Names

log = logging.getLogger(__name__)


class MqttBridge:
    def __init__(self, loop: Any, js: Any, names: Names, mqtt_config: Any, box: str, hold_limit_s: float,
                 remember: int = 20000):
        self.loop = loop
        self.js = js
        self.names = names
        self.config = mqtt_config
        self.box = box
        self.topics = Topics(mqtt_config.topic_prefix)
        self.epochs: dict[str, int] = {}  # newest epoch this box has seen per camera
        self.hold_limit_s = hold_limit_s
        self.counters = {"forwarded": 0, "stale_dropped": 0, "markers": 0, "mqtt_failures": 0, "already_sent": 0,
                         "held_too_long": 0}
        self._seen: set[str] = set()  # event ids the broker has delivered (to our own subscription)
        self._seen_order: deque = deque(maxlen=remember)
        self._seen_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-bridge", daemon=True)
        self._client: Any = None
        self._psub: Any = None

    def start(self) -> None:
        self._client = self._connect()
        self._psub = self.loop.call(self.js.pull_subscribe_bind(durable=self.names.bridge_consumer, stream=self.names.events))
        self._thread.start()

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from ..sinks.mqtt_publisher import make_tls_context

        base = self.config.client_id or "streamproc"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{base}-bridge-{self.box}")
        if self.config.username is not None:
            password = self.config.password.get_secret_value() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        context = make_tls_context(self.config)
        if context is not None:
            client.tls_set_context(context)
        client.reconnect_delay_set(self.config.reconnect_min_delay_s, self.config.reconnect_max_delay_s)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        client.loop_start()
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            prefix = self.topics.prefix
            client.subscribe([(f"{prefix}/+/captions", 1), (f"{prefix}/+/alerts", 1)])

    def _on_message(self, client, userdata, message) -> None:
        try:
            event_id = json.loads(message.payload)["id"]
        except (ValueError, KeyError, TypeError):
            return
        with self._seen_lock:
            if event_id not in self._seen:
                if len(self._seen_order) == self._seen_order.maxlen:
                    self._seen.discard(self._seen_order[0])
                self._seen_order.append(event_id)
                self._seen.add(event_id)

    def already_sent(self, event_id: str) -> bool:
        with self._seen_lock:
            return event_id in self._seen

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _run(self) -> None:
        import nats.errors

        while not self._stop.is_set():
            try:
                messages = self.loop.call(self._psub.fetch(1, timeout=1.0), timeout=10)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except Exception as error:
                log.debug("bridge: fetch failed: %s", error)
                self._stop.wait(0.5)
                continue
            fetched = time.monotonic()
            for message in messages:
                self._forward(message, fetched)

    def _forward(self, message: Any, fetched: float) -> None:
        headers = message.headers or {}
        camera = self.names.camera_of(message.subject)
        epoch = int(headers.get(H_EPOCH, "0") or 0)
        if epoch < self.epochs.get(camera, 0):  # the stream's fences make this impossible; count it if not
            self.counters["stale_dropped"] += 1
            log.error("bridge: dropped an event of %s from stale epoch %d (now %d)", camera, epoch, self.epochs[camera])
            self._ack(message)
            return
        self.epochs[camera] = epoch
        if headers.get(H_KIND) != "event":
            self.counters["markers"] += 1
            log.debug("bridge: %s is owned by %s from epoch %d", camera, headers.get(H_BOX), epoch)
            self._ack(message)
            return
        outgoing = self._messages(message.data)
        if self.already_sent(json.loads(message.data)["id"]):  # another box sent it and then died
            self.counters["already_sent"] += 1
            outgoing = [m for m in outgoing if m[3]]  # the retained state only
        if time.monotonic() - fetched > self.hold_limit_s:  # frozen: it may be someone else's now
            self.counters["held_too_long"] += 1
            log.warning("bridge: held an event for %.1f s; leaving it to the next box", time.monotonic() - fetched)
            return
        if not self._publish_all(outgoing):
            self.counters["mqtt_failures"] += 1
            self.loop.call(message.nak(delay=1.0), timeout=10)  # in order: it comes back first
            return
        self.counters["forwarded"] += 1
        self._ack(message)

    def _messages(self, payload: bytes) -> list[tuple[str, bytes, int, bool]]:
        data = json.loads(payload)
        source, qos = data["source"], self.config.qos
        if data["type"] == "caption":
            return [(self.topics.captions(source), payload, qos.captions, False)]
        if data["type"] == "alert":
            state = STATE_ON if data["transition"] == "raised" else STATE_OFF
            return [
                (self.topics.alerts(source), payload, qos.alerts, False),
                (self.topics.rule_state(source, data["rule"]), state.encode(), qos.state, True),
            ]
        return []

    def _publish_all(self, messages: list[tuple[str, bytes, int, bool]]) -> bool:
        for topic, payload, qos, retain in messages:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):  # not connected (yet)
                pass
            if not info.is_published():
                log.warning("bridge: MQTT did not take %s; trying again", topic)
                self._stop.wait(0.5)
                return False
        return True

    def _ack(self, message: Any) -> None:
        try:
            self.loop.call(message.ack(), timeout=10)  # in order on the connection; a lost ack means a redelivery, which already_sent() catches
        except Exception as error:  # it comes back after ack_wait: MQTT may see it twice
            log.warning("bridge: ack failed (%s); the event may be forwarded again", error)

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)
