"""A recorded run's results as the Results screen shows them: MLPerf's figures, the checks, and
the whole-run power and QPS series, computed in one go (slow: the checks hash every file).
The samples are streamed, never loaded whole: the plots get min/max envelopes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labconsole.mlperf.checks import choose
from labconsole.mlperf.summary import evaluate
from labconsole.samples.reduce import MinMaxBuckets
from labconsole.samples.table import sample_chunks, sample_groups
from labconsole.session.live import qps_over_phases
from labconsole.session.replay import recorded_progress


PLOT_BUCKETS = 4096  # min/max pairs per series: far more than a plot has columns


def load_results(path: Path) -> dict:
    """record, report, checks, rules (the round's rules the checks applied, see `check --rules`);
    scenario: (filed, LoadGen's, notes on how they differ); power: [(label, t_s, watts with NaN
    where invalid)], each series a min/max envelope of PLOT_BUCKETS time buckets (a 60 M-sample
    phase is never held whole);
    qps: (t_s, q/s); marks: [(t_s, phase)] where each phase's samples start, in time order;
    window: the testing run's (power_begin, power_end) in seconds, or None."""
    record, report, check_list = evaluate(path)
    power, marks = power_envelopes(record)
    window = None
    t = record.phases.get("testing")
    if t is not None and t.detail is not None and t.detail.power_begin_ns is not None:
        window = (t.detail.power_begin_ns / 1e9, t.detail.power_end_ns / 1e9)
    return {
        "record": record,
        "report": report,
        "checks": check_list,
        "rules": choose(record),  # what evaluate()'s run_checks applied (auto)
        "scenario": (report.get("filed_scenario") or report.get("scenario"), report.get("run_scenario") or report.get("scenario"), list(report.get("scenario_notes") or [])),
        "power": power,
        "qps": qps_over_phases(recorded_progress(record)),
        "marks": sorted(marks, key=lambda m: m[0]),
        "window": window,
    }


def power_envelopes(record, buckets: int = PLOT_BUCKETS) -> tuple[list, list]:
    """([(label, t_s, watts)] per source and channel across the phases, as min/max envelopes;
    [(t_s, phase)] where each phase's samples start). Two passes over the samples, a chunk at a
    time: the time range, then each bucket's min and max of the valid watts."""
    marks, lo, hi = [], None, None
    for name, ph in record.phases.items():
        first = None
        for chunk in sample_chunks(ph.samples, ("wall_ns",)):
            wall = chunk["wall_ns"]
            a, b = int(wall.min()), int(wall.max())
            first = a if first is None else min(first, a)
            hi = b if hi is None else max(hi, b)
        if first is not None:
            marks.append((float(first) / 1e9, name))
            lo = first if lo is None else min(lo, first)
    if lo is None:
        return [], marks
    series: dict[tuple[str, str], MinMaxBuckets] = {}
    for ph in record.phases.values():
        for (src, ch), chunks in sample_groups(ph.samples, ("wall_ns", "watts", "status")):
            env = series.setdefault((src, ch), MinMaxBuckets(lo / 1e9, hi / 1e9, buckets))
            for chunk in chunks():
                ok = chunk["status"] == 0
                env.add(chunk["wall_ns"] / 1e9, np.where(ok, chunk["watts"], np.nan))
    power = []
    for (src, ch), env in series.items():
        t, y = env.series()
        power.append((src if ch == "main" else f"{src}/{ch}", t, y))
    return power, marks
