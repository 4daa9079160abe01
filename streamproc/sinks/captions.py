"""Caption files for batch jobs: JSONL (every event), SRT and WebVTT (cues of each caption).

A caption becomes one cue of at most two lines of about 42 characters, or several timed cues when
it is longer (`wrap_cues`). WebVTT cue text is markup, so '&', '<' and '>' are escaped there; SRT
has no escaping and gets the plain text.

One set of files per source, named by the source's stem: `streamproc caption` maps each input video's
source to the video's stem, giving <out>/<stem>.jsonl, <stem>.srt and <stem>.vtt. Cue times are the
segment's media times, so the subtitles line up with the video. Files are written as events come
and flushed after each, so a job that dies leaves valid files up to its last segment; a new run
overwrites them (a re-run starts the video from the beginning).

Segments the scene-change gate skipped (`unchanged` events) are in the JSONL one by one; in SRT and
WebVTT a run of them becomes one cue, UNCHANGED_TEXT over the whole span, or nothing
(`sinks.files.unchanged` / `caption --unchanged`).
"""
from __future__ import annotations

import logging
import textwrap
import threading
from pathlib import Path
from typing import IO, Iterable, Mapping, Optional

from ..config.sinks import UnchangedCues
from ..errors import SinkError
from ..bus import BasePlugin
from ..events import Event

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "srt", "vtt")
LINE_CHARS = 42  # characters per subtitle line, at most (longer words are broken)
CUE_LINES = 2  # lines per cue, at most
UNCHANGED_TEXT = "[no change]"  # the cue over a span the gate found unchanged (the model did not run)


def timestamp(seconds: float, sep: str) -> str:
    """HH:MM:SS<sep>mmm (sep ',' for SRT, '.' for WebVTT)."""
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def cue_text(text: str) -> str:
    """Cue text both formats accept: no blank lines (they end a cue), no '-->' (it starts timing)."""
    lines = [" ".join(line.split()) for line in text.replace("-->", "->").splitlines()]
    cleaned = "\n".join(line for line in lines if line)
    return cleaned or "…"  # an empty cue would end up as no cue at all in some players


def wrap_cues(text: str, start: float, end: float) -> list[tuple[float, float, str]]:
    """(start, end, text) of the cues that show `text` between `start` and `end`.

    Subtitle guidelines (EBU, Netflix, BBC) keep a cue to two lines of about 42 characters, which
    players can show without covering the picture. Longer text is split into several cues, each
    on screen for a share of the time proportional to its length, so the reader's pace stays even.
    """
    lines: list[str] = []
    for paragraph in cue_text(text).split("\n"):
        lines += textwrap.wrap(paragraph, LINE_CHARS, break_long_words=True, break_on_hyphens=False) or [paragraph]
    chunks = ["\n".join(lines[i : i + CUE_LINES]) for i in range(0, len(lines), CUE_LINES)]
    if len(chunks) == 1:
        return [(start, end, chunks[0])]
    weights = [max(1, len(c)) for c in chunks]
    total, cues, at = sum(weights), [], start
    for i, (chunk, weight) in enumerate(zip(chunks, weights)):
        until = end if i == len(chunks) - 1 else round(at + (end - start) * weight / total, 3)
        cues.append((at, max(until, at + 0.001), chunk))
        at = cues[-1][1]
    return cues


