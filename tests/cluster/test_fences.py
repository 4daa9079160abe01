"""The ownership fences against a real nats-server, step by step and without timing: a box that
does not know it lost a camera (frozen, cut off) cannot store anything more for it, the new owner
gets the rule state and the old owner's half-committed segment, and every event is stored once."""
from __future__ import annotations

import json

import pytest

from streamproc.cluster.connection import LoopThread, connect
from streamproc.cluster.layout import ensure_layout
from streamproc.cluster.ownership import LostCamera, Ownership
from streamproc.config.cluster import ClusterConfig
from streamproc.config.rules import RuleConfig
from streamproc.events import caption_event
from streamproc.rules.alerts import RuleEngine
from tests.support.segments import make_result, make_segment

RULES = [RuleConfig(name="person", keywords=["person"], raise_after=1, clear_after=1)]


class Token:
    """The lease token a lease manager would have fetched (its delivery count is the epoch)."""

    class Metadata:
        def __init__(self, delivered: int):
            self.num_delivered = delivered

    def __init__(self, delivered: int):
        self.metadata = self.Metadata(delivered)

    async def in_progress(self) -> None:
        pass

    async def nak(self, delay=None) -> None:
        pass


class Host:
    """What the ownership drives on a box (the App): its cameras, their rule states, their lanes."""

    def __init__(self):
        self.rules = RuleEngine(RULES, live_sources={"cam1"})
        self.started: list[str] = []

    def start_source(self, name: str) -> None:
        self.started.append(name)

    def stop_source(self, name: str, timeout_s: float = 5.0) -> None:
        pass


@pytest.fixture
def site(nats_url):
    config = ClusterConfig(servers=nats_url, name="t", box="a", replicas=1, lease={"ack_wait_s": 4})
    loop = LoopThread()
    nc = loop.call(connect(config, "test"), 10)
    js = nc.jetstream()
    names = loop.call(ensure_layout(js, config, ["cam1"]), 10)
    owners = []
    for box in ("a", "b"):
        owner = Ownership(loop, js, names, box, lambda: True)
        owner.host = Host()
        loop.call(owner.open(), 10)
        owners.append(owner)
    yield loop, js, names, owners
    loop.call(nc.close(), 5)
    loop.stop()


def _segment_events(owner: Ownership, index: int, text: str):
    segment = make_segment("cam1", index)
    events = [caption_event(segment, make_result(text), live=True)]
    return segment, events + owner.host.rules.evaluate("cam1", segment, text)


def _stored(loop, js, names) -> list[tuple[str, str, int, str]]:
    async def read():
        info = await js.stream_info(names.events)
        out = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(names.events, seq)
            data = json.loads(msg.data) if msg.data else {}
            out.append((msg.headers["Sp-Kind"], msg.headers["Sp-Box"], int(msg.headers["Sp-Epoch"]), data.get("id", "")))
        return out

    return loop.call(read(), 10)


def test_a_stale_owner_stores_nothing_and_its_half_commit_is_finished_by_the_next(site):
    loop, js, names, (a, b) = site
    loop.call(a.acquire("cam1", Token(1)), 10)
    seg0, events0 = _segment_events(a, 0, "a person at the door")  # raises the alert on a
    committed = a.commit(seg0, events0)
    assert [e.data["cluster"] for e in committed] == [{"box": "a", "epoch": 1}] * 2
    assert [e.type for e in committed] == ["caption", "alert"]

    # a writes segment 1's KV record, then freezes before publishing its events ...
    seg1, events1 = _segment_events(a, 1, "a person at the door")
    holding = a.holdings["cam1"]
    record = {"box": "a", "epoch": 1, "rules": a.host.rules.snapshot("cam1"), "clock": seg1.end,
              "wall": seg1.end_wall, "pending": [e.to_json() for e in events1]}
    loop.call(a._write_record(holding, record), 10)
    # ... b takes the camera over (the lease ran out), with the rule state and a's last segment
    loop.call(b.acquire("cam1", Token(2)), 10)
    assert b.host.started == ["cam1"]
    record = json.loads(loop.call(b.kv.get("cam1"), 10).value)
    assert (record["box"], record["epoch"], record["pending"]) == ("b", 2, [])  # sent once, not again later
    assert b.host.rules.state("person", "cam1").on  # raised on a, ON on b
    # a wakes up: its publish fails (the acquire marker), its next commit fails (the KV record)
    with pytest.raises(LostCamera):
        loop.call(a._publish(holding, events1[0]), 10)
    seg2, events2 = _segment_events(a, 2, "a person at the door")
    assert a.commit(seg2, events2) == []
    assert "cam1" not in a.holdings

    # b goes on: the person leaves, the alert raised on a is cleared on b, not raised again
    seg3, events3 = _segment_events(b, 3, "an empty yard")
    assert [e.data.get("transition") for e in b.commit(seg3, events3)] == [None, "cleared"]

    stored = _stored(loop, js, names)
    ids = [event_id for kind, _, _, event_id in stored if kind == "event"]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert [(kind, box, epoch) for kind, box, epoch, _ in stored] == [
        ("acquire", "a", 1), ("event", "a", 1), ("event", "a", 1),  # segment 0 (caption, raised)
        ("acquire", "b", 2), ("event", "b", 2),  # a's half-committed segment 1, sent by b
        ("event", "b", 2), ("event", "b", 2),  # segment 3 (caption, cleared)
    ]
    assert ids[2] == events1[0].id and ids[1].endswith(":person:raised") and ids[-1].endswith(":person:cleared")


def test_an_old_token_delivery_is_ignored(site):
    """A token delivery that sat in a client's buffer while its lease ran out (epoch 1) reaches a
    box after the camera's current owner took it (epoch 2): nothing is claimed or published."""
    from streamproc.cluster.ownership import StaleToken

    loop, js, names, (a, b) = site
    loop.call(b.acquire("cam1", Token(2)), 10)
    before = _stored(loop, js, names)
    with pytest.raises(StaleToken):
        loop.call(a.acquire("cam1", Token(1)), 10)
    assert _stored(loop, js, names) == before
    seg, events = _segment_events(b, 0, "an empty yard")
    assert len(b.commit(seg, events)) == 1  # b still owns it
