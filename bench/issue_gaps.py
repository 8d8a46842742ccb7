"""What decides a Server run's p99.9 here: the times LoadGen's issue thread is away.

    python -m bench.issue_gaps [--qps 10000 100000] [--duration 3] [--reps 10] [--polling]

p99.9 of a 3 s run at 10 k QPS is its 30th worst query, so a single absence of the issue
thread of 2-3 ms (every query scheduled meanwhile waits behind it) sets it. This counts those
absences, each way side by side: bare LoadGen, labconsole's worker alone, and the worker with
the console beside it (meter, progress, live view) as in bench 1. LoadGen's issue callback is
noted as it runs (`bench/gap_probe/sitecustomize.py`, loaded into both ways' processes through
PYTHONPATH; labconsole itself is not changed), and a gap between two calls of over 1 ms is an
absence (at 10 k QPS a natural gap that long comes once in 22,000 queries; at 100 k, never).
Each way's runs are summed up (absences per second of test), and compared with bare's round by
round (`absences.paired`: the machine's absences come in spells, so pooled counts would
overstate what they resolve). `--polling` holds the CPUs out of their
idle state as `bench.p99_floor` does (root only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench import harness, p99_floor
from bench.absences import noted, paired, probe_in_children, summarize
from bench.core import Context, alternate, machine_info, utc_now

WAYS = {"bare": harness.run_bare, "worker alone": harness.run_worker_alone, "labconsole": harness.run_labconsole}


def measure(qps: float, duration_s: float, reps: int, base: Path, polling: bool) -> dict:
    fns = {way: noted(p99_floor.polling(fn) if polling else fn, base / f"{int(qps)}-{i}.jsonl") for i, (way, fn) in enumerate(WAYS.items())}
    folders = {way: base / f"{int(qps)}-{i}" for i, way in enumerate(WAYS)}
    runs = alternate({way: (lambda way=way: fns[way]("Server", qps, duration_s, harness._clear(folders[way]))) for way in WAYS}, reps)
    out = {way: summarize(rs) for way, rs in runs.items()}
    for way in ("worker alone", "labconsole"):
        out[f"{way} against bare, absences over 1 ms"] = paired(runs[way], runs["bare"], 1.0)
        out[f"{way} against bare, absences over 2 ms"] = paired(runs[way], runs["bare"], 2.0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.issue_gaps")
    ap.add_argument("--qps", type=float, nargs="+", default=list(harness.TAIL_QPS))
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--polling", action="store_true", help="hold the CPUs out of idle (root only), as bench.p99_floor")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "experiments" / "issue-gaps.json")
    args = ap.parse_args(argv)
    ctx = Context()
    try:
        results: dict = {"machine": machine_info(), "when": utc_now(), "polling": args.polling, "duration_s": args.duration, "reps": args.reps,
                         "load_average_at_start": list(os.getloadavg())}
        for qps in args.qps:
            with probe_in_children():
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
