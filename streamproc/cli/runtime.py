"""`streamproc runtime`: fetch the Sophgo runtime's CPU simulator, so bmodels run without a TPU.

The simulator build of libbmrt (with libbmlib and the chip's libcmodel) ships inside PyPI's
tpu_mlir wheel. This downloads that wheel once (about 312 MB, with pip, for CPython 3.10; it is
never installed), takes out the four libraries and lays them out one folder per chip:

    DEST/bm1684x/{libbmrt.so, libbmrt.so.1.0 -> libbmrt.so, libbmlib.so.0, libcmodel.so, VERSION}
    DEST/bm1688/{the same; libcmodel.so is the BM1688 one}

libbmlib finds libcmodel.so in its own folder, so STREAMPROC_BMRT_DIR=DEST/<chip> is all the
engine needs. Nothing is fetched when both folders are complete. (tools/bmodel/fetch_runtime.sh
does the same for machines without streamproc.)
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from ..errors import StreamprocError, UsageError
from ..paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_DEST = cache_dir() / "tpu-runtime"  # $XDG_CACHE_HOME/streamproc, else ~/.cache/streamproc
DEFAULT_VERSION = "1.30.2"
CHIPS = ("bm1684x", "bm1688")
FILES = ("libbmrt.so", "libbmrt.so.1.0", "libbmlib.so.0", "libcmodel.so", "VERSION")


class RuntimeFetchError(StreamprocError):
    """The wheel could not be downloaded or does not hold the runtime."""

    exit_code = 5
    retryable = True


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "runtime",
        help="fetch the Sophgo runtime's CPU simulator (run bmodels without a TPU)",
        formatter_class=HelpFormatter,
        description="Downloads PyPI's tpu_mlir wheel once (about 312 MB; not installed) and extracts the CPU "
        "simulator build of libbmrt, libbmlib and libcmodel into DEST/bm1684x and DEST/bm1688. Prints the "
        "STREAMPROC_BMRT_DIR setting to use. Does nothing when DEST is already complete.",
        epilog="examples:\n  streamproc runtime\n  export STREAMPROC_BMRT_DIR=~/.cache/streamproc/tpu-runtime/bm1684x\n"
        "  streamproc runtime --dest /opt/streamproc/runtime --wheel tpu_mlir-1.30.2-py3-none-any.whl",
    )
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="where the per-chip folders go")
    parser.add_argument("--wheel", type=Path, default=os.environ.get("TPU_MLIR_WHEEL") or None,
                        help="use this local tpu_mlir wheel instead of downloading (default: $TPU_MLIR_WHEEL)")
    parser.add_argument("--version", dest="tpu_mlir_version", default=os.environ.get("TPU_MLIR_VERSION", DEFAULT_VERSION),
                        help="tpu_mlir version to download ($TPU_MLIR_VERSION)")
    parser.add_argument("--force", action="store_true", help="fetch again even if DEST is complete")
    parser.set_defaults(func=run)


def complete(dest: Path) -> bool:
    return all((dest / chip / name).exists() and (dest / chip / name).stat().st_size > 0
               for chip in CHIPS for name in FILES)


def run(args) -> int:
    dest = args.dest.expanduser()
    if complete(dest) and not args.force:
        version = (dest / CHIPS[0] / "VERSION").read_text(encoding="utf-8").strip()
        print(f"{dest} already has the runtime ({version})")
    else:
        fetch(dest, args.wheel, args.tpu_mlir_version)
        print(f"runtime for {', '.join(CHIPS)} written under {dest}")
    print(f"use it with: export STREAMPROC_BMRT_DIR={dest / CHIPS[0]}   (BM1688: {dest / CHIPS[1]})")
    return 0


def fetch(dest: Path, wheel: Optional[Path] = None, version: str = DEFAULT_VERSION) -> None:
    with tempfile.TemporaryDirectory(prefix="streamproc-runtime-") as tmp:
        if wheel is None:
            wheel = download(Path(tmp), version)
        elif not Path(wheel).is_file():
            raise UsageError(f"--wheel {wheel}: no such file")
        extract(Path(wheel).expanduser(), dest, Path(tmp) / "x")


def download(folder: Path, version: str) -> Path:
    print(f"downloading tpu_mlir=={version} (about 312 MB) with pip ...", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
               "--implementation", "cp", "--disable-pip-version-check", "-q", "-d", str(folder / "dl"),
               f"tpu_mlir=={version}"]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as error:
        raise RuntimeFetchError(f"cannot run pip ({error}); download the wheel yourself and pass --wheel") from None
    wheels = sorted((folder / "dl").glob("tpu_mlir-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stdout or "").strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise RuntimeFetchError(f"pip could not download tpu_mlir=={version}: {last[0]} (offline? pass --wheel FILE)")
    return wheels[0]


def extract(wheel: Path, dest: Path, scratch: Path) -> None:
    wanted = {"libbmrt.so": "tpu_mlir/lib/libbmrt.so", "libbmlib.so.0": "tpu_mlir/lib/libbmlib.so.0"}
    cmodels = {chip: f"tpu_mlir/lib/libcmodel_{chip}.so" for chip in CHIPS}
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            missing = sorted((set(wanted.values()) | set(cmodels.values())) - names)
            if missing:
                raise RuntimeFetchError(f"{wheel.name} lacks {', '.join(missing)}: not a tpu_mlir wheel with the runtime",
                                        retryable=False)
            for member in [*wanted.values(), *cmodels.values()]:
                archive.extract(member, scratch)
    except zipfile.BadZipFile:
        raise RuntimeFetchError(f"{wheel} is not a wheel (a damaged download?)", retryable=False) from None
    for chip in CHIPS:
        folder = dest / chip
        folder.mkdir(parents=True, exist_ok=True)
        for name, member in wanted.items():
            _install(scratch / member, folder / name)
        _install(scratch / cmodels[chip], folder / "libcmodel.so")
        link = folder / "libbmrt.so.1.0"  # its SONAME
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("libbmrt.so")
        (folder / "VERSION").write_text(f"tpu_mlir ({wheel.name}), libcmodel.so = libcmodel_{chip}.so\n", encoding="utf-8")
        log.info("runtime for %s in %s", chip, folder)


def _install(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)  # an engine holding the old file keeps its copy
