"""A published (or exported) MLPerf Training benchmark folder, read and scored.

Layout (mlperf-logging's summarizer and package checker; reference §1.1):
    results/<system>/<benchmark>/result_<k>.txt
    results/<system>/<benchmark>/scaling.json                 optional {"scaling_factor": f}
    results/<system>/<benchmark>/power/<result_name>/node_<i>.txt, sw_<j>.txt
`<result_name>` is the result file's name up to its first dot, as the summarizer takes it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from labconsole.mlperf.training import mllog, score

RESULT_GLOB = "result_*.txt"
MAX_JSON_BYTES = 1024 * 1024
# Power results in Training began with round v4.0 (published June 2024), scored with the
# file-order summarizer; the gated one (c401ff0, Sept 2024) scored v4.1 on. A run logged before
# this date is from v4.0 (its round's rules), unless the path names the round.
GATED_FROM = dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
_ROUND_IN_PATH = re.compile(r"training_results_v(\d+)\.(\d+)", re.IGNORECASE)


class TrainingFolderError(ValueError):
    """Not a training benchmark folder, or one that cannot be read at all (exit 2)."""


@dataclass
class TrainingRun:
    name: str  # the result name: result_<k>
    result_log: Path
    run_start_ms: float | None = None
    run_stop_ms: float | None = None
    status: str | None = None  # run_stop's metadata status
    dropped: str | None = None  # why the summarizer would drop it (not converged, unreadable…)
    power_dir: Path | None = None
    energy: score.RunEnergy | None = None
    energy_error: str | None = None
    node_files: list[Path] = field(default_factory=list)
    switch_files: list[Path] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    bad_names: list[str] = field(default_factory=list)

    @property
    def ttt_ms(self) -> float | None:
        if self.run_start_ms is None or self.run_stop_ms is None:
            return None
        return self.run_stop_ms - self.run_start_ms


@dataclass
class TrainingResult:
    path: Path
    system: str
    benchmark: str
    submitter: str | None
    runs: list[TrainingRun]
    scaling_factor: float
    scaling_note: str | None
    semantics: str
    semantics_why: str
    max_dropped: int
    # scores (None when the summarizer would give none)
    time_score_min: float | None = None
    energy_score_j: float | None = None
    counted: list[str] = field(default_factory=list)  # run names the olympic average keeps
    score_note: str | None = None

    @property
    def scored_runs(self) -> list[TrainingRun]:
        return [r for r in self.runs if r.dropped is None]


def is_training_folder(path: Path) -> bool:
    path = Path(path)
    try:
        return path.is_dir() and (path / "power").is_dir() and any(path.glob(RESULT_GLOB))
    except OSError:
        return False


def find_training_folder(path: Path) -> Path | None:
    """The benchmark folder at `path`, or the single one below it (an org, results or system folder)."""
    path = Path(path)
    if is_training_folder(path):
        return path
    if not path.is_dir():
        return None
    if (path / "data" / "training" / "results").is_dir():  # a labconsole bundle of a training run
        path = path / "data" / "training" / "results"
    found: list[Path] = []
    for depth in ("*", "*/*", "*/*/*"):
        found = [p for p in sorted(path.glob(depth)) if not p.is_symlink() and is_training_folder(p)]
        if found:
            break
    return found[0] if len(found) == 1 else None


def _index(p: Path) -> tuple[int, str]:
    tail = p.stem.rsplit("_", 1)[-1]
    return (int(tail), p.name) if tail.isdigit() else (1 << 30, p.name)


def _read_scaling(folder: Path) -> tuple[float, str | None]:
    f = folder / "scaling.json"
    if not f.exists():
        return 1.0, None
    if not f.is_file() or f.stat().st_size > MAX_JSON_BYTES:
        raise TrainingFolderError(f"{f}: not a regular JSON file of sensible size")
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrainingFolderError(f"{f}: not valid JSON ({exc})") from None
    v = obj.get("scaling_factor") if isinstance(obj, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise TrainingFolderError(f"{f}: scaling_factor: expected a positive number, got {v!r}")
    return float(v), f"scaling.json multiplies time and energy by {v}"


def _read_result_log(run: TrainingRun) -> None:
    try:
        log = mllog.read(run.result_log)
    except mllog.MllogError as exc:
        run.dropped = str(exc)
        return
    # rs.py _query_run_start_stop: the last of each key seen before both have been seen
    for ln in log.lines:
        if ln.key == "run_start":
            run.run_start_ms = ln.time_ms
        if ln.key == "run_stop":
            run.run_stop_ms = ln.time_ms
            md = ln.metadata if isinstance(ln.metadata, dict) else {}
            run.status = md.get("status") if isinstance(md.get("status"), str) else None
        if run.run_start_ms is not None and run.run_stop_ms is not None:
            break
    if log.failed:
        lineno, why = log.failed[0]
        run.dropped = f"{run.result_log.name}:{lineno}: line does not parse ({why}); the summarizer drops a run whose log has a parse error"
    elif run.run_start_ms is None:
        run.dropped = f"{run.result_log.name}: run_start not recorded"
    elif run.run_stop_ms is None:
        run.dropped = f"{run.result_log.name}: run_stop not recorded"
    elif run.status != "success":
        # The compliance checker fails a run that did not converge; the summarizer drops it.
        run.dropped = f"{run.result_log.name}: run_stop status is {run.status!r}, not 'success' (did not converge)"


def _choose_semantics(folder: Path, runs: list[TrainingRun], rules: str | None) -> tuple[str, str]:
    if rules and rules not in ("auto",):
        if rules == "current":
            return score.GATED, "--rules current: today's summarizer"
        m = re.fullmatch(r"v?(\d+)\.(\d+)", rules)
        if not m:
            raise TrainingFolderError(f"--rules {rules!r}: expected auto, current or vX.Y")
        ver = (int(m[1]), int(m[2]))
        return (score.FILE_ORDER if ver < (4, 1) else score.GATED), f"--rules {rules}"
    m = _ROUND_IN_PATH.search(str(folder.resolve()))
    if m:
        ver = (int(m[1]), int(m[2]))
        sem = score.FILE_ORDER if ver < (4, 1) else score.GATED
        return sem, f"round v{ver[0]}.{ver[1]} named in the path"
    starts = [r.run_start_ms for r in runs if r.run_start_ms is not None]
    if starts:
        first = dt.datetime.fromtimestamp(min(starts) / 1000, tz=dt.timezone.utc)
        if first < GATED_FROM:
            return score.FILE_ORDER, f"runs logged {first:%Y-%m-%d}, before round v4.1: round v4.0's summarizer"
        return score.GATED, f"runs logged {first:%Y-%m-%d}: round v4.1 or later, today's summarizer"
    return score.GATED, "no dated run: today's summarizer"


def _score_run(run: TrainingRun, semantics: str) -> None:
    ttt = run.ttt_ms
    if ttt is None or run.power_dir is None:
        return
    if not run.node_files:
        run.energy_error = f"{run.power_dir}: no node_*.txt (the summarizer asserts at least one)"
        return
    energy = score.RunEnergy()
    try:
        for f in run.node_files:
            energy.nodes.append(score.node_energy(mllog.read(f), ttt, semantics))
        for f in run.switch_files:
            energy.switches.append(score.switch_energy(mllog.read(f), ttt))
    except (mllog.MllogError, score.ScoreError) as exc:
        run.energy_error = str(exc)
        return
    run.energy = energy


def read_training_folder(path: Path, rules: str | None = None) -> TrainingResult:
    found = find_training_folder(Path(path))
    if found is None:
        raise TrainingFolderError(f"{path}: not an MLPerf Training benchmark folder with power "
                                  "(results/<system>/<benchmark>/ holding result_<k>.txt and power/)")
    folder = found
    parts = folder.resolve().parts
    benchmark, system = parts[-1], parts[-2] if len(parts) > 1 else ""
    in_bundle = len(parts) > 5 and parts[-5] == "data" and parts[-4] == "training"
    submitter = parts[-4] if len(parts) > 3 and parts[-3] == "results" and not in_bundle else None
    scaling, scaling_note = _read_scaling(folder)
    runs: list[TrainingRun] = []
    for log in sorted(folder.glob(RESULT_GLOB), key=_index):
        if not log.is_file():
            continue
        name = log.name.split(".")[0]  # as rs.py: result_file.split("/")[-1].split(".")[0]
        run = TrainingRun(name=name, result_log=log)
        _read_result_log(run)
        pdir = folder / "power" / name
        if pdir.is_dir() and not pdir.is_symlink():
            run.power_dir = pdir
            for f in sorted(pdir.iterdir(), key=_index):
                if not f.is_file() or f.is_symlink():
                    run.other_files.append(f.name)
                elif f.name.startswith("node_") and f.suffix == ".txt":
                    run.node_files.append(f)
                elif f.name.startswith("sw_") and f.suffix == ".txt":
                    run.switch_files.append(f)
                else:
                    run.other_files.append(f.name)
                if f.name.startswith(("node", "sw")) and not f.stem.rsplit("_", 1)[-1].isdigit():
                    run.bad_names.append(f.name)
        runs.append(run)
    semantics, why = _choose_semantics(folder, runs, rules)
    for run in runs:
        if run.dropped is None:
            _score_run(run, semantics)
    result = TrainingResult(path=folder, system=system, benchmark=benchmark, submitter=submitter, runs=runs,
                            scaling_factor=scaling, scaling_note=scaling_note, semantics=semantics,
                            semantics_why=why, max_dropped=score.max_dropped_for(benchmark))
    _olympic(result)
    return result


def _olympic(result: TrainingResult) -> None:
    """rs.py _compute_strong_score_standalone: converged runs sorted by time to train; the same
    positions are kept for time and energy."""
    scored = result.scored_runs
    dropped = len(result.runs) - len(scored)
    if dropped > result.max_dropped:
        result.score_note = (f"{dropped} runs dropped, more than the {result.max_dropped} olympic scoring allows: "
                             "the summarizer prints CRITICAL ERROR and gives no score")
        return
    order = sorted(range(len(scored)), key=lambda i: scored[i].ttt_ms)  # stable, as sorted(enumerate(...))
    ranked = [scored[i] for i in order]
    positions = score.olympic_positions(len(ranked), dropped, result.max_dropped)
    if positions is None:
        result.score_note = "no run left after olympic scoring: the summarizer gives no score"
        return
    result.counted = [ranked[i].name for i in positions]
    result.time_score_min = score.olympic_mean([r.ttt_ms / 60 / 1000 for r in ranked], positions) * result.scaling_factor
    missing = [r for r in ranked if r.energy is None]
    if missing:
        r = missing[0]
        result.score_note = f"{r.name}: {r.energy_error or 'no power logs'}; no energy score"
        return
    result.energy_score_j = score.olympic_mean([r.energy.energy_j for r in ranked], positions) * result.scaling_factor
