"""What a real bench needs from the console (issue 14's six defects), driven with Pilot:
a refused run says why, a meter is added by its address, every way out asks during a run,
LoadGen's overrun is shown as what it is, the event log wraps and can be read whole, copied
and saved, and benches are switched inside the console.

Each test waits on state with a generous deadline (the machine is shared); none asserts on time.
"""

from __future__ import annotations

from pathlib import Path


from conftest import SIM_PROFILE, write_profile

from test_tui import console, log_text, screen_text, wait_for  # the Pilot helpers, one copy

SIZE = (80, 24)


def notes(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def squeeze(text: str) -> str:
    """Wrapped text joined again: whitespace (line ends, the log's padding) removed."""
    return "".join(text.split())


# --- 1. a run that cannot start says why, on the screen ------------------------------------------


async def test_a_run_refused_for_a_lock_says_why_and_what_to_do_and_stops_its_clock(sim_profile):
    from textual.widgets import ProgressBar

    from labconsole.locks import recordings_lock
    from labconsole.tui.screens.run import RunScreen

    path = sim_profile()
    app = console(path)
    held = recordings_lock(Path(app.loaded.profile.recordings)).acquire()  # "another labconsole" records there
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
            await pilot.press("s")
            await wait_for(pilot, lambda: app.session is not None and app.session.finished, 30, "the run to end")
            # the log gets the reason a tick before the panel does (the procedure thread emits it,
            # then ends): wait for the panel, what an operator reads
            await wait_for(
                pilot,
                lambda: "What to do" in screen_text(app) and squeeze("in use by another labconsole") in squeeze(app.screen.query_one("#run-stats").markup),
                10,
                "the reason and what to do on screen",
            )
            text = screen_text(app)
            assert "refused" in text
            assert "What to do" in text and squeeze("wait for") in squeeze(text)
            bar = app.screen.query_one("#run-progress", ProgressBar)
            assert bar.total is not None  # a still bar, not the endless "starting" animation
            clock1 = app.screen.query_one("#run-clock").markup
            await pilot.pause(1.2)
            assert app.screen.query_one("#run-clock").markup == clock1  # the timer does not grow
            assert "starting" not in text.splitlines()[2]
            # the toast says the reason, not "press v"; v says nothing was recorded
            assert "in use by another labconsole" in notes(app) and "press v" not in notes(app)
            logged = squeeze(log_text(app.screen.query_one("#run-log")))
            assert squeeze("the run was refused: the recordings folder") in logged
            assert squeeze("wait for it to finish or stop it first") in logged  # the whole line, wrapped, nothing lost
            app.screen.action_results()
            await pilot.pause(0.2)
            assert "Nothing was recorded" in notes(app)
            held.release()
            held = None
            await pilot.press("s")  # once the other run is gone, s starts one
            await wait_for(pilot, lambda: app.session.status in ("running", "completed"), 30, "a second run to start")
            app.session.abort("test over")
            await wait_for(pilot, lambda: app.session.finished, 60, "the abort")
    finally:
        if held is not None:
            held.release()


async def test_a_guided_run_refused_for_a_lock_leaves_the_calibrate_screen_for_the_reason(sim_profile):
    from labconsole.locks import recordings_lock
    from labconsole.tui.screens.calibrate import CalibrateScreen
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile())
    held = recordings_lock(Path(app.loaded.profile.recordings)).acquire()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CalibrateScreen), 10, "the Calibrate screen")
            await pilot.press("g")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and "What to do" in screen_text(app), 30, "the Run screen with the reason")
            assert app.session.status == "refused" and "in use by another labconsole" in app.screen.query_one("#run-stats").markup
    finally:
        held.release()


async def test_a_source_that_cannot_be_opened_fails_the_run_in_words_with_what_to_do(tmp_path):
    from labconsole.tui.screens.run import RunScreen

    text = SIM_PROFILE.format(recordings=tmp_path / "rec", scenario="Offline", duration=2, sut="null", sut_options="{}", idle=0.2, interval=0.05, workload_extra="")
    text = text.replace("    driver: simulated\n", "    driver: ptd\n").replace(
        "    options:\n      idle_w: 60\n      dynamic_w: 140\n      noise_w: 0.5\n", "    options:\n      host: 127.0.0.1\n      port: 1\n"
    )
    app = console(write_profile(tmp_path, text))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.session is not None and app.session.finished, 60, "the run to end")
        # the panel and the toast come from one tick; the toast is shown a message later
        await wait_for(pilot, lambda: "What to do" in screen_text(app) and "press v" in notes(app), 10, "the reason on screen, and the toast")
        text = screen_text(app)
        assert "cannot be used" in app.screen.query_one("#run-stats").markup and "failed" in text


# --- 3. every way out asks while a run is going -----------------------------------------------


