"""A box's MQTT connection in cluster mode, driven by an asyncio loop (no paho network thread).

paho runs on the link's own loop thread (`LoopThread`), with its socket watched by the loop
(paho's external-loop callbacks). The bridge's pumps and the site's speaker run on the same
loop, so the bridge writes a batch into the kernel itself (`flush()`) right after queuing it:
a box frozen (SIGSTOP, a VM pause) a moment later cannot send that batch when it wakes, long
after another box took the partition over; with a network thread, publishes it had queued but
not yet written would go out on waking. PUBACKs are awaited on the loop (`sent()`), without a
thread hand-off.

Publishing from other threads (the bus's plug-in calls) is allowed: paho queues the message and
the loop writes it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import sys
import threading
import uuid
from collections import deque
from typing import Any, Optional, Sequence

from ..sinks.topics import Topics
from .connection import LoopThread

log = logging.getLogger(__name__)

Outgoing = tuple[str, bytes, int, bool]  # topic, payload, qos, retain
_QUICKACK = socket.TCP_QUICKACK if sys.platform == "linux" else None
_MISC_PERIOD_S = 1.0  # keepalive pings, reconnects


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class SentPayloads:
    """Digests of the payloads the broker routed to this box's own subscription (bounded)."""

    def __init__(self, remember: int):
        self._seen: set[bytes] = set()
        self._order: deque = deque(maxlen=remember)
        self._lock = threading.Lock()

    def add(self, payload: bytes) -> None:
        digest = payload_digest(payload)
        with self._lock:
            if digest in self._seen:
                return
            if len(self._order) == self._order.maxlen:
                self._seen.discard(self._order[0])
            self._order.append(digest)
            self._seen.add(digest)

    def __contains__(self, payload: bytes) -> bool:
        digest = payload_digest(payload)
        with self._lock:
            return digest in self._seen


