"""Checks of a Training power result: the package checker's power checks (origin "mlperf",
its names) and the rules the official tools never verify (origin "labconsole").

The official package checker (mlperf_logging/package_checker/power_checker.py) looks only at
file names and counts; nothing official reads a power log's contents (reference §2). The rules
(training_policies: power_measurement.adoc) ask more: at least one reading per second over the
timed portion, at least 60 samples, a window from just before run_start to just after run_stop,
and every node measured. Ours check those, and keep the official figure untouched.
"""

from __future__ import annotations

from collections import Counter

from pathlib import Path

from labconsole.bundle.seal import verify
from labconsole.mlperf.checks.registry import OFFICIAL, CheckResult
from labconsole.mlperf.training.folder import TrainingResult, TrainingRun
from labconsole.verdict import FAIL, PASS, SKIP, WARN

MIN_RATE_HZ = 1.0  # power_measurement.adoc: "at least 1 reading per second"
RATE_SLACK = 0.9  # below 1 Hz but above this: a warning (timestamps at 1 s resolution, duplicates)
MIN_SAMPLES = 60  # "max(one run, 60 samples)"
MAX_GAP_S = 10.0  # "spread evenly": a gap this long is a stretch nobody measured
CLOCK_SLACK_S = 60.0
MAX_UNCOVERED = 0.02  # share of the time to train a power window may miss before it is a failure  # node and result-log clocks further apart than this disagree


def bundle_seal(bundle: Path) -> list[CheckResult]:
    """A labconsole bundle of a Training session: its seal, as `check` verifies every bundle's."""
    v = verify(bundle)
    if not v.ok:
        return [CheckResult("manifest", FAIL, "; ".join(v.problems))]
    return [CheckResult("manifest", PASS, f"sealed; {v.files_checked} payload files match their SHA-256")]


def run_training_checks(result: TrainingResult, bundle: Path | None = None) -> list[CheckResult]:
    out: list[CheckResult] = bundle_seal(bundle) if bundle is not None else []
    out += _package_power_folders(result)
    out += _package_file_names(result)
    out += _package_counts(result)
    out += _summarizer_score(result)
    out += _reading_rate(result)
    out += _sample_count(result)
    out += _window_covers_run(result)
    out += _clocks_agree(result)
    out += _measured_switches(result)
    return out


def _package_power_folders(r: TrainingResult) -> list[CheckResult]:
    missing = [run.name for run in r.runs if run.power_dir is None]
    tolerated = r.max_dropped
    if not missing:
        return [CheckResult("Power result per run", PASS, f"power/<result>/ present for all {len(r.runs)} runs", OFFICIAL)]
    status = FAIL if len(missing) > tolerated else WARN
    return [CheckResult("Power result per run", status,
                        f"no power folder for {', '.join(missing)} ('Package does not contain power result'); "
                        f"the package checker tolerates {tolerated} error(s) per benchmark", OFFICIAL)]


def _package_file_names(r: TrainingResult) -> list[CheckResult]:
    out = []
    odd = sorted({f"{run.name}/{n}" for run in r.runs for n in run.other_files})
    bad = sorted({f"{run.name}/{n}" for run in r.runs for n in run.bad_names})
    if bad:
        # power_checker.py: int(basename.split('_')[-1]) raises an uncaught ValueError
        out.append(CheckResult("Power file names", FAIL, f"not node_<i>/sw_<j>: {', '.join(bad[:5])} "
                               "(the package checker stops with a ValueError on these)", OFFICIAL))
    elif odd:
        out.append(CheckResult("Power file names", WARN, f"files other than node_<i>.txt/sw_<j>.txt: {', '.join(odd[:5])}", OFFICIAL))
    else:
        out.append(CheckResult("Power file names", PASS, "node_<i>.txt and sw_<j>.txt only", OFFICIAL))
    errors = []
    for run in r.runs:
        for files, kind in ((run.node_files, "node"), (run.switch_files, "sw")):
            idx = [int(f.stem.rsplit("_", 1)[-1]) for f in files if f.stem.rsplit("_", 1)[-1].isdigit()]
            wrong = [i for i in idx if not 0 <= i < len(files)]
            dup = [i for i, c in Counter(idx).items() if c > 1]
            if wrong:
                errors.append(f"{run.name}: {kind} index {wrong[0]} outside 0..{len(files) - 1}")
            if dup:  # the package checker misses these (check_range never fills `seen`); we don't
                errors.append(f"{run.name}: {kind}_{dup[0]} given twice (the official checker does not notice)")
    out.append(CheckResult("Power file indices", FAIL if errors else PASS,
                           "; ".join(errors[:4]) if errors else "node and switch indices run 0..N-1", OFFICIAL))
    return out


