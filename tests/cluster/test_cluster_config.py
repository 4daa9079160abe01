"""Cluster config, queue URLs and rule-state hand-over (no services)."""
from __future__ import annotations

import pytest

from streamproc.cluster.jobs import Queue
from streamproc.cluster.rulestate import restore, save
from streamproc.config import config_from_data
from streamproc.config.cluster import ClusterConfig
from streamproc.config.rules import RuleConfig
from streamproc.errors import ConfigError, UsageError
from streamproc.rules.alerts import RuleEngine
from tests.support.segments import make_segment


def test_single_box_is_the_default_and_cluster_timing_derives_from_the_lease():
    base = {"sources": [{"name": "cam1", "url": "rtsp://127.0.0.1/x"}], "backend": {"type": "hf", "model": "m"}}
    assert config_from_data(base).cluster is None
    config = config_from_data({**base, "cluster": {"servers": ["nats://n1:4222"], "box": "b1", "lease": {"ack_wait_s": 6}}})
    lease = config.cluster.lease
    assert (lease.ack_wait_s, lease.fence, lease.heartbeat) == (6, 4, 0.4)
    default = ClusterConfig().lease  # rides out a leader election twice as long as the slowest measured
    assert (default.ack_wait_s, default.fence, default.heartbeat) == (30, 20, 2)
    assert default.fence - default.heartbeat >= 2 * default.election_s


@pytest.mark.parametrize("cluster, words", [
    ({"lease": {"ack_wait_s": 4, "fence_after_s": 4}}, "fence_after_s must be shorter than ack_wait_s"),
    ({"lease": {"ack_wait_s": 3, "heartbeat_s": 2}}, "heartbeat_s must be shorter than fence_after_s"),
    ({"username": "u", "token": "t"}, "one of credentials, username/password or token"),
    ({"box": "a b"}, "box"),
    ({"replica": 3}, "replica"),
])
def test_cluster_config_errors_say_what_is_wrong(cluster, words):
    base = {"sources": [{"name": "cam1", "url": "rtsp://127.0.0.1/x"}], "backend": {"type": "hf", "model": "m"}}
    with pytest.raises(ConfigError, match=words):
        config_from_data({**base, "cluster": cluster})


def test_secrets_stay_out_of_the_config_repr():
    config = ClusterConfig(username="u", password="hunter2")
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())


def test_queue_urls():
    queue = Queue.parse("nats://n1:4222,nats://n2:4222/archive")
    assert queue.servers == ["nats://n1:4222", "nats://n2:4222"] and queue.name == "archive"
    assert Queue.parse("nats://n1:4222").name == "streamproc"
    for bad in ("http://n1:4222", "n1:4222", "nats://n1:4222/a.b"):
        with pytest.raises(UsageError):
            Queue.parse(bad)


def test_rule_state_moves_with_its_cooldown_onto_the_new_clock():
    rules = [RuleConfig(name="person", keywords=["person"], raise_after=2, clear_after=1, cooldown_s=30)]
    old, new = RuleEngine(rules), RuleEngine(rules)
    for index, text in enumerate(["person", "person", "empty", "person"]):
        old.evaluate("cam1", make_segment("cam1", index), text)
    record = save(old, "cam1", clock=8.0)  # cleared at media time 6, a positive after it
    restore(new, "cam1", record, now=record["wall"] + 4.0)  # taken over 4 s later, clock from 0
    state = new.state("person", "cam1")
    assert not state.on and state.positives == 1
    assert state.cleared_at == pytest.approx(6.0 - 8.0 - 4.0)  # cleared 6 s before the new clock's 0
    # one more positive reaches raise_after, but 30 s have not passed since the clear: suppressed
    assert new.evaluate("cam1", make_segment("cam1", 0), "person") == []
    assert new.counters["suppressed"] == 1


def test_a_lease_too_short_for_a_leader_election_is_warned_about_at_start(caplog):
    from streamproc.cluster.layout import Names
    from streamproc.cluster.leases import LeaseManager
    from streamproc.cluster.ownership import Ownership

    def manager(lease: dict) -> LeaseManager:
        config = ClusterConfig(box="b1", lease=lease)
        return LeaseManager(None, None, config, ["cam1"], Ownership(None, None, Names("t"), "b1", lambda: True))

    with caplog.at_level("WARNING", logger="streamproc.cluster.leases"):
        manager({}).check_timing()  # the default: 18 s of margin, twice the 9 s election
        assert caplog.records == []
        manager({"ack_wait_s": 8}).check_timing()
    assert "raise lease.ack_wait_s to 30 s or more" in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="streamproc.cluster.leases"):
        manager({"ack_wait_s": 8, "election_s": 2}).check_timing()  # a site that measured faster elections
    assert caplog.records == []
