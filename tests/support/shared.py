"""Things a test run makes once and every pytest-xdist worker uses: generated videos, the tiny
model. They live in the run's base temp folder (the parent of each worker's own one), are built by
whichever worker asks first while the others wait on a file lock, and appear under their final
name only when complete (built beside it, then renamed), so no worker reads half a file.

    path = build_once(run_dir(tmp_path_factory) / "media" / "clip.mp4", lambda part: write_video(part))
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator


def run_dir(tmp_path_factory) -> Path:
    """The folder shared by all workers of this run (the base temp folder itself without xdist)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # xdist gives each worker <basetemp>/popen-gwN
    shared = base / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    return shared


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held by one process at a time (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(target: Path, build: Callable[[Path], object]) -> Path:
    """`target`, made by `build(part)` once for the whole run; `part` is a fresh path beside it
    (same suffix) that becomes `target` when `build` returns."""
    if target.exists():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if target.exists():  # another worker made it while this one waited
            return target
        part = target.with_name(f"{target.stem}.part-{os.getpid()}{target.suffix}")
        if part.is_dir():
            shutil.rmtree(part)
        build(part)
        os.replace(part, target)
    return target
