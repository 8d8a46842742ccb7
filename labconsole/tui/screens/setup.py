"""Setup: `labconsole init`'s guided first-time setup, inside the console.

Four steps (the wizard's own: sources, workload, procedure, save). Every answer goes to the
same `SetupWizard` that `labconsole init` drives, which checks it with the profile loader
itself, so the messages here are the loader's `FILE:LINE: field: reason` and what is written
loads as written. This screen only asks and shows: discovery and writing the file run in
worker threads; validation (parsing the would-be profile text, no I/O) runs on the loop,
a moment after the last keystroke.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, ContentSwitcher, Input, Label, Select, Static

from labconsole.tui.format import escape
from labconsole.profile import SCENARIOS, SCOPES, ProfileError
from labconsole.sources import discovery
from labconsole.wizard.setup_wizard import SCOPE_HELP, SetupWizard, WizardError
from labconsole.tui.widgets import ChoiceScreen, ConfirmScreen, ConsoleScreen, KeyFooter, TickBox, TopBar
from labconsole.wizard.init_command import parse_key_values

VALIDATE_AFTER_S = 0.4  # after the last change, check the step (the loader's messages appear as you type)

# Where a loader message about a field is shown: profile path -> the widget that holds it.
FIELD_WIDGETS = {
    "workload.type": "wl-type",
    "workload.sut": "wl-sut",
    "workload.sut_options": "wl-sut-options",
    "workload.command": "wl-command",
    "workload.loadgen_logs": "wl-logs",
    "workload.scenario": "wl-scenario",
    "workload.duration_s": "wl-duration",
    "workload.target_qps": "wl-qps",
    "workload.expected_latency_ms": "wl-latency",
    "workload.latency_bound_ms": "wl-bound",
    "procedure.idle_s": "pr-idle",
    "procedure.ranging": "pr-ranging",
    "procedure.settle_s": "pr-settle",
    "name": "meta-name",
    "description": "meta-description",
    "recordings": "meta-recordings",
}
SUT_SUGGESTIONS = ["matmul", "null", "sleep", "python:"]


def _field(label: str, widget, hint: str = "", row_id: str | None = None) -> Horizontal:
    return Horizontal(Label(label, classes="setup-label"), widget, Label(hint, classes="setup-hint"), classes="setup-field", id=row_id)


def _blank_none(text: str) -> str | None:
    text = text.strip()
    return text or None


class OfferRow(Vertical):
    """One thing to pick: a find (with identity and status), the simulated bench, or an emulator."""

    def __init__(self, offer, picked: bool, name: str, scope: str):
        super().__init__(classes="offer-row")
        self.offer = offer
        self._picked, self._name, self._scope = picked, name, scope

    def compose(self) -> ComposeResult:
        o = self.offer
        if o.kind == "found":
            title = " ".join(x for x in (o.model, f"s/n {o.serial}" if o.serial else "") if x) or o.driver
            state = "[green]available[/]" if o.usable else f"[red]{escape(o.status)}[/]"
            detail = f"{escape(o.address)} ({escape(o.driver)})  {state}" + (f" [dim]{escape(o.detail)}[/]" if o.detail else "")
        elif o.kind == "simulated":
            title, detail = "Simulated bench", escape(o.label.split(": ", 1)[-1])
        else:
            emu = o.key.split(":", 1)[1]
            title, detail = f"{emu} emulator", escape(f"a loopback {o.driver} instrument started for each run (training, no hardware)")
        yield TickBox(escape(title), value=self._picked and o.usable, disabled=not o.usable, compact=True, classes="offer-pick")
        yield Static(detail, classes="offer-detail")
        with Horizontal(classes="offer-fields"):
            yield Label("name", classes="offer-label")
            yield Input(self._name, classes="offer-name", compact=True, disabled=not o.usable)
            yield Label("measures", classes="offer-label")
            yield Select([(s, s) for s in SCOPES], value=self._scope if self._scope in SCOPES else "other", allow_blank=False, compact=True, classes="offer-scope", disabled=not o.usable)
            yield Label(SCOPE_HELP.get(self._scope, ""), classes="offer-scope-help")

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one(".offer-scope-help", Label).update(SCOPE_HELP.get(event.value, ""))

    @property
    def picked(self) -> bool:
        return self.query_one(Checkbox).value

    @property
    def source_name(self) -> str:
        return self.query_one(".offer-name", Input).value.strip()

    @property
    def scope(self) -> str:
        v = self.query_one(".offer-scope", Select).value
        return v if isinstance(v, str) else ""


class SetupScreen(ConsoleScreen):
    """The guided setup (a mode of the app: `n` on the Bench, or the palette, or the first start)."""

    BINDINGS = [
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("escape", "back", "Back / leave"),
        Binding("ctrl+r", "discover", "Look again"),
        Binding("ctrl+a", "focus_address", "Add by address"),
    ]

    def __init__(self) -> None:
        super().__init__()

        req = getattr(self.app, "setup_request", None) or {}
        self.target: Path | None = req.get("target")
        self.welcome: str = req.get("welcome", "")
        self.wizard = SetupWizard(target=self.target, discover=self._find)
        if self.target is not None and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.target.stem):
            self.wizard.meta["name"] = self.target.stem
        self.step = 0
        self.issues: list = []
        self.discovering = False
        self.discovery_s: float | None = None
        self.discovery_notes: dict[str, str] = {}
        self.written = None  # the LoadedProfile once written
        self._validate_timer = None
        self._touched: set = set()  # fields the person changed (their messages show while typing)
        self._loading = True  # widgets being filled in: their change events are not answers
        self._steps_mounting = False
        self.steps_ready = False  # steps 2-4 mounted (after the first paint)

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield TopBar(id="setup-top")
        yield Static(id="setup-steps")
        with ContentSwitcher(initial="step-sources", id="setup-body"):
            with VerticalScroll(id="step-sources", classes="setup-step"):
                yield Static(escape(self.welcome), id="setup-welcome")
                yield Static(id="setup-found")
                yield Static(id="setup-notes")
                yield Static(id="setup-fallback")
                yield _field("add by address", Input(placeholder="TCPIP::HOST::INSTR, TCPIP::HOST::PORT::SOCKET, GPIB0::N::INSTR, ASRL…, PTD HOST:PORT", compact=True, id="setup-address"),
                             "Enter asks it", row_id="setup-address-row")
                yield Vertical(id="setup-offers")
                yield _field("metric from", Select([], allow_blank=True, compact=True, id="setup-primary"), "the source MLPerf's metric uses", row_id="setup-primary-row")
        yield Static(id="setup-issues")
        with Horizontal(id="setup-buttons"):
            yield Button("‹ Back (esc)", id="setup-back", compact=True)
            yield Button("Next ›", id="setup-next", variant="primary", compact=True)
        yield KeyFooter()

    def _later_steps(self) -> list[VerticalScroll]:
        """Steps 2-4, hidden until step 1 is answered: ~20 inputs and selects that cost the
        first paint ~95 ms to build and style, so they are mounted once it is out."""
        w = self.wizard
        lg = w.loadgen
        workload = VerticalScroll(
            Static(escape(w.steps[1].help), classes="setup-help"),
            _field("load from", Select([("a built-in SUT under the real LoadGen", "loadgen"), ("your own harness (a command)", "command")], value="loadgen", allow_blank=False, compact=True, id="wl-type")),
            _field("SUT", Input(str(lg.get("sut") or ""), suggester=SuggestFromList(SUT_SUGGESTIONS), compact=True, id="wl-sut"), "matmul | null | sleep | python:MODULE:FUNCTION", row_id="row-sut"),
            _field("SUT options", Input("", placeholder="e.g. size=128 threads=0", compact=True, id="wl-sut-options"), "KEY=VALUE, separated by spaces", row_id="row-sut-options"),
            _field("command", Input("", placeholder="PROGRAM ARG ...", compact=True, id="wl-command"), "run as an argument list, never by a shell", row_id="row-command"),
            _field("LoadGen logs in", Input("", placeholder="folder", compact=True, id="wl-logs"), "where your harness writes them", row_id="row-logs"),
            _field("scenario", Select([(s, s) for s in SCENARIOS], value=lg.get("scenario") or "Offline", allow_blank=False, compact=True, id="wl-scenario")),
            _field("duration (s)", Input(f"{lg.get('duration_s')}", compact=True, id="wl-duration"), "MLPerf submissions need 600"),
            _field("target QPS", Input(str(lg.get("target_qps", "auto")), compact=True, id="wl-qps"), "auto = measured from the SUT first", row_id="row-qps"),
            _field("latency (ms)", Input(str(lg.get("expected_latency_ms", "auto")), compact=True, id="wl-latency"), "expected per query; auto = measured", row_id="row-latency"),
            _field("p99 bound (ms)", Input("100", compact=True, id="wl-bound"), "Server: the latency bound", row_id="row-bound"),
            id="step-workload", classes="setup-step")
        procedure = VerticalScroll(
            Static(escape(w.steps[2].help), classes="setup-help"),
            _field("idle (s)", Input(f"{w.procedure.get('idle_s')}", compact=True, id="pr-idle"), "idle baseline before ranging"),
            _field("ranging", TickBox("ranging pass first", value=bool(w.procedure.get("ranging", True)), compact=True, id="pr-ranging"), "MLPerf requires it"),
            _field("settle (s)", Input("", placeholder="none", compact=True, id="pr-settle"), "pause after setting ranges"),
            id="step-procedure", classes="setup-step")
        save = VerticalScroll(
            Static(escape(w.steps[3].help), classes="setup-help"),
            _field("bench name", Input(str(w.meta["name"]), compact=True, id="meta-name"), "letters, digits, _ . -"),
            _field("description", Input("", placeholder="optional", compact=True, id="meta-description")),
            _field("recordings in", Input(str(w.meta["recordings"]), compact=True, id="meta-recordings"), "folder for the run bundles"),
            Static(id="setup-path"),
            Static(id="setup-preview"),
            id="step-save", classes="setup-step")
        steps = [workload, procedure, save]
        for step in steps:  # the switcher hides what it holds when it mounts, not what comes later
            step.display = False
        return steps

    def on_mount(self) -> None:
        self._show_step()
        self.action_discover(after_first_paint=True)
        self.call_after_refresh(self._filled)
        self._after_first_paint(lambda: self.run_worker(self._mount_later_steps(), group="setup-steps"))

    def _after_first_paint(self, fn) -> None:
        """`fn` once the console's first frame is out (LabConsole.after_first_paint), else now."""
        later = getattr(self.app, "after_first_paint", None)
        if later is not None:
            later(fn)
        else:
            fn()

    async def _mount_later_steps(self) -> None:
        self._steps_mounting = True  # their fields' first change events are not answers
        await self.query_one("#setup-body", ContentSwitcher).mount_all(self._later_steps())
        self._sync_workload_fields()
        self.call_after_refresh(self._later_steps_filled)

    def _later_steps_filled(self) -> None:
        self._steps_mounting = False
        self.steps_ready = True

    def _filled(self) -> None:
        if not self.discovering:
            self._loading = False

    def on_screen_resume(self) -> None:
        if self.is_attached:
            self._show_step()

    # --- steps ---------------------------------------------------------------------------------
    @property
    def step_key(self) -> str:
        return self.wizard.steps[self.step].key

    def _show_step(self) -> None:
        steps = self.wizard.steps
        parts = []
        for i, st in enumerate(steps):
            if i == self.step:
                parts.append(f"[b reverse] {i + 1} {st.title} [/]")
            elif i < self.step:
                parts.append(f"[green]✔ {st.title}[/]")
            else:
                parts.append(f"[dim]{i + 1} {st.title}[/]")
        self.query_one("#setup-steps", Static).update(" › ".join(parts))
        self.query_one("#setup-body", ContentSwitcher).current = f"step-{self.step_key}"
        self._show_top()
        last = self.step == len(steps) - 1
        nxt = self.query_one("#setup-next", Button)
        nxt.label = "Write the profile" if last else f"Next: {steps[self.step + 1].title} ›"
        nxt.refresh(layout=True)
        back = self.query_one("#setup-back", Button)
        back.label = "‹ Leave setup" if self.step == 0 else "‹ Back"
        back.refresh(layout=True)
        if self.step_key == "save":
            self._show_preview()
        self._show_issues(self.issues)
        self.call_after_refresh(self._focus_step)

    def _show_top(self) -> None:
        steps = self.wizard.steps
        self.query_one("#setup-top", TopBar).update(
            f"[b]SETUP[/]  step {self.step + 1} of {len(steps)}: {steps[self.step].title}  [dim]writes {escape(str(self.wizard.path))}[/]"
        )

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("discover", "focus_address"):
            return self.step == 0  # looking again belongs to the sources step
        return True

    def _focus_step(self) -> None:
        if not (self.is_attached and self.is_current):
            return  # left (or being replaced) before this ran
        first = {"sources": None, "workload": "#wl-sut", "procedure": "#pr-idle", "save": "#meta-name"}[self.step_key]
        if first is not None:
            self.query_one(first).focus()
        else:
            picks = [c for c in self.query(".offer-pick").results(Checkbox) if not c.disabled]
            if picks:
                picks[0].focus()

    def action_next(self) -> None:
        if self.discovering and self.step_key == "sources":
            self.notify("still looking for meters and devices...", timeout=3)
            return
        if not self.steps_ready:  # a fraction of a second after the first paint
            self.notify("one moment: the next steps are being laid out", timeout=2)
            return
        issues = self.validate_step()
        if issues:
            self.notify("Fix the answers marked in red first", severity="warning", timeout=4)
            return
        if self.step < len(self.wizard.steps) - 1:
            self.step += 1
            self.issues = []
            self._show_step()
            self.refresh_bindings()
        else:
            self.save()

    def action_back(self) -> None:
        if self.step == 0:
            self.app.leave_setup()
            return
        self.step -= 1
        self.issues = []
        self._show_step()
        self.refresh_bindings()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "setup-next":
            self.action_next()
        elif event.button.id == "setup-back":
            self.action_back()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "setup-address":
            self.add_address(event.value)
            return
        self.action_next()  # Enter in a field: this step is answered

    # --- validation as you go -----------------------------------------------------------------------
    def _changed(self, widget=None) -> None:
        if self._loading or self._steps_mounting or (self.discovering and self.step_key == "sources"):
            return
        if widget is not None:
            self._touched.add(widget)
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(VALIDATE_AFTER_S, lambda: self.validate_step(all_issues=False))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "setup-address":
            if event.input.has_class("offer-name"):
                self._refresh_primary()
            self._changed(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("wl-type", "wl-scenario"):
            self._sync_workload_fields()
        self._changed(event.select)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.has_class("offer-pick"):
            self._refresh_primary()
        self._changed(event.checkbox)

    def validate_step(self, all_issues: bool = True) -> list:
        """Give this step's answers to the wizard; show (and return) what the loader says about them.

        While typing (`all_issues` False) a message about a field not answered yet waits: a blank
        command line is not a mistake until the person says the step is done (Next)."""
        if self._validate_timer is not None:
            self._validate_timer.stop()
            self._validate_timer = None
        key = self.step_key
        try:
            issues = {"sources": self._apply_sources, "workload": self._apply_workload, "procedure": self._apply_procedure, "save": self._apply_meta}[key]()
        except ValueError as exc:  # an answer the form itself cannot read (e.g. SUT options)
            issues = [str(exc)]
        self.issues = issues
        if not all_issues:
            issues = [i for i in issues if (w := self._widget_for(i)) is None or w in self._touched]
        self._show_issues(issues)
        if key == "save":
            self._show_preview()
            self._show_top()
        return issues

    def _show_issues(self, issues: list) -> None:
        box = self.query_one("#setup-issues", Static)
        for w in self.query(".-invalid"):
            w.remove_class("-invalid")
        if not issues:
            box.update("")
            box.display = False
            return
        lines = []
        for i in issues:
            lines.append(f"[red]✘[/] {escape(str(i))}")
            widget = self._widget_for(i)
            if widget is not None:
                widget.add_class("-invalid")
        box.update("\n".join(lines))
        box.display = True

    def _widget_for(self, issue: Any):
        path = getattr(issue, "path", "")
        if not path:
            return None
        m = re.match(r"sources\[(\d+)\]\.?(\w*)", path)
        if m:
            rows = self._picked_rows()
            i = int(m.group(1))
            if i < len(rows):
                sel = {"name": ".offer-name", "scope": ".offer-scope"}.get(m.group(2))
                return rows[i].query_one(sel) if sel else rows[i]
            return None
        for prefix, wid in FIELD_WIDGETS.items():
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                return self.query_one(f"#{wid}")
        return None

    # --- answers -> wizard -------------------------------------------------------------------------
    def _picked_rows(self) -> list[OfferRow]:
        # rows being replaced (after an address was added) may have lost their children already
        return [r for r in self.query(OfferRow) if r.query(Checkbox) and r.picked]

    def _apply_sources(self) -> list:
        w = self.wizard
        rows = self._picked_rows()
        if not rows:
            return ["pick at least one source: the simulated bench works without hardware"]
        w.sources.clear()
        for row in rows:
            try:
                issues = w.add_source(row.offer.key, name=row.source_name or None, scope=row.scope or None)
            except WizardError as exc:
                return [str(exc)]
            if issues:  # about this row: sources[i] is the i-th ticked row
                return issues
        if len(w.sources) > 1:
            primary = self.query_one("#setup-primary", Select).value
            if isinstance(primary, str):
                w.set_primary(primary)
        return w.issues("sources")

    def _apply_workload(self) -> list:
        v = self._values()
        kind = v["wl-type"]
        scenario = v["wl-scenario"]
        # A blank answer is given as blank (the loader says what is missing), never as "keep the last one".
        fields: dict[str, Any] = {"type": kind, "scenario": scenario, "duration_s": v["wl-duration"] or ""}
        if kind == "command":
            fields.update(command=v["wl-command"] or "", loadgen_logs=v["wl-logs"] or "")
        else:
            opts = v["wl-sut-options"] or ""
            fields.update(sut=v["wl-sut"] or "", sut_options=parse_key_values(opts.replace(",", " ").split(), "SUT options") if opts.strip() else {})
            if scenario in ("Offline", "Server"):
                fields["target_qps"] = v["wl-qps"] or "auto"
            else:
                fields["expected_latency_ms"] = v["wl-latency"] or "auto"
            if scenario == "Server":
                fields["latency_bound_ms"] = v["wl-bound"] or ""
            else:
                self.wizard.loadgen.pop("latency_bound_ms", None)  # only Server has one
        return self.wizard.set_workload(**fields)

    def _apply_procedure(self) -> list:
        v = self._values()
        settle = v["pr-settle"]
        if settle is None:
            self.wizard.procedure.pop("settle_s", None)  # cleared: no settling pause
        return self.wizard.set_procedure(idle_s=v["pr-idle"] or "", ranging=self.query_one("#pr-ranging", Checkbox).value, settle_s=settle)

    def _apply_meta(self) -> list:
        v = self._values()
        return self.wizard.set_profile(name=v["meta-name"] or "", description=v["meta-description"] or "", recordings=v["meta-recordings"] or "")

    def _values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for inp in self.query(Input):
            if inp.id:
                out[inp.id] = _blank_none(inp.value)
        for sel in self.query(Select):
            if sel.id:
                out[sel.id] = sel.value if isinstance(sel.value, str) else None
        return out

    def _sync_workload_fields(self) -> None:
        kind = self.query_one("#wl-type", Select).value
        scenario = self.query_one("#wl-scenario", Select).value
        builtin = kind != "command"
        shown = {
            "row-sut": builtin,
            "row-sut-options": builtin,
            "row-command": not builtin,
            "row-logs": not builtin,
            "row-qps": builtin and scenario in ("Offline", "Server"),
            "row-latency": builtin and scenario in ("SingleStream", "MultiStream"),
            "row-bound": builtin and scenario == "Server",
        }
        for rid, show in shown.items():
            self.query_one(f"#{rid}").display = show

    def _refresh_primary(self) -> None:
        rows = self._picked_rows()
        sel = self.query_one("#setup-primary", Select)
        row = self.query_one("#setup-primary-row")
        row.display = len(rows) > 1
        names = [r.source_name for r in rows if r.source_name]
        current = sel.value if isinstance(sel.value, str) else None
        loading, self._loading = self._loading, True
        try:
            sel.set_options([(n, n) for n in names])
            if names:
                pick = current if current in names else next((r.source_name for r in rows if r.scope in ("wall", "system") and r.source_name), names[0])
                sel.value = pick
        finally:
            self._loading = loading

    def _show_preview(self) -> None:
        w = self.wizard
        self.query_one("#setup-path", Static).update(f"writes [b]{escape(str(w.path))}[/]; it loads as written and you can edit it later")
        if w.sources:
            from rich.syntax import Syntax  # pygments: loaded when first shown, not at start

            self.query_one("#setup-preview", Static).update(Syntax(w.text(), "yaml", theme="ansi_dark", background_color="default", word_wrap=False))

    # --- a meter by its address (a worker thread) ----------------------------------------------------
    def action_focus_address(self) -> None:
        self.query_one("#setup-address", Input).focus()

    def add_address(self, text: str) -> None:
        """Ask the instrument at a typed address for its identity; offered (and ticked) when it answers."""
        address = text.strip()
        if not address:
            return
        if discovery.address_kind(address) is None:
            self.notify(f"{address!r} is not an address: a VISA resource (TCPIP::HOST::INSTR, TCPIP::HOST::PORT::SOCKET, GPIB0::N::INSTR, ASRL...) or a PTDaemon HOST:PORT",
                        severity="error", timeout=8)
            return
        if self.discovering:
            self.notify("still looking for meters and devices...", timeout=3)
            return
        self.discovering = True
        self.query_one("#setup-found", Static).update(f"[cyan]Asking {escape(address)} for its identity...[/]")
        self._probe_address(address)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup-discover")
    def _probe_address(self, address: str) -> None:
        offer = self.wizard.add_address(address)
        self.app.call_from_thread(self._address_answered, offer)

    def _address_answered(self, offer) -> None:
        if offer.usable:  # the meter asked for replaces the simulated bench ticked for want of one
            for row in self.query(OfferRow):
                if row.offer.kind == "simulated" and not any(o.usable for o in self.wizard.found if o is not offer):
                    row.query_one(Checkbox).value = False
        self._discovered(self.wizard.offers(), self.discovery_notes, self.discovery_s or 0.0)
        if offer.usable:
            self.query_one("#setup-address", Input).value = ""
            self.notify(f"found {offer.label}", timeout=8)
        else:
            self.notify(f"nothing usable at {offer.address}: {offer.detail or offer.status}", severity="error", timeout=10)

    # --- discovery (a worker thread) ------------------------------------------------------------------
    def action_discover(self, after_first_paint: bool = False) -> None:
        if self.discovering:
            return

        hints: dict[str, Any] = {}
        self.discovering = True
        self.query_one("#setup-found", Static).update("[cyan]Looking for meters and devices (GPUs, RAPL, VISA and serial meters, PTDaemon, LPM01A)...[/]")
        if after_first_paint:  # a new user's first screen: the search's imports wait for the first frame
            self._after_first_paint(lambda: self._discover(hints))
        else:
            self._discover(hints)

    def _find(self, hints: dict[str, Any]) -> list:
        """The wizard's discovery: every driver's, keeping why each found nothing (to say so)."""
        result = discovery.discover_everything(hints)
        self._notes = dict(result.notes)
        return result.found

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup-discover")
    def _discover(self, hints: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self._notes: dict[str, str] = {}
        offers = self.wizard.discover(hints)
        self.app.call_from_thread(self._discovered, offers, dict(self._notes), time.perf_counter() - t0)

    def _discovered(self, offers: list, notes: dict[str, str], seconds: float) -> None:
        w = self.wizard
        self.discovering = False
        self.discovery_s = seconds
        self.discovery_notes = notes
        previous = {r.offer.key: (r.picked, r.source_name, r.scope) for r in self.query(OfferRow)}
        usable_finds = [o for o in w.found if o.usable]
        lines = []
        if w.found:
            lines.append(f"[b]Found {len(w.found)}[/] in {seconds:.1f} s: tick the ones to record and say what each measures.")
        else:
            lines.append(f"[b]Nothing attached was found[/] (looked for {seconds:.1f} s): no meter, GPU, RAPL domain or PTDaemon answered.")
        if w.discovery_note:
            lines.append(f"[yellow]{escape(w.discovery_note)}[/]")
        self.query_one("#setup-found", Static).update("\n".join(lines))
        # Why each kind found nothing, one line each (the whole text is in `labconsole discover`).
        self.query_one("#setup-notes", Static).update("\n".join(f"· {escape(why)}" for _, why in sorted(notes.items())))
        self.query_one("#setup-notes", Static).display = bool(notes)
        if w.nothing_attached:
            fallback = "You can still measure without hardware: the [b]simulated bench[/] (ticked) or an [b]emulator[/] of a real instrument."
        else:
            fallback = "[dim]Also available without hardware: the simulated bench and the emulators, at the end of the list.[/]"
        self.query_one("#setup-fallback", Static).update(fallback)
        box = self.query_one("#setup-offers", Vertical)
        rows = []
        used: set[str] = set()
        for o in offers:
            if o.key in previous:
                picked, name, scope = previous[o.key]
            else:
                picked = o.usable and (o.kind == "found" or (o.kind == "simulated" and not usable_finds))
                name, scope = o.suggested_name, o.suggested_scope
            base, n = name, 2
            while name in used:  # two finds of one driver: wall, wall-2
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            rows.append(OfferRow(o, picked, name, scope))
        self._loading = True

        async def rebuild() -> None:  # the old rows go first (again after an address was added)
            await box.remove_children()
            await box.mount_all(rows)
            self.call_after_refresh(self._after_offers)

        self.run_worker(rebuild(), group="setup-offers", exclusive=True, exit_on_error=False)

    def _after_offers(self) -> None:
        self._loading = False
        self._refresh_primary()
        if self.step == 0:
            self._focus_step()

    # --- writing (a worker thread) ---------------------------------------------------------------------
    def save(self, force: bool = False) -> None:
        self.query_one("#setup-next", Button).disabled = True
        self._write(force)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup-write")
    def _write(self, force: bool) -> None:
        w = self.wizard
        path = w.path
        try:
            if path.exists() and not force:
                self.app.call_from_thread(self._ask_overwrite, path)
                return
            loaded = w.write(force=force)
        except WizardError as exc:
            self.app.call_from_thread(self._write_failed, exc.issues or [str(exc)])
            return
        except (ProfileError, OSError) as exc:  # could not write, or it does not load back
            self.app.call_from_thread(self._write_failed, [str(exc)])
            return
        self.app.call_from_thread(self._written, loaded)

    def _ask_overwrite(self, path: Path) -> None:
        self.query_one("#setup-next", Button).disabled = False

        def answer(yes: bool | None) -> None:
            if yes:
                self.save(force=True)
            else:
                self.notify(f"nothing written: {escape(str(path))} is kept. Choose another bench name to write a new profile.", severity="warning", timeout=8)
                self.query_one("#meta-name", Input).focus()

        self.app.push_screen(ConfirmScreen(f"[b]{escape(str(path))}[/] already exists.\n\nOverwrite it with this profile? Its current content is lost.", yes="Overwrite"), answer)

    def _write_failed(self, issues: list) -> None:
        self.query_one("#setup-next", Button).disabled = False
        self.issues = issues
        self._show_issues(issues)
        self.notify("The profile was not written", severity="error")

    def _written(self, loaded) -> None:
        self.query_one("#setup-next", Button).disabled = False
        self.written = loaded
        self.issues = []
        self._show_issues([])
        path = escape(str(loaded.path))
        self.query_one("#setup-path", Static).update(f"[green]✔ wrote {path}[/]: it loaded as written. Next time: [b]labconsole tui --profile {path}[/]")
        wl = loaded.profile.workload
        text = (
            f"[green]✔[/] Wrote [b]{path}[/]; it loads as written.\n\n"
            f"Open it on the Bench now? A first run measures idle {loaded.profile.procedure.idle_s:g} s, then ranging and testing "
            f"({wl.scenario}, {wl.duration_s:g} s each) and seals a bundle under {escape(loaded.profile.recordings)}/."
        )
        choices = [("run", "Open and start a first run"), ("bench", "Open on the Bench"), ("stay", "Stay here")]

        def chosen(what: str | None) -> None:
            if what in ("run", "bench"):
                self.app.open_profile(loaded, start_run=what == "run")

        self.app.push_screen(ChoiceScreen(text, choices), chosen)