async def test_ctrl_q_and_the_palette_quit_ask_first_during_a_run(sim_profile):
    from labconsole.tui.screens.run import RunScreen
    from labconsole.tui.widgets import ConfirmScreen

    app = console(sim_profile(duration=30))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.run_in_progress, 30, "the run")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "ctrl+q to ask")
        assert app.is_running
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "back on the Run screen")
        await pilot.press("ctrl+c")
        await pilot.pause(0.2)
        assert "asks whether to abort" in notes(app)  # the hint names a way out that asks
        quit_cmds = [c for c in app.get_system_commands(app.screen) if c.title.lower().startswith("quit")]
        assert len(quit_cmds) == 1
        quit_cmds[0].callback()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the palette's Quit to ask")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert app.is_running and app.run_in_progress
        app.session.abort("test over")
        await wait_for(pilot, lambda: app.session.finished, 60, "the abort")
        assert app.session.status == "aborted"


# --- 5. the event log: wrapped whole, full screen, copied, saved -----------------------------------


async def test_the_event_log_wraps_whole_lines_opens_full_screen_copies_and_saves(sim_profile, tmp_path):
    from textual.widgets import Input

    from labconsole import events as ev
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile(duration=30))
    long = "calibration warning " + " ".join(f"word{i:03d}" for i in range(60)) + " END"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.run_in_progress, 30, "the run")
        app.session.bus.emit(ev.WARNING, long, phase="calibration")
        run = app.screen
        log = run.query_one("#run-log")

        def fits() -> bool:
            # the line that first overflows the log brings a scrollbar, 2 columns narrower: the
            # next tick wraps the log again to the new width
            return all(len(line.text.rstrip()) <= log.scrollable_content_region.width for line in log.lines)

        await wait_for(pilot, lambda: "END" in log_text(log) and fits(), 10, "the long line, wrapped to the log's width")
        logged = squeeze(log_text(log))
        assert squeeze(long) in logged  # every word, in order: nothing of the middle lost
        from labconsole.tui.screens.log import LogScreen

        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogScreen), 10, "the full-screen log")
        full = app.screen
        await wait_for(pilot, lambda: squeeze(long) in squeeze(log_text(full.query_one("#log-full"))), 10, "the long line, full screen")
        await pilot.press("c")
        await pilot.pause(0.2)
        assert squeeze(long) in squeeze(app.clipboard)
        await pilot.press("w")
        await pilot.pause(0.2)
        target = tmp_path / "saved" / "events.txt"
        full.query_one("#log-save-path", Input).value = str(target)
        full.query_one("#log-save-path", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "saved" in notes(app) and str(target) in notes(app), 10, "where it was saved")  # after the write
        assert long in target.read_text(encoding="utf-8")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "back on the Run screen")
        app.session.abort("test over")
        await wait_for(pilot, lambda: app.session.finished, 60, "the abort")


# --- 6. switching benches inside the console, and `labconsole --profile` -------------------------------


async def test_ctrl_o_lists_profiles_and_opens_one_by_path_or_from_the_list(sim_profile, tmp_path, monkeypatch):
    from textual.widgets import Input

    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.profiles import ProfileScreen

    first = sim_profile()
    (tmp_path / "profiles").mkdir()
    other = write_profile(tmp_path / "profiles", SIM_PROFILE.format(recordings=tmp_path / "rec2", scenario="Server", duration=3, sut="null", sut_options="{}", idle=0.2, interval=0.1, workload_extra="").replace("name: test-bench", "name: second-bench"), "second.yaml")
    broken = write_profile(tmp_path, "name: broken\nsources: 3\n", "broken.yaml")
    monkeypatch.chdir(tmp_path)
    app = console(first)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "test-bench" in screen_text(app), 10, "the Bench")
        assert "Open a profile (switch benches)" in [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen) and app.screen.paths, 10, "the list of profiles")
        assert any(p.name == "second.yaml" for p in app.screen.paths) and any(p.name == "sim-bench.yaml" for p in app.screen.paths)
        # a profile that does not load: the loader's words, and the open profile stays
        app.screen.query_one("#profiles-path", Input).value = str(broken)
        app.screen.query_one("#profiles-path", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "sources: Input should be a valid list" in screen_text(app), 10, "the loader's message")
        assert "broken.yaml:2: sources:" in str(app.screen.query_one("#profiles-error").render())
        assert app.loaded.profile.name == "test-bench"
        # from the list
        scr = app.screen
        scr.query_one("#profiles-list").focus()
        scr.query_one("#profiles-list").highlighted = [p.name for p in scr.paths].index("second.yaml")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "second-bench" in screen_text(app), 10, "the Bench on the other profile")
        assert app.loaded.path.resolve() == other.resolve()
        # p on the Bench opens the same list
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProfileScreen), 10, "the list again")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench again")


def test_labconsole_dash_dash_profile_opens_the_console_on_it(monkeypatch, tmp_path):
    from labconsole import cli
    from labconsole.tui import app as app_module

    seen = {}
    monkeypatch.setattr(app_module, "run_tui", lambda profile=None, replay=None, speed=1.0, **_: (seen.__setitem__("profile", profile), 0)[1])
    assert cli.main(["--profile", str(tmp_path / "p.yaml")]) == 0
    assert seen["profile"] == str(tmp_path / "p.yaml")
    seen.clear()
    assert cli.main(["tui", "--profile", "x.yaml"]) == 0 and seen["profile"] == "x.yaml"
    seen.clear()
    assert cli.main([]) == 0 and seen["profile"] is None


