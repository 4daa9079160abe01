"""Camera leases: pull tokens while there is room, keep them alive, fence, share fairly.

- A box pulls tokens from the work-queue consumer only while it holds fewer cameras than it
  wants: min(capacity, ceil(cameras / live boxes)), live boxes from the last stable view of the
  per-box heartbeats (membership.py). A box above its share gives one camera back per
  heartbeat, so a joining box gets a fair share without a stampede.
- Every heartbeat (ack_wait/15) it renews each token with `in_progress` sent as a request to the
  token's reply subject. Only the consumer's leader answers it, after it moved the token's
  redelivery deadline; so an answer, and nothing else (not the PONG of the box's own server, which
  answers while the leader is dead or still being elected), confirms the lease: it then holds
  until ack_wait after the request was sent. Unanswered renewals are retried every half second.
- Fencing, per camera: a camera whose lease was not confirmed for fence_after_s (ack_wait*2/3) is
  stopped here without giving anything back, well before its lease can go to another box. A box
  frozen past its leases (SIGSTOP) checks this before anything else when it wakes up.
- Riding out a leader election needs fence_after_s - heartbeat_s longer than the election; the
  start logs a warning when it is less than twice `lease.election_s`, and a box logs how long
  its leases went unconfirmed whenever that was longer than a heartbeat.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any, Optional

from .membership import Membership
from .ownership import Holding, LostCamera, Ownership, StaleToken
from .tokens import TokenPuller

log = logging.getLogger(__name__)

_RETRY_S = 0.5  # renewals that got no answer are sent again this soon (a leader may be elected by then)


class LeaseManager:
    def __init__(self, nc: Any, js: Any, config: Any, cameras: list[str], ownership: Ownership):
        self.nc = nc
        self.js = js
        self.config = config  # ClusterConfig
        self.lease = config.lease
        self.names = ownership.names
        self.cameras = list(cameras)
        self.ownership = ownership
        self.membership = Membership(nc, self.names.site, config.box, window_s=self.lease.fence,
                                     heartbeat_s=self.lease.heartbeat)
        self.stopping = False
        self.counters = {"fenced": 0, "renewals": 0, "renewals_unanswered": 0, "longest_unconfirmed_s": 0.0}
        self._tokens = TokenPuller(nc, self.names.leases, self.names.lease_consumer)
        self._boxes: Any = None
        self._wake = asyncio.Event()  # set when stopping: the loops' pauses end at once
        self._renewing = True
        self._tasks: dict[str, asyncio.Task] = {}

    # -- lease validity (any thread) ---------------------------------------------------------

    def valid(self) -> bool:
        """This box may take cameras and commit: it hears its own heartbeats (its link works)."""
        return self.membership.hears_itself()

    def fence_at(self, confirmed: float) -> float:
        return confirmed + self.lease.fence

    # -- run ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.check_timing()
        await self._tokens.start()
        self._boxes = await self.js.key_value(self.names.boxes_kv)
        self.membership.status = self._status()
        await self.membership.start(settle_s=min(1.0, self.lease.heartbeat))
        self._tasks = {name: asyncio.create_task(coro, name=f"cluster-{name}") for name, coro in (
            ("renew", self._renewals()), ("fence", self._watch_fence()), ("alive", self._alive()),
            ("take", self._take_and_share()),
        )}

    def check_timing(self) -> None:
        """Warn when a leader election of `election_s` could fence this box's cameras."""
        lease = self.lease
        margin = lease.fence - lease.heartbeat
        if margin < 2 * lease.election_s:
            log.warning(
                "cluster: lease margin %.1f s (fence_after_s %.1f - heartbeat_s %.1f) is less than twice the "
                "leader election time (lease.election_s %.1f s): a NATS node loss can move cameras; raise "
                "lease.ack_wait_s to %.0f s or more (docs/scale-out.md)",
                margin, lease.fence, lease.heartbeat, lease.election_s, _ack_wait_for(lease),
            )

    def _status(self) -> dict:
        return {"capacity": self.config.capacity, "holds": sorted(self.ownership.holdings)}

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    # -- renewals ----------------------------------------------------------------------------

    async def _renewals(self) -> None:
        while self._renewing:
            started = time.monotonic()
            await self._fence_expired()  # first thing after a freeze, too
            holdings = list(self.ownership.holdings.values())
            answered = await asyncio.gather(*(self._renew(holding) for holding in holdings))
            self.counters["renewals"] += len(holdings)
            self.counters["renewals_unanswered"] += answered.count(False)
            period = self.lease.heartbeat if all(answered) else min(_RETRY_S, self.lease.heartbeat)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def _renew(self, holding: Holding) -> bool:
        """One renewal of `holding`'s lease; True when the consumer's leader answered it."""
        sent = time.monotonic()
        try:
            await self.nc.request(holding.token.reply, b"+WPI", timeout=max(0.5, self.lease.heartbeat / 2))
        except Exception as error:  # no leader (no responders, timeout), reconnecting
            log.debug("cluster: renewing %s got no answer: %s", holding.camera, error)
            holding.renewals_missed += 1
            return False
        if self.ownership.holdings.get(holding.camera) is holding:
            unconfirmed = sent - holding.confirmed
            if holding.renewals_missed:
                log.warning("cluster: %s's lease was unconfirmed for %.1f s (fence after %.1f s): a NATS leader "
                            "election?", holding.camera, unconfirmed, self.lease.fence)
            self.counters["longest_unconfirmed_s"] = round(max(self.counters["longest_unconfirmed_s"], unconfirmed), 2)
            holding.confirmed, holding.renewals_missed = sent, 0
            holding.fence_at = self.fence_at(sent)
        return True

    async def _watch_fence(self) -> None:
        """Fence on time even while renewals wait for their answers."""
        while not self.stopping:
            await self._fence_expired()
            await self._pause(self.lease.heartbeat / 4)

    async def _fence_expired(self) -> None:
        now = time.monotonic()
        for holding in list(self.ownership.holdings.values()):
            if now >= holding.fence_at:
                self.counters["fenced"] += 1
                log.error(
                    "cluster: %s could not confirm %s's lease for %.1f s (fence_after_s %.1f): stopping it before "
                    "its lease can move", self.config.box, holding.camera, now - holding.confirmed, self.lease.fence,
                )
                await self.ownership.lose(holding.camera, "fenced: its lease could not be confirmed")

    async def _alive(self) -> None:
        """This box's heartbeat (membership), and its key in the boxes bucket for operators."""
        while not self.stopping:
            self.membership.status = self._status()
            try:
                await self.membership.beat()
            except Exception as error:
                log.debug("cluster: heartbeat not sent: %s", error)
            try:
                await asyncio.wait_for(self._boxes.put(self.config.box, _json(self.membership.status)),
                                       self.lease.heartbeat)
            except Exception as error:  # a KV leader election: nothing depends on it
                log.debug("cluster: boxes bucket not updated: %s", error)
            await self._pause(self.lease.heartbeat)

    # -- taking and sharing ------------------------------------------------------------------

    def share(self, live_boxes: Optional[int] = None) -> int:
        boxes = live_boxes if live_boxes is not None else self.membership.live_boxes()
        return min(self.config.capacity, math.ceil(len(self.cameras) / max(1, boxes)))

    async def _take_and_share(self) -> None:
        wait = self.lease.heartbeat
        while not self.stopping:
            if not self.valid():
                await self._pause(wait)
                continue
            want, held = self.share(), len(self.ownership.holdings)
            if held > want:
                newest = max(self.ownership.holdings.values(), key=lambda h: h.acquired_wall)
                log.info("cluster: %s holds %d, its fair share is %d: giving %s back", self.config.box, held, want,
                         newest.camera)
                await self.ownership.release(newest.camera, drain_s=self.lease.fence / 2)
                await self._hand_back_strays()
                await self._pause(wait)
            elif held == want:
                await self._hand_back_strays()
                await self._pause(wait)
            else:
                await self._fetch(wait)

    async def _fetch(self, wait: float) -> None:
        try:
            pulled = await self._tokens.pull(wait)
        except Exception as error:
            log.debug("cluster: asking for a camera token failed: %s", error)
            await self._pause(wait)
            return
        if pulled is not None:
            await self._take(*pulled)

    async def _hand_back_strays(self) -> None:
        """A token that came after its pull gave up, while this box's share is full: give it back
        at once (a nak: the consumer delivers it to a box that asks), not after its ack_wait.
        Checked every heartbeat, so it is always the token's current delivery."""
        for token, _ in self._tokens.strays():
            camera = self.names.camera_of(token.subject)
            if camera in self.ownership.holdings:
                continue  # an old delivery of a token this box holds
            log.info("cluster: %s's token came after %s stopped asking; giving it back", camera, self.config.box)
            try:
                await token.nak()
            except Exception as error:
                log.debug("cluster: giving %s's token back failed: %s", camera, error)

    async def _take(self, token: Any, asked: float) -> None:
        camera = self.names.camera_of(token.subject)
        if camera not in self.cameras:
            log.warning("cluster: token for %s, which this box's config does not have; leaving it", camera)
            await token.nak(delay=self.lease.ack_wait_s)
            return
        if not self.valid() or self.stopping or camera in self.ownership.holdings:
            # Not nak'ed: this may be an old delivery whose lease another box holds now, and a
            # nak would take it from that box. Unused, it comes back after ack_wait.
            return
        try:
            await self.ownership.acquire(camera, token, confirmed=asked, fence_at=self.fence_at(asked))
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
        """SIGTERM, in order: stop taking, give every camera back while the renewals keep the
        leases, stop renewing, say goodbye. No task is cancelled: one cancelled inside nats-py
        (a flush, a request) leaves a future its reader task later fails on."""
        self.stopping = True
        self._wake.set()
        looping = [self._tasks[name] for name in ("take", "alive", "fence") if name in self._tasks]
        if looping:  # each ends after its current step
            await asyncio.wait(looping, timeout=self.lease.heartbeat + 2.0)
        await asyncio.gather(*(self.ownership.release(camera, drain_s) for camera in list(self.ownership.holdings)))
        self._renewing = False
        if "renew" in self._tasks:
            await asyncio.wait([self._tasks["renew"]], timeout=self.lease.heartbeat + 1.0)
        await self._tokens.stop()
        try:
            await self.membership.leave()
            await asyncio.wait_for(self._boxes.delete(self.config.box), 1.0)
        except Exception as error:
            log.debug("cluster: leaving the boxes bucket failed: %s", error)


def _json(status: dict) -> bytes:
    return json.dumps(status).encode()


def _ack_wait_for(lease: Any) -> float:
    """The ack_wait_s whose default fence and heartbeat leave twice `election_s` of margin."""
    from ..config.cluster import FENCE_SHARE, HEARTBEATS_PER_LEASE

    return 2 * lease.election_s / (FENCE_SHARE - 1 / HEARTBEATS_PER_LEASE)
