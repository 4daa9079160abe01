"""Batch captioning across boxes: a JetStream work queue of jobs, one per file.

    stream  N_JOBS      work queue  N.jobs        one message per job, Nats-Msg-Id = job id
    KV      N_jobstate              <job id>      queued | running | retrying | done | failed,
                                                  worker, attempt, progress, error
    objects N_outputs               <job>/<name>  the caption files a worker wrote

A job id is a hash of the file (absolute path, size, mtime) and of what is asked (formats,
prompt), so submitting a file twice queues it once (the stream drops a repeated id inside its
duplicate window; a worker skips a job the KV already records as done), and a rerun skips what
is finished. Files must be readable at the same path on every worker (a shared mount).

`streamproc caption --queue nats://HOST:PORT[/NAME] PATHS` submits, shows one progress bar over
all workers and writes the outputs into --out; `streamproc worker --queue ...` runs jobs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError
from .connection import ClusterError, LoopThread, require_nats

log = logging.getLogger(__name__)

DEFAULT_NAME = "streamproc"
FINAL = ("done", "failed")


@dataclass(frozen=True)
class Queue:
    """Where the jobs live: the NATS servers and the queue's name (the URL's path)."""

    servers: list[str]
    name: str = DEFAULT_NAME
    ack_wait_s: float = 30.0
    max_deliveries: int = 3
    replicas: int = 1

    @classmethod
    def parse(cls, url: str, **kwargs: Any) -> "Queue":
        """nats://h1:4222,nats://h2:4222/NAME (the path names the queue; default streamproc)."""
        servers, name = [], DEFAULT_NAME
        for part in url.split(","):
            parts = urlsplit(part.strip())
            if parts.scheme not in ("nats", "tls") or not parts.netloc:
                raise UsageError(f"--queue wants nats://HOST:PORT[/NAME], not {part!r}")
            if parts.path.strip("/"):
                name = parts.path.strip("/")
            servers.append(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"queue name {name!r}: letters, digits, - and _ only")
        return cls(servers, name, **kwargs)

    @property
    def stream(self) -> str:
        return f"{self.name}_JOBS"

    @property
    def subject(self) -> str:
        return f"{self.name}.jobs"

    @property
    def state_kv(self) -> str:
        return f"{self.name}_jobstate"

    @property
    def outputs(self) -> str:
        return f"{self.name}_outputs"

    consumer = "workers"


def job_id(path: Path, formats: Sequence[str], prompt: Optional[str]) -> str:
    stat = path.stat()
    key = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, list(formats), prompt or ""])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class QueueClient:
    """A NATS connection on a loop thread, and the queue's objects (created if missing)."""

    def __init__(self, queue: Queue):
        self.queue = queue
        self.loop = LoopThread("queue")
        self.nc = self.loop.call(self._connect(), timeout=30)
        self.js = self.nc.jetstream()
        self.kv, self.objects = self.loop.call(self._layout(), timeout=30)

    async def _connect(self) -> Any:
        nats = require_nats()
        try:
            return await nats.connect(self.queue.servers, connect_timeout=5, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5, name="streamproc-batch")
        except Exception as exc:
            raise ClusterError(f"cannot reach the job queue at {', '.join(self.queue.servers)}: {exc or type(exc).__name__}") from None

    async def _layout(self) -> tuple[Any, Any]:
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

        q = self.queue
        try:
            await self.js.add_stream(StreamConfig(
                name=q.stream, subjects=[q.subject], retention=RetentionPolicy.WORK_QUEUE, num_replicas=q.replicas,
                duplicate_window=3600.0,
            ))
        except Exception as error:
            if getattr(error, "err_code", None) != 10058:  # exists already (maybe with other replicas)
                raise
        try:
            await self.js.add_consumer(q.stream, ConsumerConfig(
                durable_name=q.consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=q.ack_wait_s,
                max_deliver=q.max_deliveries, max_ack_pending=-1,
            ))
        except Exception as error:
            if getattr(error, "err_code", None) != 10148:  # exists with other settings: the first submitter's
                raise
        kv = await self.js.create_key_value(bucket=q.state_kv, history=1, replicas=q.replicas)
        objects = await self.js.create_object_store(bucket=q.outputs)
        return kv, objects

    def state(self, job: str) -> Optional[dict]:
        return self.loop.call(self._state(job), timeout=30)

    async def _state(self, job: str) -> Optional[dict]:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(job)
        except KeyNotFoundError:
            return None
        return json.loads(entry.value) if entry.value else None

    def set_state(self, job: str, state: dict) -> None:
        self.loop.call(self.kv.put(job, json.dumps(state).encode()), timeout=30)

    def close(self) -> None:
        try:
            self.loop.call(self.nc.close(), timeout=5)
        except Exception:
            pass
        self.loop.stop()


