"""Calibrate: the guided steps with their status, the current step, its live reading and verdict.

Calibration is the first part of a run (its verdicts go into the bundle). `g` starts a run
whose calibration waits for the operator: run (or retry) the current step, skip it, accept
it and go to the next, or run all that remain. The steps execute on the procedure's thread;
this screen only posts commands and reads state on its timer.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Static

from labconsole.procedure.calibration import DEFAULT_STEPS
from labconsole.tui.format import escape, flatten, num, status_markup, verdict_markup
from labconsole.tui.widgets import KeyFooter, LiveData, TickingScreen, TopBar, update_static

class CalibrateScreen(TickingScreen):
    TICK_S = 0.25
    BINDINGS = [
        Binding("g", "start_guided", "Guided run"),
        # Shown on the buttons; kept out of the footer so the screen keys fit in 80 columns.
        Binding("t", "run_step", "Run/retry", show=False),
        Binding("k", "skip_step", "Skip", show=False),
        Binding("n", "next_step", "Next", show=False),
        Binding("a", "run_rest", "All the rest", show=False),
        Binding("x", "abort", "Abort", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.live = LiveData()
        self._step_started: dict[str, float] = {}
        self._rows: list[str] = []
        self._done_notified = None
        self._last_idx = -2
        self._binding_state = None

    def compose(self) -> ComposeResult:
        yield TopBar(id="cal-top")
        with Horizontal(id="cal-body"):
            yield DataTable(id="cal-steps", cursor_type="row", zebra_stripes=False)
            with VerticalScroll(id="cal-detail"):
                yield Static(id="cal-title")
                yield Static(id="cal-instructions")
                yield Static(id="cal-live")
                yield Static(id="cal-verdict")
        with Horizontal(id="cal-buttons"):
            yield Button("Run / retry (t)", id="cal-run", variant="primary", compact=True)
            yield Button("Skip (k)", id="cal-skip", compact=True)
            yield Button("Next (n)", id="cal-next", variant="success", compact=True)
            yield Button("All the rest (a)", id="cal-rest", compact=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one("#cal-steps", DataTable)
        table.add_column("", key="icon", width=1)
        table.add_column("Step", key="step")
        table.add_column("Verdict", key="verdict", width=9)
        table.add_column("Tries", key="tries", width=5)

    # --- actions ---------------------------------------------------------------------------------
    def _guide(self):
        g = self.app.guide
        if g is None or g.done.is_set():
            return None
        return g

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if self.app.refuses(action):  # an observer's console (serve --watch)
            return False
        if action in ("run_step", "skip_step", "next_step", "run_rest"):
            g = self._guide()
            return None if g is None or not g.waiting else True
        if action == "start_guided":
            s = self.app.session
            return not (s is not None and s.kind == "live" and not s.finished)
        return True

    def action_start_guided(self) -> None:
        self.app.start_run(None, None, guided=True)

    def _command(self, name: str) -> None:
        g = self._guide()
        if g is None:
            self.notify("No guided calibration is waiting: press g to start a run with guided calibration")
            return
        if not g.waiting:
            self.notify("A step is running; wait for its verdict")
            return
        step = g.current
        if name == "run":
            if step is not None:
                self._step_started[step.key] = time.time()
            g.run()
        elif name == "skip":
            g.skip()
        elif name == "next":
            if step is not None and g.result(step) is None:
                self._step_started[step.key] = time.time()
            g.next()
        elif name == "rest":
            g.run_rest()
        self.tick()

    def action_run_step(self) -> None:
        self._command("run")

    def action_skip_step(self) -> None:
        self._command("skip")

    def action_next_step(self) -> None:
        self._command("next")

    def action_run_rest(self) -> None:
        self._command("rest")

    def action_abort(self) -> None:
        self.app.action_abort_run()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._command({"cal-run": "run", "cal-skip": "skip", "cal-next": "next", "cal-rest": "rest"}[event.button.id])

    # --- the timer -----------------------------------------------------------------------------
    def _steps(self):
        """(steps, results, current index, running key, guided) from whatever knows them."""
        g = self.app.guide
        s = self.app.session
        if g is not None and g.started.is_set():
            cal = g.calibration
            return g.steps, (cal.results if cal else {}), g.index, g.running, True
        proc = getattr(s, "proc", None) if s is not None else None
        cal = getattr(proc, "calibration", None)
        if cal is not None:
            steps = cal.applicable()
            results = cal.results
            idx = next((i for i, st in enumerate(steps) if st.key not in results), len(steps))
            running = steps[idx].key if idx < len(steps) and proc.phase in ("calibration", "idle") else None
            return steps, results, idx, running, False

        return [cls() for cls in DEFAULT_STEPS], {}, -1, None, False

    def tick(self) -> None:
        app = self.app
        s = app.session
        if s is not None and s.kind == "live":
            self.live.attach(s)
            self.live.pull()
        steps, results, idx, running, guided = self._steps()
        g = app.guide
        top = self.query_one("#cal-top", TopBar)
        if guided and g is not None and g.done.is_set():
            top.update(f"[b]CALIBRATE[/]  {app.loaded.profile.name}  calibration finished; the run goes on  {status_markup(s.status if s else None)}")
        elif guided:
            top.update(f"[b]CALIBRATE[/]  {app.loaded.profile.name}  step {min(idx + 1, len(steps))} of {len(steps)}" + ("  [cyan]running...[/]" if running else "  [yellow]waiting for you[/]"))
        elif s is not None and s.kind == "live" and not s.finished:
            top.update(f"[b]CALIBRATE[/]  {app.loaded.profile.name}  [dim]the run calibrates by itself (started with s); g starts a guided one[/]")
        else:
            top.update(f"[b]CALIBRATE[/]  {app.loaded.profile.name}  [dim]press g to start a run with guided calibration[/]")
        table = self.query_one("#cal-steps", DataTable)
        keys = [st.key for st in steps]
        if keys != self._rows:
            table.clear()
            for st in steps:
                table.add_row("", st.title, "", "", key=st.key)
            self._rows = keys
        for i, st in enumerate(steps):
            res = results.get(st.key)
            if st.key == running:
                status, text, tries = "running", "running", str(res.attempts if res else "")
            elif res is not None:
                status, text, tries = res.status, res.status.upper(), str(res.attempts)
            else:
                status, text, tries = "pending", "-", ""
            table.update_cell(st.key, "icon", verdict_markup(status, ""))
            table.update_cell(st.key, "verdict", verdict_markup(status, text) if res or status == "running" else "[dim]-[/]")
            table.update_cell(st.key, "tries", tries)
        if guided and idx != self._last_idx and 0 <= idx < len(steps):
            table.move_cursor(row=idx)  # follow the procedure; the operator may look elsewhere after
        self._last_idx = idx
        row = table.cursor_row
        if row is not None and 0 <= row < len(steps):
            shown = steps[row]
        else:
            shown = steps[idx] if 0 <= idx < len(steps) else (steps[-1] if steps else None)
        self._show_step(shown, results.get(shown.key) if shown else None, running)
        enabled = g is not None and not g.done.is_set() and g.waiting
        for bid in ("#cal-run", "#cal-skip", "#cal-next", "#cal-rest"):
            self.query_one(bid, Button).disabled = not enabled
        if g is not None and g.done.is_set() and self._done_notified is not g:
            self._done_notified = g
            self.notify("Calibration finished: the run goes on to ranging and testing (r shows it)", timeout=6)
            app.calibration_finished()
        if s is not None and s.kind == "live" and s.finished and s.failure() is not None and not getattr(s, "started_phases", True) and getattr(self, "_refused_seen", None) is not s:
            self._refused_seen = s
            app.calibration_finished()  # refused before its first step: the Run screen says why
        state = (g is not None and g.waiting, g is not None and g.done.is_set(), app.run_in_progress)
        if state != self._binding_state:  # the footer follows what can be done now
            self._binding_state = state
            self.refresh_bindings()

    def _show_step(self, step, res, running) -> None:
        if step is None:
            for wid in ("#cal-title", "#cal-instructions", "#cal-live", "#cal-verdict"):
                update_static(self.query_one(wid, Static), "")
            return
        update_static(self.query_one("#cal-title", Static), f"[b]{escape(step.title)}[/]")
        update_static(self.query_one("#cal-instructions", Static), escape(step.instructions))
        live_lines = []
        t0 = self._step_started.get(step.key)
        for (src, ch), h in self.live.histories.items():
            label = src if ch == "main" else f"{src}/{ch}"
            line = f"[b]{label}[/] now {num(h.last_valid(), '.2f', 'W')}"
            if t0 is not None and running == step.key:
                line += f"  mean since start {num(h.mean_since(t0), '.2f', 'W')}"
            live_lines.append(line)
        head = "[b]Live[/]" + ("  [cyan]measuring...[/]" if running == step.key else "")
        update_static(self.query_one("#cal-live", Static), head + "\n" + ("\n".join(live_lines) if live_lines else "[dim]no readings yet (the sources open when the run starts)[/]"))
        if res is None:
            update_static(self.query_one("#cal-verdict", Static), "[b]Verdict[/]\n[dim]not run yet[/]")
            return
        lines = [f"[b]Verdict[/] {verdict_markup(res.status)}  [dim]attempt {res.attempts}[/]", escape(res.reason)]
        for k, v in flatten(res.measured, limit=12):
            lines.append(f"  [dim]{escape(k)}[/] {escape(v)}")
        update_static(self.query_one("#cal-verdict", Static), "\n".join(lines))