def _package_counts(r: TrainingResult) -> list[CheckResult]:
    with_power = [run for run in r.runs if run.power_dir is not None]
    if not with_power:
        return [CheckResult("Node and switch counts", SKIP, "no power folders", OFFICIAL)]
    nodes = Counter(len(run.node_files) for run in with_power).most_common(1)[0][0]
    sws = Counter(len(run.switch_files) for run in with_power).most_common(1)[0][0]
    odd = [f"{run.name} ({len(run.node_files)} nodes, {len(run.switch_files)} switches)"
           for run in with_power if len(run.node_files) != nodes or len(run.switch_files) != sws]
    if not odd:
        return [CheckResult("Node and switch counts", PASS, f"{nodes} nodes and {sws} switches in every run", OFFICIAL)]
    status = FAIL if len(odd) > r.max_dropped else WARN
    return [CheckResult("Node and switch counts", status,
                        f"most runs have {nodes} nodes and {sws} switches; {', '.join(odd)} differ", OFFICIAL)]


def _summarizer_score(r: TrainingResult) -> list[CheckResult]:
    dropped = [f"{run.name}: {run.dropped}" for run in r.runs if run.dropped]
    if r.energy_score_j is None:
        return [CheckResult("Energy score", FAIL, r.score_note or "no energy score", OFFICIAL)]
    msg = (f"{r.energy_score_j:.6f} J over {len(r.counted)} runs ({', '.join(r.counted)}), "
           f"the olympic average of {len(r.scored_runs)} converged runs; {r.semantics} semantics ({r.semantics_why})")
    if dropped:
        return [CheckResult("Energy score", WARN, msg + "; dropped: " + "; ".join(dropped), OFFICIAL)]
    return [CheckResult("Energy score", PASS, msg, OFFICIAL)]


def _scored(r: TrainingResult) -> list[TrainingRun]:
    return [run for run in r.runs if run.energy is not None]


def _reading_rate(r: TrainingResult) -> list[CheckResult]:
    worst_rate, worst_gap, where_rate, where_gap = None, None, "", ""
    for run in _scored(r):
        for n in run.energy.nodes:
            window = (n.stop_ms - n.start_ms) / 1000
            rate = n.readings / window if window > 0 else 0.0
            if worst_rate is None or rate < worst_rate:
                worst_rate, where_rate = rate, f"{run.name}/{n.name}"
            if n.max_gap_s is not None and (worst_gap is None or n.max_gap_s > worst_gap):
                worst_gap, where_gap = n.max_gap_s, f"{run.name}/{n.name}"
    if worst_rate is None:
        return [CheckResult("Reading rate", SKIP, "no node log could be scored")]
    msg = f"slowest {worst_rate:.3f} readings/s ({where_rate}); longest gap {worst_gap or 0:.1f} s ({where_gap})"
    if worst_rate < MIN_RATE_HZ * RATE_SLACK:
        return [CheckResult("Reading rate", FAIL, msg + f"; the rules ask at least {MIN_RATE_HZ:g} reading per second "
                            "(no official tool checks it)")]
    if worst_rate < MIN_RATE_HZ or (worst_gap or 0) > MAX_GAP_S:
        return [CheckResult("Reading rate", WARN, msg + "; readings should be at least 1/s, spread evenly")]
    return [CheckResult("Reading rate", PASS, msg)]


def _sample_count(r: TrainingResult) -> list[CheckResult]:
    low = [(n.readings, f"{run.name}/{n.name}") for run in _scored(r) for n in run.energy.nodes if n.readings < MIN_SAMPLES]
    if not _scored(r):
        return [CheckResult("At least 60 readings", SKIP, "no node log could be scored")]
    if low:
        low.sort()
        return [CheckResult("At least 60 readings", FAIL, f"{low[0][1]} has {low[0][0]} readings in its window "
                            f"({len(low)} node logs under {MIN_SAMPLES}); the rules ask runs be extended to 60")]
    return [CheckResult("At least 60 readings", PASS, f"every node log has at least {MIN_SAMPLES} readings in its window")]


