"""The simulated meter hands over its samples in blocks on its own sample grid.

A fast meter must not wake the recorder once a sample (at 10 kHz that is 10,000 wake-ups a
second, each taking the GIL the console and the workload need): a read returns every sample
due since the last one, each at its own time on the grid, at most 1 / BLOCK_S reads a second,
and a block is the same readings, in the same random stream, as one reading at a time.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from labconsole.instruments.load_model import LoadModel, constant_utilisation
from labconsole.samples.batch import OK, OVERRANGE
from labconsole.sources.simulated import BLOCK_S, SimulatedOptions, SimulatedSource


def collect(src: SimulatedSource, seconds: float) -> tuple[np.ndarray, int]:
    got, reads = [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for cb in src.read(0.5):
            got.append(cb.samples)
            reads += 1
    return np.concatenate(got), reads


@pytest.mark.parametrize("interval", [1e-4, 0.01, 0.2])
def test_every_sample_on_the_grid_in_few_reads(interval):
    src = SimulatedSource("w", SimulatedOptions(seed=3, utilisation=0.5, energy_counter=True), sample_interval_s=interval)
    src.open()
    try:
        batch, reads = collect(src, 1.5)
    finally:
        src.close()
    steps = np.diff(batch["mono_ns"])
    assert np.all(np.abs(steps - interval * 1e9) <= 1), np.unique(steps)  # one grid, nothing skipped
    assert abs(len(batch) - 1.5 / interval) <= max(2, 0.1 * 1.5 / interval), len(batch)
    assert reads <= 1.5 / max(BLOCK_S, interval) + 3, reads
    # wall time follows the grid too (each block dated from one wall/monotonic reading, so a
    # block's edge may move by the two clocks' jitter), and is never in the future
    assert np.all(np.abs(np.diff(batch["wall_ns"]) - steps) < 1_000_000) and batch["wall_ns"][-1] <= time.time_ns()
    ok = batch["status"] == OK
    assert np.all(np.isfinite(batch["watts"][ok])) and np.all(np.isfinite(batch["uncertainty_w"][ok]))
    assert np.all(np.diff(batch["energy_j"]) >= 0)


def test_a_block_is_the_same_readings_as_one_at_a_time():
    one = LoadModel(seed=11, utilisation=constant_utilisation(0.3))
    block = LoadModel(seed=11, utilisation=constant_utilisation(0.3))
    singles = [one.reading() for _ in range(50)]
    watts, volts, amps, pf = block.readings(50)
    assert np.array_equal(watts, [r.watts for r in singles]) and np.array_equal(volts, [r.volts for r in singles])
    assert np.allclose(amps, [r.amps for r in singles], rtol=1e-15) and np.allclose(pf, [r.pf for r in singles])


def test_fixed_ranges_flag_over_range_samples_in_a_block():
    src = SimulatedSource("w", SimulatedOptions(seed=1, utilisation=1.0, idle_w=300, dynamic_w=0), sample_interval_s=0.001)
    src.set_ranges(volts=300, amps=0.5)  # 300 W at 230 V is ~1.4 A: far above 140 % of 0.5 A
    src.open()
    try:
        batch, _ = collect(src, 0.3)
    finally:
        src.close()
    assert np.all(batch["status"] == OVERRANGE) and np.all(np.isnan(batch["watts"]))
    assert np.all(batch["range_a"] == 0.5)
