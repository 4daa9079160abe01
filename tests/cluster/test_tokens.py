"""Lease tokens pulled one at a time (cluster/tokens.py), against a real nats-server: an empty
pull ends in its timeout and the server's 408 is not taken for a token; a token delivered to a
pull request nobody waits for any more is seen as a stray, and once given back (nak) the next box
that asks gets it at once, not after the consumer's ack_wait."""
from __future__ import annotations

import asyncio
import json
import time

from streamproc.cluster.tokens import TokenPuller

ACK_WAIT_S = 10.0


async def _site(urls) -> tuple:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

    first, second = await nats.connect(urls), await nats.connect(urls)
    js = first.jetstream()
    await js.add_stream(name="T_LEASES", subjects=["t.token.*"], retention=RetentionPolicy.WORK_QUEUE)
    await js.add_consumer("T_LEASES", ConsumerConfig(durable_name="lease", ack_policy=AckPolicy.EXPLICIT,
                                                     ack_wait=ACK_WAIT_S))
    pullers = TokenPuller(first, "T_LEASES", "lease"), TokenPuller(second, "T_LEASES", "lease")
    for puller in pullers:
        await puller.start()
    return js, pullers, (first, second)


def test_a_token_nobody_waits_for_is_a_stray_and_goes_to_the_next_asker_at_once(nats_url):
    async def scenario() -> None:
        js, (a, b), connections = await _site(nats_url)
        started = time.monotonic()
        assert await a.pull(0.3) is None  # nothing to take
        assert 0.25 <= time.monotonic() - started < 1.0
        await asyncio.sleep(0.3)  # the server's 408 for that request has come by now
        assert a.strays() == []

        # a pull request whose asker stopped waiting (as one that timed out just before the
        # server answered): the token lands in a's buffer with nobody pulling
        await a.nc.publish(a.next_subject, json.dumps({"batch": 1, "expires": int(5e9)}).encode(), reply=a.inbox)
        await a.nc.flush()
        await js.publish("t.token.cam01", b"")
        for _ in range(50):
            strays = a.strays()
            if strays:
                break
            await asyncio.sleep(0.05)
        assert [token.subject for token, _ in strays] == ["t.token.cam01"]
        given_back = time.monotonic()
        await strays[0][0].nak()

        pulled = await b.pull(2.0)
        assert pulled is not None, "the token given back did not reach the next box that asked"
        token, asked = pulled
        assert token.subject == "t.token.cam01" and token.metadata.num_delivered == 2
        assert time.monotonic() - given_back < 2.0 < ACK_WAIT_S  # at once, not after ack_wait
        assert given_back <= asked  # its lease counts from b's request
        for puller in (a, b):
            await puller.stop()
        for connection in connections:
            await connection.close()

    asyncio.run(scenario())
