"""A paho subscriber that collects every message for assertions.

    with Subscriber(broker.port, ["streamproc/#"]) as sub:
        sub.wait_for(lambda msgs: len(sub.on("streamproc/cam1/captions")) >= 3)

`persistent=True` uses a non-clean session with a fixed client id, so with a persistent broker the
messages published while this subscriber reconnects are queued for it rather than lost.
"""
from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float

    def json(self):
        return json.loads(self.payload)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class Subscriber:
    def __init__(
        self,
        port: int,
        topics: Sequence[str] = ("#",),
        *,
        host: str = "127.0.0.1",
        client_id: Optional[str] = None,
        persistent: bool = False,
        ca_file=None,
        cert_file=None,
        key_file=None,
        username: Optional[str] = None,
        password: Optional[str] = None,
    ):
        self.host, self.port, self.topics = host, port, list(topics)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        if ca_file is not None:
            self.client.tls_set(
                ca_certs=str(ca_file),
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.connects = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        self._subscribed.clear()  # first: wait_reconnected must not see a stale "subscribed"
        self.connects += 1
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), message.qos, time.time())
            )

    def start(self, timeout_s: float = 10.0) -> "Subscriber":
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError(f"subscriber did not subscribe to {self.topics} within {timeout_s} s")
        return self

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        return self._subscribed.wait(timeout_s)

    def wait_reconnected(self, connects_before: int, timeout_s: float = 15.0) -> None:
        """After a broker restart: wait until this subscriber is connected and subscribed again."""
        if not self.wait_for(lambda: self.connects > connects_before and self._subscribed.is_set(), timeout_s):
            raise TimeoutError("subscriber did not reconnect and resubscribe")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        """Messages received on exactly `topic` (or matching it, with MQTT wildcards)."""
        return [m for m in self.snapshot() if mqtt.topic_matches_sub(topic, m.topic)]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval_s)
        return predicate()

    def wait_count(self, topic: str, count: int, timeout_s: float = 10.0) -> list[Received]:
        self.wait_for(lambda: len(self.on(topic)) >= count, timeout_s)
        return self.on(topic)

    def __enter__(self) -> "Subscriber":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def first_occurrences(ids: Sequence[str]) -> list[str]:
    """Ids in the order first seen, duplicates (at-least-once redeliveries) removed."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out
