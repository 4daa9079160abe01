"""Camera leases: pull tokens while there is room, keep them alive, fence, share fairly.

- A box pulls tokens from the work-queue consumer only while it holds fewer cameras than it
  wants: min(capacity, ceil(cameras / live boxes)). Live boxes are the keys of the boxes KV
  bucket, whose TTL (fence_after_s) is shorter than the lease, so when a box dies the others'
  share has grown before its tokens come back. A box above its share gives one camera back per
  heartbeat, so a joining box gets a fair share without a stampede.
- Every heartbeat (ack_wait/6) it sends in_progress for each token and then a PING; the PONG
  proves the server had them. The lease then holds until ack_wait after that send.
- Self-fencing: if no heartbeat round trip succeeded for fence_after_s (ack_wait/2), the box
  stops all its cameras without giving anything back, well before their leases can go to another
  box. A box that was frozen (SIGSTOP) checks this before anything else when it wakes up.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from .ownership import LostCamera, Ownership, StaleToken

log = logging.getLogger(__name__)


class LeaseManager:
    def __init__(self, nc: Any, js: Any, config: Any, cameras: list[str], ownership: Ownership):
        self.nc = nc
        self.js = js
        self.config = config  # ClusterConfig
        self.names = ownership.names
        self.cameras = list(cameras)
        self.ownership = ownership
        self.last_confirmed = time.monotonic()
        self.fenced = False
        self.stopping = False
        self.live_boxes = 1
        self.counters = {"fenced": 0, "heartbeats": 0, "heartbeat_failures": 0}
        self._psub: Any = None
        self._boxes: Any = None
        self._tasks: list[asyncio.Task] = []

    # -- lease validity (any thread) ---------------------------------------------------------

    def valid(self) -> bool:
        return not self.fenced and time.monotonic() - self.last_confirmed < self.config.lease.fence

    # -- run ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._psub = await self.js.pull_subscribe_bind(durable=self.names.lease_consumer, stream=self.names.leases)
        self._boxes = await self.js.key_value(self.names.boxes_kv)
        await self._announce()
        await self.nc.flush(timeout=self.config.lease.fence)
        self.last_confirmed = time.monotonic()
        self._tasks = [asyncio.create_task(task) for task in
                       (self._heartbeats(), self._watch_fence(), self._liveness(), self._take_and_share())]

    async def _announce(self) -> None:
        info = {"box": self.config.box, "capacity": self.config.capacity, "holds": sorted(self.ownership.holdings)}
        await self._boxes.put(self.config.box, json.dumps(info).encode())

    async def _heartbeats(self) -> None:
        lease = self.config.lease
        while not self.stopping:
            started = time.monotonic()
            if started - self.last_confirmed >= lease.fence:  # first thing after a freeze, too
                await self._fence(started - self.last_confirmed)
            try:
                for holding in list(self.ownership.holdings.values()):
                    await holding.token.in_progress()
                await self.nc.flush(timeout=lease.fence / 2)
                # `started`, not now: if this box froze in between, the lease is as old as the send.
                self.last_confirmed = started
                self.counters["heartbeats"] += 1
                if self.fenced:
                    self.fenced = False
                    log.warning("cluster: %s reaches the cluster again; taking cameras again", self.config.box)
            except Exception as error:
                self.counters["heartbeat_failures"] += 1
                log.debug("cluster: heartbeat failed: %s", error)
            await asyncio.sleep(max(0.0, lease.heartbeat - (time.monotonic() - started)))

    async def _watch_fence(self) -> None:
        """Fence on time even while a heartbeat waits for its PONG."""
        while not self.stopping:
            silent = time.monotonic() - self.last_confirmed
            if silent >= self.config.lease.fence and (self.ownership.holdings or not self.fenced):
                await self._fence(silent)
            await asyncio.sleep(self.config.lease.heartbeat / 4)

    async def _liveness(self) -> None:
        """This box's key in the boxes bucket (fair share); a failure here fences nothing."""
        while not self.stopping:
            try:
                await asyncio.wait_for(self._announce(), self.config.lease.fence)
            except Exception as error:
                log.debug("cluster: liveness update failed: %s", error)
            await asyncio.sleep(self.config.lease.heartbeat)

    async def _fence(self, silent_s: float) -> None:
        if not self.ownership.holdings and self.fenced:
            return
        self.fenced = True
        self.counters["fenced"] += 1
        log.error(
            "cluster: %s has not reached the cluster for %.1f s (fence_after_s %.1f): stopping its %d camera(s) "
            "before their leases can move",
            self.config.box, silent_s, self.config.lease.fence, len(self.ownership.holdings),
        )
        await self.ownership.lose_all("fenced: the cluster was out of reach")

    async def _count_boxes(self) -> int:
        from nats.js.errors import NoKeysError

        try:
            keys = await self._boxes.keys()
        except NoKeysError:
            keys = []
        return max(1, len(set(keys) | {self.config.box}))

    def share(self) -> int:
        return min(self.config.capacity, math.ceil(len(self.cameras) / max(1, self.live_boxes)))

    async def _take_and_share(self) -> None:
        import nats.errors

        wait = self.config.lease.heartbeat
        while not self.stopping:
            if not self.valid():
                await asyncio.sleep(wait)
                continue
            try:
                self.live_boxes = await self._count_boxes()
            except Exception as error:
                log.debug("cluster: cannot count live boxes: %s", error)
            want, held = self.share(), len(self.ownership.holdings)
            if held > want:
                newest = max(self.ownership.holdings.values(), key=lambda h: h.acquired_wall)
                log.info("cluster: %s holds %d, its fair share is %d: giving %s back", self.config.box, held, want, newest.camera)
                await self.ownership.release(newest.camera, drain_s=self.config.lease.fence)
                await asyncio.sleep(wait)
                continue
            if held == want:
                await asyncio.sleep(wait)
                continue
            try:
                tokens = await self._psub.fetch(want - held, timeout=wait)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception as error:
                log.debug("cluster: fetching camera tokens failed: %s", error)
                await asyncio.sleep(wait)
                continue
            for token in tokens:
                await self._take(token)

    async def _take(self, token: Any) -> None:
        camera = self.names.camera_of(token.subject)
        if camera not in self.cameras:
            log.warning("cluster: token for %s, which this box's config does not have; leaving it", camera)
            await token.nak(delay=self.config.lease.ack_wait_s)
            return
        if not self.valid() or self.stopping or camera in self.ownership.holdings:
            # Not nak'ed: this may be an old delivery whose lease another box holds now, and a
            # nak would take it from that box. Unused, it comes back after ack_wait.
            return
        try:
            await self.ownership.acquire(camera, token)
        except (StaleToken, LostCamera) as stale:  # a newer owner exists: leave its lease alone
            log.info("cluster: an old delivery of %s's token (epoch %d): %s; ignoring it",
                     camera, token.metadata.num_delivered, stale)
            self.ownership.holdings.pop(camera, None)
        except Exception as error:
            log.error("cluster: taking %s failed: %s; giving it back", camera, error)
            self.ownership.holdings.pop(camera, None)
            await asyncio.to_thread(self.ownership.host.stop_source, camera)
            try:
                await token.nak()
            except Exception:
                pass

    # -- stop --------------------------------------------------------------------------------

    async def shutdown(self, drain_s: float) -> None:
        """SIGTERM: stop taking cameras, give every camera back (nak), leave the boxes bucket."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        heartbeat = asyncio.create_task(self._keep_alive())  # leases must hold while draining
        try:
            await asyncio.gather(*(self.ownership.release(c, drain_s) for c in list(self.ownership.holdings)))
        finally:
            heartbeat.cancel()
        try:
            await self._boxes.delete(self.config.box)
        except Exception as error:
            log.debug("cluster: leaving the boxes bucket failed: %s", error)

    async def _keep_alive(self) -> None:
        while True:
            started = time.monotonic()
            try:
                for holding in list(self.ownership.holdings.values()):
                    await holding.token.in_progress()
                await self.nc.flush(timeout=self.config.lease.fence / 2)
                self.last_confirmed = started
            except Exception:
                pass
            await asyncio.sleep(self.config.lease.heartbeat)
