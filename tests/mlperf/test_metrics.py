"""Window and metric arithmetic on hand-made logs and samples (exact values)."""

from __future__ import annotations

import json
import math

import pytest

from labconsole.mlperf import metrics
from labconsole.bundle.reader import open_run
from labconsole.samples.batch import NO_DATA, OK, OVERRANGE
from mlperf_fakes import write_detail_log, write_samples

T0 = 1_764_000_000_000_000_000  # some UTC instant, ns
S = 1_000_000_000


def make_bundle(tmp_path, scenario="Offline", queries=1, extra=None, ranging_watts=None, testing_watts=None, status=None):
    root = tmp_path / "bundle"
    data = root / "data"
    data.mkdir(parents=True)
    (data / "run.json").write_text(json.dumps({"exit_status": "completed", "primary_source": "wall", "scenario": scenario}))
    # testing: window (T0+1 s, T0+5 s); samples every 0.5 s from T0 to T0+6 s
    times = [T0 + i * S // 2 for i in range(13)]
    watts = testing_watts or [10.0 * (i + 1) for i in range(13)]
    write_detail_log(data / "testing" / "loadgen", scenario, T0 + S, T0 + 5 * S, queries=queries, extra=extra)
    write_samples(data / "testing" / "samples-wall.csv", times, watts, status)
    if ranging_watts is not None:
        write_detail_log(data / "ranging" / "loadgen", scenario, T0 + S, T0 + 5 * S, queries=queries, extra=extra)
        write_samples(data / "ranging" / "samples-wall.csv", times, ranging_watts)
    return open_run(root)


def test_window_is_strict_and_skips_invalid_and_nonpositive(tmp_path):
    # samples at 0.5 s steps: t = 1.0 and t = 5.0 are on the edges (excluded, strict)
    watts = [10.0 * (i + 1) for i in range(13)]
    watts[4] = 0.0  # t=2.0 s: zero watts is excluded (watts > 0)
    status = [OK] * 13
    status[6] = OVERRANGE  # t=3.0 s
    status[7] = NO_DATA  # t=3.5 s
    rec = make_bundle(tmp_path, testing_watts=watts, status=status)
    stats = metrics.phase_power(rec, "testing")
    inside = [i for i in range(13) if 2 < i < 10]  # t in (1, 5): indices 3..9
    counted = [watts[i] for i in inside if i not in (4, 6, 7)]
    assert stats.samples == len(counted) == 4
    assert stats.avg_w == sum(counted) / len(counted)
    assert stats.excluded_invalid == 3
    assert stats.window_s == 4.0


def test_offline_metric_is_average_watts_and_samples_per_joule(tmp_path):
    rec = make_bundle(tmp_path, "Offline", extra={"result_samples_per_second": 1234.5})
    rep = metrics.compute_report(rec)
    expected = sum(10.0 * (i + 1) for i in range(3, 10)) / 7
    assert rep["metric"] == {"name": "avg_power", "value": expected, "unit": "W"}
    assert rep["samples_per_joule"] == pytest.approx(1234.5 / expected)
    assert rep["power"]["samples_in_window"] == 7
    assert rep["power"]["window_s"] == 4.0
    assert rep["result_validity"] == "VALID"


def test_singlestream_metric_is_millijoules_per_query(tmp_path):
    rec = make_bundle(tmp_path, "SingleStream", queries=400)
    rep = metrics.compute_report(rec)
    avg = sum(10.0 * (i + 1) for i in range(3, 10)) / 7
    mj = avg * 4.0 * 1000 / 400
    assert rep["metric"] == {"name": "energy_per_query", "value": mj, "unit": "mJ"}
    assert rep["samples_per_joule"] == pytest.approx(1000 / mj)


def test_multistream_uses_samples_per_query(tmp_path):
    rec = make_bundle(tmp_path, "MultiStream", queries=100, extra={"effective_samples_per_query": 8})
    rep = metrics.compute_report(rec)
    mj = rep["metric"]["value"]
    assert rep["samples_per_joule"] == pytest.approx(8 * 1000 / mj)


def test_ranging_delta(tmp_path):
    testing = [100.0] * 13
    ranging = [110.0] * 13
    rec = make_bundle(tmp_path, testing_watts=testing, ranging_watts=ranging)
    delta = metrics.ranging_delta_pct(rec)
    assert delta == pytest.approx((100 / 110 - 1) * 100)
    assert metrics.checker_ranging_delta_pct(rec) == round((100 / 110 - 1) * 100, 2)


def test_sequential_sum_matches_python_sum_order():
    vals = [0.1] * 10 + [1e16, 1.0, -1e16]
    assert metrics.sequential_sum(vals) == pytest.approx(sum(vals), abs=0) or math.isclose(metrics.sequential_sum(vals), sum(vals))
    acc = 0.0
    for v in vals:
        acc += v
    assert metrics.sequential_sum(vals) == acc


def test_no_samples_in_window(tmp_path):
    rec = make_bundle(tmp_path, testing_watts=[-1.0] * 13)
    rep = metrics.compute_report(rec)
    assert rep["metric"] is None
    assert rep["power"]["samples_in_window"] == 0
