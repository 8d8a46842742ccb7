"""Energy counters (wrap, reset, watts from changes) and Zeus's update-period inference."""

from __future__ import annotations

import math

import pytest

from labconsole.samples.batch import ERROR, NO_DATA, OK
from labconsole.sources.counters import EnergyCounter, infer_update_period

MS = 1_000_000


def test_update_period_is_the_smallest_interval_between_changes():
    # a sensor updating every 100 ms, read every 10 ms; one update repeats its value (so one
    # interval looks like 200 ms): the minimum still finds 100 ms, the median says so too
    times = [i * 10 * MS for i in range(101)]
    values = []
    for i in range(101):
        k = (i * 10) // 100  # update number
        values.append(7 if k in (3, 4) else k)  # updates 3 and 4 read the same
    up = infer_update_period(times, values)
    assert up.period_s == pytest.approx(0.1)
    assert up.median_s == pytest.approx(0.1)
    assert up.changes == 9  # 10 updates seen, one of which did not change the value
    assert up.polls == 101
    assert up.poll_gap_s == pytest.approx(0.01)
    assert up.window_s == pytest.approx(1.0)


def test_update_period_unknown_without_two_changes():
    times = [i * MS for i in range(50)]
    assert infer_update_period(times, [5] * 50).period_s is None
    one = infer_update_period(times, [5] * 25 + [6] * 25)
    assert one.period_s is None and one.changes == 1
    assert "no change" in infer_update_period(times, [5] * 50).describe()
    assert infer_update_period([], []).period_s is None


def test_counter_watts_come_from_the_span_between_changes():
    c = EnergyCounter(joules_per_unit=1e-3)  # mJ
    # the counter updates every 100 ms by 30 J (300 W); we read it every 25 ms
    t = 0
    raw = 1_000_000
    c.observe(raw, t)
    c.prime()
    samples = []
    for step in range(1, 41):
        t = step * 25 * MS
        if step % 4 == 0:
            raw += 30_000
        c.observe(raw, t)
        if step % 4 == 2:  # a sample every 100 ms, halfway between updates
            samples.append(c.take_sample())
    watts = [w for w, _, s in samples if s == OK]
    assert watts and all(w == pytest.approx(300.0) for w in watts)
    # cumulative energy: 10 updates of 30 J, minus the last one after the last sample
    assert samples[-1][1] == pytest.approx(9 * 30.0)
    assert c.energy_j == pytest.approx(10 * 30.0)


def test_counter_repeats_watts_when_sampled_faster_than_it_updates():
    c = EnergyCounter(1e-3)
    c.observe(0, 0)
    c.prime()
    c.observe(10_000, 100 * MS)  # 100 W over 100 ms
    assert c.take_sample()[0] == pytest.approx(100.0)
    c.observe(10_000, 120 * MS)  # no update yet
    w, e, s = c.take_sample()
    assert (w, e, s) == (pytest.approx(100.0), pytest.approx(10.0), OK)


def test_first_sample_without_a_span_is_no_data():
    c = EnergyCounter(1e-6)
    assert c.take_sample()[2] == NO_DATA  # nothing read yet
    c.observe(5, 0)
    w, e, s = c.take_sample()
    assert s == NO_DATA and math.isnan(w) and e == 0.0


def test_wrap_around_adds_the_range():
    c = EnergyCounter(1e-6, wrap_units=262_143_328_850)  # a real package's max_energy_range_uj
    c.observe(262_143_000_000, 0)
    c.prime()
    c.observe(1_000_000, 1_000 * MS)  # wrapped: 328_850 + 1_000_000 uJ in 1 s
    w, e, s = c.take_sample()
    assert s == OK
    assert e == pytest.approx(1.328850)
    assert w == pytest.approx(1.328850)
    assert c.wraps == 1 and c.resets == 0


def test_reset_without_wrap_range_loses_the_interval_and_says_so():
    c = EnergyCounter(1e-3)  # NVML: no wrap range; a decrease is a driver reload
    c.observe(5_000_000, 0)
    c.prime()
    c.observe(5_030_000, 100 * MS)
    assert c.take_sample() == (pytest.approx(300.0), pytest.approx(30.0), OK)
    c.observe(12_000, 200 * MS)  # restarted from 0
    w, e, s = c.take_sample()
    assert s == ERROR and math.isnan(w) and math.isnan(e)
    assert c.resets == 1
    c.observe(42_000, 300 * MS)
    w, e, s = c.take_sample()
    assert s == OK and w == pytest.approx(300.0)
    assert e == pytest.approx(60.0)  # 30 J before the reset + 30 J after; the lost interval is not guessed


def test_a_gap_long_enough_to_hide_several_wraps_is_flagged():
    c = EnergyCounter(1e-6, wrap_units=65_532_610_987, max_plausible_w=400.0)  # 65.5 kJ: 164 s at 400 W
    c.observe(60_000_000_000, 0)
    c.prime()
    c.observe(1_000_000_000, 1_000 * MS)  # 1 s later: one wrap is certain
    assert c.take_sample()[2] == OK
    assert c.wraps == 1
    c.observe(2_000_000_000, 400_000 * MS)  # 400 s later: could have wrapped 0, 1 or 2 times
    w, e, s = c.take_sample()
    assert s == ERROR and c.ambiguous == 1


def test_a_stalled_poll_does_not_shorten_the_update_period():
    # 25 ms updates polled every 1 ms, but the host stalls from 70 to 82 ms: the update at 75 ms
    # is seen at 82 ms, so the next interval (to the update at 100 ms) looks 18 ms long
    times, values = [], []
    t = 0
    while t <= 300:
        if 70 < t < 82:
            t = 82
        times.append(t * MS)
        values.append(t // 25)
        t += 1
    seen = [times[i] for i in range(1, len(times)) if values[i] != values[i - 1]]
    assert min(b - a for a, b in zip(seen, seen[1:])) == 18 * MS  # what a plain minimum would say
    up = infer_update_period(times, values)
    assert up.period_s == pytest.approx(0.025)
    assert up.median_s == pytest.approx(0.025)
