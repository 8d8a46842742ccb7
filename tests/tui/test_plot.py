"""The braille plot's drawing arithmetic (numpy only, no app needed)."""

from __future__ import annotations

import numpy as np

from labconsole.tui.plot import braille_codes, fill_short_gaps, nice_range, rasterise


def test_a_flat_line_is_one_row_of_dots_and_a_spike_reaches_the_top():
    lo = np.full(8, 5.0)
    hi = np.full(8, 5.0)
    hi[3] = 10.0  # one column saw a spike
    mask = rasterise(lo, hi, 0.0, 10.0, 8)
    assert mask.shape == (8, 8)
    assert mask[0, 3] and not mask[0, 0]
    rows = np.flatnonzero(mask[:, 0])
    assert len(rows) == 1  # a flat line: one dot per column


def test_neighbouring_columns_are_joined_and_gaps_stay_gaps():
    lo = np.array([0.0, 10.0, np.nan, np.nan, np.nan, 0.0])
    mask = rasterise(lo, lo.copy(), 0.0, 10.0, 11)
    assert mask[:, 1].sum() == 11  # column 1 joins down to column 0's value: a vertical stroke
    assert not mask[:, 2:5].any()
    lo2, hi2 = fill_short_gaps(lo, lo.copy(), 3)
    assert np.isfinite(lo2).all() and lo2[3] == 5.0
    lo3, _ = fill_short_gaps(lo, lo.copy(), 2)
    assert np.isnan(lo3[2:5]).all()


def test_braille_codes_follow_the_unicode_dot_numbering():
    mask = np.zeros((4, 2), dtype=bool)
    mask[0, 0] = True  # dot 1
    assert braille_codes(mask)[0, 0] == 0x01
    mask[:] = True
    assert braille_codes(mask)[0, 0] == 0xFF
    mask[:] = False
    mask[3, 1] = True  # dot 8
    assert braille_codes(mask)[0, 0] == 0x80


def test_nice_range_pads_and_respects_a_floor():
    lo, hi = nice_range(10.0, 20.0, floor=0.0)
    assert lo == 0.0 and hi > 20.0
    lo, hi = nice_range(5.0, 5.0)
    assert lo < 5.0 < hi


def test_units_scale_with_a_prefix():
    from labconsole.tui.format import si, si_scale

    assert si(0.0153, "W") == "15.3 mW" and si(1234.5, "J") == "1.234 kJ" and si(105.2, "W") == "105.2 W" and si(2.5e6, "W") == "2.5 MW"
    assert si_scale(0.5) == (1e-3, "m") and si_scale(999.0) == (1.0, "") and si(float("nan"), "W") == "-"


async def test_cursors_measure_time_mean_and_energy_and_the_axis_scales_to_milliwatts():
    import numpy as np
    from textual.app import App

    from labconsole.tui.plot import Series, TimePlot

    class One(App):
        def compose(self):
            yield TimePlot("Power", "W", id="p")

    app = One()
    async with app.run_test(size=(86, 14)) as pilot:
        plot = app.query_one("#p", TimePlot)
        t = np.arange(0.0, 80.0, 0.1)
        plot.show([Series("board", t, np.full_like(t, 0.015))], (0.0, 80.0))  # 15 mW
        await pilot.pause(0.1)
        text = "\n".join(plot.render_line(y).text for y in range(plot.size.height))
        assert "mW" in text and "15.0" in text  # the axis in mW, not 0.01 W
        await pilot.click("#p", offset=(6 + 20, 5))  # A
        await pilot.click("#p", offset=(6 + 60, 5))  # B
        m = plot.measurement
        assert m is not None and 38.0 < m.dt_s < 42.0
        assert abs(m.mean_w - 0.015) < 1e-9 and abs(m.energy_j - 0.015 * m.dt_s) < 1e-9
        title = plot.render_line(0).text
        assert "A→B Δt" in title and "mean 15 mW" in title and "energy 600 mJ" in title, title
        plot.focus()
        await pilot.press("right")  # the last cursor moves a column
        assert plot.measurement.dt_s > m.dt_s
        await pilot.press("escape")
        assert plot.cursors == [] and "A→B" not in plot.render_line(0).text
