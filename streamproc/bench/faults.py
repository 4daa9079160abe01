"""`streamproc bench cluster`: cluster mode under faults, on one machine (docs/scale-out.md).

A local 3-node JetStream cluster (streamproc/cluster/local.py), a local mosquitto, and real
`streamproc run` boxes in cluster mode (own processes, an instant stand-in model that sees a
person while a scene file exists) share `cameras` files read at camera pace, with a keyword
rule. One run, in order:

1. every camera raises its alert (the scene is on);
2. kill -9 a box; 3. SIGSTOP a box past its lease, then SIGCONT (it must fence itself);
4. kill -9 the node leading the lease consumer, 5. the meta leader, 6. the events stream's
   leader, each down `down_s` and then restarted;
7. a box joins late; then the scene goes off (every alert clears) and every box gets SIGTERM.

Per fault: owner changes (from the cameras' epochs in the KV store, and the acquire markers),
takeover time after the old owner's last lease renewal (the renewals are watched on the
consumer's ack subjects), leader election time, cameras a box fenced, and the events of the
phase that were stale (an older epoch after a newer one), lost (stored, never at MQTT) or
duplicated (twice at MQTT, or stored twice). Per run: consumers alive at the end, SIGTERM
times, nats-py errors in the boxes' logs. The site (boxes, config, watchers) is
bench/faultsite.py.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .faultsite import SITE, MqttLog, Site, site_config, stored_events, wait_for

LOG_ERRORS = r"Traceback|InvalidStateError|Task exception was never retrieved|Exception in callback"
LOG_ERROR_CAUSE = r"^(?:\w+\.)*\w*(?:Error|Exception)\b.*$"  # the line that names it (after the traceback)


# -- the faults -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    started: float = field(default_factory=time.time)
    owner_changes: int = 0  # epochs the cameras' KV records moved on by, during the fault
    rebalanced: int = 0  # owner changes after it, while the boxes shared the cameras fairly again
    takeover_s: list[float] = field(default_factory=list)  # new owner's marker - old owner's last renewal
    election_s: Optional[float] = None
    fenced: int = 0  # cameras a box stopped because it could not confirm their leases
    detail: str = ""
    stale: int = 0  # events of the phase (by time) judged at the end of the run
    lost: int = 0
    duplicated: int = 0


def _held(site: Site, box: str) -> dict[str, int]:
    """camera -> epoch, of the cameras `box` owns now (its newest acquire markers)."""
    newest: dict[str, tuple[str, int]] = {}
    for _, camera, owner, epoch in site.watch.markers:
        newest[camera] = (owner, epoch)
    return {camera: epoch for camera, (owner, epoch) in newest.items() if owner == box}


def _takeovers(site: Site, held: dict[str, int], since: float) -> list[float]:
    times = []
    for camera, epoch in held.items():
        renewed = site.watch.renewals.get((site.token_seq[camera], epoch))
        taken = [at for at, cam, _, new in site.watch.markers if cam == camera and new > epoch and at >= since]
        if renewed is not None and taken:
            times.append(round(min(taken) - renewed, 2))
    return times


def _diff(after: dict[str, int], before: dict[str, int]) -> int:
    return sum(after[camera] - before[camera] for camera in before)


async def _changes(site: Site, before: dict[str, int]) -> int:
    """Owner changes since `before` (epochs only grow, by one per change)."""
    return _diff(await site.epochs(), before)


async def _moved(site: Site, held: dict[str, int], victim: str, timeout_s: float) -> None:
    await wait_for(lambda: all(site.watch.owners()[c] != victim for c in held), timeout_s, f"{victim}'s cameras moved")


async def _settled(site: Site, boxes: set[str], lease: Any) -> None:
    """The boxes share the cameras fairly and no epoch moved for two heartbeats."""
    await wait_for(lambda: site.fair(boxes), 120, f"a fair share among {sorted(boxes)}")
    while True:
        before = await site.epochs()
        await asyncio.sleep(2 * lease.heartbeat + 1)
        if await site.epochs() == before and site.fair(boxes):
            return


async def box_kill(site: Site, victim: str, survivors: set[str], lease: Any) -> Phase:
    phase, epochs, fenced = Phase(f"kill -9 box {victim}"), await site.epochs(), site.fenced()
    held = _held(site, victim)
    os.killpg(site.procs[victim].pid, signal.SIGKILL)
    site.procs[victim].wait()
    await _moved(site, held, victim, lease.ack_wait_s + 30)
    phase.takeover_s = _takeovers(site, held, phase.started)
    phase.owner_changes = await _changes(site, epochs)
    await _settled(site, survivors, lease)
    phase.fenced = site.fenced() - fenced
    phase.detail = f"{len(held)} camera(s) to move"
    return phase


async def box_freeze(site: Site, victim: str, boxes: set[str], lease: Any) -> Phase:
    """SIGSTOP past the lease; on SIGCONT the box must fence its cameras itself and come back."""
    phase, epochs, fenced = Phase(f"SIGSTOP box {victim} past its lease"), await site.epochs(), site.fenced()
    held = _held(site, victim)
    os.kill(site.procs[victim].pid, signal.SIGSTOP)
    await _moved(site, held, victim, lease.ack_wait_s + 30)
    phase.takeover_s = _takeovers(site, held, phase.started)
    await asyncio.sleep(max(0.0, phase.started + lease.ack_wait_s + 5 - time.time()))
    moved = await site.epochs()
    phase.owner_changes = _diff(moved, epochs)
    os.kill(site.procs[victim].pid, signal.SIGCONT)
    await wait_for(lambda: site.fenced_in(victim) >= len(held), 30, f"{victim} fencing itself")
    await _settled(site, boxes, lease)
    phase.rebalanced = await _changes(site, moved)
    phase.fenced = site.fenced() - fenced
    phase.detail = f"{len(held)} camera(s) to move; frozen {lease.ack_wait_s + 5:.0f} s"
    return phase


async def _leader(site: Site, what: str) -> Optional[str]:
    from ..cluster.local import leaders

    if what == "meta":
        return await asyncio.to_thread(site.nats.meta_leader)
    return (await leaders(site.quick_js, SITE))[what]


async def _healthy(site: Site) -> bool:
    """Every replica of the site's lease and events streams is current again."""
    for stream in (f"{SITE}_LEASES", f"{SITE}_EVENTS"):
        info = await site.quick_js.stream_info(stream)
        replicas = info.cluster.replicas or []
        if info.cluster.leader is None or len(replicas) < 2 or not all(r.current and not r.offline for r in replicas):
            return False
    return True


