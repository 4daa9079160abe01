"""Config of cluster mode: several boxes share the cameras over NATS JetStream (docs/scale-out.md).

No `cluster:` section (the default) means single-box mode: no NATS at all.
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

from pydantic import Field, SecretStr, model_validator

from .base import Section


class NatsTlsConfig(Section):
    enabled: bool = False
    ca_file: Optional[Path] = Field(None, description="CA bundle that signed the servers' certificates")
    cert_file: Optional[Path] = Field(None, description="client certificate (PEM), for servers that verify clients")
    key_file: Optional[Path] = Field(None, description="client private key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> "NatsTlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


# Defaults as shares of the lease: a camera is fenced after 2/3 of it unconfirmed (the last third
# is the time to stop it before the server hands the lease out), renewed 15 times per lease.
FENCE_SHARE = 2 / 3
HEARTBEATS_PER_LEASE = 15


class LeaseConfig(Section):
    """Camera leases. A dead box's cameras move after ack_wait_s; a camera whose lease a box could
    not confirm for fence_after_s (default ack_wait_s * 2/3) is stopped there first. A NATS leader
    election must fit in fence_after_s - heartbeat_s (measured and chosen: docs/scale-out.md)."""

    ack_wait_s: float = Field(30.0, ge=1.0, description="a lease not renewed for this long is given to another box")
    heartbeat_s: Optional[float] = Field(None, gt=0, description="renew leases this often; default ack_wait_s / 15")
    fence_after_s: Optional[float] = Field(None, gt=0, description="stop a camera whose lease was not confirmed for this long; default ack_wait_s * 2/3")
    election_s: float = Field(9.0, gt=0, description="the longest NATS leader election expected (docs/scale-out.md); "
                              "the start warns when fence_after_s - heartbeat_s is less than twice this")

    @model_validator(mode="after")
    def _timing(self) -> "LeaseConfig":
        if self.heartbeat_s is not None and self.heartbeat_s >= self.fence:
            raise ValueError("heartbeat_s must be shorter than fence_after_s (ack_wait_s * 2/3 by default)")
        if self.fence_after_s is not None and self.fence_after_s >= self.ack_wait_s:
            raise ValueError("fence_after_s must be shorter than ack_wait_s, or two boxes may own a camera")
        return self

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.ack_wait_s / HEARTBEATS_PER_LEASE

    @property
    def fence(self) -> float:
        return self.fence_after_s if self.fence_after_s is not None else self.ack_wait_s * FENCE_SHARE


class ClusterConfig(Section):
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, description="NATS URLs")
    box: str = Field(default_factory=lambda: socket.gethostname().split(".")[0], pattern=r"^[A-Za-z0-9_-]+$", description="this box's name, unique in the cluster; default: the host name")
    name: str = Field("streamproc", pattern=r"^[A-Za-z0-9_-]+$", description="prefix of the streams and KV buckets (one site per name)")
    credentials: Optional[Path] = Field(None, description="NATS .creds file (JWT + nkey)")
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    token: Optional[SecretStr] = None
    tls: NatsTlsConfig = NatsTlsConfig()
    capacity: int = Field(4, ge=1, description="cameras this box takes at most (what its free engines can describe)")
    replicas: int = Field(3, ge=1, le=5, description="JetStream replicas of the streams (3 for a 3-node cluster)")
    lease: LeaseConfig = LeaseConfig()
    events_max_age_s: float = Field(86400.0, gt=0, description="how long the events stream keeps events")
    duplicate_window_s: float = Field(300.0, gt=0, description="events with the same id inside this window are stored once")
    bridge: bool = Field(True, description="forward the events stream to MQTT (sinks.mqtt) from this box")
    bridge_partitions: int = Field(8, ge=1, le=256, description="the events stream's cameras are forwarded to MQTT in this "
                                   "many partitions, in parallel (each camera in order); the same on every box")
    bridge_batch: int = Field(64, ge=1, le=1024, description="events of a partition forwarded at once (one ack, one wait for the broker)")
    connect_timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _auth(self) -> "ClusterConfig":
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        if sum(x is not None for x in (self.credentials, self.username, self.token)) > 1:
            raise ValueError("give one of credentials, username/password or token")
        return self
