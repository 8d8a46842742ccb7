"""7. Memory at submission scale: peak RSS and time of `report`, `check` and the Results screen's
data on a 100 kHz source over a 600 s phase (60 M samples; 6 M with --quick).

The bundle is the analysis benchmark's (bench.analysis.make_bundle: binary streams written by
labconsole's own writer, a testing window holding exactly N samples, a ranging phase as long),
so `report` reads 2 N samples. Each command runs in a fresh interpreter whose peak RSS is
taken from the kernel (ru_maxrss, as `/usr/bin/time -v` prints it, by a small parent).

The anchor is the whole-array path `report` took before it streamed, kept runnable: the same
process reading every phase whole (`open_run(columns=REPORT_COLUMNS, read_only=True)`, the
frames the old `report` built) and computing the report on them. Its figures are checked
equal to the streamed command's, bit for bit. The whole-array `check` is not run at full size:
it needs ~320 bytes a sample (measured: 1.94 GB at 6 M samples a phase, so ~19 GB at 60 M).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.analysis import _env, make_bundle
from bench.core import Context, Result, alternate, median

TARGET_MB = 300.0

WHOLE_ARRAY_REPORT = """
import json, sys
from labconsole.bundle.reader import open_run
from labconsole.mlperf.metrics import REPORT_COLUMNS, compute_report
record = open_run(sys.argv[1], columns=REPORT_COLUMNS, read_only=True)
print(json.dumps(compute_report(record), default=str))
"""

RESULTS_DATA = """
import sys
from labconsole.session.results import load_results
data = load_results(sys.argv[1])
print(sum(len(t) for _, t, _ in data["power"]), "points plotted")
"""


# A small parent that runs the command and reports its child's usage: a child's peak RSS
# counts what it inherited at fork (Linux keeps the high-water mark across exec), so forking
# the command from this process, which holds a bundle's worth of arrays, would inflate it.
PROBE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": u.ru_utime + u.ru_stime, "rss_mb": u.ru_maxrss / 1024, "rc": rc}))
"""


def measured(args: list[str]) -> dict:
    """Run a command; its wall time, CPU and peak RSS (MB) from the kernel, and its stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stdout"
        p = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(out), *args], capture_output=True, text=True, env=_env(), timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"probe failed: {p.stderr[-600:]}")
        got = json.loads(p.stdout)
        got["stdout"] = out.read_text(encoding="utf-8", errors="replace")
    if got.pop("rc") not in (0, 1):  # check exits 1 on a failed check (this bundle is unsealed)
        raise RuntimeError(f"{args[2:5]} failed")
    return got


def run(ctx: Context, n: int | None = None, reps: int | None = None) -> Result:
    res = Result("memory", 7, "Memory: `report`, `check` and the Results screen on a 60 M-sample phase (100 kHz, 600 s)")
    n = n or ctx.pick(60_000_000, 6_000_000)
    reps = reps or ctx.pick(2, 2)
    ctx.log(f"building a binary bundle with {n / 1e6:g} M samples in the testing window (and a ranging phase as long)")
    t0 = time.perf_counter()
    b = make_bundle(ctx.folder("bundle"), n, "binary")
    ctx.log(f"  written in {time.perf_counter() - t0:.1f} s ({b['bytes_testing'] / 1e6:.0f} MB per phase)")
    path = str(b["path"])
    py = sys.executable
    report = [py, "-m", "labconsole", "report", path, "--json"]
    whole = [py, "-c", WHOLE_ARRAY_REPORT, path]
    strip = lambda d: {k: v for k, v in d.items() if k != "stdout"}  # noqa: E731
    # Warm the page cache, and check that both paths give the same figures, bit for bit.
    new_rep = json.loads(measured(report)["stdout"])
    old_rep = json.loads(measured(whole)["stdout"])
    same = new_rep["power"] == json.loads(json.dumps(old_rep["power"])) and new_rep["metric"] == old_rep["metric"] and new_rep["ranging_delta_pct"] == old_rep["ranging_delta_pct"]
    runs = alternate({"streamed": lambda: strip(measured(report)), "whole": lambda: strip(measured(whole))}, reps, ctx.log)
    what = f"{n / 1e6:g} M samples in the window, ranging as long"
    rss, rss_old = median([r["rss_mb"] for r in runs["streamed"]]), median([r["rss_mb"] for r in runs["whole"]])
    res.add(f"`labconsole report --json` peak RSS ({what})", rss, "MB", anchor=rss_old, anchor_label="whole-array report",
            target=f"< {TARGET_MB:g} MB", met=rss < TARGET_MB)
    wall, wall_old = median([r["wall"] for r in runs["streamed"]]), median([r["wall"] for r in runs["whole"]])
    res.add("`labconsole report --json` wall time", wall, "s", anchor=wall_old, anchor_label="whole-array report")
    res.add("`labconsole report --json` CPU", median([r["cpu"] for r in runs["streamed"]]), "s",
            anchor=median([r["cpu"] for r in runs["whole"]]), anchor_label="whole-array report")
    res.add("MLPerf figures equal to the whole-array path's (power, metric, ranging delta)", 1.0 if same else 0.0, "", target="= 1 (bit for bit)", met=same)
    ctx.log("check (streamed; the whole-array check would need ~19 GB here)")
    chk = [measured([py, "-m", "labconsole", "check", path, "--json"]) for _ in range(reps)]
    res.add("`labconsole check --json` peak RSS", median([c["rss_mb"] for c in chk]), "MB", target=f"< {TARGET_MB:g} MB",
            met=median([c["rss_mb"] for c in chk]) < TARGET_MB, note="the whole-array check measured 1.94 GB at 6 M samples a phase (~320 bytes a sample)")
    res.add("`labconsole check --json` wall time", median([c["wall"] for c in chk]), "s")
    ctx.log("the Results screen's data (metrics, checks, whole-run plots)")
    scr = [measured([py, "-c", RESULTS_DATA, path]) for _ in range(reps)]
    res.add("Results screen data (load_results) peak RSS", median([c["rss_mb"] for c in scr]), "MB", target=f"< {TARGET_MB:g} MB",
            met=median([c["rss_mb"] for c in scr]) < TARGET_MB)
    res.add("Results screen data (load_results) wall time", median([c["wall"] for c in scr]), "s")
    res.notes.append(f"{b['bytes_testing'] / 1e9:.2f} GB of binary stream per phase; the page cache is warm for both paths")
    res.details = {"n_window": n, "bytes_per_phase": b["bytes_testing"], "report": runs, "check": [strip(c) for c in chk],
                   "results_screen": [strip(c) for c in scr], "report_avg_w": new_rep["power"]["avg_watts"]}
    return res