def vtt_escape(text: str) -> str:
    """WebVTT cue text is markup: '&' and '<' must be escaped, '>' too for parsers that are strict."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def srt_cue(number: int, start: float, end: float, text: str) -> str:
    """SRT has no escaping: the text is written as it is (cue_text already removed what ends a cue)."""
    return f"{number}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n\n"


def vtt_cue(number: int, start: float, end: float, text: str) -> str:
    return f"{number}\n{timestamp(start, '.')} --> {timestamp(end, '.')}\n{vtt_escape(text)}\n\n"


class _SourceFiles:
    def __init__(self, out_dir: Path, stem: str, formats: Iterable[str], unchanged: UnchangedCues = UnchangedCues.CUE):
        self.handles: dict[str, IO[str]] = {}
        self.cues = 0
        self.last_end = 0.0
        self.unchanged = unchanged
        self.span: Optional[tuple[float, float]] = None  # unchanged segments not yet written as a cue
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            handle = path.open("w", encoding="utf-8", newline="\n")
            if fmt == "vtt":
                handle.write("WEBVTT\n\n")
            handle.flush()
            self.handles[fmt] = handle

    def write(self, event: Event) -> None:
        jsonl = self.handles.get("jsonl")
        if jsonl is not None:
            jsonl.write(event.to_json() + "\n")
            jsonl.flush()
        segment = event.data.get("segment") or {}
        if event.type == "unchanged" and self.unchanged is UnchangedCues.CUE:
            start, end = float(segment["start"]), float(segment["end"])
            # consecutive unchanged segments make one span (a gap of a frame or two still joins)
            if self.span is not None and start - self.span[1] <= 2.0:
                self.span = (self.span[0], max(self.span[1], end))
            else:
                self.end_span()
                self.span = (start, end)
        elif event.type == "caption":
            self.end_span()
            self._cues(event.data["text"], float(segment["start"]), float(segment["end"]))

    def end_span(self) -> None:
        """Write the pending unchanged span as its cue (before a caption, and at the end)."""
        if self.span is not None:
            span, self.span = self.span, None
            self._cues(UNCHANGED_TEXT, *span)

    def _cues(self, text: str, start: float, end: float) -> None:
        # Players reject overlapping or reversed cues; segments never overlap, but guard anyway.
        start = max(start, self.last_end)
        end = max(end, start + 0.001)
        self.last_end = end
        first = self.cues + 1
        cues = wrap_cues(text, start, end)
        self.cues += len(cues)
        for fmt, make in (("srt", srt_cue), ("vtt", vtt_cue)):
            handle = self.handles.get(fmt)
            if handle is not None:
                handle.write("".join(make(first + i, a, b, text) for i, (a, b, text) in enumerate(cues)))
                handle.flush()

    def close(self) -> None:
        if self.handles:
            self.end_span()
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()


class CaptionFileSink(BasePlugin):
    name = "files"

    def __init__(self, out_dir: str | Path, formats: Iterable[str] = ("jsonl",), *, stems: Optional[Mapping[str, str]] = None,
                 unchanged: UnchangedCues = UnchangedCues.CUE):
        self.out_dir = Path(out_dir)
        self.unchanged = UnchangedCues(unchanged)
        self.formats = list(dict.fromkeys(formats))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown caption formats: {', '.join(unknown)}")
        self.stems = dict(stems or {})
        self._files: dict[str, _SourceFiles] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Create the folder, and the files of every source named in `stems` (a video that yields
        no segment still gets valid, empty files, so a batch job can tell it was done)."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with self._lock:
                for source, stem in self.stems.items():
                    if source not in self._files:
                        self._files[source] = _SourceFiles(self.out_dir, stem, self.formats, self.unchanged)
        except OSError as exc:
            raise SinkError(f"cannot create caption files in {self.out_dir}: {exc.strerror or exc}", retryable=False) from None

    def paths(self, source: str) -> dict[str, Path]:
        stem = self.stems.get(source, source)
        return {fmt: self.out_dir / f"{stem}.{fmt}" for fmt in self.formats}

    def handle(self, event: Event) -> None:
        if event.source is None or event.type not in ("caption", "alert", "unchanged"):
            return  # status and stats are service matters, not part of a transcript
        with self._lock:
            files = self._files.get(event.source)
            try:
                if files is None:
                    files = _SourceFiles(self.out_dir, self.stems.get(event.source, event.source), self.formats,
                                         self.unchanged)
                    self._files[event.source] = files
                files.write(event)
            except OSError as exc:
                raise SinkError(f"cannot write caption files for {event.source}: {exc.strerror or exc}") from None

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            for files in self._files.values():
                files.close()
            self._files.clear()
