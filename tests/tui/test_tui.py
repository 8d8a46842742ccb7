"""The console driven with Textual's Pilot, at 80x24: run, guided calibration with abort,
recordings -> results -> replay at 100x, an MLPerf folder replayed, bench readings, help.

Each test waits on state with a generous deadline (the machine is shared); none asserts on time.
"""

from __future__ import annotations

import re

import json
import math
import time
from importlib import resources
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli

MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
SIZE = (80, 24)


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def console(profile_path: Path, **kw):
    from labconsole.profile import load_profile
    from labconsole.tui.app import LabConsole

    return LabConsole(load_profile(profile_path), **kw)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text (for asserting on visible words)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def log_text(log) -> str:
    """Every line a RichLog holds (what it wrapped, not only what is scrolled into view)."""
    return "\n".join(line.text for line in log.lines)


def test_tcss_files_referenced_by_the_code_are_in_the_package():
    from labconsole.tui import app as app_module

    pkg = resources.files("labconsole.tui")
    assert app_module.CSS_FILES
    for name in app_module.CSS_FILES:
        assert (pkg / name).is_file(), f"{name} is referenced by LabConsole.CSS_PATH but not in labconsole/tui"


async def test_a_run_advances_through_its_phases_fills_the_plots_and_shows_results(sim_profile):
    from labconsole.tui.plot import TimePlot
    from labconsole.tui.screens.results import ResultsScreen
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and "press s to start" in screen_text(app), 10, "the Run screen")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.session is not None, 10, "a session")
        phases = []
        while not app.session.finished:
            ph = app.session.phase_clock().phase
            if not phases or phases[-1] != ph:
                phases.append(ph)
            await pilot.pause(0.1)
            assert len(phases) < 50
        await pilot.pause(0.5)  # a last tick after the seal
        assert app.session.status == "completed", app.session.outcome
        # The phases advance in order (the short idle may fall between two looks).
        order = [p for p in phases if p in ("calibration", "idle", "ranging", "testing", "done")]
        assert order.index("ranging") < order.index("testing")
        run = app.screen
        logged = log_text(run.query_one("#run-log"))
        for phase in ("idle", "ranging", "testing"):
            assert f"[{phase}] {phase}" in logged or f">> [{phase}]" in logged
        power = run.query_one("#run-power", TimePlot)
        qps = run.query_one("#run-qps", TimePlot)
        assert power.builds > 3 and qps.builds > 3
        n_power = sum(len(s.t) for s in power._frame.series)
        assert n_power > 50
        assert any(len(s.t) > 10 for s in qps._frame.series)
        # rendered on demand (a tick may have just dropped the cached strips for the next frame)
        drawn = "\n".join(power.render_line(y).text for y in range(power.size.height))
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in drawn), "no braille dots in the power plot"
        assert any(p in drawn for p in ("idle", "ranging", "testing"))  # phase markers, labelled where there is room
        assert len(power._frame.markers) >= 3
        # Results of the run: metric and checks, computed off the loop.
        await pilot.press("v")
        # the data, then the panels laid out again for their new text (a step later)
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ResultsScreen) and app.screen.data is not None and "avg_power" in screen_text(app)
            and re.search(r"checks\s+\d+ (fail|warn|pass)", screen_text(app)),
            60,
            "results, on screen",
        )
        text = screen_text(app)
        assert "avg_power" in text
        # the checks' summary line is on screen; every check is in the (scrollable) list
        assert re.search(r"checks\s+\d+ (fail|warn|pass)", text), text
        names = {r.name for r in app.screen.data["checks"]}
        assert {"manifest", "power window", "loadgen validity"} <= names
        res = app.screen
        assert res.query_one("#res-power", TimePlot)._frame.spans  # the power window is marked
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "back on the Run screen")


