"""Files attached to raised alerts: a JPEG snapshot and a short MP4 clip of the segment.

What a person acting on a notification wants first is the picture. For every `raised` alert the
attachments plug-in (`plugin.py`, an ENRICH plug-in of the event bus) writes, before the event
goes to any other plug-in:
- `snapshot`: the segment's middle frame as JPEG (the frame the caption's event also carries);
- `clip`: the segment as MP4 -- the original packets remuxed for file sources, the sampled frames
  encoded as H.264 for live ones (see clips.py for why).
The event then names them: `data["attachments"] = {"snapshot": {path, size, sha256, url, ...},
"clip": {path, size, sha256, duration, url, start, end, method}}`.

Written in the publishing thread, synchronously: an event must never point at a file that does not exist
yet, and alerts are rare (one per raise, after hysteresis), while a model request takes seconds.
Measured on the shared 2-core dev machine: remuxing 20 s of 720p25 H.264 takes 70-110 ms; encoding
20 sampled 504x280 frames 0.4-0.65 s; the worker's next segment waits that long, once per raised
alert. A failure to write them is logged and counted (`streamproc_errors_total{stage="attachment"}`);
the alert goes out without them.

Files are kept under `dir/<source>/` and removed by age (`max_age_h`) and total size (`max_mb`,
oldest first) after each write and at start. `GET /attachments/<source>/<file>` on the service's
HTTP port serves them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..config.ingest import SourceConfig
    from ..config.sinks import AttachmentsConfig
    from ..events import Event
    from ..frames import Segment

log = logging.getLogger(__name__)

ROUTE = "/attachments/"
_TYPES = {".jpg": "image/jpeg", ".mp4": "video/mp4"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class AttachmentStore:
    def __init__(self, config: "AttachmentsConfig", sources: Sequence["SourceConfig"] = ()):
        self.config = config
        # absolute from the start: an event names its files by a path its readers can open, whatever
        # the service's working directory (the default folder is relative to it)
        self.dir = Path(config.dir).expanduser().absolute()
        self.sources = {s.name: s for s in sources}
        self.base_url = (config.base_url or "").rstrip("/")
        self._lock = threading.Lock()  # retention walks the folder; one at a time
        self.total_bytes = 0

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.enforce_retention()

    # -- writing ---------------------------------------------------------------------------

    def attach(self, event: "Event", segment: "Segment") -> "Event":
        folder = self.dir / _safe(event.source or "service")
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe(event.id.replace(":", "_").replace("@", "_"))
        attachments: dict[str, Any] = {}
        image = segment.frames[len(segment.frames) // 2].image if segment.frames else None
        if image is not None:
            from ..media.jpeg import encode_jpeg

            path = folder / f"{stem}.jpg"
            _write_atomically(path, encode_jpeg(image))
            attachments["snapshot"] = self._describe(path)
        if self.config.clip and segment.frames:
            clip = self._clip(segment, folder / f"{stem}.mp4")
            if clip is not None:
                attachments["clip"] = {
                    **self._describe(clip.path),
                    "duration": round(clip.duration, 3),
                    "start": round(clip.start, 3),
                    "end": round(clip.start + clip.duration, 3),
                    "method": clip.method,
                }
        self.enforce_retention()
        data = dict(event.data, attachments=attachments)
        return replace(event, data=data, snapshot=image)

    def _clip(self, segment: "Segment", out: Path):
        from ..media.clips import encode_clip, remux_clip

        tmp = out.with_name(out.name + ".part")
        source = self.sources.get(segment.source)
        clip = None
        try:
            if source is not None and source.path is not None and not source.live:
                try:  # frames carry the stream's own timestamps: the range to copy
                    start = segment.frames[0].pts
                    clip = remux_clip(Path(source.path), start, start + segment.duration, tmp)
                except Exception as error:  # ClipError, OSError or PyAV's errors for an odd file
                    log.info("%s: clip by remuxing failed (%s); encoding the sampled frames", segment.source, error)
            if clip is None:
                clip = encode_clip([f.image for f in segment.frames], segment.fps, tmp)
                clip = replace(clip, start=segment.start)
            os.replace(tmp, out)
            return replace(clip, path=out)
        except Exception as error:
            log.error("%s: no clip for segment %d: %s", segment.source, segment.index, error)
            tmp.unlink(missing_ok=True)
            return None

    def _describe(self, path: Path) -> dict[str, Any]:
        rel = path.relative_to(self.dir).as_posix()
        return {
            "path": str(path),
            "size": path.stat().st_size,
            "sha256": sha256_of(path),
            "url": f"{self.base_url}{ROUTE}{rel}",
            "content_type": _TYPES.get(path.suffix, "application/octet-stream"),
        }

    # -- retention -------------------------------------------------------------------------

    def enforce_retention(self, now: Optional[float] = None) -> list[Path]:
        """Remove files older than max_age_h, then the oldest until the total fits max_mb."""
        now = time.time() if now is None else now
        max_age = self.config.max_age_h * 3600
        max_bytes = int(self.config.max_mb * 1024 * 1024)
        removed: list[Path] = []
        with self._lock:
            files = []
            for path in self.dir.rglob("*"):
                try:
                    if path.is_file() and path.suffix in _TYPES:
                        st = path.stat()
                        files.append((st.st_mtime, st.st_size, path))
                except OSError:
                    continue  # removed meanwhile
            files.sort()
            total = sum(size for _, size, _ in files)
            for mtime, size, path in files:
                if now - mtime <= max_age and total <= max_bytes:
                    break
                try:
                    path.unlink()
                    removed.append(path)
                    total -= size
                except OSError as error:
                    log.warning("cannot remove old attachment %s: %s", path, error.strerror)
            self.total_bytes = total
        if removed:
            log.info("attachments: removed %d old file(s), %.1f MB kept", len(removed), total / 1e6)
        return removed

    # -- HTTP ------------------------------------------------------------------------------

    def read(self, url_path: str) -> Optional[tuple[str, bytes]]:
        """(content type, bytes) of `/attachments/<source>/<file>`, or None: missing, or outside
        `dir` (a path with .. or a link out is refused)."""
        rel = url_path[len(ROUTE):] if url_path.startswith(ROUTE) else ""
        root = self.dir.resolve()
        path = (root / rel).resolve()
        if not rel or root not in path.parents or path.suffix not in _TYPES or not path.is_file():
            return None
        try:
            return _TYPES[path.suffix], path.read_bytes()
        except OSError:  # removed by retention meanwhile
            return None


def raised(event: "Event") -> bool:
    return event.type == "alert" and event.data.get("transition") == "raised"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
