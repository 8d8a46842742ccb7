"""Measurement ranges, auto-ranging, MLPerf's fixed-range rule and per-sample uncertainty.

Shared by the simulated source, the Yokogawa driver and its emulator, and the procedure, so
that the rule "voltage: the range that holds the max; current: the range that holds 1.1 x max"
exists once (mlcommons/power-dev:ptd_client_server/lib/server.py, `_desirableCurrentRange`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# MLPerf power-dev sets the current range to 1.1 x the max amps seen while ranging.
CURRENT_MARGIN = 1.1

# WT310E tables at crest factor 3 (IM WT310E-01EN p. 2-7); used as the simulated meter's too.
WT310E_VOLTAGE_RANGES = (15.0, 30.0, 60.0, 150.0, 300.0, 600.0)
WT310E_CURRENT_RANGES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
OVERRANGE_FACTOR = 1.4  # a WT300E reads over-range above 140 % of the rated range


def pick_range(value: float, ranges: tuple[float, ...]) -> float:
    """The smallest range that holds `value` (the largest range if none does)."""
    value = abs(value)
    for r in sorted(ranges):
        if value <= r:
            return r
    return max(ranges)


def mlperf_fixed_ranges(
    max_volts: float, max_amps: float, volt_ranges: tuple[float, ...], amp_ranges: tuple[float, ...]
) -> tuple[float, float]:
    """MLPerf's testing ranges: voltage holds the max volts seen, current holds 1.1 x max amps."""
    return pick_range(max_volts, volt_ranges), pick_range(max_amps * CURRENT_MARGIN, amp_ranges)


@dataclass
class AccuracySpec:
    """A meter's power accuracy as +-(reading% of reading + range% of range).

    For a WT310E at 45-66 Hz: +-(0.1 % of reading + 0.1 % of range), where the power range is
    voltage range x current range (IM WT310E-01EN p. 1-8).
    """

    reading_pct: float
    range_pct: float
    # Extra error at power factor < 1, in % of the reading x tan(phi): the manual's
    # "influence of power factor" (WT310E: 0.1 % of S at lambda = 0, 45-66 Hz). 0 ignores it.
    pf_influence_pct: float = 0.0

    def uncertainty_w_many(self, watts: np.ndarray, range_v: np.ndarray, range_a: np.ndarray, pf: np.ndarray) -> np.ndarray:
        """`uncertainty_w` for arrays of samples (NaN where watts or a range is NaN)."""
        import numpy as np

        u = np.abs(watts) * self.reading_pct / 100.0 + range_v * range_a * self.range_pct / 100.0
        if self.pf_influence_pct:
            with np.errstate(invalid="ignore", divide="ignore"):
                apf = np.abs(pf)
                tan_phi = np.sqrt(1.0 - pf * pf) / apf
                u = u + np.where((apf > 0.0) & (apf < 1.0), np.abs(watts) * tan_phi * self.pf_influence_pct / 100.0, 0.0)
        return u

    def uncertainty_w(self, watts: float, range_v: float, range_a: float, pf: float = float("nan")) -> float:
        if any(map(math.isnan, (watts, range_v, range_a))):
            return float("nan")
        u = abs(watts) * self.reading_pct / 100.0 + range_v * range_a * self.range_pct / 100.0
        if self.pf_influence_pct and not math.isnan(pf) and 0.0 < abs(pf) < 1.0:
            tan_phi = math.sqrt(1.0 - pf * pf) / abs(pf)
            u += abs(watts) * tan_phi * self.pf_influence_pct / 100.0
        return u


@dataclass
class RangeState:
    """What a meter reports about its ranges: values (NaN if unknown) and whether auto is on."""

    volts: float = float("nan")
    amps: float = float("nan")
    auto_v: bool = True
    auto_a: bool = True

    def as_dict(self) -> dict:
        return {"volts": self.volts, "amps": self.amps, "auto_v": self.auto_v, "auto_a": self.auto_a}


@dataclass
class AutoRanger:
    """A WT300E-style auto-range state machine for one quantity.

    Up one range when the rms reading exceeds 130 % of the range; down when it is at most 30 %
    of the range and fits within 125 % of the next lower one (IM WT310E-01EN p. 2-7).
    """

    ranges: tuple[float, ...]
    current: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        self.ranges = tuple(sorted(self.ranges))
        if math.isnan(self.current):
            self.current = self.ranges[-1]

    def update(self, value: float) -> bool:
        """Feed one reading; returns True when the range changed (that reading is invalid)."""
        value = abs(value)
        idx = self.ranges.index(self.current)
        if value > 1.3 * self.current and idx < len(self.ranges) - 1:
            self.current = pick_range(value, self.ranges[idx + 1 :])
            return True
        if idx > 0 and value <= 0.3 * self.current and value <= 1.25 * self.ranges[idx - 1]:
            self.current = self.ranges[idx - 1]
            return True
        return False
