"""Batch captioning: many video files, one after another, into caption files.

Resumable: a manifest in the output folder records each finished input, video or image (path,
size, mtime and its outputs); a later run skips inputs recorded there whose outputs still exist.
A file that fails gets a one-line error and the others go on.

With the scene-change gate (`GateChoice`; on by default for recordings of LONG_RECORDING_S or
more) each file gets the same `SceneGate` as `run` gives a camera: a segment that shows nothing
new is not sent to the model. It becomes an `unchanged` event (and the rules repeat their last
verdicts, as in the service), which the files show as such (sinks/captions.py). The model time a
skipped segment would have cost is estimated from the described ones (`GateSavings`).

Events go to the file's caption files and to any further sinks the caller hands in, already
started (the caption store: each file is its own source there, named by its output stem).
"""
from __future__ import annotations

import enum
import glob
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..backends.base import Backend
from ..config import Config
from ..config.ingest import SourceConfig
from ..config.sinks import UnchangedCues
from ..errors import StreamprocError
from ..events import Event
from ..frames import Frame, Segment
from ..gate import Decision, SceneGate, SkippedSegment
from ..ingest.segmenter import Segmenter, plan_segments
from ..ingest.sources import VideoSource
from ..qwen.budget import check_sampling
from ..rules.alerts import RuleEngine
from ..sinks.captions import CaptionFileSink
from ..pipeline.describer import Described, SegmentDescriber, describe_settings, unchanged_events
from ..pipeline.planning import effective_seq_length, prompt_reserve
from .manifest import Manifest, replay_jsonl

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".m2ts", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".wmv"}
LONG_RECORDING_S = 600.0  # the gate's default heartbeat: shorter clips are described segment by segment


class GateChoice(enum.Enum):
    AUTO = "auto"  # on for recordings of LONG_RECORDING_S or more, or when the config's gate.mode says so
    ON = "on"
    OFF = "off"


@dataclass
class FileOutcome:
    path: Path
    status: str  # done | skipped | failed
    segments: int = 0
    media_s: float = 0.0
    seconds: float = 0.0
    error: str = ""
    gated: bool = False
    described: int = 0  # segments the model described
    unchanged: int = 0  # segments the gate skipped
    model_s: float = 0.0  # seconds the model spent on the described ones (rule questions included)
    unchanged_media_s: float = 0.0


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


def unreadable_videos(paths: Sequence[Path], sampling) -> list[FileOutcome]:
    """The files that cannot be opened as videos (missing, empty, not a video, no video track), as
    failed outcomes: checked before the model loads, so a wrong path costs a second, not a load."""
    stems = stems_for(paths)
    failed = []
    for path in paths:
        try:
            VideoSource(SourceConfig(name=stems[path], path=path), sampling).open().close()
        except StreamprocError as error:
            failed.append(FileOutcome(path, "failed", error=str(error)))
    return failed


# -- the gate, one segment at a time (small parts, for the composition root too) ---------------


def choose_gate(choice: GateChoice, duration_s: float, config: Config) -> Optional[SceneGate]:
    """The scene-change gate for one file (the config's gate settings, as `run` uses them), or
    None when every segment is described."""
    if choice is GateChoice.OFF:
        return None
    if choice is GateChoice.AUTO and duration_s < LONG_RECORDING_S and config.gate.mode == "off":
        return None
    return SceneGate(config.gate.model_copy(update={"mode": "scene_change"}))


def skipped_events(segment: Segment, decision: Decision, rules: RuleEngine) -> list[Event]:
    """A segment the gate skipped: its unchanged event, then what the rules' repeated verdicts
    raise or clear (the service's own rule, pipeline.describer.unchanged_events)."""
    return unchanged_events(rules, frozenset())(SkippedSegment.of(segment, decision))


def caption_segment(
    segment: Segment, gate: Optional[SceneGate], describer: SegmentDescriber, rules: RuleEngine
) -> tuple[list[Event], Optional[Described]]:
    """The events of one segment, and the model's work (None when the gate skipped it)."""
    if gate is not None:
        decision = gate.decide(segment)
        if not decision.describe:
            return skipped_events(segment, decision, rules), None
    try:
        described = describer.describe(segment)
    except StreamprocError:
        if gate is not None:
            gate.forget()  # not described: the reference frames describe nothing
        raise
    return described.events, described


