"""What every benchmark shares: the registry, results, side-by-side timing, the table, the JSON.

A benchmark is a module in `bench/` with a `run(ctx: Context) -> Result` function, listed in
`BENCHMARKS` below with its number in the issue. A module that does not exist (yet) shows up
in `--list` as "not written yet" and is skipped by `python -m bench`.

Figures are always measured next to their anchor in the same process or the same run, in
alternating repetitions, and reported as medians with the ratio: on a shared, noisy machine a
ratio measured side by side means more than any absolute number.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True)
class Spec:
    name: str
    number: int  # the benchmark's number in issue 6
    title: str
    module: str


BENCHMARKS: tuple[Spec, ...] = (
    Spec("harness", 1, "Harness overhead: null SUT through labconsole's LoadGen worker vs bare LoadGen", "bench.harness"),
    Spec("acquisition", 2, "Acquisition: synthetic sources through the recorder into the bundle's stream", "bench.acquisition"),
    Spec("analysis", 3, "Analysis: `report` on a bundle with many samples vs plain pandas read-and-mask", "bench.analysis"),
    Spec("plots", 4, "Plot repaint: one live power plot at 160x48 vs plotext fed the raw points", "bench.plots"),
    Spec("startup", 5, "Start-up: `labconsole --help` (and the TUI's first paint) vs `python -c pass`", "bench.startup"),
    Spec("replay", 6, "Replay: a one-hour 10 samples/s recording replayed as fast as it goes", "bench.replay"),
    Spec("memory", 7, "Memory: `report`, `check` and the Results screen on a 60 M-sample phase (100 kHz, 600 s)", "bench.memory"),
    Spec("tiny", 8, "MLPerf Tiny at 100 kHz: an LPM01A binary stream recorded for 10 minutes, windows scored", "bench.tiny_stream"),
    Spec("tinyrun", 9, "MLPerf Tiny: the whole emulated energy procedure (labconsole run --profile profiles/emu-tiny.yaml)", "bench.tiny_run"),
    Spec("fleet", 10, "Fleets: 1,000 nodes reduced, a 64-node live view, a 1,000-series Prometheus range query", "bench.fleet"),
    Spec("console", 11, "Console: key -> screen changed during a run recording at 10 kHz with the plots updating, vs no run", "bench.console"),
    Spec("training", 19, "Training scoring: a 64-node, 10-run session scored (official layout) vs the official summarizer's power code", "bench.training"),
)


def spec_for(name: str) -> Spec | None:
    for s in BENCHMARKS:
        if s.name == name or str(s.number) == name:
            return s
    return None


def load(spec: Spec) -> Callable[["Context"], "Result"] | None:
    """The benchmark's `run` function, or None when its module is not written yet."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name == spec.module:
            return None
        raise
    return getattr(module, "run")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One figure: labconsole's value, the anchor's, their ratio, and the target if any."""

    figure: str
    value: float | None
    unit: str = ""
    anchor: float | None = None
    anchor_label: str = ""
    ratio: float | None = None  # value / anchor unless the benchmark says otherwise
    target: str = ""  # e.g. ">= 0.95 x anchor", "< 1 s"
    met: bool | None = None
    note: str = ""


@dataclass
class Result:
    name: str
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # raw repetitions, settings, ...
    quick: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    started_utc: str = ""
    duration_s: float = 0.0

    def add(self, figure: str, value: float | None, unit: str = "", **kw: Any) -> Row:
        row = Row(figure, value, unit, **kw)
        if row.ratio is None and row.value is not None and row.anchor not in (None, 0):
            row.ratio = row.value / row.anchor
        self.rows.append(row)
        return row

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["figures"] = {r.figure: r.value for r in self.rows}
        d["ratios"] = {r.figure: r.ratio for r in self.rows if r.ratio is not None}
        d["targets"] = [{"figure": r.figure, "target": r.target, "value": r.value, "met": r.met} for r in self.rows if r.target]
        return _json_safe(d)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _json_safe(obj.item())
    return obj


# ---------------------------------------------------------------------------------------------
# Context


class Context:
    """What a benchmark run gets: quick or full, a scratch folder, and a log line printer."""

    def __init__(self, quick: bool = False, scratch: Path | None = None, verbose: bool = True):
        self.quick = quick
        self.verbose = verbose
        self._own_scratch = scratch is None
        self.scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="labconsole-bench-"))
        self.scratch.mkdir(parents=True, exist_ok=True)

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def folder(self, name: str) -> Path:
        d = self.scratch / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def cleanup(self) -> None:
        if self._own_scratch:
            import shutil

            shutil.rmtree(self.scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Measuring


def median(values: list[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def alternate(runs: dict[str, Callable[[], Any]], reps: int, log: Callable[[str], None] | None = None) -> dict[str, list[Any]]:
    """Run each callable `reps` times, interleaved A B A B ..., with the order of each round
    swapped every other round (A B, B A, ...) so neither side always runs first."""
    out: dict[str, list[Any]] = {k: [] for k in runs}
    labels = list(runs)
    for i in range(reps):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            value = runs[label]()
            out[label].append(value)
            if log is not None:
                log(f"{label} #{i + 1}: {_short(value)}")
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in list(value.items())[:4])
    return str(value)


class CpuClock:
    """Process CPU (user + system, all threads) and wall time over an interval."""

    def __enter__(self) -> "CpuClock":
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.wall_s = time.perf_counter() - self._t0
        self.user_s = r1.ru_utime - self._r0.ru_utime
        self.sys_s = r1.ru_stime - self._r0.ru_stime
        self.cpu_s = self.user_s + self.sys_s


class ChildCpu:
    """CPU (user + system) of the child processes waited for inside the block (run them one
    at a time): on a loaded machine a child's CPU time says more than its wall time."""

    def __enter__(self) -> "ChildCpu":
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._c0 = r.ru_utime + r.ru_stime
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = r.ru_utime + r.ru_stime - self._c0
        self.wall_s = time.perf_counter() - self._t0


