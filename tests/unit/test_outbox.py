"""The SQLite outbox: order, delete on ack, bounds and their policies, threads, restarts, kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamproc.errors import SinkError
from streamproc.sinks.outbox import Message, Outbox

REPO = Path(__file__).resolve().parents[2]


def fill(box: Outbox, n: int, start: int = 0, topic: str = "t") -> list:
    return [box.append(topic, f"m{i}".encode(), qos=1, event_id=f"e{i}") for i in range(start, start + n)]


def payloads(box: Outbox) -> list[str]:
    return [m.payload.decode() for m in box.peek(limit=10**6)]


def test_append_peek_delete_in_order(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        seqs = fill(box, 5)
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert box.count() == len(box) == 5
        first = box.peek(limit=2)
        assert [m.payload for m in first] == [b"m0", b"m1"]
        assert first[0].qos == 1 and first[0].retain is False and first[0].event_id == "e0"
        assert [m.payload for m in box.peek(after_seq=first[1].seq, limit=10)] == [b"m2", b"m3", b"m4"]
        # acks may arrive out of order; what is left keeps its order
        assert box.delete([seqs[1], seqs[3]]) == 2
        assert box.delete(seqs[1]) == 0  # already gone: a duplicate PUBACK is harmless
        assert payloads(box) == ["m0", "m2", "m4"]
        assert box.count() == 3


def test_retain_and_binary_payloads_round_trip(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        box.append("a/b", bytes(range(256)), qos=2, retain=True)
        (m,) = box.peek()
        assert m.topic == "a/b" and m.payload == bytes(range(256)) and m.qos == 2 and m.retain is True


def test_survives_restart_and_sequence_keeps_growing(tmp_path):
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        seqs = fill(box, 4)
        box.delete(seqs[:2])
    with Outbox(path) as box:
        assert box.count() == 2
        assert payloads(box) == ["m2", "m3"]
        # AUTOINCREMENT: a new row never reuses a deleted seq, so "by seq" stays "in order"
        (new,) = fill(box, 1, start=4)
        assert new > max(seqs)
        assert payloads(box) == ["m2", "m3", "m4"]


def test_drop_oldest_when_full_is_counted_and_remembered(tmp_path, caplog):
    path = tmp_path / "o.db"
    with Outbox(path, max_messages=5, when_full="drop_oldest") as box:
        fill(box, 8)
        assert payloads(box) == ["m3", "m4", "m5", "m6", "m7"]
        assert box.dropped == {"oldest": 3, "newest": 0, "disk_full": 0}
        assert box.stats()["pending"] == 5
    assert "full" in caplog.text
    with Outbox(path, max_messages=5) as box:
        assert box.dropped == {"oldest": 3, "newest": 0, "disk_full": 0}


def test_drop_newest_when_full_refuses_new_messages(tmp_path):
    with Outbox(tmp_path / "o.db", max_messages=5, when_full="drop_newest") as box:
        seqs = fill(box, 8)
        assert seqs[5:] == [None, None, None]
        assert payloads(box) == ["m0", "m1", "m2", "m3", "m4"]
        assert box.dropped == {"oldest": 0, "newest": 3, "disk_full": 0}
        # room again after an ack
        box.delete(seqs[0])
        assert box.append("t", b"late") is not None


def test_groups_are_atomic(tmp_path):
    """An alert and its retained state go in together or not at all."""
    group = [Message("alerts", b"a"), Message("state", b"ON", retain=True)]
    with Outbox(tmp_path / "n.db", max_messages=3, when_full="drop_newest") as box:
        assert len(box.append_many(group)) == 2
        assert box.append_many(group) == []  # only one slot left: the whole group is refused
        assert box.count() == 2 and box.dropped["newest"] == 2
    with Outbox(tmp_path / "o.db", max_messages=3, when_full="drop_oldest") as box:
        box.append_many(group)
        box.append_many([Message("x", b"1"), Message("y", b"2")])
        assert [m.topic for m in box.peek()] == ["state", "x", "y"]


def test_producers_and_a_publisher_in_threads(tmp_path):
    """Producers append while a publisher peeks and deletes: nothing lost, nothing twice, order kept."""
    box = Outbox(tmp_path / "o.db", synchronous="normal")
    producers, per = 4, 250
    seen: list[str] = []
    done = threading.Event()

    def produce(p: int) -> None:
        for i in range(per):
            box.append(f"src{p}", f"{p}:{i}".encode())

    def publish() -> None:
        last = 0
        while True:
            batch = box.peek(after_seq=last, limit=50)
            if not batch:
                if done.is_set() and box.count() == 0:
                    return
                time.sleep(0.001)
                continue
            seen.extend(m.payload.decode() for m in batch)
            last = batch[-1].seq
            box.delete(m.seq for m in batch)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    consumer = threading.Thread(target=publish)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    consumer.join(30)
    box.close()
    assert len(seen) == producers * per == len(set(seen))
    for p in range(producers):
        mine = [int(s.split(":")[1]) for s in seen if s.startswith(f"{p}:")]
        assert mine == list(range(per))


def test_a_second_process_is_refused_and_a_closed_outbox_says_so(tmp_path):
    path = tmp_path / "o.db"
    box = Outbox(path)
    with pytest.raises(SinkError, match="in use by another"):
        Outbox(path)
    box.close()
    with pytest.raises(SinkError, match="closed"):
        box.append("t", b"x")
    Outbox(path).close()  # the lock went with close()


def test_rows_survive_kill_9_of_the_writer(tmp_path):
    path = tmp_path / "o.db"
    code = (
        "import sys, time\n"
        "from streamproc.sinks.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "for i in range(200):\n"
        "    box.append('t', str(i).encode())\n"
        "print('done', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    with Outbox(path) as box:  # the dead writer's lock is gone; every committed row is there
        assert payloads(box) == [str(i) for i in range(200)]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        Outbox(tmp_path / "a.db", max_messages=0)
    with pytest.raises(ValueError):
        Outbox(tmp_path / "b.db", when_full="drop_random")  # type: ignore[arg-type]
