"""How long the Setup and Compare screens take to answer, headless, with this machine's real discovery.

    .venv/bin/python bench/tui_setup_latency.py [--size 80x24] [--repeat 3]

  - key `n` on the Bench -> the Setup screen painted;
  - -> discovery done and its finds on screen (every registered driver asked, in a thread);
  - one answer typed -> the loader's message on screen (the debounce is part of it);
  - Recordings `=` on two marked recordings (a fresh bundle and an MLPerf folder) -> figures on screen.
Nothing here asserts: it prints the numbers (the machine is shared; they vary).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MLPERF = ROOT / "tests" / "fixtures" / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


async def until(pilot, cond, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await pilot.pause(0.01)
    await pilot.pause()  # one paint after it


async def setup_once(size):
    from labconsole.profile import default_profile_path, load_profile
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.setup import OfferRow, SetupScreen

    app = LabConsole(load_profile(default_profile_path()))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, BenchScreen))
        t0 = time.perf_counter()
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        shown = time.perf_counter() - t0
        scr = app.screen
        await until(pilot, lambda: scr.wizard.discovered and len(scr.query(OfferRow)) > 0)
        found = time.perf_counter() - t0
        await pilot.press("ctrl+n")
        await until(pilot, lambda: scr.step_key == "workload")
        t1 = time.perf_counter()
        scr.query_one("#wl-duration").value = "-1"
        await until(pilot, lambda: any("duration_s" in str(i) for i in scr.issues))
        message = time.perf_counter() - t1
        return shown, found, scr.discovery_s, message


async def compare_once(size, profile_path, bundle):
    from labconsole.profile import load_profile
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.compare import CompareScreen
    from labconsole.tui.screens.recordings import RecordingsScreen

    app = LabConsole(load_profile(profile_path))
    app.extra_recordings.append(str(MLPERF))
    async with app.run_test(size=size) as pilot:
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RecordingsScreen) and len(app.screen.rows) == 2)
        rec = app.screen
        rec.marks = [str(bundle), str(MLPERF)]
        t0 = time.perf_counter()
        await pilot.press("equals_sign")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        shown = time.perf_counter() - t0
        await until(pilot, lambda: app.screen.comparison is not None)
        return shown, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="80x24")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    os.chdir(tempfile.mkdtemp(prefix="setup-latency-"))
    rows = [asyncio.run(setup_once(size)) for _ in range(args.repeat)]
    for name, i in (("n -> Setup screen painted", 0), ("n -> discovery's finds on screen", 1), ("  of which discovery itself", 2), ("bad answer -> loader's message shown", 3)):
        vals = [r[i] * 1e3 for r in rows]
        print(f"{name:40} median {statistics.median(vals):7.0f} ms   all {', '.join(f'{v:.0f}' for v in vals)}")

    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile

    prof = Path("bench.yaml")
    prof.write_text((ROOT / "profiles" / "sim-bench.yaml").read_text().replace("duration_s: 10", "duration_s: 2").replace("idle_s: 3", "idle_s: 0.5"))
    out = RunEngine(load_profile(prof), InferencePlan()).run()
    rows = [asyncio.run(compare_once(size, prof, out.bundle)) for _ in range(args.repeat)]
    for name, i in (("= -> Compare screen painted", 0), ("= -> figures on screen", 1)):
        vals = [r[i] * 1e3 for r in rows]
        print(f"{name:40} median {statistics.median(vals):7.0f} ms   all {', '.join(f'{v:.0f}' for v in vals)}")


if __name__ == "__main__":
    main()
