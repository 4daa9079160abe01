"""Run a measurement in a fresh Python process and read back its CPU and wall time.

A fresh process per run keeps one method's caches, threads and imports from billing another.
The worker prints one JSON line: {"cpu_s": ..., "wall_s": ..., **extra}.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from ..paths import cache_dir


@dataclass
class Measurement:
    name: str
    runs: list[dict] = field(default_factory=list)
    error: str | None = None

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)


# Clips, tokenizers and stores the benches make once and reuse ($XDG_CACHE_HOME/streamproc, else
# ~/.cache/streamproc).
DEFAULT_CACHE = cache_dir() / "bench"


# A bench's progress lines: logged, so they go where the CLI's log goes (stderr) and the results
# table on stdout stays clean; `streamproc bench` shows them without -v (cli/bench.py).
PROGRESS = logging.getLogger("streamproc.bench.progress")


def progress(message: str) -> None:
    PROGRESS.info(message)


def run_worker(module: str, args: list[str], timeout_s: float = 1800) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(tail[0])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def publish_table(text: str, out=None) -> int:
    """Print a bench command's results table (its output, on stdout), and write it to `out` (a
    Path, --out) when given; the command's exit status."""
    print(text)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
    return 0
