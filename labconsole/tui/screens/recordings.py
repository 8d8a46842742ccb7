"""Recordings: the bundles under the profile's recordings folder (and MLPerf folders opened by path).

Newest first, with scenario, metric and check status. Listing reads only each bundle's
run.json (fast); the metric and the checks (which read every sample and hash every file)
are computed afterwards in a worker thread, one row at a time, and filled in as they come.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from labconsole.tui.format import escape, status_markup, verdict_markup
from labconsole.tui.widgets import TopBar


class RecordingsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open_results", "Results", show=True),
        Binding("p", "replay", "Replay"),
        Binding("m", "mark", "Mark A/B"),
        Binding("equals_sign", "compare", "Compare", key_display="="),
        Binding("f", "focus_path", "Open path"),
        Binding("f5", "reload", "Reload", show=False),
        Binding("escape", "leave_path", "Back", show=False),
    ]

    class Summary(Message):
        """A row's metric and checks, computed in the worker thread (posted, thread-safe)."""

        def __init__(self, key: str, summary: dict | None, error: str | None = None):
            super().__init__()
            self.key, self.summary, self.error = key, summary, error

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.marks: list[str] = []  # the recordings to compare, A then B
        self._select_first = False

    def compose(self) -> ComposeResult:
        yield TopBar(id="rec-top")
        yield DataTable(id="rec-table", cursor_type="row")
        yield Static(id="rec-detail")
        yield Input(placeholder="open a bundle or an MLPerf result folder by path, then Enter", id="rec-path", compact=True)
        yield Footer(compact=True, show_command_palette=False)

    @property
    def folder(self) -> Path:
        return Path(self.app.loaded.profile.recordings).expanduser()

    def on_mount(self) -> None:
        t = self.query_one("#rec-table", DataTable)
        t.add_column(" ", key="mark", width=1)
        t.add_column("Started (UTC)", key="start")
        t.add_column("Profile", key="profile")
        t.add_column("Scenario", key="scenario")
        t.add_column("Status", key="status")
        t.add_column("Metric", key="metric")
        t.add_column("Checks", key="checks")

    def on_screen_resume(self) -> None:
        self.action_reload()
        self.query_one("#rec-table", DataTable).focus()

    class Listed(Message):
        def __init__(self, rows: list[dict]):
            super().__init__()
            self.rows = rows

    def action_reload(self) -> None:
        self.query_one("#rec-top", TopBar).update(f"[b]RECORDINGS[/]  {escape(str(self.folder))}  [dim]reading...[/]")
        self._scan(list(self.app.extra_recordings), self.folder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="recordings")
    def _scan(self, extra_paths: list[str], folder: Path) -> None:
        """List (run.json only), post the rows, then summarise each row (slow) and post that."""
        # Deferred, as in every worker here: the readers and the checks are not needed for the first paint.
        from labconsole.bundle.catalogue import list_bundles, opened_row
        from labconsole.mlperf.summary import headline

        worker = get_current_worker()
        rows = [opened_row(Path(p)) for p in extra_paths] + list_bundles(folder)
        self.post_message(self.Listed(rows))
        for r in rows:
            if worker.is_cancelled:
                return
            key = str(r["path"])
            try:
                self.post_message(self.Summary(key, headline(Path(key))))
            except Exception as exc:  # noqa: BLE001 - a broken recording is a row that says so
                self.post_message(self.Summary(key, None, f"{type(exc).__name__}: {exc}"))

    def on_recordings_screen_listed(self, msg: "RecordingsScreen.Listed") -> None:
        t = self.query_one("#rec-table", DataTable)
        keep = t.cursor_row
        t.clear()
        self.rows.clear()
        for r in msg.rows:
            key = str(r["path"])
            if key in self.rows:
                continue
            self.rows[key] = r
            start = r["start"].replace("T", " ").rstrip("Z")[:19] or r["path"].name[:19]
            t.add_row("", escape(start), escape(r["profile"]), escape(r["scenario"]), status_markup(r["status"]), "[dim]...[/]", "[dim]...[/]", key=key)
        self.marks = [k for k in self.marks if k in self.rows]
        self._show_marks()
        n = len(self.rows)
        self.query_one("#rec-top", TopBar).update(
            f"[b]RECORDINGS[/]  {escape(str(self.folder))}  [dim]{n} recording{'s' if n != 1 else ''}; Enter results · p replay · m mark two, = compare · f open a path[/]"
        )
        if n and self._select_first:
            t.move_cursor(row=0)
            self._select_first = False
        elif n and keep is not None:
            t.move_cursor(row=min(keep, n - 1))
        self._show_detail()

    def on_recordings_screen_summary(self, msg: "RecordingsScreen.Summary") -> None:
        t = self.query_one("#rec-table", DataTable)
        if msg.key not in self.rows:
            return
        row = self.rows[msg.key]
        if msg.summary is None:
            row["error"] = msg.error
            t.update_cell(msg.key, "metric", "-")
            t.update_cell(msg.key, "checks", verdict_markup("fail", "unreadable"), update_width=True)
        else:
            s = msg.summary
            row.update(s)
            c = s["counts"]
            t.update_cell(msg.key, "scenario", escape(s["scenario"]), update_width=True)
            t.update_cell(msg.key, "status", status_markup(s["status"]), update_width=True)
            t.update_cell(msg.key, "metric", escape(s["metric"]), update_width=True)
            t.update_cell(msg.key, "checks", verdict_markup(s["checks"], f"{s['checks'].upper()} {c['pass']}/{c['warn']}/{c['fail']}"), update_width=True)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_results()

    def _selected(self) -> Path | None:
        t = self.query_one("#rec-table", DataTable)
        if not self.rows or t.cursor_row is None:
            return None
        try:
            key = t.coordinate_to_cell_key((t.cursor_row, 0)).row_key.value
        except Exception:  # noqa: BLE001 - empty table
            return None
        return Path(key) if key else None

    def _show_detail(self) -> None:
        p = self._selected()
        detail = self.query_one("#rec-detail", Static)
        if p is None:
            detail.update(f"[dim]no recordings in {escape(str(self.folder))} yet: run one (r), or open a folder by path (f)[/]")
            return
        row = self.rows.get(str(p), {})
        extra = f"  [red]{escape(row['error'])}[/]" if row.get("error") else ""
        marks = ""
        if self.marks:
            names = " · ".join(f"{tag} {escape(Path(k).name)}" for tag, k in zip("AB", self.marks))
            marks = f"[b]{names}[/]" + ("  [dim]= compare[/]" if len(self.marks) == 2 else "  [dim]m marks B[/]") + "  "
        detail.update(f"{marks}[dim]{escape(str(p))}[/]{extra}")

    # --- compare two ----------------------------------------------------------------------------
    def action_mark(self) -> None:
        """Mark the highlighted recording as A (then B); again unmarks it. A third mark drops the oldest."""
        p = self._selected()
        if p is None:
            return
        key = str(p)
        if key in self.marks:
            self.marks.remove(key)
        else:
            self.marks.append(key)
            if len(self.marks) > 2:
                self.marks.pop(0)
        self._show_marks()
        if len(self.marks) == 2:
            self.notify("two marked: = compares them (A is the reference)", timeout=4)

    def _show_marks(self) -> None:
        t = self.query_one("#rec-table", DataTable)
        for key in self.rows:
            tag = ("A", "B")[self.marks.index(key)] if key in self.marks else ""
            t.update_cell(key, "mark", f"[b reverse]{tag}[/]" if tag else "")
        self._show_detail()

    def action_compare(self) -> None:
        if len(self.marks) < 2:
            need = "two recordings" if not self.marks else "one more recording"
            self.notify(f"Mark {need} with m first (MLPerf folders opened with f count too)", severity="warning")
            return
        self.app.show_compare(Path(self.marks[0]), Path(self.marks[1]))

    def action_open_results(self) -> None:
        p = self._selected()
        if p is not None:
            self.app.show_results(p)

    def action_replay(self) -> None:
        p = self._selected()
        if p is not None:
            self.app.start_replay(p)

    def action_focus_path(self) -> None:
        self.query_one("#rec-path", Input).focus()

    def action_leave_path(self) -> None:
        self.query_one("#rec-table", DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self._check_path(str(Path(text).expanduser()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="open-path")
    def _check_path(self, text: str) -> None:
        from labconsole.bundle.catalogue import not_a_recording

        self.app.call_from_thread(self._path_checked, text, not_a_recording(Path(text)))

    def _path_checked(self, text: str, error: str | None) -> None:
        if error:
            self.notify(error, severity="error")
            return
        if text not in self.app.extra_recordings:
            self.app.extra_recordings.insert(0, text)
        self.query_one("#rec-path", Input).value = ""
        self.query_one("#rec-table", DataTable).focus()
        self._select_first = True
        self.action_reload()
