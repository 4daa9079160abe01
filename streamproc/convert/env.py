"""The converter's Python 3.10 environments, made once and cached (setup_converter.sh beside this
file does the work: tpu_mlir 1.30.2 with torch and only what its LLM converter imports; tpu_mlir
1.21.1 for the old history layout, only when a conversion asks for it).

TPU-MLIR's wheels take Python 3.10 only, so the converter never runs in streamproc's own
interpreter: it runs in these venvs, under STREAMPROC_CONVERTER_CACHE (default
~/.cache/streamproc/converter; about 6 GB, mostly torch's CUDA libraries: PyPI has no other Linux
x86_64 torch, though the converter uses it on the CPU only). Concurrent set-ups of one cache wait
for each other (the script holds a lock).
"""
from __future__ import annotations

import glob
import importlib.metadata
import logging
import os
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import StreamprocError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SETUP_SCRIPT = HERE / "setup_converter.sh"
NORMALIZE_SCRIPT = HERE / "normalize_checkpoint.py"
NEW_VERSION = "1.30.2"
SETUP_FREE_BYTES = 10 * 2**30  # the venv takes ~6 GB, pip's downloads and temporary files more
PYTHON310_HINT = (
    "install one (`pyenv install 3.10`, `uv python install 3.10`, or `apt install python3.10 python3.10-venv`) "
    "and, if it is not on PATH, set PYTHON310=/path/to/python3.10"
)


class ConverterError(StreamprocError):
    """The converter could not be set up or failed on this checkpoint."""

    exit_code = 4


def default_cache() -> Path:
    if os.environ.get("STREAMPROC_CONVERTER_CACHE"):
        return Path(os.environ["STREAMPROC_CONVERTER_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamproc" / "converter"


@dataclass(frozen=True)
class ConverterEnv:
    venv: Path
    version: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def tool(self, name: str) -> Path:
        return self.venv / "bin" / name

    def environ(self) -> dict[str, str]:
        """The environment the converter's tools run in: the venv's bin first on PATH."""
        return dict(os.environ, PATH=f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(self.venv))


def find_python310() -> str | None:
    """The script's own search, done first so a missing 3.10 is one clear error, not a log."""
    if os.environ.get("PYTHON310"):
        return os.environ["PYTHON310"]
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(glob.glob(f"{root}/versions/3.10.*/bin/python3.10")):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3.10")


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(path: Path, needed: int, what: str) -> None:
    free = free_bytes(path)
    if free < needed:
        raise ConverterError(
            f"not enough disk space for {what} under {path}: {free / 2**30:.1f} GiB free, about "
            f"{needed / 2**30:.0f} GiB needed (free some, or set STREAMPROC_CONVERTER_CACHE to another disk)"
        )


def ensure_converter(old_layout: bool = False, cache: Path | None = None, progress: Callable[[str], None] = print) -> ConverterEnv:
    """The ready converter venv (1.21.1 for the old layout, else 1.30.2), set up on first use."""
    cache = cache or default_cache()
    name = "convert-1.21" if old_layout else f"convert-{NEW_VERSION}"
    venv = cache / name
    if not (venv / ".streamproc-ready").is_file():
        if not find_python310():
            raise ConverterError(f"the converter needs Python 3.10 (TPU-MLIR's wheels take no other): {PYTHON310_HINT}")
        check_free_space(cache, SETUP_FREE_BYTES, "the converter environment")
        cache.mkdir(parents=True, exist_ok=True)
        progress(f"setting up the converter in {venv} (once; downloads up to ~3 GB, a few minutes)")
        run_setup(["--with-old"] if old_layout else [], cache, progress)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('tpu_mlir'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    return ConverterEnv(venv, version or "unknown")


def cuda_wheel_sites() -> list[str]:
    """The site-packages folders where this interpreter has nvidia-* wheels (torch's CUDA
    libraries, with the hf extra): the set-up hard-links them instead of fetching ~3 GB again."""
    sites = set()
    for dist in importlib.metadata.distributions():
        if (dist.metadata["Name"] or "").lower().startswith("nvidia-"):
            sites.add(str(dist.locate_file("")))
    return sorted(sites)


def run_setup(args: list[str], cache: Path, progress: Callable[[str], None]) -> None:
    """setup_converter.sh with its progress lines shown and pip's noise kept in setup.log."""
    log_path = cache / "setup.log"
    tail: deque[str] = deque(maxlen=20)
    env = dict(os.environ, STREAMPROC_CONVERTER_CACHE=str(cache))
    env.setdefault("STREAMPROC_CUDA_WHEELS_FROM", os.pathsep.join(cuda_wheel_sites()))
    # Appended to: a second set-up that waits for the first one's lock must not truncate its log.
    with open(log_path, "a", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            ["bash", str(SETUP_SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            line = line.rstrip()
            if line:
                tail.append(line)
            # The script's own steps and pip's downloads are progress; the rest goes to the log.
            if line.startswith("[setup_converter]") or line.lstrip().startswith(("Downloading", "Installing collected")):
                progress("  " + line.replace("[setup_converter] ", "")[:160])
        code = proc.wait()
    if code != 0:
        text = "\n".join(tail)
        if "No space left" in text:
            raise ConverterError(f"the disk under {cache} filled up while setting up the converter (log: {log_path})")
        if "no Python 3.10" in text:
            raise ConverterError(f"the converter needs Python 3.10: {PYTHON310_HINT}")
        last = next((t for t in reversed(tail) if t.strip()), "no output")
        raise ConverterError(f"setting up the converter failed: {last.strip()[:200]} (log: {log_path})")
