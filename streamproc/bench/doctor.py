"""`streamproc bench doctor`: how long `streamproc doctor CONFIG` takes, as a user runs it (a new
process each time), on this machine as it is and with every core kept busy, side by side.

The goal (issue 26) is under 3 s for a config with nothing to load, on a busy machine too. The
default config is one: the transformers backend on the tiny model, a generated clip, stdout. The
busy runs start 2 x cores processes that spin on the CPU (a load average of about twice the
core count, as on a shared box running cameras); they are stopped before the table is printed.

`--baseline DIR` measures another source checkout's `streamproc doctor` beside this one (runs
interleaved, so both see the same machine): the before/after of a change as a ratio.

The second table is where the time goes: one `python -X importtime` run, the slowest top-level
imports (inclusive), so an import that creeps back shows up by name.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

GOAL_S = 3.0


def run_command(args) -> str:
    from ..errors import UsageError
    from .measure import progress

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    config = args.config or default_config(progress=progress)
    if not Path(config).is_file():
        raise UsageError(f"--config {config}: no such file")
    busy = args.busy if args.busy is not None else 2 * (os.cpu_count() or 1)
    load = os.getloadavg()[0]
    checkouts = {"this": None, **({f"baseline ({args.baseline})": args.baseline} if args.baseline else {})}
    results = {("as it is", name): found for name, found in timings(config, args.runs, checkouts).items()}
    with Spinners(busy) as spinners:
        busy_results = timings(config, args.runs, checkouts)
        machine = f"busy: {busy} spinning processes (load {spinners.load():.1f})"
        results.update({(machine, name): found for name, found in busy_results.items()})
    return table(results, config, load) + "\n\n" + imports_table(config)


def default_config(progress: Callable[[str], None]) -> Path:
    """A transformers-only config on the tiny model and a short clip, made once in the cache."""
    from ..paths import cache_dir

    folder = cache_dir() / "bench" / "doctor"
    config = folder / "doctor.yaml"
    if config.is_file():
        return config
    from ..qwen.tiny import make_tiny_model
    from ..samples import write_video

    progress(f"making the tiny model and a clip in {folder} (once)")
    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_model(folder / "tiny", seed=0, overwrite=True)
    write_video(folder / "clip.mp4", duration_s=4.0, fps=10, width=320, height=240)
    config.write_text(
        f"sources:\n  - {{name: clip, path: {folder / 'clip.mp4'}}}\n"
        f"backend: {{type: hf, model: {folder / 'tiny'}, device: cpu}}\n"
        "sinks: {stdout: {enabled: true}}\n", encoding="utf-8")
    return config


def doctor_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, *extra, "-m", "streamproc", "doctor", str(config)]


def timings(config: Path, runs: int, checkouts: dict[str, Optional[Path]]) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each `streamproc doctor CONFIG` process, start to exit, per checkout
    (None: the streamproc this bench runs from; a folder: the package in that source checkout),
    the checkouts taking turns run by run. CPU time (user + system) does not depend on the load:
    it is what a busy machine stretches."""
    import resource

    found: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
    for _ in range(runs):
        for name, root in checkouts.items():
            env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())} if root is not None else None
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(doctor_command(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=root)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            found[name].append((wall, cpu))
            if done.returncode not in (0, 1):  # 1: a check failed, which is the doctor's answer, not a crash
                raise RuntimeError(f"streamproc doctor ({name}) exited {done.returncode}: {done.stderr[-500:]}")
    return found


class Spinners:
    """`count` processes that spin on the CPU until the block ends."""

    def __init__(self, count: int):
        self.count = count
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Spinners":
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        time.sleep(2.0)  # let the scheduler (and the load average) see them
        return self

    def load(self) -> float:
        return os.getloadavg()[0]

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()


def table(results: dict[tuple[str, str], Sequence[tuple[float, float]]], config: Path, load: float) -> str:
    import statistics

    cores = os.cpu_count() or 1
    lines = [f"streamproc doctor {config} ({cores} cores, load average {load:.1f} as it is; "
             f"goal: under {GOAL_S:g} s)", "",
             "| machine | streamproc | runs | wall median s | wall worst s | CPU median s | CPU vs this | under the goal |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (machine, name), values in results.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        this = statistics.median(c for _, c in results[(machine, "this")])
        lines.append(f"| {machine} | {name} | {len(values)} | {statistics.median(walls):.2f} | {max(walls):.2f} | "
                     f"{statistics.median(cpus):.2f} | {statistics.median(cpus) / this:.2f} | "
                     f"{'yes' if max(walls) < GOAL_S else 'no'} |")
    return "\n".join(lines)


def slowest_imports(config: Path, top: int = 12) -> list[tuple[str, float]]:
    """(module, inclusive seconds) of the slowest top-level imports of one doctor run."""
    done = subprocess.run(doctor_command(config, "-X", "importtime"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    return parse_importtime(done.stderr)[:top]


def parse_importtime(text: str) -> list[tuple[str, float]]:
    """(module, inclusive seconds) of the top-level imports in `-X importtime` output, slowest first."""
    found: list[tuple[str, float]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith(" ") and not name.startswith("  ") and cumulative.strip().isdigit():
            found.append((name.strip(), int(cumulative) / 1e6))  # one space: imported by the program itself
    return sorted(found, key=lambda item: -item[1])


def imports_table(config: Path, top: Optional[int] = 12) -> str:
    lines = ["slowest top-level imports of one run (python -X importtime, inclusive; the tool adds its own cost)", "",
             "| module | ms |", "|---|---:|"]
    lines += [f"| {name} | {seconds * 1000:.0f} |" for name, seconds in slowest_imports(config, top or 12)]
    return "\n".join(lines)
