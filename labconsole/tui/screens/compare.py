"""Compare: two marked recordings side by side (what `labconsole compare A B` prints).

`compare_runs` reads both runs, analyses them and runs every check (it hashes each file of a
sealed bundle), so it runs in a worker thread; the screen says "comparing..." until then.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from labconsole.mlperf.compare import compare_runs, format_change, format_value
from labconsole.tui.format import escape, si, status_markup, verdict_markup
from labconsole.tui.plot import Series, Span, TimePlot
from labconsole.tui.widgets import KeyFooter, TopBar

SMALL_CHANGE_PCT = 0.5  # below this a change is shown plain: within a simulated source's noise


def change_markup(figure) -> str:
    """The relative change, green where it is better, red where it is worse (by the figure's own sense)."""
    text = escape(format_change(figure))
    rel = figure.rel_change_pct
    if rel is None or figure.better is None or abs(rel) < SMALL_CHANGE_PCT:
        return text
    good = (rel > 0) == (figure.better == "higher")
    return f"[{'green' if good else 'red'}]{text}[/]"


class CompareScreen(Screen):
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("s", "swap", "Swap A/B"),
    ]

    def __init__(self, a: Path, b: Path):
        super().__init__()
        self.a, self.b = Path(a), Path(b)
        self.comparison = None
        self.error: str | None = None
        self.seconds: float | None = None

    def compose(self) -> ComposeResult:
        yield TopBar(id="cmp-top")
        with VerticalScroll(id="cmp-body"):
            yield Static(id="cmp-runs")
            yield TimePlot("Testing power, A over B", "W", id="cmp-power")
            with Horizontal(id="cmp-tables"):
                yield Static(id="cmp-figures")
                with Vertical(id="cmp-side"):
                    yield Static(id="cmp-checks")
                    yield Static(id="cmp-env")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._apply_width()
        self._start()

    def on_resize(self) -> None:
        self._apply_width()

    def _apply_width(self) -> None:
        self.set_class(self.size.width >= 120, "wide")

    def _start(self) -> None:
        self.comparison = None
        self.error = None
        self.overlay = None
        self.query_one("#cmp-power", TimePlot).empty_text = "reading both testing runs..."
        self.query_one("#cmp-power", TimePlot).show([])
        self.query_one("#cmp-top", TopBar).update(f"[b]COMPARE[/]  A {escape(self.a.name)}  ·  B {escape(self.b.name)}  [cyan]comparing...[/]")
        self.query_one("#cmp-runs", Static).update(
            f"A: {escape(str(self.a))}\nB: {escape(str(self.b))}\n[dim]reading both runs, analysing them and running every check...[/]"
        )
        for wid in ("#cmp-figures", "#cmp-checks", "#cmp-env"):
            self.query_one(wid, Static).update("")
        self._compare(self.a, self.b)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def _compare(self, a: Path, b: Path) -> None:

        from labconsole.session.overlay import testing_trace

        t0 = time.perf_counter()
        try:
            cmp = compare_runs(a, b)
        except Exception as exc:  # noqa: BLE001 - an unreadable run is a message, not a crash
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        seconds = time.perf_counter() - t0
        traces = []
        for path in (a, b):
            try:
                traces.append(testing_trace(path))
            except Exception:  # noqa: BLE001 - no overlay for a run whose samples do not read; the figures stay
                traces.append(None)
        self.app.call_from_thread(self._show, cmp, seconds, traces)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#cmp-top", TopBar).update("[b]COMPARE[/]  [red]cannot compare[/]")
        self.query_one("#cmp-runs", Static).update(f"A: {escape(str(self.a))}\nB: {escape(str(self.b))}\n[red]{escape(message)}[/]")

    def _show(self, cmp, seconds: float, traces: list | None = None) -> None:
        self.comparison = cmp
        self.seconds = seconds
        self._show_overlay(traces or [None, None])
        self.query_one("#cmp-top", TopBar).update(
            "[b]COMPARE[/]  A (the reference) and B  [dim]change = (B - A) / |A|; pp: percentage points · s swaps · esc back[/]"
        )
        lines = []
        for tag, side in (("A", cmp.a), ("B", cmp.b)):
            if side.kind == "mlperf":
                what = "MLPerf result folder"
            else:
                what = f"bundle {status_markup(side.exit_status)}"
            extra = ", ".join(escape(str(x)) for x in (side.profile if side.kind == "bundle" else None, side.scenario, (side.start or "")[:19].replace("T", " ") or None) if x)
            checks = verdict_markup("pass" if side.passed else "fail", "checks pass" if side.passed else "checks fail")
            lines.append(f"[b]{tag}[/] {what}  {extra}  {checks}\n  [dim]{escape(side.path)}[/]")
        for n in cmp.notes:
            lines.append(f"[yellow]note:[/] {escape(n)}")
        self.query_one("#cmp-runs", Static).update("\n".join(lines))

        figs = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", expand=False)
        figs.add_column("figure", overflow="fold")
        figs.add_column("A", justify="right")
        figs.add_column("B", justify="right")
        figs.add_column("change", justify="right")
        for f in cmp.figures:
            if f.a is None and f.b is None:
                continue
            label = f.label + (f" [{f.unit}]" if f.unit else "")
            figs.add_row(escape(label), format_value(f.a), format_value(f.b), change_markup(f))
        self.query_one("#cmp-figures", Static).update(figs)

        checks = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", expand=False)
        checks.add_column("check", overflow="fold")
        checks.add_column("A")
        checks.add_column("B")
        for c in cmp.checks:
            mark = " [yellow]≠[/]" if c.changed else ""
            checks.add_row(escape(c.name) + mark, verdict_markup(c.a) if c.a else "-", verdict_markup(c.b) if c.b else "-")
        self.query_one("#cmp-checks", Static).update(checks)

        if cmp.environment:
            env = [f"[b]bench differences (A → B): {len(cmp.environment)}[/]"]
            for d in cmp.environment:
                style = {"error": "red", "warning": "yellow"}.get(d.severity, "dim")
                env.append(f"  [{style}]{escape(d.severity)}[/] {escape(d.message)}")
        else:
            env = ["[b]bench differences (A → B):[/] none"]
        self.query_one("#cmp-env", Static).update("\n".join(env))

    def _show_overlay(self, traces: list) -> None:
        """A's and B's testing power on one axis, from each one's power window start."""
        self.overlay = traces
        plot = self.query_one("#cmp-power", TimePlot)
        series, spans = [], []
        for tag, tr, color in (("A", traces[0], "#58a6ff"), ("B", traces[1], "#e8a33c")):
            if tr is None:
                continue
            valid = tr.watts[tr.watts == tr.watts]
            mean = si(float(valid.mean()), "W") if len(valid) else "-"
            series.append(Series(f"{tag} {tr.label}", tr.t, tr.watts, color=color, value_text=f"mean {mean}"))
            if tr.window_s and not spans:
                spans.append(Span(0.0, tr.window_s, "power window"))
        if not series:
            plot.empty_text = "no testing samples to overlay"
        lo = min((float(s.t[0]) for s in series if len(s.t)), default=0.0)
        hi = max((float(s.t[-1]) for s in series if len(s.t)), default=1.0)
        plot.show(series, (lo, max(hi, lo + 1.0)), origin=0.0, spans=spans)

    def action_swap(self) -> None:
        self.a, self.b = self.b, self.a
        self._start()

    def action_close(self) -> None:
        self.app.pop_screen()
