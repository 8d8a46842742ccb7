"""The console's Setup screen, driven with Pilot at 80x24: a new user with nothing attached
reaches a written profile and a first run; the loader's messages for a bad answer; an existing
profile is not overwritten without a confirmation.

Discovery is replaced by a stand-in (what is attached is the machine's business, not the
test's); everything else is real: the wizard, the loader, the file, the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labconsole.sources import discovery
from labconsole.sources.base import Discovered
from test_tui import SIZE, screen_text, wait_for


def attached(monkeypatch, finds=(), notes=None):
    """What discovery finds, for this test (the Setup screen asks `discover_everything`)."""
    calls = []

    def discover_everything(hints=None, drivers=None, time_limit_s=None):
        calls.append(dict(hints or {}))
        return discovery.DiscoveryResult(found=list(finds), notes=dict(notes or {}))

    monkeypatch.setattr(discovery, "discover_everything", discover_everything)
    return calls


@pytest.fixture
def new_user(tmp_path, monkeypatch):
    """A fresh folder with no profiles/ in it, as the working folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def console_for_new_user():
    from labconsole.profile import default_profile_path, load_profile
    from labconsole.tui.app import LabConsole, setup_on_start

    setup = setup_on_start(None)
    assert setup is not None, "no profiles/ here: the console should offer setup"
    return LabConsole(load_profile(default_profile_path()), setup=setup)


async def fill(pilot, screen, widget_id: str, text: str) -> None:
    inp = screen.query_one(f"#{widget_id}")
    inp.value = text
    await pilot.pause(0.05)


async def next_step(pilot, screen, expect: str) -> None:
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen.step_key == expect and not screen.issues, 20, f"the {expect} step")


def issues_text(screen) -> str:
    return "\n".join(str(i) for i in screen.issues)


async def test_new_user_with_nothing_attached_writes_a_profile_and_runs_it(new_user, monkeypatch):
    from textual.widgets import Checkbox

    from labconsole.profile import load_profile
    from labconsole.tui.screens.run import RunScreen
    from labconsole.tui.screens.setup import OfferRow, SetupScreen
    from labconsole.tui.widgets import ChoiceScreen

    calls = attached(monkeypatch, notes={"nvml": "NVML: no NVIDIA driver on this host"})
    app = console_for_new_user()
    async with app.run_test(size=SIZE) as pilot:
        # Painted, not only mounted: on a loaded machine the rows can exist a frame before the text.
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.wizard.discovered and len(app.screen.query(OfferRow)) > 0
                       and "Simulated bench" in screen_text(app), 30, "setup, after discovery")
        setup = app.screen
        assert calls, "discovery was not asked"
        text = screen_text(app)
        assert "Welcome" in text and "Nothing attached was found" in text and "no NVIDIA driver" in text
        assert "Simulated bench" in text
        rows = {r.offer.key: r for r in setup.query(OfferRow)}
        assert rows["simulated"].query_one(Checkbox).value  # ticked for a new user with nothing attached
        assert {"emulator:wt310", "emulator:ptd", "emulator:lpm01a"} <= set(rows)
        assert not any(r.query_one(Checkbox).value for k, r in rows.items() if k != "simulated")
        await next_step(pilot, setup, "workload")

        # A bad answer: the loader's own message, FILE:LINE: field: reason, and no next step.
        await fill(pilot, setup, "wl-duration", "-1")
        await wait_for(pilot, lambda: "workload.duration_s" in issues_text(setup) and "workload.duration_s" in screen_text(app), 10, "the duration's message, painted")
        assert "profiles/my-bench.yaml:" in issues_text(setup) and "greater than 0" in issues_text(setup)
        assert "workload.duration_s" in screen_text(app)
        assert setup.query_one("#wl-duration").has_class("-invalid")
        await pilot.press("ctrl+n")
        await pilot.pause(0.3)
        assert setup.step_key == "workload"
        await fill(pilot, setup, "wl-sut-options", "size=64 nonsense")
        await wait_for(pilot, lambda: "not KEY=VALUE" in issues_text(setup), 10, "the SUT options' message")

        await fill(pilot, setup, "wl-duration", "2")
        await fill(pilot, setup, "wl-sut-options", "size=64")
        await next_step(pilot, setup, "procedure")
        await fill(pilot, setup, "pr-idle", "0.5")
        await next_step(pilot, setup, "save")
        await fill(pilot, setup, "meta-name", "first")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, "the offer to open the profile")
        path = new_user / "profiles" / "first.yaml"
        loaded = load_profile(path)  # written, and loads without change
        p = loaded.profile
        assert (p.name, p.workload.duration_s, p.workload.sut_options, p.procedure.idle_s) == ("first", 2, {"size": 64}, 0.5)
        assert [(s.name, s.driver, s.scope, s.primary) for s in p.sources] == [("wall", "simulated", "wall", True)]
        assert path.read_text().startswith("# first: a bench profile")

        await pilot.press("enter")  # the first answer: open it and start a first run
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.session is not None, 30, "the run")
        assert app.loaded.path.resolve() == loaded.path.resolve()
        from labconsole.tui.recent import last_profile

        assert last_profile() == path.resolve()  # the next `labconsole` reopens it
        await wait_for(pilot, lambda: app.session.finished, 180, "the first run to finish")
        assert app.session.status == "completed", app.session.outcome
        bundle = app.session.bundle_path()
    assert bundle.resolve().parent == (new_user / "recordings").resolve()
    assert (bundle / "bagit.txt").exists()


