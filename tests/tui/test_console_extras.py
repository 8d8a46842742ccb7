"""What an operator expects of the console besides the procedure (issue 14): the Bench says
what a simulated meter follows; Recordings with columns, sort, filter, notes and delete; replay
as its own screen; plot cursors with energy; the setup wizard checking each answer."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import FIXTURES

from test_tui import console, screen_text, wait_for  # the Pilot helpers, one copy

SIZE = (80, 24)
MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


async def test_the_bench_says_a_simulated_meter_follows_the_benchmark_not_the_machine(sim_profile):
    from labconsole.tui.screens.bench import BenchScreen

    app = console(sim_profile())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench")
        await pilot.pause(0.3)
        text = " ".join(screen_text(app).split())
        assert "wall (simulated): follows the benchmark's CPU use" in text, text


# --- Recordings ---------------------------------------------------------------------------------

import json
import shutil

import pytest

from conftest import run_cli, write_profile


@pytest.fixture(scope="module")
def one_bundle(tmp_path_factory):
    """One real sealed bundle of the simulated bench (a short run), copied by the tests."""
    from conftest import SIM_PROFILE

    folder = tmp_path_factory.mktemp("made")
    profile = write_profile(folder, SIM_PROFILE.format(recordings=folder / "rec", scenario="Offline", duration=1, sut="matmul", sut_options="{size: 128, threads: 0}", idle=0.3, interval=0.05, workload_extra=""))
    out = run_cli("run", "--profile", str(profile), "--quiet", cwd=folder, timeout=240)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def recordings_bench(tmp_path: Path, bundle: Path, names: dict[str, dict]) -> Path:
    """A profile whose recordings folder holds copies of `bundle`, each with run.json changes."""
    rec = tmp_path / "rec"
    rec.mkdir()
    for name, changes in names.items():
        dst = rec / name
        shutil.copytree(bundle, dst)
        if changes:
            run = dst / "data" / "run.json"
            info = json.loads(run.read_text())
            for k, v in changes.items():
                if k == "profile":
                    info["profile"]["name"] = v
                else:
                    info[k] = v
            run.write_text(json.dumps(info))
    return write_profile(tmp_path, f"name: viewer\nrecordings: {rec}\nsources:\n  - name: wall\n    driver: simulated\n")


def table_rows(app) -> list[str]:
    from textual.widgets import DataTable

    tables = app.screen.query("#rec-table")
    if not tables:
        return []
    t = tables.first(DataTable)
    return [str(t.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(t.row_count)]


def cell(app, key: str, col: str) -> str:
    from textual.widgets import DataTable

    t = app.screen.query_one("#rec-table", DataTable)
    from rich.text import Text

    value = t.get_cell(key, col)
    return value.plain if hasattr(value, "plain") else Text.from_markup(str(value)).plain


async def open_recordings(app, pilot, n: int):
    from labconsole.tui.screens.recordings import RecordingsScreen

    await pilot.press("o")
    await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen) and len(table_rows(app)) == n, 20, f"{n} recordings")
    await wait_for(pilot, lambda: not any(r.get("pending") for r in app.screen.rows.values()), 120, "every row summarised")


async def test_a_run_being_recorded_is_shown_as_running_and_cannot_be_deleted(tmp_path, one_bundle):
    from labconsole.locks import recordings_lock

    profile = recordings_bench(tmp_path, one_bundle, {"2026-01-01T00-00-00Z_a": {}, "2026-01-02T00-00-00Z_live": {"exit_status": "running", "start": "2026-12-31T00:00:00Z"}})
    live = str(tmp_path / "rec" / "2026-01-02T00-00-00Z_live")
    lock = recordings_lock(tmp_path / "rec").acquire()  # a run records into this folder now
    try:
        app = console(profile)
        async with app.run_test(size=SIZE) as pilot:
            await open_recordings(app, pilot, 2)
            assert cell(app, live, "status") == "● running"
            assert cell(app, live, "checks") == "recording"  # not "✘ FAIL": it is not sealed yet
            await pilot.pause(0.2)
            assert "being recorded" in screen_text(app)
            await pilot.press("d")  # the newest, the one running, is highlighted
            await pilot.pause(0.3)
            assert Path(live).is_dir()
            assert "stop it first" in " ".join(str(n.message) for n in app._notifications)
            lock.release()  # the run ended without sealing: a crash
            await wait_for(pilot, lambda: cell(app, live, "status") == "unsealed", 20, "the row to say unsealed")
    finally:
        lock.release()


async def test_recordings_columns_are_labelled_and_fit_80_columns(tmp_path, one_bundle):
    profile = recordings_bench(tmp_path, one_bundle, {"2026-01-01T00-00-00Z_a": {}})
    app = console(profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_recordings(app, pilot, 1)
        await pilot.pause(0.2)
        text = screen_text(app)
        header = next(line for line in text.splitlines() if "Started UT" in line)  # UT▼: sorted by it
        for label in ("Profile", "Scenario", "Status", "Metric", "Checks P/W/F", "Note"):
            assert label in header, header
        row = next(line for line in text.splitlines() if "completed" in line)
        assert "Offline" in row and " W" in row and re.search(r" \d+/\d+/\d+ ", row), row  # metric with its unit, check counts


async def test_recordings_sort_by_column_and_filter_as_you_type(tmp_path, one_bundle):
    names = {
        "2026-01-01T00-00-00Z_x": {"profile": "zulu", "start": "2026-01-01T00:00:00Z"},
        "2026-01-02T00-00-00Z_x": {"profile": "alpha", "start": "2026-01-02T00:00:00Z"},
        "2026-01-03T00-00-00Z_x": {"profile": "mike", "start": "2026-01-03T00:00:00Z"},
    }
    profile = recordings_bench(tmp_path, one_bundle, names)
    app = console(profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_recordings(app, pilot, 3)
        profiles = lambda: [app.screen.rows[k]["profile"] for k in table_rows(app)]  # noqa: E731
        assert profiles() == ["mike", "alpha", "zulu"]  # newest first
        await pilot.press("s")  # next column: profile, A to Z
        await pilot.pause(0.1)
        assert profiles() == ["alpha", "mike", "zulu"]
        assert "Profile▲" in screen_text(app)
        await pilot.press("S")
        await pilot.pause(0.1)
        assert profiles() == ["zulu", "mike", "alpha"]
        await pilot.press("slash")
        for ch in "mik":
            await pilot.press(ch)
            await pilot.pause(0.05)
        assert profiles() == ["mike"]
        assert "1 of 3 shown" in screen_text(app)
        await pilot.press("escape")
        for _ in range(3):
            await pilot.press("s")  # back at the table: s sorts again, not typed into the filter
        assert app.screen.query_one("#rec-filter").value == "mik"


async def test_a_note_is_kept_beside_the_bundle_and_delete_asks_first(tmp_path, one_bundle):
    from labconsole.bundle.seal import verify

    profile = recordings_bench(tmp_path, one_bundle, {"2026-01-01T00-00-00Z_a": {}, "2026-01-02T00-00-00Z_b": {}})
    a, b = tmp_path / "rec" / "2026-01-01T00-00-00Z_a", tmp_path / "rec" / "2026-01-02T00-00-00Z_b"
    app = console(profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_recordings(app, pilot, 2)
        assert table_rows(app)[0] == str(b)
        from labconsole.tui.screens.recordings import NoteScreen
        from labconsole.tui.widgets import ConfirmScreen

        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteScreen) and app.focused is not None and app.focused.id == "note-input", 10, "the note editor")
        for ch in "fan [red]off":
            await pilot.press({" ": "space", "[": "left_square_bracket", "]": "right_square_bracket"}.get(ch, ch))
        await pilot.press("enter")
        note = tmp_path / "rec" / "2026-01-02T00-00-00Z_b.note.txt"
        await wait_for(pilot, lambda: note.exists() and note.read_text().strip(), 10, "the note file, written")
        assert note.read_text().strip() == "fan [red]off"
        assert verify(b).ok, "the sealed bundle is unchanged by its note"
        detail = lambda: str(app.screen.query_one("#rec-detail").render())  # noqa: E731
        await wait_for(pilot, lambda: "fan [red]off" in detail(), 5, "the note shown as written")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the question")
        await pilot.press("n")  # keep it
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), 10, "the question answered")
        assert b.is_dir()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: table_rows(app) == [str(a)], 10, "the bundle deleted, its row gone")  # after bundle and note
        assert not b.exists() and not note.exists() and a.is_dir()


# --- Replay ---------------------------------------------------------------------------------------


def footer_text(app) -> str:
    lines = screen_text(app).splitlines()
    return lines[-1] if lines else ""


async def test_replay_is_its_own_screen_with_only_replay_keys_and_esc_leaves(tmp_path, one_bundle):
    from labconsole.tui.screens.recordings import RecordingsScreen
    from labconsole.tui.screens.replay import ReplayScreen
    from labconsole.tui.screens.run import RunScreen

    profile = recordings_bench(tmp_path, one_bundle, {"2026-01-01T00-00-00Z_a": {}})
    app = console(profile)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_recordings(app, pilot, 1)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and app.session is not None and app.session.kind == "replay", 30, "the Replay screen")
        # a screen's footer is filled a refresh after it is first shown
        await wait_for(pilot, lambda: "esc Leave" in footer_text(app) and "seek" in footer_text(app), 10, "the Replay screen's keys")
        foot = footer_text(app)
        for key in ("Pause", "1234 speed", "seek", "Home", "End", "start/end", "Results", "esc Leave"):
            assert key in foot, foot
        for other in ("Run", "Bench", "Recordings", "Calibrate", "Quit", "Start", "Abort"):
            assert other not in foot.replace("Results", ""), foot
        assert "REPLAY" in screen_text(app) and not app.screen.query_one("#run-setup").display
        await pilot.press("space", "right", "right", "right")  # paused, then 15 % on
        await wait_for(pilot, lambda: app.session.clock.fraction > 0.1, 10, "a seek forward")
        await pilot.press("home")
        await wait_for(pilot, lambda: app.session.clock.fraction < 0.01, 10, "the start")
        await pilot.press("end")
        await wait_for(pilot, lambda: app.session.clock.fraction > 0.99, 10, "the end")
        await pilot.press("r")  # the Run screen shows its set-up, not the replay
        await wait_for(pilot, lambda: type(app.screen) is RunScreen, 10, "the Run screen")
        await pilot.pause(0.4)
        assert app.screen.query_one("#run-setup").display and "press s to start" in screen_text(app)
        assert "REPLAY" not in screen_text(app)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen), 10, "Recordings")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), 30, "the Replay screen again")
        replay = app.session
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen), 10, "back on Recordings")
        assert app.session is None and replay is not None  # the replay was stopped and let go


# --- Plots: compare overlay, energy counter ----------------------------------------------------------


async def test_compare_overlays_a_and_b_testing_power_from_the_window_start(tmp_path, one_bundle):
    from labconsole.session.overlay import testing_trace
    from labconsole.tui.plot import TimePlot
    from labconsole.tui.screens.compare import CompareScreen

    profile = recordings_bench(tmp_path, one_bundle, {"2026-01-01T00-00-00Z_a": {}})
    app = console(profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_recordings(app, pilot, 1)
        app.show_compare(tmp_path / "rec" / "2026-01-01T00-00-00Z_a", MLPERF)
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None, 60, "the comparison")
        plot = app.screen.query_one("#cmp-power", TimePlot)
        series = plot._frame.series
        assert [s.label.split()[0] for s in series] == ["A", "B"]
        b = testing_trace(MLPERF)
        assert len(series[1].t) == len(b.t) and series[1].t[0] < 0 < series[1].t[-1]  # from power_begin
        assert plot._frame.spans and plot._frame.spans[0].t0 == 0.0
        await pilot.pause(0.2)
        title = plot.render_line(0).text
        assert "A wall" in title and "B ptd" in title and "mean" in title


async def test_the_run_screen_counts_energy_as_the_run_goes(sim_profile):
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile(duration=1, idle=0.3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("s")
        seen = []

        def energy() -> float:
            c = app.screen.energy.get(("wall", "main"))
            return c.energy_j if c is not None else 0.0

        await wait_for(pilot, lambda: energy() > 0, 60, "energy counted")
        seen.append(energy())
        await wait_for(pilot, lambda: energy() > seen[0] + 1.0, 60, "more energy")
        assert re.search(r"E \d+(\.\d+)? k?J", screen_text(app)), screen_text(app)
        await wait_for(pilot, lambda: app.session.finished, 120, "the run's end")
