"""power-dev's client as the console runs and follows it (labconsole.workload.powerdev).

Phases are read from a published client.log (tests/fixtures, byte for byte); failures are those
of the real, unmodified client (../shared/vendor/power-dev), reported in its own words.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from labconsole.director.server import free_port
from labconsole.workload.powerdev import OfficialClient, PhaseTracker, PowerDevMissing, find_powerdev, from_checkout, parse_client_line
from powerdev_real import POWER_DEV

PUBLISHED = ROOT / "tests" / "fixtures" / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline" / "performance"


def test_phases_of_a_published_session_from_its_client_log():
    tracker = PhaseTracker()
    seen = []
    for raw in (PUBLISHED / "power" / "client.log").read_text(errors="replace").splitlines():
        line = parse_client_line(raw)
        assert line.level != "OUT" or not raw.startswith("client "), raw
        if tracker.feed(line.message):
            seen.append(tracker.phase)
    assert seen == ["connect", "ntp", "session", "ranging", "testing", "downloads"]
    assert tracker.session == json.loads((PUBLISHED / "power" / "server.json").read_text())["session_name"]


def test_steps_inside_a_mode_do_not_move_the_phase_back():
    t = PhaseTracker()
    for msg in ("Running workload in ranging mode", "Synchronizing with the server and with 10.0.0.1...",
                "Sending command to the server: 'session,s,start,ranging'", "Running the workload 'x'"):
        t.feed(msg)
    assert (t.phase, t.step) == ("ranging", "workload")


def test_finding_power_dev(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCONSOLE_POWERDEV", str(tmp_path))
    with pytest.raises(PowerDevMissing, match="is not a power-dev checkout"):
        find_powerdev()
    monkeypatch.delenv("LABCONSOLE_POWERDEV")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PowerDevMissing, match="pip install git\\+https://github.com/mlcommons/power-dev"):
        find_powerdev()


def test_a_client_that_cannot_reach_the_director_fails_in_its_own_words(tmp_path):
    if not (POWER_DEV / "ptd_client_server" / "client.py").is_file():
        pytest.skip(f"power-dev is not at {POWER_DEV}")
    port = free_port()
    client = OfficialClient(
        from_checkout(POWER_DEV), "127.0.0.1", port, "127.0.0.1", f"{sys.executable} -c pass",
        tmp_path / "lg", tmp_path / "out", "t", tmp_path / "client.log",
    )
    result = client.run(timeout_s=60)
    assert result.status == "failed" and result.exit_code == 1
    assert f"Could not connect to the server 127.0.0.1:{port}" in result.reason  # power-dev's words
    assert result.session is None and result.session_dir is None
    assert "Could not connect" in Path(tmp_path / "client.log").read_text()
