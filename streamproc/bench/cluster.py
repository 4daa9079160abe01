"""The older measures of `streamproc bench cluster` (--kills, --loads, --bridge-events; the fault
runs are bench/faults.py): camera failover times, and the lease heartbeats a cluster holds.

Both run on a local 3-node JetStream cluster (streamproc/cluster/local.py, loopback ports):

- failover: `boxes` real `streamproc run` processes in cluster mode share `cameras` files read at
  camera pace, with a stand-in model that answers at once. A box is killed (SIGKILL) `kills`
  times; each time the bench records how long until the last of its cameras has a new owner (the
  new owner's acquire marker on the events subject), then starts the box again and waits for a
  fair share.
- heartbeat load: one process holds N camera tokens of a replicated work-queue stream and renews
  each with in_progress once per `heartbeat_s` for `hold_s`, for several N. It counts leases lost
  (a token another consumer instance could fetch while it was being renewed) and how long one
  heartbeat round takes. The largest N with no lost lease and rounds shorter than the heartbeat
  is the number of cameras the cluster (and one Python box) holds on this machine.
"""
from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from ..backends.base import BackendCapabilities
from ..backends.hf import HfBackend

# -- the stand-in model of the boxes ----------------------------------------------------------


class _InstantHf:
    """Registered as `hf` in the bench's box processes: real inputs, an instant answer."""

    name = "bench"
    seq_length = None
    geometry = staticmethod(HfBackend.geometry)  # the hf backend's, from the checkpoint's files
    input_builder = staticmethod(HfBackend.input_builder)
    capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=True,
                                       sampling=True, streaming=False)

    def __init__(self, config: Any, **kwargs: Any):
        from ..qwen import InputBuilder

        self.builder = InputBuilder.from_pretrained(Path(config.model))
        self.model_id = "bench-instant"

    @property
    def inputs(self):
        return self.builder

    def describe(self, inputs, params):
        from ..backends.base import Result

        return Result("an empty yard", int(inputs.total_tokens), int(inputs.visual_tokens), 4, self.model_id)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def box_main(argv: list[str]) -> int:
    """`run CONFIG`: one cluster box, as `streamproc run CONFIG` runs it, with the stand-in model."""
    import logging

    from ..backends.base import register_backend
    from ..cluster.box import run_box
    from ..config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_backend("hf", _InstantHf)
    return run_box(load_config(Path(argv[-1])))


# -- failover --------------------------------------------------------------------------------


class _Markers:
    """Arrival time of every acquire marker (core NATS subscription to the events subjects)."""

    def __init__(self, nc: Any, site: str):
        self.nc, self.site, self.seen = nc, site, []

    async def start(self) -> None:
        async def on_message(msg) -> None:
            headers = msg.headers or {}
            if headers.get("Sp-Kind") == "acquire":
                self.seen.append((time.time(), msg.subject.split(".", 2)[2], headers.get("Sp-Box")))

        await self.nc.subscribe(f"{self.site}.events.*", cb=on_message)

    def owners(self) -> dict[str, str]:
        return {camera: box for _, camera, box in self.seen}


def site_assets(folder: Path) -> tuple[Path, Path]:
    """The tiny model and the 15-minute camera clip a bench site runs on, made once in `folder`."""
    from ..qwen.tiny import make_tiny_model
    from ..samples import write_video

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "tiny-model"
    if not (model / "tokenizer.json").exists():
        make_tiny_model(model, seed=0, overwrite=True)
    clip = folder / "camera.mp4"
    if not clip.exists():
        write_video(clip, duration_s=900, fps=2, width=112, height=112)
    return model, clip


