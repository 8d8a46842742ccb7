"""The Results screen on a published result filed under another scenario than LoadGen ran:
the filed-vs-run notes `report` computes, and the round's rules the checks applied."""

from __future__ import annotations

import io

from rich.console import Console

from conftest import FIXTURES
from labconsole.session.results import load_results
from test_tui import console, screen_text, wait_for

# v1.0 Krai: a SingleStream run filed as Offline (tests/fixtures/mlperf-results/rounds/README.md)
V10 = FIXTURES / "mlperf-results" / "rounds" / "v1.0__Krai__rpi4coral-fan.on-tflite-v2.4.1-ruy__resnet50__offline"


def test_load_results_carries_the_scenario_notes_and_the_rules():
    data = load_results(V10)
    filed, run, notes = data["scenario"]
    assert (filed, run) == ("Offline", "SingleStream")
    assert notes == data["report"]["scenario_notes"] and any("filed as Offline, LoadGen ran SingleStream" in n for n in notes)
    assert data["rules"].rules.name == "v1.0"


async def test_the_results_screen_shows_filed_vs_run_and_the_rules(sim_profile):
    from labconsole.tui.screens.results import ResultsScreen

    app = console(sim_profile())
    async with app.run_test(size=(160, 50)) as pilot:
        app.push_screen(ResultsScreen(V10))
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen.data is not None, 60, "results")
        await pilot.pause(0.2)
        # the metrics table, rendered as the screen draws it (wrapped lines joined)
        rich = Console(width=400, record=True, file=io.StringIO())
        rich.print(app.screen.query_one("#res-metrics").content)
        text = " ".join(rich.export_text().split())
        assert "filed" in screen_text(app)
        assert "Offline (filed; LoadGen ran SingleStream)" in text
        assert "filed as Offline, LoadGen ran SingleStream" in text
        assert "v1.0 (the 2021 checker of round v1.0)" in text
        # samples/J comes from the Offline figure inferred from the SingleStream run: that is the one shown
        assert "result_qps_without_loadgen_overhead = 1.68745 (the Offline figure, inferred from the SingleStream run)" in text
