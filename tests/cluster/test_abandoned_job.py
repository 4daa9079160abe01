"""A job whose worker dies during every delivery is recorded as failed (JetStream's
max-deliveries advisory), not left in the queue for ever."""
from __future__ import annotations

import json
import time

from streamproc.cluster.jobs import Queue, QueueClient
from streamproc.cluster.worker import watch_abandoned
from tests.support.nats import NatsCluster, nats_unavailable_reason
from tests.support.prerequisites import unavailable


def test_a_job_that_kills_every_worker_is_failed_after_the_delivery_limit(tmp_path):
    reason = nats_unavailable_reason()
    if reason:
        unavailable(reason)
    with NatsCluster(tmp_path, 1, name="abandoned") as cluster:
        queue = Queue(cluster.urls, "q", ack_wait_s=1.0, max_deliveries=2)
        watcher, crashing = QueueClient(queue), QueueClient(queue)
        try:
            watcher.loop.call(watch_abandoned(watcher, queue), 10)
            job = {"id": "job1", "path": "/videos/crash.mp4", "stem": "crash", "formats": ["jsonl"]}
            watcher.set_state("job1", {"status": "queued", "path": job["path"], "stem": "crash"})
            watcher.loop.call(watcher.js.publish(queue.subject, json.dumps(job).encode(), headers={"Nats-Msg-Id": "job1:0"}), 10)
            psub = crashing.loop.call(crashing.js.pull_subscribe_bind(durable=queue.consumer, stream=queue.stream), 10)
            for delivery in (1, 2):  # taken, then the worker "dies": no ack, no nak
                messages = crashing.loop.call(psub.fetch(1, timeout=5), 10)
                assert messages[0].metadata.num_delivered == delivery
            deadline = time.monotonic() + 10
            while (watcher.state("job1") or {}).get("status") != "failed":
                assert time.monotonic() < deadline, watcher.state("job1")
                try:  # the other workers keep asking for jobs; the server gives this one no more
                    assert crashing.loop.call(psub.fetch(1, timeout=0.5), 10) == []
                except TimeoutError:
                    pass
            assert "stopped during each of 2 deliveries" in watcher.state("job1")["error"]
            info = watcher.loop.call(watcher.js.stream_info(queue.stream), 10)
            assert info.state.messages == 0  # removed from the queue
        finally:
            watcher.close()
            crashing.close()
