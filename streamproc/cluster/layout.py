"""The JetStream objects of one site (`cluster.name` = N), created idempotently by every box.

    stream  N_LEASES   work queue   N.token.<camera>     one token per camera; its delivery
                                                          count is the ownership epoch
    stream  N_EVENTS   limits       N.events.<camera>    captions and alerts, de-duplicated by
                                                          event id (Nats-Msg-Id); an `acquire`
                                                          marker opens every epoch
    KV      N_cameras                <camera>            owner, epoch, rule states and the
                                                          events of the last segment
    KV      N_boxes      TTL         <box>               liveness heartbeats (fair share)
    consumers of N_EVENTS: mqtt-bridge-<p>, one per bridge partition (partitions.py)

Every box runs the same site config, so every box adds the tokens: a token is published only
if its subject holds none (Nats-Expected-Last-Subject-Sequence: 0), so one camera never has two.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

log = logging.getLogger(__name__)

# JetStream's error codes for a failed Expected-Last-* check (10164: the KV create form of it)
WRONG_LAST_SEQUENCE = (10071, 10164)
H_BOX, H_EPOCH, H_KIND = "Sp-Box", "Sp-Epoch", "Sp-Kind"


@dataclass(frozen=True)
class Names:
    site: str

    @property
    def leases(self) -> str:
        return f"{self.site}_LEASES"

    @property
    def events(self) -> str:
        return f"{self.site}_EVENTS"

    @property
    def cameras_kv(self) -> str:
        return f"{self.site}_cameras"

    @property
    def boxes_kv(self) -> str:
        return f"{self.site}_boxes"

    def token(self, camera: str) -> str:
        return f"{self.site}.token.{camera}"

    def event_subject(self, camera: str) -> str:
        return f"{self.site}.events.{camera}"

    @property
    def lease_consumer(self) -> str:
        return "boxes"

    def camera_of(self, subject: str) -> str:
        return subject.split(".", 2)[2]


def is_wrong_last_sequence(error: BaseException) -> bool:
    return getattr(error, "err_code", None) in WRONG_LAST_SEQUENCE


LAYOUT_BUDGET_S = 45.0  # a box's start waits this long for the layout, trying again meanwhile
LAYOUT_API_TIMEOUT_S = 10.0  # per JetStream API request while making it (nats-py's default: 5 s)
_LAYOUT_RETRY_S = 1.0


def _transient(error: BaseException) -> bool:
    """The cluster did not answer this time (no leader yet, reconnecting, slow): try again."""
    import nats.errors
    import nats.js.errors

    transient = (nats.errors.TimeoutError, nats.errors.NoRespondersError, asyncio.TimeoutError,
                 nats.errors.ConnectionReconnectingError, nats.errors.FlushTimeoutError,
                 nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError)
    return isinstance(error, transient) or getattr(error, "code", None) == 503


async def ensure_layout(js: Any, config: Any, cameras: Iterable[str], budget_s: float = LAYOUT_BUDGET_S) -> Names:
    """Create (or keep) the streams, buckets and consumers, and one token per camera.

    Every step is idempotent, so the whole is tried again while the cluster does not answer,
    for up to `budget_s`: on a fresh or loaded cluster creating a replicated stream waits for
    its group's election and can outlast one API request's timeout, and boxes starting together
    create the same things at once (a box that gave up here exited, and its cameras waited)."""
    deadline = time.monotonic() + budget_s
    cameras = list(cameras)
    while True:
        try:
            return await _make_layout(js, config, cameras)
        except Exception as error:
            if not _transient(error) or time.monotonic() + _LAYOUT_RETRY_S > deadline:
                raise
            log.info("cluster %s: making the layout: the cluster did not answer (%s); trying again",
                     config.name, type(error).__name__)
            await asyncio.sleep(_LAYOUT_RETRY_S)


async def _make_layout(js: Any, config: Any, cameras: list[str]) -> Names:
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    from .partitions import ensure_partitions

    names = Names(config.name)
    lease = config.lease
    replicas = config.replicas
    await _stream(js, StreamConfig(
        name=names.leases, subjects=[f"{config.name}.token.*"], retention=RetentionPolicy.WORK_QUEUE,
        num_replicas=replicas,
    ))
    await _stream(js, StreamConfig(
        name=names.events, subjects=[f"{config.name}.events.*"], num_replicas=replicas,
        max_age=config.events_max_age_s, duplicate_window=config.duplicate_window_s,
    ))
    await js.create_key_value(bucket=names.cameras_kv, history=1, replicas=replicas)
    # What each box holds, for operators (written, never listed: a listing leaves a consumer
    # behind). Who is alive comes from core NATS heartbeats (membership.py), not from here.
    await js.create_key_value(bucket=names.boxes_kv, history=1, replicas=replicas, ttl=lease.fence)
    await js.add_consumer(names.leases, ConsumerConfig(
        durable_name=names.lease_consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=lease.ack_wait_s,
        max_deliver=-1, max_ack_pending=-1,
    ))
    await ensure_partitions(js, names, cameras, partitions=config.bridge_partitions, batch=config.bridge_batch,
                            ack_wait_s=lease.ack_wait_s)  # the bridge's consumers (partitions.py)
    added = 0
    for camera in cameras:
        try:
            await js.publish(names.token(camera), camera.encode(), headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            added += 1
        except Exception as error:
            if not is_wrong_last_sequence(error):  # a token exists: another box added it
                raise
    if added:
        log.info("cluster %s: added %d camera token(s)", config.name, added)
    return names


async def _stream(js: Any, config: Any) -> None:
    try:
        await js.add_stream(config)
    except Exception as error:
        if getattr(error, "err_code", None) != 10058:  # exists with another config: update it
            raise
        await js.update_stream(config)
