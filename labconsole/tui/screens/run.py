"""Run: set up and start a run, then follow it live (or a replay of a recorded one).

Everything shown is pulled from the session on one timer (5 Hz) that runs only while the
screen is visible: new events into the log, new samples into histories kept outside the
plots, the phase clock, the stats. The procedure itself runs in its own thread.
"""

from __future__ import annotations

import math
import time

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar, RichLog, Select

from labconsole.session import fleet_view
from labconsole.sources.replay import MAX, speed_label
from labconsole.session.interval import EnergyCounter
from labconsole.tui.format import duration, escape, event_markup, num, si, status_markup
from labconsole.tui.plot import Series, Span, TimePlot
from labconsole.tui.screens.log import LogScreen
from labconsole.tui.widgets import KeyFooter, LiveData, LiveText, TickingScreen, TopBar

SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")


def what_to_do(reason: str, recorded: bool) -> str:
    """The operator's next step for a run that ended early, from its reason."""
    r = reason.lower()
    if "in use by another labconsole" in r:
        return "wait for that run to finish, or stop it (its pid is above); then press s here"
    if "cannot record into" in r or "permission denied" in r or "read-only" in r:
        return "choose a recordings folder you can write (the profile's `recordings:`), or free the disk"
    if "name the same instrument" in r:
        return "two sources of the profile point at one meter: remove one (b: Bench; ctrl+o opens another profile)"
    if "cannot be used" in r or "primary source" in r or "no source could be opened" in r:
        return "check the meter is on and its address is right (b: Bench shows each source; n sets up the bench again)"
    if "aborted" in r or "closed" in r:
        return "press s to run again"
    if recorded:
        return "v shows what was recorded and the checks; l the whole log"
    return "read the log (l), fix the cause, then press s"

REPLAY_ACTIONS = {"pause", "speed", "seek", "seek_start", "seek_end"}


def plot_view(s, live: LiveData, zoom_recent: bool) -> tuple[tuple[float, float], float, list[Span]]:
    """The Run screen's plots' x range, x origin and shaded spans (bench/plots.py draws with it too)."""
    now = s.now_s()
    if s.kind == "live" and s.finished:
        ends = [float(h.t[-1]) for h in live.histories.values() if len(h)]
        now = max(ends) if ends else now  # a finished run's plots stop where its data stops
    origin = s.start_s() or now
    x0 = max(origin, now - 60) if zoom_recent else origin
    x_range = (x0, max(now, x0 + 1))
    spans = []
    pw = s.power_window()
    if pw is not None:
        spans.append(Span(pw[0], min(pw[1], now), "power window"))
    spans += [Span(a, min(b, now), label) for a, b, label in live.windows if a < now]  # MLPerf Tiny's windows
    return x_range, origin, spans


def fleet_view_sources(histories: dict) -> list[str]:
    """Sources with more channels than fleet_view.MANY (a fleet's nodes)."""
    count: dict[str, int] = {}
    for src, _ch in histories:
        count[src] = count.get(src, 0) + 1
    return [src for src, n in count.items() if n > fleet_view.MANY]


