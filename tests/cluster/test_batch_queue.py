"""Batch captioning across boxes: 30 files and a poison file through `streamproc caption --queue`
and 3 `streamproc worker` processes on a real 3-node JetStream cluster. One worker is killed in
the middle of a job (the job is finished once, elsewhere), 5 files are submitted twice (queued
once), the poison file fails after the delivery limit and is reported, and a rerun skips all."""
from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.support.nats import NatsCluster
from tests.support.service import ServiceProcess

ACK_WAIT = 3
QUEUE_NAME = "archive"


def _states(urls: list[str]) -> dict[str, dict]:
    async def read() -> dict[str, dict]:
        import nats
        from nats.js.errors import NoKeysError

        nc = await nats.connect(urls)
        try:
            kv = await nc.jetstream(timeout=15).key_value(f"{QUEUE_NAME}_jobstate")
            for attempt in range(5):  # listing keys makes a consumer: on a loaded machine it can time out
                try:
                    keys = await kv.keys()
                    break
                except NoKeysError:
                    return {}
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            return {key: json.loads((await kv.get(key)).value) for key in keys}
        finally:
            await nc.close()

    return asyncio.run(read())


def _stream_last_seq(urls: list[str]) -> int:
    async def read() -> int:
        import nats

        nc = await nats.connect(urls)
        try:
            return (await nc.jetstream().stream_info(f"{QUEUE_NAME}_JOBS")).state.last_seq
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.mark.slow
def test_batch_jobs_across_workers(cluster_prerequisites, tmp_path, tiny_model_dir, make_video):
    videos = tmp_path / "videos"
    videos.mkdir()
    files = []
    for index in range(30):
        source = make_video(duration_s=4, fps=2, width=112, height=112, seed=index)
        target = videos / f"clip{index:02d}.mp4"
        target.write_bytes(source.read_bytes())
        files.append(target)
    poison = videos / "poison.mp4"
    poison.write_bytes(b"\x00not a video\x00" * 64)
    out = tmp_path / "out"

    with NatsCluster(tmp_path, 3, name="jobs") as cluster:
        queue = ",".join(cluster.urls) + f"/{QUEUE_NAME}"
        env = {"STREAMPROC_TEST_DELAY_S": "0.3"}
        workers = {}
        caption = ["-m", "streamproc", "caption", "--queue", queue, "--out", str(out), "--format", "jsonl,srt",
                   "--no-progress"]
        submit = ServiceProcess([*caption, *map(str, files), str(poison)], tmp_path, name="submit")
        try:
            # everything queued before any worker runs; the submitter waits, with one progress bar
            _wait_for(lambda: "31 job(s) queued, 0 already queued" in submit.stdout(), 60, submit)
            # 5 of the files submitted again while they wait in the queue
            with ServiceProcess([*caption, "--detach", *map(str, files[:5])], tmp_path, name="again") as again:
                assert again.wait(60) == 0, again.log()
            assert "0 job(s) queued, 5 already queued (duplicates ignored)" in again.stdout(), again.stdout()

            for name in ("w0", "w1", "w2"):
                workers[name] = ServiceProcess(
                    ["-m", "tests.cluster.fast_backend", "worker", "--queue", queue, "--model", str(tiny_model_dir),
                     "--name", name, "--ack-wait", str(ACK_WAIT), "--max-deliveries", "3"],
                    # w0 is slow (2 s per call), so the kill lands inside a job even on a loaded machine
                    tmp_path, name=name, env={**env, "STREAMPROC_TEST_DELAY_S": "2.0"} if name == "w0" else env,
                )
            killed_job = _kill_mid_job(cluster.urls, workers["w0"])
            assert submit.wait(120) == 1, submit.log()  # 1: the poison file failed
            errors = submit.log()
            assert _stream_last_seq(cluster.urls) == 31  # 30 files + the poison file, each once

            states = _states(cluster.urls)
            good = {k: s for k, s in states.items() if s["stem"] != "poison"}
            assert len(good) == 30 and all(s["status"] == "done" for s in good.values())
            assert states[killed_job]["worker"] != "w0" and states[killed_job]["attempt"] == 2
            done_lines = re.findall(r"worker (w\d): (\S+) done", "".join(w.log() for w in workers.values()))
            stems = [stem for _, stem in done_lines]
            assert sorted(stems) == sorted(f.stem for f in files), "a job was finished twice, or not at all"
            assert len({w for w, _ in done_lines}) >= 2
            poisoned = [s for s in states.values() if s["stem"] == "poison"][0]
            assert poisoned["status"] == "failed" and poisoned["attempt"] == 3
            assert re.search(r"poison\.mp4: failed after 3 deliveries", errors), errors
            for path in files:
                lines = (out / f"{path.stem}.jsonl").read_text().splitlines()
                assert lines and all(json.loads(line)["source"] == path.stem for line in lines)
                assert (out / f"{path.stem}.srt").exists()

            # a rerun queues nothing: every file is done
            with ServiceProcess([*caption, *map(str, files)], tmp_path, name="rerun") as rerun:
                assert rerun.wait(60) == 0, rerun.log()
            assert "0 job(s) queued, 0 already queued (duplicates ignored), 30 done before" in rerun.stdout()
            assert _stream_last_seq(cluster.urls) == 31
        finally:
            submit.close()
            for worker in workers.values():
                worker.close()


def _wait_for(predicate, timeout_s: float, process: ServiceProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert process.running or predicate(), process.log()[-3000:]
        assert time.monotonic() < deadline, process.stdout() + process.log()[-3000:]
        time.sleep(0.1)


def _running_on_w0(urls: list[str]) -> list[str]:
    return [job for job, state in _states(urls).items() if state.get("status") == "running" and state.get("worker") == "w0"]


def _kill_mid_job(urls: list[str], worker: ServiceProcess) -> str:
    """SIGKILL `worker` while it is in the middle of a job; that job's id."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _running_on_w0(urls):
            worker.close()  # SIGKILL, the whole process group
            # the job w0 was in when it died (it may have finished that one and begun the next
            # between the read above and the kill); its state stays "running" until ack_wait
            stuck = _running_on_w0(urls)
            assert stuck, "w0 was between two jobs when it was killed"
            return stuck[0]
        time.sleep(0.05)
    raise AssertionError("w0 never had a job half done")
