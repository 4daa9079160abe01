"""The outbox on a real, tiny filesystem (a tmpfs the test mounts) that runs out of space.

A full disk is back-pressure: one clear line (path, free space), the events wait in a bounded
memory overflow, in order, and are written once space returns; what the overflow cannot keep is
counted in `dropped["disk_full"]`. Before the fix, every append failed with "cannot rollback - no
transaction is active" and the event was lost without a count.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import time
from pathlib import Path

from streamproc.sinks.outbox import Outbox
from tests.support.prerequisites import unavailable


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "1m"):
    """A tmpfs of `size` mounted at `where` (root only), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs for the disk-full test needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs for the disk-full test: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full; returns it (delete it to free space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        chunk = b"\0" * 4096
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def payloads(box: Outbox) -> list[bytes]:
    return [m.payload for m in box.peek(limit=100_000)]


def test_a_full_disk_keeps_events_in_memory_and_writes_them_when_space_returns(tmp_path, caplog):
    with small_filesystem(tmp_path / "fs") as fs:
        box = Outbox(fs / "outbox.sqlite", synchronous="normal")
        box.append("t", b"before")
        filler = fill(fs)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="streamproc.sinks.outbox"):
            sent = [f"event {i} ".encode() * 40 for i in range(150)]
            for payload in sent:
                box.append("t", payload)  # never raises: back-pressure, not an error
            assert box.count() == 151
            assert box.in_memory() > 0
            assert box.dropped["disk_full"] == 0 and box.lost_since_open() == 0
            text = caplog.text
            assert "cannot rollback" not in text
            full_lines = [r for r in caplog.records if "the disk is full" in r.getMessage()]
            assert len(full_lines) == 1, text  # said once, not per event
            assert str(fs / "outbox.sqlite") in full_lines[0].getMessage()
            assert "free" in full_lines[0].getMessage()

            filler.unlink()  # space returns: the next poll writes what waited, in order
            time.sleep(0.6)  # a full disk is tried again at most twice a second
            stored = payloads(box)
            assert box.in_memory() == 0
            assert stored == [b"before", *sent]
            assert "space is back" in caplog.text
        box.close()
        # and it is on disk, not only in memory
        with Outbox(fs / "outbox.sqlite") as again:
            assert payloads(again) == [b"before", *sent]
            assert again.dropped["disk_full"] == 0


def test_what_the_memory_overflow_cannot_keep_is_counted_and_reported(tmp_path):
    with small_filesystem(tmp_path / "fs") as fs:
        box = Outbox(fs / "outbox.sqlite", synchronous="normal", memory_overflow=20)
        fill(fs)
        for i in range(60):
            box.append("t", f"event {i} ".encode() * 40)
        stats = box.stats()
        stored = stats["pending"] - stats["in_memory"]
        assert stats["in_memory"] == 20
        assert stats["dropped"]["disk_full"] == 60 - stored - 20
        assert box.lost_since_open() == stats["dropped"]["disk_full"] > 0
        # the newest are kept (drop_oldest): the last one waits in memory
        box.close()  # still full: what waited in memory is lost too, and counted
        assert box.dropped["disk_full"] == 60 - stored
        assert box.lost_since_open() == 60 - stored
