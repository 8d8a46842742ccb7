"""Two Training power results side by side (`labconsole compare A B`): bundles or published
folders, in the same Comparison structure as Inference runs so the text and JSON are alike."""

from __future__ import annotations

from pathlib import Path

from labconsole.mlperf.compare import Comparison, Figure, RunSide, pair_checks
from labconsole.mlperf.training.checks import run_training_checks
from labconsole.mlperf.training.folder import TrainingResult, read_training_folder
from labconsole.mlperf.training.report import training_report


def _side(r: TrainingResult, checks: list) -> RunSide:
    return RunSide(path=str(r.path), kind="mlperf-training", id=None, profile=r.system, scenario=r.benchmark,
                   exit_status=None, start=None, result_validity=None, primary_source=None,
                   passed=all(c.status != "fail" for c in checks))


def _mean_power(rep: dict) -> float | None:
    counted = [r for r in rep["runs"] if r["counted"] and r["energy_j"] is not None and r["ttt_s"]]
    if not counted:
        return None
    return sum(r["energy_j"] for r in counted) / sum(r["ttt_s"] for r in counted)


def compare_training(a: Path, b: Path) -> Comparison:
    ra, rb = read_training_folder(a), read_training_folder(b)
    ca, cb = run_training_checks(ra), run_training_checks(rb)
    pa, pb = training_report(ra), training_report(rb)
    figs = [
        Figure("metric", "energy to train", "J", pa["metric"]["value"], pb["metric"]["value"], "lower"),
        Figure("time_to_train", "time to train", "min", pa["time_to_train_min"], pb["time_to_train_min"], "lower"),
        Figure("avg_power", "mean system power over the counted runs", "W", _mean_power(pa), _mean_power(pb), None),
        Figure("runs", "runs", "", len(pa["runs"]), len(pb["runs"]), None),
        Figure("nodes", "nodes (first run)", "", len(pa["runs"][0]["nodes"]) if pa["runs"] else None,
               len(pb["runs"][0]["nodes"]) if pb["runs"] else None, None),
        Figure("scaling_factor", "scaling.json factor", "", pa["scaling_factor"], pb["scaling_factor"], None),
    ]
    notes = []
    if ra.benchmark != rb.benchmark:
        notes.append(f"different benchmarks: {ra.benchmark} vs {rb.benchmark}; energies to train are not comparable")
    if ra.semantics != rb.semantics:
        notes.append(f"scored by different summarizers: A {ra.semantics} ({ra.semantics_why}), B {rb.semantics} ({rb.semantics_why})")
    return Comparison(_side(ra, ca), _side(rb, cb), figs, pair_checks(ca, cb), [], notes, (pa, pb))