# -- submitting and collecting -----------------------------------------------------------------


def submit_and_collect(queue: Queue, paths: Sequence[Path], out_dir: Path, formats: Sequence[str], *,
                       prompt: Optional[str] = None, force: bool = False, wait: bool = True,
                       progress: bool = True) -> int:
    """Queue one job per file, show progress across all workers, write the outputs; exit code."""
    from ..batch.captioner import stems_for

    client = QueueClient(queue)
    try:
        stems = stems_for(paths)
        jobs: dict[str, dict] = {}
        queued = duplicates = skipped = missing = 0
        for path in paths:
            if not path.is_file():
                log.error("%s: no such file; not submitted", path)
                missing += 1
                continue
            job = {"id": job_id(path, formats, prompt), "path": str(path.resolve()), "stem": stems[path],
                   "formats": list(formats), "prompt": prompt}
            jobs[job["id"]] = job
            state = client.state(job["id"])
            if state and state.get("status") == "done" and not force:
                skipped += 1
                continue
            # A job that failed (or is forced) is queued again as a new round: its message id must
            # differ from the last round's, which the stream still remembers.
            again = force or (state or {}).get("status") == "failed"
            round_ = int((state or {}).get("round", 0)) + (1 if again else 0)
            if again or not state:
                client.set_state(job["id"], {"status": "queued", "path": job["path"], "stem": job["stem"], "round": round_})
            job["round"] = round_
            ack = client.loop.call(client.js.publish(
                queue.subject, json.dumps(job).encode(), headers={"Nats-Msg-Id": f"{job['id']}:{round_}"},
            ), timeout=30)
            if ack.duplicate:
                duplicates += 1
            else:
                queued += 1
        print(f"{queued} job(s) queued, {duplicates} already queued (duplicates ignored), {skipped} done before")
        if not wait:
            return 0
        states = _watch(client, jobs, progress)
        failed = {j: s for j, s in states.items() if s.get("status") == "failed"}
        written = _collect(client, jobs, states, out_dir)
        for job, state in sorted(failed.items(), key=lambda item: jobs[item[0]]["stem"]):
            print(f"streamproc: error: {jobs[job]['path']}: failed after {state.get('attempt', '?')} deliveries: "
                  f"{state.get('error', 'unknown error')}", file=sys.stderr)
        done = sum(s.get("status") == "done" for s in states.values())
        print(f"{done} captioned by {len({s.get('worker') for s in states.values() if s.get('status') == 'done'})} "
              f"worker(s), {len(failed)} failed; {written} file(s) written to {out_dir}")
        return 1 if failed or missing else 0
    finally:
        client.close()


def _watch(client: QueueClient, jobs: dict[str, dict], progress: bool) -> dict[str, dict]:
    """Poll the job states until every job is done or failed; one bar over all of them."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="jobs", unit="job", disable=not progress or not sys.stderr.isatty(),
               bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}] {postfix}")
    states: dict[str, dict] = {}
    try:
        while True:
            for job in jobs:
                if states.get(job, {}).get("status") not in FINAL:
                    states[job] = client.state(job) or {"status": "queued"}
            fractions = [1.0 if s.get("status") in FINAL else float(s.get("progress", 0.0)) for s in states.values()]
            running = {s.get("worker") for s in states.values() if s.get("status") == "running"}
            bar.n = round(sum(fractions), 2)
            bar.set_postfix_str(f"{len(running)} worker(s) busy")
            bar.refresh()
            if all(s.get("status") in FINAL for s in states.values()):
                return states
            time.sleep(0.5)
    finally:
        bar.close()


def _collect(client: QueueClient, jobs: dict[str, dict], states: dict[str, dict], out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for job, state in states.items():
        if state.get("status") != "done":
            continue
        for name in state.get("outputs", []):
            result = client.loop.call(client.objects.get(f"{job}/{name}"), timeout=60)
            (out_dir / name).write_bytes(result.data)
            written += 1
    return written