class RunScreen(TickingScreen):
    TICK_S = 0.2  # 5 Hz: bench/replay.py assumes the same
    SESSION_KIND = "live"  # the Replay screen, a subclass, follows "replay" sessions
    AUTO_FOCUS = ""  # nothing: keys go to the screen; Tab reaches the setup fields
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("g", "start_guided", "Guided start", show=False),
        Binding("x", "abort", "Abort"),
        Binding("v", "results", "Results"),
        Binding("l", "log", "Log", show=False),  # the footer is full at 80 columns: the log's frame says it
        Binding("z", "zoom", "Zoom", show=False),
    ]  # a replay's keys are on its own screen (screens/replay.py)

    def __init__(self) -> None:
        super().__init__()
        self.live = LiveData()
        self.energy: dict[tuple[str, str], EnergyCounter] = {}  # a running energy counter per channel
        self.zoom_recent = False
        self._done_seen = False
        self._estimate = None  # the whole run's, this tick
        self._log_written = 0  # how many of live.events the log shows
        self._log_width = 0  # the width they were wrapped to
        self.tick_times: list[float] = []  # ms each tick took (bench/console.py and bench/replay.py read these)
        self.tick_starts: list[float] = []  # perf_counter at each tick (timer slip)

    def compose(self) -> ComposeResult:
        yield TopBar(id="run-top")
        with Horizontal(id="run-setup"):
            yield Label("Scenario", classes="field-label")
            yield Select([(s, s) for s in SCENARIOS], allow_blank=False, id="run-scenario", compact=True)
            yield Label("Duration (s)", classes="field-label")
            yield Input(id="run-duration", type="number", compact=True)
            yield Button("Start (s)", id="run-start", variant="success", compact=True)
            yield Button("Guided (g)", id="run-guided", compact=True)
        with Horizontal(id="run-status"):
            yield LiveText(id="run-phase")
            yield ProgressBar(id="run-progress", show_eta=False, show_percentage=False)
            yield LiveText(id="run-clock")
        with Horizontal(id="run-body"):
            with Vertical(id="run-plots"):
                yield TimePlot("Power", "W", id="run-power")
                yield TimePlot("QPS", "q/s", id="run-qps")
            with Vertical(id="run-side"):
                yield LiveText(id="run-stats")
                yield RichLog(id="run-log", markup=True, wrap=True, min_width=1, max_lines=2000)
        yield KeyFooter()

    # --- life cycle ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.SESSION_KIND != "live":
            return
        self.app.run_screen = self
        prof = self.app.loaded.profile
        self.training = prof.workload.type == "training"
        if self.training:
            # A training run has no LoadGen scenario or duration: the trainer decides its length.
            for wid in ("#run-scenario", "#run-duration", "#run-guided"):
                self.query_one(wid).display = False
            for label in self.query(".field-label"):
                label.display = False
            self.query_one("#run-qps", TimePlot).empty_text = f"Training: {prof.workload.runs} runs of {prof.workload.benchmark}; no QPS"
        else:
            self.query_one("#run-scenario", Select).value = prof.workload.scenario
            self.query_one("#run-duration", Input).value = f"{prof.workload.duration_s:g}"
            self.query_one("#run-qps", TimePlot).empty_text = "QPS appears when LoadGen runs"
        self.query_one("#run-side").border_title = "l: the event log, full screen"
        self.query_one("#run-log").border_title = "events · l: full screen"
        self._apply_width()

    def on_resize(self) -> None:
        self._apply_width()

    def _apply_width(self) -> None:
        self.set_class(self.size.width >= 120, "wide")
        self.set_class(self.size.height < 30, "short")

    # --- actions ----------------------------------------------------------------------------------
    def _setup_values(self) -> tuple[str | None, float | None] | None:
        if getattr(self, "training", False):
            return None, None
        scenario = self.query_one("#run-scenario", Select).value
        text = self.query_one("#run-duration", Input).value.strip()
        dur = None
        if text:
            try:
                dur = float(text)
            except ValueError:
                dur = math.nan
            if not (0 < dur <= 7 * 86400):
                self.notify("Duration: a number of seconds above 0 (up to a week)", severity="error")
                return None
        return (scenario if isinstance(scenario, str) else None), dur

    def action_start(self) -> None:
        vals = self._setup_values()
        if vals is not None:
            self.app.start_run(*vals, guided=False)

    def action_start_guided(self) -> None:
        vals = self._setup_values()
        if vals is not None:
            self.app.start_run(*vals, guided=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run-start":
            self.action_start()
        elif event.button.id == "run-guided":
            self.action_start_guided()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.set_focus(None)  # back to the keys; s starts

    def action_abort(self) -> None:
        self.app.action_abort_run()

    def action_results(self) -> None:
        s = self.session_shown()
        path = s.bundle_path() if s is not None else None
        if s is not None and path is None and s.finished and s.failure():
            self.notify(f"Nothing was recorded: {escape(s.failure())}", severity="warning", timeout=8)
            return
        if s is None or path is None:
            self.notify("No run to show yet: start one (s) or open a recording (o)")
            return
        if s.kind == "live" and not s.finished:
            self.notify("The run is still going; results come when it is sealed")
            return
        self.app.show_results(path)

    def action_log(self) -> None:
        self.app.push_screen(LogScreen(self.live))

    def action_zoom(self) -> None:
        self.zoom_recent = not self.zoom_recent
        self.notify("Plots: the last 60 s" if self.zoom_recent else "Plots: the whole session")
        self.tick()

    def session_shown(self):
        """The session this screen follows: a live run, or (for an observer, `--watch`) the
        operator's run followed from its bundle; a replay has its own screen."""
        s = self.app.session
        if s is None:
            return None
        kinds = ("live", "follow") if self.SESSION_KIND == "live" else (self.SESSION_KIND,)
        return s if s.kind in kinds else None

    def _replay(self):
        s = self.session_shown()
        return s if s is not None and s.kind == "replay" else None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if self.app.refuses(action):  # an observer's console (serve --watch)
            return False
        if action in REPLAY_ACTIONS:
            return self._replay() is not None
        s = self.session_shown()
        running = s is not None and s.kind == "live" and not s.finished
        if action in ("start", "start_guided"):
            return not running
        if action == "abort":
            return running
        if action == "results":
            return s is not None and s.bundle_path() is not None and (s.kind == "replay" or s.finished)
        if action == "log":
            return s is not None
        return True

    def action_pause(self) -> None:
        r = self._replay()
        if r is not None:
            paused = r.toggle_pause()
            self.notify("paused" if paused else f"playing at {speed_label(r.speed)}", timeout=2)

    def action_speed(self, factor: float) -> None:
        r = self._replay()
        if r is not None:
            r.set_speed(MAX if factor == 0 else float(factor))
            if r.clock.paused:
                r.toggle_pause()
            self.notify(f"replay speed {speed_label(r.speed)}", timeout=2)

    def action_seek(self, fraction: float) -> None:
        r = self._replay()
        if r is not None:
            r.seek_fraction(r.clock.fraction + fraction)

    def action_seek_start(self) -> None:
        r = self._replay()
        if r is not None:
            r.seek_fraction(0.0)

    def action_seek_end(self) -> None:
        r = self._replay()
        if r is not None:
            r.seek_fraction(1.0)

    # --- the timer ---------------------------------------------------------------------------
    def timer_tick(self) -> None:
        self.tick_starts.append(time.perf_counter())
        del self.tick_starts[:-500]
        self.tick()

    def tick(self) -> None:
        t_start = time.perf_counter()
        app = self.app
        s = self.session_shown()
        if self.live.attach(s):
            self.energy.clear()
            self.query_one("#run-log", RichLog).clear()
            self._log_written = 0
            self._done_seen = False
            self.refresh_bindings()
        setup = self.query_one("#run-setup")
        show_setup = s is None or (s.kind == "live" and s.finished)
        if setup.display != show_setup:
            if not show_setup and self.focused is not None and setup in self.focused.ancestors:
                self.set_focus(None)
            setup.display = show_setup
        top = self.query_one("#run-top", TopBar)
        if s is None:
            top.update(f"[b]RUN[/]  {app.loaded.profile.name}  [dim]set the scenario and duration, then press s to start (g: guided calibration first)[/]")
            self.query_one("#run-phase", LiveText).update("[dim]no run[/]")
            self.query_one("#run-clock", LiveText).update("")
            self.query_one("#run-stats", LiveText).update(self._hint())
            self.query_one("#run-power", TimePlot).show([])
            self.query_one("#run-qps", TimePlot).show([])
            return
        reset, _new = self.live.pull()
        self._write_log(reset)
        hint = "  [dim]space pause · 1/2/3/4 speed · ←/→ seek[/]" if s.kind == "replay" and self.size.width >= 100 else ""
        top.update(f"[b]{ {'replay': 'REPLAY', 'follow': 'WATCH'}.get(s.kind, 'RUN')}[/]  {escape(s.title)}  {status_markup(s.status)}{hint}")
        pc = s.phase_clock()
        failure = s.failure() if s.finished else None
        self.query_one("#run-phase", LiveText).update(f"[b]{pc.phase}[/]" if failure is None else f"[b red]{escape(s.status)}[/]")
        bar = self.query_one("#run-progress", ProgressBar)
        if s.kind == "live" and s.finished:
            # Ended: a still bar (full when it completed) and a stopped clock, never the "starting" animation.
            bar.update(total=1, progress=1 if s.status == "completed" else 0)
            self.query_one("#run-clock", LiveText).update(f"took {duration(pc.elapsed_s)}" if s.bundle_path() is not None else "[red]nothing was recorded[/]")
        elif s.kind == "replay":
            c = s.clock
            bar.update(total=max(1, c.end_ns - c.start_ns), progress=c.now_ns() - c.start_ns)
            left = (c.end_ns - c.now_ns()) / 1e9
            self.query_one("#run-clock", LiveText).update(
                f"{duration((c.now_ns() - c.start_ns) / 1e9)} / {duration((c.end_ns - c.start_ns) / 1e9)}  {speed_label(c.speed)}{' paused' if c.paused else ''}  [dim]-{duration(left)}[/]"
            )
        else:
            self._live_progress(s, pc, bar)
        self._draw(s)
        if s.finished and not self._done_seen:
            self._done_seen = True
            self.refresh_bindings()
            if s.kind == "live":
                self._announce_end(s)
                app.session_finished(s)
        self.tick_times.append((time.perf_counter() - t_start) * 1e3)
        del self.tick_times[:-500]

    def _write_log(self, reset: bool = False) -> None:
        """Add the events the log lacks; everything again after a seek or a new width (lines
        are wrapped when written, so a wider or narrower log rewraps them)."""
        log = self.query_one("#run-log", RichLog)
        width = log.scrollable_content_region.width
        if reset or (width and width != self._log_width):
            log.clear()
            self._log_written = 0
            self._log_width = width
        events = self.live.events
        for e in events[self._log_written:]:
            log.write(event_markup(e))
        self._log_written = len(events)

    def on_screen_resume(self) -> None:
        if self.is_attached:
            self._write_log()  # the full-screen log may have pulled events meanwhile

    def _live_progress(self, s, pc, bar: ProgressBar) -> None:
        """The phase's bar and words: LoadGen's counts and the minimum duration in workload phases,
        the phase clock elsewhere, and the whole run's estimate; never an endless animation."""
        wp = s.workload_progress() if hasattr(s, "workload_progress") else None
        est = self._estimate = s.run_estimate() if hasattr(s, "run_estimate") else None
        whole = f"  [dim]run {duration(est.elapsed_s)} of ~{duration(est.total_s)}[/]" if est is not None and self.size.width >= 120 else ""
        clock = self.query_one("#run-clock", LiveText)
        if wp is not None:
            bar.update(total=1000, progress=int(1000 * wp.fraction))
            clock.update(escape(wp.words()) + whole)
            return
        if pc.expected_s:
            bar.update(total=pc.expected_s, progress=min(pc.elapsed_s, pc.expected_s))
        elif est is not None:
            bar.update(total=1000, progress=int(1000 * est.fraction))  # the whole run's share
        else:
            bar.update(total=None)
        rem = pc.remaining_s
        clock.update(f"{duration(pc.elapsed_s)}" + (f"  [dim]left {duration(rem)}[/]" if rem is not None else "") + whole)

    def _announce_end(self, s) -> None:
        status = s.status
        failure = s.failure()
        if failure is None:
            self.notify(f"run {status}: press v for the results", severity="information", timeout=8)
        elif s.bundle_path() is None:
            self.notify(f"the run did not start: {escape(failure)}", title="run refused" if status == "refused" else "run failed", severity="error", timeout=15)
        else:
            self.notify(f"run {status}: {escape(failure)}\npress v for what was recorded, l for the whole log", severity="warning", timeout=12)

    def _failure_text(self, s) -> str:
        failure = s.failure() or ""
        recorded = s.bundle_path() is not None
        head = "The run was refused" if s.status == "refused" else ("The run did not start" if not getattr(s, "started_phases", True) else f"The run {s.status}")
        lines = [f"[b red]{head}[/]", escape(failure), f"[b]What to do:[/] {escape(what_to_do(failure, recorded))}"]
        lines.append("[dim]" + ("v: what was recorded · " if recorded else "nothing was recorded · ") + "l: the whole log · s: start again[/]")
        return "\n".join(lines)

    def _draw(self, s) -> None:
        x_range, origin, spans = plot_view(s, self.live, self.zoom_recent)
        marks = self.live.phase_marks
        self.query_one("#run-power", TimePlot).show(self.live.power_series(), x_range, origin=origin, markers=marks, spans=spans)
        qt, qy = self.live.qps()
        last_q = qy[np.isfinite(qy)][-1:] if len(qy) else []
        qlabel = f"{last_q[0]:,.1f}" if len(last_q) else "-"
        self.query_one("#run-qps", TimePlot).show([Series("QPS", qt, qy, color="#58a6ff", value_text=qlabel)], x_range, origin=origin, y_floor=0.0, markers=marks, spans=spans)
        failed_early = s.kind == "live" and s.finished and s.failure() is not None and not self.live.histories
        self.set_class(failed_early, "failed-early")  # the reason gets the room the plots would use
        self.query_one("#run-stats", LiveText).update(self._failure_text(s) if failed_early else self._stats(s))

    def _stats(self, s) -> str:
        pc = s.phase_clock()
        phase_t0 = next((m.t for m in reversed(self.live.phase_marks) if m.label == pc.phase), None)
        if phase_t0 is None and self.live.phase_marks:
            phase_t0 = self.live.phase_marks[-1].t  # between phases / done: the last phase's average
        lines = []
        # computed once a tick, by _live_progress; the estimate knows Inference's phases, not a
        # training run's (whose length the trainer decides): none shown for those
        est = self._estimate if s.kind == "live" and not s.finished and not getattr(self, "training", False) else None
        if est is not None:
            lines.append(f"[b]run[/] {duration(est.elapsed_s)} of ~{duration(est.total_s)}  [dim]~{duration(est.remaining_s)} left[/]")
        rings = s.rings()
        fleets = fleet_view_sources(self.live.histories)
        for src in fleets:  # a fleet: its total and a per-node grid, readable at 64 nodes
            latest = {ch: h.last_valid_point() for (sname, ch), h in self.live.histories.items() if sname == src}
            readings = fleet_view.node_readings(latest, s.now_s(), self.live.stale_s)
            lines += fleet_view.breakdown_lines(src, readings, width=max(30, self.query_one("#run-stats").size.width - 2))
        for key, h in self.live.histories.items():
            src, ch = key
            if src in fleets:
                continue
            ring = rings.get(key)
            label = src if ch == "main" else f"{src}/{ch}"
            now_w = h.last_valid()
            avg = h.mean_since(phase_t0) if phase_t0 is not None else float("nan")
            total = ring.total if ring is not None else len(h)
            bad = ring.invalid if ring is not None else 0
            lines.append(f"[b]{label}[/] {si(now_w, 'W')}  avg {si(avg, 'W')}")
            joules = self.energy.setdefault(key, EnergyCounter()).update(h.t, h.y)
            rng = ""
            if h.last_range and all(math.isfinite(v) for v in h.last_range):
                rng = f"  range {h.last_range[0]:g} V {h.last_range[1]:g} A"
            lines.append(f"  n {total}" + (f" [red]invalid {bad}[/]" if bad else " invalid 0") + f"  [b]E[/] {si(joules, 'J')}" + rng)
        qt, qy = self.live.qps()
        progs = s.progress()
        prog = progs.get(pc.phase)
        if prog is None and progs:  # between phases, or done: the last phase that had progress
            prog = max(progs.values(), key=lambda wc: int(wc[0][0]) if len(wc[0]) else 0)
        if prog is not None and len(prog[0]) >= 2:
            w, c = prog
            avg_q = (c[-1] - c[0]) / ((w[-1] - w[0]) / 1e9) if w[-1] > w[0] else float("nan")
            last_q = qy[np.isfinite(qy)][-1] if np.isfinite(qy).any() else float("nan")
            lines.append(f"[b]QPS[/] {num(last_q, ',.0f')}  avg {num(avg_q, ',.0f')}  done {int(c[-1]):,}")
        return "\n".join(lines) or "[dim]waiting for samples...[/]"

    def _hint(self) -> str:
        prof = self.app.loaded.profile
        wl = prof.workload
        return (
            f"[b]{prof.name}[/]: {len(prof.sources)} source(s), workload {getattr(wl, 'sut', wl.type)}, "
            f"idle {prof.procedure.idle_s:g} s, ranging {'on' if prof.procedure.ranging else 'off'}.\n"
            "[dim]s starts a run (calibration runs by itself); g starts one with guided calibration.\n"
            "o opens a recording to replay.[/]"
        )
