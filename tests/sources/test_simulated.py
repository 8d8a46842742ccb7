"""The simulated meter at a fast rate: every sample it owes, on its clock's grid, in blocks.

Behind schedule is set by moving the meter's next tick back (what a reading thread kept from
the GIL sees), so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from labconsole.samples.batch import SAMPLE_DTYPE
from labconsole.sources.simulated import SimulatedOptions, SimulatedSource


@pytest.fixture
def meter():
    opened = []

    def make(interval_s: float) -> SimulatedSource:
        src = SimulatedSource("wall", SimulatedOptions(seed=7, utilisation=0.5), sample_interval_s=interval_s)
        src.open()
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


def samples(src: SimulatedSource) -> np.ndarray:
    (batch,) = src.read(1.0)
    assert batch.channel == "main" and batch.samples.dtype == SAMPLE_DTYPE
    return batch.samples


def test_a_meter_behind_schedule_hands_over_every_owed_sample_on_its_grid(meter):
    src = meter(0.0001)  # 10 kHz
    src._next_tick = time.monotonic() - 0.05  # 50 ms behind: 500 samples owed
    first = samples(src)
    assert len(first) >= 500
    step = np.diff(first["wall_ns"])
    assert step.min() >= 99_999 and step.max() <= 100_001  # one every 100 us (ns rounding)
    assert (np.diff(first["mono_ns"]) == step).all()
    second = samples(src)  # the next block carries on the same grid, nothing skipped or repeated
    assert 99_999 <= second["wall_ns"][0] - first["wall_ns"][-1] <= 100_001
    assert len(second) >= 100  # a fast meter's block: 10 ms of samples a read


def test_a_stall_longer_than_the_catch_up_resynchronises_instead_of_bursting(meter):
    src = meter(0.0001)
    src._next_tick = time.monotonic() - 2 * SimulatedSource.CATCH_UP_S
    assert len(samples(src)) < 200  # one block's worth at most, not 10,000 made-up samples


def test_a_slow_meter_still_gives_one_sample_a_read(meter):
    src = meter(0.01)  # 100 samples/s: a block is one sample
    assert [len(samples(src)) for _ in range(3)] == [1, 1, 1]
