"""Recordings: the bundles under the profile's recordings folder (and MLPerf folders opened by path).

Newest first, with scenario, status, metric, check counts and the operator's note, in labelled
columns that fit 80 columns. `s` sorts by the next column (`S` reverses; a click on a header
sorts by it), `/` filters as you type, `n` edits the note, `d` deletes (after a yes; never a
run being recorded). Listing reads only each bundle's run.json (fast); the metric and the
checks (which read every sample and hash every file) are computed afterwards in a worker
thread, one row at a time, and filled in as they come; a run being recorded is shown as such
and not checked until it is sealed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from labconsole.tui.format import escape, status_markup, verdict_markup
from labconsole.tui.widgets import ConfirmScreen, ConsoleScreen, KeyFooter, TopBar

# (key, header, width); the note takes what is left of the line.
COLUMNS = (
    ("mark", " ", 1),
    ("start", "Started UTC", 11),
    ("profile", "Profile", 9),
    ("scenario", "Scenario", 8),
    ("status", "Status", 9),
    ("metric", "Metric", 8),
    ("checks", "Checks P/W/F", 13),
)
SORTABLE = ("start", "profile", "scenario", "status", "metric", "checks", "note")
SHORT_SCENARIO = {"SingleStream": "Single", "MultiStream": "Multi"}
_SEVERITY = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _metric_value(metric: str) -> float:
    m = re.match(r"\s*([-+0-9.eE]+)", metric or "")
    try:
        return float(m.group(1)) if m else math.inf
    except ValueError:
        return math.inf


class NoteScreen(ModalScreen):
    """One line of text for a recording's note: Enter keeps it, esc leaves it as it was."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, note: str):
        super().__init__()
        self.recording, self.note = name, note

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(f"Note for [b]{escape(self.recording)}[/]  [dim]Enter keeps it · an empty note removes it · esc cancels[/]", id="confirm-question")
            yield Input(value=self.note, id="note-input", compact=True)

    def on_mount(self) -> None:
        self.query_one("#note-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RecordingsScreen(ConsoleScreen):
    BINDINGS = [
        Binding("enter", "open_results", "Results", show=True),
        Binding("p", "replay", "Replay"),
        Binding("m", "mark", "Mark A/B"),
        Binding("equals_sign", "compare", "Compare", key_display="="),
        Binding("s", "sort", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("n", "note", "Note"),
        Binding("d", "delete", "Delete"),
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
        self.sort_key = "start"
        self.sort_reverse = True  # newest first
        self.filter_text = ""
        self._summaries: dict[tuple[str, str], dict] = {}  # (path, status) -> headline, kept across reloads
        self._select_key: str | None = None  # a folder just opened by path: highlight it
        self._own_dialog = False  # a note or delete dialog of this screen is open
        self._note_width = 20

    def compose(self) -> ComposeResult:
        yield TopBar(id="rec-top")
        yield Input(placeholder="/ filter: type to show only the recordings whose text matches", id="rec-filter", compact=True)
        yield DataTable(id="rec-table", cursor_type="row")
        yield Static(id="rec-detail")
        yield Input(placeholder="open a bundle or an MLPerf result folder by path, then Enter", id="rec-path", compact=True)
        yield KeyFooter()

    @property
    def folder(self) -> Path:
        return Path(self.app.loaded.profile.recordings).expanduser()

    def on_mount(self) -> None:
        t = self.query_one("#rec-table", DataTable)
        for key, header, width in COLUMNS:
            t.add_column(header, key=key, width=width)
        t.add_column("Note", key="note", width=self._note_width_for(self.app.size.width))
        self._headers()
        self.set_interval(2.0, self._watch_running)

    def _note_width_for(self, width: int) -> int:
        # each column is padded by one cell each side; a scroll bar may take two more
        used = sum(w + 2 for _, _, w in COLUMNS) + 2 + 2
        return max(4, width - used)

    def on_resize(self) -> None:
        tables = self.query("#rec-table")
        if not tables:  # before the first compose
            return
        t = tables.first(DataTable)
        col = t.columns.get("note")  # type: ignore[call-overload]
        want = self._note_width_for(self.size.width)
        if col is not None and col.width != want:
            col.width = want
            self._note_width = want
            self._show_rows()

    def on_screen_resume(self) -> None:
        if self._own_dialog:  # back from this screen's note or delete dialog: its worker updates the rows
            self._own_dialog = False
            return
        self.action_reload()
        self.query_one("#rec-table", DataTable).focus()

    class Listed(Message):
        def __init__(self, rows: list[dict]):
            super().__init__()
            self.rows = rows

    def action_reload(self) -> None:
        self.query_one("#rec-top", TopBar).update(f"[b]RECORDINGS[/]  {escape(str(self.folder))}  [dim]reading...[/]")
        self._scan(list(self.app.extra_recordings), self.folder, dict(self._summaries))

    @work(thread=True, exclusive=True, exit_on_error=False, group="recordings")
    def _scan(self, extra_paths: list[str], folder: Path, known: dict) -> None:
        """List (run.json only), post the rows, then summarise each row (slow) and post that.
        A row already summarised with the same status is not read again; a run being recorded
        is not checked (its checks would fail on what is not written yet)."""
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
            if r["status"] == "running" or (key, r["status"]) in known:
                continue
            try:
                self.post_message(self.Summary(key, headline(Path(key))))
            except Exception as exc:  # noqa: BLE001 - a broken recording is a row that says so
                self.post_message(self.Summary(key, None, f"{type(exc).__name__}: {exc}"))

    def _watch_running(self) -> None:
        """A run being recorded ends while this screen is shown: list again to show its seal."""
        if any(r.get("status") == "running" for r in self.rows.values()):
            self._recheck_running([k for k, r in self.rows.items() if r.get("status") == "running"])

    @work(thread=True, exclusive=True, exit_on_error=False, group="recordings-running")
    def _recheck_running(self, keys: list[str]) -> None:
        from labconsole.bundle.catalogue import is_running

        if not all(is_running(Path(k)) for k in keys):
            self.app.call_from_thread(self.action_reload)

    def on_recordings_screen_listed(self, msg: "RecordingsScreen.Listed") -> None:
        self.rows.clear()
        for r in msg.rows:
            key = str(r["path"])
            if key in self.rows:
                continue
            known = self._summaries.get((key, r["status"]))
            self.rows[key] = {**r, **(known or {})}
            if r["status"] != "running" and known is None:
                self.rows[key].setdefault("pending", True)
        self.marks = [k for k in self.marks if k in self.rows]
        self._show_rows(select=self._select_key)
        self._select_key = None

    def on_recordings_screen_summary(self, msg: "RecordingsScreen.Summary") -> None:
        if msg.key not in self.rows:
            return
        row = self.rows[msg.key]
        row.pop("pending", None)
        if msg.summary is None:
            row["error"] = msg.error
            row["checks"] = "fail"
            row["metric"] = "-"
        else:
            summary = dict(msg.summary)
            if summary.get("status") == "running":  # run.json's word; the catalogue knows running from unsealed
                summary.pop("status")
            # the status this row was listed with keys the cache (a bundle sealed since is read again)
            self._summaries[(msg.key, row["status"])] = summary
            row.update(summary)
        self._update_row(msg.key)
        self._show_detail()

    # --- the table ------------------------------------------------------------------------------
    def _cells(self, key: str) -> list[str | Text]:
        r = self.rows[key]
        start = (r.get("start") or "").replace("T", " ").rstrip("Z")
        start = start[5:16] if len(start) >= 16 else (start or Path(key).name)[:11]
        status = r.get("status") or "?"
        if status == "running":
            status_cell = "[cyan]● running[/]"
            metric, checks = "[dim]-[/]", "[cyan]recording[/]"
        else:
            status_cell = status_markup(_fit(status, 9))
            if r.get("pending"):
                metric, checks = "[dim]...[/]", "[dim]...[/]"
            elif r.get("error"):
                metric, checks = "-", verdict_markup("fail", "unreadable")
            else:
                c = r.get("counts") or {}
                metric = escape(_fit(str(r.get("metric", "-")), 8))
                verdict = r.get("checks", "skip")
                checks = verdict_markup(verdict, f"{verdict.upper()} {c.get('pass', 0)}/{c.get('warn', 0)}/{c.get('fail', 0)}")
        tag = ("A", "B")[self.marks.index(key)] if key in self.marks else ""
        scen = SHORT_SCENARIO.get(r.get("scenario") or "?", r.get("scenario") or "?")
        note = Text(_fit(r.get("note") or "", self._note_width), style="italic")
        return [f"[b reverse]{tag}[/]" if tag else "", escape(start), escape(_fit(r.get("profile") or "?", 9)), escape(_fit(scen, 8)), status_cell, metric, checks, note]

    def _visible(self) -> list[str]:
        words = self.filter_text.lower().split()
        keys = []
        for key, r in self.rows.items():
            hay = " ".join(str(r.get(f) or "") for f in ("start", "profile", "scenario", "status", "metric", "note", "checks")) + " " + key
            if all(w in hay.lower() for w in words):
                keys.append(key)
        return sorted(keys, key=self._sort_value, reverse=self.sort_reverse)

    def _sort_value(self, key: str):
        r = self.rows[key]
        k = self.sort_key
        if k == "metric":
            return (_metric_value(str(r.get("metric", ""))), key)
        if k == "checks":
            c = r.get("counts") or {}
            return (_SEVERITY.get(r.get("checks", "skip"), 4), -c.get("fail", 0), -c.get("warn", 0), key)
        return (str(r.get(k) or "").lower(), str(r.get("start") or ""), key)

    def _headers(self) -> None:
        t = self.query_one("#rec-table", DataTable)
        arrow = "▼" if self.sort_reverse else "▲"
        for key, col in t.columns.items():
            base, width = next(((h, w) for k, h, w in COLUMNS if k == key.value), ("Note", self._note_width))
            if key.value == self.sort_key:  # the arrow always shows, in place of a last letter if need be
                base = (base if len(base) < width else base[: max(0, width - 1)]) + arrow
            col.label = Text(base, style="bold" if key.value == self.sort_key else "")
        t.refresh()

    def _show_rows(self, select: str | None = None) -> None:
        t = self.query_one("#rec-table", DataTable)
        keep = select or self._selected()
        t.clear()
        visible = self._visible()
        for key in visible:
            t.add_row(*self._cells(key), key=key)
        if visible:
            row = 0 if keep is None or str(keep) not in visible else visible.index(str(keep))
            t.move_cursor(row=row)
        n, shown = len(self.rows), len(visible)
        what = f"{n} recording{'s' if n != 1 else ''}" if shown == n else f"{shown} of {n} shown (filter: {escape(self.filter_text)})"
        self.query_one("#rec-top", TopBar).update(f"[b]RECORDINGS[/]  {what}  [dim]{escape(str(self.folder))} · Enter results · s sort · / filter · n note · d delete[/]")
        self._show_detail()

    def _update_row(self, key: str) -> None:
        t = self.query_one("#rec-table", DataTable)
        if key not in self._visible():
            return
        try:
            for (col, *_), cell in zip((*COLUMNS, ("note",)), self._cells(key)):
                t.update_cell(key, col, cell)
        except Exception:  # noqa: BLE001 - the row was filtered out meanwhile
            self._show_rows()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_results()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key not in SORTABLE:
            return
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key == "start"
        self._headers()
        self._show_rows()

    def action_sort(self) -> None:
        """Sort by the next column (newest first for the start time, A to Z or best first otherwise)."""
        i = SORTABLE.index(self.sort_key)
        self.sort_key = SORTABLE[(i + 1) % len(SORTABLE)]
        self.sort_reverse = self.sort_key == "start"
        self._headers()
        self._show_rows()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._headers()
        self._show_rows()

    def action_focus_filter(self) -> None:
        self.query_one("#rec-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "rec-filter":
            self.filter_text = event.value.strip()
            self._show_rows()

    def _selected(self) -> Path | None:
        t = self.query_one("#rec-table", DataTable)
        if not t.row_count or t.cursor_row is None:
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
            if self.rows:
                detail.update(f"[dim]nothing matches the filter {escape(self.filter_text)!s}: / changes it[/]")
            else:
                detail.update(f"[dim]no recordings in {escape(str(self.folder))} yet: run one (r), or open a folder by path (f)[/]")
            return
        row = self.rows.get(str(p), {})
        extra = f"[red]{escape(row['error'])}[/]  " if row.get("error") else ""
        if row.get("status") == "running":
            extra += "[cyan]being recorded: checked once it is sealed[/]  "
        elif row.get("status") == "unsealed":
            extra += "[yellow]left unsealed (a crash?): labconsole recover PATH seals it[/]  "
        note = f"[i]{escape(row['note'])}[/]  " if row.get("note") else ""
        marks = ""
        if self.marks:
            names = " · ".join(f"{tag} {escape(Path(k).name)}" for tag, k in zip("AB", self.marks))
            marks = f"[b]{names}[/]" + ("  [dim]= compare[/]" if len(self.marks) == 2 else "  [dim]m marks B[/]") + "  "
        detail.update(f"{marks}{extra}{note}[dim]{escape(str(p))}[/]")

    # --- note and delete ------------------------------------------------------------------------
    def action_note(self) -> None:
        p = self._selected()
        if p is None:
            return
        row = self.rows.get(str(p), {})
        if row.get("profile") == "(opened by path)" and row.get("status") in ("MLPerf", "?"):
            self.notify("Notes are kept for labconsole bundles only: an MLPerf result folder is never written to", severity="warning")
            return

        def done(text: str | None) -> None:
            if text is not None:
                self._save_note(str(p), text)

        self._own_dialog = True
        self.app.push_screen(NoteScreen(p.name, row.get("note") or ""), done)

    @work(thread=True, exit_on_error=False, group="recordings-note")
    def _save_note(self, key: str, text: str) -> None:
        from labconsole.bundle.catalogue import CatalogueError, write_note

        try:
            kept = write_note(Path(key), text)
        except CatalogueError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self._note_saved, key, kept)

    def _note_saved(self, key: str, note: str) -> None:
        if key in self.rows:
            self.rows[key]["note"] = note
            self._update_row(key)
            self._show_detail()
        self.notify("note kept (next to the bundle, outside its checksums)" if note else "note removed", timeout=3)

    def action_delete(self) -> None:
        p = self._selected()
        if p is None:
            return
        row = self.rows.get(str(p), {})
        if row.get("status") == "running":
            self.notify("This run is being recorded: stop it first (x on the Run screen), then delete it", severity="error")
            return
        if row.get("profile") == "(opened by path)":
            self.notify("Opened by path: labconsole deletes only the recordings in its recordings folder", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(str(p))

        self._own_dialog = True
        self.app.push_screen(ConfirmScreen(f"Delete the recording [b]{escape(p.name)}[/] and its note?\n[dim]{escape(str(p))}[/]\nThis cannot be undone.", yes="Delete", no="Keep"), answered)

    @work(thread=True, exit_on_error=False, group="recordings-delete")
    def _delete(self, key: str) -> None:
        from labconsole.bundle.catalogue import CatalogueError, delete_recording

        try:
            delete_recording(Path(key))
        except CatalogueError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self._deleted, key)

    def _deleted(self, key: str) -> None:
        self.rows.pop(key, None)
        self.marks = [k for k in self.marks if k != key]
        self._show_rows()
        self.notify(f"deleted {Path(key).name}", timeout=3)

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
        visible = set(self._visible())
        for key in self.rows:
            if key in visible:
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
        if p is None:
            return
        if self.rows.get(str(p), {}).get("status") == "running":
            self.notify("This run is being recorded: r shows it live; its results come once it is sealed", severity="warning")
            return
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
        if event.input.id == "rec-filter":
            self.query_one("#rec-table", DataTable).focus()
            return
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
        self._select_key = text
        self.action_reload()
