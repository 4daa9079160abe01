"""Fixtures of the cluster tests: the prerequisites (nats-server, nats-py, mosquitto) and a
long video that a box reads at camera pace."""
from __future__ import annotations

import pytest

from tests.support.mosquitto import mosquitto_unavailable_reason
from tests.support.nats import NatsCluster, nats_unavailable_reason
from tests.support.prerequisites import unavailable


@pytest.fixture
def cluster_prerequisites() -> None:
    reason = nats_unavailable_reason() or mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)


@pytest.fixture
def nats_url(tmp_path):
    """The URLs of a one-node JetStream server of the test's own."""
    reason = nats_unavailable_reason()
    if reason:
        unavailable(reason)
    with NatsCluster(tmp_path, 1, name="single") as cluster:
        yield cluster.urls


@pytest.fixture(scope="session")
def camera_video(make_video):
    """Ten minutes of small video: a 'camera' that does not end during a test."""
    return make_video(duration_s=600, fps=2, width=112, height=112)
