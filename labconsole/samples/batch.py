"""A sample: one reading of one channel, and the numpy batch it travels in.

A *sample* is one reading of one channel: wall-clock ns (to match LoadGen's UTC power
markers), monotonic ns (for intervals), watts, and where the source knows them volts, amps,
power factor, a cumulative energy counter, the uncertainty of the watts value, the ranges in
use and a status. Samples travel in numpy structured arrays (batches) so that a 100 kHz
source costs one append per batch, not one Python object per reading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

SAMPLE_DTYPE = np.dtype(
    [
        ("wall_ns", "<i8"),
        ("mono_ns", "<i8"),
        ("watts", "<f8"),
        ("volts", "<f8"),
        ("amps", "<f8"),
        ("pf", "<f8"),
        ("energy_j", "<f8"),  # cumulative counter where the source keeps one, else NaN
        ("uncertainty_w", "<f8"),  # absolute uncertainty of `watts` from the accuracy spec
        ("range_v", "<f8"),
        ("range_a", "<f8"),
        ("status", "u1"),
    ]
)

# Status codes. Anything but OK is an invalid sample: counted, kept on disk, never averaged.
OK = 0
OVERRANGE = 1  # the meter flagged over-range (INF / 9.9E+37 / '---OL---')
NO_DATA = 2  # the meter said "no data" (NAN / 9.91E+37 / -1 from PTD)
ERROR = 3  # protocol error, garbage, timeout: the reading could not be trusted
GAP = 4  # a placeholder written for a stretch where the source did not answer

STATUS_NAMES = {OK: "ok", OVERRANGE: "overrange", NO_DATA: "no_data", ERROR: "error", GAP: "gap"}

FLOAT_FIELDS = ("watts", "volts", "amps", "pf", "energy_j", "uncertainty_w", "range_v", "range_a")


PAIR_BRACKET_NS = 50_000  # two clock reads normally lie < 1 us apart; further means a thread switch


def now_ns() -> tuple[int, int]:
    """(wall ns, monotonic ns) taken together, as close to the reading as possible.

    Drivers date a block of samples on the monotonic clock and turn it into wall time with this
    pair, so an error in the pair moves the whole block. Python may hand the GIL to another
    thread between any two calls, and a pair read across such a switch is skewed by as long as
    that thread ran (up to its 5 ms switch interval, more on a busy machine): a hole, or an
    overlap, at the block's edge. So the wall clock is read between two monotonic reads, and
    read again when those lie more than PAIR_BRACKET_NS apart (three tries, then the tightest)."""
    tries = []
    for _ in range(3):
        m0 = time.monotonic_ns()
        wall = time.time_ns()
        m1 = time.monotonic_ns()
        if m1 - m0 <= PAIR_BRACKET_NS:
            return wall, (m0 + m1) // 2
        tries.append((m1 - m0, wall, (m0 + m1) // 2))
    _, wall, mono = min(tries)
    return wall, mono


def empty_batch(n: int) -> np.ndarray:
    """A batch of n samples with every optional quantity unknown (NaN) and status OK."""
    batch = np.zeros(n, dtype=SAMPLE_DTYPE)
    for name in FLOAT_FIELDS:
        batch[name] = np.nan
    return batch


def one_sample(
    wall_ns: int,
    mono_ns: int,
    watts: float,
    *,
    volts: float = float("nan"),
    amps: float = float("nan"),
    pf: float = float("nan"),
    energy_j: float = float("nan"),
    uncertainty_w: float = float("nan"),
    range_v: float = float("nan"),
    range_a: float = float("nan"),
    status: int = OK,
) -> np.ndarray:
    batch = np.empty(1, dtype=SAMPLE_DTYPE)
    batch[0] = (wall_ns, mono_ns, watts, volts, amps, pf, energy_j, uncertainty_w, range_v, range_a, status)
    return batch


@dataclass
class ChannelBatch:
    """Samples of one channel of one source, as a source's `read()` returns them."""

    channel: str
    samples: np.ndarray  # SAMPLE_DTYPE
