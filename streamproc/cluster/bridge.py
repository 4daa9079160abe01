"""The events stream to MQTT: one logical bridge, run by every box, in partitions.

Cameras are spread over N partitions (cluster/partitions.py), each a durable consumer with
AckPolicy ALL and max_ack_pending = one batch. Every box pulls every partition; a partition's
next batch goes to whichever box asks first once the last one is acked, so the N partitions run
in parallel across boxes and each camera's events reach MQTT in stream order. A batch is sent
to the broker pipelined (QoS 1, up to `max_inflight` unacknowledged), the box waits once for all
its PUBACKs, then acks the batch's last message (which settles the batch). If the box
forwarding it dies, JetStream hands the batch to another box after ack_wait. No election is
needed and no box's disk holds events the others cannot reach (docs/scale-out.md says why not
per-box outboxes). Payloads go out as stored: no JSON is re-encoded.

The bridge has its own NATS connection, on the MQTT link's loop thread (mqttlink.py), not the
box's main one: forwarding a burst must not delay the lease heartbeats on the box's connection.

A box that dies (or freezes) after the broker took a batch but before its JetStream ack would
make the next box send it again (after a consumer leader change the redelivery may even come
with a delivery count of 1). Three checks close that window. Each batch ends with a retained
marker per camera, `<prefix>/<camera>/bridge/forwarded` = the stream sequence (and stored time)
of its last event, on the same connection: the broker routes in order, so a routed marker means
the events before it were routed; every bridge subscribes to the markers (a box that joined
later gets the retained ones), and a message at or below its camera's marker is not sent again.
Every bridge also remembers a digest of every payload the broker routed to the topics it feeds
(QoS 0): that covers a batch the broker routed only in part. Before a batch that may have been
forwarded already (a redelivery, or the first of a partition just taken over) the bridge waits
until it has read all the broker routed so far: a token it sends itself comes back after them
(a loaded box may not have read the marker yet; this was a duplicate under load). And a
bridge that held a batch for longer than fence_after_s (it was frozen) does not send it at all,
since another box may have it by now; held counts from the pull request the batch answers, not
from reading it (a box frozen with the batch unread in its socket read it on waking, counted it
as fresh and sent it after another box had: a duplicate under load). Retained topics (rule states, the last caption) are sent
in any case: they are idempotent.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Optional

from ..sinks.topics import STATE_OFF, STATE_ON
from .connection import connect
from .layout import H_BOX, H_EPOCH, H_KIND, Names
from .mqttlink import ForwardedMarkers, MqttLink, Outgoing
from .partitions import PRIORITY_GROUP, consumer_name
from .presence import Presence

log = logging.getLogger(__name__)


class PartitionPuller:
    """Pull requests on one partition's consumer, as a member of its priority group.

    nats-py has no priority groups, so the requests are made by hand: `group`, and once the
    server pinned this box (the `Nats-Pin-Id` header of a delivered message), that `id`. While
    another box is pinned the server holds this box's requests; 423 says the pin moved on.
    A batch: whatever is there now (no_wait); if nothing, wait up to a second for one message,
    then take what came with it."""

    def __init__(self, nc: Any, stream: str, consumer: str, batch: int):
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.batch = batch
        self.pin: Optional[str] = None
        self.requested_at = 0.0  # monotonic: when the request that the last batch answers was sent
        self._open_since: Optional[float] = None  # a request not seen to end (its answer may still come)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sub: Any = None

    async def open(self) -> None:
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox, cb=self._received)

    async def close(self) -> None:
        try:
            await self.sub.unsubscribe()
        except Exception:
            pass

    async def _received(self, message: Any) -> None:
        self.queue.put_nowait(message)

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    async def unpin(self) -> None:
        """Hand the partition on (between batches: nothing of it is out here)."""
        self.pin = None
        await self.nc.request(self.subject.replace(".MSG.NEXT.", ".UNPIN."),
                              json.dumps({"group": PRIORITY_GROUP}).encode(), timeout=5)

    async def next_batch(self) -> list:
        """The next batch; `requested_at` says since when it may have been here. The server may
        have delivered it as early as the request that brought its first message, or an earlier
        request not seen to end: a box frozen (or starved) with the batch unread in its socket
        must count that time as held, not start counting when it reads it on waking."""
        self.requested_at, messages = await self._pull(self.batch, wait_s=None)
        if messages:
            return messages
        self.requested_at, first = await self._pull(1, wait_s=1.0)
        if not first or self.batch == 1:
            return first
        return first + (await self._pull(self.batch - 1, wait_s=None))[1]

    async def _pull(self, count: int, wait_s: Optional[float]) -> tuple[float, list]:
        """(since when the messages may have been delivered, the messages)."""
        since = self._open_since if self._open_since is not None else time.monotonic()
        self._open_since = since
        ended = False
        request: dict[str, Any] = {"batch": count, "group": PRIORITY_GROUP}
        if self.pin is not None:
            request["id"] = self.pin
        if wait_s is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(wait_s * 1e9)
        await self.nc.publish(self.subject, json.dumps(request).encode(), reply=self.inbox)
        messages: list = []
        deadline = time.monotonic() + (wait_s or 0.0) + 2.0
        while len(messages) < count:
            try:
                message = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            headers = message.headers or {}
            status = headers.get("Status")
            if status is None and message.reply:
                pin = headers.get("Nats-Pin-Id")
                if pin is not None:
                    self.pin = pin
                messages.append(message)
            elif status == "423":  # pinned to another box now: ask again without the old pin
                self.pin = None
                ended = True
                break
            elif status != "100":  # 404 no messages, 408 expired, 409: this request is over
                ended = True
                break
        if ended or len(messages) == count:  # the server serves requests in order: older ones are over too
            self._open_since = None
        return since, messages


class MqttBridge:
    """Forwards the events stream's partitions to MQTT through `link`."""

    def __init__(self, cluster: Any, link: MqttLink, *, partitions: Optional[int] = None, batch: Optional[int] = None):
        self.cluster = cluster
        self.names = Names(cluster.name)
        self.link = link
        self.box = cluster.box
        self.topics = link.topics
        self.qos = link.config.qos
        self.partitions = partitions or cluster.bridge_partitions
        self.batch = batch or cluster.bridge_batch
        self.hold_limit_s = cluster.lease.fence
        self.epochs: dict[str, int] = {}  # newest epoch this box has seen per camera
        self.counters = {"forwarded": 0, "batches": 0, "stale_dropped": 0, "markers": 0, "mqtt_failures": 0,
                         "already_sent": 0, "held_too_long": 0}
        self.loop: Any = None  # the link's loop: the pumps write their batches themselves (mqttlink.py)
        self._nc: Any = None
        self._stopping: Optional[asyncio.Event] = None
        self._pumps: Any = None
        self._pullers: list[PartitionPuller] = []
        self.presence: Any = None

    def connect(self) -> None:
        """The bridge's own NATS connection (start() makes it if this was not called)."""
        if self._nc is None:
            self.loop = self.link.loop
            self._nc = self.loop.call(connect(self.cluster, f"streamproc-{self.box}-bridge"),
                                      timeout=self.cluster.connect_timeout_s * 3)
            self.presence = Presence(self._nc, f"{self.cluster.name}.bridges", self.box)  # how many share the partitions
            self.loop.call(self.presence.start(), timeout=10)

    def start(self) -> None:
        self.connect()
        self._pumps = self.loop.spawn(self._run())

    async def _run(self) -> None:
        self._stopping = asyncio.Event()
        await asyncio.gather(*(self._pump(p) for p in range(self.partitions)))

    async def _pump(self, partition: int) -> None:
        """Pull partition `partition` batch after batch until the bridge stops, while this box
        holds no more than its share of the partitions."""
        puller = PartitionPuller(self._nc, self.names.events, consumer_name(partition), self.batch)
        self._pullers.append(puller)
        await puller.open()
        try:
            while not self._stopping.is_set():
                held, share = sum(p.pinned for p in self._pullers), -(-self.partitions // self.presence.alive())
                try:
                    if held > share and puller.pinned:  # a box joined: give this one to it
                        await puller.unpin()
                    if not puller.pinned and held >= share:
                        await asyncio.sleep(0.5)
                        continue
                    newly_pinned = not puller.pinned  # the partition may come from another box
                    messages = await puller.next_batch()
                except Exception as error:  # no leader for a moment, a reconnect: try again shortly
                    log.debug("bridge: pulling partition %d failed: %s", partition, error)
                    await asyncio.sleep(0.5)
                    continue
                if messages:
                    try:
                        await self._forward(messages, puller.requested_at, newly_pinned)
                    except Exception:  # a bug: the batch comes back after ack_wait; this pump goes on
                        log.exception("bridge: forwarding a batch of partition %d failed", partition)
            if puller.pinned:  # stopping between batches: the next box need not wait for the pin to expire
                await puller.unpin()
        finally:
            await puller.close()

    async def _forward(self, messages: list, requested: float, newly_pinned: bool) -> None:
        """Send a batch (delivered no earlier than `requested`) and ack it, or leave it."""
        if (newly_pinned or any(m.metadata.num_delivered > 1 for m in messages)) and not await self._caught_up(requested):
            self.counters["mqtt_failures"] += 1  # what was routed is not known yet: the batch comes back
            await self._give_back(messages)
            return
        outgoing = self._outgoing(messages)
        if time.monotonic() - requested > self.hold_limit_s:  # frozen: the batch may be someone else's now
            self.counters["held_too_long"] += 1
            log.warning("bridge: held a batch for %.1f s; leaving it to the next box", time.monotonic() - requested)
            return
        if outgoing and not self.link.connected:  # not handed to paho at all: it would send it on
            self.counters["mqtt_failures"] += 1  # reconnecting as well as this batch's redelivery
            await self._give_back(messages)
            await asyncio.sleep(0.5)
            return
        if outgoing:
            infos = self.link.publish(outgoing)
            self.link.flush()  # into the kernel before anything else runs here (a freeze now cannot delay it)
            timeout = max(0.1, self.hold_limit_s - (time.monotonic() - requested))
            if not await self.link.sent(infos, timeout):  # a drop mid-batch: paho resends after the
                self.counters["mqtt_failures"] += 1  # reconnect; what it routed by then is skipped (digests)
                log.warning("bridge: MQTT did not take a batch of %d message(s); it comes back in order", len(outgoing))
                await self._give_back(messages)
                return
        self.counters["batches"] += 1
        await self._settle(messages[-1].ack())  # AckPolicy ALL: the whole batch

    async def _caught_up(self, requested: float) -> bool:
        """Before a batch that may have been forwarded already (a redelivery, or the first of a
        partition this box just took over): wait until this box has read every forwarded marker
        and payload the broker routed so far. A redelivery comes ack_wait after the first copy,
        but a loaded box, or one that joined since, may not have read its marker yet."""
        timeout = self.hold_limit_s - (time.monotonic() - requested)
        if timeout > 0 and await self.link.synced(timeout):
            return True
        log.warning("bridge: could not confirm what the broker routed; a batch comes back")
        return False

    async def _give_back(self, messages: list) -> None:
        for message in messages:  # in order: the batch comes back first
            await self._settle(message.nak(delay=1.0))

    def _outgoing(self, messages: list) -> list[Outgoing]:
        """The MQTT messages of a batch, in order: each event's topics, then each camera's last caption."""
        outgoing: list[Outgoing] = []
        last_caption: dict[str, bytes] = {}
        newest: dict[str, tuple[int, float]] = {}  # per camera: the batch's last event (sequence, stored time)
        for message in messages:
            headers = message.headers or {}
            camera = self.names.camera_of(message.subject)
            metadata = message.metadata
            epoch = int(headers.get(H_EPOCH, "0") or 0)
            if epoch < self.epochs.get(camera, 0):  # the stream's fences make this impossible; count it if not
                self.counters["stale_dropped"] += 1
                log.error("bridge: dropped an event of %s from stale epoch %d (now %d)", camera, epoch, self.epochs[camera])
                continue
            self.epochs[camera] = epoch
            if headers.get(H_KIND) != "event":
                self.counters["markers"] += 1
                log.debug("bridge: %s is owned by %s from epoch %d", camera, headers.get(H_BOX), epoch)
                continue
            # routed already: another box sent it and died before its ack, or an ack lost in a consumer
            # leader change (the new leader may count that delivery as the first: no num_delivered test).
            # The forwarded marker is the broker's record (retained, so a box that joined later has it);
            # the digests cover a batch the broker routed only in part (a connection lost mid-batch)
            position = (metadata.sequence.stream, metadata.timestamp.timestamp())
            newest[camera] = position
            sent = self.link.forwarded.covers(camera, *position) or message.data in self.link.sent_payloads
            self.counters["already_sent" if sent else "forwarded"] += 1
            outgoing += self._messages(camera, message.data, last_caption, retained_only=sent)
        outgoing += [(self.topics.last_caption(camera), payload, self.qos.state, True) for camera, payload in last_caption.items()]
        # last, on the same connection: the broker routes in order, so a marker it routed means the
        # events before it were routed too (QoS 1 at least: it must be confirmed with the batch)
        outgoing += [(self.topics.forwarded(camera), ForwardedMarkers.encode(*position), max(1, self.qos.state), True)
                     for camera, position in newest.items() if not self.link.forwarded.covers(camera, *position)]
        return outgoing

    def _messages(self, camera: str, payload: bytes, last_caption: dict[str, bytes], retained_only: bool) -> list[Outgoing]:
        data = json.loads(payload)
        if data["type"] == "caption":
            last_caption[camera] = payload
            return [] if retained_only else [(self.topics.captions(camera), payload, self.qos.captions, False)]
        if data["type"] == "alert":
            state = STATE_ON if data["transition"] == "raised" else STATE_OFF
            retained = [(self.topics.rule_state(camera, data["rule"]), state.encode(), self.qos.state, True)]
            return retained if retained_only else [(self.topics.alerts(camera), payload, self.qos.alerts, False)] + retained
        return []

    @staticmethod
    async def _settle(ack: Any) -> None:
        try:
            await ack  # in order on the connection; a lost ack means a redelivery, which the digests catch
        except Exception as error:  # it comes back after ack_wait: MQTT may see it twice
            log.warning("bridge: ack failed (%s); the batch may be forwarded again", error)

    def stop(self) -> None:
        if self.loop is None:
            return
        if self._stopping is not None:
            self.loop.loop.call_soon_threadsafe(self._stopping.set)
        try:
            if self._pumps is not None:
                self._pumps.result(5.0)
        except Exception as error:
            log.debug("bridge: stopping: %s", error)
        try:
            if self.presence is not None:
                self.loop.call(self.presence.leave(), timeout=5)  # the others take its share at once
            self.loop.call(self._nc.close(), timeout=5)
        except Exception:
            pass

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)