async def node_loss(site: Site, what: str, label: str, boxes: set[str], lease: Any, down_s: float) -> Phase:
    phase, epochs, fenced = Phase(f"kill -9 the {label} node"), await site.epochs(), site.fenced()
    markers = len(site.watch.markers)
    leader = await _leader(site, what)
    index = site.nats.index_of(leader)
    site.nats.kill(index)
    killed = time.monotonic()

    async def elected() -> bool:
        return (await _leader(site, what)) not in (None, leader)

    phase.election_s = round(await wait_for(elected, 60, f"a new {label}"), 2)
    await asyncio.sleep(max(0.0, killed + down_s - time.monotonic()))
    site.nats.start_node(index)
    await wait_for(lambda: _healthy(site), 90, "the restarted node current again")
    await asyncio.sleep(2 * lease.heartbeat + 1)
    phase.owner_changes = await _changes(site, epochs)
    phase.fenced = site.fenced() - fenced
    phase.detail = f"{leader}, down {down_s:.0f} s; {len(site.watch.markers) - markers} acquire marker(s)"
    await _settled(site, boxes, lease)
    return phase


async def late_join(site: Site, name: str, boxes: set[str], lease: Any) -> Phase:
    phase, epochs = Phase(f"box {name} joins late"), await site.epochs()
    site.watch.joined.pop(name, None)
    site.start_box(name)
    await wait_for(lambda: name in site.watch.joined, 120, f"{name}'s first heartbeat")
    await wait_for(lambda: site.fair(boxes), 120, "a fair share with the late box")
    phase.takeover_s = [round(time.time() - site.watch.joined[name], 2)]  # its fair share, after its hello
    await _settled(site, boxes, lease)
    phase.rebalanced = await _changes(site, epochs)
    phase.detail = "takeover = its fair share after its first heartbeat"
    return phase


