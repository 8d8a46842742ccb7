"""A stand-in trainer for MLPerf Training runs without a GPU cluster: it works the CPU for a
while and writes an MLLOG result log, as a real trainer does, so that the whole Training power
procedure (timed window, every node's power, energy to train) can be learned and tested.

    python -m labconsole.workload.standin_trainer [--seconds S] [--seed N]
    python -m labconsole.workload.standin_trainer --replay result_3.txt [--speed 100]

Without --replay it logs a minimal run (submission_*, init_start/stop, run_start, blocks, evals,
run_stop status success). With --replay it re-enacts a real result log: every MLLOG line is
printed again, unchanged but for its time_ms (now), after the original gap divided by --speed;
the compliance checker and summarizer then see a real benchmark's log on today's clock.
The CPU is kept busy between lines so that meters following the workload see it train.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

TOKEN = ":::MLLOG "
_TIME = re.compile(r'("time_ms"\s*:\s*)(-?[0-9.eE+]+)')


def _busy(seconds: float, duty: float = 0.8) -> None:
    """Keep one core about `duty` busy for `seconds` (pure Python: no numpy needed)."""
    end = time.monotonic() + seconds
    x = 1.0
    while True:
        now = time.monotonic()
        if now >= end:
            return
        slot_end = min(end, now + 0.05)
        work_end = now + (slot_end - now) * duty
        while time.monotonic() < work_end:
            for _ in range(2000):
                x = x * 1.0000001 + 1e-9
        rest = slot_end - time.monotonic()
        if rest > 0:
            time.sleep(rest)


def _emit(key: str, value, metadata: dict | None = None, event_type: str = "POINT_IN_TIME") -> None:
    line = {"namespace": "", "time_ms": int(time.time() * 1000), "event_type": event_type, "key": key,
            "value": value, "metadata": metadata or {}}
    print(TOKEN + json.dumps(line), flush=True)


def synthetic(seconds: float, seed: int, blocks: int = 4) -> None:
    for key, value in (("submission_org", "labconsole"), ("submission_platform", "stand-in"),
                       ("submission_division", "closed"), ("submission_status", "onprem"),
                       ("submission_benchmark", "stand_in")):
        _emit(key, value)
    _emit("cache_clear", True)
    _emit("init_start", None, event_type="INTERVAL_START")
    _emit("seed", seed)
    _busy(min(0.5, seconds / 10), duty=0.3)
    _emit("init_stop", None, event_type="INTERVAL_END")
    _emit("run_start", None, event_type="INTERVAL_START")
    for b in range(blocks):
        _emit("block_start", None, {"first_epoch_num": b, "epoch_count": 1}, "INTERVAL_START")
        _busy(seconds / blocks)
        _emit("block_stop", None, {"first_epoch_num": b}, "INTERVAL_END")
        _emit("eval_accuracy", round(0.5 + 0.1 * b, 3), {"epoch_num": b})
    _emit("run_stop", None, {"status": "success"}, "INTERVAL_END")


def replay(path: str, speed: float) -> None:
    with open(path, encoding="latin-1") as fh:
        lines = [ln.rstrip("\n") for ln in fh if TOKEN in ln]
    prev = None
    for ln in lines:
        m = _TIME.search(ln)
        if m is None:
            continue
        t = float(m.group(2))
        if prev is not None and t > prev:
            _busy((t - prev) / 1000 / speed)
        prev = t if prev is None else max(prev, t)
        now = str(int(time.time() * 1000))
        print(ln[: m.start(2)] + now + ln[m.end(2):], flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="standin_trainer", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of the timed run (synthetic)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replay", metavar="LOG", help="re-enact this MLLOG result log")
    p.add_argument("--speed", type=float, default=100.0, help="with --replay: how many times faster than recorded")
    args = p.parse_args(argv)
    if not (0 < args.seconds <= 86400) or not (0 < args.speed <= 1e6):
        p.error("--seconds and --speed must be positive")
    try:
        if args.replay:
            replay(args.replay, args.speed)
        else:
            synthetic(args.seconds, args.seed)
    except OSError as exc:
        print(f"standin_trainer: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