async def test_setup_from_the_bench_shows_finds_and_refuses_to_overwrite_without_confirmation(new_user, monkeypatch):
    from textual.widgets import Checkbox

    from labconsole.profile import default_profile_path, load_profile
    from labconsole.tui.app import LabConsole, setup_on_start
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.setup import OfferRow, SetupScreen
    from labconsole.tui.widgets import ChoiceScreen, ConfirmScreen

    finds = [
        Discovered("simulated", "simulated://bench-a", model="Simulated meter", serial="SIM-0042",
                   profile_snippet={"driver": "simulated", "options": {"serial": "SIM-0042"}, "sample_interval_s": 0.25}),
        Discovered("simulated", "simulated://bench-b", model="Simulated meter", serial="SIM-0043", status="busy", detail="opened by another program"),
    ]
    attached(monkeypatch, finds)
    (new_user / "profiles").mkdir()
    mine = new_user / "profiles" / "lab.yaml"
    mine.write_text("# my own profile, kept\n")
    assert setup_on_start(None) is None  # the user has a profile: no setup on start
    app = LabConsole(load_profile(default_profile_path()))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench")
        assert "Set up a bench" in [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("n")
        # painted, not only mounted (the rows exist a frame before their text and boxes)
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and len(app.screen.query(OfferRow)) > 0
                       and "SIM-0042" in screen_text(app) and "busy" in screen_text(app), 30, "setup, after discovery")
        setup = app.screen
        text = screen_text(app)
        assert "Found 2" in text and "Simulated meter s/n SIM-0042" in text and "busy" in text
        rows = list(setup.query(OfferRow))
        assert rows[0].query_one(Checkbox).value and rows[1].query_one(Checkbox).disabled
        await pilot.press("r")  # a letter is not a way off the setup screen
        assert isinstance(app.screen, SetupScreen)
        await next_step(pilot, setup, "workload")
        await next_step(pilot, setup, "procedure")
        await next_step(pilot, setup, "save")
        await fill(pilot, setup, "meta-name", "lab")
        await wait_for(pilot, lambda: setup.wizard.path == Path("profiles/lab.yaml"), 10, "the name")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and "already exists" in screen_text(app), 20, "the overwrite question")
        assert "already exists" in screen_text(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is setup, 10, "back on setup")
        assert mine.read_text() == "# my own profile, kept\n"
        assert setup.written is None
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "the overwrite question, again")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 20, "the profile written")
        written = load_profile(mine).profile
        assert written.name == "lab" and written.sources[0].options["serial"] == "SIM-0042"
        await pilot.press("escape")  # stay
        await wait_for(pilot, lambda: app.screen is setup, 10, "back on setup")
        await pilot.press("escape", "escape", "escape", "escape")  # back through the steps, then out
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench again")
        assert app.loaded.profile.name == "sim-bench"  # "stay" opened nothing


