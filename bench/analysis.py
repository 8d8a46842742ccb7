"""3. Analysis: `report` on a bundle with many samples in the testing window, vs plain pandas.

The bundle is built the way a 100 kHz meter's run leaves it: idle, ranging and testing phases,
each stream written by labconsole's own stream writer (in 1 M-sample flushes), LoadGen logs
with a power window that holds exactly N samples (10 M; 1 M with --quick), and a ranging phase
as long as the testing one (MLPerf runs the same workload twice), so `report` reads 2 N samples.

labconsole's figure is `open_run()` + `compute_report()` (everything `report --json` computes),
in this process and as the real command line in a fresh interpreter. The anchor is what anyone
would write with pandas: `pd.read_csv()` of the testing samples as CSV, a mask on the power
window, valid status and watts > 0, and `.mean()`; also in this process and as a fresh
`python -c` script. Runs alternate; the page cache is warm for both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.core import ROOT, ChildCpu, Context, Result, alternate, median
from bench.synthetic import _value_table
from labconsole.instruments.ptd import format_power_time
from labconsole.samples.batch import SAMPLE_DTYPE

TARGET_S = 1.0
RATE_HZ = 100_000
BATCH = 10_000  # samples per batch a driver hands the recorder
FLUSH = RATE_HZ  # samples per flush: the recorder flushes about once a second
SOURCE = "meter"


def stream_suffix(fmt: str) -> str:
    try:
        from labconsole.samples.streams import STREAM_SUFFIXES

        return STREAM_SUFFIXES[fmt]
    except ImportError:
        if fmt != "csv":
            raise
        return ".csv"


def open_writer(path: Path):
    try:
        from labconsole.samples.streams import open_sample_stream

        return open_sample_stream(path, fsync=False)
    except ImportError:
        from labconsole.samples.streams import SampleStreamWriter

        return SampleStreamWriter(path, fsync=False)


def _mllog(key: str, value) -> str:
    entry = {"key": key, "value": value, "time_ms": 0.0, "namespace": "mlperf::logging", "event_type": "POINT_IN_TIME",
             "metadata": {"is_error": False, "is_warning": False, "file": "bench", "line_no": 0, "pid": 0, "tid": 0}}
    return ":::MLLOG " + json.dumps(entry)


def write_loadgen_logs(folder: Path, begin_ns: int, end_ns: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [_mllog("loadgen_version", "6.0.17 @ bench"), _mllog("effective_scenario", "Offline"),
             _mllog("power_begin", format_power_time(begin_ns)), _mllog("power_end", format_power_time(end_ns)),
             _mllog("result_validity", "VALID"), _mllog("result_samples_per_second", 12345.0), _mllog("result_query_count", 1)]
    (folder / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "mlperf_log_summary.txt").write_text("Scenario : Offline\nResult is : VALID\n", encoding="utf-8")


def write_stream(path: Path, t0_ns: int, n: int) -> None:
    """n samples at 100 kHz from t0 (+5 us so none falls on a millisecond window edge), handed
    to labconsole's writer in 10 k batches and flushed once per second of data, as recorded."""
    table = _value_table()
    w = open_writer(path)
    period = 1_000_000_000 // RATE_HZ
    for start in range(0, n, FLUSH):
        k = min(FLUSH, n - start)
        b = np.empty(k, dtype=SAMPLE_DTYPE)
        idx = (np.arange(k) + start) % len(table)
        b[:] = table[idx]
        b["mono_ns"] = (np.arange(start, start + k, dtype=np.int64)) * period
        b["wall_ns"] = t0_ns + 5_000 + b["mono_ns"]
        for j in range(0, k, BATCH):
            w.append("main", b[j : j + BATCH])
        w.flush()
    w.close()


