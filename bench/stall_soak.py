"""Hunt for worker stalls: labconsole Server runs back to back, each watched as the console
watches a phase (labconsole/workload/stalls.py), for as long as asked.

    python -m bench.stall_soak [--minutes 20] [--qps 100000] [--run-s 30] [--keep DIR]

The one stall seen in the first round (59 s, after LoadGen logged power_end, on a machine loaded
by other work) was never reproduced; this runs the harness benchmark's labconsole way (worker,
simulated meter at 100 Hz, live view) long enough to see it again or to show it is gone. Run it
beside other load (a test suite) to reproduce the conditions it was seen in. Prints one JSON line:
runs, seconds of LoadGen, their validity, and every stall record (with what each side was doing:
the worker's threads as the kernel saw them, the pipe, LoadGen's last log line). With --keep, a
run that stalled keeps its folder (worker.log holds the worker's stacks, stalls.jsonl the records).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench import harness
from bench.core import Context


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stall_soak")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--qps", type=float, default=100_000.0)
    ap.add_argument("--run-s", type=float, default=30.0, help="min duration of each LoadGen run")
    ap.add_argument("--keep", type=Path, help="copy the folder of a run that stalled here")
    args = ap.parse_args(argv)
    ctx = Context()
    deadline = time.monotonic() + 60 * args.minutes
    out: dict = {"qps": args.qps, "run_s": args.run_s, "runs": 0, "loadgen_s": 0.0, "validity": {}, "stalls": [], "errors": []}
    try:
        while time.monotonic() < deadline:
            folder = ctx.folder(f"soak{out['runs']}")
            try:
                r = harness.run_labconsole("Server", args.qps, args.run_s, folder)
            except RuntimeError as exc:  # a failed run is reported, and the hunt goes on
                out["errors"].append(str(exc)[:400])
                r = None
            out["runs"] += 1
            if r is not None:
                out["loadgen_s"] += r["wall_s"]
                out["validity"][r["validity"]] = out["validity"].get(r["validity"], 0) + 1
                if r["stalls"]:
                    out["stalls"].extend(dict(s, run=out["runs"]) for s in r["stalls"])
                    if args.keep:
                        shutil.copytree(folder, args.keep / folder.name, dirs_exist_ok=True)
            print(f"run {out['runs']}: {r['validity'] if r else 'failed'}, stalls so far {len(out['stalls'])}", file=sys.stderr, flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        ctx.cleanup()
    out["loadgen_s"] = round(out["loadgen_s"], 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
