"""Batch captioning: many video files, one after another, into caption files.

Resumable: a manifest in the output folder records each finished input (path, size, mtime and
its outputs); a later run skips inputs recorded there whose outputs still exist. A file that
fails gets a one-line error and the others go on.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..backends.base import Backend
from ..config import Config
from ..config.ingest import SourceConfig
from ..errors import StreamprocError
from ..frames import Frame
from ..ingest.segmenter import Segmenter, plan_segments
from ..ingest.sources import VideoSource
from ..qwen.budget import check_sampling
from ..rules.alerts import RuleEngine
from ..sinks.captions import CaptionFileSink
from .describer import SegmentDescriber
from .planning import effective_seq_length, prompt_reserve

log = logging.getLogger(__name__)

MANIFEST = "streamproc-captions.json"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".m2ts", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".wmv"}


@dataclass
class FileOutcome:
    path: Path
    status: str  # done | skipped | failed
    segments: int = 0
    media_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


def expand_inputs(items: Iterable[str]) -> list[Path]:
    """Files as given, folders (their video files, sorted) and glob patterns; each file once."""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif not path.exists() and any(ch in item for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        else:
            found.append(path)  # a missing file is reported by the run, in one line
    return list(dict.fromkeys(p.resolve() if p.exists() else p for p in found))


def stems_for(paths: Sequence[Path]) -> dict[Path, str]:
    """Output names: the file's stem, made unique and safe as a source name."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "video"
        stem, n = base, 2
        while stem in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem)
        stems[path] = stem
    return stems


class BatchCaptioner:
    def __init__(
        self,
        config: Config,
        backend: Backend,
        out_dir: Path,
        formats: Sequence[str],
        *,
        force: bool = False,
        on_progress: Optional[Callable[[Path, float, float], None]] = None,
    ):
        self.config = config
        self.backend = backend
        self.out_dir = Path(out_dir)
        self.formats = list(formats)
        self.force = force
        self.on_progress = on_progress  # (path, media seconds done, media seconds total)
        # Checked once, as the service does at start: frames larger than the model takes would
        # otherwise fail every file in turn, and be retried by every later run.
        check_sampling(backend.inputs.vision, config.sampling)
        self.rules = RuleEngine(config.rules)
        self.describer = SegmentDescriber(backend, config, self.rules)
        self.seq_length = effective_seq_length(getattr(backend, "seq_length", None), config)
        self.manifest_path = self.out_dir / MANIFEST
        self.manifest = self._load_manifest()

    def _load_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("%s is unreadable; captioning every file again", self.manifest_path)
            return {}

    def _save_manifest(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    @staticmethod
    def _fingerprint(path: Path) -> dict:
        stat = path.stat()
        return {"size": stat.st_size, "mtime": round(stat.st_mtime, 3)}

    def is_done(self, path: Path, stem: str) -> bool:
        entry = self.manifest.get(str(path))
        if self.force or not entry or not path.exists():
            return False
        outputs_exist = all((self.out_dir / f"{stem}.{fmt}").exists() for fmt in self.formats)
        return entry.get("fingerprint") == self._fingerprint(path) and outputs_exist and entry.get("formats") == self.formats

    def run(
        self, paths: Sequence[Path], on_file: Optional[Callable[[FileOutcome], None]] = None
    ) -> list[FileOutcome]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stems = stems_for(paths)
        outcomes = []
        for path in paths:
            stem = stems[path]
            outcome = FileOutcome(path, "skipped") if self.is_done(path, stem) else self.caption_file(path, stem)
            outcomes.append(outcome)
            if on_file:
                on_file(outcome)
        return outcomes

    def caption_file(self, path: Path, stem: str) -> FileOutcome:
        started = time.perf_counter()
        source = SourceConfig(name=stem, path=path)
        sink = CaptionFileSink(self.out_dir, self.formats, stems={stem: stem})
        outcome = FileOutcome(path, "done")
        try:
            reserve = prompt_reserve(self.config, self.backend.inputs, self.rules, stem)
            seg = self.config.segmenting
            segmenter = Segmenter(
                stem,
                self.config.sampling.fps,
                lambda h, w: plan_segments(
                    self.seq_length, h, w, self.config.sampling.fps, reserve, seg.answer_reserve, seg.overlap_s,
                    seg.max_duration_s, self.config.sampling.token_pixels, seg.pair_text_tokens,
                ),
            )
            total = _duration(path)
            sink.start()
            video = VideoSource(source, self.config.sampling)
            for item in video.items():
                for segment in segmenter.push(item):
                    self._describe(segment, sink, outcome, path, total)
                if isinstance(item, Frame) and self.on_progress:
                    self.on_progress(path, item.media_time, total)
            for segment in segmenter.finish():
                self._describe(segment, sink, outcome, path, total)
        except StreamprocError as error:
            outcome.status, outcome.error = "failed", str(error)
        finally:
            sink.close()
        outcome.seconds = time.perf_counter() - started
        if outcome.status == "done":
            self.manifest[str(path)] = {
                "fingerprint": self._fingerprint(path),
                "formats": self.formats,
                "segments": outcome.segments,
                "outputs": [f"{stem}.{fmt}" for fmt in self.formats],
            }
            self._save_manifest()
        else:
            for fmt in self.formats:  # half-written outputs of a failed file would look finished
                (self.out_dir / f"{stem}.{fmt}").unlink(missing_ok=True)
        return outcome

    def _describe(self, segment, sink: CaptionFileSink, outcome: FileOutcome, path: Path, total: float) -> None:
        described = self.describer.describe(segment)
        for event in described.events:
            sink.handle(event)
        outcome.segments += 1
        outcome.media_s = segment.end
        if self.on_progress:
            self.on_progress(path, segment.end, total)


def _duration(path: Path) -> float:
    """Media duration in seconds from the container (0 when unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except Exception:  # the run itself reports unreadable files
        return 0.0
    return 0.0
