"""The console's export: `e` on Results (and the palette's "Export the report") writes the HTML
report and the plots of the recording shown, and says where; an observer's console (`--watch`)
cannot start, abort or set up a run, whatever key or command it is sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import FIXTURES, SIM_PROFILE, write_profile

MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
SIZE = (120, 40)


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def profile(tmp_path) -> Path:
    return write_profile(tmp_path, SIM_PROFILE.format(recordings=tmp_path / "recordings", scenario="Offline", duration=2, sut="matmul",
                                                      sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra=""))


async def test_e_on_results_exports_the_report_and_plots_and_says_where(profile, tmp_path, monkeypatch):
    from labconsole.profile import load_profile
    from labconsole.report.export import REPORTS_DIR_ENV
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.results import ResultsScreen

    out = tmp_path / "reports"
    monkeypatch.setenv(REPORTS_DIR_ENV, str(out))
    app = LabConsole(load_profile(profile))
    notes: list[str] = []
    orig = app.notify
    app.notify = lambda message, **kw: (notes.append(str(message)), orig(message, **kw))[1]
    before = {p: p.stat().st_mtime_ns for p in MLPERF.rglob("*") if p.is_file()}
    async with app.run_test(size=SIZE) as pilot:
        app.show_results(MLPERF)
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen.data is not None, 60, "results")
        await pilot.press("e")
        await wait_for(pilot, lambda: len(app.screen.exported) == 2, 60, "the export")
        html, png = app.screen.exported
        assert html.parent == out and html.suffix == ".html" and png.suffix == ".png"
        assert html.stat().st_size > 100_000 and png.stat().st_size > 10_000
        assert "Plotly.newPlot" in html.read_text()
        await wait_for(pilot, lambda: any("report written" in n and str(html) in n for n in notes), 10, "a notice saying where")
        # the palette's command does the same for the results on show
        html.unlink()
        app.screen.exported = []
        app._palette_export()
        await wait_for(pilot, lambda: len(app.screen.exported) == 2 and html.exists(), 60, "the palette's export")
    assert {p: p.stat().st_mtime_ns for p in MLPERF.rglob("*") if p.is_file()} == before  # nothing written into the folder


async def test_an_observers_console_refuses_to_start_abort_or_set_up(profile):
    from labconsole.profile import load_profile
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.run import RunScreen

    app = LabConsole(load_profile(profile), watch=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        assert app.session is not None and app.session.kind == "follow"
        for key in ("s", "g", "x"):
            await pilot.press(key)
        await pilot.press("c", "g", "t", "b", "d", "n")
        await pilot.pause(1.0)
        app.start_run(None, None)  # the palette's "Start a run" and every other path end here
        app._palette_guided()
        app.action_abort_run()
        app.action_setup()
        await pilot.pause(0.5)
        assert app.session.kind == "follow" and app.bench_monitor is None
        assert app.current_mode != "setup"
        # an observer may replay a recording (it only reads files), then follow the bench again
        app.start_replay(MLPERF, 0.0)
        await wait_for(pilot, lambda: app.session.kind == "replay", 30, "the replay")
        app.action_follow_bench()
        assert app.session.kind == "follow" and isinstance(app.screen, RunScreen)
    assert not (profile.parent / "recordings").exists() or not any((profile.parent / "recordings").iterdir())
