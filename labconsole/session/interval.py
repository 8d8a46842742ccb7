"""Between two points of a power trace: how long, the mean watts and the energy (joules), as
Joulescope's UI shows for its dual cursors; and a running energy counter for a live trace.

Energy is the trapezoid integral of the valid samples (NaN, an invalid reading, breaks the
trace: no energy is counted across it), with the trace interpolated at the two cursors so a
cursor between samples counts the part of the interval it covers. The mean is the energy over
the time covered by valid samples, i.e. time-weighted, not a plain average of irregular samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntervalStats:
    t0: float
    t1: float
    dt_s: float
    mean_w: float  # NaN when no valid sample lies in the interval
    energy_j: float
    samples: int  # valid samples strictly inside


def _segment_energy(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(joules, seconds covered) of a trace, trapezoids between neighbouring valid samples."""
    if len(t) < 2:
        return 0.0, 0.0
    both = np.isfinite(y[:-1]) & np.isfinite(y[1:])
    dt = np.diff(t)
    area = 0.5 * (y[:-1] + y[1:]) * dt
    return float(area[both].sum()), float(dt[both].sum())


def interval_stats(t: np.ndarray, y: np.ndarray, a: float, b: float) -> IntervalStats:
    """Δt, mean W and energy J between times `a` and `b` (either order) of the trace (t, y)."""
    t0, t1 = (a, b) if a <= b else (b, a)
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    i0, i1 = np.searchsorted(t, t0, side="right"), np.searchsorted(t, t1, side="left")
    inside_t, inside_y = t[i0:i1], y[i0:i1]
    # the trace at the cursors (interpolated between the samples on either side, if both valid)
    edges_t, edges_y = [], []
    for x, i in ((t0, i0), (t1, i1)):
        if 0 < i < len(t) and np.isfinite(y[i - 1]) and np.isfinite(y[i]) and t[i] > t[i - 1]:
            edges_t.append(x)
            edges_y.append(y[i - 1] + (y[i] - y[i - 1]) * (x - t[i - 1]) / (t[i] - t[i - 1]))
        else:
            edges_t.append(math.nan)
            edges_y.append(math.nan)
    tt = np.concatenate(([edges_t[0]], inside_t, [edges_t[1]]))
    yy = np.concatenate(([edges_y[0]], inside_y, [edges_y[1]]))
    keep = np.isfinite(tt)
    energy, covered = _segment_energy(tt[keep], yy[keep])
    n = int(np.isfinite(inside_y).sum())
    mean = energy / covered if covered > 0 else (float(np.nanmean(inside_y)) if n else math.nan)
    return IntervalStats(t0, t1, t1 - t0, mean, energy, n)


class EnergyCounter:
    """Joules of a growing trace, integrating only what was added since the last update (a
    live history grows by a few samples a tick). A trace that shrank or restarted (a replay
    seeking back) is counted again from its start."""

    def __init__(self) -> None:
        self.energy_j = 0.0
        self._n = 0
        self._first_t = math.nan

    def update(self, t: np.ndarray, y: np.ndarray) -> float:
        n = len(t)
        if n < self._n or (n and t[0] != self._first_t and self._n):
            self.energy_j, self._n = 0.0, 0
        if n >= 2 and n > self._n:
            start = max(0, self._n - 1)
            e, _ = _segment_energy(np.asarray(t[start:n], dtype=np.float64), np.asarray(y[start:n], dtype=np.float64))
            self.energy_j += e
        self._n = n
        self._first_t = float(t[0]) if n else math.nan
        return self.energy_j

    def since(self, t: np.ndarray, y: np.ndarray, t0: float) -> float:
        """Joules from `t0` to the newest sample (the current phase's energy)."""
        if not len(t):
            return 0.0
        return interval_stats(t, y, t0, float(t[-1])).energy_j
