"""MLPerf Tiny's energy score: 5 windows cut at the DUT's timestamp edges, median µJ/inference.

The energy monitor (LPM01A in `output energy` mode) gives one energy value per sample period,
so a window's energy is the plain sum of its samples. Two published rules cut the windows:

- EnergyRunner (`trace1-timestamps.json`, seconds): samples `i` with `t0 <= i/fs < t1`, i.e.
  `[ceil(t0*fs), ceil(t1*fs))` (reproduces all 25 published windows to 0.001 µJ on sub-ms
  timestamps; the 3-decimal JSON gives them within 0.01 %). Runtime = t1 - t0.
- MLCommons runner (`event NN ris` lines counted in samples): `[idx_start, idx_stop)` of the
  last two events of a trial; runtime = idx_stop/fs - idx_start/fs
  (`mlcommons/tiny:benchmark/runner/main.py:print_energy_results`).

Sums are numpy sums of float64 in the samples' own unit and the median is taken in that unit
before scaling to µJ, in the order the MLCommons runner does it, so its printed figure is
reproduced digit for digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_WINDOW_S = 10.0  # "at least 10 seconds" (EnergyRunner README; main.py's validity message)
WINDOWS = 5  # "Energy mode must include exactly 5 measurements"

ENERGYRUNNER, MLCOMMONS = "energyrunner", "mlcommons"
# The decimals each runner prints its median with: `Median energy cost is X uJ/inf.`
MEDIAN_DECIMALS = {ENERGYRUNNER: 3, MLCOMMONS: 4}


@dataclass
class Window:
    """One `infer N W`'s measured region, in sample indices [start, stop) of its trace."""

    index: int  # 0-based among the windows
    start: int
    stop: int
    start_s: float
    stop_s: float
    runtime_s: float
    energy: float  # sum of the samples, in the samples' unit
    inferences: int
    scale_uj: float  # µJ per sample unit

    @property
    def samples(self) -> int:
        return self.stop - self.start

    @property
    def per_inf(self) -> float:
        return self.energy / self.inferences if self.inferences else math.nan

    @property
    def energy_uj(self) -> float:
        return self.energy * self.scale_uj

    @property
    def uj_per_inf(self) -> float:
        return self.per_inf * self.scale_uj

    @property
    def power_uw(self) -> float:
        return self.energy_uj / self.runtime_s if self.runtime_s > 0 else math.nan

    @property
    def throughput(self) -> float:
        return self.inferences / self.runtime_s if self.runtime_s > 0 else math.nan

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "energy_uj": self.energy_uj,
            "inferences": self.inferences,
            "runtime_s": self.runtime_s,
            "uj_per_inf": self.uj_per_inf,
            "power_uw": self.power_uw,
            "power_mw": self.power_uw / 1000.0,
            "throughput_inf_s": self.throughput,
            "start_s": self.start_s,
            "stop_s": self.stop_s,
            "start_sample": self.start,
            "stop_sample": self.stop,
            "samples": self.samples,
        }


def sample_at(t_s: float, fs: float) -> int:
    """The first sample at or after time t (ceil), tolerant of t*fs landing a hair above an integer."""
    x = t_s * fs
    r = round(x)
    return int(r) if abs(x - r) < 1e-6 else math.ceil(x)


def window_at_times(samples: np.ndarray, fs: float, t0: float, t1: float, inferences: int, index: int, scale_uj: float) -> Window:
    """EnergyRunner's rule: the samples with t0 <= i/fs < t1."""
    i0, i1 = sample_at(t0, fs), sample_at(t1, fs)
    i0, i1 = max(0, min(i0, len(samples))), max(0, min(i1, len(samples)))
    energy = float(np.sum(np.asarray(samples[i0:i1], dtype=np.float64)))
    return Window(index, i0, i1, t0, t1, t1 - t0, energy, int(inferences), scale_uj)


def window_at_indices(samples: np.ndarray, fs: float, i0: int, i1: int, inferences: int, index: int, scale_uj: float) -> Window:
    """The MLCommons runner's rule: samples [i0, i1), runtime i1/fs - i0/fs (as it computes it)."""
    t0, t1 = i0 / fs, i1 / fs
    energy = float(np.sum(np.array(samples[i0:i1], dtype=np.float64)))
    return Window(index, int(i0), int(i1), t0, t1, t1 - t0, energy, int(inferences), scale_uj)


def pair_edges(times: list[float]) -> list[tuple[float, float]]:
    """EnergyRunner's timestamps as (start, stop) pairs: with an odd count the first is the sync
    edge (`io dut timestamp` before the first infer) and is left out."""
    ts = list(times)
    if len(ts) % 2:
        ts = ts[1:]
    return [(ts[k], ts[k + 1]) for k in range(0, len(ts) - 1, 2)]


def last_two(events: list[tuple[int | None, int]]) -> tuple[int, int] | None:
    """The MLCommons runner's choice in one trial: the last two events ("some extra activity on
    the timestamp pin at the beginning, so take the last two")."""
    if len(events) < 2:
        return None
    return int(events[-2][1]), int(events[-1][1])


def consecutive(counters: list[int | None]) -> bool:
    vals = [c for c in counters if c is not None]
    return all(b - a == 1 for a, b in zip(vals, vals[1:]))


def median_uj_per_inf(windows: list[Window]) -> float:
    """Median of the windows' energy per inference, taken in the samples' unit, then in µJ."""
    if not windows:
        return math.nan
    return float(windows[0].scale_uj * np.median(np.array([w.per_inf for w in windows], dtype=np.float64)))


def median_throughput(windows: list[Window]) -> float:
    if not windows:
        return math.nan
    return float(np.median([w.throughput for w in windows]))


def as_printed(value: float, runner: str) -> float:
    """The median as the runner prints it (the figure the results table shows)."""
    if not math.isfinite(value):
        return value
    return float(f"{value:.{MEDIAN_DECIMALS.get(runner, 4)}f}")
