"""The local NATS cluster the tests and benches start: a port taken between choosing it and the
node binding it (another process got there first) starts the cluster again on new ports."""
from __future__ import annotations

import socket

from streamproc.cluster.local import NatsCluster
from tests.support.nats import nats_unavailable_reason
from tests.support.prerequisites import unavailable


def test_a_port_taken_before_the_node_binds_it_starts_the_cluster_on_new_ports(tmp_path):
    reason = nats_unavailable_reason()
    if reason:
        unavailable(reason)
    cluster = NatsCluster(tmp_path, 3, name="taken")
    taken = cluster.route_ports[1]
    with socket.socket() as squatter:  # as if another process had taken the port after free_port()
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with cluster:
            assert taken not in cluster.route_ports and cluster.meta_leader() is not None
            assert "address already in use" in (tmp_path / "nats-taken" / "node1.log").read_text()