async def stop_all(site: Site, fence_s: float) -> dict[str, float]:
    """SIGTERM to every box at once; seconds until each exited (fence_s * 3 = did not)."""
    running = {name: proc for name, proc in site.procs.items() if proc.poll() is None}
    for proc in running.values():
        os.kill(proc.pid, signal.SIGTERM)
    started, times = time.monotonic(), {}
    while len(times) < len(running) and time.monotonic() - started < fence_s * 3:
        for name, proc in running.items():
            if name not in times and proc.poll() is not None:
                times[name] = round(time.monotonic() - started, 2)
        await asyncio.sleep(0.05)
    for name, proc in running.items():
        if name not in times:
            os.killpg(proc.pid, signal.SIGKILL)
            times[name] = fence_s * 3
    return times


def _stale(history: list[tuple[str, str, int, Any]]) -> list[Any]:
    """Entries of an older epoch after a newer one, or of an epoch another box had: (camera, box,
    epoch, what) in order."""
    newest: dict[str, int] = defaultdict(int)
    box_of: dict[tuple[str, int], str] = {}
    stale = []
    for camera, box, epoch, what in history:
        if epoch < newest[camera] or box_of.setdefault((camera, epoch), box) != box:
            stale.append(what)
        newest[camera] = max(newest[camera], epoch)
    return stale


def judge(stored: list[dict], mqtt: list[dict], stopped_at: float) -> dict[str, list]:
    """Events stale, lost (stored well before the stop, never at MQTT) and duplicated."""
    events = [r for r in stored if r["event"] is not None]
    stored_ids = [r["event"]["id"] for r in events]
    received = [e["id"] for e in mqtt]
    seen_once = set(received)
    by_id = {r["event"]["id"]: r["event"] for r in events}
    stale = [e for e in _stale([(r["camera"], r["box"], r["epoch"], r["event"]) for r in stored]) if e is not None]
    stale += _stale([(e["source"], e["cluster"]["box"], e["cluster"]["epoch"], e) for e in mqtt])
    lost = [by_id[i] for i in dict.fromkeys(stored_ids) if i not in seen_once and by_id[i]["ts"] < stopped_at - 10]
    duplicated = [{**by_id.get(i, {"id": i, "ts": 0}), "where": "MQTT"}
                  for i in sorted({i for i in received if received.count(i) > 1})]
    duplicated += [{**by_id[i], "where": "stream"} for i in sorted({i for i in stored_ids if stored_ids.count(i) > 1})]
    return {"stale": stale, "lost": lost, "duplicated": duplicated}


def attribute(found: dict[str, list], phases: list[Phase]) -> None:
    """Count each judged event against the phase it happened in (by its time)."""
    for kind, events in found.items():
        for event in events:
            owner = [p for p in phases if p.started <= event.get("ts", 0)]
            target = owner[-1] if owner else phases[0]
            setattr(target, kind, getattr(target, kind) + 1)
            target.detail += f"; {kind}: {event.get('type', 'event')} {event['id']}" + (
                f" (twice at {event['where']})" if "where" in event else "")


# -- one run ----------------------------------------------------------------------------------------------


