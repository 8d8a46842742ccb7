"""How fast the lpm01a driver keeps up with the PowerShield emulator, and what it costs.

    .venv/bin/python bench/bench_lpm01a.py [--seconds 5]

The emulator runs in its own process (`labconsole emulate lpm01a --relaxed-limits`), so the
driver's CPU time is this process's alone. For each setting: samples per second delivered by
read(), samples the TimeStamp lines say were lost (GAP), invalid samples, the driver's CPU use
(% of one core) and the emulator's, and how far behind real time the newest sample is.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labconsole.samples.batch import GAP, OK  # noqa: E402
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource  # noqa: E402

SETTINGS = [
    ("ascii_dec", "energy", 1000),
    ("ascii_dec", "energy", 5000),
    ("ascii_dec", "current", 10000),
    ("ascii_dec", "current", 20000),
    ("bin_hexa", "current", 10000),
    ("bin_hexa", "current", 50000),
    ("bin_hexa", "current", 100000),
]


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(path: str, emu_pid: int, fmt: str, output: str, hz: int, seconds: float) -> dict:
    src = Lpm01aSource("bench", Lpm01aOptions(port=path, format=fmt, output=output, frequency_hz=hz, enforce_board_limits=False, stall_timeout_s=5))
    src.open()
    n = ok = gap = 0
    lags = []
    try:
        src.read(0.5)  # settle
        c0, e0, t0 = self_cpu(), cpu_of(emu_pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            for cb in src.read(0.5):
                s = cb.samples
                n += len(s)
                ok += int((s["status"] == OK).sum())
                gap += int((s["status"] == GAP).sum())
                lags.append((time.monotonic_ns() - int(s["mono_ns"][-1])) / 1e6)
        dt = time.monotonic() - t0
        c1, e1 = self_cpu(), cpu_of(emu_pid)
    finally:
        src.close()
    lags.sort()
    return {
        "setting": f"{fmt} {output} {hz} Hz",
        "delivered_per_s": n / dt,
        "ok": ok,
        "gap": gap,
        "invalid": n - ok - gap,
        "driver_cpu_pct": 100 * (c1 - c0) / dt,
        "emulator_cpu_pct": 100 * (e1 - e0) / dt,
        "lag_ms_median": lags[len(lags) // 2] if lags else float("nan"),
        "protocol_errors": src.counters["protocol_errors"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    emu = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "lpm01a", "--relaxed-limits", "--utilisation", "0.5"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = emu.stdout.readline()
        path = line.split(" on ", 1)[1].strip().split()[0]
        print(f"emulator pid {emu.pid} on {path}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        print(f"{'setting':34} {'samples/s':>10} {'gap':>7} {'invalid':>7} {'driver CPU':>10} {'emu CPU':>8} {'lag ms':>7}")
        for fmt, output, hz in SETTINGS:
            r = run_one(path, emu.pid, fmt, output, hz, args.seconds)
            print(f"{r['setting']:34} {r['delivered_per_s']:10.0f} {r['gap']:7d} {r['invalid']:7d} {r['driver_cpu_pct']:9.1f}% {r['emulator_cpu_pct']:7.1f}% {r['lag_ms_median']:7.1f}")
    finally:
        emu.send_signal(2)
        try:
            emu.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            emu.kill()
            emu.communicate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
