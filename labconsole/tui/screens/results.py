"""Results: a recorded run's metrics, every check with its verdict, and whole-run plots.

Reading the record, the analysis and the checks (which hash every file of a sealed bundle)
run in a worker thread; the screen shows "reading..." until they are done.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from labconsole.tui.format import escape, num, status_markup, verdict_markup
from labconsole.tui.plot import Marker, Series, Span, TimePlot
from labconsole.tui.widgets import KeyFooter, TopBar


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("p", "replay", "Replay"),
        Binding("e", "export", "Export report"),
    ]

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.data: dict | None = None
        self.error: str | None = None
        self.exported: list[Path] = []

    def compose(self) -> ComposeResult:
        yield TopBar(id="res-top")
        with VerticalScroll(id="res-body"):
            with Horizontal(id="res-tables"):
                yield Static("[dim]reading the record, computing the metrics and the checks...[/]", id="res-metrics")
                yield Static(id="res-checks")
            yield TimePlot("Power, whole run", "W", id="res-power")
            yield TimePlot("QPS, whole run", "q/s", id="res-qps")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#res-top", TopBar).update(f"[b]RESULTS[/]  {escape(str(self.path))}")
        self.query_one("#res-power", TimePlot).empty_text = "reading..."
        self.query_one("#res-qps", TimePlot).empty_text = "reading..."
        self.set_class(self.app.size.width >= 120, "wide")
        self._load()

    def on_resize(self) -> None:
        self.set_class(self.size.width >= 120, "wide")

    @work(thread=True, exclusive=True, exit_on_error=False, group="results")
    def _load(self) -> None:
        from labconsole.session.results import load_results  # deferred: the first paint does without the readers

        try:
            data = load_results(self.path)
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            self.app.call_from_thread(self._show_error, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, data)

    def _show_error(self, msg: str) -> None:
        self.error = msg
        self.query_one("#res-metrics", Static).update(f"[red]cannot read {escape(str(self.path))}:[/] {escape(msg)}")

    def _show(self, data: dict) -> None:
        self.data = data
        record, rep = data["record"], data["report"]
        kind = "MLPerf result folder" if record.kind == "mlperf" else "bundle"
        self.query_one("#res-top", TopBar).update(f"[b]RESULTS[/]  {escape(record.path.name)}  [dim]{kind}[/]  {status_markup(record.exit_status)}")
        m = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        m.add_column(style="dim", no_wrap=True)
        m.add_column()
        metric = rep.get("metric")
        p = rep.get("power") or {}
        filed, run, notes = data.get("scenario") or (rep.get("scenario"), rep.get("scenario"), [])
        shown = f"{filed} (filed; LoadGen ran {run})" if filed and run and filed != run else (filed or "-")
        m.add_row("scenario", f"{escape(str(shown))}  (LoadGen: {escape(str(rep.get('result_validity') or '-'))})")
        for note in notes:  # the filed scenario against the one LoadGen ran, as `report` says it
            m.add_row("", f"[yellow]{escape(note)}[/]")
        m.add_row("[b]metric[/]", f"[b]{escape(str(metric['name']))} = {metric['value']:.6g} {escape(str(metric['unit']))}[/]" if metric else "[red]none[/]")
        if rep.get("samples_per_joule") is not None:
            m.add_row("efficiency", f"{rep['samples_per_joule']:.6g} samples/J")
        perf = rep.get("performance")
        filed_perf = rep.get("performance_filed")  # the figure the checker infers for the filed scenario
        if filed_perf:
            m.add_row("performance", f"{escape(str(filed_perf['key']))} = {filed_perf['value']:.6g} (the {escape(str(filed))} figure, inferred from the {escape(str(filed_perf.get('inferred_from')))} run)")
        elif perf:
            m.add_row("performance", f"{escape(str(perf['key']))} = {perf['value']:.6g}")
        if p:
            m.add_row("average power", f"{num(p.get('avg_watts'), '.3f', 'W')} over {num(p.get('window_s'), '.3f', 's')}")
            m.add_row("samples", f"{p.get('samples_in_window')} in the window, {p.get('invalid_in_window')} invalid")
        idle = rep.get("idle_baseline") or {}
        if idle.get("avg_watts") is not None:
            m.add_row("idle baseline", num(idle["avg_watts"], ".3f", "W"))
        if rep.get("ranging_delta_pct") is not None:
            m.add_row("testing vs ranging", f"{rep['ranging_delta_pct']:+.2f} %")
        energy = rep.get("energy")
        if energy:
            m.add_row("energy", f"{energy['joules']:.6g} J ({escape(energy['kind'])})")
        unc = rep.get("uncertainty")
        if unc:
            m.add_row("uncertainty", f"mean {unc['mean_pct']:.3f} %, max {unc['max_pct']:.3f} %")
        if rep.get("missing"):
            m.add_row("missing", "[yellow]" + escape(", ".join(rep["missing"])) + "[/]")
        for what in rep.get("unreadable") or []:
            m.add_row("unreadable", "[yellow]" + escape(what) + "[/]")
        rules = data.get("rules")
        if rules is not None:
            m.add_row("rules", escape(rules.describe()))
        self.query_one("#res-metrics", Static).update(m)
        c = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        c.add_column(no_wrap=True)
        c.add_column(no_wrap=True, style="b")
        c.add_column(ratio=1)
        # What needs the operator's attention first: failures, then warnings, then the rest.
        order = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
        counts = {k: sum(1 for r in data["checks"] if r.status == k) for k in order}
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        c.add_row("", "[b]checks[/]", escape(summary))
        for r in sorted(data["checks"], key=lambda r: order.get(r.status, 9)):
            c.add_row(verdict_markup(r.status, r.status.upper()), escape(r.name), escape(r.message))
        self.query_one("#res-checks", Static).update(c)
        origin = min((float(t[0]) for _, t, _ in data["power"] if len(t)), default=0.0)
        spans = [Span(*data["window"], "power window")] if data["window"] else []
        qt, qy = data["qps"]
        qps_plot = self.query_one("#res-qps", TimePlot)
        qps_plot.empty_text = "no progress series in this recording" if record.kind == "bundle" else "MLPerf result folders hold no progress series"
        xr = None
        if data["power"] and any(len(t) for _, t, _ in data["power"]):
            xr = (origin, max(float(t[-1]) for _, t, _ in data["power"] if len(t)))
        marks = [Marker(t, name) for t, name in data["marks"]]
        qps_plot.show([Series("QPS", qt, qy, color="#58a6ff")] if len(qt) else [], xr, origin=origin, y_floor=0.0, markers=marks, spans=spans)
        self.query_one("#res-power", TimePlot).show([Series(lbl, t, y) for lbl, t, y in data["power"]], xr, origin=origin, markers=marks, spans=spans)

    def action_export(self) -> None:
        """The HTML report and the plots, written off the loop; a notice says where."""
        self.notify("writing the HTML report and the plots...", timeout=3)
        self._export()

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self) -> None:
        from labconsole.report.export import export_for_console  # deferred: plotly and matplotlib load only to export

        try:
            done = export_for_console(self.path)
        except Exception as exc:  # noqa: BLE001 - a message, never a crash
            self.app.call_from_thread(self.notify, f"export failed: {escape(f'{type(exc).__name__}: {exc}')}", severity="error", timeout=10)
            return
        self.exported = list(done.files)
        where = "\n".join(escape(str(p)) for p in done.files)
        self.app.call_from_thread(self.notify, f"report written:\n{where}", title="Exported", timeout=15)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_replay(self) -> None:
        self.app.start_replay(self.path)
