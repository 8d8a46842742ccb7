"""Replay: a recording played back, on a screen of its own.

The same plots, stats and timeline as the Run screen (a replay goes through the same session
path as a live run), but its keys are the replay's only: `space` pause, `1`-`4` speed, `←`/`→`
seek 5 %, `Home`/`End` to the start and the end, `v` results, `esc` leaves (back to the
Recordings). The Run screen never shows a replay: `r` after one shows the Run set-up again.
"""

from __future__ import annotations

from textual.binding import Binding

from labconsole.tui.screens.run import RunScreen
from labconsole.tui.widgets import LiveText, TopBar


class ReplayScreen(RunScreen, inherit_bindings=False):
    SESSION_KIND = "replay"
    SPEED = Binding.Group("speed", compact=True)  # 1x 10x 100x max (the help says so)
    SEEK = Binding.Group("seek", compact=True)
    ENDS = Binding.Group("start/end", compact=True)
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("1", "speed(1)", "1x", group=SPEED),
        Binding("2", "speed(10)", "10x", group=SPEED),
        Binding("3", "speed(100)", "100x", group=SPEED),
        Binding("4", "speed(0)", "max", group=SPEED),
        Binding("left", "seek(-0.05)", "-5%", key_display="←", group=SEEK),
        Binding("right", "seek(0.05)", "+5%", key_display="→", group=SEEK),
        Binding("home", "seek_start", "From start", key_display="Home", group=ENDS),
        Binding("end", "seek_end", "To end", key_display="End", group=ENDS),
        Binding("v", "results", "Results"),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("escape", "leave", "Leave", key_display="esc"),
        # The console's keys still work here, but the footer offers the replay's only.
        Binding("r", "app.show_run", "Run", show=False),
        Binding("c", "app.show_calibrate", "Calibrate", show=False),
        Binding("o", "app.show_recordings", "Recordings", show=False),
        Binding("b", "app.show_bench", "Bench", show=False),
        Binding("question_mark", "app.help", "Help", show=False),
        Binding("q", "app.quit_console", "Quit", show=False),
    ]

    def on_mount(self) -> None:
        self.app.replay_screen = self
        self.query_one("#run-setup").display = False
        self.query_one("#run-qps").empty_text = "QPS appears where LoadGen ran"
        self._apply_width()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("start", "start_guided", "abort"):
            return False
        return super().check_action(action, parameters)

    def action_leave(self) -> None:
        self.app.leave_replay()

    def tick(self) -> None:
        if self.session_shown() is None:
            self.live.attach(None)
            self.query_one("#run-top", TopBar).update("[b]REPLAY[/]  [dim]nothing playing: o opens the Recordings, p replays the one highlighted[/]")
            self.query_one("#run-phase", LiveText).update("[dim]no replay[/]")
            self.query_one("#run-clock", LiveText).update("")
            self.query_one("#run-stats", LiveText).update("")
            return
        super().tick()
