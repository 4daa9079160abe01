"""The resume manifest of `streamproc caption`: OUT/streamproc-captions.json.

One entry per finished input, video or image, keyed by its path: its fingerprint (size, mtime),
the formats written, what the run found (segments, whether the gate ran) and the caption stores
that received its events. An input is done when its entry's fingerprint and formats match and
its outputs exist; a changed file, a new format or a missing output captions it again.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ..events import Event

log = logging.getLogger(__name__)

MANIFEST = "streamproc-captions.json"


def fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime": round(stat.st_mtime, 3)}


class Manifest:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("%s is unreadable; captioning every file again", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    def is_done(self, path: Path, stem: str, formats: Sequence[str]) -> bool:
        entry = self.entries.get(str(path))
        if not entry or not path.exists():
            return False
        outputs_exist = all((self.out_dir / f"{stem}.{fmt}").exists() for fmt in formats)
        return entry.get("fingerprint") == fingerprint(path) and outputs_exist and entry.get("formats") == list(formats)

    def record(self, path: Path, stem: str, formats: Sequence[str], **found: Any) -> None:
        self.entries[str(path)] = {
            "fingerprint": fingerprint(path),
            "formats": list(formats),
            "outputs": [f"{stem}.{fmt}" for fmt in formats],
            **found,
        }
        self.save()

    def stores(self, path: Path) -> list[str]:
        return list((self.entries.get(str(path)) or {}).get("stores") or [])

    def add_store(self, path: Path, store: str) -> None:
        entry = self.entries.get(str(path))
        if entry is not None:
            entry["stores"] = sorted({*entry.get("stores", []), store})
            self.save()


def replay_jsonl(path: Path, sinks: Sequence) -> int:
    """Hand the events of a caption JSONL file to `sinks` again (lines that are not events are
    passed over: an image's record, a line cut by a crash). Returns the events handed on."""
    count = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                event = Event.from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            if event.type not in ("caption", "alert", "unchanged"):
                continue
            for sink in sinks:
                sink.handle(event)
            count += 1
    return count
