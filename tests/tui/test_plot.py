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
