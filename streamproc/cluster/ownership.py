"""What a box does with the cameras it holds: take one over, commit each segment, give it back.

Two fences make sure a camera's events come from one owner at a time, even when a box was
frozen (SIGSTOP, a long GC, a VM pause) past its lease and does not know it yet:

1. The camera's KV record (owner, epoch, rule states, last segment's events) is written with
   compare-and-set on the revision this box last wrote. A new owner's first act is such a write,
   so the old owner's next write fails.
2. Events go to `<site>.events.<camera>` with Nats-Expected-Last-Subject-Sequence = the last
   sequence this box stored there, and a new owner first publishes an `acquire` marker there, so
   the old owner's next publish fails ("wrong last sequence").

A segment is committed KV first, then events. If the old owner lost the camera between the two,
its events are in the KV record's `pending`; the new owner publishes them again on acquire, and
the stream keeps each event id once (Nats-Msg-Id), whoever got it there first. So a camera that
moves mid-segment loses nothing and duplicates nothing. Everything a box publishes is stamped
with its name and epoch (`cluster` in the event).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..events import Event
from . import rulestate
from .layout import H_BOX, H_EPOCH, H_KIND, Names, is_wrong_last_sequence

log = logging.getLogger(__name__)

_RETRY_S = 0.2  # between attempts while the cluster elects a leader (1-3 s)


class LostCamera(Exception):
    """Another box owns the camera now (a fence fired)."""


class StaleToken(Exception):
    """A token delivery older than the camera's current owner's (it sat in a client buffer while
    its lease ran out): neither used nor acked, nor nak'ed."""


@dataclass
class Holding:
    camera: str
    epoch: int
    token: Any  # the token message: in_progress keeps the lease, nak gives it back
    revision: int = 0  # KV revision of this box's last write
    last_seq: int = 0  # last sequence on the camera's events subject
    acquired_wall: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    confirmed: float = field(default_factory=time.monotonic)  # the last renewal the consumer's leader answered
    fence_at: float = math.inf  # monotonic time at which this box stops the camera (the lease manager's)
    renewals_missed: int = 0  # renewals in a row that got no answer

    def valid(self) -> bool:
        return time.monotonic() < self.fence_at


