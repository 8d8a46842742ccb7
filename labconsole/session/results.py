"""A recorded run's results as the Results screen shows them: MLPerf's figures, the checks, and
the whole-run power and QPS series, computed in one go (slow: the checks hash every file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labconsole.mlperf.checks import choose
from labconsole.mlperf.summary import evaluate
from labconsole.session.live import qps_over_phases
from labconsole.session.replay import recorded_progress
from labconsole.sources.replay import recorded_samples


def load_results(path: Path) -> dict:
    """record, report, checks, rules (the round's rules the checks applied, see `check --rules`);
    scenario: (filed, LoadGen's, notes on how they differ); power: [(label, t_s, watts with NaN where invalid)];
    qps: (t_s, q/s); marks: [(t_s, phase)] where each phase's samples start, in time order;
    window: the testing run's (power_begin, power_end) in seconds, or None."""
    record, report, check_list = evaluate(path)
    power = []
    for (src, ch), arr in recorded_samples(record).items():
        ok = arr["status"] == 0
        power.append((src if ch == "main" else f"{src}/{ch}", arr["wall_ns"] / 1e9, np.where(ok, arr["watts"], np.nan)))
    marks = []
    for name, ph in record.phases.items():
        if ph.samples is not None and len(ph.samples):
            marks.append((float(ph.samples["wall_ns"].min()) / 1e9, name))
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
