"""Fixtures for tests against a real mosquitto that each test starts on its own free port."""
from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason
from tests.support.mqtt_subscriber import Subscriber
from tests.support.prerequisites import unavailable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path) -> Iterator[Mosquitto]:
    """A plain anonymous broker on a free port, killed after the test."""
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    with Mosquitto(tmp_path) as server:
        yield server


@pytest.fixture
def make_broker(tmp_path):
    """make_broker(**Mosquitto kwargs) -> a started broker; all are killed after the test."""
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    started: list[Mosquitto] = []

    def make(**kwargs) -> Mosquitto:
        server = Mosquitto(tmp_path, name=f"broker{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def subscribe():
    """subscribe(port, topics, **Subscriber kwargs) -> a connected subscriber, stopped after the test."""
    subscribers: list[Subscriber] = []

    def make(port: int, topics=("#",), **kwargs) -> Subscriber:
        sub = Subscriber(port, topics, **kwargs).start()
        subscribers.append(sub)
        return sub

    yield make
    for sub in subscribers:
        with contextlib.suppress(Exception):
            sub.stop()


def mqtt_section(server: Mosquitto, tmp_path: Path, **overrides) -> dict:
    """A `sinks:` config dict for a broker: fast reconnects, an outbox in tmp_path."""
    mqtt = {
        "host": server.host,
        "port": server.port,
        "client_id": f"streamproc-test-{tmp_path.name}"[:60],
        "topic_prefix": "sp",
        "reconnect_min_delay_s": 0.2,
        "reconnect_max_delay_s": 1.0,
        "keepalive_s": 10,
        "connect_timeout_s": 5,
    }
    outbox = {"path": str(tmp_path / "outbox.sqlite"), "synchronous": "normal"}
    mqtt.update(overrides.pop("mqtt", {}))
    outbox.update(overrides.pop("outbox", {}))
    return {"mqtt": mqtt, "outbox": outbox, **overrides}


@pytest.fixture
def start_sink(tmp_path):
    """start_sink(server, rules=(), sources=("cam1", "cam2"), **section overrides) -> a started MqttSink."""
    from streamproc.config.sinks import SinksConfig
    from streamproc.sinks import create_sinks

    sinks = []

    def make(server: Mosquitto, rules=(), sources=("cam1", "cam2"), **overrides):
        config = SinksConfig.model_validate(mqtt_section(server, tmp_path, **overrides))
        (sink,) = create_sinks(config, list(rules), list(sources))
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop(2.0)


class Child:
    """tests/support/mqtt_child.py in a subprocess, followed line by line."""

    def __init__(self, config: dict, tmp_path: Path, *args: str, name: str = "child"):
        self.config_path = tmp_path / f"{name}.json"
        self.config_path.write_text(json.dumps(config))
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.mqtt_child", str(self.config_path), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        # A thread reads stdout: select() on a pipe behind Python's buffered reader would miss
        # lines already buffered, and a test would wait for a line it has in fact received.
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout_s: float = 30.0) -> str:
        """Wait for a stdout line starting with `prefix` (the child prints one line per step)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"child never printed {prefix!r}; got {self.lines[-5:]}; stderr: {self.stderr()[-2000:]}")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout_s)

    def close(self) -> None:
        self.kill()
        self._reader.join(5)
        if self.process.stdout:
            self.process.stdout.close()
        self._stderr.close()


@pytest.fixture
def child_process(tmp_path):
    """child_process(config, *args, name=...) -> Child; killed after the test."""
    children: list[Child] = []

    def make(config: dict, *args: str, name: str = "child") -> Child:
        child = Child(config, tmp_path, *args, name=name)
        children.append(child)
        return child

    yield make
    for child in children:
        child.close()


# -- the running service (tests/integration/test_service_*.py) ------------------------------------


@pytest.fixture
def make_rtsp_server():
    """make_rtsp_server(**RtspServer kwargs) -> a started RTSP test server; all stopped after the
    test. Skips when the GStreamer packages are missing (fails in strict runs)."""
    from tests.support.rtsp import RtspServer, rtsp_unavailable_reason

    reason = rtsp_unavailable_reason()
    if reason:
        unavailable(reason)
    servers: list[RtspServer] = []

    def make(**kwargs) -> RtspServer:
        server = RtspServer(**{"width": 320, "height": 240, "fps": 15, **kwargs})
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()


@pytest.fixture
def service_process(tmp_path):
    """service_process(args, name=..., env=...) -> ServiceProcess (`python ARGS` in its own folder
    under tmp_path); killed with its process group after the test."""
    from tests.support.service import ServiceProcess

    processes: list[ServiceProcess] = []

    def make(args, *, name: str = "service", env=None) -> ServiceProcess:
        process = ServiceProcess(args, tmp_path, name=name, env=env)
        processes.append(process)
        return process

    yield make
    for process in processes:
        process.close()
