"""A Tiny energy run's report, checks and comparison (what `report`, `check`, `compare` print).

The report recomputes the median from the raw samples and sets it beside the folder's own
`Median energy cost is X uJ/inf.` line. Checks follow the rules' validity messages (5 windows,
each >= 10 s: a warning, since real results were published with shorter ones) and the bench's
(a single supply, the voltage set, no lost samples, no DUT errors, timestamps consecutive).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from labconsole.bundle.seal import verify
from labconsole.mlperf.checks.registry import CheckResult
from labconsole.mlperf.compare import Comparison, Figure, RunSide, pair_checks
from labconsole.mlperf.tiny.folders import TinyError, TinyRun, read_tiny
from labconsole.mlperf.tiny.scoring import ENERGYRUNNER, MEDIAN_DECIMALS, MIN_WINDOW_S, WINDOWS
from labconsole.verdict import FAIL, PASS, SKIP, WARN, worst

METRIC_NAME = "energy per inference"
METRIC_UNIT = "uJ/inf"
# Recomputed against published: EnergyRunner's timestamps are printed with 3 decimals (its
# windows were cut on finer ones), so 0.02 %; the MLCommons runner's figure is exact.
TOLERANCE_PCT = {ENERGYRUNNER: 0.02}


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def report(run: TinyRun) -> dict:
    windows = [w.as_dict() for w in run.windows]
    raw = run.median_uj_per_inf
    rep: dict = {
        "kind": "tiny",
        "path": str(run.path),
        "runner": run.runner,
        "source": run.source,
        "metric": {"name": METRIC_NAME, "value": _finite(run.metric_value), "unit": METRIC_UNIT, "unrounded": _finite(raw), "windows": len(windows)},
        "windows": windows,
        "sample_rate_hz": run.sample_rate_hz,
        "samples": run.total_samples,
        "lost_samples": run.lost_samples,
        "voltage_v": run.voltage_v,
        "dut": run.dut,
    }
    tp = run.median_throughput
    if tp is not None and (run.runner == ENERGYRUNNER or run.source == "labconsole"):
        rep["median_throughput_inf_s"] = _finite(tp)
    if run.windows:
        runtime = sum(w.runtime_s for w in run.windows)
        rep["power"] = {"avg_uw": _finite(sum(w.energy_uj for w in run.windows) / runtime) if runtime > 0 else None, "window_s": runtime}
    pub = run.published
    if "median_uj_per_inf" in pub:
        p = pub["median_uj_per_inf"]
        delta = (raw - p) / p * 100.0 if p else math.nan
        tol = TOLERANCE_PCT.get(run.runner)
        same = abs(delta) <= tol if tol is not None else f"{raw:.{MEDIAN_DECIMALS.get(run.runner, 4)}f}" == pub["median_text"]
        rep["published"] = {"median_uj_per_inf": p, "line": pub.get("line"), "delta_pct": _finite(delta), "matches": bool(same), "tolerance": f"{tol} %" if tol is not None else "exact (as printed)"}
        if "median_throughput_inf_s" in pub:
            rep["published"]["median_throughput_inf_s"] = pub["median_throughput_inf_s"]
    if rep["metric"]["value"] is None:
        rep["metric"] = None  # no window: no figure
    if run.problems:
        rep["problems"] = list(run.problems)
    if run.extra:
        rep["run"] = {k: v for k, v in run.extra.items() if k in ("id", "profile", "start", "exit_status", "reason", "monitor", "dut_port")}
    return rep


def bundle_root(run: TinyRun):
    """The labconsole bundle a Tiny session lies in (its data/tiny/), else None."""
    root = run.path.parent.parent
    return root if run.path.name == "tiny" and run.path.parent.name == "data" and (root / "data" / "run.json").is_file() else None


def checks(run: TinyRun, seal: bool = True) -> list[CheckResult]:
    """`seal`: also check a bundle's seal (off while the run itself analyses, before sealing)."""
    out: list[CheckResult] = []
    root = bundle_root(run) if seal else None
    if root is not None:
        v = verify(root)
        problem = v.problems[0] if not v.sealed else "; ".join(v.problems)
        out.append(CheckResult("manifest", FAIL if problem else PASS, problem or f"sealed; {v.files_checked} payload files match their SHA-256"))
    info = dict(run.extra or {})
    where = bundle_root(run)
    if where is not None:  # the bundle's own run.json has the last word (`recover` rewrites it)
        try:
            info.update({k: v for k, v in json.loads((where / "data" / "run.json").read_text(encoding="utf-8")).items() if k in ("exit_status", "reason")})
        except (OSError, ValueError):
            pass
    status = info.get("exit_status")
    if status is not None:  # a labconsole run: how it ended
        why = status + (f": {info.get('reason')}" if info.get("reason") else "")
        out.append(CheckResult("tiny: run completed", PASS if status == "completed" else WARN if status == "recovered" else FAIL, why))
    n = len(run.windows)
    out.append(CheckResult("tiny: 5 windows", PASS if n == WINDOWS else FAIL, f"{n} window(s) measured" + ("" if n == WINDOWS else f"; energy mode must include exactly {WINDOWS} measurements")))
    short = [w for w in run.windows if w.runtime_s < MIN_WINDOW_S]
    if not run.windows:
        out.append(CheckResult("tiny: window length", SKIP, "no window"))
    elif short:
        shown = ", ".join(f"{w.index + 1}: {w.runtime_s:.3f} s" for w in short)
        out.append(CheckResult("tiny: window length", WARN, f"{len(short)} window(s) under {MIN_WINDOW_S:g} s ({shown}); not valid for submission, kept in the median (results were published so)"))
    else:
        out.append(CheckResult("tiny: window length", PASS, f"every window >= {MIN_WINDOW_S:g} s (shortest {min(w.runtime_s for w in run.windows):.3f} s)"))
    no_inf = [w.index + 1 for w in run.windows if w.inferences <= 0]
    if no_inf:
        out.append(CheckResult("tiny: inference counts", FAIL, f"window(s) {no_inf} have no inference count"))
    if run.supplies is None:
        out.append(CheckResult("tiny: single supply", WARN, "not recorded"))
    else:
        out.append(CheckResult("tiny: single supply", PASS if run.supplies == 1 else FAIL, f"{run.supplies} energy monitor(s) supplying the DUT" + ("" if run.supplies == 1 else "; only one supply may power the DUT")))
    out.append(CheckResult("tiny: voltage set", PASS if run.voltage_v else WARN, f"{run.voltage_v:g} V" if run.voltage_v else "the DUT supply voltage is not recorded"))
    if run.lost_samples is None:
        out.append(CheckResult("tiny: no lost samples", PASS, f"{run.total_samples} samples; the trace covers every timestamp (this format keeps no loss counter)"))
    else:
        out.append(CheckResult("tiny: no lost samples", PASS if run.lost_samples == 0 else FAIL, f"{run.lost_samples} sample(s) lost of {run.total_samples + run.lost_samples}"))
    if run.non_consecutive:
        out.append(CheckResult("tiny: timestamps consecutive", FAIL, f"trial(s) {run.non_consecutive}: event counters skip (a timestamp was lost)"))
    for prob in run.problems:
        out.append(CheckResult("tiny: trace", FAIL, prob))
    errs = run.dut_errors
    out.append(CheckResult("tiny: DUT errors", FAIL if errs else PASS, f"{len(errs)} error line(s) in log.txt, first: {errs[0][:160]}" if errs else "no error in log.txt"))
    rep = report(run)
    pub = rep.get("published")
    if pub is None:
        out.append(CheckResult("tiny: published median", SKIP if run.source == "labconsole" else WARN, "no `Median energy cost` line in results.txt"))
    else:
        out.append(CheckResult("tiny: published median", PASS if pub["matches"] else FAIL, f"recomputed {rep['metric']['unrounded']:.4f} uJ/inf against {pub['median_uj_per_inf']} in results.txt ({pub['delta_pct']:+.4f} %, tolerance {pub['tolerance']})"))
    return out


