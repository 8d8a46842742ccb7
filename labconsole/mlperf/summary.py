"""A run's `summary.json`: MLPerf's figures and the checks, computed from what was recorded."""

from __future__ import annotations

from pathlib import Path


def summarise(root: Path) -> tuple[dict, list[dict]]:
    """(report, checks) of the bundle at `root`, as `summary.json` holds them.

    The manifest check is left out: the summary is written before the bundle is sealed.
    """
    from labconsole.bundle.reader import open_run
    from labconsole.mlperf import metrics
    from labconsole.mlperf import checks

    record = open_run(root)
    report = metrics.compute_report(record)
    check_list = [c.as_dict() for c in checks.run_checks(record) if c.name != "manifest"]
    return report, check_list
