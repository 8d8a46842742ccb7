"""Sample rates the `ptd` driver reaches against the PTD emulator on loopback.

    python bench/ptd_rates.py [seconds per interval]

For each Go interval: samples/s delivered, invalid samples, RL polls/s, and the clock-offset
estimate against an emulated PTD host whose clock is 250 ms ahead. Not a test: numbers depend
on the machine's load.
"""

from __future__ import annotations

import sys
import time

from labconsole.emulators.ptd import start
from labconsole.sources.ptd import PtdOptions, PtdSource


def measure(interval_ms: int, seconds: float) -> dict:
    h = start({"utilisation": 0.3, "seed": 1, "clock_offset_ms": 250, "min_interval_ms": 1})
    try:
        src = PtdSource("wall", PtdOptions(port=h.port, mark_prefix="bench", interval_ms=interval_ms), sample_interval_s=interval_ms / 1000)
        src.open()
        src.set_ranges(volts=230, amps=1, auto=False)
        n = bad = 0
        t0 = time.monotonic()
        polls0 = src.counters["polls"]
        while time.monotonic() - t0 < seconds:
            for b in src.read(0.5):
                n += len(b.samples)
                bad += int((b.samples["status"] != 0).sum())
        dt = time.monotonic() - t0
        summary = src.end_phase("bench")
        src.close()
        return {
            "interval_ms": interval_ms,
            "samples_per_s": n / dt,
            "nominal_per_s": 1000 / interval_ms,
            "invalid": bad,
            "polls_per_s": (src.counters["polls"] - polls0) / dt,
            "ptd_samples": summary["watts"]["samples"],
            "offset_ms": (src.clock_offset_s() or 0) * 1000,
        }
    finally:
        h.stop()


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    for ms in (1000, 250, 100, 50, 20, 10, 5, 2):
        r = measure(ms, secs if ms < 1000 else max(secs, 10))
        print(
            f"Go,{r['interval_ms']:>4}: {r['samples_per_s']:8.1f} samples/s (nominal {r['nominal_per_s']:6.1f}), "
            f"{r['invalid']} invalid, {r['polls_per_s']:6.1f} RL/s, PTD counted {r['ptd_samples']}, "
            f"offset estimate {r['offset_ms']:+.1f} ms (true +250)",
            flush=True,
        )
