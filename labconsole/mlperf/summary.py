"""What MLPerf's figures and checks say about one recording: the `summary.json` a run writes,
and the one-line headline the catalogue of recordings shows."""

from __future__ import annotations

from pathlib import Path

from labconsole.bundle.reader import RunRecord, open_run
from labconsole.mlperf import checks, metrics, official_record
from labconsole.mlperf.training.checks import run_training_checks
from labconsole.mlperf.training.folder import read_training_folder
from labconsole.mlperf.training.report import training_report
from labconsole.mlperf.tiny import analysis as tiny
from labconsole.mlperf.tiny.folders import find_tiny, read_tiny
from labconsole.verdict import PASS, worst


def evaluate(root: str | Path) -> tuple[RunRecord, dict, list]:
    """(record, report, check results) of the recording at `root` (slow: reads every sample,
    and the manifest check hashes every file). The samples are streamed: bounded memory."""
    if official_record.is_official_bundle(Path(root)):
        # An official run: its record is power-dev's session folder kept in the bundle, plus
        # the bundle's own seal (compliance/check.py runs only in `check`: it takes seconds).
        folder = official_record.official_folder(Path(root))
        if folder is not None:
            record = official_record.open_official(Path(root), folder)
            return record, metrics.compute_report(record), official_record.bundle_checks(Path(root)) + checks.run_checks(record)
    record = open_run(root, stream=True)
    if find_tiny(root) is not None:  # MLPerf Tiny's energy mode: its own figures and checks
        run = read_tiny(root)
        return record, tiny.report(run), tiny.checks(run)
    if record.kind == "bundle" and (record.run_info or {}).get("training"):
        # A Training session: scored from the official layout it keeps, as a published folder is
        result = read_training_folder(Path(root), rules="current")
        report = training_report(result)
        report["scenario"] = "Training"
        return record, report, run_training_checks(result, bundle=Path(root))
    return record, metrics.compute_report(record), checks.run_checks(record)


def summarise(root: Path) -> tuple[dict, list[dict]]:
    """(report, checks) of the bundle at `root`, as `summary.json` holds them.

    The manifest check is left out: the summary is written before the bundle is sealed.
    """
    if find_tiny(root) is not None:  # MLPerf Tiny's energy mode
        return tiny.summarise(root)
    _, report, results = evaluate(root)
    check_list = [c.as_dict() for c in results if c.name != "manifest"]
    return report, check_list


def headline(root: Path) -> dict:
    """A recording's metric and check verdicts, as the catalogue of recordings shows them."""
    if find_tiny(root) is not None:
        return tiny.headline(root)
    record, rep, results = evaluate(root)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail")}
    m = rep.get("metric")
    return {
        "metric": f"{m['value']:.4g} {m['unit']}" if m else "-",
        "checks": worst([PASS, *(r.status for r in results)]),  # a skip is no failure
        "counts": counts,
        "scenario": rep.get("scenario") or "?",
        "status": record.exit_status if record.kind == "bundle" else (f"official {record.exit_status}" if record.run_info.get("official_bundle") else "MLPerf"),
    }
