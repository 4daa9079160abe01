"""The node leading the lease consumer dies (kill -9) under 2 real boxes at the default lease:
the leases ride out the leader election (no camera changes owner, none is fenced), no periodic
call leaves a consumer behind, and SIGTERM gives the cameras back within fence_after_s, cleanly.
The whole fault scenario, five times over, is `streamproc bench cluster` (docs/scale-out.md)."""
from __future__ import annotations

import re
import signal
import time

from streamproc.config.cluster import LeaseConfig
from tests.cluster.site import Site

LEASE = LeaseConfig()  # the default lease: what a site gets


def test_the_lease_consumers_leader_dies_and_nobody_loses_a_camera(cluster_prerequisites, tmp_path, tiny_model_dir,
                                                                   camera_video):
    with Site(tmp_path, tiny_model_dir, camera_video, cameras=4, ack_wait_s=LEASE.ack_wait_s, capacity=4) as site:
        for name in ("b0", "b1"):
            site.start_box(name)
        try:
            _node_loss(site)
        except AssertionError:
            print(site.logs())
            raise


def _node_loss(site: Site) -> None:
    site.wait(lambda: sorted(site.holdings().values()) == [2, 2], 90, "4 cameras shared 2/2")
    owners = site.tap.kv_owners(site.cameras)
    consumers = site.tap.consumers()
    leader = site.tap.leaders()["lease_consumer"]
    killed_at = time.time()
    site.nats.kill(site.nats.index_of(leader))
    # a new leader within an election (seconds), then two heartbeats whose renewals it answers
    site.wait(lambda: _new_leader(site, leader), 3 * LEASE.election_s, "a new lease consumer leader")
    time.sleep(3 * LEASE.heartbeat)
    assert site.tap.kv_owners(site.cameras) == owners, "a camera changed owner when the lease consumer's leader died"
    assert site.tap.markers(killed_at) == []
    for name, box in site.boxes.items():
        assert "could not confirm" not in box.log(), f"{name} fenced a camera"
    after = site.tap.consumers()
    assert after["ephemeral"] == 0 and after["total"] <= consumers["total"], (consumers, after)

    for name in site.boxes:
        site.signal_box(name, signal.SIGTERM)
    signalled = time.monotonic()
    for name, box in site.boxes.items():
        assert box.wait(LEASE.fence) == 0, box.log()[-3000:]
    assert time.monotonic() - signalled < LEASE.fence
    for name, box in site.boxes.items():
        assert re.search(r"gave cam\d+ back", box.log()), name
        assert not re.search(r"Traceback|InvalidStateError|Task exception", box.log()), box.log()[-3000:]


def _new_leader(site: Site, old: str) -> bool:
    try:
        return site.tap.leaders()["lease_consumer"] not in (None, old)
    except Exception:  # no leader to answer yet
        return False
