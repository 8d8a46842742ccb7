"""Δt, mean watts and energy between two cursors, and the running energy counter."""

from __future__ import annotations

import math

import numpy as np

from labconsole.session.interval import EnergyCounter, interval_stats


def test_constant_power_gives_power_times_time_and_cursors_between_samples_count():
    t = np.arange(0.0, 10.01, 0.5)
    y = np.full_like(t, 100.0)
    m = interval_stats(t, y, 3.75, 1.25)  # either order
    assert (m.t0, m.t1, m.dt_s) == (1.25, 3.75, 2.5)
    assert math.isclose(m.energy_j, 250.0) and math.isclose(m.mean_w, 100.0) and m.samples == 5


def test_a_ramp_is_integrated_and_the_mean_is_time_weighted():
    t = np.array([0.0, 1.0, 1.1, 1.2, 4.0])  # irregular: three samples crowd near 1 s
    y = np.array([0.0, 10.0, 11.0, 12.0, 40.0])  # y = 10 t
    m = interval_stats(t, y, 0.0, 4.0)
    assert math.isclose(m.energy_j, 80.0)  # integral of 10 t from 0 to 4
    assert math.isclose(m.mean_w, 20.0)  # not the plain average of the five samples (14.6)


def test_an_invalid_sample_breaks_the_trace_and_is_never_counted():
    t = np.arange(0.0, 5.0, 1.0)
    y = np.array([10.0, 10.0, np.nan, 10.0, 10.0])
    m = interval_stats(t, y, 0.0, 4.0)
    assert math.isclose(m.energy_j, 20.0) and math.isclose(m.mean_w, 10.0) and m.samples == 2  # valid, strictly inside
    empty = interval_stats(t, y, 10.0, 12.0)
    assert empty.energy_j == 0.0 and math.isnan(empty.mean_w)


def test_the_running_counter_adds_only_new_samples_and_restarts_on_a_new_trace():
    t = np.arange(0.0, 100.0, 0.1)
    y = 50.0 + 10.0 * np.sin(t)
    c = EnergyCounter()
    for n in (1, 2, 57, 300, 301, 1000):
        c.update(t[:n], y[:n])
    whole = interval_stats(t, y, t[0], t[-1]).energy_j
    assert math.isclose(c.energy_j, whole, rel_tol=1e-9)
    assert math.isclose(c.update(t[:10], y[:10]), interval_stats(t[:10], y[:10], 0.0, t[9]).energy_j)  # seek back
    assert math.isclose(c.since(t, y, 50.0), interval_stats(t, y, 50.0, t[-1]).energy_j)