def _site_config(work: Path, urls: list[str], cameras: int, ack_wait: float) -> Path:
    model, clip = site_assets(work)
    config = {
        "sources": [{"name": f"cam{i:02d}", "path": str(clip), "realtime": True} for i in range(cameras)],
        "sampling": {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": 2},
        "backend": {"type": "hf", "model": str(model), "device": "cpu", "dtype": "float32"},
        "service": {"stats_interval_s": 3600},
        "http": {"enabled": False},
        "cluster": {"servers": urls, "name": "bench", "box": "${STREAMPROC_BOX}", "capacity": cameras,
                    "lease": {"ack_wait_s": ack_wait}},
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _start_box(config: Path, name: str, work: Path) -> subprocess.Popen:
    log = (work / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streamproc.bench.cluster", "box", "run", str(config)],
        env={**os.environ, "STREAMPROC_BOX": name}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True,
    )


async def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def failover(urls: list[str], work: Path, *, cameras: int, boxes: int, kills: int, ack_wait: float) -> dict:
    import nats

    config = _site_config(work, urls, cameras, ack_wait)
    names = [f"b{i}" for i in range(boxes)]
    nc = await nats.connect(urls)
    markers = _Markers(nc, "bench")
    await markers.start()
    procs = {name: _start_box(config, name, work) for name in names}
    share = math.ceil(cameras / boxes)

    def fair() -> bool:
        owners = markers.owners()
        counts = [list(owners.values()).count(n) for n in names]
        return len(owners) == cameras and max(counts) <= share and min(counts) > 0

    times: list[float] = []
    try:
        if not await _wait(fair, 120):
            raise RuntimeError(f"the boxes did not share the cameras (see {work}/b*.log)")
        for round_ in range(kills):
            victim = names[round_ % boxes]
            held = [c for c, b in markers.owners().items() if b == victim]
            os.killpg(procs[victim].pid, signal.SIGKILL)
            killed = time.time()
            procs[victim].wait()
            if not await _wait(lambda: all(markers.owners()[c] != victim for c in held), ack_wait * 4):
                raise RuntimeError(f"{victim}'s cameras were not taken over")
            times.append(max(t for t, c, b in markers.seen if t >= killed and c in held) - killed)
            procs[victim] = _start_box(config, victim, work)
            await _wait(fair, 60)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        await nc.close()
    return {"ack_wait_s": ack_wait, "kills": len(times), "min_s": min(times), "median_s": statistics.median(times),
            "max_s": max(times), "all_s": [round(t, 2) for t in times]}


# -- heartbeat load ----------------------------------------------------------------------------


async def heartbeat_load(urls: list[str], tokens: int, *, heartbeat_s: float, hold_s: float, ack_wait: float) -> dict:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    nc = await nats.connect(urls)
    js = nc.jetstream()
    stream = f"LOAD{tokens}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"load{tokens}.*"], retention=RetentionPolicy.WORK_QUEUE,
                                     num_replicas=3))
    await js.add_consumer(stream, ConsumerConfig(durable_name="boxes", ack_policy=AckPolicy.EXPLICIT,
                                                 ack_wait=ack_wait, max_deliver=-1, max_ack_pending=-1))
    for start in range(0, tokens, 500):
        await asyncio.gather(*(js.publish(f"load{tokens}.c{i}", b"") for i in range(start, min(tokens, start + 500))))
    holder = await js.pull_subscribe_bind(durable="boxes", stream=stream)
    held, renewed = [], time.monotonic()
    while len(held) < tokens:  # taking them takes a while: keep the ones held alive meanwhile
        held += await holder.fetch(min(500, tokens - len(held)), timeout=10)
        if time.monotonic() - renewed >= heartbeat_s:
            for msg in held:
                await msg.in_progress()
            renewed = time.monotonic()
    thief = await js.pull_subscribe_bind(durable="boxes", stream=stream)  # another box, looking for free tokens
    rounds, lost, started = [], 0, time.monotonic()
    while time.monotonic() - started < hold_s:
        begun = time.monotonic()
        for msg in held:
            await msg.in_progress()
        await nc.flush(timeout=ack_wait)
        rounds.append(time.monotonic() - begun)
        try:
            lost += len(await thief.fetch(100, timeout=0.05))
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(max(0.0, heartbeat_s - (time.monotonic() - begun)))
    await js.delete_stream(stream)
    await nc.close()
    return {"cameras": tokens, "heartbeats_per_s": round(tokens / heartbeat_s), "lost_leases": lost,
            "round_median_s": round(statistics.median(rounds), 3), "round_max_s": round(max(rounds), 3),
            "holds": lost == 0 and max(rounds) < heartbeat_s}


# -- bridge throughput -----------------------------------------------------------------------


