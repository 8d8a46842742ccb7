"""The lab console: a Textual app over the headless core.

The app holds at most one session (a live run or a replay) and switches between screens
(Textual modes: bench, calibrate, run, recordings; results and help are pushed on top).
It never does I/O on its loop: runs, replays, discovery, reading recordings and the bench
readings all happen in threads, and the screens pull what they show on their own timers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual._compositor import LayoutUpdate  # a whole-screen frame (textual is pinned below 9)
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from labconsole.profile import ProfileError, default_profile_path, load_profile
from labconsole.session.live import BenchMonitor, LiveSession, ProcedureSession
from labconsole.tui.format import escape
from labconsole.tui.recent import last_profile, remember_profile
from labconsole.tui.screens.bench import BenchScreen
from labconsole.tui.widgets import ConfirmScreen

if TYPE_CHECKING:
    from labconsole.tui.screens.replay import ReplayScreen
    from labconsole.tui.screens.run import RunScreen

# The first paint imports only the first screen (the Bench); every other screen's module is
# imported when that screen is first shown (about 0.15 s less before the first paint).


def _make_calibrate_screen() -> Screen:
    from labconsole.tui.screens.calibrate import CalibrateScreen

    return CalibrateScreen()


def _make_run_screen() -> Screen:
    from labconsole.tui.screens.run import RunScreen

    return RunScreen()


def _make_replay_screen() -> Screen:
    from labconsole.tui.screens.replay import ReplayScreen

    return ReplayScreen()


def _make_recordings_screen() -> Screen:
    from labconsole.tui.screens.recordings import RecordingsScreen

    return RecordingsScreen()


def _make_setup_screen() -> Screen:
    from labconsole.tui.screens.setup import SetupScreen

    return SetupScreen()

CSS_FILES = ["app.tcss"]
# What an observer's console (`serve --watch`) refuses, by action name, wherever it is bound.
WATCH_REFUSED = frozenset({"start", "start_guided", "abort", "abort_run", "setup", "discover", "run_step", "skip_step", "next_step", "run_rest"})
# Set to 1, the console exits as soon as its first screen is painted: `bench/startup.py` times
# spawn -> exit on a terminal to bound the first paint from above.
EXIT_AFTER_FIRST_PAINT_ENV = "LABCONSOLE_EXIT_AFTER_FIRST_PAINT"


class LabConsole(App[int]):
    TITLE = "labconsole"
    CSS_PATH = CSS_FILES
    MODES = {"bench": BenchScreen, "calibrate": _make_calibrate_screen, "run": _make_run_screen, "replay": _make_replay_screen, "recordings": _make_recordings_screen, "setup": _make_setup_screen, "blank": Screen}
    PROFILE_MODES = ("bench", "calibrate", "run", "recordings")  # built for the open profile
    SETUP_BLOCKS = {"show_run", "show_calibrate", "show_recordings", "show_bench", "quit_console", "help"}  # letters are answers there
    BINDINGS = [
        Binding("r", "show_run", "Run"),
        Binding("c", "show_calibrate", "Calibrate"),
        Binding("o", "show_recordings", "Recordings"),
        Binding("b", "show_bench", "Bench"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_console", "Quit"),
        Binding("ctrl+o", "open_profile", "Open profile", show=False),
    ]

    def __init__(self, loaded, *, replay: str | Path | None = None, speed: float = 1.0, start_mode: str = "bench", setup: dict | None = None,
                 notice: tuple[str, str] | None = None, watch: bool = False):
        """`setup`: open on the Setup screen ({"target": PATH or None, "welcome": text}); see `setup_on_start`.
        `notice`: (text, severity) shown once the console is up (which profile it opened, and why).
        `watch`: an observer's console (`labconsole serve --watch`): it follows the run being recorded
        under the profile's recordings folder and can neither start nor abort one, nor open the
        instruments (no bench readings, no discovery, no setup)."""
        super().__init__()
        self.loaded = loaded
        self.watch = watch
        if watch:
            setup, replay, start_mode = None, None, "run"
        self._notice = notice
        self.setup_request = setup
        self._setup_return = "bench"
        if setup is not None and replay is None:
            start_mode = "setup"
        self.session: LiveSession | None = None
        self.guide = None
        self.bench_monitor: BenchMonitor | None = None
        self.extra_recordings: list[str] = []
        self._initial_replay = (Path(replay), speed) if replay is not None else None
        self._start_mode = "replay" if replay is not None else start_mode
        self.first_paint_s: float | None = None
        self._after_paint: list[Callable[[], None]] | None = []  # None once run (after_first_paint)
        self.run_screen: RunScreen | None = None
        self.replay_screen: ReplayScreen | None = None
        self._t0 = time.perf_counter()

    # --- start and stop ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        try:  # a closed terminal (SIGHUP) or a kill (SIGTERM) still ends the run sealed
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
        except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - not on Unix
            pass
        if self.watch:
            self._follow()
        self.set_timer(1.0, self._first_paint_done)  # should no first paint be recorded (see _painted)
        self.switch_mode(self._start_mode)
        if self.watch:
            self.notify("Watching: this console follows the run being recorded at the bench; only the operator there starts or aborts runs.", timeout=8)
        if self._notice is not None:
            self.notify(escape(self._notice[0]), severity=self._notice[1], timeout=10)
        if self._initial_replay is not None:
            self.start_replay(*self._initial_replay)

    def _on_signal(self, sig) -> None:
        session = self.session if self.run_in_progress else None
        if session is not None:
            session.abort(f"the console got {signal.Signals(sig).name}")
        if sig == signal.SIGHUP:
            # The terminal is gone, and Textual's shutdown can block writing to it: once the
            # run is sealed (or at once, with none), end the process from a thread.
            def finish() -> None:
                if session is not None:
                    session.join(120)
                else:
                    time.sleep(2)
                os._exit(128 + int(sig))

            threading.Thread(target=finish, name="hangup", daemon=True).start()
        self.exit(0)

    def _display(self, screen: Screen, renderable) -> None:
        super()._display(screen, renderable)
        # The first whole-screen frame handed to the terminal is the first paint. Not
        # `call_after_refresh` from on_mount, nor `post_display_hook`: Textual mounts in a
        # batch and drops the frames drawn meanwhile (the first full one among them), and
        # either can fire before the terminal holds a whole screen.
        if self.first_paint_s is None and isinstance(renderable, LayoutUpdate) and not self._batch_count and screen is self.screen:
            self._painted()

    def _painted(self) -> None:
        self.first_paint_s = time.perf_counter() - self._t0
        # What exists now (modules, classes, the first screen) lives as long as the console:
        # out of the collector's sight, a full collection no longer walks it (measured: 50-95 ms
        # pauses, a key press caught behind one waited that long).
        gc.freeze()
        if os.environ.get(EXIT_AFTER_FIRST_PAINT_ENV) == "1" and not self.run_in_progress:
            gc.enable()
            self._close_sessions()
            self.exit(0)
            return
        self._first_paint_done()

    def after_first_paint(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the first frame is out (at once if it is). For start-up work in a thread
        (the Bench screen's monitor, the Setup screen's device search): each imports drivers and
        numpy (60-80 ms of CPU) and, started earlier, held the GIL against the first paint."""
        if self.first_paint_s is not None or self._after_paint is None:
            fn()
        else:
            self._after_paint.append(fn)

    def _first_paint_done(self) -> None:
        """After the first paint, or a second after mounting should none be recorded."""
        gc.enable()  # `labconsole` turns it off until now (cli.cmd_tui)
        waiting, self._after_paint = self._after_paint, None
        for fn in waiting or ():
            fn()

    def on_unmount(self) -> None:
        self._close_sessions()

    def _close_sessions(self) -> None:
        if self.bench_monitor is not None:
            self.bench_monitor.stop()
            self.bench_monitor = None
        if self.session is not None:
            self.session.close()

    # --- navigation -------------------------------------------------------------------------------
    def _leave_pushed(self) -> None:
        """Pop results/help screens so the mode's own screen shows."""
        while len(self.screen_stack) > 1 and self._showing("ResultsScreen", "HelpScreen", "CompareScreen"):
            self.pop_screen()

    def switch_mode(self, mode: str):
        """Textual's, without its fixed 50 ms pause of the screen for a mode already built.

        Textual holds every frame for 50 ms after a mode switch (`delay_update`) to hide a
        screen being built. A mode shown before is built already: updates are held only until
        its screen has handled ScreenResume (its own tick included), so the key's frame comes
        as soon as the screen is ready, with its current data.
        """
        if mode == self.current_mode:
            return super().switch_mode(mode)
        if mode not in self._screen_stacks:  # built now: Textual's pause hides the building
            done = super().switch_mode(mode)
            self.call_after_refresh(gc.freeze)  # the new screen lives as long as the console (see _painted)
            return done
        self._quick_switch = True
        try:
            done = super().switch_mode(mode)
        finally:
            self._quick_switch = False
        self.screen.call_later(self._end_switch_batch)  # queued after the screen's ScreenResume
        return done

    def delay_update(self, delay: float = 0.05) -> None:
        if getattr(self, "_quick_switch", False):
            self._begin_batch()  # ended by _end_switch_batch
            return
        super().delay_update(delay)

    def _end_switch_batch(self) -> None:
        self._end_batch()
        if not self._batch_count:
            self.screen.refresh()

    def _showing(self, *names: str) -> bool:
        """Whether the screen shown is (a subclass of) one of the screen classes named (by name:
        a screen not shown yet need not be imported to say it is not this one)."""
        return any(cls.__name__ in names for cls in type(self.screen).__mro__)

    def _show(self, mode: str) -> None:
        self._leave_pushed()
        if self.current_mode != mode:
            self.switch_mode(mode)

    def action_show_run(self) -> None:
        self._show("run")

    def action_show_calibrate(self) -> None:
        self._show("calibrate")

    def action_show_recordings(self) -> None:
        self._show("recordings")

    def action_show_bench(self) -> None:
        self._show("bench")

    def _follow(self) -> None:
        if self.session is not None:
            self.session.close()
        from labconsole.session.follow import FollowSession

        self.session = FollowSession(Path(self.loaded.profile.recordings).expanduser())
        self.session.start()

    def action_follow_bench(self) -> None:
        """An observer back to the run at the bench (after replaying a recording)."""
        if self.watch and (self.session is None or self.session.kind != "follow"):
            self._follow()
        self._show("run")

    def refuses(self, action: str) -> bool:
        """Whether this console refuses `action` because it only watches (screens ask too)."""
        return self.watch and action in WATCH_REFUSED

    def _watch_refusal(self) -> bool:
        if self.watch:
            self.notify("Watching only: runs are started and aborted by the operator at the bench.", severity="warning")
        return self.watch

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if self.refuses(action):
            return False
        if action in self.SETUP_BLOCKS and self._showing("SetupScreen"):
            return False  # typing a name must not switch screens or quit; esc leaves setup
        return True

    # --- setup and opening a profile ---------------------------------------------------------------
    def action_setup(self) -> None:
        if self._watch_refusal():
            return
        self._leave_pushed()
        if self.current_mode != "setup":
            self._setup_return = self.current_mode
            self.switch_mode("setup")

    def leave_setup(self) -> None:
        self.switch_mode(self._setup_return if self._setup_return in self.PROFILE_MODES else "bench")

    def open_profile(self, loaded, start_run: bool = False) -> bool:
        """Make `loaded` the console's profile: every screen is built anew for it."""
        if self._watch_refusal():
            return False
        if self.run_in_progress:
            self.notify("A run is going: open the new profile when it has ended (x aborts it)", severity="warning", timeout=8)
            return False
        self.stop_bench_monitor()
        if self.session is not None:
            self.session.close()
            self.session = None
        self.guide = None
        self.loaded = loaded
        self.run_screen = None
        self._leave_pushed()
        from_setup = self.current_mode == "setup"
        if self.current_mode in self.PROFILE_MODES:
            # The screen on show cannot be removed: step onto a blank one so every screen is rebuilt.
            self.switch_mode("blank")
        for mode in self.PROFILE_MODES:
            self.remove_mode(mode)
            self.add_mode(mode, self.MODES[mode])
        if start_run:
            self.start_run(None, None)
        else:
            self._show("bench")
        if from_setup:  # the next setup starts afresh
            self.setup_request = None
            self.remove_mode("setup")
            self.add_mode("setup", self.MODES["setup"])
        self.notify(f"opened {escape(str(loaded.path))}", timeout=4)
        remember_profile(loaded.path)
        return True

    def action_open_profile(self) -> None:
        """Switch benches: pick a profile under profiles/ (or beside the open one), or type a path."""
        if self.run_in_progress:
            self.notify("A run is going: open another profile when it has ended (x aborts it)", severity="warning", timeout=8)
            return
        if self._showing("ProfileScreen"):
            return
        from labconsole.tui.screens.profiles import ProfileScreen

        folders = [Path.cwd() / "profiles", Path(self.loaded.path).parent]
        self.push_screen(ProfileScreen(folders))

    def open_builtin_bench(self) -> None:
        self.open_profile(load_profile(default_profile_path()))

    def action_help(self) -> None:
        if not self._showing("HelpScreen"):
            from labconsole.tui.screens.help import HelpScreen

            self.push_screen(HelpScreen())

    def show_results(self, path: Path) -> None:
        if self._showing("ResultsScreen"):
            self.pop_screen()
        from labconsole.tui.screens.results import ResultsScreen

        self.push_screen(ResultsScreen(Path(path)))

    # --- runs ---------------------------------------------------------------------------------------
    @property
    def run_in_progress(self) -> bool:
        s = self.session
        return s is not None and s.kind == "live" and not s.finished

    def start_run(self, scenario: str | None, duration_s: float | None, guided: bool = False) -> None:
        if self._watch_refusal():
            return
        if self.run_in_progress:
            self.notify("A run is already going (x aborts it)", severity="warning")
            return
        from labconsole.procedure.engine import RunOptions

        if self.session is not None:
            self.session.close()
        if guided:
            from labconsole.procedure.guided import GuidedCalibration

            self.guide = GuidedCalibration()
        else:
            self.guide = None
        try:
            session = ProcedureSession(self.loaded, RunOptions(scenario=scenario, duration_s=duration_s), step_runner=self.guide)
        except Exception as exc:  # noqa: BLE001 - a run that cannot even be set up is a message, not a crash
            self.guide = None
            self.notify(f"the run cannot start: {type(exc).__name__}: {exc}", title="run refused", severity="error", timeout=15)
            return
        self.session = session
        monitor = self.bench_monitor
        self.bench_monitor = None
        self._start_session(session, monitor)
        self._show("calibrate" if guided else "run")
        self.notify(f"run started: {escape(session.title)}" + ("; guide the calibration here" if guided else ""), timeout=4)

    def _start_session(self, session: ProcedureSession, monitor: BenchMonitor | None) -> None:
        # The bench monitor holds the instruments: close it first, off the loop.
        def target() -> None:
            if monitor is not None:
                monitor.stop()
                monitor.stopped.wait(10)
            session.start()

        if monitor is None:
            session.start()
        else:
            self.run_worker(target, thread=True, exit_on_error=False, group="start-run")

    def session_finished(self, session: LiveSession) -> None:
        """Called by the Run screen when a live run has ended (sealed)."""
        if self.current_mode == "bench":
            self.ensure_bench_monitor()

    def calibration_finished(self) -> None:
        if self.current_mode == "calibrate" and not self._showing("ResultsScreen", "HelpScreen", "ConfirmScreen"):
            self._show("run")

    def action_abort_run(self) -> None:
        if self._watch_refusal():
            return
        if not self.run_in_progress:
            self.notify("No run is going")
            return

        def answer(yes: bool | None) -> None:
            if yes and self.run_in_progress:
                self.session.abort("aborted by the operator")
                self.notify("aborting: stopping the workload and sealing the bundle...", severity="warning")

        self.push_screen(ConfirmScreen("Abort the run?\n\nThe workload stops; what was recorded is sealed as [b]aborted[/]."), answer)

    # --- replay -------------------------------------------------------------------------------------
    def start_replay(self, path: str | Path, speed: float | None = None) -> None:
        if self.run_in_progress:
            self.notify("A run is going: abort it (x) or wait before replaying", severity="warning")
            return
        self.notify(f"opening {escape(Path(path).name)} for replay...", timeout=3)
        self.run_worker(lambda: self._open_replay(Path(path), speed or 1.0), thread=True, exit_on_error=False, group="open-replay")

    def _open_replay(self, path: Path, speed: float) -> None:
        from labconsole.session.replay import ReplaySession  # deferred: it brings numpy and the readers the first paint does without

        try:
            session = ReplaySession(path, speed=speed)
            session.start()
        except Exception as exc:  # noqa: BLE001 - a bad folder is a message, not a crash
            self.call_from_thread(self.notify, f"cannot replay {escape(str(path))}: {escape(str(exc))}", severity="error", timeout=8)
            return
        self.call_from_thread(self._replay_ready, session)

    def _replay_ready(self, session) -> None:
        old = self.session
        if self.run_in_progress:
            session.close()
            return
        self.session = session
        self.guide = None
        if old is not None:
            old.close()
        self._show("replay")

    def leave_replay(self) -> None:
        """`esc` on the Replay screen: stop the replay and go back to the Recordings."""
        s = self.session
        if s is not None and s.kind == "replay":
            self.session = None
            s.close()
        self._show("recordings")

    # --- bench readings ------------------------------------------------------------------------------
    def ensure_bench_monitor(self) -> None:
        if self.watch:  # the operator's run holds the instruments; an observer never opens them
            return
        if self.bench_monitor is None and not self.run_in_progress:
            self.bench_monitor = BenchMonitor(self.loaded)  # its sources show "opening" until it has opened them
            self.after_first_paint(self._start_bench_monitor)

    def _start_bench_monitor(self) -> None:
        mon = self.bench_monitor
        if mon is not None and not mon.started:
            mon.start()

    def stop_bench_monitor(self) -> None:
        if self.bench_monitor is not None:
            self.bench_monitor.stop()
            self.bench_monitor = None

    # --- quit ---------------------------------------------------------------------------------------
    def action_quit_console(self) -> None:
        if not self.run_in_progress:
            self._close_sessions()
            self.exit(0)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._abort_and_exit(), exclusive=True, group="quit")

        self.push_screen(ConfirmScreen("A run is going. Abort it and quit?\n\nWhat was recorded is sealed as [b]aborted[/]."), answer)

    def action_quit(self) -> None:
        """ctrl+q (Textual's own quit key): the same way out as q, asking first while a run is going."""
        self.action_quit_console()

    def action_help_quit(self) -> None:
        """ctrl+c: say which key quits, and that it asks first while a run is going."""
        if self.run_in_progress:
            self.notify("A run is going: q (or ctrl+q) asks whether to abort it and quit; x aborts it and stays", timeout=6)
        else:
            self.notify("Press q (or ctrl+q) to quit", timeout=4)

    async def _abort_and_exit(self) -> None:
        s = self.session
        s.abort("the console was closed")
        self.notify("stopping the workload and sealing the bundle...", severity="warning", timeout=30)
        deadline = time.monotonic() + 60
        while not s.finished and time.monotonic() < deadline:  # poll; never join on the loop
            await asyncio.sleep(0.1)
        self._close_sessions()
        self.exit(0)

    # --- command palette ---------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen):
        if self.watch:
            yield SystemCommand("Watch the run at the bench", "follow the operator's run again (after a replay)", self.action_follow_bench)
        yield SystemCommand("Bench", "the profile's sources and their live readings", self.action_show_bench)
        yield SystemCommand("Set up a bench", "guided: find the meters, pick what to record, choose the workload, write a profile", self.action_setup)
        yield SystemCommand("Open a profile (switch benches)", "ctrl+o: a profile under profiles/, or any path", self.action_open_profile)
        yield SystemCommand("Open the built-in simulated bench", "sim-bench.yaml: no meters needed (the console reopens it next time)", self.open_builtin_bench)
        yield SystemCommand("Run screen", "set up, start and follow a run", self.action_show_run)
        yield SystemCommand("Start a run", "with the scenario and duration set on the Run screen (calibration runs by itself)", self._palette_start)
        yield SystemCommand("Start a run with guided calibration", "run, retry or skip each calibration step yourself", self._palette_guided)
        yield SystemCommand("Calibrate", "the calibration steps and their verdicts", self.action_show_calibrate)
        yield SystemCommand("Abort the run", "stop the workload; the bundle is sealed as aborted", self.action_abort_run)
        yield SystemCommand("Recordings", "bundles under the recordings folder", self.action_show_recordings)
        yield SystemCommand("Compare the two marked recordings", "on the Recordings screen, m marks two; figures side by side with their change", self._palette_compare)
        yield SystemCommand("Replay the newest recording", "play the last bundle back through the Run screen", self._palette_replay_latest)
        yield SystemCommand("Results of the current run or replay", "metrics, checks, whole-run plots", self._palette_results)
        yield SystemCommand("Export the report", "HTML report and plots of the results shown (or of the current run or replay), to keep or share", self._palette_export)
        yield SystemCommand("Event log, full screen", "l on the Run screen: every event, scrolled, copied or saved", self._palette_log)
        for label, factor in (("1x", 1.0), ("10x", 10.0), ("100x", 100.0), ("as fast as it goes", 0.0)):
            yield SystemCommand(f"Replay speed {label}", "for the replay on the Replay screen", lambda f=factor: self._palette_speed(f))
        yield SystemCommand("Pause or resume the replay", "space on the Replay screen", self._palette_pause)
        yield SystemCommand("Help", "keys and screens", self.action_help)
        for cmd in super().get_system_commands(screen):
            if cmd.callback in (self.exit, self.action_quit) or cmd.title.lower().startswith("quit"):
                # Textual's own Quit exits at once: ours asks first while a run is going.
                yield SystemCommand(cmd.title, "leave the console (asks first while a run is going)", self.action_quit_console)
            else:
                yield cmd

    def _run_screen(self) -> RunScreen | None:
        return self.run_screen  # set by the Run screen when it mounts

    def _palette_start(self) -> None:
        self._show("run")
        scr = self._run_screen()
        if scr is not None:
            scr.action_start()
        else:
            self.start_run(None, None)

    def _palette_guided(self) -> None:
        self.start_run(None, None, guided=True)

    def _palette_replay_latest(self) -> None:
        from labconsole.bundle.catalogue import list_bundles  # deferred: the first paint does without the readers

        def find() -> None:
            rows = list_bundles(Path(self.loaded.profile.recordings).expanduser())
            if rows:
                self.call_from_thread(self.start_replay, rows[0]["path"])
            else:
                self.call_from_thread(self.notify, "no recordings yet")

        self.run_worker(find, thread=True, exit_on_error=False, group="replay-latest")

    def _palette_results(self) -> None:
        s = self.session
        p = s.bundle_path() if s is not None else None
        if p is None or (s.kind == "live" and not s.finished):
            self.notify("no finished run or replay to show")
            return
        self.show_results(p)

    def _palette_export(self) -> None:
        scr = self.screen
        if self._showing("ResultsScreen"):
            scr.action_export()
            return
        s = self.session
        p = s.bundle_path() if s is not None else None
        if p is None or (s.kind in ("live", "follow") and not s.finished):
            self.notify("no finished run or replay to export (open one's results, then e)")
            return
        self.show_results(p)
        self.call_after_refresh(lambda: self._showing("ResultsScreen") and self.screen.action_export())

    def _palette_log(self) -> None:
        self._show("run")
        scr = self._run_screen()
        if scr is not None:
            scr.action_log()

    def _palette_compare(self) -> None:
        self._show("recordings")
        scr = self.screen
        if self._showing("RecordingsScreen"):
            scr.action_compare()

    def show_compare(self, a: Path, b: Path) -> None:
        self._leave_pushed()
        from labconsole.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(Path(a), Path(b)))

    def _palette_speed(self, factor: float) -> None:
        scr = self.replay_screen
        if scr is not None:
            scr.action_speed(factor)

    def _palette_pause(self) -> None:
        scr = self.replay_screen
        if scr is not None:
            scr.action_pause()


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def setup_on_start(profile: str | None, cwd: Path | None = None) -> dict | None:
    """Whether the console opens on the Setup screen, and what it says there.

    A new user has no profile of their own: `--profile` names a file that does not exist yet
    (setup writes it there), or, with no `--profile`, the `profiles/` folder where labconsole
    is started holds no YAML file. Either way the built-in simulated bench is open behind
    the setup, so leaving it (esc) still gives a working console.
    """
    if profile is not None:
        path = Path(profile).expanduser()
        try:
            if path.exists() or path.is_symlink():
                return None
        except OSError:  # a name too long, a file where a folder should be: the loader says so
            return None
        return {"target": path, "welcome": f"{profile} does not exist yet: answer the questions below and the console writes it there. "
                "(esc: skip, and use the built-in simulated bench)"}
    folder = (cwd or Path.cwd()) / "profiles"
    if any(folder.glob("*.yaml")) or any(folder.glob("*.yml")):
        return None
    return {"target": None, "welcome": "Welcome. No profile of your own in ./profiles yet: four short steps find what is attached and write one "
            "you can run at once. (esc: skip, and use the built-in simulated bench)"}


