"""Bench: the profile, each source with its identity, status and live reading, and what else is attached.

With no run going, a `BenchMonitor` (its own thread) opens the profile's sources and keeps
rings of their readings; during a run the readings come from the run's recorder. Discovery
asks every registered driver what it can find, in a worker thread, and shows what the
profile does not use with the lines to add it.
"""

from __future__ import annotations

import yaml
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from labconsole.profile import training_nodes
from labconsole.instruments.load_model import describe_utilisation, simulated_load
from labconsole.session.live import SeriesHistory
from labconsole.tui.format import escape, num
from labconsole.tui.widgets import KeyFooter, LiveText, TickingScreen, TopBar

TREND_S = 30.0


class SourceRow(Horizontal):
    def __init__(self, name: str):
        super().__init__(classes="source-row")
        self.source_name = name

    def compose(self) -> ComposeResult:
        yield LiveText(classes="source-info")
        yield Sparkline([], classes="source-trend")


class BenchScreen(TickingScreen):
    TICK_S = 0.25
    BINDINGS = [
        Binding("d", "discover", "Discover"),
        Binding("n", "app.setup", "Setup"),
        Binding("p", "app.open_profile", "Open profile", show=False),  # the footer is full at 80 columns; help and ctrl+p list it
    ]

    def __init__(self) -> None:
        super().__init__()
        self._hist: dict[tuple[str, str], SeriesHistory] = {}
        self._rings_owner = None
        self.discovered: list | None = None

    def compose(self) -> ComposeResult:
        yield TopBar(id="bench-top")
        with VerticalScroll(id="bench-body"):
            yield Static(id="bench-profile")
            with Vertical(id="bench-sources"):
                for spec in self.app.loaded.profile.sources:
                    yield SourceRow(spec.name)
            yield Static(id="bench-discovered")
        yield KeyFooter()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return not self.app.refuses(action)  # an observer (serve --watch) never probes the bench

    def on_mount(self) -> None:
        self.query_one("#bench-profile", Static).update(self._profile_text())
        self.query_one("#bench-discovered", Static).update("[b]Discovered[/]  [dim]press d to look for meters and devices the profile does not use; n sets up a new profile with them[/]")

    def on_screen_resume(self) -> None:
        self.app.ensure_bench_monitor()  # before TickingScreen's first tick

    def on_screen_suspend(self) -> None:
        self.app.stop_bench_monitor()

    def _profile_text(self) -> str:
        loaded = self.app.loaded
        p = loaded.profile
        wl = p.workload
        what = {
            "loadgen": lambda: f"LoadGen, SUT {wl.sut}",
            "tiny": lambda: f"MLPerf Tiny energy, {wl.windows} windows",
        }.get(wl.type, lambda: f"command {' '.join(wl.command)[:60]}")()  # command, training: the argument list
        lines = [
            f"[b]{escape(p.name)}[/]  [dim]{escape(str(loaded.path))}[/]",
        ]
        if p.description:
            lines.append(escape(p.description))
        if wl.type == "training":
            sw = ", ".join(escape(s.name) for s in wl.switches) or "none"
            lines.append(
                f"workload: Training {escape(wl.benchmark)}, {wl.runs} runs of {escape(what)}   "
                f"node sources: {len(training_nodes(p))} (a fleet: each of its nodes)   switches: {sw}   recordings: {escape(p.recordings)}"
            )
        else:
            lines.append(
                f"workload: {escape(what)}, {wl.scenario}, {wl.duration_s:g} s   procedure: idle {p.procedure.idle_s:g} s, "
                f"ranging {'on' if p.procedure.ranging else 'off'}   recordings: {escape(p.recordings)}"
            )
        for spec in p.sources:
            load = simulated_load(spec.driver, spec.options, spec.emulator)
            if load is not None:
                what = "simulated" if spec.driver == "simulated" else "emulated"
                lines.append(f"[dim]{escape(spec.name)} ({what}): {escape(describe_utilisation(load))}[/]")
        return "\n".join(lines)

    # --- live readings ------------------------------------------------------------------------
    def _reading_source(self):
        """(owner, rings, status by source, identities) from the run in progress or the monitor."""
        app = self.app
        s = app.session
        if s is not None and s.kind == "live" and not s.finished:
            proc = s.proc
            status = {n: "in the run" for n in proc.sources}
            # Identities as the run reported them (asking the meter again would be I/O here).
            idents = {e.data.get("source"): e.data["identity"] for e in list(proc.bus.history) if isinstance(e.data.get("identity"), dict)}
            return s, s.rings(), status, idents
        mon = app.bench_monitor
        if mon is not None:
            return mon, mon.rings(), dict(mon.status), dict(mon.identities)
        return None, {}, {}, {}

    def tick(self) -> None:
        app = self.app
        owner, rings, status, idents = self._reading_source()
        if owner is not self._rings_owner:
            self._hist.clear()
            self._rings_owner = owner
        s = app.session
        busy = s is not None and s.kind == "live" and not s.finished
        self.query_one("#bench-top", TopBar).update(
            f"[b]BENCH[/]  {escape(app.loaded.profile.name)}  " + ("[cyan]a run is going (r shows it)[/]" if busy else "[dim]r run · c calibrate · o recordings · p open a profile · ? help · ctrl+p all commands[/]")
        )
        now = None
        for key, ring in rings.items():
            h = self._hist.setdefault(key, SeriesHistory(cap=200_000))
            h.sync(ring)
            if len(h):
                now = max(now or 0.0, float(h.t[-1]))
        for row in self.query(SourceRow):
            name = row.source_name
            spec = next(sp for sp in app.loaded.profile.sources if sp.name == name)
            st = status.get(name, "closed")
            ident = idents.get(name) or {}
            who = " ".join(str(ident.get(k)) for k in ("vendor", "model") if ident.get(k)) or spec.driver
            if ident.get("serial"):
                who += f" s/n {ident['serial']}"
            chans = [(k, h) for k, h in self._hist.items() if k[0] == name]
            readings = []
            trend: list[float] = []
            for (src, ch), h in chans:
                last = h.last_valid()
                readings.append((f"{ch} " if ch != "main" else "") + num(last, ".1f", "W"))
                if now is not None and len(h):
                    import numpy as np  # deferred: the first tick (before the first paint) has no readings yet

                    i = int(np.searchsorted(h.t, now - TREND_S))
                    y = h.y[i:]
                    trend = [float(v) for v in y[np.isfinite(y)][-400:]]
            span = f"  [dim]last {TREND_S:g} s: {min(trend):.1f} to {max(trend):.1f} W[/]" if trend else ""
            stc = "green" if st in ("ok", "in the run") else ("yellow" if st == "opening" else "red")
            primary = " [b]primary[/]" if spec.name == app.loaded.profile.primary_source.name else ""
            info = (
                f"[b]{escape(name)}[/]{primary} [dim]{escape(spec.driver)} · {spec.scope} · every {spec.sample_interval_s:g} s[/]\n"
                f"  {escape(who)}  [{stc}]{escape(st)}[/]\n"
                f"  [b]{' '.join(readings) or '-'}[/]{span}"
            )
            row.query_one(".source-info", LiveText).update(info)
            row.query_one(Sparkline).data = trend

    # --- discovery ---------------------------------------------------------------------------------
    def action_discover(self) -> None:
        self.query_one("#bench-discovered", Static).update("[b]Discovered[/]  [cyan]looking...[/]")
        self._discover()

    @work(thread=True, exclusive=True, exit_on_error=False, group="discover")
    def _discover(self) -> None:
        from labconsole.sources.discovery import discover_everything, hints_from_profile

        loaded = self.app.loaded
        result = discover_everything(hints_from_profile(loaded.profile, base_dir=loaded.path.parent))
        found = [d for d in result.found if d.driver not in ("simulated", "replay")]
        errors = [f"{d.driver}: {d.detail}" for d in found if d.status == "error" and not d.address]
        found = [d for d in found if not (d.status == "error" and not d.address)]
        self.app.call_from_thread(self._show_discovered, found, errors)

    def _show_discovered(self, found: list, errors: list[str]) -> None:
        self.discovered = found
        used = {(sp.driver, str(sp.options.get("address", sp.options.get("resource", "")))) for sp in self.app.loaded.profile.sources}
        lines = ["[b]Discovered[/]  [dim](d looks again)[/]"]
        new = [d for d in found if (d.driver, d.address) not in used]
        if not new:
            lines.append("  nothing attached that the profile does not already use  [dim](n sets up a new profile)[/]")
        for d in new:
            lines.append(f"  [b]{escape(d.driver)}[/] {escape(d.address)}  {escape(d.model)} {escape(d.serial)}  [dim]{escape(d.status)} {escape(d.detail)}[/]")
            if d.profile_snippet:
                snippet = yaml.safe_dump({"sources": [d.profile_snippet]}, sort_keys=False).rstrip()
                lines.append("  [dim]add to the profile:[/]")
                lines.extend("    " + escape(ln) for ln in snippet.splitlines())
        for e in errors:
            lines.append(f"  [yellow]{escape(e)}[/]")
        self.query_one("#bench-discovered", Static).update("\n".join(lines))
