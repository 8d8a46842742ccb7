"""Reducing a long time series to what a plot can show: min and max per pixel column.

A plot `columns` wide can show at most two values per column that matter: the lowest and
the highest sample that fell into it. Min/max (not the mean, not every n-th sample) keeps a
one-sample 700 W spike visible however long the history is. The full-rate data stays with
its owner; only the envelope (2 x columns numbers) goes to a drawing routine, which is what
keeps repaint time nearly flat from 10 thousand to 1 million samples (`python -m bench plots`).

Inputs are time-sorted, as samples are: columns are found with `searchsorted` and reduced
with `fmin/fmax.reduceat`, so 1M samples cost about a millisecond. NaN (invalid) samples are
ignored; a column with no valid sample is NaN in both lo and hi, so a gap stays a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class Envelope:
    """Per-column min and max over [t0, t1): column i spans t0 + i*dt .. t0 + (i+1)*dt."""

    t0: float
    t1: float
    lo: np.ndarray  # float64, len == columns, NaN where the column has no valid sample
    hi: np.ndarray
    # The samples and each column's [start, stop) in them, for `count` (computed on demand:
    # a plot never asks, and counting costs two more passes over the samples).
    _y: np.ndarray | None = field(default=None, repr=False)
    _bounds: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def columns(self) -> int:
        return len(self.lo)

    @cached_property
    def count(self) -> np.ndarray:
        """Valid (finite) samples per column."""
        out = np.zeros(self.columns, dtype=np.int64)
        if self._y is not None and self._bounds is not None:
            for i, (a, b) in enumerate(zip(*self._bounds)):
                if b > a:
                    out[i] = np.count_nonzero(np.isfinite(self._y[a:b]))
        return out

    def centres(self) -> np.ndarray:
        dt = (self.t1 - self.t0) / max(1, self.columns)
        return self.t0 + (np.arange(self.columns) + 0.5) * dt


def minmax_columns(t: np.ndarray, y: np.ndarray, columns: int, t0: float | None = None, t1: float | None = None) -> Envelope:
    """Min and max of `y` in each of `columns` equal time slices of [t0, t1).

    `t` must be sorted ascending (a time series). Defaults: t0 = t[0], t1 = just past t[-1].
    """
    columns = max(1, int(columns))
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t0 is None:
        t0 = float(t[0]) if len(t) else 0.0
    if t1 is None:
        t1 = float(t[-1]) if len(t) else t0 + 1.0
    if t1 <= t0:
        t1 = t0 + 1e-9 if t1 == t0 else t0 + 1.0
    lo = np.full(columns, np.nan)
    hi = np.full(columns, np.nan)
    if len(t) == 0:
        return Envelope(t0, t1, lo, hi)
    edges = t0 + (t1 - t0) * np.arange(columns + 1) / columns
    # The last column is closed on the right so a sample exactly at t1 (the newest) is kept.
    idx = np.searchsorted(t, edges, side="left")
    idx[-1] = np.searchsorted(t, t1, side="right")
    start, stop = idx[:-1], idx[1:]
    nonempty = stop > start
    if not nonempty.any():
        return Envelope(t0, t1, lo, hi)
    seg = start[nonempty]
    # reduceat over the samples from the first column's start to the last column's end;
    # segment i runs from seg[i] to seg[i+1] (or the end), which is exactly the column.
    first, last = int(seg[0]), int(stop[nonempty][-1])
    vals = y[first:last]
    offs = seg - first
    lo[nonempty] = np.fmin.reduceat(vals, offs)
    hi[nonempty] = np.fmax.reduceat(vals, offs)
    # reduceat's last segment runs to the end of `vals`; that is the last non-empty column's end.
    return Envelope(t0, t1, lo, hi, y, (start, stop))


def minmax_pairs(t: np.ndarray, y: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Shrink a series to about `target` points keeping each bucket's min and max (for storage).

    Returns (t, y) with the min and the max of each of target/2 equal-count buckets, in time
    order, so a history that must stay bounded in memory never loses a spike.
    """
    t = np.asarray(t)
    y = np.asarray(y, dtype=np.float64)
    n = len(t)
    if n <= target:
        return t, y
    buckets = max(1, target // 2)
    k = -(-n // buckets)  # samples per bucket, rounded up
    pad = buckets * k - n
    lo_src = np.concatenate((np.where(np.isfinite(y), y, np.inf), np.full(pad, np.inf))).reshape(buckets, k)
    hi_src = np.concatenate((np.where(np.isfinite(y), y, -np.inf), np.full(pad, -np.inf))).reshape(buckets, k)
    base = np.arange(buckets, dtype=np.int64) * k
    i_lo = base + lo_src.argmin(axis=1)
    i_hi = base + hi_src.argmax(axis=1)
    sel = np.unique(np.concatenate((i_lo, i_hi)))  # sorted: time order, duplicates once
    sel = sel[sel < n]
    return t[sel], y[sel]
