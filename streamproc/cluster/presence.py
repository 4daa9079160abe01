"""Who is alive, and what each says about itself: every member publishes a small report on
`<subject>.<box>` (core NATS) every second and whenever it changes; a member not heard from for
3 s is gone, one that says goodbye (an empty report) is gone at once.

Core NATS, not a KV bucket or a stream: nothing here waits for a JetStream leader, so an
election does not empty the view. Used by the bridge (how many share the partitions) and by the
site's MQTT side (which box speaks for the site, and the boxes' states and stats).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

PERIOD_S = 1.0
GONE_AFTER_S = 3 * PERIOD_S
_GOODBYE = b""


class Presence:
    def __init__(self, nc: Any, subject: str, box: str, report: Optional[Callable[[], dict]] = None):
        self.nc, self.subject, self.box = nc, subject, box
        self.report = report or dict
        self.seen: dict[str, tuple[float, dict]] = {}
        self.listening_since = time.monotonic()
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        async def on_message(message: Any) -> None:
            box = message.subject.rsplit(".", 1)[1]
            if message.data == _GOODBYE:
                self.seen.pop(box, None)
                return
            try:
                self.seen[box] = (time.monotonic(), json.loads(message.data))
            except ValueError:
                log.warning("presence: an unreadable report from %s", box)

        await self.nc.subscribe(f"{self.subject}.*", cb=on_message)
        self.listening_since = time.monotonic()
        self._task = asyncio.ensure_future(self._announce())
        await self.nc.flush()

    async def _announce(self) -> None:
        while True:
            await self.announce()
            await asyncio.sleep(PERIOD_S)

    async def announce(self) -> None:
        """Say this member's report now (it changed)."""
        try:
            await self.nc.publish(f"{self.subject}.{self.box}", json.dumps(self.report()).encode())
        except Exception as error:  # reconnecting: the others wait GONE_AFTER_S before they count us out
            log.debug("presence: %s", error)

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            await self.nc.publish(f"{self.subject}.{self.box}", _GOODBYE)
            await self.nc.flush(timeout=2)
        except Exception as error:
            log.debug("presence: leaving: %s", error)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def reports(self) -> dict[str, dict]:
        """Each live member's latest report, this one's included (as it is now)."""
        now = time.monotonic()
        alive = {box: report for box, (at, report) in list(self.seen.items()) if now - at < GONE_AFTER_S}
        alive[self.box] = self.report()
        return alive

    def alive(self) -> int:
        return len(self.reports())

    def settled(self) -> bool:
        """Listened long enough to have heard every live member at least once."""
        return time.monotonic() - self.listening_since >= GONE_AFTER_S