def test_setup_is_offered_for_a_profile_path_that_does_not_exist(tmp_path):
    from labconsole.tui.app import setup_on_start

    target = tmp_path / "benches" / "new.yaml"
    req = setup_on_start(str(target), cwd=tmp_path)
    assert req is not None and req["target"] == target and "does not exist yet" in req["welcome"]
    target.parent.mkdir()
    target.write_text("name: x\n")
    assert setup_on_start(str(target), cwd=tmp_path) is None


def test_the_console_reopens_the_profile_it_had_open_last(tmp_path, monkeypatch):
    from labconsole.tui.recent import last_profile
    from labconsole.tui.app import start_choice

    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    mine = tmp_path / "profiles" / "lab.yaml"
    mine.write_text("name: lab\nsources:\n  - name: wall\n    driver: simulated\nworkload:\n  sut: null\n")

    loaded, setup, notice = start_choice(None)  # nothing remembered: the built-in bench
    assert loaded.profile.name == "sim-bench" and setup is None and notice is None
    loaded, setup, notice = start_choice(str(mine))  # --profile: opened, and remembered
    assert loaded.profile.name == "lab" and last_profile() == mine.resolve()
    loaded, setup, notice = start_choice(None)
    assert loaded.path.resolve() == mine.resolve() and "had open last" in notice[0]
    assert start_choice(None, replay="some/bundle")[0].profile.name == "sim-bench"  # a replay is not a bench

    mine.write_text("name: lab\nsources:\n  - name: wall\n    drivr: simulated\n")  # broken since
    loaded, setup, notice = start_choice(None)
    assert loaded.profile.name == "sim-bench" and notice[1] == "warning"
    assert "lab.yaml:4" in notice[0] and "drivr" in notice[0]

    mine.unlink()  # gone: the new-user path again (no profile of their own here)
    loaded, setup, notice = start_choice(None)
    assert loaded.profile.name == "sim-bench" and setup is not None and notice is None


def test_a_state_folder_that_cannot_be_written_never_stops_the_console(tmp_path, monkeypatch):
    from labconsole.tui.recent import last_profile, remember_profile

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder would go\n")
    monkeypatch.setenv("LABCONSOLE_STATE_DIR", str(blocker))
    remember_profile(tmp_path / "p.yaml")  # cannot be written: skipped, no exception
    assert last_profile() is None and blocker.read_text().startswith("a file")
    monkeypatch.setenv("LABCONSOLE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "last-profile").write_bytes(b"\xff\xfe garbage\n")
    assert last_profile() is None  # unreadable or pointing nowhere: as if nothing were remembered


async def test_ticked_and_unticked_boxes_differ_without_colour_and_no_regex_is_shown(new_user, monkeypatch):
    """Ticked and unticked offers differ in their characters (a monochrome terminal sees which);
    a bad bench name is refused in words, never with the model's regular expression."""
    from labconsole.tui.screens.setup import SetupScreen
    from labconsole.tui.widgets import TickBox

    attached(monkeypatch, [])
    app = console_for_new_user()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and len([b for b in app.screen.query(TickBox) if not b.disabled]) >= 2, 30, "setup, its rows built")
        setup = app.screen
        boxes = [b for b in setup.query(TickBox) if not b.disabled]
        assert len(boxes) >= 2
        ticked = [b for b in boxes if b.value]
        unticked = [b for b in boxes if not b.value]
        assert ticked and unticked
        # the characters drawn, colour left out
        assert "X" in ticked[0].render().plain and "X" not in unticked[0].render().plain
        unticked[0].value = True
        await pilot.pause(0.1)
        assert "X" in unticked[0].render().plain
        unticked[0].value = False
        await next_step(pilot, setup, "workload")
        await next_step(pilot, setup, "procedure")
        await next_step(pilot, setup, "save")
        await fill(pilot, setup, "meta-name", "two words")
        await wait_for(pilot, lambda: bool(setup.issues), 10, "the name refused")
        shown = issues_text(setup) + screen_text(app)
        assert "name: must be letters, digits, _ . - only (no spaces)" in shown
        assert "pattern" not in shown and "^[" not in shown
