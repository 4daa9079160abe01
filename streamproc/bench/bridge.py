"""`streamproc bench bridge`: the cluster's events stream to MQTT, with bridge workers in their
own processes (as boxes run them), on a local 3-node JetStream cluster and a local mosquitto.

`events` captions of `cameras` cameras (each camera's first preceded by an acquire marker, as a
box stores them) are stored in the events stream first. Then `boxes` processes, each running the
bridge a box runs (cluster/bridge.py: its own NATS connection, one MQTT connection), are told to
go at once; the time is from then until a subscriber (QoS 1) has every caption. The bench checks
what arrived: per camera in stream order, none lost, none twice. It reports the CPU seconds
each process used per event (the bridges, the three nats-servers, mosquitto, the subscriber).
With `--profile`, every bridge process runs under py-spy (if installed) and the hottest
functions are listed.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..cluster.presence import PERIOD_S

SITE = "bridgebench"
PREFIX = "bb"


def _caption(camera: str, index: int) -> bytes:
    """A caption event as a box stores it (the size and shape of a real one)."""
    start = 1764025200.0 + 2 * index
    return json.dumps({
        "v": 1, "type": "caption", "id": f"{camera}@{int(start * 1000):013d}", "source": camera, "ts": start + 2.5,
        "segment": {"index": index, "start": 2.0 * index, "end": 2.0 * index + 2, "start_wall": start,
                    "end_wall": start + 2, "frames": 2, "fps": 1.0, "gap_before": False, "last": False},
        "text": "A man in a grey jacket climbs over the garden fence and walks towards the house.",
        "model": "Qwen2.5-VL-3B-Instruct", "tokens": {"prompt": 420, "visual": 384, "generated": 12},
        "finish_reason": "stop",
        "timings": {"preprocess_s": 0.01, "vision_s": 0.2, "prefill_s": 0.1, "decode_s": 0.3, "total_s": 0.61},
        "prompt": "Describe what happens in this video in one or two sentences.",
        "cluster": {"box": "b0", "epoch": 1},
    }, separators=(",", ":")).encode()


async def store_captions(js: Any, names: Any, cameras: list[str], first: int, count: int) -> None:
    """Captions number first..first+count-1, round-robin over `cameras`, stored as a box stores them."""
    from ..cluster.layout import H_BOX, H_EPOCH, H_KIND

    if first == 0:  # each camera's epoch opens with an acquire marker
        for camera in cameras:
            await js.publish(names.event_subject(camera), b"", headers={H_KIND: "acquire", H_BOX: "b0", H_EPOCH: "1"})
    for start in range(first, first + count, 250):
        await asyncio.gather(*(js.publish(
            names.event_subject(cameras[i % len(cameras)]), _caption(cameras[i % len(cameras)], i // len(cameras)),
            headers={"Nats-Msg-Id": f"e{i}", H_KIND: "event", H_BOX: "b0", H_EPOCH: "1"},
        ) for i in range(start, min(first + count, start + 250))))


async def _fill(urls: list[str], cluster: Any, cameras: list[str], events: int) -> float:
    """Create the site's layout and store the events; seconds the storing took."""
    import nats

    from ..cluster.layout import ensure_layout

    nc = await nats.connect(urls)
    names = await ensure_layout(nc.jetstream(), cluster, cameras)
    started = time.monotonic()
    await store_captions(nc.jetstream(), names, cameras, 0, events)
    seconds = time.monotonic() - started
    await nc.close()
    return seconds


