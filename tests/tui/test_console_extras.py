"""What an operator expects of the console besides the procedure (issue 14): the Bench says
what a simulated meter follows; Recordings with columns, sort, filter, notes and delete; replay
as its own screen; plot cursors with energy; the setup wizard checking each answer."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import FIXTURES

SIZE = (80, 24)
MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


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
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def test_the_bench_says_a_simulated_meter_follows_the_benchmark_not_the_machine(sim_profile):
    from labconsole.tui.screens.bench import BenchScreen

    app = console(sim_profile())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BenchScreen), 10, "the Bench")
        await pilot.pause(0.3)
        text = " ".join(screen_text(app).split())
        assert "wall (simulated): follows the benchmark's CPU use" in text, text
