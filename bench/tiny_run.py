"""8. MLPerf Tiny: the whole emulated energy procedure, `labconsole run --profile profiles/emu-tiny.yaml`.

The real command line in a fresh interpreter: two emulators wired together (the LPM01A at 1 kHz,
energy output, supplying the DUT behind its IO manager; bench clock 25x real time), the DUT's
boot, `name`/`profile`, an auto-N probe, 5 x (`db load` + `db <hex>`, `infer N 1`), the
analysis and the seal. Figures: wall time from spawn to exit (target: under a minute), the
windows' shortest length (each must be >= 10 s of bench time) and the median against the
emulated DUT's 30 mW x 40 ms = 1200 µJ. The anchor is the emulated session's own length in bench
time divided by the speed: what the emulators alone need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.core import ROOT, Context, Result, median

TARGET_S = 60.0
EXPECTED_UJ = 1200.0
SPEED = 25.0


def _one(out) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "labconsole", "run", "--profile", str(ROOT / "profiles" / "emu-tiny.yaml"), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"labconsole run failed ({r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}")
    bundle = r.stdout.strip().splitlines()[-1]
    rep = json.loads(subprocess.run([sys.executable, "-m", "labconsole", "report", "--json", bundle], capture_output=True, text=True, env=env, cwd=str(ROOT)).stdout)
    samples = rep["samples"]
    return {"wall_s": wall, "median_uj": rep["metric"]["value"], "shortest_s": min(w["runtime_s"] for w in rep["windows"]),
            "windows": len(rep["windows"]), "session_bench_s": samples / rep["sample_rate_hz"]}


def run(ctx: Context, reps: int | None = None) -> Result:
    res = Result("tinyrun", 9, "MLPerf Tiny: the whole emulated energy procedure (labconsole run --profile profiles/emu-tiny.yaml)")
    reps = reps or ctx.pick(3, 1)
    runs = []
    for k in range(reps):
        runs.append(_one(ctx.folder(f"rec{k}")))
        ctx.log(f"run {k + 1}/{reps}: {runs[-1]['wall_s']:.1f} s, {runs[-1]['median_uj']} uJ/inf")
    wall = median([r["wall_s"] for r in runs])
    res.add("labconsole run, spawn to exit", wall, "s", anchor=median([r["session_bench_s"] for r in runs]) / SPEED,
            anchor_label=f"the session's bench time / {SPEED:g}", target=f"< {TARGET_S:g} s", met=all(r["wall_s"] < TARGET_S for r in runs))
    res.add("shortest window (bench time)", min(r["shortest_s"] for r in runs), "s", target=">= 10 s", met=all(r["shortest_s"] >= 10.0 for r in runs))
    res.add("median energy per inference", median([r["median_uj"] for r in runs]), "uJ/inf", anchor=EXPECTED_UJ, anchor_label="30 mW x 40 ms",
            target="within 0.5 %", met=all(abs(r["median_uj"] / EXPECTED_UJ - 1) <= 0.005 for r in runs))
    res.add("windows", float(min(r["windows"] for r in runs)), "", target="5", met=all(r["windows"] == 5 for r in runs))
    res.details = {"runs": runs}
    return res