class Subscriber:
    """Every caption the broker routes, in arrival order (paho, QoS 1)."""

    def __init__(self, port: int, expected: int):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.expected, self.got, self.done = expected, [], threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/+/captions", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        self.got.append(message.payload)
        if len(self.got) >= self.expected:
            self.done.set()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def check(received: list[bytes], cameras: list[str], events: int) -> dict[str, Any]:
    """Lost, duplicated and out-of-order captions among `received` (in arrival order)."""
    ids = Counter()
    last_index: dict[str, int] = defaultdict(lambda: -1)
    out_of_order = 0
    for payload in received:
        event = json.loads(payload)
        ids[event["id"]] += 1
        index = event["segment"]["index"]
        if ids[event["id"]] == 1:  # order among first arrivals
            out_of_order += index < last_index[event["source"]]
            last_index[event["source"]] = max(index, last_index[event["source"]])
    expected = {json.loads(_caption(cameras[i % len(cameras)], i // len(cameras)))["id"] for i in range(events)}
    return {"lost": len(expected - set(ids)), "duplicated": sum(n - 1 for n in ids.values()),
            "out_of_order": out_of_order, "unexpected": len(set(ids) - expected)}


def start_mosquitto(work: Path) -> tuple[subprocess.Popen, int]:
    """A mosquitto on a free loopback port, with its defaults (Nagle on, as most brokers run)."""
    import shutil

    from ..cluster.local import free_port

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = work / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "max_queued_messages 100000"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start (apt-get install mosquitto)")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_worker(spec: Path, box: str, work: Path, profile: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamproc.bench.bridge", "worker", str(spec), box]
    spy = Path(sys.executable).with_name("py-spy")
    if profile and spy.exists():
        command = [str(spy), "record", "--nonblocking", "--threads", "--format", "raw", "--rate", "250",
                   "-o", str(work / f"{box}.profile"), "--", *command]
    log = (work / f"{box}.log").open("ab")
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)


def _wait_ready(proc: subprocess.Popen) -> bool:
    for _ in range(20):  # py-spy prints a line of its own first
        line = proc.stdout.readline()
        if not line:
            return False
        if line.strip() == "ready":
            return True
    return False


def _worker_pid(proc: subprocess.Popen) -> int:
    """The bridge process (under py-spy, its child)."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children and not Path(sys.executable).samefile(f"/proc/{proc.pid}/exe") else proc.pid


def measure(*, events: int, boxes: int, cameras: int, partitions: int, batch: int, work: Path,
            profile: bool = False) -> dict[str, Any]:
    from ..cluster.local import NatsCluster
    from ..config.cluster import ClusterConfig

    names = [f"cam{i:02d}" for i in range(cameras)]
    with NatsCluster(work, 3, name="bridge") as nats_cluster:
        broker, port = start_mosquitto(work)
        procs: list[subprocess.Popen] = []
        try:
            cluster = ClusterConfig(servers=nats_cluster.urls, name=SITE, box="bench", bridge_partitions=partitions,
                                    bridge_batch=batch)
            fill_s = asyncio.run(_fill(nats_cluster.urls, cluster, names, events))
            spec = work / "spec.json"
            spec.write_text(json.dumps({"cluster": cluster.model_dump(mode="json"), "mqtt_port": port}))
            subscriber = Subscriber(port, events)
            procs = [_start_worker(spec, f"b{i}", work, profile) for i in range(boxes)]
            for proc in procs:
                if not _wait_ready(proc):
                    raise RuntimeError(f"a bridge worker did not start (see {work}/b*.log)")
            time.sleep(1.5 * PERIOD_S)  # the bridges have heard each other: each pulls its share from the start
            others = {"nats-server": [p.pid for p in nats_cluster.processes if p is not None],
                      "mosquitto": [broker.pid], "bench (subscriber)": [os.getpid()]}
            pids = {"bridges": [_worker_pid(p) for p in procs], **others}
            cpu_before = {k: sum(map(_cpu_seconds, v)) for k, v in pids.items()}
            started = time.monotonic()
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            complete = subscriber.done.wait(max(60.0, events / 20))
            seconds = time.monotonic() - started
            cpu = {k: round(sum(map(_cpu_seconds, v)) - cpu_before[k], 2) for k, v in pids.items()}
            time.sleep(0.5)  # anything sent twice arrives within this
            subscriber.stop()
            counters = _stop_workers(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            broker.kill()
            broker.wait()
    result = {"events": events, "boxes": boxes, "cameras": cameras, "partitions": partitions, "batch": batch,
              "seconds": round(seconds, 3), "events_per_s": round(len(set(subscriber.got)) / seconds, 1),
              "complete": complete, "fill_s": round(fill_s, 2), "cpu_s": cpu,
              "cpu_ms_per_event": round(1000 * sum(cpu.values()) / events, 3), "workers": counters,
              **check(subscriber.got, names, events)}
    if profile:
        result["profile"] = hottest([work / f"b{i}.profile" for i in range(boxes)])
    return result


def _stop_workers(procs: list[subprocess.Popen]) -> list[dict]:
    counters = []
    for proc in procs:
        try:
            out, _ = proc.communicate("stop\n", timeout=30)
            counters.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            proc.wait()
            counters.append({})
    return counters


_GROUPS = (  # (group, what a frame's file path contains), first match wins
    ("start-up (imports)", "importlib"), ("start-up (imports)", "dataclasses.py"), ("start-up (imports)", "typing.py"),
    ("paho (MQTT)", "paho/"), ("nats-py", "nats/"), ("json", "json/"), ("asyncio", "asyncio/"),
    ("threads (hand-offs, executor)", "threading.py"), ("threads (hand-offs, executor)", "concurrent/"),
    ("sockets, select", "selectors.py"), ("sockets, select", "socket.py"), ("hashlib", "hashlib"),
    ("streamproc (bridge)", "streamproc/"),
)


def hottest(profiles: list[Path]) -> list[tuple[str, float]]:
    """From py-spy's raw (collapsed stack) files: where the bridge processes' CPU went, by library
    (the frame on top of each sample), in % of the samples after start-up; blocking waits
    (a thread parked in select or on a condition) are left out."""
    groups: Counter = Counter()
    for path in profiles:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            top = stack.split(";")[-1]
            if top.startswith(("select ", "wait ", "poll ", "epoll")) or "Condition.wait" in top or "EpollSelector.select" in top:
                continue
            if "importlib" in stack:  # anything under an import is start-up
                groups["start-up (imports)"] += int(count)
                continue
            groups[next((g for g, marker in _GROUPS if marker in top), "other (interpreter, stdlib)")] += int(count)
    total = sum(n for g, n in groups.items() if not g.startswith("start-up"))
    return [(g, round(100 * n / max(1, total), 1)) for g, n in groups.most_common() if not g.startswith("start-up")]


def worker_main(spec_path: str, box: str) -> int:
    """One bridge process: connects, says `ready`, forwards after `go`, prints its counters after `stop`."""
    import logging

    from ..cluster.bridge import MqttBridge, MqttLink
    from ..config.cluster import ClusterConfig
    from ..config.sinks import MqttConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    cluster = ClusterConfig(**{**spec["cluster"], "box": box})
    link = MqttLink(MqttConfig(port=spec["mqtt_port"], topic_prefix=PREFIX, client_id="bench"), box)
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    bridge = MqttBridge(cluster, link)
    bridge.connect()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            bridge.start()
        elif line.strip() == "stop":
            break
    bridge.stop()
    link.stop()
    print(json.dumps(bridge.stats()), flush=True)
    return 0


def run_command(args: Any) -> str:
    with tempfile.TemporaryDirectory(prefix="streamproc-bench-bridge-") as tmp:
        rows = []
        for boxes in args.boxes:
            work = Path(tmp) / f"boxes{boxes}"
            work.mkdir()
            rows.append(measure(events=args.events, boxes=boxes, cameras=args.cameras, partitions=args.partitions,
                                batch=args.batch, work=work, profile=args.profile))
        return table(rows)


def table(rows: list[dict]) -> str:
    lines = [
        "Bridge: stored captions to MQTT (QoS 1), bridge workers in their own processes; the time is from "
        "`go` until a subscriber has them all",
        "",
        "| bridge processes | partitions | batch | events | events/s | seconds | lost | duplicated | out of order | "
        "CPU ms/event (all processes) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['boxes']} | {r['partitions']} | {r['batch']} | {r['events']}{'' if r['complete'] else ' (incomplete)'} | "
                     f"{r['events_per_s']} | {r['seconds']} | {r['lost']} | {r['duplicated']} | {r['out_of_order']} | "
                     f"{r['cpu_ms_per_event']} |")
    lines += ["", "CPU seconds by process group:", ""]
    for r in rows:
        lines.append(f"- {r['boxes']} bridge process(es): " + ", ".join(f"{k} {v}" for k, v in r["cpu_s"].items())
                     + f"; batches per worker {[w.get('batches') for w in r['workers']]}")
    for r in rows:
        if r.get("profile"):
            lines += ["", f"Where the {r['boxes']} bridge process(es) spent their CPU (py-spy, top frame by library, "
                      "% of samples after start-up, blocking waits left out):", ""]
            lines += [f"- {share}% {name}" for name, share in r["profile"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the bridge worker processes
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m streamproc.bench.bridge worker SPEC BOX")