def passed(results: list[CheckResult]) -> bool:
    return all(r.status != FAIL for r in results)


def _side(run: TinyRun, res: list[CheckResult]) -> RunSide:
    info = run.extra or {}
    return RunSide(str(run.path), "tiny", info.get("id"), info.get("profile"), None, info.get("exit_status"), info.get("start"), None, "lpm01a", passed(res))


def compare(a: TinyRun, b: TinyRun) -> Comparison:
    ra, rb = report(a), report(b)
    ca, cb = checks(a), checks(b)
    figs = [
        Figure("metric", f"metric ({METRIC_NAME})", METRIC_UNIT, ra["metric"]["value"], rb["metric"]["value"], "lower"),
        Figure("avg_power", "average power (windows)", "uW", (ra.get("power") or {}).get("avg_uw"), (rb.get("power") or {}).get("avg_uw"), "lower"),
        Figure("median_throughput", "median throughput", "inf/s", ra.get("median_throughput_inf_s"), rb.get("median_throughput_inf_s"), "higher"),
        Figure("window_s", "time in windows", "s", (ra.get("power") or {}).get("window_s"), (rb.get("power") or {}).get("window_s")),
    ]
    for k in range(max(len(a.windows), len(b.windows))):
        wa = a.windows[k].uj_per_inf if k < len(a.windows) else None
        wb = b.windows[k].uj_per_inf if k < len(b.windows) else None
        figs.append(Figure(f"window.{k + 1}.uj_per_inf", f"window {k + 1}: energy per inference", METRIC_UNIT, wa, wb, "lower"))
    notes = []
    ma, mb = a.dut.get("model"), b.dut.get("model")
    if ma and mb and ma != mb:
        notes.append(f"the models differ ({ma} against {mb}): the energies are not comparable")
    return Comparison(_side(a, ca), _side(b, cb), figs, pair_checks(ca, cb), [], notes, (ra, rb))


# --- what summary.json and the catalogue of recordings hold for a Tiny bundle ------------------------


def summarise(root: Path) -> tuple[dict, list[dict]]:
    """(report, checks) of a Tiny bundle, as `summary.json` holds them (written before the seal)."""
    run = read_tiny(root)
    return report(run), [c.as_dict() for c in checks(run, seal=False)]


def headline(root: Path) -> dict:
    try:
        run = read_tiny(root)
    except TinyError:
        return {"metric": "-", "checks": FAIL, "counts": {"pass": 0, "warn": 0, "fail": 1}, "scenario": "Tiny energy", "status": "unreadable"}
    rep, results = report(run), checks(run)
    m = rep.get("metric")
    info = {}
    where = bundle_root(run)
    if where is not None:
        try:
            info = json.loads((where / "data" / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    return {
        "metric": f"{m['value']:.6g} {m['unit']}" if m else "-",
        "checks": worst([PASS, *(r.status for r in results)]),
        "counts": {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail")},
        "scenario": "Tiny energy",
        "status": info.get("exit_status") or "MLPerf Tiny",
    }
