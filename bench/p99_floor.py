"""What a Server p99 is made of on this machine: the harness against bare LoadGen, with the
CPUs let idle (as in every measured run) and held out of their idle state.

    python -m bench.p99_floor [--qps 10000 100000] [--duration 3] [--reps 8]

On a virtual machine a CPU with nothing to run halts, and the host must schedule it again
before a woken thread runs; the guest does not see that delay as run-queue wait. LoadGen's
issue thread sleeps between queries, so at 10 k-100 k QPS its timer often fires on a halted
CPU. (On the machine of RESULTS.md the guest's cpuidle-haltpoll driver is set to poll for 0 ns
before halting: `/sys/module/haltpoll/parameters/guest_halt_poll_ns`.) Here each way (bare
LoadGen, labconsole's worker with the meter and live view) runs as in bench 1, and again with
the kernel's PM QoS request for zero exit latency held open (`/dev/cpu_dma_latency`, root
only), which keeps every idle CPU in its polling state instead of halting; no task of ours
runs meanwhile. The difference between the two is the machine's idle-wake floor, which bare
LoadGen pays as much as labconsole; what is left is what each way costs. Runs alternate;
medians. The same again with `workload.issue_cpu: none` (the issue thread not pinned) shows
what the placement buys and costs.

Bench only: a polling CPU draws more power than a halted one, so nothing like it may run
during a measurement. (SCHED_IDLE busy loops would do the same job but are not idle to the
worker: it runs in its own session, so with the kernel's autogroups a loop in another session
competes with it as an equal.)
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from bench import harness
from bench.core import Context, alternate, machine_info, median, utc_now

PM_QOS = "/dev/cpu_dma_latency"
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")  # a KVM guest's poll before halting


@contextmanager
def cpus_kept_polling():
    """The PM QoS request lasts while the file is open (kernel docs: pm_qos_interface)."""
    with open(PM_QOS, "wb", buffering=0) as fh:
        fh.write(struct.pack("i", 0))
        yield


def polling(run_fn: Callable[..., dict]) -> Callable[..., dict]:
    def run(*args) -> dict:
        with cpus_kept_polling():
            return run_fn(*args)

    return run


def unplaced(*args) -> dict:
    """labconsole with `workload.issue_cpu: none`: the issue thread free to run on any CPU."""
    run_workload = harness.workload
    harness.workload = lambda scenario, qps, duration_s: run_workload(scenario, qps, duration_s).model_copy(update={"issue_cpu": "none"})
    try:
        return harness.run_labconsole(*args)
    finally:
        harness.workload = run_workload


WAYS = {
    "bare": harness.run_bare,
    "bare, CPUs polling": polling(harness.run_bare),
    "labconsole": harness.run_labconsole,
    "labconsole, CPUs polling": polling(harness.run_labconsole),
    "labconsole issue_cpu none": unplaced,
    "labconsole issue_cpu none, CPUs polling": polling(unplaced),
}


def measure(qps: float, duration_s: float, reps: int, base: Path) -> dict:
    folders = {way: base / f"{int(qps)}-{i}" for i, way in enumerate(WAYS)}
    runs = alternate({way: (lambda way=way: WAYS[way]("Server", qps, duration_s, harness._clear(folders[way]))) for way in WAYS}, reps)
    out = {}
    for way, rs in runs.items():
        out[way] = {
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "p999_ms": median([r["p999_ms"] for r in rs]),
            "issue_wait_ms_per_s": median([r["issue_wait_ms_per_s"] for r in rs if r.get("issue_wait_ms_per_s") is not None]),
            "p99_ms_each": [round(r["p99_ms"], 3) for r in rs],
        }
    for name in ("p99_ms", "p999_ms"):
        out[f"labconsole / bare, {name}"] = out["labconsole"][name] / out["bare"][name]
        out[f"labconsole / bare with CPUs polling, {name}"] = out["labconsole, CPUs polling"][name] / out["bare, CPUs polling"][name]
        out[f"labconsole issue_cpu none / bare, {name}"] = out["labconsole issue_cpu none"][name] / out["bare"][name]
        out[f"labconsole issue_cpu none / bare with CPUs polling, {name}"] = out["labconsole issue_cpu none, CPUs polling"][name] / out["bare, CPUs polling"][name]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.p99_floor")
    ap.add_argument("--qps", type=float, nargs="+", default=list(harness.TAIL_QPS))
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        with cpus_kept_polling():
            pass
    except OSError as exc:
        print(f"python -m bench.p99_floor: cannot hold {PM_QOS} ({exc.strerror}): it needs root", file=sys.stderr)
        return 2
    ctx = Context()
    try:
        poll = HALT_POLL.read_text().strip() if HALT_POLL.exists() else None
        results: dict = {"machine": machine_info(), "when": utc_now(), "guest_halt_poll_ns": poll, "duration_s": args.duration, "reps": args.reps}
        for qps in args.qps:
            res = measure(qps, args.duration, args.reps, ctx.folder("p99-floor"))
            results[f"{qps:g}"] = res
            print(f"# {qps:,.0f} QPS, {args.reps} runs of {args.duration:g} s a way (medians)", file=sys.stderr)
            for way in WAYS:
                r = res[way]
                print(f"{way:40} p99 {r['p99_ms']:.3f} ms  p99.9 {r['p999_ms']:.3f} ms  issue-thread wait {r['issue_wait_ms_per_s']:.2f} ms/s  {r['p99_ms_each']}", file=sys.stderr)
        print(json.dumps(results))
    finally:
        ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
