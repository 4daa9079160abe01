"""A whole test site: a 3-node JetStream cluster, mosquitto, an MQTT subscriber, N cameras
(files read at camera pace) and `streamproc run` boxes in their own processes.

    with Site(tmp_path, tiny_model_dir, video, cameras=12) as site:
        site.start_box("b0")
        site.wait(lambda: len(site.owners()) == 12, 30)

The site's `tap` records every message published on the events subjects (core NATS, so it also
sees the acquire markers with their arrival time); `stream_events()` reads what the events stream
stored, in order; `mqtt_events()` what the subscriber got.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from streamproc.config.cluster import ClusterConfig
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_subscriber import Subscriber
from streamproc.cluster.local import consumer_census, leaders
from tests.support.nats import NatsCluster
from tests.support.service import ServiceProcess, service_config, write_config

SITE = "site"
PREFIX = "sp"


class Tap:
    """A core-NATS subscription to `<site>.events.*` on its own loop thread."""

    def __init__(self, urls: list[str], cameras: list[str], partitions: int):
        self.cameras, self.partitions = cameras, partitions
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.nc = self.call(self._connect(urls))

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self, urls: list[str]):
        import nats

        nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

        async def on_message(msg) -> None:
            headers = msg.headers or {}
            with self._lock:
                self.records.append({
                    "at": time.time(), "camera": msg.subject.split(".", 2)[2], "kind": headers.get("Sp-Kind"),
                    "box": headers.get("Sp-Box"), "epoch": int(headers.get("Sp-Epoch", "0") or 0),
                })

        await nc.subscribe(f"{SITE}.events.*", cb=on_message)
        await nc.flush()
        return nc

    def markers(self, since: float = 0.0) -> list[dict]:
        with self._lock:
            return [r for r in self.records if r["kind"] == "acquire" and r["at"] >= since]

    def stream_leader_apart_from_leases(self, timeout_s: float = 30.0) -> str:
        """The events stream's leader, once it is not the node leading the lease consumer (the
        events stream's leader is asked to step down until then)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = self.leaders()
                if found["events_stream"] not in (None, found["lease_consumer"]):
                    return found["events_stream"]
                self.call(self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{SITE}_EVENTS", b"", timeout=5))
            except Exception:  # no leader for a moment
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the events stream stays on the lease consumer's leader")
            time.sleep(1.0)

    def consumers(self) -> dict:
        """{"total", "ephemeral", "by_stream"}: the consumers alive in the account."""
        return self.call(consumer_census(self.nc.jetstream()))

    def leaders(self) -> dict:
        """Server names leading the lease consumer, the events and the leases stream."""
        return self.call(leaders(self.nc.jetstream(), SITE))

    async def _records(self, cameras: list[str]) -> dict:
        kv = await self.nc.jetstream().key_value(f"{SITE}_cameras")
        out = {}
        for camera in cameras:
            record = json.loads((await kv.get(camera)).value)
            out[camera] = (record["box"], record["epoch"])
        return out

    def kv_owners(self, cameras: list[str]) -> dict[str, tuple[str, int]]:
        """camera -> (box, epoch) as the cameras KV stores them (no consumer: a get per key)."""
        return self.call(self._records(cameras))

    async def _stream_events(self) -> list[tuple[int, dict, dict]]:
        js = self.nc.jetstream()
        info = await js.stream_info(f"{SITE}_EVENTS")
        out = []
        psub = await js.pull_subscribe(f"{SITE}.events.*", stream=f"{SITE}_EVENTS")
        while len(out) < info.state.messages:
            try:
                batch = await psub.fetch(500, timeout=2)
            except Exception:
                break
            for msg in batch:
                out.append({
                    "seq": msg.metadata.sequence.stream, "camera": msg.subject.split(".", 2)[2],
                    "headers": dict(msg.headers or {}), "event": json.loads(msg.data) if msg.data else None,
                })
        await psub.unsubscribe()
        return sorted(out, key=lambda item: item["seq"])

    def stream_events(self) -> list[dict]:
        """{seq, camera, headers, event (None for a marker)} of everything stored, in order."""
        return self.call(self._stream_events(), 60)

    async def _info(self, what: str, name: str):
        js = self.nc.jetstream()
        if what == "stream":
            return await js.stream_info(name)
        return await js.consumer_info(f"{SITE}_EVENTS", name)

    def stream_leader(self) -> str:
        return self.call(self._info("stream", f"{SITE}_EVENTS")).cluster.leader

    def forwarded_up_to(self) -> dict[str, int]:
        """camera -> the stream sequence up to which the bridge forwarded it (its partition's ack floor)."""
        from streamproc.cluster.partitions import consumer_name, partition_of

        floors: dict[int, int] = {}
        out = {}
        for camera in self.cameras:
            partition = partition_of(camera, self.partitions)
            if partition not in floors:
                floors[partition] = self.call(self._info("consumer", consumer_name(partition))).ack_floor.stream_seq
            out[camera] = floors[partition]
        return out

    def close(self) -> None:
        try:
            self.call(self.nc.close(), 5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)


class Site:
    def __init__(self, tmp_path: Path, model_dir: Path, video: Path, *, cameras: int = 12, ack_wait_s: float = 3.0,
                 capacity: int = 6, rules: Optional[list] = None, homeassistant: bool = False):
        self.tmp_path = tmp_path
        self.model_dir = model_dir
        self.video = video
        self.cameras = [f"cam{i:02d}" for i in range(cameras)]
        self.ack_wait_s = ack_wait_s
        self.capacity = capacity
        self.rules = rules if rules is not None else [
            {"name": "person", "keywords": ["person"], "raise_after": 2, "clear_after": 2},
        ]
        self.homeassistant = homeassistant
        self.scene = tmp_path / "scene"  # exists = every camera shows a person
        self.boxes: dict[str, ServiceProcess] = {}
        self.nats: Optional[NatsCluster] = None
        self.broker: Optional[Mosquitto] = None
        self.subscriber: Optional[Subscriber] = None
        self.tap: Optional[Tap] = None

    def __enter__(self) -> "Site":
        self.nats = NatsCluster(self.tmp_path, 3, name=SITE).start()
        self.broker = Mosquitto(self.tmp_path).start()
        self.subscriber = Subscriber(self.broker.port, [f"{PREFIX}/#", "homeassistant/#"]).start()
        self.tap = Tap(self.nats.urls, self.cameras, ClusterConfig(servers=self.nats.urls).bridge_partitions)
        self.config_path = write_config(self.tmp_path, self.config(), "site.yaml")
        return self

    def __exit__(self, *exc: object) -> None:
        for box in self.boxes.values():
            box.close()
        for part in (self.tap, self.subscriber):
            if part is not None:
                try:
                    (part.close if isinstance(part, Tap) else part.stop)()
                except Exception:
                    pass
        if self.broker is not None:
            self.broker.kill()
        if self.nats is not None:
            self.nats.stop()

    def config(self) -> dict:
        sources = [{"name": name, "path": str(self.video), "realtime": True} for name in self.cameras]
        config = service_config(
            self.model_dir, sources,
            sinks={"mqtt": {
                "host": "127.0.0.1", "port": self.broker.port, "topic_prefix": PREFIX, "client_id": "site",
                "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 1.0, "keepalive_s": 10,
            }},
            service={"queue_size": 2, "shutdown_timeout_s": 5.0},
        )
        config["rules"] = self.rules
        if self.homeassistant:
            config["sinks"]["homeassistant"] = {"enabled": True}
        config["cluster"] = {
            "servers": self.nats.urls, "name": SITE, "box": "${STREAMPROC_BOX}", "capacity": self.capacity,
            "lease": {"ack_wait_s": self.ack_wait_s}, "connect_timeout_s": 3.0,
        }
        return config

    # -- boxes -------------------------------------------------------------------------------

    def start_box(self, name: str) -> ServiceProcess:
        env = {"STREAMPROC_BOX": name, "STREAMPROC_TEST_SCENE": str(self.scene)}
        box = ServiceProcess(["-m", "tests.cluster.fast_backend", "run", str(self.config_path)], self.tmp_path, name=name, env=env)
        self.boxes[name] = box
        return box

    def kill_box(self, name: str) -> float:
        os.kill(self.boxes[name].pid, signal.SIGKILL)
        return time.time()

    def signal_box(self, name: str, sig: int) -> None:
        os.kill(self.boxes[name].pid, sig)

    # -- what the site says ------------------------------------------------------------------

    def owners(self) -> dict[str, tuple[str, int]]:
        """camera -> (box, epoch) of its newest acquire marker."""
        owners: dict[str, tuple[str, int]] = {}
        for marker in self.tap.markers():
            owners[marker["camera"]] = (marker["box"], marker["epoch"])
        return owners

    def holdings(self, alive: Optional[set] = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for box, _ in self.owners().values():
            if alive is None or box in alive:
                counts[box] = counts.get(box, 0) + 1
        return counts

    def mqtt_events(self) -> list[dict]:
        out = []
        for message in self.subscriber.snapshot():
            if message.topic.endswith(("/captions", "/alerts")):
                out.append(message.json())
        return out

    def alerts(self, camera: str) -> list[str]:
        return [e["transition"] for e in self.mqtt_events() if e["type"] == "alert" and e["source"] == camera]

    def scene_on(self) -> None:
        self.scene.write_text("person")

    def scene_off(self) -> None:
        self.scene.unlink(missing_ok=True)

    @staticmethod
    def wait(predicate: Callable[[], Any], timeout_s: float, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"== {name}\n{box.log()[-4000:]}" for name, box in self.boxes.items())