class ForwardedMarkers:
    """Per camera, the newest stream message the bridge forwarded: (stream sequence, stored time),
    read back from the broker's retained marker topics (the broker's own record, so a box that
    joined later knows what was routed before it listened)."""

    def __init__(self) -> None:
        self._newest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def encode(sequence: int, stored: float) -> bytes:
        return json.dumps({"seq": sequence, "stored": stored}).encode()

    def add(self, camera: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            marker = (int(data["seq"]), float(data["stored"]))
        except (ValueError, KeyError, TypeError):
            log.warning("MQTT (cluster): an unreadable forwarded marker for %s", camera)
            return
        with self._lock:
            if marker > self._newest.get(camera, (0, 0.0)):
                self._newest[camera] = marker

    def covers(self, camera: str, sequence: int, stored: float) -> bool:
        """Whether the message (`sequence`, stored at `stored`) was routed already. The stored
        time guards a recreated stream: its sequences start again, its times do not."""
        with self._lock:
            newest = self._newest.get(camera)
        return newest is not None and sequence <= newest[0] and stored <= newest[1]


class MqttLink:
    """This box's MQTT connection: the bridge's batches, the site's messages
    (cluster/sitemqtt.py), and the subscription that remembers what was routed."""

    def __init__(self, mqtt_config: Any, box: str, remember: int = 50000, will: Optional[Outgoing] = None):
        self.config = mqtt_config
        self.box = box
        self.topics = Topics(mqtt_config.topic_prefix)
        self.sent_payloads = SentPayloads(remember)
        self.forwarded = ForwardedMarkers()
        self._sync_topic = f"{self.topics.prefix}/bridge/sync/{box}-{uuid.uuid4().hex[:8]}"
        self._syncs: dict[bytes, asyncio.Future] = {}  # token -> future, set when the echo comes
        self.will = will
        self.on_connected: list[Any] = []  # callables(link), run on the loop after each connect
        self.subscriptions: dict[str, Any] = {}  # topic filter -> callable(topic, payload), QoS 0
        self.client: Any = None
        self.loop: Optional[LoopThread] = None
        self._fd: Optional[int] = None
        self._waiting: dict[int, list] = {}  # mid -> [mids left, future] of a batch being awaited
        self._closing = False
        self._keeper: Any = None

    # -- connection ----------------------------------------------------------------------------

    def start(self) -> None:
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
        if self.will is not None:
            topic, payload, qos, retain = self.will
            client.will_set(topic, payload, qos, retain)
        qos = self.config.qos
        # QoS 1 has no receive window on an MQTT 3.1.1 broker: the bridge's batches bound what is
        # out (paho: 0 = no limit); QoS 2 keeps max_inflight (mosquitto drops beyond its own)
        uses_qos2 = 2 in (qos.captions, qos.alerts, qos.state, qos.status, qos.stats)
        client.max_inflight_messages_set(self.config.max_inflight if uses_qos2 else 0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = lambda c, u, sock: self._soon(self._watch, sock.fileno())
        client.on_socket_close = lambda c, u, sock: self._soon(self._unwatch)
        client.on_socket_register_write = lambda c, u, sock: self._soon(self._want_write)
        client.on_socket_unregister_write = lambda c, u, sock: self._soon(self._no_write)
        client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        self.client = client
        self.loop = LoopThread("cluster-mqtt")
        self._keeper = self.loop.spawn(self._keep_connected())

    async def _keep_connected(self) -> None:
        """Connect, and again after a drop (backoff as configured); keepalive pings."""
        delay = self.config.reconnect_min_delay_s
        loop = asyncio.get_running_loop()
        while not self._closing:
            if self.client.socket() is None:
                try:
                    await loop.run_in_executor(None, self.client.reconnect)  # a blocking TCP (and TLS) connect
                    delay = self.config.reconnect_min_delay_s
                except OSError as error:
                    log.warning("MQTT (cluster): cannot connect to %s:%d: %s; again in %.1f s",
                                self.config.host, self.config.port, error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.config.reconnect_max_delay_s)
                    continue
            else:
                self.client.loop_misc()
            await asyncio.sleep(_MISC_PERIOD_S)

    def _soon(self, step: Any, *args: Any) -> None:
        """paho's socket callbacks come from the loop, the connecting thread or a publisher's: on
        the loop, at once (paho closes the socket right after telling us, and a watch left on its
        file descriptor would catch the next socket that gets the number, a NATS connection's);
        from elsewhere, on the loop's next turn."""
        try:
            on_loop = asyncio.get_running_loop() is self.loop.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            step(*args)
        else:
            self.loop.loop.call_soon_threadsafe(step, *args)

    def _watch(self, fd: int) -> None:
        self._fd = fd
        self.loop.loop.add_reader(fd, self._read)

    def _unwatch(self) -> None:
        if self._fd is not None:
            self.loop.loop.remove_reader(self._fd)
            self.loop.loop.remove_writer(self._fd)
            self._fd = None

    def _want_write(self) -> None:
        if self._fd is not None:
            self.loop.loop.add_writer(self._fd, self.client.loop_write)

    def _no_write(self) -> None:
        if self._fd is not None:
            self.loop.loop.remove_writer(self._fd)

    def _read(self) -> None:
        self.client.loop_read()
        self._quick_acks()

    def _quick_acks(self) -> None:
        """Acknowledge the broker's segments at once (Linux), not after the delayed-ACK timer:
        a broker with Nagle on (mosquitto's default) holds the PUBACKs of a batch until then.
        The kernel leaves quick-ack mode on its own, so this is said again after every read."""
        sock = self.client.socket()
        if sock is not None and _QUICKACK is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT (cluster): the broker refused the connection: %s", reason_code)
            return
        # paho leaves Nagle on: small publishes would wait for the broker's delayed ACK
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        prefix = self.topics.prefix
        # markers and sync echoes at QoS 1: the broker keeps the order of one QoS's queue, so a
        # sync echo comes after every marker routed before it (and after the retained ones)
        client.subscribe([(f"{prefix}/+/captions", 0), (f"{prefix}/+/alerts", 0),
                          (self.topics.forwarded("+"), 1), (self._sync_topic, 1)]
                         + [(topic, 0) for topic in self.subscriptions])
        for callback in self.on_connected:
            try:
                callback(self)
            except Exception:  # a bug in one must not stop the others
                log.exception("MQTT (cluster): an on-connect step failed")

    def _on_message(self, client, userdata, message) -> None:
        topic = message.topic
        if topic.endswith(("/captions", "/alerts")) and topic.count("/") == self.topics.prefix.count("/") + 2:
            self.sent_payloads.add(message.payload)
            return
        if topic == self._sync_topic:
            future = self._syncs.pop(message.payload, None)
            if future is not None and not future.done():  # paho reads on the link's loop: set it here
                future.set_result(True)
            return
        if _matches(self.topics.forwarded("+"), topic):
            if message.payload:  # an empty retained message clears the marker: nothing to note
                self.forwarded.add(topic.split("/")[-3], message.payload)
            return
        for pattern, callback in self.subscriptions.items():
            if _matches(pattern, topic):
                callback(topic, message.payload)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        waiter = self._waiting.pop(mid, None)
        if waiter is not None:
            left, future = waiter
            left.discard(mid)
            if not left and not future.done():
                future.set_result(True)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, messages: Sequence[Outgoing]) -> list[Any]:
        """Queue `messages` on the connection, in order (any thread); their MQTTMessageInfo."""
        return [self.client.publish(topic, payload, qos=qos, retain=retain) for topic, payload, qos, retain in messages]

    def flush(self) -> None:
        """Write what is queued into the kernel now (on the link's loop only)."""
        if self.client.socket() is not None:
            self.client.loop_write()

    async def sent(self, infos: Sequence[Any], timeout_s: float) -> bool:
        """On the link's loop: wait until the broker acknowledged every message (QoS 1) or it was
        written (QoS 0)."""
        left = {info.mid for info in infos if not _published(info)}
        if not left:
            return True
        future = asyncio.get_running_loop().create_future()
        waiter = [left, future]
        for mid in left:
            self._waiting[mid] = waiter
        try:
            return await _within(future, timeout_s)
        finally:
            for mid in list(left):
                self._waiting.pop(mid, None)

    async def synced(self, timeout_s: float) -> bool:
        """On the link's loop: whether this link has now seen every message the broker routed to
        it before this call (markers and digests): a token sent to itself comes back after them."""
        if not self.connected:
            return False
        token = uuid.uuid4().hex.encode()
        future = asyncio.get_running_loop().create_future()
        self._syncs[token] = future
        self.client.publish(self._sync_topic, token, qos=1)
        self.flush()
        try:
            return await _within(future, timeout_s)
        finally:
            self._syncs.pop(token, None)

    @staticmethod
    def wait(infos: Sequence[Any], timeout_s: float) -> bool:
        """From another thread: block until every message was acknowledged or written."""
        import time

        deadline = time.monotonic() + timeout_s
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):  # not connected: queued by paho, not sent
                return False
            if not info.is_published():
                return False
        return True

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    def stop(self) -> None:
        if self.loop is None:
            return
        self._closing = True

        async def disconnect() -> None:
            if self._keeper is not None:
                self._keeper.cancel()
            if self.client.socket() is not None:
                self.client.disconnect()
                self.client.loop_write()  # the DISCONNECT, now: the broker drops the will

        try:
            self.loop.call(disconnect(), timeout=5)
        except Exception as error:
            log.debug("MQTT (cluster): disconnecting: %s", error)
        self.loop.stop()


def _published(info: Any) -> bool:
    try:
        return info.is_published()
    except RuntimeError:  # published while the connection was down: paho sends it after the reconnect
        return False


def _matches(pattern: str, topic: str) -> bool:
    pattern_levels, topic_levels = pattern.split("/"), topic.split("/")
    for index, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or (level != "+" and level != topic_levels[index]):
            return False
    return len(pattern_levels) == len(topic_levels)


async def _within(future: "asyncio.Future", timeout_s: float) -> bool:
    """Whether `future` completes within `timeout_s`."""
    try:
        await asyncio.wait_for(future, timeout_s)
        return True
    except asyncio.TimeoutError:
        return False