# --- 2. a meter added by its address in the Setup screen ---------------------------------------------


async def test_setup_adds_a_meter_by_its_address_and_the_bench_uses_it(tmp_path, monkeypatch):
    from textual.widgets import Checkbox

    from helpers.emulate_cli import emulate
    from labconsole.profile import default_profile_path, load_profile
    from labconsole.sources import discovery
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.setup import OfferRow, SetupScreen
    from labconsole.tui.widgets import ChoiceScreen

    monkeypatch.chdir(tmp_path)
    # nothing is attached: the meter on the network is only reachable by its address
    monkeypatch.setattr(discovery, "discover_everything", lambda hints=None, drivers=None, time_limit_s=None: discovery.DiscoveryResult())
    with emulate("wt310") as port:
        resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
        app = LabConsole(load_profile(default_profile_path()), setup={"target": None, "welcome": ""})
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.wizard.discovered and len(app.screen.query(OfferRow)) > 0, 30, "setup")
            setup = app.screen
            await pilot.pause(0.5)  # the first rows settle (and take the focus) first
            setup.query_one("#setup-address").value = "not-an-address"
            setup.query_one("#setup-address").focus()
            await pilot.pause(0.1)
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert "is not an address" in notes(app)
            setup.query_one("#setup-address").value = resource
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(r.offer.kind == "found" for r in setup.query(OfferRow)), 30, "the meter offered")
            row = next(r for r in setup.query(OfferRow) if r.offer.kind == "found")
            assert row.offer.model == "WT310E" and row.offer.serial == "EMU0000001" and row.offer.usable
            await wait_for(pilot, lambda: "WT310E s/n EMU0000001" in screen_text(app), 10, "its identity on screen")
            assert row.query_one(Checkbox).value  # ticked: the meter is what the operator asked for
            sim = next(r for r in setup.query(OfferRow) if r.offer.kind == "simulated")
            assert not sim.query_one(Checkbox).value  # ticked for want of a meter; the meter replaces it
            for step in ("workload", "procedure", "save"):
                await pilot.press("ctrl+n")
                await wait_for(pilot, lambda: setup.step_key == step and not setup.issues, 20, f"the {step} step")
            setup.query_one("#meta-name").value = "wt310-lab"
            await pilot.pause(0.1)
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, "the offer to open the profile")
            prof = load_profile(tmp_path / "profiles" / "wt310-lab.yaml").profile
            assert [(s.driver, s.options["resource"]) for s in prof.sources] == [("yokogawa", resource)]
            app.screen.dismiss("bench")
            await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen) and "wt310-lab" in screen_text(app), 20, "the Bench on the new profile")
            await wait_for(pilot, lambda: app.bench_monitor is not None and app.bench_monitor.status.get("wall") == "ok", 30, "the meter opened")
            await wait_for(pilot, lambda: "EMU0000001" in screen_text(app), 30, "the meter's identity on the Bench")
            await pilot.press("q")


# --- 4. LoadGen overrunning its minimum duration is shown as what it is -----------------------------


async def test_an_offline_run_past_its_minimum_duration_says_what_loadgen_waits_for(sim_profile):
    from textual.widgets import ProgressBar

    from labconsole.tui.screens.run import RunScreen

    # 1 lane of 10 ms serves ~100 samples/s; told 300/s, Offline issues 1.1 x 2 s x 300 = 660 samples: ~6.6 s, not 2
    app = console(sim_profile(duration=2, sut="sleep", sut_options="{latency_ms: 10, concurrency: 1}", idle=0.2, workload_extra="target_qps: 300"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.session is not None and app.session.phase_clock().phase == "ranging", 60, "ranging")
        await wait_for(pilot, lambda: app.session.phase_clock().elapsed_s > 3.5, 60, "ranging past its minimum duration")
        clock = app.screen.query_one("#run-clock").markup
        assert "finishing: waiting for" in clock and "queries" in clock, clock
        assert "left 0.0 s" not in clock
        bar = app.screen.query_one("#run-progress", ProgressBar)
        assert bar.total is not None and 0 < bar.progress < bar.total  # not full, not empty: how far LoadGen is
        p1 = bar.progress
        await pilot.pause(1.0)
        assert app.screen.query_one("#run-progress", ProgressBar).progress > p1  # it moves: never looks stuck
        wp = app.session.workload_progress()
        assert wp.target == 660 and wp.finishing and wp.waiting > 0
        est = app.session.run_estimate()
        assert est.total_s > est.elapsed_s + 5  # testing is still to come, as long as ranging took
        assert "run " in screen_text(app) and " of ~" in screen_text(app)
        app.session.abort("test over")
        await wait_for(pilot, lambda: app.session.finished, 60, "the abort")
