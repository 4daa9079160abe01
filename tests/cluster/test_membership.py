"""Who is alive, against a real nats-server: boxes heard within the window count, a box that
hears nobody (its own link down) keeps its last stable view instead of counting itself alone,
a leaving box is dropped at once, and a late box knows the site right after its hello."""
from __future__ import annotations

import asyncio
import time

from streamproc.cluster.membership import Membership

WINDOW_S, HEARTBEAT_S = 1.0, 0.2


async def _box(urls, name: str) -> Membership:
    import nats

    nc = await nats.connect(urls)
    member = Membership(nc, "site", name, window_s=WINDOW_S, heartbeat_s=HEARTBEAT_S)
    await member.start(settle_s=0.3)
    return member


async def _beat_for(seconds: float, *members: Membership) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for member in members:
            await member.beat()
        await asyncio.sleep(HEARTBEAT_S)


def test_live_boxes_hold_through_a_silent_link_and_follow_joins_and_leaves(nats_url):
    async def scenario() -> None:
        a, b = await _box(nats_url, "a"), await _box(nats_url, "b")
        await _beat_for(0.5, a, b)
        assert (a.live_boxes(), b.live_boxes()) == (2, 2)
        c = await _box(nats_url, "c")  # its hello is answered at once, no heartbeat period needed
        assert c.live_boxes() == 3

        # c is cut off (its connection closes): it hears nobody, itself included, for longer than
        # the window, and still counts the 3 boxes of its last stable view, not itself alone
        await c.nc.close()
        await _beat_for(WINDOW_S + 2 * HEARTBEAT_S + 1.2, a, b)
        assert c.live_boxes() == 3
        assert (a.live_boxes(), b.live_boxes()) == (2, 2)  # the others heard itself and not c

        await b.leave()
        await asyncio.sleep(0.2)
        assert a.live_boxes() == 1  # at once, not after the window
        await a.nc.close()
        await b.nc.close()

    asyncio.run(scenario())