class Ownership:
    """The cameras a box holds. Coroutines run on the cluster loop; `commit` is called from the
    pipeline's worker threads (one segment per camera at a time)."""

    def __init__(self, loop: Any, js: Any, names: Names, box: str, lease_valid: Callable[[], bool], nc: Any = None):
        self.loop = loop
        self.js = js
        self.nc = nc  # for requests the consumer's leader answers (a confirmed nak); None: plain nak
        self.names = names
        self.box = box
        self.lease_valid = lease_valid
        self.holdings: dict[str, Holding] = {}
        self.kv: Any = None
        self.host: Any = None  # set by the box (the App): start_source/stop_source, rules, lanes
        self.commit_timeout_s = 60.0
        self.counters = {"acquired": 0, "released": 0, "lost": 0, "stale_dropped": 0, "republished": 0}

    async def open(self) -> None:
        self.kv = await self.js.key_value(self.names.cameras_kv)

    # -- acquire -----------------------------------------------------------------------------

    async def acquire(self, camera: str, token: Any, *, confirmed: Optional[float] = None,
                      fence_at: float = math.inf) -> None:
        """Take `camera` over with the lease `token` (its delivery count is the epoch), confirmed at
        `confirmed` (monotonic; the lease holds for ack_wait after it) and to be fenced at `fence_at`."""
        holding = Holding(camera, int(token.metadata.num_delivered), token, fence_at=fence_at)
        if confirmed is not None:
            holding.confirmed = confirmed
        self.holdings[camera] = holding  # heartbeats cover it from now on
        try:
            async with holding.lock:
                record = await self._claim(holding)
                holding.last_seq, last_id = await self._open_epoch(holding)
                pending = [Event.from_json(text) for text in record.get("pending") or []]
                if pending and pending[-1].id != last_id:  # the last owner's last segment, once more
                    for event in pending:
                        await self._publish(holding, event)
                        self.counters["republished"] += 1
                if pending:  # done with: later owners must not send them again (after the dedup window)
                    await self._write_record(holding, {**record, "box": self.box, "epoch": holding.epoch, "pending": []})
                restored = rulestate.restore(self.host.rules, camera, record) if record else 0
        except BaseException:
            if self.holdings.get(camera) is holding:
                del self.holdings[camera]
            raise
        self.counters["acquired"] += 1
        log.info(
            "cluster: %s owns %s (epoch %d, from %s, %d rule state(s))",
            self.box, camera, holding.epoch, record.get("box", "nobody"), restored,
            extra={"camera": camera, "epoch": holding.epoch},
        )
        await asyncio.to_thread(self.host.start_source, camera)

    async def _open_epoch(self, holding: Holding) -> tuple[int, str]:
        """Append the acquire marker, only right after an event of an older epoch: so epochs on a
        camera's subject only ever grow, and the old owner's next publish fails. The marker's
        sequence, and the id of the event before it ("" for a marker or none)."""
        from nats.js.errors import NotFoundError

        subject = self.names.event_subject(holding.camera)
        for _ in range(20):  # the old owner may still be finishing a segment
            try:
                last = await self._retry(lambda: self.js.get_last_msg(self.names.events, subject), holding)
                last_seq, last_epoch = last.seq, int((last.headers or {}).get(H_EPOCH, 0))
                last_id = json.loads(last.data)["id"] if last.data else ""
            except NotFoundError:
                last_seq, last_epoch, last_id = 0, 0, ""
            if last_epoch > holding.epoch:
                raise StaleToken(f"epoch {last_epoch} already owns it")
            try:
                marker = await self._retry(lambda: self.js.publish(
                    subject, b"", headers={
                        H_KIND: "acquire", H_BOX: self.box, H_EPOCH: str(holding.epoch),
                        "Nats-Expected-Last-Subject-Sequence": str(last_seq),
                    },
                ), holding)
                return marker.seq, last_id
            except Exception as error:
                if not is_wrong_last_sequence(error):
                    raise
        raise LostCamera("its events subject keeps changing")

    async def _claim(self, holding: Holding) -> dict:
        """Write this box and epoch into the camera's record (the KV fence); the record before."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        while True:
            try:
                entry = await self._retry(lambda: self.kv.get(holding.camera), holding)
                record, revision = json.loads(entry.value or b"{}"), entry.revision
            except KeyNotFoundError:
                record, revision = {}, 0
            if int(record.get("epoch", 0)) > holding.epoch:
                raise StaleToken(f"{record.get('box')} owns it with epoch {record.get('epoch')}")
            claimed = {**record, "box": self.box, "epoch": holding.epoch}
            try:
                payload = json.dumps(claimed).encode()
                if revision:
                    holding.revision = await self._retry(lambda: self.kv.update(holding.camera, payload, last=revision), holding)
                else:
                    holding.revision = await self._retry(lambda: self.kv.create(holding.camera, payload), holding)
                return record
            except KeyWrongLastSequenceError:
                continue  # the old owner committed a segment just now: read it again
            except Exception as error:
                if not is_wrong_last_sequence(error):
                    raise

    # -- commit ------------------------------------------------------------------------------

    def commit(self, segment: Any, events: list[Event]) -> list[Event]:
        """Pipeline hook (a worker thread): store the segment's rule state and events; the events
        stamped with box and epoch, or none if this box no longer owns the camera."""
        try:
            # bounded: a commit retries only while the lease holds (fence_after_s), so this is slack
            return self.loop.call(self._commit(segment, events), timeout=self.commit_timeout_s)
        except Exception as error:  # the lease ran out while the cluster was away
            log.warning("cluster: %s segment %d not committed: %s", segment.source, segment.index, error)
            return []

    async def _commit(self, segment: Any, events: list[Event]) -> list[Event]:
        camera = segment.source
        holding = self.holdings.get(camera)
        if holding is None or not self._holds(holding) or segment.start_wall < holding.acquired_wall - 1.0:
            self.counters["stale_dropped"] += 1
            log.info("cluster: %s segment %d dropped: not owned by this epoch", camera, segment.index)
            return []
        async with holding.lock:
            if self.holdings.get(camera) is not holding:
                self.counters["stale_dropped"] += 1
                return []
            stamped = [self._stamp(event, holding) for event in events]
            record = {
                "box": self.box, "epoch": holding.epoch,
                **rulestate.save(self.host.rules, camera, segment.end),
                "pending": [event.to_json() for event in stamped],
            }
            try:
                await self._write_record(holding, record)
                for event in stamped:
                    await self._publish(holding, event)
            except LostCamera as lost:
                self.counters["stale_dropped"] += 1
                await self.lose(camera, str(lost))
                return []
        return stamped

    def _stamp(self, event: Event, holding: Holding) -> Event:
        data = {**event.data, "cluster": {"box": self.box, "epoch": holding.epoch}}
        return dataclasses.replace(event, data=data)

    async def _write_record(self, holding: Holding, record: dict) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        payload = json.dumps(record).encode()
        try:
            holding.revision = await self._retry(lambda: self.kv.update(holding.camera, payload, last=holding.revision), holding)
        except KeyWrongLastSequenceError:
            # Our own earlier attempt may have landed with its answer lost (a leader change).
            entry = await self._retry(lambda: self.kv.get(holding.camera), holding)
            current = json.loads(entry.value or b"{}")
            if current.get("box") != self.box or current.get("epoch") != holding.epoch:
                raise LostCamera(f"{current.get('box')} owns it (epoch {current.get('epoch')})") from None
            holding.revision = entry.revision
            if entry.value != payload:
                holding.revision = await self._retry(lambda: self.kv.update(holding.camera, payload, last=entry.revision), holding)

    async def _publish(self, holding: Holding, event: Event) -> None:
        event = self._stamp(event, holding)  # a republished event is this epoch's now

        def send():
            return self.js.publish(
                self.names.event_subject(holding.camera), event.to_bytes(),
                headers={
                    "Nats-Msg-Id": event.id, "Nats-Expected-Last-Subject-Sequence": str(holding.last_seq),
                    H_KIND: "event", H_BOX: self.box, H_EPOCH: str(holding.epoch),
                },
            )

        try:
            ack = await self._retry(send, holding)
        except Exception as error:
            if is_wrong_last_sequence(error):
                raise LostCamera("another box published on its events subject") from None
            raise
        holding.last_seq = max(holding.last_seq, ack.seq)  # a duplicate answers with the first copy's

    def _holds(self, holding: Holding) -> bool:
        """This box may still act for `holding`: its link works and the camera is not fenced."""
        return self.lease_valid() and holding.valid()

    async def _retry(self, attempt: Callable[[], Any], holding: Holding) -> Any:
        """`attempt()` again while the cluster has no leader (timeouts, no responders), as long
        as the lease of `holding` holds."""
        import nats.errors
        import nats.js.errors

        transient = (nats.errors.TimeoutError, nats.errors.NoRespondersError, asyncio.TimeoutError,
                     nats.errors.ConnectionReconnectingError, nats.errors.FlushTimeoutError,
                     nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError)
        while True:
            try:
                return await attempt()
            except transient as error:
                if not self._holds(holding):
                    raise LostCamera("the lease ran out while the cluster did not answer") from error
                await asyncio.sleep(_RETRY_S)
            except Exception as error:
                if getattr(error, "code", None) == 503:  # JetStream without a leader for a moment
                    if not self._holds(holding):
                        raise LostCamera("the lease ran out while the cluster did not answer") from error
                    await asyncio.sleep(_RETRY_S)
                    continue
                raise

    # -- give back ---------------------------------------------------------------------------

    async def release(self, camera: str, drain_s: float) -> None:
        """Give `camera` back (fair share, shutdown): stop reading it, let the segments already
        read be committed while the lease still holds, then nak the token."""
        holding = self.holdings.get(camera)
        if holding is None:
            return
        await asyncio.to_thread(self.host.stop_source, camera)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._busy(camera) and self._holds(holding):
            await asyncio.sleep(0.1)
        async with holding.lock:
            if self.holdings.get(camera) is not holding:
                return
            del self.holdings[camera]
        if self._holds(holding):
            await self._give_back(holding)
        self.counters["released"] += 1
        log.info("cluster: %s gave %s back (epoch %d)", self.box, camera, holding.epoch)

    async def _give_back(self, holding: Holding) -> None:
        """Nak the token, as a request the consumer's leader answers (a nak sent while a leader is
        being elected is lost); tried again while the lease holds, at most a few seconds."""
        deadline = min(holding.fence_at, time.monotonic() + 3.0)
        while True:
            try:
                if self.nc is None:
                    await holding.token.nak()
                else:
                    await self.nc.request(holding.token.reply, b"-NAK", timeout=0.5)
                return
            except Exception as error:
                if time.monotonic() + _RETRY_S >= deadline:  # it comes back after ack_wait anyway
                    log.warning("cluster: giving %s back got no answer (%s); it moves after the lease",
                                holding.camera, error)
                    return
                await asyncio.sleep(_RETRY_S)

    def _busy(self, camera: str) -> bool:
        return not self.host.lanes.idle(camera)

    async def lose(self, camera: str, why: str) -> None:
        """Another box has (or may have) the camera: stop it here at once, give nothing back."""
        holding = self.holdings.pop(camera, None)
        if holding is None:
            return
        self.counters["lost"] += 1
        log.warning("cluster: %s stops %s (epoch %d): %s", self.box, camera, holding.epoch, why)
        asyncio.get_running_loop().run_in_executor(None, self.host.stop_source, camera)

    async def lose_all(self, why: str) -> None:
        for camera in list(self.holdings):
            await self.lose(camera, why)
