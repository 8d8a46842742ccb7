"""4. Plot repaint: one live power plot at 160x48 with 10 k, 100 k and 1 M samples of history,
through the console's own path, against plotext fed the raw points.

What one repaint is, for labconsole (the Run screen's path, `labconsole.tui.screens.run`):
a tick's new samples go into the channel's ring (a 100 Hz meter, 5 Hz screen timer: 20
samples), `LiveData.pull()` copies them into the history kept outside the widget,
`TimePlot.show()` gets the history with the Run screen's x range, phase markers and power
window (`plot_view`, the function the Run screen uses), and the frame is painted: the plot
decimates to min/max per dot column and rasterises (`TimePlot._build`), Textual's compositor
renders the screen and the frame is encoded as the bytes a terminal would get.

The anchor is the same app with textual-plotext's `PlotextPlot` filling the same 160x48,
given the raw points every repaint (`plt.clear_data(); plt.plot(t, y)`), painted the same
way; also plotext fed our min/max envelope (two lines, the cheapest way to use plotext for
this), to separate what decimation buys from what the renderer costs. textual-plotext is not
a dependency of labconsole: without it the anchor rows say so and the rest still runs
(`pip install textual-plotext` to get them).

The paint is done synchronously (`paint_now`: what Textual's frame timer does for a dirty
widget), so a repaint is timed without the wait for the 60 fps frame timer, which is latency,
not work. Headless Textual skips encoding the frame into terminal bytes; the benchmark's app
does it (`render_segments`), since a real terminal pays for it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from bench.core import Context, Result, median

SIZE = (160, 48)
SAMPLE_COUNTS = (10_000, 100_000, 1_000_000)
TARGET_MS = 40.0
RATE_HZ = 100.0  # the history's sample rate (a wall meter read fast; 1 M samples = 2.8 h)
TICK_SAMPLES = 20  # what one tick of the Run screen's 5 Hz timer brings at that rate


def trace(n: int, start_ns: int, rate_hz: float = RATE_HZ, seed: int = 1) -> np.ndarray:
    """n samples of a 300 W +- 50 W load with noise and a one-sample 700 W spike (SAMPLE_DTYPE)."""
    from labconsole.samples.batch import empty_batch

    rng = np.random.default_rng(seed)
    out = empty_batch(n)
    i = np.arange(n)
    t = i / rate_hz
    out["wall_ns"] = start_ns + (i * (1e9 / rate_hz)).astype(np.int64)
    out["mono_ns"] = out["wall_ns"] - start_ns
    out["watts"] = 300 + 50 * np.sin(t / 20) + rng.normal(0, 2, n)
    out["watts"][n // 2] = 700.0
    out["volts"] = 230.0
    out["range_v"], out["range_a"] = 300.0, 5.0
    return out


class HistorySession:
    """A live session as the Run screen sees it (`labconsole.session.live.LiveSession`'s protocol), one
    channel whose ring a test feeds by hand: `feed(n)` is the acquisition thread's append."""

    kind = "live"
    finished = False
    status = "running"
    title = "bench"

    def __init__(self, history: int):
        from labconsole.session.live import PhaseClock
        from labconsole.samples.ring import ChannelRing

        self._phase = PhaseClock("testing", 0.0, None)
        self.start_ns = 1_800_000_000_000_000_000
        self._data = trace(history + 4096 * TICK_SAMPLES, self.start_ns)
        self._fed = 0
        self.ring = ChannelRing()  # the recorder's default capacity
        self.history = history
        # Phase marks and the power window, as a run has them (idle, ranging, testing).
        span_s = history / RATE_HZ
        self.marks_s = [("idle", 0.0), ("ranging", 0.1 * span_s), ("testing", 0.55 * span_s)]
        self.window_s = (0.56 * span_s, 0.99 * span_s)

    def feed(self, n: int) -> None:
        self.ring.append(self._data[self._fed : self._fed + n])
        self._fed += n

    # the protocol
    def rings(self):
        return {("wall", "main"): self.ring}

    def poll_events(self, limit: int = 500):
        return False, []

    def phase_clock(self):
        return self._phase

    def progress(self):
        return {}

    def now_s(self) -> float:
        return float(self._data["wall_ns"][max(0, self._fed - 1)]) / 1e9

    def start_s(self) -> float:
        return self.start_ns / 1e9

    def power_window(self):
        t0 = self.start_s()
        return t0 + self.window_s[0], t0 + self.window_s[1]


@dataclass
class Timing:
    wall_ms: list[float]
    cpu_ms: list[float]
    build_ms: list[float]
    frame_bytes: int = 0


def _app_class():
    from textual.app import App
    from textual._compositor import CompositorUpdate

    class OneWidget(App[None]):
        """An app holding one widget; frames are encoded to terminal bytes as a terminal needs."""

        CSS = "Screen { overflow: hidden; }"

        def __init__(self, widget):
            super().__init__()
            self.widget = widget
            self.frame_bytes = 0

        def compose(self):
            yield self.widget

        def _display(self, screen, renderable) -> None:
            if renderable is not None and isinstance(renderable, CompositorUpdate) and self.is_headless:
                self.frame_bytes = len(renderable.render_segments(self.console))
            super()._display(screen, renderable)

    return OneWidget


def paint_now(app, widget) -> None:
    """Paint the frame now, as Textual's frame timer does for a widget that asked to be refreshed."""
    screen = app.screen
    screen._dirty_widgets.add(widget)
    screen._on_timer_update()


def live_history(history: int):
    """(session, LiveData) with `history` samples pulled into the viewer's history, the way a
    run builds it up (ring -> history, tick after tick), and the run's phase marks."""
    from labconsole.tui.plot import Marker
    from labconsole.tui.widgets import LiveData

    session = HistorySession(history)
    live = LiveData()
    live.attach(session)
    chunk = session.ring.capacity // 2
    while session._fed < history:
        session.feed(min(chunk, history - session._fed))
        live.pull()
    t0 = session.start_s()
    live.phase_marks[:] = [Marker(t0 + s, name) for name, s in session.marks_s]
    return session, live


async def time_ours(history: int, reps: int) -> Timing:
    from labconsole.tui.plot import TimePlot
    from labconsole.tui.screens.run import plot_view

    session, live = live_history(history)
    plot = TimePlot("Power", "W")
    app = _app_class()(plot)
    wall, cpu, build = [], [], []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        def repaint() -> None:
            session.feed(TICK_SAMPLES)
            live.pull()
            x_range, origin, spans = plot_view(session, live, zoom_recent=False)
            plot.show(live.power_series(), x_range, origin=origin, markers=live.phase_marks, spans=spans)
            paint_now(app, plot)

        repaint()  # warm
        await pilot.pause()
        for _ in range(reps):
            c0, w0 = time.thread_time(), time.perf_counter()
            repaint()
            wall.append((time.perf_counter() - w0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
            build.append(plot.last_build_ms)
            await pilot.pause()
        assert plot.builds >= reps, "the plot was not rebuilt on every repaint"
        frame_bytes = app.frame_bytes
    return Timing(wall, cpu, build, frame_bytes)


def plotext_available() -> bool:
    try:
        import textual_plotext  # noqa: F401
    except ImportError:
        return False
    return True


async def time_plotext(history: int, reps: int, fed: str) -> Timing:
    """plotext in the same app and frame path; `fed` is "raw" (every point) or "envelope"."""
    from textual_plotext import PlotextPlot

    from labconsole.session.decimate import minmax_columns

    session, live = live_history(history)
    plot = PlotextPlot()
    app = _app_class()(plot)
    wall, cpu, build = [], [], []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        def repaint() -> None:
            # the same new samples and history as labconsole's repaint; x in seconds from the start
            session.feed(TICK_SAMPLES)
            live.pull()
            (h,) = live.histories.values()
            t = h.t - session.start_s()
            y = h.y
            plt = plot.plt
            plt.clear_data()
            if fed == "raw":
                plt.plot(t.tolist(), y.tolist())
            else:
                env = minmax_columns(t, y, 2 * plot.size.width)
                x = env.centres().tolist()
                plt.plot(x, np.nan_to_num(env.lo, nan=0).tolist())
                plt.plot(x, np.nan_to_num(env.hi, nan=0).tolist())
            plot.refresh()
            b0 = time.perf_counter()
            paint_now(app, plot)
            build.append((time.perf_counter() - b0) * 1e3)

        for _ in range(reps):
            c0, w0 = time.thread_time(), time.perf_counter()
            repaint()
            wall.append((time.perf_counter() - w0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
            await pilot.pause()
        frame_bytes = app.frame_bytes
    return Timing(wall, cpu, build, frame_bytes)


async def time_floor(reps: int) -> Timing:
    """The same frame path with nothing to compute: a Static's text changing, 160x48."""
    from textual.widgets import Static

    widget = Static("")
    app = _app_class()(widget)
    wall, cpu = [], []
    text = "\n".join("x" * SIZE[0] for _ in range(SIZE[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for i in range(reps + 1):
            c0, w0 = time.thread_time(), time.perf_counter()
            widget.update(text if i % 2 else text.replace("x", "y"))
            paint_now(app, widget)
            if i:
                wall.append((time.perf_counter() - w0) * 1e3)
                cpu.append((time.thread_time() - c0) * 1e3)
            await pilot.pause()
    return Timing(wall, cpu, [], app.frame_bytes)


def plotext_reps(n: int, quick: bool) -> int:
    """plotext with raw points costs microseconds a point: few repetitions at 1 M (one, in full mode)."""
    if n <= 10_000:
        return 3 if quick else 9
    if n <= 100_000:
        return 1 if quick else 3
    return 0 if quick else 1


def run(ctx: Context) -> Result:
    res = Result("plots", 4, "Plot repaint: one live power plot at 160x48 vs plotext fed the raw points")
    reps = ctx.pick(21, 7)
    have_plotext = plotext_available()
    ours: dict[int, Timing] = {}
    raw: dict[int, Timing | None] = {}
    env: dict[int, Timing | None] = {}

    async def measure() -> Timing:
        floor = await time_floor(reps)
        for n in SAMPLE_COUNTS:
            ctx.log(f"{n:,} samples: labconsole, {reps} repaints")
            ours[n] = await time_ours(n, reps)
            if have_plotext:
                k = plotext_reps(n, ctx.quick)
                raw[n] = None
                if k:
                    ctx.log(f"{n:,} samples: plotext fed the raw points, {k} repaint(s)")
                    raw[n] = await time_plotext(n, k, "raw")
                ctx.log(f"{n:,} samples: plotext fed our envelope, {ctx.pick(9, 3)} repaints")
                env[n] = await time_plotext(n, ctx.pick(9, 3), "envelope")
        return floor

    floor = asyncio.run(measure())
    for n in SAMPLE_COUNTS:
        o = ours[n]
        r = raw.get(n)
        w = median(o.wall_ms)
        res.add(f"repaint, {n // 1000:,} k samples of history", w, "ms",
                anchor=median(r.wall_ms) if r else None, anchor_label="plotext, raw points" if r else "",
                target=f"< {TARGET_MS:g} ms", met=w < TARGET_MS)
    for n in SAMPLE_COUNTS:
        o = ours[n]
        res.add(f"repaint CPU, {n // 1000:,} k", median(o.cpu_ms), "ms",
                anchor=median(raw[n].cpu_ms) if raw.get(n) else None, anchor_label="plotext, raw points" if raw.get(n) else "")
    for n in SAMPLE_COUNTS:
        e = env.get(n)
        if e is not None:
            res.add(f"plotext fed our min/max envelope, {n // 1000:,} k", median(e.wall_ms), "ms")
    res.add("of which the plot's own build (decimate + draw), 1,000 k", median(ours[SAMPLE_COUNTS[-1]].build_ms), "ms")
    res.add("frame floor: the same frame path, a Static's text changing", median(floor.wall_ms), "ms")

    res.notes.append(f"{SIZE[0]}x{SIZE[1]} cells; a repaint = {TICK_SAMPLES} new samples into the ring, history pull, "
                     "show() with the Run screen's x range, phase marks and power window, frame painted and encoded "
                     f"({ours[SAMPLE_COUNTS[0]].frame_bytes:,} bytes a frame); median of {reps}")
    if not have_plotext:
        res.notes.append("anchor not measured: textual-plotext is not installed (it is not a labconsole dependency; "
                         "`pip install textual-plotext` into the same environment to measure it)")
    else:
        measured = [n for n in SAMPLE_COUNTS if raw.get(n)]
        per_point_us = median(raw[measured[-1]].wall_ms) * 1e3 / measured[-1]
        res.details["plotext_raw_us_per_point"] = per_point_us
        missing = [n for n in SAMPLE_COUNTS if raw.get(n) is None]
        if missing:
            res.notes.append("plotext with raw points not run at " + ", ".join(f"{n:,}" for n in missing)
                             + f" samples in --quick: it costs {per_point_us:.1f} us a point here "
                             f"(~{per_point_us * missing[-1] / 1e6:.0f} s a repaint)")
        runs = {n: len(raw[n].wall_ms) for n in SAMPLE_COUNTS if raw.get(n)}
        res.notes.append("plotext raw-point repaints per size: " + ", ".join(f"{n:,}: {k}" for n, k in runs.items()))
    res.details = {
        "size": SIZE, "reps": reps, "tick_samples": TICK_SAMPLES, "rate_hz": RATE_HZ,
        "ours": {n: vars(t) for n, t in ours.items()},
        "plotext_raw": {n: (vars(t) if t else None) for n, t in raw.items()},
        "plotext_envelope": {n: (vars(t) if t else None) for n, t in env.items()},
        "floor": vars(floor),
        "spread_ms": {n: [round(min(t.wall_ms), 2), round(max(t.wall_ms), 2)] for n, t in ours.items()},
    }
    return res


if __name__ == "__main__":  # a quick look without the harness
    import sys

    from bench.core import table

    r = run(Context(quick="--quick" in sys.argv))
    print(table(r))
    for note in r.notes:
        print("  note:", note)
