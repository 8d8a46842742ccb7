"""Faults in the official workflow, two-machine style on loopback: the director (power-dev's
unmodified server with `labconsole emulate ptd`, and its live view) is started by the test as
`labconsole director` would on the meter's machine; the SUT's console runs a profile that points
at it. Each fault ends in a sealed bundle whose reason carries the official tool's own words.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli
from labconsole.bundle.seal import verify
from labconsole.director.live import LiveView
from labconsole.director.server import Director, free_port
from labconsole.emulators.sntp import SntpResponder
from labconsole.mlperf.powerdev_conf import Analyzer
from labconsole.workload.powerdev import from_checkout
from official_bench import need_powerdev_and_ntp_port
from powerdev_real import POWER_DEV

# power-dev asks 127.0.0.1:123 for the time: tools/test runs these (sntp123) one after another, not in parallel
pytestmark = pytest.mark.sntp123

SUT_PROFILE = """\
name: sut-official
recordings: {rec}
sources:
  - name: wall
    driver: director
    sample_interval_s: 1.0
workload:
  official: true
  sut: null
  scenario: Offline
  duration_s: 10
  target_qps: 2000
director:
  address: 127.0.0.1
  port: {port}
  live_port: {live}
  ntp_server: 127.0.0.1
  label: fault
  min_free_mb: 1
"""


def _bundle(proc) -> Path:
    return Path(proc.stdout.strip().splitlines()[-1])


def test_a_director_that_does_not_answer_stops_the_run_sealed(tmp_path):
    prof = tmp_path / "sut.yaml"
    prof.write_text(SUT_PROFILE.format(rec=tmp_path / "rec", port=free_port(), live=free_port()))
    proc = run_cli("run", "--profile", str(prof), env={"LABCONSOLE_POWERDEV": str(POWER_DEV)}, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    bundle = _bundle(proc)
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed" and "the director's live view at http://127.0.0.1:" in run["reason"]
    assert verify(bundle).sealed and not verify(bundle).problems


@pytest.fixture
def director(tmp_path):
    need_powerdev_and_ntp_port()
    sntp = SntpResponder("127.0.0.1", 123).start()
    d = Director(from_checkout(POWER_DEV), tmp_path / "director", "127.0.0.1", "127.0.0.1", free_port(), "emulate", [Analyzer(49, "emulated", free_port())], ptd_args=["--seed", "3"])
    live = None
    try:
        d.start()
        live = LiveView(d, "127.0.0.1", 0).start()
        yield d, live
    finally:
        if live is not None:
            live.stop()
        d.stop()
        sntp.stop()


def test_the_director_dying_mid_run_is_reported_in_power_devs_words_and_sealed(director, tmp_path):
    d, live = director
    prof = tmp_path / "sut.yaml"
    prof.write_text(SUT_PROFILE.format(rec=tmp_path / "rec", port=d.listen_port, live=live.port))
    killed = threading.Event()

    def kill_when_measuring() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            if d.status.state == "ranging":
                time.sleep(1.0)
                os.killpg(d.proc.pid, signal.SIGKILL)  # the director machine loses power-dev's server (and its PTDaemon)
                killed.set()
                return
            time.sleep(0.1)

    t = threading.Thread(target=kill_when_measuring, daemon=True)
    t.start()
    proc = run_cli("run", "--profile", str(prof), env={"LABCONSOLE_POWERDEV": str(POWER_DEV)}, timeout=240)
    killed.set()
    t.join(timeout=5)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    bundle = _bundle(proc)
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed"
    assert "power-dev's client failed" in run["reason"] and "during ranging" in run["reason"]
    # the client's own words about losing the server, verbatim in the run's record
    said = " ".join(run["official"]["client_errors"]) + " " + run["reason"]
    assert "server" in said.lower() and ("disconnected" in said.lower() or "connection" in said.lower()), said
    assert (bundle / "data" / "official-client.log").stat().st_size > 0
    assert verify(bundle).sealed and not verify(bundle).problems
    check = run_cli("check", str(bundle), "--json", env={"LABCONSOLE_POWERDEV": str(POWER_DEV)})
    assert check.returncode == 1
    got = json.loads(check.stdout)
    names = {c["name"]: c for c in got["checks"]}
    assert names["manifest"]["status"] == "pass" and names["run status"]["status"] == "fail"


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_ptdaemon_dying_mid_run_is_reported_with_the_servers_words(director, tmp_path):
    d, live = director
    prof = tmp_path / "sut.yaml"
    prof.write_text(SUT_PROFILE.format(rec=tmp_path / "rec", port=d.listen_port, live=live.port))
    done = threading.Event()

    def kill_ptd_when_measuring() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.is_set():
            if d.status.state == "ranging":
                time.sleep(1.0)
                for pid in _children(d.proc.pid):  # the server's PTDaemon (our emulator), not the server
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    t = threading.Thread(target=kill_ptd_when_measuring, daemon=True)
    t.start()
    proc = run_cli("run", "--profile", str(prof), env={"LABCONSOLE_POWERDEV": str(POWER_DEV)}, timeout=240)
    done.set()
    t.join(timeout=5)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    run = json.loads((_bundle(proc) / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed" and "power-dev's client failed" in run["reason"]
    # the director's server said what happened to its PTDaemon, and the SUT's record carries it
    assert "the director's server said:" in run["reason"], run["reason"]
    assert d.status.errors, "power-dev's server logged no error"
    assert verify(_bundle(proc)).sealed
