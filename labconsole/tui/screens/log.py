"""The event log, full screen: every event of the run or replay on show, wrapped to the
terminal's width, scrollable, and copied (to the clipboard) or saved (to a file) in words.

It follows the same `LiveData` as the Run screen, so a run in progress keeps adding to it.
Saving writes in a worker thread (the console does no I/O on its loop) and says where.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Label, RichLog

from labconsole import events as ev
from labconsole.tui.format import event_markup
from labconsole.tui.widgets import KeyFooter, LiveData, TopBar


def event_lines(events) -> list[str]:
    """The events as markup lines, as the Run screen's log shows them (progress left out)."""
    return [event_markup(e, whole=True) for e in events if e.kind != ev.PROGRESS]


def plain_text(events) -> str:
    """The events as plain text, one line each (what is copied or saved)."""
    return "".join(Text.from_markup(m).plain + "\n" for m in event_lines(events))


def default_log_path(bundle: Path | None, recordings: Path) -> Path:
    """Beside the bundle (never inside it: a sealed bundle's manifest must stay true)."""
    if bundle is not None:
        return Path(bundle).parent / f"{Path(bundle).name}.events.txt"
    return Path(recordings) / "console-events.txt"


def write_log(path: Path, text: str) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


class LogScreen(Screen):
    """`l` on the Run screen: the whole event log. Esc or l goes back."""

    TICK_S = 0.25
    BINDINGS = [
        Binding("escape,l", "close", "Back"),
        Binding("c", "copy", "Copy all"),
        Binding("w", "save", "Save to file"),
        Binding("home", "top", "Top", show=False),
        Binding("end", "bottom", "End", show=False),
    ]

    def __init__(self, live: LiveData) -> None:
        super().__init__()
        self.live = live
        self._written = 0
        self._width = 0
        self.saved_to: Path | None = None

    def compose(self) -> ComposeResult:
        yield TopBar(id="log-top")
        yield RichLog(id="log-full", markup=True, wrap=True, min_width=1, max_lines=20000, auto_scroll=True)
        with Horizontal(id="log-save-row"):
            yield Label("save to", classes="field-label")
            yield Input(id="log-save-path", compact=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#log-save-row").display = False
        self._ticker = self.set_interval(self.TICK_S, self.tick)
        self.query_one("#log-full", RichLog).focus()
        self.call_after_refresh(self.tick)

    def _session_title(self) -> str:
        s = self.live.session
        return s.title if s is not None else "no run yet"

    def tick(self) -> None:
        s = self.live.session
        if s is not None and s is self.app.session:
            self.live.pull()  # a run in progress keeps adding (the Run screen catches up on return)
        log = self.query_one("#log-full", RichLog)
        width = log.scrollable_content_region.width
        if width and width != self._width:  # wrap to the width there is: write everything again
            self._width = width
            log.clear()
            self._written = 0
        events = self.live.events
        if self._written < len(events):
            for line in event_lines(events[self._written:]):
                log.write(line)
            self._written = len(events)
        n = len(events)
        where = f"  saved to {escape(str(self.saved_to))}" if self.saved_to else ""
        self.query_one("#log-top", TopBar).update(
            f"[b]EVENT LOG[/]  {escape(self._session_title())}  [dim]{n} events · ↑/↓ PgUp/PgDn Home/End scroll · c copy · w save · esc back[/]{where}"
        )
        if n == 0 and not log.lines:
            log.write("[dim]no events yet: start a run (r, then s) or replay a recording (o)[/]")

    def action_close(self) -> None:
        if self.query_one("#log-save-row").display:
            self.query_one("#log-save-row").display = False
            self.query_one("#log-full", RichLog).focus()
            return
        self.dismiss()

    def action_top(self) -> None:
        self.query_one("#log-full", RichLog).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one("#log-full", RichLog).scroll_end(animate=False)

    def action_copy(self) -> None:
        text = plain_text(self.live.events)
        self.app.copy_to_clipboard(text)
        n = text.count("\n")
        self.notify(f"copied {n} lines to the clipboard (through the terminal; if yours does not pass it on, w saves them to a file)", timeout=6)

    def action_save(self) -> None:
        row = self.query_one("#log-save-row")
        inp = self.query_one("#log-save-path", Input)
        s = self.live.session
        bundle = s.bundle_path() if s is not None else None
        if not inp.value:
            inp.value = str(default_log_path(bundle, Path(self.app.loaded.profile.recordings)))
        row.display = True
        inp.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-save-path":
            path = event.value.strip()
            if not path:
                self.notify("give a file path", severity="warning")
                return
            self._save(Path(path), plain_text(self.live.events))

    @work(thread=True, exclusive=True, group="save-log", exit_on_error=False)
    def _save(self, path: Path, text: str) -> None:
        try:
            where = write_log(path, text)
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"could not save the log to {path}: {exc.strerror or exc}", severity="error", timeout=8)
            return
        self.app.call_from_thread(self._saved, where, text.count("\n"))

    def _saved(self, where: Path, n: int) -> None:
        self.saved_to = where
        self.query_one("#log-save-row").display = False
        self.query_one("#log-full", RichLog).focus()
        self.notify(f"saved {n} lines to {where}", timeout=8)
        self.tick()
