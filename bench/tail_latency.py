"""Server tail latency of labconsole's LoadGen worker alone vs bare LoadGen, alternating.

    python -m bench.tail_latency [--qps 280000] [--duration 2] [--reps 3]

One JSON line: each run's validity and p99, and the medians. For a before/after, run it from
outside the checkout with an older labconsole first on the path (`git archive` of a commit
into OLD; `cd /tmp && PYTHONPATH=OLD:REPO python -m bench.tail_latency`): the worker is spawned
from whichever labconsole is imported, and the output names it. Near the knee, a few milliseconds of
stall in the issue thread decide VALID or INVALID; this is where the worker's own overhead
shows first (see RESULTS.md, harness).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import labconsole
from bench import harness
from bench.core import Context, alternate, median
from labconsole.workload.loadgen_log import parse_detail_log
from labconsole.workload.runner import LoadGenRun


def worker_alone(qps: float, duration_s: float, folder: Path) -> dict:
    run = LoadGenRun(harness.workload("Server", qps, duration_s), folder, None, scenario="Server", duration_s=duration_s)
    result = run.run()
    if not result.ok:
        raise RuntimeError(f"worker run {result.status}: {result.reason}")
    d = parse_detail_log(folder / "loadgen" / "mlperf_log_detail.txt")
    return {"validity": d.validity, "p99_ms": d.get("result_99.00_percentile_latency_ns") / 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tail_latency")
    ap.add_argument("--qps", type=float, default=280_000)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    ctx = Context()
    out: dict = {"labconsole": str(Path(labconsole.__file__).parent), "qps": args.qps, "duration_s": args.duration, "worker": [], "bare": []}
    try:
        done = {"worker": 0, "bare": 0}

        def run(how: str):
            def once() -> dict:
                folder = ctx.folder(f"{how}{done[how]}")
                done[how] += 1
                r = worker_alone(args.qps, args.duration, folder) if how == "worker" else harness.run_bare("Server", args.qps, args.duration, folder)
                shutil.rmtree(folder)
                return {"validity": r["validity"], "p99_ms": round(r["p99_ms"], 2)}
            return once

        out.update(alternate({"worker": run("worker"), "bare": run("bare")}, args.reps))
    finally:
        ctx.cleanup()
    for how in ("worker", "bare"):
        out[f"{how}_median_p99_ms"] = median([r["p99_ms"] for r in out[how]])
        out[f"{how}_valid"] = sum(r["validity"] == "VALID" for r in out[how])
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
