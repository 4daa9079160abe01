"""The bridge's partitions: cameras spread over N durable consumers of the events stream.

A camera belongs to partition crc32(name) mod N, the same on every box. Partition p is the
consumer `mqtt-bridge-<p>`, filtered to its cameras' subjects, with AckPolicy ALL (one ack, the
batch's last message, settles a batch), max_ack_pending = the batch size, and a priority group
with the pinned_client policy: the server delivers a partition to one box at a time (the pinned
one, as long as it keeps pulling), so a batch is never split between boxes. So each camera's events reach MQTT in
stream order, while the N partitions are forwarded in parallel by whichever boxes pull them.

Filters only grow: a box whose config has a camera the consumer lacks adds it; none removes one
(a box with an older config must not cut a camera off). A consumer is created with DeliverPolicy
NEW: on an empty stream that is everything; on a stream that already holds events (a changed
partition count) the events stored before are not replayed to MQTT a second time.
Exclusive pulls (a priority group with the pinned_client policy) need nats-server 2.11 or newer.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any, Iterable

log = logging.getLogger(__name__)

CONSUMER_PREFIX = "mqtt-bridge-"
PRIORITY_GROUP = "bridge"


def partition_of(camera: str, partitions: int) -> int:
    return zlib.crc32(camera.encode()) % partitions


def consumer_name(partition: int) -> str:
    return f"{CONSUMER_PREFIX}{partition}"


def _placeholder(names: Any, partition: int) -> str:
    # no source name holds "~": a subject nothing publishes on, for a partition without cameras
    # (a consumer without a filter would take every camera's events)
    return names.event_subject(f"~none-{partition}")


def filters(names: Any, cameras: Iterable[str], partitions: int) -> list[list[str]]:
    """The subjects of each partition's cameras."""
    found: list[list[str]] = [[] for _ in range(partitions)]
    for camera in sorted(set(cameras)):
        found[partition_of(camera, partitions)].append(names.event_subject(camera))
    return [subjects or [_placeholder(names, p)] for p, subjects in enumerate(found)]


async def ensure_partitions(js: Any, names: Any, cameras: Iterable[str], *, partitions: int, batch: int,
                            ack_wait_s: float) -> None:
    """Create the partition consumers, or add this config's cameras to their filters."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    for partition, subjects in enumerate(filters(names, cameras, partitions)):
        name = consumer_name(partition)
        try:
            info = await js.consumer_info(names.events, name)
        except NotFoundError:
            info = None
        if info is not None:
            have = list(info.config.filter_subjects or ([info.config.filter_subject] if info.config.filter_subject else []))
            missing = [s for s in subjects if s not in have and s != _placeholder(names, partition)]
            if not missing:
                continue
            subjects = [s for s in have if s != _placeholder(names, partition)] + missing
            log.info("bridge: partition %d forwards %d more camera(s)", partition, len(missing))
        config = ConsumerConfig(
            durable_name=name, ack_policy=AckPolicy.ALL, ack_wait=ack_wait_s, max_deliver=-1,
            max_ack_pending=batch, deliver_policy=DeliverPolicy.NEW, filter_subjects=subjects,
        ).as_dict()
        # One box at a time pulls a partition (the pinned client of its priority group); the pin
        # moves after priority_timeout without a pull, later than ack_wait, so the batch a dead
        # box held is redelivered (first, in order) to the next one before anything newer.
        config.update(priority_groups=[PRIORITY_GROUP], priority_policy="pinned_client",
                      priority_timeout=int((ack_wait_s + 1.0) * 1e9))
        await _create_or_update(js, names.events, name, config)


async def _create_or_update(js: Any, stream: str, name: str, config: dict) -> None:
    """nats-py's ConsumerConfig has no priority groups (nats-server 2.11): the API request by hand."""
    import json

    from nats.js.errors import APIError

    connection = js._nc  # nats-py's JetStream context does not expose its connection otherwise
    reply = await connection.request(f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
                                 json.dumps({"stream_name": stream, "config": config}).encode(), timeout=10)
    answer = json.loads(reply.data)
    if "error" in answer:
        raise APIError.from_error(answer["error"])