@dataclass
class GateSavings:
    """What the gate saved over a run: segments not described, and the model time they would
    have cost at the run's own mean per described segment."""

    described: int
    unchanged: int
    model_s: float
    unchanged_media_s: float

    @classmethod
    def of(cls, outcomes: Sequence[FileOutcome]) -> Optional["GateSavings"]:
        gated = [o for o in outcomes if o.gated and o.status != "skipped"]
        if not gated:
            return None
        return cls(sum(o.described for o in gated), sum(o.unchanged for o in gated),
                   sum(o.model_s for o in gated), sum(o.unchanged_media_s for o in gated))

    @property
    def saved_s(self) -> float:
        return self.unchanged * self.model_s / self.described if self.described else 0.0

    def line(self) -> str:
        total = self.described + self.unchanged
        per = f", {self.model_s / self.described:.1f} s per described segment" if self.described else ""
        return (f"gate: {self.unchanged} of {total} segments unchanged ({_clock(self.unchanged_media_s)} of video), "
                f"not described: about {_clock(self.saved_s)} of model time saved{per}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# -- the captioner -------------------------------------------------------------------------------


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
        gate: GateChoice = GateChoice.OFF,
        sinks: Sequence = (),
        unchanged: Optional[UnchangedCues] = None,
        on_segment: Optional[Callable[[Path], None]] = None,
        store_key: Optional[str] = None,
    ):
        self.config = config
        self.backend = backend
        self.out_dir = Path(out_dir)
        self.formats = list(formats)
        self.force = force
        self.on_progress = on_progress  # (path, media seconds done, media seconds total)
        self.on_segment = on_segment  # (path) after each segment, described or not
        self.gate = gate
        self.sinks = list(sinks)  # started by the caller; every event goes to them too
        self.store_key = store_key  # the store the sinks write to, recorded per file in the manifest
        self.unchanged = unchanged if unchanged is not None else config.sinks.files.unchanged
        # Checked once, as the service does at start: frames larger than the model takes would
        # otherwise fail every file in turn, and be retried by every later run.
        check_sampling(backend.inputs.vision, config.sampling)
        self.rules = RuleEngine(config.rules)
        settings = describe_settings(config)
        # an archive has no alert to hurry: its captions keep generation.max_new_tokens, not the
        # live policy's shorter budget (streamproc/urgency.py)
        settings = replace(settings, policy=replace(settings.policy, caption_tokens=settings.params.max_new_tokens))
        self.describer = SegmentDescriber(backend, settings, self.rules)
        self.seq_length = effective_seq_length(backend.capabilities.seq_length, config)
        self.manifest = Manifest(self.out_dir)

    def is_done(self, path: Path, stem: str) -> bool:
        return not self.force and self.manifest.is_done(path, stem, self.formats)

    def run(
        self, paths: Sequence[Path], on_file: Optional[Callable[[FileOutcome], None]] = None
    ) -> list[FileOutcome]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stems = stems_for(paths)
        outcomes = []
        for path in paths:
            stem = stems[path]
            if self.is_done(path, stem):
                outcome = FileOutcome(path, "skipped")
                self._fill_store(path, stem)
            else:
                outcome = self.caption_file(path, stem)
            outcomes.append(outcome)
            if on_file:
                on_file(outcome)
        return outcomes

    def _fill_store(self, path: Path, stem: str) -> None:
        """A file done before, but not into this run's store: its JSONL has every event, so the
        store gets them from there, without the model."""
        if not self.sinks or self.store_key is None or self.store_key in self.manifest.stores(path):
            return
        jsonl = self.out_dir / f"{stem}.jsonl"
        if jsonl.is_file():
            count = replay_jsonl(jsonl, self.sinks)
            self.manifest.add_store(path, self.store_key)
            log.info("%s: %d stored events from %s (captioned before)", stem, count, jsonl.name)

    def caption_file(self, path: Path, stem: str) -> FileOutcome:
        started = time.perf_counter()
        sink = CaptionFileSink(self.out_dir, self.formats, stems={stem: stem}, unchanged=self.unchanged)
        outcome = FileOutcome(path, "done")
        try:
            total = _duration(path)
            gate = choose_gate(self.gate, total, self.config)
            outcome.gated = gate is not None
            segmenter = self._segmenter(stem)
            sink.start()
            sinks = [sink, *self.sinks]
            for item in VideoSource(SourceConfig(name=stem, path=path), self.config.sampling).items():
                for segment in segmenter.push(item):
                    self._segment(segment, gate, sinks, outcome, path, total)
                if isinstance(item, Frame) and self.on_progress:
                    self.on_progress(path, item.media_time, total)
            for segment in segmenter.finish():
                self._segment(segment, gate, sinks, outcome, path, total)
        except StreamprocError as error:
            outcome.status, outcome.error = "failed", str(error)
        finally:
            sink.stop()
        outcome.seconds = time.perf_counter() - started
        if outcome.status == "done":
            self.manifest.record(path, stem, self.formats, segments=outcome.segments, gate=outcome.gated,
                                 stores=[self.store_key] if self.store_key and self.sinks else [])
        else:
            for fmt in self.formats:  # half-written outputs of a failed file would look finished
                (self.out_dir / f"{stem}.{fmt}").unlink(missing_ok=True)
        return outcome

    def _segmenter(self, stem: str) -> Segmenter:
        reserve = prompt_reserve(self.config, self.backend.inputs, self.rules, stem)
        seg, fps = self.config.segmenting, self.config.sampling.fps
        return Segmenter(stem, fps, lambda h, w: plan_segments(
            self.seq_length, h, w, fps, reserve, seg.answer_reserve, seg.overlap_s, seg.max_duration_s,
            self.config.sampling.token_pixels, seg.pair_text_tokens,
        ))

    def _segment(self, segment: Segment, gate: Optional[SceneGate], sinks: Sequence, outcome: FileOutcome,
                 path: Path, total: float) -> None:
        events, described = caption_segment(segment, gate, self.describer, self.rules)
        for event in events:
            for sink in sinks:
                sink.handle(event)
        outcome.segments += 1
        outcome.media_s = segment.end
        if described is None:
            outcome.unchanged += 1
            outcome.unchanged_media_s += segment.end - segment.start
        else:
            outcome.described += 1
            outcome.model_s += described.seconds
        if self.on_segment:
            self.on_segment(path)
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
