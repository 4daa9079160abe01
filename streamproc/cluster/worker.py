"""`streamproc worker`: take caption jobs from the queue, one at a time, until stopped.

For each job: skip it if the state KV says done (a duplicate that came after the stream's
duplicate window); record running; caption the file with the local batch captioner, sending
in_progress and the progress after each segment (a job longer than ack_wait keeps its lease,
one whose worker died comes back after ack_wait); upload the outputs; record done; ack.
A failure is retried with back-off (nak with 2, 4, ... s delay) up to the queue's delivery limit,
on whichever worker takes it next (a failure may be the box's, not the file's); the last one
records the job as failed (poison) and terminates it, so it is never retried forever.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .jobs import Queue, QueueClient

log = logging.getLogger(__name__)


def run_worker(queue: Queue, config: Any, backend: Any, *, name: Optional[str] = None,
               stop: Optional[threading.Event] = None, max_jobs: Optional[int] = None) -> int:
    """Run jobs until `stop` is set (or `max_jobs` are done); how many jobs this worker finished."""
    import nats.errors

    name = name or socket.gethostname().split(".")[0]
    stop = stop or threading.Event()
    client = QueueClient(queue)
    psub = client.loop.call(client.js.pull_subscribe_bind(durable=queue.consumer, stream=queue.stream), timeout=30)
    # The queue's settings are whoever created it first's: the last attempt is the consumer's.
    info = client.loop.call(client.js.consumer_info(queue.stream, queue.consumer), timeout=30)
    queue = dataclasses.replace(queue, ack_wait_s=float(info.config.ack_wait), max_deliveries=int(info.config.max_deliver))
    client.loop.call(watch_abandoned(client, queue), timeout=30)
    finished = 0
    log.info("worker %s: taking jobs from %s (%s)", name, queue.name, ", ".join(queue.servers))
    try:
        while not stop.is_set() and (max_jobs is None or finished < max_jobs):
            try:
                messages = client.loop.call(psub.fetch(1, timeout=1.0), timeout=30)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for message in messages:
                if _run_job(client, queue, config, backend, name, message):
                    finished += 1
    finally:
        client.close()
    return finished


async def watch_abandoned(client: QueueClient, queue: Queue) -> None:
    """A job whose every delivery ended with its worker gone (a file that crashes the decoder, say)
    is never acked or terminated by anyone; JetStream says so with a max-deliveries advisory. Every
    worker listens; the first to hear records the job as failed and removes it from the queue."""

    async def on_advisory(msg: Any) -> None:
        try:
            advisory = json.loads(msg.data)
            stored = await client.js.get_msg(queue.stream, advisory["stream_seq"])
            job = json.loads(stored.data)
            state = await client._state(job["id"]) or {}
            if state.get("status") not in ("done", "failed"):
                error = f"its worker stopped during each of {advisory.get('deliveries', '?')} deliveries"
                await client.kv.put(job["id"], json.dumps({**state, "status": "failed", "error": error}).encode())
                log.error("%s failed for good: %s", job["path"], error)
            await client.js.delete_msg(queue.stream, advisory["stream_seq"])
        except Exception as error:  # another worker got there first (the message is gone)
            log.debug("max-deliveries advisory not handled: %s", error)

    subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{queue.stream}.{queue.consumer}"
    await client.nc.subscribe(subject, cb=on_advisory)


def _run_job(client: QueueClient, queue: Queue, config: Any, backend: Any, worker: str, message: Any) -> bool:
    from ..batch.captioner import BatchCaptioner

    job = json.loads(message.data)
    attempt = int(message.metadata.num_delivered)
    state = client.state(job["id"]) or {}
    if state.get("status") == "done":
        log.info("worker %s: %s is done already; skipping", worker, job["stem"])
        client.loop.call(message.ack_sync(), timeout=30)
        return False
    base = {"path": job["path"], "stem": job["stem"], "worker": worker, "attempt": attempt, "round": job.get("round", 0)}
    client.set_state(job["id"], {**base, "status": "running", "progress": 0.0})
    log.info("worker %s: captioning %s (attempt %d of %d)", worker, job["path"], attempt, queue.max_deliveries)
    last = [0.0]

    def progress(path: Path, done_s: float, total_s: float) -> None:
        now = time.monotonic()
        if now - last[0] < min(1.0, queue.ack_wait_s / 4):
            return
        last[0] = now
        client.loop.call(message.in_progress(), timeout=30)  # the lease on the job
        fraction = min(0.99, done_s / total_s) if total_s else 0.0
        client.set_state(job["id"], {**base, "status": "running", "progress": round(fraction, 3)})

    job_config = config if not job.get("prompt") else config.model_copy(
        update={"prompt": config.prompt.model_copy(update={"user": job["prompt"]})}
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamproc-job-") as tmp:
        captioner = BatchCaptioner(job_config, backend, Path(tmp), job["formats"], force=True, on_progress=progress)
        try:
            outcome = captioner.caption_file(Path(job["path"]), job["stem"])
            error = outcome.error
        except Exception as exc:  # a bug must fail the job, not the worker
            log.exception("worker %s: %s failed", worker, job["path"])
            outcome, error = None, f"internal error: {type(exc).__name__}: {exc}"
        if outcome is not None and outcome.status == "done":
            outputs = [f"{job['stem']}.{fmt}" for fmt in job["formats"]]
            for output in outputs:
                client.loop.call(client.objects.put(f"{job['id']}/{output}", (Path(tmp) / output).read_bytes()), timeout=60)
            client.set_state(job["id"], {
                **base, "status": "done", "progress": 1.0, "outputs": outputs, "segments": outcome.segments,
                "media_s": round(outcome.media_s, 3), "seconds": round(time.perf_counter() - started, 3),
            })
            client.loop.call(message.ack_sync(), timeout=30)
            log.info("worker %s: %s done (%d segments)", worker, job["stem"], outcome.segments)
            return True
    if attempt >= queue.max_deliveries:
        client.set_state(job["id"], {**base, "status": "failed", "error": error})
        client.loop.call(message.term(), timeout=30)
        log.error("worker %s: %s failed for good after %d deliveries: %s", worker, job["path"], attempt, error)
    else:
        delay = 2.0 ** attempt
        client.set_state(job["id"], {**base, "status": "retrying", "error": error})
        client.loop.call(message.nak(delay=delay), timeout=30)
        log.warning("worker %s: %s failed (%s); retrying in %.0f s", worker, job["path"], error, delay)
    return False
