"""Switching screens keeps what need not change (issue 15: a key answers at once).

A screen shown before is shown again with its footer's key widgets as they were (Textual's
Footer remounts them all on every switch) and without Textual's fixed pause; its footer is
rebuilt when its keys do change (a run starts: Abort becomes available). Waits on state with
generous deadlines; nothing here is timed.
"""

from __future__ import annotations

from textual.widgets._footer import FooterKey

from test_tui import SIZE, console, screen_text, wait_for


def footer_keys(app) -> list[FooterKey]:
    return list(app.screen.query(FooterKey))


def enabled(app, action: str) -> bool:
    return any(k.action == action and not k.disabled for k in footer_keys(app))


async def test_a_screen_shown_again_keeps_its_footer_and_the_footer_follows_a_run(sim_profile):
    from labconsole.tui.screens.bench import BenchScreen
    from labconsole.tui.screens.run import RunScreen

    app = console(sim_profile(duration=30))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench screen")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and footer_keys(app), 30, "the Run screen and its footer")
        run = app.screen
        await wait_for(pilot, lambda: enabled(app, "start"), 10, "Start in the footer")
        keys = footer_keys(app)
        for _ in range(2):
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "back on the Bench")
            await pilot.press("r")
            await wait_for(pilot, lambda: app.screen is run, 10, "the same Run screen again")
            await pilot.pause()
        assert footer_keys(app) == keys  # the very same widgets: nothing remounted
        assert "Start" in screen_text(app).splitlines()[-1]
        assert not app._batch_count  # the switch's hold on updates was released
        await pilot.press("s")
        await wait_for(pilot, lambda: enabled(app, "abort") and not enabled(app, "start"), 60, "the footer to offer Abort, not Start")
        assert footer_keys(app) != keys
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.session is not None and app.session.finished, 120, "the aborted run to be sealed")
