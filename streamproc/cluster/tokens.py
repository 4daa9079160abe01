"""Pulling camera tokens from the lease consumer, one at a time, on this box's own inbox.

Why not nats-py's `fetch`: a pull request for several tokens that returns with fewer stays open on
the server, and a token the server delivers just after the client stopped waiting lands in the
subscription's buffer, mixed with the server's status replies (408 for every request that
expired). A box whose share is full no longer fetches, so such a token sat there unused until its
ack_wait ran out, and its camera moved one lease late. Here every request asks for one token,
statuses are dropped as they arrive, and a token nobody is waiting for is a *stray* the lease
manager sees at once (`strays`) and gives back.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any, Optional

# The server ends a pull request this much before the client stops waiting: a token that answers it
# has reached the box before the next request is sent, so `asked` is not late. (A box starved or
# frozen with a token unread may send the next request first; a lease it then thinks it holds longer
# than it does is caught by the epoch fences of ownership.py, as for any frozen box.)
_EXPIRY_MARGIN_S = 0.02


class TokenPuller:
    def __init__(self, nc: Any, stream: str, consumer: str):
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.asked = time.monotonic()  # when the last pull request was sent: a token's lease starts after it
        self.inbox = ""  # the pull requests' reply subject: tokens and the server's statuses come here
        self._sub: Any = None
        self._tokens: deque = deque()  # (token, asked); a deque and an event: no token is lost to a timeout
        self._arrival = asyncio.Event()

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self.inbox, cb=self._arrived)

    async def _arrived(self, msg: Any) -> None:
        if msg.headers and msg.headers.get("Status"):  # 408 expired, 409 leadership change, ...
            return
        self._tokens.append((msg, self.asked))
        self._arrival.set()

    async def pull(self, timeout: float) -> Optional[tuple[Any, float]]:
        """One token and the time its pull request was sent, or None after `timeout`."""
        if not self._tokens:
            self._arrival.clear()
            self.asked = time.monotonic()
            request = {"batch": 1, "expires": int(max(0.001, timeout - _EXPIRY_MARGIN_S) * 1e9)}
            await self.nc.publish(self.next_subject, json.dumps(request).encode(), reply=self.inbox)
            try:
                await asyncio.wait_for(self._arrival.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self._tokens.popleft() if self._tokens else None

    def strays(self) -> list[tuple[Any, float]]:
        """Tokens delivered after their pull gave up waiting."""
        found = list(self._tokens)
        self._tokens.clear()
        return found

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection is already closing
                pass
