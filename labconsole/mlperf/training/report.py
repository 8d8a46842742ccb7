"""What `labconsole report` gives for a Training power result: the energy score first, as the
official summarizer computes it (joules; published tables print kJ), then each run."""

from __future__ import annotations

from labconsole.mlperf.training.folder import TrainingResult

METRIC_NAME = "energy to train"


def training_report(r: TrainingResult) -> dict:
    counted = set(r.counted)
    runs = []
    for run in r.runs:
        e = run.energy
        runs.append({
            "name": run.name,
            "ttt_s": None if run.ttt_ms is None else run.ttt_ms / 1000,
            "energy_j": None if e is None else e.energy_j,
            "counted": run.name in counted,
            "dropped": run.dropped,
            "error": run.energy_error,
            "nodes": [] if e is None else [
                {"name": n.name, "energy_j": n.energy_j, "avg_watts": n.avg_watts, "conversion_eff": n.eff,
                 "readings": n.readings, "window_s": (n.stop_ms - n.start_ms) / 1000, "stop_marker": n.stop_marker}
                for n in e.nodes],
            "switches": [] if e is None else [
                {"name": s.name, "energy_j": s.energy_j, "estimate_watts": s.estimate_watts, "conversion_eff": s.eff,
                 "measured_readings": s.readings_total}
                for s in e.switches],
        })
    return {
        "kind": "mlperf-training",
        "path": str(r.path),
        "submitter": r.submitter,
        "system": r.system,
        "benchmark": r.benchmark,
        "metric": {"name": METRIC_NAME, "value": r.energy_score_j, "unit": "J"},
        "time_to_train_min": r.time_score_min,
        "scaling_factor": r.scaling_factor,
        "semantics": r.semantics,
        "semantics_why": r.semantics_why,
        "counted_runs": r.counted,
        "note": r.score_note,
        "runs": runs,
    }


def report_lines(rep: dict) -> list[str]:
    """Plain lines for a terminal; the caller escapes them (names come from files)."""
    m = rep["metric"]
    lines = [f"{rep['system']} / {rep['benchmark']}" + (f" ({rep['submitter']})" if rep["submitter"] else "")]
    if m["value"] is None:
        lines.append(f"  {METRIC_NAME}: none ({rep['note']})")
    else:
        lines.append(f"  {METRIC_NAME}: {m['value'] / 1000:,.3f} kJ ({m['value']:.6f} J), olympic average of "
                     f"{len(rep['counted_runs'])} runs × scaling {rep['scaling_factor']:.6g}")
    if rep["time_to_train_min"] is not None:
        lines.append(f"  time to train: {rep['time_to_train_min']:.6f} min")
    lines.append(f"  scored with the {rep['semantics']} summarizer ({rep['semantics_why']})")
    for run in rep["runs"]:
        mark = "*" if run["counted"] else " "
        if run["dropped"]:
            lines.append(f"  {mark} {run['name']}: dropped ({run['dropped']})")
        elif run["energy_j"] is None:
            lines.append(f"  {mark} {run['name']}: {run['ttt_s']:.3f} s, no energy ({run['error']})")
        else:
            lines.append(f"  {mark} {run['name']}: {run['ttt_s']:.3f} s, {run['energy_j'] / 1000:,.3f} kJ "
                         f"({len(run['nodes'])} nodes, {len(run['switches'])} switch logs)")
    lines.append("  (* = counted in the olympic average)")
    return lines