def thread_cpu_s(ident: int | None) -> float | None:
    """CPU seconds used so far by one thread (Linux), None when unknown."""
    if ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ProcessLookupError):
        return None


# ---------------------------------------------------------------------------------------------
# The machine (recorded with every result: the numbers mean little without it)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod, dist in (("numpy", "numpy"), ("pandas", "pandas"), ("mlperf_loadgen", "mlcommons-loadgen"), ("labconsole", "labconsole")):
        try:
            from importlib.metadata import version

            versions[mod] = version(dist)
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {
        "commit": _git_commit(),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def _git_commit() -> str | None:
    """The checkout's commit (with "+changes" when the tree differs from it), None outside git."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Output


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    a = abs(value)
    if unit == "%":
        text = f"{value:.2f}"
    elif a >= 1e6:
        text = f"{value / 1e6:.3g} M"
    elif a >= 1e4:
        text = f"{value / 1e3:.4g} k"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 1:
        text = f"{value:.3g}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit and not text.endswith(" ") else (text + unit).strip()


def table(result: Result) -> str:
    head = ["figure", "labconsole", "anchor", "ratio", "target", "met"]
    body = []
    for r in result.rows:
        anchor = f"{fmt(r.anchor, r.unit)}" + (f" ({r.anchor_label})" if r.anchor_label and r.anchor is not None else "")
        met = "" if r.met is None else ("yes" if r.met else "NO")
        body.append([r.figure, fmt(r.value, r.unit), anchor if r.anchor is not None else "-", f"{r.ratio:.3f}" if r.ratio is not None else "-", r.target, met])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)] if body else [len(h) for h in head]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def markdown_table(result: Result) -> str:
    out = ["| figure | labconsole | anchor | ratio | target | met |", "|---|---|---|---|---|---|"]
    for r in result.rows:
        anchor = "-" if r.anchor is None else fmt(r.anchor, r.unit) + (f" ({r.anchor_label})" if r.anchor_label else "")
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        out.append(f"| {r.figure} | {fmt(r.value, r.unit)} | {anchor} | {f'{r.ratio:.3f}' if r.ratio is not None else '-'} | {r.target} | {met} |")
    return "\n".join(out)


def write_json(result: Result, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
