"""Which cells flicker: change that is periodic in time, judged per cell, never spread.

A cell is left out ("masked") when either holds:

- repeats: in more than `rate` of the recent frame pairs it changed *to content it showed within
  the last `memory_s` seconds* (a blinking light, a screen cycling pictures, a codec pop that
  reverts). People, hands, cars and scene cuts bring content the cell has not shown recently;
- a ticking spot: it changed in more than SPOT_RATE of the frame pairs of the last half minute
  or so, and the connected group of such cells around it is tiny (at most SPOT_CELLS, or 1% of
  the cells): the seconds of a timestamp overlay, whose two digits share a cell and so repeat
  only every minute. A person moving about changes a larger group of cells, a scene cut all of
  them, so neither is masked this way; what a tiny spot does when it first changes is scored
  before it is learnt (the mask is made from the frames before).

A cell is judged on its own history only: the mask never spreads to neighbours.

Content is compared as structure (each cell's 16 thumbnail pixels less their mean), so an
exposure drift does not make an old picture look new; a cell repeats an earlier frame when fewer
than two of its pixels differ by more than the frame pair's noise bar.

Cost: only cells that changed are looked up, against at most memory_s x fps earlier frames.
"""
from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from .score import CELL, Thumb

ALPHA = 0.1  # weight of the newest frame pair in a cell's repeat rate (about ten pairs of memory)
MEMORY_S = 12.0  # a blinking or cycling cell repeats within seconds: remember a little longer
SPOT_ALPHA = 0.03  # weight of the newest pair in a cell's change rate (about half a minute)
SPOT_RATE = 0.3  # a spot changing in more than 3 pairs in 10, for half a minute, keeps ticking
SPOT_CELLS = 6  # the largest ticking spot, in cells (or 1% of the frame's cells if more)


class FlickerTracker:
    """Per-cell repeat rates of one source; `mask()` is what the scorer leaves out."""

    def __init__(self, rate: float, fps: float, memory_s: float = MEMORY_S):
        self.rate = rate
        self._frames: deque[Thumb] = deque(maxlen=max(3, int(round(memory_s * fps)) + 1))
        self._rates: Optional[np.ndarray] = None  # per cell: share of pairs that changed to a repeat
        self._changes: Optional[np.ndarray] = None  # per cell: share of pairs that changed at all
        self._pairs = 0

    def mask(self) -> Optional[np.ndarray]:
        if self._rates is None or self._changes is None or self.rate >= 1.0:
            return None
        masked = (self._rates > self.rate) | _small_groups(self._changes > SPOT_RATE, SPOT_CELLS)
        return masked if masked.any() else None

    def seed(self, thumb: Thumb) -> None:
        """The first frame of a source (nothing before it to compare with)."""
        self._frames.append(thumb)

    def update(self, after: Thumb, changed: np.ndarray, bar: float) -> None:
        """`after` followed the last frame; `changed` (cells, bool) is where it differed."""
        repeated = np.zeros(changed.shape, bool)
        earlier = list(self._frames)[:-1]  # the frame just before is what it changed from
        if earlier and changed.any():
            rows, cols = np.nonzero(changed)
            now = _cells(after, rows, cols)  # (n, 16)
            past = np.stack([_cells(frame, rows, cols) for frame in earlier])  # (k, n, 16)
            differing = (np.abs(past - now[None]) > bar).sum(axis=2)  # (k, n)
            repeated[rows, cols] = (differing < 2).any(axis=0)
        self._frames.append(after)
        if self._rates is None or self._changes is None:
            self._rates, self._changes = np.zeros(changed.shape, np.float32), np.zeros(changed.shape, np.float32)
        self._pairs += 1
        alpha = max(ALPHA, 1.0 / self._pairs)  # a plain average over the first pairs
        slow = max(SPOT_ALPHA, 1.0 / self._pairs)
        for average, now, weight in ((self._rates, repeated, alpha), (self._changes, changed, slow)):
            average *= 1.0 - weight
            average += weight * now


def _small_groups(hot: np.ndarray, limit: int) -> np.ndarray:
    """The cells of `hot` whose 8-connected group has at most max(limit, 1% of the cells) cells."""
    out = np.zeros(hot.shape, bool)
    if not hot.any():
        return out
    limit = max(limit, hot.size // 100)
    seen = np.zeros(hot.shape, bool)
    rows, cols = hot.shape
    for start in zip(*np.nonzero(hot)):
        if seen[start]:
            continue
        group, todo = [], [start]
        seen[start] = True
        while todo:
            r, c = todo.pop()
            group.append((r, c))
            for rr in range(max(0, r - 1), min(rows, r + 2)):
                for cc in range(max(0, c - 1), min(cols, c + 2)):
                    if hot[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        todo.append((rr, cc))
        if len(group) <= limit:
            out[tuple(np.array(group).T)] = True
    return out


def _cells(thumb: Thumb, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, CELL*CELL): the pixels of cells (rows[i], cols[i]) less each cell's mean (only these
    cells are copied: most frames change in a few)."""
    r, c = thumb.luma.shape[0] // CELL, thumb.luma.shape[1] // CELL
    view = thumb.luma.reshape(r, CELL, c, CELL)
    return view[rows, :, cols, :].reshape(len(rows), CELL * CELL) - thumb.cells[rows, cols][:, None]
