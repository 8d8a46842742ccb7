"""A Training profile in the console: the Bench says what it trains, the Run screen asks for no
LoadGen scenario or duration, a run goes through, and Results shows the energy to train."""

from __future__ import annotations

import json

from conftest import write_profile
from test_tui import console, screen_text, wait_for


def training_profile(tmp_path):
    cmd = json.dumps(["{python}", "-m", "labconsole.workload.standin_trainer", "--seconds", "0.8"])
    return write_profile(tmp_path, f"""
        name: train-console
        recordings: {tmp_path / 'recordings'}
        sources:
          - name: node-a
            driver: simulated
            sample_interval_s: 0.05
            options: {{idle_w: 600, dynamic_w: 2400, noise_w: 2, utilisation: workload}}
        workload:
          type: training
          command: {cmd}
          runs: 3
          pad_s: 0.2
          switches:
            - name: leaf
              estimate_w: 350
        """)


async def test_a_training_profile_runs_in_the_console_and_shows_its_energy(tmp_path):
    from labconsole.tui.screens.results import ResultsScreen
    from labconsole.tui.screens.run import RunScreen

    app = console(training_profile(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "Training stand_in, 3 runs" in screen_text(app), 30, "the Bench's workload line")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), 10, "the Run screen")
        assert not app.screen.query_one("#run-scenario").display and not app.screen.query_one("#run-duration").display
        await pilot.press("s")
        await wait_for(pilot, lambda: app.session is not None and app.session.finished, 120, "the training run")
        assert app.session.status == "completed", app.session.status
        await wait_for(pilot, lambda: "run 3 of 3" in screen_text(app) or "score so far" in screen_text(app), 10, "the runs in the log")
        await pilot.press("v")
        await wait_for(  # the data, then its panels laid out for the new text
            pilot,
            lambda: isinstance(app.screen, ResultsScreen) and app.screen.data is not None and "Energy score" in screen_text(app),
            120,
            "the results, on screen",
        )
        text = screen_text(app)
        assert "energy to train" in text and "Energy score" in text
