"""python -m bench [NAME ...] [--quick] [--list] [--out DIR] [--json] [--record]

Runs the benchmarks (all by default, or the named ones: by name or number), prints a table per
benchmark, and writes one JSON object per benchmark to `bench/results/NAME.json`
(`bench/results/quick/NAME.json` with --quick). `--record` also rewrites the generated part of
`bench/RESULTS.md` from the results of this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from bench import core


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="labconsole's benchmarks, each side by side with its anchor.")
    ap.add_argument("names", nargs="*", help="benchmarks to run (name or number; default: all that exist)")
    ap.add_argument("--quick", action="store_true", help="a short version (under a minute for all)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--out", type=Path, help="folder for the JSON results (default bench/results, or bench/results/quick)")
    ap.add_argument("--json", action="store_true", help="also print each result as one JSON line on stdout")
    ap.add_argument("--record", action="store_true", help="rewrite the generated section of bench/RESULTS.md from this run")
    ap.add_argument("--scratch", type=Path, help="scratch folder (default: a temporary folder, removed afterwards)")
    args = ap.parse_args(argv)

    if args.list:
        for spec in core.BENCHMARKS:
            ready = core.load(spec) is not None
            print(f"{spec.number}  {spec.name:<12} {spec.title}" + ("" if ready else "  (not written yet)"))
        return 0

    specs = []
    for name in args.names or [s.name for s in core.BENCHMARKS]:
        spec = core.spec_for(name)
        if spec is None:
            print(f"python -m bench: no benchmark named {name!r} (see --list)", file=sys.stderr)
            return 2
        specs.append(spec)

    out_dir = args.out or (core.RESULTS_DIR / "quick" if args.quick else core.RESULTS_DIR)
    machine = core.machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, load {machine['loadavg_at_start']}, "
          f"python {machine['versions']['python']}" + ("  [quick]" if args.quick else ""), flush=True)
    results: list[core.Result] = []
    failed = 0
    t_all = time.perf_counter()
    for spec in specs:
        run = core.load(spec)
        if run is None:
            if args.names:
                print(f"\n{spec.number}. {spec.name}: not written yet", flush=True)
                failed += 1
            continue
        print(f"\n{spec.number}. {spec.title}", flush=True)
        ctx = core.Context(quick=args.quick, scratch=(args.scratch / spec.name) if args.scratch else None)
        started, t0 = core.utc_now(), time.perf_counter()
        try:
            result = run(ctx)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed += 1
            continue
        finally:
            ctx.cleanup()
        result.quick = args.quick
        result.started_utc = started
        result.duration_s = round(time.perf_counter() - t0, 2)
        result.machine = dict(machine, loadavg_at_end=[round(x, 2) for x in __import__("os").getloadavg()])
        print(core.table(result), flush=True)
        for note in result.notes:
            print(f"  note: {note}", flush=True)
        path = core.write_json(result, out_dir)
        print(f"  ({result.duration_s:.1f} s; {path})", flush=True)
        if args.json:
            print(json.dumps(result.as_dict()), flush=True)
        results.append(result)
    print(f"\nall done in {time.perf_counter() - t_all:.1f} s", flush=True)
    if args.record and results:
        from bench.record import record

        print(f"recorded in {record(results, machine, args.quick)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