def _window_covers_run(r: TrainingResult) -> list[CheckResult]:
    worst = 0.0
    worst_frac = 0.0
    where = ""
    for run in _scored(r):
        for n in run.energy.nodes:
            late_start = (n.start_ms - run.run_start_ms) / 1000
            early_stop = (run.run_stop_ms - n.stop_ms) / 1000
            for miss, what in ((late_start, "starts after run_start"), (early_stop, "stops before run_stop")):
                if miss > worst:
                    worst, where = miss, f"{run.name}/{n.name} {what} by {miss:.3f} s"
                    worst_frac = max(worst_frac, miss * 1000 / run.ttt_ms) if run.ttt_ms else 1.0
    if not _scored(r):
        return [CheckResult("Power window covers the run", SKIP, "no node log could be scored")]
    if worst == 0:
        return [CheckResult("Power window covers the run", PASS, "every node's window runs from before run_start to after run_stop")]
    # Energy is mean window power × time to train, so a window a few readings short changes
    # little (Dell's published v4.1 result stops up to 2 s, 0.7 %, early); one that misses a real
    # part of the run measures something else.
    status = WARN if worst_frac <= MAX_UNCOVERED else FAIL
    return [CheckResult("Power window covers the run", status,
                        f"{where}, {worst_frac:.2%} of its time to train (the worst; no official tool checks the window against the run)")]


def _clocks_agree(r: TrainingResult) -> list[CheckResult]:
    notes: list[str] = []
    sw_notes: list[str] = []
    for run in _scored(r):
        for n in run.energy.nodes:
            if n.first_reading_ms is None:
                continue
            off = max(run.run_start_ms - n.stop_ms, n.start_ms - run.run_stop_ms) / 1000
            if off > CLOCK_SLACK_S:
                notes.append(f"{run.name}/{n.name}: its window lies {off:.0f} s away from the run")
        for s in run.energy.switches:
            if s.first_reading_ms is None:
                continue  # an estimate's timestamp is not a measurement (SMC's are from 2022)
            off = max(run.run_start_ms - s.last_reading_ms, s.first_reading_ms - run.run_stop_ms) / 1000
            if off > CLOCK_SLACK_S:
                sw_notes.append(f"{run.name}/{s.name}: its readings lie {off:.0f} s away from the run")
    if not _scored(r):
        return [CheckResult("Clocks agree", SKIP, "no node log could be scored")]
    if notes:
        return [CheckResult("Clocks agree", FAIL, "; ".join(notes[:3]) + " — node and result-log clocks disagree")]
    if sw_notes:
        # Measured switch readings count 0 J officially, so a wrong switch clock changes no figure; say so.
        return [CheckResult("Clocks agree", WARN, f"{len(sw_notes)} switch logs: " + "; ".join(sw_notes[:2])
                            + " — the switch clock disagrees with the result logs")]
    return [CheckResult("Clocks agree", PASS, "every node's window overlaps its run's timed window")]


def _measured_switches(r: TrainingResult) -> list[CheckResult]:
    measured = sorted({f"{run.name}/{s.name}" for run in _scored(r) for s in run.energy.switches
                       if s.estimate_watts is None and s.readings_total})
    empty = sorted({f"{run.name}/{s.name}" for run in _scored(r) for s in run.energy.switches
                    if s.estimate_watts is None and not s.readings_total})
    if not any(run.energy.switches for run in _scored(r)):
        return [CheckResult("Interconnect counted", SKIP, "no switch logs (the rules ask the interconnect be measured or estimated)")]
    if measured or empty:
        what = (f"{len(measured)} switch logs hold measured power_readings but no interconnect_power_est "
                f"(e.g. {measured[0]}): the official summarizer counts them as 0 J") if measured else \
               f"switch logs with neither readings nor an estimate: {', '.join(empty[:3])}"
        return [CheckResult("Interconnect counted", WARN, what)]
    return [CheckResult("Interconnect counted", PASS, "every switch log gives an interconnect_power_est")]
