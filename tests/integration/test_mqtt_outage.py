"""Broker outages: events keep coming while mosquitto is SIGKILLed and restarted; every event is
delivered, in order per source, none lost. And a full outbox drops by its policy, counted.

The test's subscriber must not lose messages either while the broker is down or before it has
reconnected, or the test would blame the publisher for the subscriber's gap. So this broker runs
with persistence (saved every second) and the subscriber keeps a persistent session: after the
restart, what the publisher sends before the subscriber is back is queued for it by the broker.
The publisher itself relies on nothing of that: its own session is clean.
"""
from __future__ import annotations

import threading
import time

import pytest

from streamproc.events import caption_event
from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason
from tests.support.mqtt_subscriber import Subscriber, first_occurrences
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

SOURCES = ("cam1", "cam2")


class Producer(threading.Thread):
    """A caption every `interval_s` per source, like a live pipeline; records ids and handle times."""

    def __init__(self, sink, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.sink, self.interval_s = sink, interval_s
        self.ids: dict[str, list[str]] = {s: [] for s in SOURCES}
        self.durations: list[float] = []
        self.stop_event = threading.Event()
        self.error = None

    def run(self) -> None:
        index = 0
        try:
            while not self.stop_event.is_set():
                for source in SOURCES:
                    event = caption_event(make_segment(source, index), make_result(f"{source} #{index}"))
                    start = time.perf_counter()
                    self.sink.handle(event)
                    self.durations.append(time.perf_counter() - start)
                    self.ids[source].append(event.id)
                index += 1
                self.stop_event.wait(self.interval_s)
        except Exception as exc:  # surfaced by the test
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


@pytest.mark.parametrize(
    "outage_s",
    [pytest.param(3, id="outage-3s"), pytest.param(30, id="outage-30s", marks=pytest.mark.slow)],
)
def test_broker_outage_loses_nothing_and_keeps_order(make_broker, start_sink, tmp_path, outage_s):
    server = make_broker(persistence=True)
    sub = Subscriber(server.port, ["sp/+/captions"], client_id=f"outage-sub-{outage_s}", persistent=True).start()
    try:
        time.sleep(1.5)  # the broker autosaves every second: the subscriber's session is on disk now
        sink = start_sink(server, sources=SOURCES, mqtt={"reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 2.0})
        assert sink.wait_connected(10)
        producer = Producer(sink)
        producer.start()
        assert sub.wait_for(lambda: len(sub.snapshot()) >= 20, 10)

        server.kill()
        down_at = time.monotonic()
        time.sleep(min(2.0, outage_s))
        assert not sink.connected
        pending_during = sink.outbox.count()
        time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
        assert sink.outbox.count() >= pending_during >= 10  # events kept coming and were kept
        connects_before = sub.connects
        server.start()

        sub.wait_reconnected(connects_before)
        time.sleep(3.0)  # events keep coming after the restart too
        producer.stop()
        assert producer.error is None
        assert sink.flush(30), f"outbox still holds {sink.outbox.count()} messages"

        produced = sum(len(v) for v in producer.ids.values())
        assert produced >= 2 * (outage_s + 5) * 5  # ~10 events/s per source over the run

        def delivered() -> dict[str, list[str]]:
            by_source: dict[str, list[str]] = {s: [] for s in SOURCES}
            for message in sub.snapshot():
                data = message.json()
                by_source[data["source"]].append(data["id"])
            return {s: first_occurrences(ids) for s, ids in by_source.items()}

        sub.wait_for(lambda: all(len(delivered()[s]) >= len(producer.ids[s]) for s in SOURCES), 30)
        got = delivered()
        for source in SOURCES:
            missing = set(producer.ids[source]) - set(got[source])
            assert not missing, f"{source}: {len(missing)} of {len(producer.ids[source])} events lost"
            assert got[source] == producer.ids[source], f"{source}: out of order"
        # the pipeline never waited for the broker
        assert max(producer.durations) < 0.5  # never the outage's 30 s; generous for a loaded machine
        stats = sink.stats()
        assert stats["disconnects"] >= 1 and stats["connects"] >= 2
        assert stats["outbox"]["pending"] == 0 and stats["outbox"]["dropped"] == {"oldest": 0, "newest": 0, "disk_full": 0}
    finally:
        sub.stop()


@pytest.mark.parametrize("policy, kept", [("drop_oldest", range(15, 25)), ("drop_newest", range(0, 10))])
def test_full_outbox_drops_by_policy_counts_and_reports(tmp_path, start_sink, subscribe, policy, kept):
    if mosquitto_unavailable_reason():
        pytest.skip(mosquitto_unavailable_reason())
    server = Mosquitto(tmp_path)  # a port is chosen, the broker not started yet: it is "down"
    try:
        sink = start_sink(server, sources=["cam1"], outbox={"max_events": 10, "when_full": policy})
        ids = []
        for i in range(25):
            event = caption_event(make_segment("cam1", i), make_result())
            sink.handle(event)
            ids.append(event.id)
        stats = sink.stats()
        assert stats["outbox"]["pending"] == 10
        assert stats["outbox"]["dropped"] == ({"oldest": 15, "newest": 0, "disk_full": 0} if policy == "drop_oldest" else {"oldest": 0, "newest": 15, "disk_full": 0})
        import json

        assert [json.loads(m.payload)["id"] for m in sink.outbox.peek()] == [ids[i] for i in kept]
        server.start()
        sub = subscribe(server.port, ["sp/cam1/captions"])
        assert sink.flush(20)
        sub.wait_for(lambda: len(sub.snapshot()) >= 10, 5)
        # the subscriber may have come after the first few: what it got is in order and from the kept set
        got = [m.json()["id"] for m in sub.snapshot()]
        assert set(got) <= {ids[i] for i in kept}
        assert got == sorted(got)
    finally:
        server.kill()