async def scenario(site: Site, lease: Any, down_s: float, mqtt: MqttLog) -> dict:
    """The faults in order; the run's results."""
    boxes = {"b0", "b1", "b2"}
    start = Phase("start: 3 boxes share, every alert raised")
    phases = [start]
    for name in sorted(boxes):
        site.start_box(name)
    await wait_for(lambda: site.fair(boxes), 180, "the boxes sharing the cameras")
    await site.learn_tokens()
    site.scene.write_text("person")
    await wait_for(lambda: all(mqtt.alerts(c) == ["raised"] for c in site.cameras), 60, "every camera raised")
    phases.append(await box_kill(site, "b0", boxes - {"b0"}, lease))
    boxes -= {"b0"}
    phases.append(await box_freeze(site, "b1", boxes, lease))
    for what, label in (("lease_consumer", "lease consumer's leader"), ("meta", "meta leader"),
                        ("events_stream", "events stream's leader")):
        phases.append(await node_loss(site, what, label, boxes, lease, down_s))
    phases.append(await late_join(site, "b0", boxes | {"b0"}, lease))
    end = Phase("scene off, every alert cleared; SIGTERM")
    phases.append(end)
    site.scene.unlink()
    await wait_for(lambda: all(mqtt.alerts(c)[-1:] == ["cleared"] for c in site.cameras), 60, "every camera cleared")
    await asyncio.sleep(3)
    from ..cluster.local import consumer_census

    consumers = await consumer_census(site.js)
    stopped_at = time.time()
    sigterm = await stop_all(site, lease.fence)
    errors = {name: len(re.findall(LOG_ERRORS, site.log(name))) for name in site.procs}
    causes = sorted({cause for name in site.procs for cause in re.findall(LOG_ERROR_CAUSE, site.log(name), re.M)})
    exits = {name: proc.returncode for name, proc in site.procs.items()}
    await asyncio.sleep(2)
    received = mqtt.snapshot()
    found = judge(await stored_events(site.js), received, stopped_at)
    attribute(found, phases)
    alerts = {c: mqtt.alerts(c) for c in site.cameras}
    return {"phases": phases, "consumers": consumers, "sigterm_s": sigterm, "exit_codes": exits,
            "log_errors": errors, "log_error_causes": causes, "alerts_ok": all(a == ["raised", "cleared"] for a in alerts.values()),
            "alerts": alerts, "received": len(received), "fence_s": lease.fence, "ack_wait_s": lease.ack_wait_s}


def run_once(assets: Path, work: Path, *, cameras: int, capacity: int, ack_wait: Optional[float],
             down_s: float) -> dict:
    import nats as nats_client

    from ..cluster.local import NatsCluster
    from ..config.cluster import LeaseConfig
    from .bridge import start_mosquitto

    lease = LeaseConfig() if ack_wait is None else LeaseConfig(ack_wait_s=ack_wait)
    broker, port = start_mosquitto(work)
    mqtt = MqttLog(port)
    try:
        with NatsCluster(work, 3, name=SITE) as cluster:
            config = site_config(assets, work, cluster.urls, port, cameras=cameras, capacity=capacity, ack_wait=ack_wait)

            async def main() -> dict:
                async def quiet(error: Exception) -> None:  # the nodes the bench kills, on purpose
                    pass

                nc = await nats_client.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                               error_cb=quiet)
                site = Site(work, cluster, nc, config, cameras)
                await site.watch.start(nc)
                try:
                    return await scenario(site, lease, down_s, mqtt)
                finally:
                    for proc in site.procs.values():
                        if proc.poll() is None:
                            os.killpg(proc.pid, signal.SIGKILL)
                            proc.wait()
                    await nc.close()

            return asyncio.run(main())
    finally:
        mqtt.close()
        broker.kill()
        broker.wait()


# -- the command --------------------------------------------------------------------------------------------


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f}-{max(values):.2f} s" if len(values) > 1 else f"{values[0]:.2f} s"


