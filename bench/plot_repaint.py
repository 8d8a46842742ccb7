"""Repaint cost of a live power plot: our braille TimePlot against textual-plotext.

    .venv/bin/python bench/plot_repaint.py [--size 160x48] [--repeats 7]

For 10k / 100k / 1M samples of history (a 100 Hz-like 300 W +- 50 W trace with noise and a
one-sample spike) it reports, median of `repeats`:
  build   the widget's own work for one repaint (decimate + draw), called directly
  cycle   new data -> refresh() -> the frame painted (await pilot.pause()), i.e. what a
          timer tick costs the UI loop
plotext is fed the same decimated data (per-column min and max as two lines, the cheapest
way to draw an envelope with it, see ecosystem.md 2.2); it is skipped when textual-plotext
is not installed (it is not a dependency of labconsole).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.app import App  # noqa: E402

from labconsole.decimate import minmax_columns  # noqa: E402
from labconsole.tui.plot import Series, TimePlot  # noqa: E402


def trace(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.arange(n) / 100.0
    y = 300 + 50 * np.sin(t / 20) + rng.normal(0, 2, n)
    y[n // 2] = 700.0
    return t, y


class OneWidget(App[None]):
    def __init__(self, widget):
        super().__init__()
        self.widget = widget

    def compose(self):
        yield self.widget


async def bench_ours(t, y, size, repeats):
    plot = TimePlot("Power", "W")
    app = OneWidget(plot)
    builds, cycles = [], []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for _ in range(repeats):
            plot.show([Series("wall", t, y)])
            a = time.perf_counter()
            plot._build(plot.size.width, plot.size.height)
            builds.append((time.perf_counter() - a) * 1e3)
            a = time.perf_counter()
            plot.show([Series("wall", t, y)])
            await pilot.pause()
            cycles.append((time.perf_counter() - a) * 1e3)
    return statistics.median(builds), statistics.median(cycles)


async def bench_plotext(t, y, size, repeats):
    try:
        from textual_plotext import PlotextPlot
    except ImportError:
        return None
    plot = PlotextPlot()
    app = OneWidget(plot)
    builds, cycles = [], []

    def feed():
        env = minmax_columns(t, y, plot.size.width)
        x = env.centres()
        plot.plt.clear_data()
        plot.plt.plot(x.tolist(), np.nan_to_num(env.lo, nan=0).tolist())
        plot.plt.plot(x.tolist(), np.nan_to_num(env.hi, nan=0).tolist())

    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for _ in range(repeats):
            feed()
            a = time.perf_counter()
            plot.render()
            builds.append((time.perf_counter() - a) * 1e3)
            a = time.perf_counter()
            feed()
            plot.refresh()
            await pilot.pause()
            cycles.append((time.perf_counter() - a) * 1e3)
    return statistics.median(builds), statistics.median(cycles)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="160x48")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(f"plot repaint at {w}x{h} cells, median of {args.repeats} (ms)")
    print(f"{'samples':>9}  {'ours build':>10}  {'ours cycle':>10}  {'plotext render':>14}  {'plotext cycle':>13}")
    for n in (10_000, 100_000, 1_000_000):
        t, y = trace(n)
        ob, oc = await bench_ours(t, y, (w, h), args.repeats)
        px = await bench_plotext(t, y, (w, h), args.repeats)
        ptxt = f"{px[0]:14.1f}  {px[1]:13.1f}" if px else f"{'(not installed)':>14}  {'':>13}"
        print(f"{n:>9,}  {ob:10.1f}  {oc:10.1f}  {ptxt}")


if __name__ == "__main__":
    asyncio.run(main())
