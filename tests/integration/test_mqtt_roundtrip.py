"""Round trip through a real mosquitto: what a subscriber receives equals what was published,
every JSON payload is schema-valid, topics/QoS/retain are as documented."""
from __future__ import annotations

import io
import time

import av
import pytest

from streamproc.config.rules import RuleConfig
from streamproc.rules.alerts import RuleEngine
from streamproc.events import status_event, caption_event, stats_event, validate
from tests.support.mqtt_subscriber import first_occurrences
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

YES = '```json\n{"answer": "yes", "reason": "someone is on the fence"}\n```'
NO = '{"answer": "no", "reason": "the fence is clear"}'
RULES = [
    RuleConfig(name="fence", question="Is a person climbing the fence?", raise_after=1, clear_after=1),
    RuleConfig(name="car", keywords=["car"], sources=["cam2"], clear_after=1),
]


def produce(sink, engine, sources=("cam1", "cam2"), segments=6):
    """Captions for every source and segment, plus the alerts the rules raise; returns the events."""
    published = []
    for i in range(segments):
        for source in sources:
            segment = make_segment(source, i, size=(64, 96))
            text = f"{source} segment {i}: " + ("a red car passes" if i % 3 == 0 else "an empty street")
            caption = caption_event(segment, make_result(text))
            sink.handle(caption)
            published.append(caption)
            for alert in engine.evaluate(source, segment, text, {"fence": YES if i in (1, 2) else NO}):
                sink.handle(alert)
                published.append(alert)
    return published


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_round_trip_equals_what_was_published(broker, subscribe, start_sink, protocol):
    sub = subscribe(broker.port, ["sp/#"])
    sink = start_sink(broker, RULES, mqtt={"protocol": protocol, "snapshots": True})
    assert sink.wait_connected(10)
    engine = RuleEngine(RULES)
    published = produce(sink, engine)
    sink.handle(status_event("cam1", "online", "opened rtsp://viewer:pw123@cam/stream"))
    sink.handle(stats_event({"segments": 12}))
    assert sink.flush(10)

    expected_json = len(published) + 2  # + status + stats
    # (captions/last repeats the newest caption, retained, for Home Assistant: not part of the stream)
    events = lambda: [m for m in sub.snapshot() if m.payload.startswith(b"{") and not m.topic.endswith("/last")]  # noqa: E731
    sub.wait_for(lambda: len(events()) >= expected_json, 10)
    received = {}
    for message in events():
        data = message.json()
        validate(data)
        received.setdefault(data["id"], (message.topic, data))
    for event in published:
        topic, data = received[event.id]
        assert data == event.to_dict()
        kind = "captions" if event.type == "caption" else "alerts"
        assert topic == f"sp/{event.source}/{kind}"
    # captions of each source arrive in order
    for source in ("cam1", "cam2"):
        ids = first_occurrences([m.json()["id"] for m in sub.on(f"sp/{source}/captions")])
        assert ids == [e.id for e in published if e.source == source and e.type == "caption"]

    # status (redacted), stats with the sink's own counters
    (status,) = [m.json() for m in sub.on("sp/cam1/status")]
    assert status["state"] == "online" and "pw123" not in status["detail"]
    (stats,) = [m.json() for m in sub.on("sp/stats")]
    assert stats["stats"]["segments"] == 12 and stats["stats"]["mqtt"]["connected"] is True

    # rule states: OFF at start, then the transitions; the last value is the engine's state
    for source, rule in (("cam1", "fence"), ("cam2", "fence"), ("cam2", "car")):
        states = [m.text for m in sub.on(f"sp/{source}/rules/{rule}/state")]
        assert states[0] == "OFF"
        assert states[-1] == ("ON" if engine.state(rule, source).on else "OFF")
        assert "ON" in states
    assert not sub.on("sp/cam1/rules/car/state")  # car applies to cam2 only

    # snapshot: a JPEG of the middle frame, at the frame's size
    sub.wait_for(lambda: len(sub.on("sp/+/snapshot")) >= 1, 5)
    jpeg = sub.on("sp/+/snapshot")[-1].payload
    with av.open(io.BytesIO(jpeg), format="image2pipe") as container:
        frame = next(container.decode(video=0))
    assert (frame.height, frame.width) == (64, 96)

    # retained topics as documented, seen by a subscriber that comes later
    late = subscribe(broker.port, ["sp/#"])
    late.wait_for(lambda: len(late.snapshot()) >= 1 + 1 + 3 + 2, 5)
    retained = {m.topic: m for m in late.snapshot() if m.retain}
    assert retained["sp/available"].text == "online"
    assert retained["sp/cam1/status"].json()["state"] == "online"
    assert "sp/cam1/rules/fence/state" in retained and "sp/cam2/snapshot" in retained
    assert not any(t.endswith("/captions") or t.endswith("/alerts") or t == "sp/stats" for t in retained)

    sink.stop(5)
    sub.wait_for(lambda: sub.on("sp/available")[-1].text == "offline", 5)
    assert sub.on("sp/available")[-1].text == "offline"  # a clean close says so itself


def test_qos_is_configurable_per_topic(broker, subscribe, start_sink):
    sub = subscribe(broker.port, ["sp/#"])
    sink = start_sink(broker, mqtt={"qos": {"captions": 0, "status": 2}})
    assert sink.wait_connected(10)
    sink.handle(caption_event(make_segment("cam1", 0), make_result()))
    sink.handle(status_event("cam1", "offline", ""))
    assert sink.flush(10)
    sub.wait_for(lambda: sub.on("sp/cam1/captions") and sub.on("sp/cam1/status"), 5)
    assert sub.on("sp/cam1/captions")[0].qos == 0
    assert sub.on("sp/cam1/status")[0].qos == 1  # the subscription's QoS 1 caps delivery


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_burst_at_qos_2_arrives_complete_and_in_order(broker, subscribe, start_sink, protocol):
    """More messages than the broker takes unacknowledged: the window keeps within its limit."""
    sub = subscribe(broker.port, ["sp/cam1/captions"])
    sink = start_sink(broker, mqtt={"protocol": protocol, "qos": {"captions": 2}})
    assert sink.wait_connected(10)
    events = [caption_event(make_segment("cam1", i), make_result(f"#{i}")) for i in range(300)]
    for event in events:
        sink.handle(event)
    assert sink.flush(20)
    sub.wait_for(lambda: len(sub.snapshot()) >= 300, 10)
    assert first_occurrences([m.json()["id"] for m in sub.snapshot()]) == [e.id for e in events]


def test_handle_returns_at_once_while_the_broker_is_down(broker, subscribe, start_sink):
    sink = start_sink(broker)
    assert sink.wait_connected(10)
    broker.kill()
    time.sleep(0.3)
    durations = []
    for i in range(50):
        start = time.perf_counter()
        sink.handle(caption_event(make_segment("cam1", i), make_result()))
        durations.append(time.perf_counter() - start)
    assert max(durations) < 0.25  # an SQLite insert; generous for a loaded CI machine
    assert not sink.connected and sink.outbox.count() >= 50
    assert "lost" in (sink.last_error or "") or "cannot connect" in (sink.last_error or "")
    assert sink.flush(0.5) is False  # nothing can be delivered now, and flush says so in time