def run_table(result: dict) -> str:
    lines = ["| fault | owner changes | after it (fair share again) | takeover after last renewal | leader elected after | "
             "cameras fenced | stale | lost | duplicated | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in result["phases"]:
        election = f"{p.election_s:.2f} s" if p.election_s is not None else "-"
        lines.append(f"| {p.name} | {p.owner_changes} | {p.rebalanced} | {_seconds(p.takeover_s)} | {election} | "
                     f"{p.fenced} | {p.stale} | {p.lost} | {p.duplicated} | {p.detail} |")
    census = result["consumers"]
    lines += ["", f"Consumers alive at the end: {census['total']} ({census['ephemeral']} ephemeral): "
              f"{census['by_stream']}. SIGTERM (fence_after_s {result['fence_s']:.0f} s): "
              f"{result['sigterm_s']}, exit codes {result['exit_codes']}. Tracebacks and asyncio errors in the logs: "
              f"{result['log_errors']} {result['log_error_causes']}. Alerts: {'raised and cleared once on every camera' if result['alerts_ok'] else result['alerts']}.", ""]
    return "\n".join(lines)


def summary_table(results: list[dict]) -> str:
    lines = ["| run | kill -9 box: takeover | SIGSTOP box: takeover | owner changes from node losses (consumer leader, "
             "meta leader, stream leader) | elections | stale | lost | duplicated | alerts once | consumers at end "
             "(ephemeral) | SIGTERM max | tracebacks in logs |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, r in enumerate(results, 1):
        phases = r["phases"]
        nodes = [p for p in phases if p.election_s is not None]
        lines.append(
            f"| {index} | {_seconds(phases[1].takeover_s)} | {_seconds(phases[2].takeover_s)} | "
            f"{', '.join(str(p.owner_changes) for p in nodes)} | {', '.join(f'{p.election_s:.1f}' for p in nodes)} s | "
            f"{sum(p.stale for p in phases)} | {sum(p.lost for p in phases)} | {sum(p.duplicated for p in phases)} | "
            f"{'yes' if r['alerts_ok'] else 'no'} | {r['consumers']['total']} ({r['consumers']['ephemeral']}) | "
            f"{max(r['sigterm_s'].values()):.2f} s | {sum(r['log_errors'].values())} |")
    return "\n".join(lines)


def run_command(args: Any) -> str:
    """`streamproc bench cluster`: `--runs` fault runs (0: none), then the older measures if asked."""
    from ..errors import UsageError
    from . import cluster
    from .measure import DEFAULT_CACHE, progress

    if args.runs < 0 or args.cameras < 3 or args.down < 1:
        raise UsageError("--runs >= 0, --cameras >= 3 and --down >= 1 please")
    results, parts = [], []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="streamproc-bench-faults-") as tmp:
            work = Path(args.workdir) / f"run{index + 1}" if args.workdir else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            result = run_once(DEFAULT_CACHE / "cluster-faults", work, cameras=args.cameras, capacity=args.cameras,
                              ack_wait=args.ack_wait, down_s=args.down)
        results.append(result)
        progress(f"run {index + 1}/{args.runs}\n\n{run_table(result)}")
    if results:
        r = results[0]
        parts.append(f"Fault runs: {args.cameras} cameras, 3 boxes (capacity {args.cameras}), ack_wait "
                     f"{r['ack_wait_s']:.0f} s, fence_after {r['fence_s']:.0f} s, NATS nodes down {args.down:.0f} s each\n")
        parts.append(summary_table(results) + "\n")
        parts.append(f"Run {len(results)} in detail:\n\n{run_table(results[-1])}")
    loads = tuple(int(x) for x in args.loads.split(",") if x.strip())
    if args.kills or loads or args.bridge_events:
        parts.append(cluster.table(cluster.run(kills=args.kills, loads=loads, bridge_events=args.bridge_events,
                                               ack_wait=args.ack_wait or 4.0)))
    return "\n".join(parts)