def bridge_throughput(urls: list[str], work: Path, *, events: int, bridges: int) -> dict:
    """`events` captions forwarded to a local mosquitto by `bridges` bridge processes: the
    measure of `streamproc bench bridge` (bench/bridge.py, on a 3-node cluster of its own)."""
    from .bridge import measure

    work.mkdir(parents=True, exist_ok=True)
    row = measure(events=events, boxes=bridges, cameras=12, partitions=8, batch=64, work=work)
    return {"events": events, "bridges": bridges, "forwarded": events - row["lost"], "seconds": row["seconds"],
            "events_per_s": row["events_per_s"], "complete": row["complete"] and not row["duplicated"] and not row["out_of_order"]}


def _server_cpu(cluster: Any) -> float:
    total = 0.0
    for proc in cluster.processes:
        if proc is not None and proc.poll() is None:
            with open(f"/proc/{proc.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# -- the whole bench -----------------------------------------------------------------------------


def run(*, cameras: int = 12, boxes: int = 3, kills: int = 5, ack_wait: float = 4.0,
        loads: tuple[int, ...] = (1000, 4000, 16000), heartbeat_s: float = 1.0, hold_s: float = 8.0,
        workdir: Optional[Path] = None, bridge_events: int = 1000, bridges: tuple[int, ...] = (1, 3)) -> dict:
    from ..cluster.local import NatsCluster

    with tempfile.TemporaryDirectory(prefix="streamproc-bench-cluster-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {"failover": None, "load": [], "bridge": []}
        with NatsCluster(work, 3, name="bench") as cluster:
            if kills:
                results["failover"] = asyncio.run(
                    failover(cluster.urls, work, cameras=cameras, boxes=boxes, kills=kills, ack_wait=ack_wait))
            for count in bridges if bridge_events else ():
                results["bridge"].append(bridge_throughput(cluster.urls, work / f"bridge{count}", events=bridge_events,
                                                           bridges=count))
            for tokens in loads:
                before, wall = _server_cpu(cluster), time.monotonic()
                row = asyncio.run(heartbeat_load(cluster.urls, tokens, heartbeat_s=heartbeat_s, hold_s=hold_s,
                                                 ack_wait=ack_wait))
                row["server_cpu_cores"] = round((_server_cpu(cluster) - before) / (time.monotonic() - wall), 2)
                results["load"].append(row)
        return results


def table(results: dict) -> str:
    lines = []
    fo = results.get("failover")
    if fo:
        lines += [
            f"Failover: kill -9 of one of the boxes, {fo['kills']} times, ack_wait {fo['ack_wait_s']:.0f} s "
            "(time until the last of its cameras has a new owner)",
            "",
            "| min | median | max | each |",
            "|---|---|---|---|",
            f"| {fo['min_s']:.2f} s | {fo['median_s']:.2f} s | {fo['max_s']:.2f} s | {', '.join(map(str, fo['all_s']))} |",
            "",
        ]
    if results.get("bridge"):
        lines += [
            "Bridge: stored captions to MQTT (8 partitions, batches of 64, acked after PUBACK), the bridge workers "
            "in their own processes (`streamproc bench bridge` has the details)",
            "",
            "| bridge workers | events | events/s | seconds |",
            "|---|---|---|---|",
        ]
        for row in results["bridge"]:
            lines.append(f"| {row['bridges']} | {row['forwarded']}{'' if row['complete'] else ' (incomplete)'} | "
                         f"{row['events_per_s']} | {row['seconds']} |")
        lines.append("")
    if results.get("load"):
        lines += [
            "Lease heartbeats on the 3-node cluster (one in_progress per camera per second, R3 work queue):",
            "",
            "| cameras | heartbeats/s | lost leases | round median | round max | nats-server CPU (cores, 3 nodes) | holds |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["load"]:
            lines.append(
                f"| {row['cameras']} | {row['heartbeats_per_s']} | {row['lost_leases']} | {row['round_median_s']} s | "
                f"{row['round_max_s']} s | {row['server_cpu_cores']} | {'yes' if row['holds'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the box processes of the failover measure
    if len(sys.argv) > 1 and sys.argv[1] == "box":
        sys.exit(box_main(sys.argv[2:]))
    print(table(run()))
