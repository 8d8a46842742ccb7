"""What decides a Server run's p99.9 here: the times LoadGen's issue thread is away.

    python -m bench.issue_gaps [--qps 10000 100000] [--duration 3] [--reps 10] [--polling]

p99.9 of a 3 s run at 10 k QPS is its 30th worst query, so a single absence of the issue
thread of 2-3 ms (every query scheduled meanwhile waits behind it) sets it. This counts those
absences, each way side by side: bare LoadGen, labconsole's worker alone, and the worker with
the console beside it (meter, progress, live view) as in bench 1. LoadGen's issue callback is
noted as it runs (`bench/gap_probe/sitecustomize.py`, loaded into both ways' processes through
PYTHONPATH; labconsole itself is not changed), and a gap between two calls of over 1 ms is an
absence (at 10 k QPS a natural gap that long comes once in 22,000 queries; at 100 k, never).
Rates are pooled over every run of a way (absences per second of test), with a rough 95 %
interval for each ratio to bare (Poisson counts). `--polling` holds the CPUs out of their
idle state as `bench.p99_floor` does (root only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from bench import harness, p99_floor
from bench.core import Context, alternate, machine_info, median, utc_now

PROBE = Path(__file__).with_name("gap_probe")
WAYS = {"bare": harness.run_bare, "worker alone": harness.run_worker_alone, "labconsole": harness.run_labconsole}


def noted(run_fn, path: Path, polling: bool):
    def run(*args) -> dict:
        before = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
        os.environ["LABCONSOLE_BENCH_GAPS"] = str(path)
        try:
            out = p99_floor.polling(run_fn)(*args) if polling else run_fn(*args)
        finally:
            del os.environ["LABCONSOLE_BENCH_GAPS"]
        lines = path.read_text(encoding="utf-8").splitlines()[before:]
        # the worker alone and labconsole probe the SUT first (no LoadGen test): the test is the last line
        out["gaps"] = json.loads(lines[-1]) if lines else None
        return out

    return run


def summarize(runs: list[dict]) -> dict:
    kept = [r for r in runs if r.get("gaps")]
    secs = sum(r["gaps"]["span_ns"] for r in kept) / 1e9
    g1 = [[b - a for a, b in r["gaps"]["gaps"]] for r in kept]
    n1 = sum(len(g) for g in g1)
    n2 = sum(1 for g in g1 for d in g if d > 2e6)
    clean = [r["p999_ms"] for r, g in zip(kept, g1) if sum(1 for d in g if d > 2e6) == 0]
    hit = [r["p999_ms"] for r, g in zip(kept, g1) if sum(1 for d in g if d > 2e6) > 0]
    return {
        "runs": len(kept), "test_s": round(secs, 2),
        "p99_ms": median([r["p99_ms"] for r in kept]), "p999_ms": median([r["p999_ms"] for r in kept]),
        "absences_over_1ms": n1, "absences_over_2ms": n2,
        "absences_over_1ms_per_s": n1 / secs if secs else None, "absences_over_2ms_per_s": n2 / secs if secs else None,
        "away_ms_per_s": sum(sum(g) for g in g1) / 1e6 / secs if secs else None,
        "p999_ms_runs_without_an_absence_over_2ms": clean, "p999_ms_runs_with_one": hit,
        "absences_over_1ms_each_run": [len(g) for g in g1], "p999_ms_each_run": [round(r["p999_ms"], 3) for r in kept],
    }


def ratio(a: int, sa: float, b: int, sb: float) -> dict:
    """Rate a/sa over rate b/sb, with a 95 % interval from the counts (log-normal approximation)."""
    if not a or not b:
        return {"ratio": None}
    r = (a / sa) / (b / sb)
    half = 1.96 * math.sqrt(1 / a + 1 / b)
    return {"ratio": round(r, 3), "low": round(r * math.exp(-half), 3), "high": round(r * math.exp(half), 3)}


def measure(qps: float, duration_s: float, reps: int, base: Path, polling: bool) -> dict:
    fns = {way: noted(fn, base / f"{int(qps)}-{i}.jsonl", polling) for i, (way, fn) in enumerate(WAYS.items())}
    folders = {way: base / f"{int(qps)}-{i}" for i, way in enumerate(WAYS)}
    runs = alternate({way: (lambda way=way: fns[way]("Server", qps, duration_s, harness._clear(folders[way]))) for way in WAYS}, reps)
    out = {way: summarize(rs) for way, rs in runs.items()}
    bare = out["bare"]
    for way in ("worker alone", "labconsole"):
        w = out[way]
        out[f"{way} / bare, absences over 1 ms per s"] = ratio(w["absences_over_1ms"], w["test_s"], bare["absences_over_1ms"], bare["test_s"])
        out[f"{way} / bare, absences over 2 ms per s"] = ratio(w["absences_over_2ms"], w["test_s"], bare["absences_over_2ms"], bare["test_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.issue_gaps")
    ap.add_argument("--qps", type=float, nargs="+", default=list(harness.TAIL_QPS))
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--polling", action="store_true", help="hold the CPUs out of idle (root only), as bench.p99_floor")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "experiments" / "issue-gaps.json")
    args = ap.parse_args(argv)
    os.environ["PYTHONPATH"] = str(PROBE) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    ctx = Context()
    try:
        results: dict = {"machine": machine_info(), "when": utc_now(), "polling": args.polling, "duration_s": args.duration, "reps": args.reps,
                         "load_average_at_start": list(os.getloadavg())}
        for qps in args.qps:
            results[f"{qps:g}"] = measure(qps, args.duration, args.reps, ctx.folder("issue-gaps"), args.polling)
            print(json.dumps({f"{qps:g}": results[f"{qps:g}"]}, indent=1), flush=True)
        results["load_average_at_end"] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"written {args.out}", file=sys.stderr)
    finally:
        ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
