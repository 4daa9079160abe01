"""Which boxes are alive: per-box heartbeats on core NATS subjects, a last-seen window.

Each box publishes `<site>.alive.<box>` every heartbeat and listens to `<site>.alive.*`. Core
NATS has no leader to elect, so a JetStream leader election (3.6-9.2 s measured here) does not
empty the view, and nothing here creates a consumer (a KV listing leaves an ephemeral consumer
behind for 5 minutes, once per call).

- A box counts as alive while it was heard within `window_s` (fence_after_s: longer than an
  election or a reconnect to another node, shorter than a lease, so a dead box's share has gone
  to the others before its tokens come back).
- A box leaving (SIGTERM) says so, and the others drop it at once.
- The view is stable only while this box hears its own heartbeats: a box whose link is down
  hears nobody, and must not conclude it is alone. Without its own echo it keeps the last
  stable count, so it never takes more than the share that view gave it.
- A joining box says hello; every box answers with a heartbeat at once, so a late box knows the
  site within a round trip instead of a heartbeat period.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, nc: Any, site: str, box: str, *, window_s: float, heartbeat_s: float):
        self.nc = nc
        self.site = site
        self.box = box
        self.window_s = window_s
        self.heartbeat_s = heartbeat_s
        self.last_seen: dict[str, float] = {}
        self.stable_count = 1
        self.status: dict[str, Any] = {}  # what this box says about itself (capacity, holds)
        self._subscription: Any = None

    def subject(self, box: str) -> str:
        return f"{self.site}.alive.{box}"

    async def start(self, settle_s: float) -> None:
        """Listen, say hello, and give the others `settle_s` to answer."""
        self._subscription = await self.nc.subscribe(f"{self.site}.alive.*", cb=self._on_message)
        await self.beat(hello=True)
        await self.nc.flush(timeout=max(1.0, settle_s))
        await asyncio.sleep(settle_s)

    async def beat(self, *, hello: bool = False, leaving: bool = False) -> None:
        body = {**self.status, "box": self.box}
        if hello:
            body["hello"] = True
        if leaving:
            body["leaving"] = True
        await self.nc.publish(self.subject(self.box), json.dumps(body).encode())

    async def _on_message(self, msg: Any) -> None:
        try:
            body = json.loads(msg.data)
            box = str(body["box"])
        except (ValueError, KeyError, TypeError):
            return
        if body.get("leaving"):
            if box != self.box and self.last_seen.pop(box, None) is not None:
                log.info("cluster: %s left", box)
            return
        if box not in self.last_seen and box != self.box:
            log.info("cluster: %s sees %s", self.box, box)
        self.last_seen[box] = time.monotonic()
        if body.get("hello") and box != self.box:
            try:
                await self.beat()
            except Exception as error:  # it hears the next periodic one
                log.debug("cluster: answering %s's hello failed: %s", box, error)

    def hears_itself(self) -> bool:
        """This box's own heartbeats come back: its link to the cluster works."""
        own = self.last_seen.get(self.box)
        return own is not None and time.monotonic() - own < 2 * self.heartbeat_s + 1.0

    def live_boxes(self) -> int:
        """Boxes alive by the last stable view (this box included)."""
        if self.hears_itself():
            now = time.monotonic()
            alive = {box for box, seen in self.last_seen.items() if now - seen < self.window_s}
            self.stable_count = len(alive | {self.box})
        return self.stable_count

    async def leave(self) -> None:
        await self.beat(leaving=True)
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
