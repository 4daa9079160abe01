"""SIGTERM to a running `streamproc run` (the real command line in a subprocess, a live RTSP
camera, the tiny model, a real mosquitto): exit 0 with every event delivered and the service
marked offline; a second signal during a slow stop exits at once with 130."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.integration.conftest import mqtt_section  # noqa: E402
from tests.support.mqtt_subscriber import Subscriber, first_occurrences  # noqa: E402
from tests.support.service import camera, service_config, wait_until, write_config  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(240)]


def outbox_rows(path: Path, topic_like: str = "%") -> int:
    """Rows waiting in the outbox, read beside the running service (WAL allows readers)."""
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute("SELECT COUNT(*) FROM outbox WHERE topic LIKE ?", (topic_like,)).fetchone()[0]


def start_service(tmp_path, broker, cam, service_process, model_dir):
    """`streamproc run` on one camera; events to MQTT and to a JSONL caption file (the record of
    every caption the service made)."""
    files = tmp_path / "files"
    sinks = mqtt_section(broker, tmp_path, files={"dir": str(files), "formats": ["jsonl"]})
    config = service_config(model_dir, [camera("cam", cam.url)], sinks=sinks, service={"shutdown_timeout_s": 60})
    path = write_config(tmp_path, config)
    process = service_process(["-m", "streamproc", "run", str(path)])
    return process, Path(sinks["outbox"]["path"]), files / "cam.jsonl"


def test_sigterm_finishes_delivers_everything_and_goes_offline(
    tmp_path, broker, subscribe, make_rtsp_server, service_process, tiny_model_dir
):
    cam = make_rtsp_server()
    sub = subscribe(broker.port, ["sp/#"])
    service, outbox, jsonl = start_service(tmp_path, broker, cam, service_process, tiny_model_dir)
    assert wait_until(lambda: len(sub.on("sp/cam/captions")) >= 3, 90), service.log()[-3000:]
    assert sub.on("sp/available")[-1].text == "online"

    # The broker stops answering: captions pile up in the outbox, unacknowledged.
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: outbox_rows(outbox, "%/captions") >= 1, 30), service.log()[-3000:]
        service.send(signal.SIGTERM)
        service.wait_log(r"SIGTERM: stopping", 10)
        # The stop waits for the outbox rather than exiting with events undelivered.
        time.sleep(2.0)
        assert service.running, service.log()[-3000:]
        assert outbox_rows(outbox) >= 1
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert service.wait(60) == 0, service.log()[-3000:]

    log = service.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert outbox.exists() and outbox_rows(outbox) == 0  # drained

    # Every caption the service made (its caption file) reached the subscriber, in order.
    made = [e["id"] for e in map(json.loads, jsonl.read_text().splitlines()) if e["type"] == "caption"]
    assert len(made) >= 3
    assert wait_until(lambda: len(set(m.json()["id"] for m in sub.on("sp/cam/captions"))) >= len(made), 15)
    received = first_occurrences([m.json()["id"] for m in sub.on("sp/cam/captions")])
    assert received == made

    # Offline, retained: a client that connects now is told so.
    with Subscriber(broker.port, ["sp/available", "sp/cam/status"]) as late:
        assert late.wait_for(lambda: late.on("sp/available") and late.on("sp/cam/status"), 10)
        available, status = late.on("sp/available")[-1], late.on("sp/cam/status")[-1]
    assert available.retain and available.text == "offline"
    assert status.retain and status.json()["state"] == "offline"


def test_second_signal_during_a_slow_stop_exits_at_once(
    tmp_path, broker, subscribe, make_rtsp_server, service_process, tiny_model_dir
):
    cam = make_rtsp_server()
    sub = subscribe(broker.port, ["sp/#"])
    service, outbox, _ = start_service(tmp_path, broker, cam, service_process, tiny_model_dir)
    assert wait_until(lambda: len(sub.on("sp/cam/captions")) >= 1, 90), service.log()[-3000:]

    broker.kill()  # nothing can be delivered now: the stop waits up to shutdown_timeout_s (60 s)
    service.send(signal.SIGTERM)
    service.wait_log(r"SIGTERM: stopping", 10)
    time.sleep(1.0)
    assert service.running, service.log()[-3000:]
    sent = time.monotonic()
    service.send(signal.SIGINT)
    assert service.wait(10) == 130, service.log()[-3000:]
    assert time.monotonic() - sent < 5.0
    assert "second SIGINT: exiting now" in service.log()
    # What could not be delivered stays in the outbox for the next run (at least the offline status).
    assert outbox_rows(outbox) >= 1