async def test_guided_calibration_run_retry_skip_then_abort_seals_the_bundle_as_aborted(sim_profile):
    from labconsole.tui.screens.calibrate import CalibrateScreen
    from labconsole.tui.widgets import ConfirmScreen

    app = console(sim_profile(idle=0.3, duration=30))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CalibrateScreen), 10, "the Calibrate screen")
        await pilot.press("g")
        await wait_for(pilot, lambda: app.guide is not None and app.guide.waiting, 60, "the first step to wait for the operator")
        g = app.guide
        keys = [st.key for st in g.steps]
        assert "idle_baseline" in keys
        while g.current.key != "idle_baseline":  # skip the steps before it (identity, certificate, ...)
            before = g.current.key
            await pilot.press("k")
            await wait_for(pilot, lambda: g.waiting and g.current.key != before, 60, "the next step")
            assert g.calibration.results[before].status == "skip"
        await pilot.press("t")  # run
        await wait_for(pilot, lambda: g.waiting and g.result(g.current) is not None, 60, "the step's verdict")
        assert g.result(g.current).status in ("pass", "warn")
        await wait_for(pilot, lambda: "Verdict" in screen_text(app) and "attempt 1" in screen_text(app), 10, "the verdict on screen")
        await pilot.press("t")  # retry
        await wait_for(pilot, lambda: g.waiting and g.result(g.current).attempts == 2, 60, "the retry's verdict")
        steps = list(g.steps)
        for _ in steps:  # skip whatever steps there are (more may be added to the default list)
            await wait_for(pilot, lambda: g.waiting or g.done.is_set(), 60, "the next step")
            if g.done.is_set():
                break
            await pilot.press("k")
            await pilot.pause(0.3)
        await wait_for(pilot, lambda: g.done.is_set(), 60, "calibration to finish")
        assert g.calibration.results["idle_baseline"].status == "skip"
        assert g.calibration.results["idle_baseline"].attempts == 3
        # The run goes on (Run screen); abort it with a confirmation.
        await wait_for(pilot, lambda: app.current_mode == "run", 10, "the Run screen after calibration")
        await wait_for(pilot, lambda: app.session.proc.phase in ("probe", "ranging", "testing"), 60, "the workload phases")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.session.finished, 90, "the aborted run to seal")
        bundle = app.session.bundle_path()
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "aborted" and "operator" in run["reason"]
    assert (bundle / "bagit.txt").exists()
    cal = json.loads((bundle / "data" / "calibration.json").read_text())
    idle = next(s for s in cal["steps"] if s["key"] == "idle_baseline")
    assert idle["status"] == "skip" and idle["attempts"] == 3
    out = run_cli("check", str(bundle), "--json")
    checks = {c["name"]: c["status"] for c in json.loads(out.stdout)["checks"]}
    assert checks["manifest"] == "pass" and checks["run status"] == "fail"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A profile whose recordings folder holds one completed bundle."""
    from conftest import SIM_PROFILE, write_profile
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile

    folder = tmp_path_factory.mktemp("recorded")
    prof = write_profile(
        folder,
        SIM_PROFILE.format(recordings=folder / "recordings", scenario="Offline", duration=2, sut="matmul", sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra=""),
    )
    out = RunEngine(load_profile(prof), InferencePlan()).run()
    assert out.exit_status == "completed", out.reason
    return prof, out.bundle


async def test_recordings_open_results_then_replay_at_100x_to_the_end(recorded):
    from textual.widgets import DataTable

    from labconsole.tui.screens.recordings import RecordingsScreen
    from labconsole.tui.screens.results import ResultsScreen
    from labconsole.tui.screens.run import RunScreen

    prof, bundle = recorded
    app = console(prof)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen) and str(bundle) in app.screen.rows, 30, "the bundle in the list")
        rec = app.screen
        await wait_for(pilot, lambda: "checks" in rec.rows[str(bundle)], 60, "the row's checks")
        table = rec.query_one("#rec-table", DataTable)
        row = table.get_row(str(bundle))
        assert "avg_power" not in str(row)  # the metric column shows the value and unit
        metric, verdict = str(table.get_cell(str(bundle), "metric")), str(table.get_cell(str(bundle), "checks"))
        assert " W" in metric and any(v in verdict for v in ("PASS", "WARN", "FAIL"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen.data is not None, 60, "results")
        assert app.screen.path == bundle
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.session is not None and app.session.kind == "replay", 30, "the replay")
        await pilot.press("3")
        assert app.session.speed == 100.0
        await wait_for(pilot, lambda: app.session.finished, 60, "the replay to reach the end")
        assert app.session.status == "replayed"
        # the last events reach the log on the Run screen's next tick
        log = app.screen.query_one("#run-log")
        await wait_for(pilot, lambda: "run completed" in log_text(log) and "RESULT" in log_text(log), 10, "the end of the run in the log")
        ring = app.session.rings()[("wall", "main")]
        assert ring.total == len(app.session.samples[("wall", "main")])
        # Seeking back restarts the timeline at that point.
        await pilot.press("space")
        await pilot.press("home")
        await wait_for(pilot, lambda: app.session.clock.fraction < 0.01 and app.session.rings()[("wall", "main")] is not ring, 10, "the seek")


async def test_an_mlperf_result_folder_replays_with_a_synthesized_timeline(sim_profile):
    from labconsole.tui.plot import TimePlot

    app = console(sim_profile(), replay=MLPERF, speed=math.inf)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session is not None and app.session.finished, 60, "the replay")
        run = app.screen
        power = run.query_one("#run-power", TimePlot)
        log = run.query_one("#run-log")
        # the last events and samples reach the view on the Run screen's next tick
        await wait_for(
            pilot,
            lambda: "avg_power" in log_text(log) and power._frame is not None and sum(len(s.t) for s in power._frame.series) >= 718,
            10,
            "every sample and the result in the view",
        )
        assert "power_begin" in log_text(log)
        assert power._frame.spans and sum(len(s.t) for s in power._frame.series) == 718


async def test_bench_shows_live_readings_and_help_lists_the_keys(sim_profile):
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.help import HelpScreen

    app = console(sim_profile())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench screen")
        await wait_for(pilot, lambda: app.bench_monitor is not None and app.bench_monitor.status.get("wall") == "ok", 30, "the source to open")
        await wait_for(pilot, lambda: " W" in screen_text(app) and "SIM-0001" in screen_text(app), 30, "a live reading")
        keys = ("r Run", "c Calibrate", "o Recordings", "? Help", "q Quit")
        await wait_for(pilot, lambda: all(k in screen_text(app).splitlines()[-1] for k in keys), 10, "the keys in the footer")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Start a run", "Start a run with guided calibration", "Abort the run", "Recordings", "Replay speed 100x", "Help"):
            assert title in titles  # everything is in the command palette too
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 10, "help")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "back from help")
        monitor = app.bench_monitor
        await pilot.press("q")
    assert monitor.stopped.wait(10)


async def test_opening_another_profile_rebuilds_the_screen_on_show(sim_profile):
    from labconsole.profile import load_profile
    from labconsole.tui.recent import last_profile
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "test-bench" in screen_text(app), 10, "the Bench on the test profile")
        assert "Open the built-in simulated bench" in [c.title for c in app.get_system_commands(app.screen)]
        app.open_builtin_bench()  # from the Bench itself: the screen on show is rebuilt too
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "sim-bench.yaml" in screen_text(app), 10, "the Bench on sim-bench")
        assert "test-bench" not in screen_text(app) and app.loaded.profile.name == "sim-bench"
        assert last_profile().name == "sim-bench.yaml"  # the next `labconsole` reopens it
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("question_mark")
        app.open_profile(load_profile(sim_profile()))  # from under a pushed screen: it goes, the Bench shows
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "test-bench" in screen_text(app), 10, "the Bench on the test profile again")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen again")
        assert app.run_screen is app.screen  # a new Run screen, for the profile now open
        await pilot.press("q")


def test_replay_command_reports_a_bad_path_without_opening_the_console(tmp_path):
    out = run_cli("replay", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "no such file or folder" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("replay", str(MLPERF), "--speed", "fast-ish")
    assert out.returncode == 2 and "--speed" in out.stderr


async def test_compare_two_marked_recordings_shows_each_figure_and_its_change(recorded):
    from textual.widgets import DataTable, Input

    from labconsole.mlperf.compare import compare_runs, format_change, format_value
    from labconsole.tui.screens.compare import CompareScreen
    from labconsole.tui.screens.recordings import RecordingsScreen

    prof, bundle = recorded
    app = console(prof)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen) and str(bundle) in app.screen.rows, 30, "the bundle in the list")
        rec = app.screen
        await pilot.press("equals_sign")  # nothing marked: says what to do
        assert isinstance(app.screen, RecordingsScreen)
        await pilot.press("m", "m")  # mark, unmark
        assert rec.marks == []
        await pilot.press("m")
        assert rec.marks == [str(bundle)]
        table = rec.query_one("#rec-table", DataTable)
        assert "A" in str(table.get_cell(str(bundle), "mark"))
        # An MLPerf result folder opened by path is a recording like the others: mark it as B.
        await pilot.press("f")
        rec.query_one("#rec-path", Input).value = str(MLPERF)
        await pilot.press("enter")
        await wait_for(pilot, lambda: str(MLPERF) in rec.rows and rec._selected() == MLPERF, 30, "the MLPerf folder, selected")
        await pilot.press("m")
        assert rec.marks == [str(bundle), str(MLPERF)]
        await pilot.press("equals_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None, 60, "the comparison")
        shown = app.screen.comparison
        assert app.screen.error is None
        assert (shown.a.path, shown.b.kind) == (str(bundle), "mlperf")
        await wait_for(pilot, lambda: "average power" in screen_text(app), 10, "the tables, laid out")
        text = screen_text(app)
        expected = compare_runs(bundle, MLPERF)  # the same comparison, computed here
        avg = expected.figure("avg_power")
        assert avg.rel_change_pct is not None
        assert "average power" in text and format_value(avg.a) in text and format_value(avg.b) in text and format_change(avg) in text
        body = app.screen.query_one("#cmp-body")
        words = ("samples per joule", "idle baseline", "uncertainty", "loadgen validity", "bench differences")
        for _ in range(20):  # the rest is further down: scroll until every part has been seen
            text += screen_text(app)
            if all(w in text for w in words):
                break
            body.scroll_down(animate=False)
            body.scroll_page_down(animate=False)
            await pilot.pause(0.1)
        assert all(w in text for w in words), text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen), 10, "back on Recordings")
def test_the_console_exits_after_drawing_its_first_screen_when_asked():
    """LABCONSOLE_EXIT_AFTER_FIRST_PAINT=1 (what bench/startup.py times): on a real terminal the
    console draws one whole screen (every row), then exits 0 by itself."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    from conftest import ROOT

    rows, cols = 24, 80
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", LABCONSOLE_EXIT_AFTER_FIRST_PAINT="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "tui"], cwd=str(ROOT), env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            chunk = b""
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
            if chunk:
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=10) if proc.poll() is None else proc.returncode
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert rc == 0, out[-2000:]
    drawn = {int(m) for m in re.findall(rb"\x1b\[(\d+);\d+H", out)}
    assert set(range(1, rows + 1)) <= drawn, f"rows never drawn: {sorted(set(range(1, rows + 1)) - drawn)}"
    assert b"BENCH" in out


async def test_the_console_records_its_first_paint_and_stays_open_without_the_variable(sim_profile, monkeypatch):
    monkeypatch.delenv("LABCONSOLE_EXIT_AFTER_FIRST_PAINT", raising=False)
    app = console(sim_profile())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.first_paint_s is not None, 30, "the first paint")
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None
        assert "BENCH" in screen_text(app)