def make_bundle(root: Path, n_window: int, fmt: str) -> dict:
    """A bundle with `n_window` testing samples inside the power window; returns its facts."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    period = 1_000_000_000 // RATE_HZ
    margin = max(1000, n_window // 100)  # samples before and after the window (LoadGen's start and end)
    t0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
    begin = t0 + margin * period
    end = begin + n_window * period
    suffix = stream_suffix(fmt)
    run = {"id": "bench", "profile": {"name": "bench"}, "scenario": "Offline", "primary_source": SOURCE, "exit_status": "completed",
           "sources": [{"name": SOURCE, "driver": "bench-synthetic", "scope": "wall", "sample_interval_s": 1 / RATE_HZ}]}
    (data / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (data / "environment.json").write_text("{}", encoding="utf-8")
    testing = data / "testing" / f"samples-{SOURCE}{suffix}"
    testing.parent.mkdir(parents=True, exist_ok=True)
    write_stream(testing, t0, n_window + 2 * margin)
    write_loadgen_logs(data / "testing" / "loadgen", begin, end)
    # Ranging ran the same workload for as long: same length, same window (a hard link: no cost).
    ranging = data / "ranging" / testing.name
    ranging.parent.mkdir(parents=True, exist_ok=True)
    os.link(testing, ranging)
    write_loadgen_logs(data / "ranging" / "loadgen", begin, end)
    idle = data / "idle" / testing.name
    idle.parent.mkdir(parents=True, exist_ok=True)
    write_stream(idle, t0 - 10**10, 3 * RATE_HZ)
    return {"path": root, "testing": testing, "begin_ns": begin, "end_ns": end, "n_window": n_window,
            "bytes_testing": testing.stat().st_size}


BASELINE = """
import sys, pandas as pd
path, begin, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
df = pd.read_csv(path, usecols=["wall_ns", "watts", "status"])
m = (df["wall_ns"] > begin) & (df["wall_ns"] < end) & (df["status"] == 0) & (df["watts"] > 0)
w = df.loc[m, "watts"]
print(repr(float(w.mean())), int(len(w)))
"""


def baseline_in_process(csv_path: Path, begin: int, end: int) -> dict:
    import pandas as pd

    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_csv(csv_path, usecols=["wall_ns", "watts", "status"])
    m = (df["wall_ns"] > begin) & (df["wall_ns"] < end) & (df["status"] == 0) & (df["watts"] > 0)
    w = df.loc[m, "watts"]
    avg, n = float(w.mean()), int(len(w))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "avg": avg, "n": n}


def report_in_process(bundle: Path) -> dict:
    """What `report --json` does after its imports: open the record (the columns the report
    reads, read-only) and compute the report."""
    from labconsole.mlperf.metrics import compute_report
    from labconsole.bundle.reader import open_run

    try:
        from labconsole.mlperf.metrics import REPORT_COLUMNS

        kw = {"columns": REPORT_COLUMNS, "read_only": True}
    except ImportError:  # the labconsole before this benchmark's changes
        kw = {}
    t0, c0 = time.perf_counter(), time.process_time()
    rep = compute_report(open_run(bundle, **kw))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "report": rep}


def _env() -> dict:
    env = dict(os.environ)
    # this checkout for `bench`; a PYTHONPATH given first (an older labconsole, for a before/after) wins
    env["PYTHONPATH"] = (env["PYTHONPATH"] + os.pathsep if env.get("PYTHONPATH") else "") + str(ROOT)
    return env


def report_cli(bundle: Path) -> dict:
    with ChildCpu() as c:
        out = subprocess.run([sys.executable, "-m", "labconsole", "report", str(bundle), "--json"], env=_env(), capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"labconsole report failed: {out.stderr[-600:]}")
    return {"wall": c.wall_s, "cpu": c.cpu_s}


def baseline_cli(csv_path: Path, begin: int, end: int) -> dict:
    with ChildCpu() as c:
        out = subprocess.run([sys.executable, "-c", BASELINE, str(csv_path), str(begin), str(end)], env=_env(), capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-600:])
    return {"wall": c.wall_s, "cpu": c.cpu_s}


def _med(runs: list[dict], key: str) -> float:
    return median([r[key] for r in runs])


def run(ctx: Context, n: int | None = None, reps: int | None = None) -> Result:
    res = Result("analysis", 3, "Analysis: `report` on a bundle with many samples vs plain pandas read-and-mask")
    n = n or ctx.pick(10_000_000, 1_000_000)
    reps = reps or ctx.pick(3, 2)
    try:
        stream_suffix("binary")
        fmt = "binary"
    except (ImportError, KeyError):
        fmt = "csv"
    ctx.log(f"building a {fmt} bundle with {n / 1e6:g} M samples in the testing window (and a ranging phase as long)")
    t0 = time.perf_counter()
    b = make_bundle(ctx.folder("bundle-main"), n, fmt)
    ctx.log(f"  written in {time.perf_counter() - t0:.1f} s ({b['bytes_testing'] / 1e6:.0f} MB per phase)")
    if fmt == "csv":
        csv_bundle = b
    else:
        ctx.log("building the same samples as CSV (the baseline's input, and a CSV-stream bundle)")
        t0 = time.perf_counter()
        csv_bundle = make_bundle(ctx.folder("bundle-csv"), n, "csv")
        ctx.log(f"  written in {time.perf_counter() - t0:.1f} s ({csv_bundle['bytes_testing'] / 1e6:.0f} MB per phase)")
    # The CSV bundle was built a moment later: same samples, its own window (same length).
    csv_path, cb, ce = csv_bundle["testing"], csv_bundle["begin_ns"], csv_bundle["end_ns"]

    # Warm the page cache and check that both compute the same thing.
    rep = report_in_process(b["path"])["report"]
    base = baseline_in_process(csv_path, cb, ce)
    base_avg, base_n = base["avg"], base["n"]
    lab_avg, lab_n = rep["power"]["avg_watts"], rep["power"]["samples_in_window"]
    ctx.log(f"report: {lab_n} samples, {lab_avg!r} W; pandas: {base_n} samples, {base_avg!r} W")

    strip = lambda d: {k: v for k, v in d.items() if k != "report"}  # noqa: E731
    runs = alternate({
        "report": lambda: strip(report_in_process(b["path"])),
        "pandas": lambda: strip(baseline_in_process(csv_path, cb, ce)),
    }, reps, ctx.log)
    r, p = _med(runs["report"], "wall"), _med(runs["pandas"], "wall")
    what = f"{fmt} streams, {n / 1e6:g} M in window, ranging as long"
    res.add(f"report in process, wall ({what})", r, "s", anchor=p, anchor_label="pandas read_csv + mask",
            target=f"< {TARGET_S:g} s and < pandas", met=r < TARGET_S and r < p)
    res.add("report in process, CPU", _med(runs["report"], "cpu"), "s", anchor=_med(runs["pandas"], "cpu"), anchor_label="pandas read_csv + mask")
    cli = alternate({"report": lambda: report_cli(b["path"]), "pandas": lambda: baseline_cli(csv_path, cb, ce)}, reps, ctx.log)
    rc, pc = _med(cli["report"], "wall"), _med(cli["pandas"], "wall")
    res.add("`labconsole report --json` (fresh process), wall", rc, "s", anchor=pc, anchor_label="python -c pandas script",
            target=f"< {TARGET_S:g} s and < pandas", met=rc < TARGET_S and rc < pc)
    res.add("`labconsole report --json` (fresh process), CPU", _med(cli["report"], "cpu"), "s", anchor=_med(cli["pandas"], "cpu"), anchor_label="python -c pandas script",
            target=f"< {TARGET_S:g} s", met=_med(cli["report"], "cpu") < TARGET_S)
    res.add("samples in window (report vs pandas)", float(lab_n), "", anchor=float(base_n), met=lab_n == base_n == n, target=f"= {n}")
    rel = abs(lab_avg - base_avg) / abs(base_avg)
    res.add("average power, relative difference to pandas", rel, "", target="< 1e-12", met=rel < 1e-12,
            note="report sums left to right like MLPerf's checker; pandas uses pairwise sums")
    res.details = {"n_window": n, "format": fmt, "bytes_per_phase": b["bytes_testing"], "csv_bytes_per_phase": csv_bundle["bytes_testing"],
                   "in_process_s": runs, "cli_s": cli, "report_avg_w": lab_avg, "pandas_avg_w": base_avg}
    if fmt != "csv" and not ctx.quick:
        ctx.log("report on the CSV-stream bundle (the format of ordinary-rate sources), for comparison")
        t = [strip(report_in_process(csv_bundle["path"])) for _ in range(2)]
        res.add("report in process, CSV streams (same samples), wall", _med(t, "wall"), "s", anchor=p, anchor_label="pandas read_csv + mask")
        res.details["csv_report_s"] = t
    res.notes.append(f"bytes per sample on disk: {b['bytes_testing'] / (n * 1.02):.0f} ({fmt})"
                     + (f", {csv_bundle['bytes_testing'] / (n * 1.02):.0f} (csv)" if fmt != "csv" else ""))
    return res
