"""How much two frames differ, in a way that ignores what cameras do on their own.

Frames arrive already at model size (e.g. 504x280). Each becomes a `Thumb`: a luma thumbnail
about `thumb_width` wide (two frame pixels averaged per thumbnail pixel), cut into cells of
CELL x CELL thumbnail pixels. Two thumbs are compared like this:

1. Global brightness: a line `b = gain * a + offset` is fitted to the cell means of both (least
   squares, refitted once without the cells that moved most). Auto-exposure, clouds over the
   whole scene and gain/offset drift are removed before anything is counted.
2. The residual `r = b - (gain * a + offset)` is split per cell into its mean and the structure
   around it. A pixel changed if its structure moved more than `noise_k` x the frame's noise (a
   robust MAD estimate, so sensor noise and compression flicker raise their own bar) and more
   than `min_delta` levels; a whole cell changed if its mean moved more than `mean_delta` levels
   beyond the global change (a light switched on, a dark doorway opening).
3. Changed pixels are counted in overlapping windows of 2x2 cells (stride one cell, so an object
   on a cell corner still fills one window). The score is the largest window share divided by
   `area`: >= 1 means a change. A ticking timestamp changes a few thumbnail pixels of a window,
   far below `area`; a person or a bag left behind fills a large part of one.

Ignore regions (normalised rectangles) take whole cells out of every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

CELL = 4  # thumbnail pixels per cell side
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ScoreParams:
    area: float = 0.15
    noise_k: float = 4.0
    min_delta: float = 6.0
    mean_delta: float = 25.0
    thumb_width: int = 128


@dataclass(frozen=True)
class Thumb:
    luma: np.ndarray  # float32 (rows, cols), both multiples of CELL
    cells: np.ndarray  # float32 cell means (rows / CELL, cols / CELL)


class FrameScorer:
    """Thumbnails and change scores for frames of one size. Stateless after construction."""

    def __init__(self, height: int, width: int, params: ScoreParams, ignore: Sequence[Sequence[float]] = ()):
        self.params = params
        self.frame_size = (height, width)
        # one thumbnail pixel stands for factor x factor frame pixels
        factor = max(1, int(round(width / params.thumb_width)))
        self.factor = factor
        unit = factor * CELL
        self.rows, self.cols = (height // unit) * CELL, (width // unit) * CELL
        if self.rows < 2 * CELL or self.cols < 2 * CELL:
            raise ValueError(f"frames of {width}x{height} are too small for the gate")
        self.crop = (self.rows * factor, self.cols * factor)
        # the thumbnail covers whole cells: the rest (under factor x CELL px) is split between the
        # edges, so neither side has a blind margin wider than half a cell
        self.origin = ((height - self.crop[0]) // 2, (width - self.crop[1]) // 2)
        self.valid = self._valid_cells(ignore)
        cells = self.valid.astype(np.int32)
        # a window counts if at least half of its cells are scored
        self.window_valid = (cells[:-1, :-1] + cells[1:, :-1] + cells[:-1, 1:] + cells[1:, 1:]) >= 2
        # cell sums as matrix products: down (cells x rows) @ image @ across (cols x cells)
        self._down = np.kron(np.eye(self.rows // CELL, dtype=np.float32), np.ones((1, CELL), np.float32))
        self._across = np.kron(np.eye(self.cols // CELL, dtype=np.float32), np.ones((CELL, 1), np.float32))
        # the noise is estimated on every third scored pixel
        scored = np.repeat(np.repeat(self.valid, CELL, 0), CELL, 1).ravel()
        self._noise_sample = np.flatnonzero(scored)[::3]

    def _valid_cells(self, ignore: Sequence[Sequence[float]]) -> np.ndarray:
        rows, cols = self.rows // CELL, self.cols // CELL
        y = (np.arange(rows) + 0.5) / rows
        x = (np.arange(cols) + 0.5) / cols
        valid = np.ones((rows, cols), dtype=bool)
        for x0, y0, x1, y1 in ignore:
            inside_y = (y >= y0) & (y < y1)
            inside_x = (x >= x0) & (x < x1)
            valid &= ~(inside_y[:, None] & inside_x[None, :])
        if not valid.any():
            raise ValueError("the ignore regions cover the whole frame")
        return valid

    def thumb(self, image: np.ndarray) -> Thumb:
        """The luma thumbnail of one RGB frame (uint8, height x width x 3).

        Each thumbnail pixel averages two frame pixels on the diagonal of its factor x factor
        block: half the noise of one sample for a quarter of the reads of a full mean (strided
        reads of 3-byte pixels are what this costs)."""
        (y0, x0), (h, w) = self.origin, self.crop
        f, half = self.factor, self.factor // 2
        if f == 1:
            sample = image[y0:y0 + h, x0:x0 + w].astype(np.float32)
        else:
            sample = image[y0:y0 + h:f, x0:x0 + w:f].astype(np.float32)
            sample += image[y0 + half:y0 + h:f, x0 + half:x0 + w:f]
            sample *= 0.5
        luma = sample @ _LUMA if sample.ndim == 3 else sample
        return Thumb(luma, self._cell_sums(luma) * (1.0 / (CELL * CELL)))

    def score(self, before: Thumb, after: Thumb, mask: Optional[np.ndarray] = None) -> float:
        """Change from `before` to `after`: >= 1 means something in the scene changed. Cells where
        `mask` (cells, bool) is True are left out, like ignore regions."""
        return self.compare(before, after, mask)[0]

    def compare(
        self, before: Thumb, after: Thumb, mask: Optional[np.ndarray] = None
    ) -> tuple[float, np.ndarray, float]:
        """The score, which cells changed (two of their pixels or more, or their mean), and the
        noise bar a pixel's structure had to pass."""
        p = self.params
        gain, offset = _fit_brightness(before.cells[self.valid], after.cells[self.valid])
        residual = after.luma - (gain * before.luma + offset)
        means = self._cell_sums(residual) * (1.0 / (CELL * CELL))
        structure = np.abs(residual - self._down.T @ means @ self._across.T)
        bar = max(p.min_delta, p.noise_k * 1.4826 * _median(structure.ravel().take(self._noise_sample)))
        changed = self._cell_sums((structure > bar).astype(np.float32))
        changed[np.abs(means) > p.mean_delta] = CELL * CELL
        changed[~self.valid] = 0
        cells = changed >= 2
        if mask is not None:
            changed[mask] = 0
        windows = changed[:-1, :-1] + changed[1:, :-1] + changed[:-1, 1:] + changed[1:, 1:]
        windows = windows[self.window_valid]
        if not windows.size:
            return 0.0, cells, bar
        return float(windows.max()) / (4 * CELL * CELL) / p.area, cells, bar

    def _cell_sums(self, image: np.ndarray) -> np.ndarray:
        # two small matrix products: several times faster than a 4-D reshape and sum in numpy
        return self._down @ image @ self._across


def _fit_brightness(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """gain, offset with after ~ gain * before + offset over cell means; refitted once without the
    cells that fit worst, so a moving object does not pull the global fit. (Sums and dot products:
    this runs for every frame, and numpy's per-call overhead is most of its cost.)"""
    x, y = before, after
    gain, offset = 1.0, 0.0
    for _ in range(2):
        n = x.size
        if n < 2:
            break
        mx, my = float(x.sum()) / n, float(y.sum()) / n
        var = float(x @ x) / n - mx * mx
        gain = (float(x @ y) / n - mx * my) / var if var > 1.0 else 1.0
        gain = min(2.0, max(0.5, gain))
        offset = my - gain * mx
        error = np.abs(y - (gain * x + offset))
        keep = error <= 2.0 * _median(error) + 2.0
        x, y = x[keep], y[keep]
    return gain, offset


def _median(values: np.ndarray) -> float:
    middle = values.size // 2
    return float(np.partition(values, middle)[middle]) if values.size else 0.0
