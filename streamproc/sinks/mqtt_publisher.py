"""The MQTT connection: one thread that owns a paho 2.x client and drains the outbox in order.

Why one thread and our own network loop instead of paho's loop_start() and its reconnect:
- paho's in-memory queue would hold a second copy of every pending message (and resend it on
  reconnect in its own order); the outbox is the only queue here, so order and bounds are ours.
- Each connection gets a fresh Client: nothing stale carries over, and after a reconnect the thread
  simply resends from the oldest unacknowledged outbox row (at-least-once; ids let consumers dedup).
- Callbacks only record what happened (acks, CONNACK, messages); the loop acts on it afterwards,
  so nothing ever blocks inside paho.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Optional, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ..config.sinks import MqttConfig
from ..errors import SinkError
from ..tls import client_context
from ..redact import redact, register_secret
from ..supervise import Backoff, Supervisor
from .outbox import Outbox
from .topics import AVAILABLE_OFFLINE, AVAILABLE_ONLINE, Topics

log = logging.getLogger(__name__)

Payload = Union[bytes, Callable[[], Optional[bytes]]]  # a callable is encoded in this thread
OutMessage = tuple[str, bytes, int, bool]  # topic, payload, qos, retain
OnConnect = Callable[[], list[OutMessage]]  # messages to send on every connect (discovery)
OnMessage = Callable[[bytes], list[OutMessage]]  # a subscription's handler: messages to send in reply

_LOOP_S = 0.05  # network loop wait when idle; new outbox rows wake the loop at once (notify())
_LATENCY_SAMPLES = 2048  # append-to-PUBACK delays kept for stats and benchmarks
_REPEAT_WARNING_S = 300.0


def make_tls_context(config: MqttConfig) -> Optional[ssl.SSLContext]:
    return client_context(config.tls, "sinks.mqtt.tls", "MQTT", lambda message: SinkError(message, retryable=False),
                          insecure=config.tls.insecure)


class Publisher:
    def __init__(
        self,
        config: MqttConfig,
        outbox: Outbox,
        topics: Topics,
        *,
        on_connect: Optional[OnConnect] = None,
        subscriptions: Optional[dict[str, OnMessage]] = None,
    ):
        self.config = config
        self.outbox = outbox
        self.topics = topics
        if config.password is not None:
            register_secret(config.password.get_secret_value())  # masked in every log line
        self.client_id = config.client_id or f"streamproc-{socket.gethostname()}"
        self._tls = make_tls_context(config)  # bad files fail now, not in the thread
        self._on_connect = on_connect or (lambda: [])
        self._subscriptions = dict(subscriptions or {})
        self._where = f"{config.host}:{config.port}"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ephemeral: "OrderedDict[str, tuple[Payload, int, bool]]" = OrderedDict()
        self._ephemeral_lock = threading.Lock()
        self._connected = False
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._created: dict[int, float] = {}  # paho mid -> when its row was appended (time.time())
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)  # append -> PUBACK, seconds
        # A socket pair whose read end sits in the network loop's select(): notify() makes a new
        # outbox row go out at once instead of after the idle wait.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._other: set[int] = set()  # QoS>0 mids not from the outbox (birth, discovery, ...)
        # At most this many QoS>0 messages unacknowledged. Brokers drop QoS 2 messages beyond their
        # own limit silently (mosquitto's max_inflight_messages, 20 by default; MQTT 5 brokers
        # announce it as Receive Maximum, which lowers this for the next connections).
        self._limit = config.max_inflight
        self.fatal: Optional[SinkError] = None  # refused credentials / TLS: retrying alone won't help
        self.last_error: Optional[str] = None
        self.counters = {"connects": 0, "disconnects": 0, "published": 0, "acked": 0, "rejected": 0}
        self._attempts = 0
        self._last_warning = ("", 0.0)
        # set by paho callbacks, read by the loop
        self._connack: Optional[mqtt.ReasonCode] = None
        self._receive_maximum: Optional[int] = None
        self._acks: list[tuple[int, mqtt.ReasonCode]] = []
        self._received: list[tuple[str, bytes]] = []

    # -- called from other threads ---------------------------------------------------------------

    def notify(self) -> None:
        """New rows are in the outbox: wake the network loop."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken (buffer full) or closing

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("MQTT publisher thread did not stop within %.1f s", timeout_s)
                return  # it may still select() on the wake socket
        self._wake_r.close()
        self._wake_w.close()

    def publish_ephemeral(self, topic: str, payload: Payload, qos: int, retain: bool) -> None:
        """Send when connected, newest value per topic only; never stored (stats, snapshots)."""
        with self._ephemeral_lock:
            self._ephemeral.pop(topic, None)
            self._ephemeral[topic] = (payload, qos, retain)
            while len(self._ephemeral) > 64:
                self._ephemeral.popitem(last=False)
        self.notify()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def idle(self) -> bool:
        with self._ephemeral_lock:
            pending = bool(self._ephemeral)
        return not pending and self.outbox.count() == 0

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected; raises the SinkError if the broker refused us (credentials, TLS)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._connected:
                return True
            if self.fatal is not None:
                raise self.fatal
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        # The publisher never gives up (the outbox holds what it could not send); the supervision
        # rule gives it a jittered, capped backoff that a working connection resets. Jitter keeps
        # a fleet of publishers from reconnecting in lockstep after an outage.
        supervisor = Supervisor(
            "mqtt-publisher",
            backoff=Backoff(self.config.reconnect_min_delay_s, self.config.reconnect_max_delay_s, 2.0, jitter=0.5),
        )
        while not self._stop.is_set():
            try:
                client = self._open()
                if client is not None:
                    supervisor.succeeded()
                    self._serve(client)
                    if self._stop.is_set():
                        self._goodbye(client)
                        return
            except Exception:  # a bug or a broken outbox: log it, back off, go on delivering
                self._connected = False
                if self._stop.is_set():
                    return  # closing: the outbox may already be closed under a slow connect
                log.exception("MQTT publisher failed; reconnecting")
            self._stop.wait(supervisor.failed())

    def _make_client(self) -> mqtt.Client:
        v5 = self.config.protocol == "5"
        kwargs = {} if v5 else {"clean_session": True}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            **kwargs,
        )
        client.connect_timeout = self.config.connect_timeout_s
        client.max_inflight_messages_set(self._limit)  # paho queues the rest, in order, in memory
        client.max_queued_messages_set(0)
        if self.config.username is not None:
            password = self.config.password.get_secret_value() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        # The broker publishes this for us if we vanish without a clean disconnect.
        client.will_set(self.topics.available, AVAILABLE_OFFLINE, qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        return client

    # paho callbacks: record only
    def _cb_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._receive_maximum = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        self._connack = reason_code

    def _cb_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, reason_code))

    def _cb_message(self, client, userdata, message) -> None:
        self._received.append((message.topic, bytes(message.payload)))

    def _open(self) -> Optional[mqtt.Client]:
        self._attempts += 1
        client = self._make_client()
        self._connack = None
        # A new client numbers its messages from 1 again: nothing recorded for the old one may
        # be taken for an acknowledgement of the new one's.
        self._acks.clear()
        self._received.clear()
        try:
            if self.config.protocol == "5":
                client.connect(self.config.host, self.config.port, self.config.keepalive_s, clean_start=True)
            else:
                client.connect(self.config.host, self.config.port, self.config.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            detail = exc.verify_message or str(exc)
            self._fail(
                f"MQTT TLS handshake with {self._where} failed: {detail} (check sinks.mqtt.tls.ca_file and sinks.mqtt.host)",
                fatal=True,
            )
            return None
        except socket.gaierror as exc:  # the name does not resolve (DNS may come back: not fatal)
            self._fail(f"cannot resolve the MQTT broker host '{self.config.host}' ({exc.strerror or exc}; check sinks.mqtt.host)")
            return None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, timeout, TLS alerts
            self._fail(f"cannot connect to the MQTT broker at {self._where}: {redact(exc) or type(exc).__name__}")
            return None
        deadline = time.monotonic() + self.config.connect_timeout_s
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while self._connack is None and time.monotonic() < deadline and not self._stop.is_set():
            rc = client.loop(_LOOP_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        reason = self._connack
        if reason is None and self._stop.is_set():
            self._close_socket(client)  # closing while connecting: not a connection problem
            return None
        if reason is None:
            what = mqtt.error_string(rc).rstrip(".") if rc != MQTTErrorCode.MQTT_ERR_SUCCESS else "no CONNACK in time"
            hint = "" if self._tls is not None else " (a TLS-only listener? check sinks.mqtt.tls)"
            self._fail(f"MQTT broker at {self._where} did not accept the connection: {what}{hint}")
            self._close_socket(client)
            return None
        if reason.is_failure:
            self._close_socket(client)
            self._refused(reason)
            return None
        self._connected_now(client)
        return client

    def _refused(self, reason: mqtt.ReasonCode) -> None:
        text = str(reason)
        lowered = text.lower()
        auth = "password" in lowered or "authori" in lowered
        hint = " (check sinks.mqtt.username / password)" if auth else ""
        self._fail(f"MQTT broker at {self._where} refused the connection: {text}{hint}", fatal=auth)

    def _fail(self, message: str, *, fatal: bool = False) -> None:
        self.last_error = message
        if fatal:
            self.fatal = SinkError(message, retryable=False)
        pending = self.outbox.count()
        previous, when = self._last_warning
        now = time.monotonic()
        if message != previous or now - when > _REPEAT_WARNING_S:
            self._last_warning = (message, now)
            level = logging.ERROR if fatal else logging.WARNING
            log.log(level, "%s; retrying with backoff, %d messages kept in the outbox", message, pending)
        else:
            log.debug("%s (attempt %d, %d pending)", message, self._attempts, pending)

    def _connected_now(self, client: mqtt.Client) -> None:
        self.counters["connects"] += 1
        self.fatal = None
        self.last_error = None
        pending = self.outbox.count()
        if self.counters["connects"] > 1:
            log.warning("MQTT connected to %s again; sending %d pending messages", self._where, pending)
        elif self._attempts > 1:
            log.warning("MQTT connected to %s after %d attempts (%d pending messages)", self._where, self._attempts, pending)
        else:
            log.info("MQTT connected to %s as %s (%d pending messages)", self._where, self.client_id, pending)
        self._attempts = 0
        self._last_warning = ("", 0.0)
        if self._receive_maximum and self._receive_maximum < self._limit:
            log.warning(
                "MQTT broker accepts at most %d unacknowledged messages; lowering max_inflight from %d",
                self._receive_maximum, self._limit,
            )
            self._limit = self._receive_maximum
        self._inflight.clear()
        self._other.clear()
        self._send_other(client, self.topics.available, AVAILABLE_ONLINE.encode(), 1, True)
        for topic, payload, qos, retain in self._on_connect():
            self._send_other(client, topic, payload, qos, retain)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._connected = True

    def _send_other(self, client: mqtt.Client, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._other.add(info.mid)

    def _serve(self, client: mqtt.Client) -> None:
        """Drain the outbox in order over this connection until it drops or we are stopped."""
        last_seq = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while not self._stop.is_set():
            last_seq = self._pump(client, last_seq)
            self._publish_ephemeral(client)
            rc = self._loop(client, _LOOP_S)
            self._handle_acks()
            self._handle_messages(client)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not client.is_connected():
                break
        self._connected = False
        if not self._stop.is_set():
            self.counters["disconnects"] += 1
            self._fail(f"MQTT connection to {self._where} lost: {mqtt.error_string(rc)}")
            self._close_socket(client)
        # Unacknowledged rows stay in the outbox and go out again, first, on the next connection.
        self._inflight.clear()
        self._created.clear()

    def _pump(self, client: mqtt.Client, last_seq: int) -> int:
        room = self._limit - len(self._inflight) - len(self._other)
        if room <= 0:
            return last_seq
        for message in self.outbox.peek(after_seq=last_seq, limit=room):
            info = client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # connection dropped under us; the loop notices and reconnects
            self._inflight[info.mid] = message.seq
            self._created[info.mid] = message.created
            self.counters["published"] += 1
            last_seq = message.seq
        return last_seq

    def _handle_acks(self) -> None:
        acks, self._acks = self._acks, []
        done = []
        now = time.time()
        for mid, reason in acks:
            seq = self._inflight.pop(mid, None)
            created = self._created.pop(mid, None)
            if created:
                self.latencies.append(now - created)
            if seq is None:
                self._other.discard(mid)  # birth, discovery, ephemeral: nothing to delete
                continue
            if reason is not None and reason.is_failure:
                # MQTT 5 brokers can refuse a message (e.g. ACL). Resending cannot succeed and would
                # hold up every later event, so it is dropped, counted and logged.
                self.counters["rejected"] += 1
                log.error("MQTT broker rejected a message (outbox seq %d): %s", seq, reason)
            else:
                self.counters["acked"] += 1
            done.append(seq)
        if done:
            self.outbox.delete(done)

    def _handle_messages(self, client: mqtt.Client) -> None:
        received, self._received = self._received, []
        for topic, payload in received:
            handler = self._subscriptions.get(topic) or self._wildcard_handler(topic)
            if handler is None:
                continue
            try:
                replies = handler(payload)
            except Exception:  # a bad handler must not kill the publisher
                log.exception("handler for MQTT topic %s failed", topic)
                continue
            for reply_topic, reply, qos, retain in replies:
                self._send_other(client, reply_topic, reply, qos, retain)

    def _wildcard_handler(self, topic: str) -> Optional[Callable[[bytes], list[OutMessage]]]:
        """A subscription with + or # in its filter gets the topic too: handler(payload, topic)."""
        for pattern, handler in self._subscriptions.items():
            if ("+" in pattern or "#" in pattern) and mqtt.topic_matches_sub(pattern, topic):
                return lambda payload, handler=handler: handler(payload, topic)  # type: ignore[call-arg]
        return None

    def _publish_ephemeral(self, client: mqtt.Client) -> None:
        with self._ephemeral_lock:
            items = list(self._ephemeral.items())
            self._ephemeral.clear()
        for topic, (payload, qos, retain) in items:
            try:
                data = payload() if callable(payload) else payload
            except Exception:  # e.g. a snapshot that cannot be encoded; never stop the publisher
                log.exception("cannot encode the message for %s", topic)
                continue
            if data is not None:
                self._send_other(client, topic, data, qos, retain)

    def _goodbye(self, client: mqtt.Client) -> None:
        """A clean exit: retained offline (the broker sends no will on a clean disconnect)."""
        try:
            info = client.publish(self.topics.available, AVAILABLE_OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(_LOOP_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            self._handle_acks()
            client.disconnect()
            client.loop(_LOOP_S)
        except (OSError, ValueError, RuntimeError) as exc:
            log.debug("MQTT goodbye failed: %s", exc)
        finally:
            self._connected = False
            self._close_socket(client)

    def _loop(self, client: mqtt.Client, timeout: float) -> MQTTErrorCode:
        """paho's network loop (read, write, keepalive) that also wakes on notify()."""
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if getattr(sock, "pending", lambda: 0)() > 0:  # TLS: bytes already decrypted, no select
            timeout = 0.0
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], [sock] if client.want_write() else [], [], timeout
            )
        except (OSError, ValueError, TypeError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except (BlockingIOError, OSError):
                pass
        if sock in readable or getattr(sock, "pending", lambda: 0)() > 0:
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc
        if client.want_write():
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return client.loop_misc()

    @staticmethod
    def _close_socket(client: mqtt.Client) -> None:
        try:
            sock = client.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass
