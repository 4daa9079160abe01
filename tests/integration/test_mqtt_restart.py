"""Across a process restart: a publisher is SIGKILLed with events pending in its outbox; the next
process sends them first, in order, then its own. And the last will: a killed process reads offline."""
from __future__ import annotations

import sqlite3

import pytest

from tests.integration.conftest import mqtt_section
from tests.support.mqtt_subscriber import first_occurrences

pytestmark = pytest.mark.integration


def pending_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def test_events_pending_at_kill_9_are_delivered_by_the_next_process(broker, subscribe, child_process, tmp_path):
    sub = subscribe(broker.port, ["sp/cam1/captions"])
    config = mqtt_section(broker, tmp_path, outbox={"synchronous": "full"})
    first = child_process(
        config, "--first", "0", "--count", "40", "--interval", "0.05", "--wait-connected", "10", "--mode", "hold",
        name="first",
    )
    assert first.expect("connected") == "connected"
    assert sub.wait_for(lambda: len(sub.snapshot()) >= 5, 10)
    broker.kill()  # the rest of the 40 pile up in the outbox
    first.expect("holding", timeout_s=30)
    first.kill()  # SIGKILL with events pending
    pending = pending_rows(tmp_path / "outbox.sqlite")
    assert pending >= 10, "the test needs events pending at the kill"

    connects = sub.connects
    broker.start()
    sub.wait_reconnected(connects)
    second = child_process(config, "--first", "40", "--count", "5", "--mode", "flush", name="second")
    assert second.expect("flushed", timeout_s=60) == "flushed True"
    second.expect("closed")
    assert second.wait() == 0

    expected = [f"cam1:{i * 2000:010d}" for i in range(45)]
    sub.wait_for(lambda: len(first_occurrences([m.json()["id"] for m in sub.snapshot()])) >= 45, 10)
    ids = first_occurrences([m.json()["id"] for m in sub.snapshot()])
    assert ids == expected
    assert pending_rows(tmp_path / "outbox.sqlite") == 0
    assert "pending from before" in second.stderr()


def test_killing_the_process_makes_available_read_offline(broker, subscribe, child_process, tmp_path):
    sub = subscribe(broker.port, ["sp/available"])
    child = child_process(mqtt_section(broker, tmp_path), "--wait-connected", "10", "--mode", "hold")
    assert child.expect("connected") == "connected"
    child.expect("holding")
    assert sub.wait_for(lambda: [m.text for m in sub.snapshot()][-1:] == ["online"], 5)
    child.kill()  # SIGKILL: no goodbye, the broker sends the will
    assert sub.wait_for(lambda: sub.snapshot()[-1].text == "offline", 10), [m.text for m in sub.snapshot()]
    late = subscribe(broker.port, ["sp/available"])  # retained: whoever comes later sees it too
    assert late.wait_for(lambda: len(late.snapshot()) == 1, 5)
    (message,) = late.snapshot()
    assert message.text == "offline" and message.retain
