"""The webhook sink against a real HTTP receiver (its own process): events arrive in order, the
receiver killed (SIGKILL) and restarted mid-run loses nothing, events left when streamproc stops
go out on the next run, a refusing receiver (4xx) does not block later events, and configured
header secrets reach the receiver but never the logs."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamproc.config.sinks import SinksConfig
from streamproc.events import caption_event, status_event
from streamproc.rules.alerts import RuleEngine
from streamproc.config.rules import RuleConfig
from streamproc.sinks import create_sinks
from tests.support.mosquitto import free_port
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "Bearer s3cr3t-token-value"


class Receiver:
    def __init__(self, port: int, out: Path, *args: str):
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.webhook_receiver", str(port), str(out), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.process.stdout.readline().startswith("listening"), "receiver did not start"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(port: int, out: Path, *args: str) -> Receiver:
        started.append(Receiver(port, out, *args))
        return started[-1]

    yield make
    for receiver in started:
        if receiver.process.poll() is None:
            receiver.kill()


def make_sink(tmp_path: Path, port: int, **overrides):
    webhook = {
        "url": f"http://127.0.0.1:{port}/hook?token=querysecret",
        "events": ["caption", "alert"],
        "headers": {"Authorization": SECRET},
        "outbox": str(tmp_path / "webhook.sqlite"),
        "timeout_s": 2.0,
        "retry_min_delay_s": 0.05,
        "retry_max_delay_s": 0.3,
        **overrides,
    }
    (sink,) = create_sinks(SinksConfig.model_validate({"webhook": webhook}))
    sink.start()
    return sink


def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def first_ids(records) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        seen.setdefault(json.loads(record["body"])["id"], None)
    return list(seen)


def test_receiver_killed_and_restarted_mid_run_loses_nothing(tmp_path, receivers, caplog):
    caplog.set_level(logging.DEBUG)
    port, out = free_port(), tmp_path / "received.jsonl"
    receiver = receivers(port, out)
    sink = make_sink(tmp_path, port)
    events = [caption_event(make_segment("cam1", i), make_result(f"caption {i}")) for i in range(40)]
    try:
        for event in events[:10]:
            sink.handle(event)
        assert wait_for(lambda: len(first_ids(receiver.records())) == 10)
        receiver.kill()  # mid-run: the next events find nobody
        for event in events[10:30]:
            sink.handle(event)
        sink.handle(status_event("cam1", "online"))  # not configured: never sent
        assert wait_for(lambda: sink.counters["failures"] >= 2)
        assert sink.outbox.count() == 20
        receiver = receivers(port, out)  # back on the same port
        for event in events[30:]:
            sink.handle(event)
        assert sink.flush(20)
    finally:
        sink.stop(5)
    records = receiver.records()
    assert first_ids(records) == [e.id for e in events]  # all of them, in order
    request = records[-1]
    assert request["path"] == "/hook?token=querysecret"
    assert request["headers"]["Authorization"] == SECRET
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Idempotency-Key"] == events[-1].id
    assert json.loads(request["body"]) == events[-1].to_dict()
    logs = caplog.text
    assert "unreachable" in logs  # the outage was reported ...
    assert "s3cr3t" not in logs and "querysecret" not in logs  # ... without the secrets


def test_events_left_at_stop_are_sent_by_the_next_run(tmp_path, receivers):
    port, out = free_port(), tmp_path / "received.jsonl"
    engine = RuleEngine([RuleConfig(name="car", keywords=["car"])])
    segment = make_segment("cam1", 0)
    alerts = engine.evaluate("cam1", segment, "a car parks", {})
    sink = make_sink(tmp_path, port, events=["alert"])
    for event in alerts:
        sink.handle(event)
    sink.handle(caption_event(segment, make_result("a car parks")))  # captions not configured here
    sink.stop(0.5)  # nobody listens: the alert stays in the outbox
    receiver = receivers(port, out)
    sink = make_sink(tmp_path, port, events=["alert"])
    try:
        assert sink.flush(10)
    finally:
        sink.stop(2)
    (record,) = receiver.records()
    body = json.loads(record["body"])
    assert body["id"] == alerts[0].id and body["title"] == "Car on cam1" and body["summary"]


def test_a_refused_event_is_dropped_and_counted_not_retried_forever(tmp_path, receivers):
    port, out = free_port(), tmp_path / "received.jsonl"
    receiver = receivers(port, out, "--status", "400")
    sink = make_sink(tmp_path, port)
    try:
        for i in range(3):
            sink.handle(caption_event(make_segment("cam1", i), make_result(f"caption {i}")))
        assert sink.flush(10)
        assert sink.counters["rejected"] == 3 and sink.counters["delivered"] == 0
    finally:
        sink.stop(2)
    assert len(receiver.records()) == 3  # each tried once
