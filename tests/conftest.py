"""Shared fixtures: small profiles written to tmp folders, and the project root."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

# A suite started in the background from a script (`tools/test &`) inherits SIGINT ignored, and
# so would every emulator or console a test starts and then stops with Ctrl-C (an ignored signal
# stays ignored across exec; a handler does not). Give the test processes Python's own handler.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Fakes and helpers the tests share (fake libnvidia-ml, fake MLPerf files, discovery drivers).
HELPERS = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HELPERS))


def pytest_addoption(parser):
    parser.addoption("--device-address", action="store", default=None, help="address of a real meter for hardware tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device-address"):
        return
    skip = pytest.mark.skip(reason="hardware test: give --device-address to run it")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory, monkeypatch):
    """The console remembers the last profile it opened: never in the tester's home. Its locks
    (one console per recordings folder and per instrument, machine-wide by design) live in the
    runtime folder: one per test, so tests on parallel workers (tools/test) never meet each
    other's emulated instruments, while a test and the processes it starts still share them."""
    monkeypatch.setenv("LABCONSOLE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def write_profile(folder: Path, body: str, name: str = "profile.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


SIM_PROFILE = """
name: test-bench
recordings: {recordings}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: {interval}
    options:
      idle_w: 60
      dynamic_w: 140
      noise_w: 0.5
workload:
  type: loadgen
  sut: {sut}
  sut_options: {sut_options}
  scenario: {scenario}
  duration_s: {duration}
{workload_extra}procedure:
  idle_s: {idle}
  ranging: true
"""


@pytest.fixture
def sim_profile(tmp_path):
    """Factory: a simulated-bench profile in tmp_path with small, fast settings."""

    def make(scenario="Offline", duration=2, sut="matmul", sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra="", utilisation="workload"):
        rec = tmp_path / "recordings"
        text = SIM_PROFILE.format(
            recordings=rec, scenario=scenario, duration=duration, sut=sut, sut_options=sut_options, idle=idle, interval=interval,
            workload_extra="".join(f"  {line}\n" for line in workload_extra.splitlines() if line.strip()),
        )
        # what the simulated meter's load follows: the workload's CPU use, or a constant 0..1
        text = text.replace("      noise_w: 0.5\n", f"      noise_w: 0.5\n      utilisation: {utilisation}\n", 1)
        return write_profile(tmp_path, text)

    return make


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run `python -m labconsole ARGS` in a fresh interpreter (the real command line)."""
    import subprocess

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "labconsole", *args], cwd=str(cwd or ROOT), capture_output=True, text=True, timeout=timeout, env=full_env)
