"""How the console behaves while a run goes: plot and frame repaint times, key-press latency,
timer slip, and first paint. Headless (Textual's run_test), on the simulated bench.

    .venv/bin/python bench/tui_responsiveness.py [--size 160x48] [--duration 10]

Runs one real run (matmul SUT, the simulated meter at 20 samples/s) and, while it goes:
  - records each Run-screen tick (pull data + update widgets) and the plots' own build time;
  - times full frames: tick + refresh + paint (await pilot.pause());
  - presses b / r alternately and times key -> the other screen painted;
  - measures the Run screen timer's real intervals against its nominal 200 ms.
First paint: a fresh interpreter imports the app, builds it and paints the first screen.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROFILE = """
name: bench
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.05
    options: {{idle_w: 60, dynamic_w: 140, noise_w: 0.5}}
workload:
  type: loadgen
  sut: {sut}
  sut_options: {sut_options}
  scenario: Offline
  duration_s: {duration}
procedure:
  idle_s: 1
  ranging: true
"""


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def summary(name, values, unit="ms"):
    if not values:
        print(f"  {name:<44} (none)")
        return
    print(f"  {name:<44} median {statistics.median(values):7.1f} {unit}   p95 {pct(values, 0.95):7.1f} {unit}   max {max(values):7.1f} {unit}   (n={len(values)})")


SUT_OPTIONS = {"matmul": "{size: 128, threads: 0}", "sleep": "{latency_ms: 1}", "null": "{}"}


async def during_run(size, duration, sut):
    from labconsole.profile import load_profile
    from labconsole.tui.app import LabConsole
    from labconsole.tui.plot import TimePlot
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.run import RunScreen

    tmp = Path(tempfile.mkdtemp())
    prof = tmp / "bench.yaml"
    prof.write_text(PROFILE.format(rec=tmp / "rec", duration=duration, sut=sut, sut_options=SUT_OPTIONS[sut]))
    app = LabConsole(load_profile(prof))
    plot_ms, frame_ms, key_ms = [], [], []
    async with app.run_test(size=size) as pilot:
        await pilot.press("r")
        await pilot.pause(0.3)
        run = app.screen
        await pilot.press("s")
        while app.session is None:
            await pilot.pause(0.05)
        s = app.session
        flip = 0
        while not s.finished:
            if s.phase_clock().phase not in ("ranging", "testing"):
                await pilot.pause(0.1)
                continue
            # a full frame: pull + widgets + paint
            t = time.perf_counter()
            run.tick()
            await pilot.pause()
            frame_ms.append((time.perf_counter() - t) * 1e3)
            for pid in ("#run-power", "#run-qps"):
                plot_ms.append(run.query_one(pid, TimePlot).last_build_ms)
            # key -> other screen shown (every other loop: to the bench and back)
            flip += 1
            if flip % 4 == 0:
                key, want = ("b", BenchScreen) if isinstance(app.screen, RunScreen) else ("r", RunScreen)
                t = time.perf_counter()
                await pilot.press(key)
                while not isinstance(app.screen, want):
                    await pilot.pause(0.005)
                await pilot.pause()
                key_ms.append((time.perf_counter() - t) * 1e3)
            await pilot.pause(0.15)
        if not isinstance(app.screen, RunScreen):
            await pilot.press("r")
        tick_ms = list(run.tick_times)
        starts = run.tick_starts
        gaps = [(b - a) * 1e3 for a, b in zip(starts, starts[1:]) if (b - a) < 1.0]  # not across a hidden spell
        status = s.status
    return status, plot_ms, frame_ms, key_ms, tick_ms, gaps


def first_paint() -> list[float]:
    code = textwrap.dedent(
        """
        import time; t0 = time.perf_counter()
        import asyncio, sys
        sys.path.insert(0, %r)
        from labconsole.profile import load_profile, default_profile_path
        from labconsole.tui.app import LabConsole
        async def main():
            app = LabConsole(load_profile(default_profile_path()))
            async with app.run_test(size=(80, 24)) as pilot:
                while app.first_paint_s is None:
                    await pilot.pause(0.005)
                print((time.perf_counter() - t0) * 1e3, app.first_paint_s * 1e3)
        asyncio.run(main())
        """
        % str(ROOT)
    )
    out = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
        total, app_only = (float(x) for x in r.stdout.split())
        out.append((total, app_only))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="160x48")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--sut", default="matmul", choices=sorted(SUT_OPTIONS), help="matmul loads every core (as a real SUT would); sleep leaves the CPUs to the console")
    ap.add_argument("--no-first-paint", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    status, plot_ms, frame_ms, key_ms, tick_ms, gaps = await during_run((w, h), args.duration, args.sut)
    print(f"during a run ({status}), {w}x{h}, simulated meter at 20 samples/s, {args.sut} SUT")
    summary("plot build (decimate + draw, per plot)", plot_ms)
    summary("Run-screen tick (pull + update widgets)", tick_ms)
    summary("full frame (tick + paint)", frame_ms)
    summary("key press -> other screen painted", key_ms)
    summary("timer interval (nominal 200 ms)", gaps)
    if args.no_first_paint:
        return
    fp = first_paint()
    summary("first paint, fresh interpreter (imports incl.)", [a for a, _ in fp])
    summary("first paint, app start -> painted", [b for _, b in fp])


if __name__ == "__main__":
    asyncio.run(main())
