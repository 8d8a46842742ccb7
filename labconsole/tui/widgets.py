"""Small pieces shared by the screens: the top bar, a confirmation dialog, live-data helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from rich.text import Text
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Static

from labconsole import events as ev
from labconsole.session.live import LiveSession, SeriesHistory, qps_over_phases
from labconsole.tui.format import si

if TYPE_CHECKING:
    import numpy as np

    from labconsole.tui.plot import Marker, Series

# The plots, the fleet's total and numpy load with the first LiveData pull (the Run and
# Calibrate screens): the console's first paint, the Bench screen, does without them.


class LiveText(Widget):
    """Text that changes on every tick, in a box of fixed size.

    `Static.update()` asks Textual for a new layout of the whole screen each time (measured:
    most of a frame's cost at 160x48); this only repaints its own region, and only when the
    text changed. Give it a fixed height (and width) in the stylesheet.
    """

    DEFAULT_CSS = "LiveText { height: 1; }"

    def __init__(self, text: str = "", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._markup = text

    @property
    def markup(self) -> str:
        return self._markup

    def update(self, markup: str) -> None:
        if markup != self._markup:
            self._markup = markup
            self.refresh()

    def render(self) -> Text:
        return Text.from_markup(self._markup, overflow="ellipsis")


def update_static(widget: Static, content: str) -> None:
    """`Static.update` only when the text changed (each update re-lays-out the screen)."""
    if getattr(widget, "_shown_text", None) != content:
        widget._shown_text = content
        widget.update(content)


class TopBar(LiveText):
    """One line: where you are, on which bench, and what is going on."""

    DEFAULT_CSS = "TopBar { height: 1; }"


class KeyFooter(Footer):
    """The footer, rebuilt only when the keys it shows change.

    Textual's Footer remounts all its keys (a dozen widgets, each restyled) whenever the
    screen's bindings are refreshed: on every screen switch, and whenever a screen calls
    `refresh_bindings` (the Run screen does when a run starts or ends). Measured: most of a
    key press's cost when it switches screens. Here the same keys keep the same widgets.
    """

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)
        self._shown: tuple | None = None

    @staticmethod
    def _keys(screen: Screen) -> tuple:
        return tuple((b.key, b.action, b.description, enabled, tooltip) for _, b, enabled, tooltip in screen.active_bindings.values() if b.show)

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys(self.screen)
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if self._bindings_ready and self._shown is not None and screen is self.screen and self._keys(screen) == self._shown:
            return
        super().bindings_changed(screen)


class ConsoleScreen(Screen):
    """A screen switched to and from (a mode) that keeps its styles when nothing they hang on changed.

    Textual restyles every widget of a screen each time it is shown again (about half the
    cost of a key that switches screens at 160x48); the styles can only differ when the
    stylesheet, the theme or the app's pseudo-classes (focus, dark, ...) changed meanwhile.
    Textual runs this class's handlers before Screen's own, so the flag is set in time.
    """

    _styled_for: tuple | None = None

    def _style_key(self) -> tuple:
        app = self.app
        return (app._css_update_count, app.pseudo_classes, app.theme)

    def _on_screen_suspend(self) -> None:
        self._styled_for = self._style_key()

    def _on_screen_resume(self, event) -> None:
        if event.refresh_styles and self._styled_for is not None and self._styled_for == self._style_key():
            event.refresh_styles = False


class TickingScreen(ConsoleScreen):
    """A screen that pulls the core's snapshots on a timer while it is shown, and none while hidden.

    Subclasses set `TICK_S` and write `tick()`. Textual also runs a subclass's own mount,
    resume and suspend handlers (before these), so a screen adds to them without calling up.
    """

    TICK_S = 0.25

    def __init__(self) -> None:
        super().__init__()
        self._ticker = None

    def on_mount(self) -> None:
        self._ticker = self.set_interval(self.TICK_S, self.timer_tick, pause=True)

    def on_screen_resume(self) -> None:
        self.tick()
        if self._ticker is not None:
            self._ticker.resume()

    def on_screen_suspend(self) -> None:
        if self._ticker is not None:
            self._ticker.pause()

    def timer_tick(self) -> None:
        self.tick()

    def tick(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError


class TickBox(Checkbox):
    """A checkbox whose ticked and unticked states differ in shape, not only in colour
    (Textual's draws an X in both): a monochrome terminal or a colour-blind eye sees which."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # read by Checkbox's render
        return "X" if self.value else " "


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="confirm-yes")
                yield Button(f"{self.no} (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ChoiceScreen(ModalScreen[str]):
    """A question with a few answers (buttons; the first is the default). Escape answers None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str]]):
        super().__init__()
        self.question = question
        self.choices = choices  # (answer, button label)

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Static(self.question, id="choice-question")
            with Horizontal(id="choice-buttons"):
                for i, (answer, label) in enumerate(self.choices):
                    yield Button(label, id=f"choice-{answer}", variant="primary" if i == 0 else "default", compact=True)

    def on_mount(self) -> None:
        self.query_one(f"#choice-{self.choices[0][0]}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id).removeprefix("choice-"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class LiveData:
    """The histories of one live session, pulled on a screen's timer (never pushed).

    Both the Run and the Calibrate screens use it, for a live run and a replay alike.
    """

    def __init__(self) -> None:
        self.session: LiveSession | None = None
        self.histories: dict[tuple[str, str], SeriesHistory] = {}
        self.phase_marks: list[Marker] = []
        self.windows: list[tuple[float, float, str]] = []  # MLPerf Tiny's measured windows (wall s)
        self.events = []
        self.stale_s = 5.0  # a fleet's node whose newest reading is older stops counting in the total

    def attach(self, session: LiveSession | None) -> bool:
        """Follow `session`; True when it is a different one (the caller clears its views)."""
        if session is self.session:
            return False
        self.session = session
        self.reset()
        return True

    def reset(self) -> None:
        self.histories.clear()
        self.phase_marks.clear()
        self.windows.clear()
        self.events = []

    def pull(self) -> tuple[bool, list]:
        """Take new samples and events; returns (timeline reset, new events)."""
        from labconsole.tui.plot import Marker

        s = self.session
        if s is None:
            return False, []
        reset, new = s.poll_events()
        if reset:
            self.phase_marks.clear()
            self.windows.clear()
            self.events = []

        for e in new:
            if e.kind == ev.PHASE_START and e.phase:
                self.phase_marks.append(Marker(e.wall_ns / 1e9, e.phase))
            tw = e.data.get("tiny_window") if isinstance(e.data, dict) else None
            if isinstance(tw, dict) and isinstance(tw.get("wall_start_s"), (int, float)) and isinstance(tw.get("wall_stop_s"), (int, float)):
                self.windows.append((float(tw["wall_start_s"]), float(tw["wall_stop_s"]), f"window {len(self.windows) + 1}"))
        self.events.extend(e for e in new if e.kind != ev.PROGRESS)
        for key, ring in s.rings().items():
            self.histories.setdefault(key, SeriesHistory()).sync(ring)
        return reset, new

    def power_series(self) -> list[Series]:
        import numpy as np

        from labconsole.session import fleet_view
        from labconsole.tui.plot import Series

        out = []
        per_source: dict[str, list] = {}
        for (src, ch), h in self.histories.items():
            per_source.setdefault(src, []).append((ch, h))
        for src, chans in per_source.items():
            if len(chans) > fleet_view.MANY:  # a fleet: its total, one curve (the breakdown is in the stats)
                hs = [h for _, h in chans]
                t0 = min((h.t[0] for h in hs if len(h)), default=0.0)
                t1 = max((h.t[-1] for h in hs if len(h)), default=0.0)
                t, y = fleet_view.total_series([(h.t, h.y) for h in hs], t0, t1, 600, stale_s=self.stale_s)
                last = y[np.isfinite(y)][-1] if np.isfinite(y).any() else float("nan")
                out.append(Series(f"{src} (total of {len(chans)})", t, y, value_text=si(last, "W")))
                continue
            for ch, h in chans:
                label = src if ch == "main" else f"{src}/{ch}"
                last = h.last_valid()
                out.append(Series(label, h.t, h.y, value_text=si(last, "W")))
        return out

    def qps(self) -> tuple[np.ndarray, np.ndarray]:
        """QPS over the whole session: each phase's series, NaN between phases (a gap, not a ramp)."""
        s = self.session
        if s is None:
            import numpy as np

            return np.empty(0), np.empty(0)
        return qps_over_phases(s.progress())
