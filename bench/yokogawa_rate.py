"""How fast the `yokogawa` driver samples the WT310E emulator through PyVISA + pyvisa-py.

    python bench/yokogawa_rate.py [--seconds 10] [--update 0.1]

Reports: samples per second against the meter's update rate (one per update is the goal:
fewer means missed updates, more would be duplicates), the gap between consecutive sample
timestamps, how late after the meter's update each sample is timestamped, how many messages
the driver sends per sample (status polls + the value query), and the raw query rate of the
link (what the driver could reach if the meter updated faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labconsole.emulators import wt310  # noqa: E402
from labconsole.sources.yokogawa import YokogawaSource  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--update", type=float, default=0.1)
    args = ap.parse_args()
    h = wt310.start({"utilisation": 0.5, "seed": 1})
    try:
        src = YokogawaSource("wall", YokogawaSource.Options(resource=h.resource, timeout_s=2.0), args.update)
        t = time.perf_counter()
        src.open()
        open_s = time.perf_counter() - t
        meter = h.meter
        lines0 = meter.lines_handled
        monos, statuses = [], []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for cb in src.read(2.0):
                monos.append(int(cb.samples["mono_ns"][0]) / 1e9)
                statuses.append(int(cb.samples["status"][0]))
        lines = meter.lines_handled - lines0
        span = monos[-1] - monos[0] if len(monos) > 1 else float("nan")
        gaps = [b - a for a, b in zip(monos, monos[1:])]
        # How late after the update (t0 + k x period on the emulator's clock) the sample is stamped.
        lags = [((m - meter._t0) % meter.rate) for m in monos]
        res = src._res
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 2.0:
            res.query(":NUMeric:NORMal:VALue?")
            n += 1
        raw_rate = n / (time.perf_counter() - t)
        src.close()
    finally:
        h.stop()
    print(f"update period {args.update:g} s, {args.seconds:g} s of reading; open() took {open_s * 1000:.0f} ms")
    print(f"samples: {len(monos)}  ({(len(monos) - 1) / span:.2f}/s; the meter updates {1 / args.update:.2f}/s)  valid: {statuses.count(0)}")
    print(f"gap between samples: min {min(gaps) * 1000:.1f} ms  median {statistics.median(gaps) * 1000:.1f} ms  max {max(gaps) * 1000:.1f} ms")
    print(f"timestamp after the update: median {statistics.median(lags) * 1000:.1f} ms  max {max(lags) * 1000:.1f} ms")
    print(f"messages per sample: {lines / len(monos):.2f} (status polls + 1 value query)")
    print(f"raw :NUMeric:NORMal:VALue? round trips over pyvisa-py: {raw_rate:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
