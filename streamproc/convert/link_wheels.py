"""Hard-link NVIDIA's CUDA library wheels from one Python environment's site-packages into
another's, as if pip had installed them there (setup_converter.sh, before it installs torch's
requirements in the converter venv).

    python link_wheels.py FROM_SITE_PACKAGES TO_SITE_PACKAGES

torch's Linux wheels on PyPI need ~3 GB of `nvidia-*` wheels. They hold no Python code, only
libraries (tagged py3-none), so the ones streamproc's own venv already has serve the Python 3.10
converter venv as well: linked, they cost no download, no unpacking and no disk, and the converter
does not depend on that venv afterwards (a hard link is a file of its own). pip then finds them
installed; one at a version torch does not want, it replaces. Nothing is linked across file
systems, and a wheel is linked whole (its files, then its .dist-info) or not at all.
Python 3.10, standard library only: it runs in the converter venv.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path


def version_independent(info: Path) -> bool:
    """Whether the wheel's tags say it runs on any Python (py3-none-*)."""
    try:
        lines = (info / "WHEEL").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    tags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
    return bool(tags) and all(tag.split("-")[:2] in (["py3", "none"], ["py2.py3", "none"]) for tag in tags)


def recorded_files(source: Path, info: Path) -> list[str]:
    with open(info / "RECORD", newline="", encoding="utf-8") as handle:
        paths = [row[0] for row in csv.reader(handle) if row]
    inside = [p for p in paths if not p.startswith("..") and not os.path.isabs(p)]
    if len(inside) != len(paths) or not all((source / p).is_file() for p in inside):
        raise OSError(f"{info.name}: RECORD lists files outside site-packages or missing")
    return inside


def link_wheel(source: Path, target: Path, info: Path) -> None:
    files = recorded_files(source, info)
    data = [p for p in files if not p.startswith(info.name + "/")]
    meta = [p for p in files if p.startswith(info.name + "/")]
    done: list[Path] = []
    try:
        for relative in data + meta:  # the .dist-info last: pip sees the wheel only when it is whole
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists():
                destination.unlink()
            os.link(source / relative, destination)
            done.append(destination)
    except OSError:
        for path in done:
            path.unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    source, target = Path(argv[1]), Path(argv[2])
    if not source.is_dir() or os.stat(source).st_dev != os.stat(target).st_dev:
        return 0
    for info in sorted(source.glob("nvidia_*.dist-info")):
        if not version_independent(info) or (target / info.name).exists():
            continue
        try:
            link_wheel(source, target, info)
            print(f"linked {info.name[: -len('.dist-info')]}")
        except OSError as exc:
            print(f"not linked {info.name}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