def start_choice(profile: str | None, replay: str | None = None, cwd: Path | None = None):
    """What the console opens on: (loaded profile, setup request or None, notice or None).

    `--profile PATH`; else the profile the console had open last (`labconsole.tui.recent`), if it
    still loads; else the built-in simulated bench, behind the Setup screen for a new user.
    Raises the loader's ProfileError / FileNotFoundError for a `--profile` that does not load.
    """
    notice = None
    if profile is None and replay is None:
        last = last_profile()
        if last is not None:
            try:
                loaded = load_profile(last)
            except (ProfileError, FileNotFoundError) as exc:
                notice = (f"the profile you had open last does not load, so this is the built-in simulated bench:\n{exc}", "warning")
            else:
                return loaded, None, (f"opened {last}, the profile you had open last (ctrl+p: open the built-in simulated bench)", "information")
    setup = setup_on_start(profile, cwd) if replay is None else None
    loaded = load_profile(default_profile_path() if profile is None or setup is not None else profile)
    if profile is not None and setup is None and replay is None:
        remember_profile(loaded.path)
    return loaded, setup, notice


def run_tui(profile: str | None = None, replay: str | None = None, speed: float = 1.0, watch: bool = False) -> int:
    """Open the console (the `labconsole` and `labconsole tui` commands; `--watch`: an observer's)."""
    try:
        if watch:  # an observer never writes: no remembered profile, no setup
            loaded, setup, notice = load_profile(profile or last_profile() or default_profile_path()), None, None
        else:
            loaded, setup, notice = start_choice(profile, replay)
    except (ProfileError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    app = LabConsole(loaded, replay=replay, speed=speed, setup=setup, notice=notice, watch=watch)
    try:
        result = app.run()
    finally:
        # Never leave a run unsealed: if the console went away mid-run, stop it and wait
        # for the seal (the procedure thread does it) before the process ends.
        s = app.session
        if isinstance(s, ProcedureSession) and s.alive:
            s.abort("the console was closed")
            try:  # the terminal may be gone (SIGHUP): a second hangup or a dead tty must not stop the seal
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            except (ValueError, AttributeError):  # pragma: no cover
                pass
            _say("stopping the run and sealing the bundle...")
            s.join(120)
            if s.outcome is not None:
                _say(f"run {s.outcome.exit_status}: {s.outcome.bundle}")
    return int(result or 0)
