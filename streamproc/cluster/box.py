"""`streamproc run` in cluster mode: this box's pipeline runs the cameras its leases hand it.

Every box runs the same site config. The pipeline loads its models and starts no source; the
lease manager starts and stops sources through `Pipeline.start_source/stop_source`, and each
described segment goes through `Ownership.commit` (KV rule state, then the events stream). MQTT
gets the events from the stream through the bridge, not from this box's own outbox; other local
sinks (stdout, caption files) still get what this box committed.

SIGINT/SIGTERM: stop taking cameras, finish the segments already read, give every camera back
(they move at once, not after the lease), leave. A second signal exits at once.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from .connection import ClusterError, LoopThread, connect

log = logging.getLogger(__name__)

EXIT_BACKEND = 5  # as in single-box mode (app/lifecycle.py)


def run_box(config: Any, *, install_signals: bool = True, poll_s: float = 0.5) -> int:
    """Run this box until a signal; the process exit code."""
    from ..app import App
    from ..app.lifecycle import stop_signals
    from ..sinks import create_sinks
    from .layout import LAYOUT_API_TIMEOUT_S, LAYOUT_BUDGET_S, ensure_layout
    from .leases import LeaseManager
    from .ownership import Ownership
    from .sitemqtt import cluster_mqtt

    cluster = config.cluster
    cameras = [s.name for s in config.sources if s.enabled]
    signals = contextlib.ExitStack()  # SIGINT/SIGTERM set `requested`; the handlers are put back at the end
    requested = signals.enter_context(stop_signals("giving the cameras back and stopping", install=install_signals))

    loop = LoopThread()
    nc = None
    app = None
    try:
        nc = _step(loop, "connecting", connect(cluster, f"streamproc-{cluster.box}"), cluster.connect_timeout_s * 3)
        js = nc.jetstream()
        names = _step(loop, "making the layout", ensure_layout(nc.jetstream(timeout=LAYOUT_API_TIMEOUT_S), cluster, cameras),
                      LAYOUT_BUDGET_S + 2 * LAYOUT_API_TIMEOUT_S)
        leases: Any = None
        ownership = Ownership(loop, js, names, cluster.box, lambda: leases is not None and leases.valid(), nc=nc)
        _step(loop, "opening the cameras bucket", ownership.open(), 10)
        leases = LeaseManager(nc, js, cluster, cameras, ownership)
        local = config.sinks.model_copy(update={"mqtt": None})  # MQTT: the bridge and the site's side (sitemqtt.py)
        site_mqtt = cluster_mqtt(config, lambda camera: camera in ownership.holdings)
        app = App(config, plugins=create_sinks(local, config.rules, cameras) + ([site_mqtt] if site_mqtt else []),
                  publisher_for=lambda bus: CommitThenPublish(ownership, bus), start_sources=False)
        ownership.host = app  # the leases start and stop its cameras
        app.start()
        _step(loop, "starting the leases", leases.start(), 30)
        log.info(
            "cluster: box %s joined %s (%d camera(s), capacity %d, ack_wait %.1f s, fence after %.1f s)",
            cluster.box, cluster.name, len(cameras), cluster.capacity, cluster.lease.ack_wait_s, cluster.lease.fence,
        )
        code = 0
        while not requested.wait(poll_s):
            if app.workers_gave_up():  # no engine left here: the cameras go to boxes that have one
                log.error("cluster: every model worker of %s gave up; giving the cameras back (exit %d)",
                          cluster.box, EXIT_BACKEND)
                code = EXIT_BACKEND
                break
        # within fence_after_s: half of it for the segments in flight, the rest bounded by short timeouts
        _step(loop, "giving the cameras back", leases.shutdown(drain_s=cluster.lease.fence / 2), cluster.lease.fence)
        log.info("cluster: box %s left; counters %s %s", cluster.box, ownership.counters, leases.counters)
        return code
    except TimeoutError:  # inside a step (the bridge's or the site's connection while the app starts)
        raise ClusterError("the NATS cluster did not answer in time (starting the app's cluster parts)") from None
    finally:
        if app is not None:
            app.stop(timeout_s=10.0)
        if nc is not None:
            try:
                loop.call(nc.close(), timeout=5)
            except Exception:
                pass
        loop.stop()
        signals.close()


def _step(loop: LoopThread, what: str, coro: Any, timeout_s: float) -> Any:
    """Run one step of the box's start or stop on the loop; a timeout names the step."""
    try:
        return loop.call(coro, timeout=timeout_s)
    except TimeoutError:
        raise ClusterError(f"the NATS cluster did not answer in time ({what}, {timeout_s:.0f} s)") from None


class CommitThenPublish:
    """The publisher the pipeline gets in cluster mode: a segment's events go through the fenced
    commit (KV rule state, then the events stream) and only what was committed reaches this box's
    own plug-ins; events of no segment (source states) go straight to them."""

    def __init__(self, ownership: Any, bus: Any):
        self.ownership = ownership
        self.bus = bus

    def publish(self, events: Any, segment: Any = None) -> None:
        if segment is None:
            self.bus.publish(events)
            return
        self.bus.publish(self.ownership.commit(segment, list(events)), segment)
