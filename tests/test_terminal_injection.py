"""Text from a recording never drives the terminal: control sequences and Rich markup are shown,
not obeyed.

Every string in a real bundle's JSON files and timeline gets a payload of escape sequences (a
window title, a screen clear, an 8-bit CSI, a bell, a bidirectional override) and Rich markup.
`report`, `check`, `compare` and `export` (text and --json) must put no ESC, BEL, CSI or bidi
override on stdout or stderr; the console's Results, Compare and replay screens must render the
markup as the literal text it is, with no control character on the screen.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import run_cli
from real_bundle import record_real_bundle
from test_hostile_types import call

PAYLOAD = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil[b]bold[/b][red]red"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\u202e")
KEEP = {"exit_status", "kind", "wall_ns", "primary_source", "name"}  # keys whose text the reader matches on


def poison(obj, key=None):
    """Every string value (and dict key) in `obj` with the payload appended; a few keys that
    tie records together keep their value and get the payload in a sibling instead."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[k] = v if k in KEEP else poison(v, k if key is not None or k else k)
        if key is None:  # the file's own level: an unknown key with hostile text as well
            out["note" + PAYLOAD] = PAYLOAD
        return out
    if isinstance(obj, list):
        return [poison(v, key) for v in obj]
    if isinstance(obj, str):
        return obj + PAYLOAD
    return obj


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("inject")
    clean = record_real_bundle(where, run_cli)
    bundle = where / "hostile"
    shutil.copytree(clean, bundle)
    data = bundle / "data"
    for name in ("run.json", "environment.json", "calibration.json", "summary.json"):
        obj = json.loads((data / name).read_text())
        obj = poison(obj)
        if name == "run.json":
            obj["profile"]["name"] = "fz" + PAYLOAD
            obj["reason"] = PAYLOAD
        (data / name).write_text(json.dumps(obj))
    lines = []
    for line in (data / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        e["message"] = e["message"] + PAYLOAD
        e["data"] = poison(e.get("data") or {})
        lines.append(json.dumps(e))
    lines.append(json.dumps({"kind": "warning", "message": PAYLOAD, "phase": "testing", "data": {}, "wall_ns": json.loads(lines[-1])["wall_ns"]}))
    (data / "events.jsonl").write_text("\n".join(lines) + "\n")
    return clean, bundle


async def wait_for(pilot, cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def assert_no_control(text: str, what: str) -> None:
    for ch in FORBIDDEN:
        assert ch not in text, (what, repr(ch), text[max(0, text.find(ch) - 200) : text.find(ch) + 50])


def test_no_command_sends_a_control_sequence_from_a_recording(hostile, tmp_path):
    clean, bundle = hostile
    commands = [
        ("report", str(bundle)), ("report", str(bundle), "--json"),
        ("check", str(bundle)), ("check", str(bundle), "--json"),
        ("compare", str(clean), str(bundle)), ("compare", str(bundle), str(clean), "--json"),
        ("export", str(bundle), "--mlperf", str(tmp_path / "out")),
    ]
    shown = ""
    for argv in commands:
        code, out, err = call(*argv)
        assert code in (0, 1), (argv, err)
        assert_no_control(out + err, " ".join(argv[:1]))
        shown += out
    assert "\\x1b]0;pwned" in shown  # shown escaped, not dropped
    # the real command line, through a real pipe
    res = run_cli("compare", str(clean), str(bundle), timeout=120)
    assert res.returncode == 0, res.stderr
    assert_no_control(res.stdout + res.stderr, "compare (subprocess)")
    assert "\\x1b]0;pwned" in res.stdout


async def test_the_console_shows_recorded_text_escaped(hostile, sim_profile):
    from labconsole.profile import load_profile
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.compare import CompareScreen
    from labconsole.tui.screens.results import ResultsScreen

    from labconsole.tui.screens.recordings import RecordingsScreen

    clean, bundle = hostile
    prof = sim_profile()
    text = prof.read_text()
    prof.write_text("\n".join(f"recordings: {bundle.parent}" if ln.startswith("recordings:") else ln for ln in text.splitlines()) + "\n")
    app = LabConsole(load_profile(prof))
    async with app.run_test(size=(200, 60)) as pilot:
        # the list of recordings: its rows come from each run.json
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordingsScreen) and str(bundle) in app.screen.rows, 60, "the list")
        await wait_for(pilot, lambda: "checks" in app.screen.rows[str(bundle)] or app.screen.rows[str(bundle)].get("error"), 90, "the row's checks")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert_no_control(text, "Recordings")
        # the columns are narrow (they fit 80): the name shows from its start, escaped as text
        assert "\\x1b]0;" in text
        app.push_screen(ResultsScreen(bundle))
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and (app.screen.data is not None or app.screen.error), 90, "results")
        assert app.screen.error is None, app.screen.error
        await pilot.pause(0.3)
        text = screen_text(app)
        assert_no_control(text, "Results")
        assert "[b]bold[/b]" in text  # the markup is text on the screen, not styling
        app.pop_screen()
        app.push_screen(CompareScreen(clean, bundle))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and (app.screen.comparison is not None or app.screen.error), 90, "comparison")
        assert app.screen.error is None, app.screen.error
        await pilot.pause(0.3)
        text = screen_text(app)
        assert_no_control(text, "Compare")
        assert "[b]bold[/b]" in text
        app.pop_screen()
        app.start_replay(bundle, speed=float("inf"))
        await wait_for(pilot, lambda: app.session is not None and app.session.kind == "replay" and app.session.finished, 90, "the replay")
        await pilot.pause(0.5)
        log_text = "\n".join(line.text for line in app.screen.query_one("#run-log").lines)
        assert_no_control(log_text + screen_text(app), "replay")
        assert "[b]bold[/b]" in log_text
