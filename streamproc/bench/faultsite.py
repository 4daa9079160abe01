"""The site `streamproc bench cluster`'s fault runs work on (bench/faults.py): the box processes
(a real `streamproc run` in cluster mode with an instant stand-in model that sees a person while a
scene file exists), the site's config, and what the bench watches: the acquire markers, lease
renewals and heartbeats on core NATS, the events stream, and every caption and alert at MQTT.

`python -m streamproc.bench.faultsite box run CONFIG` is one box (Site.start_box starts them).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

SITE = "bench"
PREFIX = "benchsite"
_FENCED = re.compile(r"could not confirm \S+'s lease")  # leases.py's fence line, one per camera


# -- the boxes ------------------------------------------------------------------------------------


def box_main(argv: list[str]) -> int:
    """`run CONFIG`: one box with the instant stand-in model, which sees a person while the file
    $STREAMPROC_BENCH_SCENE exists."""
    import logging

    from ..backends.base import Result, register_backend
    from ..cluster.box import run_box
    from ..config import load_config
    from .cluster import _InstantHf

    scene = Path(os.environ["STREAMPROC_BENCH_SCENE"])

    class SceneHf(_InstantHf):
        def describe(self, inputs, params):
            text = "a person at the door" if scene.exists() else "an empty yard"
            return Result(text, int(inputs.total_tokens), int(inputs.visual_tokens), 4, self.model_id)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_backend("hf", SceneHf)
    return run_box(load_config(Path(argv[-1])))


def site_config(assets: Path, work: Path, urls: list[str], mqtt_port: int, *, cameras: int, capacity: int,
                ack_wait: Optional[float]) -> Path:
    from .cluster import site_assets

    model, clip = site_assets(assets)
    lease = {} if ack_wait is None else {"ack_wait_s": ack_wait}
    config = {
        "sources": [{"name": f"cam{i:02d}", "path": str(clip), "realtime": True} for i in range(cameras)],
        "sampling": {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": 2},
        "backend": {"type": "hf", "model": str(model), "device": "cpu", "dtype": "float32"},
        "rules": [{"name": "person", "keywords": ["person"], "raise_after": 2, "clear_after": 2}],
        "sinks": {"mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": PREFIX, "client_id": "benchsite",
                           "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 1.0, "keepalive_s": 10}},
        "service": {"stats_interval_s": 3600, "queue_size": 2, "shutdown_timeout_s": 5.0},
        "http": {"enabled": False},
        "cluster": {"servers": urls, "name": SITE, "box": "${STREAMPROC_BOX}", "capacity": capacity, "lease": lease,
                    "connect_timeout_s": 3.0},
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- what the bench watches ---------------------------------------------------------------------------


@dataclass
class Watch:
    """Core-NATS taps: acquire markers, lease renewals (the consumer's ack subjects), heartbeats."""

    markers: list[tuple[float, str, str, int]] = field(default_factory=list)  # (at, camera, box, epoch)
    renewals: dict[tuple[int, int], float] = field(default_factory=dict)  # (token seq, epoch) -> last at
    joined: dict[str, float] = field(default_factory=dict)  # box -> first heartbeat heard

    async def start(self, nc: Any) -> None:
        async def on_event(msg) -> None:
            headers = msg.headers or {}
            if headers.get("Sp-Kind") == "acquire":
                self.markers.append((time.time(), msg.subject.split(".", 2)[2], headers.get("Sp-Box"),
                                     int(headers.get("Sp-Epoch", 0))))

        async def on_ack(msg) -> None:  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<...>
            if msg.data == b"+WPI":
                parts = msg.subject.split(".")
                self.renewals[(int(parts[5]), int(parts[4]))] = time.time()

        async def on_alive(msg) -> None:
            self.joined.setdefault(msg.subject.rsplit(".", 1)[1], time.time())

        await nc.subscribe(f"{SITE}.events.*", cb=on_event)
        await nc.subscribe(f"$JS.ACK.{SITE}_LEASES.boxes.>", cb=on_ack)
        await nc.subscribe(f"{SITE}.alive.*", cb=on_alive)
        await nc.flush()

    def owners(self) -> dict[str, str]:
        return {camera: box for _, camera, box, _ in self.markers}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for box in self.owners().values():
            counts[box] += 1
        return dict(counts)


class Site:
    """The processes of one run and the bench's view of them."""

    def __init__(self, work: Path, nats: Any, nc: Any, config: Path, cameras: int):
        self.work, self.nats, self.nc, self.config = work, nats, nc, config
        self.js = nc.jetstream()
        self.quick_js = nc.jetstream(timeout=1.0)  # polls for leaders: a dead node's request fails fast
        self.cameras = [f"cam{i:02d}" for i in range(cameras)]
        self.scene = work / "scene"
        self.procs: dict[str, subprocess.Popen] = {}
        self.watch = Watch()
        self.token_seq: dict[str, int] = {}

    def start_box(self, name: str) -> None:
        log = (self.work / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "streamproc.bench.faultsite", "box", "run", str(self.config)],
            env={**os.environ, "STREAMPROC_BOX": name, "STREAMPROC_BENCH_SCENE": str(self.scene)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def fenced(self) -> int:
        return sum(self.fenced_in(name) for name in self.procs)

    def fenced_in(self, name: str) -> int:
        """Cameras box `name` fenced (the bridge's "could not confirm what the broker routed" is not one)."""
        return len(_FENCED.findall(self.log(name)))

    async def epochs(self) -> dict[str, int]:
        kv = await self.js.key_value(f"{SITE}_cameras")
        out = {}
        for camera in self.cameras:
            out[camera] = int(json.loads((await kv.get(camera)).value).get("epoch", 0))
        return out

    async def learn_tokens(self) -> None:
        for camera in self.cameras:
            self.token_seq[camera] = (await self.js.get_last_msg(f"{SITE}_LEASES", f"{SITE}.token.{camera}")).seq

    def fair(self, boxes: set[str]) -> bool:
        counts = self.watch.counts()
        share = math.ceil(len(self.cameras) / len(boxes))
        live = {box: n for box, n in counts.items() if n}
        return (len(self.watch.owners()) == len(self.cameras) and set(live) == boxes
                and sum(live.values()) == len(self.cameras) and max(live.values()) <= share)


async def wait_for(predicate, timeout_s: float, what: str) -> float:
    """Seconds until `predicate()` (sync or async) holds."""
    started = time.monotonic()
    while True:
        try:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
        except Exception:  # the cluster may be without a leader for a moment
            value = False
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)



# -- what reached the stream and MQTT ------------------------------------------------------------------


class MqttLog:
    """Every caption and alert the bridge delivered (a paho subscriber)."""

    def __init__(self, port: int):
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-faults-sub")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.endswith(("/captions", "/alerts")):
            with self._lock:
                self.events.append(json.loads(message.payload))

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def alerts(self, camera: str) -> list[str]:
        return [e["transition"] for e in self.snapshot() if e["type"] == "alert" and e["source"] == camera]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def stored_events(js: Any) -> list[dict]:
    """{seq, camera, box, epoch, event (None for a marker)} of the events stream, in order."""
    info = await js.stream_info(f"{SITE}_EVENTS")
    psub = await js.pull_subscribe(f"{SITE}.events.*", stream=f"{SITE}_EVENTS")
    out: list[dict] = []
    while len(out) < info.state.messages:
        try:
            batch = await psub.fetch(500, timeout=5)
        except Exception:
            break
        for msg in batch:
            headers = msg.headers or {}
            out.append({"seq": msg.metadata.sequence.stream, "camera": msg.subject.split(".", 2)[2],
                        "box": headers.get("Sp-Box"), "epoch": int(headers.get("Sp-Epoch", 0) or 0),
                        "event": json.loads(msg.data) if msg.data else None})
    await psub.unsubscribe()
    return sorted(out, key=lambda item: item["seq"])




if __name__ == "__main__":  # the box processes
    if len(sys.argv) > 1 and sys.argv[1] == "box":
        sys.exit(box_main(sys.argv[2:]))
