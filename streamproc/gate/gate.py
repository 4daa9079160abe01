"""The scene-change gate of one source: describe this segment, or say "unchanged" and skip it.

A segment is described when any of these holds, checked in this order (the first gives the
reason reported in metrics and events):

  off        the gate is off (`gate.mode: off`)
  always     the source says `gate: {always: true}`
  first      the first segment of the source since the service started, or since its frame size
             changed (nothing to compare with)
  gap        the stream dropped before this segment (`segment.gap_before`)
  resync     the last segment the gate passed was never described (dropped by a full lane, or
             the model failed), so the reference frames describe nothing
  heartbeat  `heartbeat_s` media seconds have passed since the end of the last described segment
  change     some frame differs from the one before it (the previous segment's last frame for the
             first), or the middle or last frame differs from every reference frame: up to
             `reference_frames` frames of the last described segment. Comparing with the reference
             catches changes too slow to see frame to frame (a door opening over a minute).

Flicker (flicker.py): a cell whose changes keep returning to what it showed a few seconds before
(the digits of a timestamp overlay, a blinking light, codec pops) in more than `flicker_rate` of
the recent frame pairs is left out. Only such cells: the mask never spreads to neighbours, and a
cell showing something new (a person, a hand, a cut) always counts.

Otherwise the segment is "unchanged", with the largest score seen (< 1).

One gate per source, called from that source's intake thread only; `forget()` may be called from
any thread (it only raises a flag).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..config.gate import GateConfig, SourceGateConfig
from ..frames import Segment
from .flicker import FlickerTracker
from .score import FrameScorer, ScoreParams, Thumb

DESCRIBE_REASONS = ("off", "always", "first", "gap", "resync", "heartbeat", "change")
SKIP_REASON = "unchanged"


@dataclass(frozen=True)
class Decision:
    describe: bool
    reason: str  # one of DESCRIBE_REASONS, or SKIP_REASON
    score: float = 0.0  # the largest change score computed (>= 1 means change); 0 if none was needed


class SceneGate:
    def __init__(self, config: GateConfig, source: Optional[SourceGateConfig] = None):
        self.config = config
        self.source = source if source is not None else SourceGateConfig()
        self.params = ScoreParams(
            area=config.area, noise_k=config.noise_k, min_delta=config.min_delta,
            mean_delta=config.mean_delta, thumb_width=config.thumb_width,
        )
        self.ignore: list[Sequence[float]] = [*config.ignore, *self.source.ignore]
        self._scorer: Optional[FrameScorer] = None
        self._last: Optional[Thumb] = None  # the previous segment's last frame
        self._reference: list[Thumb] = []  # frames of the last described segment
        self._described_end: Optional[float] = None
        self._resync = False
        self._flicker: Optional[FlickerTracker] = None

    @property
    def enabled(self) -> bool:
        return self.config.mode != "off" and not self.source.always

    def forget(self) -> None:
        """The last segment passed on was not described: describe the next one whatever it shows."""
        self._resync = True

    def moved(self, before: np.ndarray, after: np.ndarray) -> bool:
        """Whether frame `after` differs from frame `before` (RGB images at the source's size),
        with the current flicker mask: the onset check (change starting inside a running
        segment, docs/gate.md). False until the gate has seen the source's first segment."""
        scorer = self._scorer
        if scorer is None or self._flicker is None or scorer.frame_size != before.shape[:2]:
            return False
        return scorer.score(scorer.thumb(before), scorer.thumb(after), self._flicker.mask()) >= 1.0

    def decide(self, segment: Segment) -> Decision:
        if self.config.mode == "off":
            return Decision(True, "off")
        if self.source.always:
            return Decision(True, "always")
        thumbs, fresh = self._thumbs(segment)
        previous, self._last = self._last, thumbs[-1]
        if self._flicker is None:
            self._flicker = FlickerTracker(self.config.flicker_rate, segment.fps)
            self._flicker.seed(thumbs[0])
        mask = self._flicker.mask()
        score = self._frame_to_frame(previous, thumbs, mask)  # every segment: it keeps the flicker rates
        if fresh or not self._reference:
            return self._described(segment, thumbs, "first")
        if segment.gap_before:
            return self._described(segment, thumbs, "gap")
        if self._resync:
            return self._described(segment, thumbs, "resync")
        heartbeat = self.config.heartbeat_s
        if heartbeat is not None and self._described_end is not None and segment.end - self._described_end >= heartbeat:
            return self._described(segment, thumbs, "heartbeat")
        if score < 1.0:
            score = max(score, self._against_reference(thumbs, mask))
        if score >= 1.0:
            return self._described(segment, thumbs, "change", score)
        return Decision(False, SKIP_REASON, score)

    def _thumbs(self, segment: Segment) -> tuple[list[Thumb], bool]:
        """Thumbnails of the segment's frames; fresh=True if the scorer was (re)made for their size."""
        height, width = segment.frame_size
        fresh = self._scorer is None or self._scorer.frame_size != (height, width)
        if fresh:
            self._scorer = FrameScorer(height, width, self.params, self.ignore)
            self._last, self._reference, self._flicker = None, [], None  # a new tracker for the new size
        return [self._scorer.thumb(frame.image) for frame in segment.frames], fresh

    def _frame_to_frame(self, previous: Optional[Thumb], thumbs: list[Thumb], mask: Optional[np.ndarray]) -> float:
        scorer = self._scorer
        assert scorer is not None and self._flicker is not None
        best = 0.0
        chain = ([previous] if previous is not None else []) + thumbs
        for before, after in zip(chain, chain[1:]):
            score, cells, bar = scorer.compare(before, after, mask)
            best = max(best, score)
            self._flicker.update(after, cells, bar)
        return best

    def _against_reference(self, thumbs: list[Thumb], mask: Optional[np.ndarray]) -> float:
        scorer = self._scorer
        assert scorer is not None
        best = 0.0
        for thumb in {id(t): t for t in (thumbs[len(thumbs) // 2], thumbs[-1])}.values():
            # new only if unlike every reference frame: a branch swaying back and forth, or a
            # screen cycling through pictures, matches one of them
            best = max(best, min(scorer.score(reference, thumb, mask) for reference in self._reference))
            if best >= 1.0:
                break
        return best

    def _described(self, segment: Segment, thumbs: list[Thumb], reason: str, score: float = 0.0) -> Decision:
        count = min(self.config.reference_frames, len(thumbs))
        step = len(thumbs) / count
        self._reference = [thumbs[min(len(thumbs) - 1, int(i * step + step / 2))] for i in range(count)]
        self._described_end = segment.end
        self._resync = False
        return Decision(True, reason, score)
