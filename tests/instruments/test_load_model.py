"""What a simulated or emulated meter follows: the benchmark's process tree, not the machine.

A real busy process stands for the benchmark's work (a child of the tracked process, as a
harness's own processes are) and another for an unrelated program on the same laptop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import run_cli

from labconsole.instruments.load_model import WorkloadUtilisation, benchmark_workers, describe_utilisation, simulated_load

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")

BUSY = "import time\nt = time.monotonic() + 30\nwhile time.monotonic() < t: pass\n"
# A parent that starts a busy child and waits for it, doing nothing itself.
PARENT = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', sys.argv[1]])\n"


def spawn(*args: str) -> subprocess.Popen:
    # its own process group, so that the teardown stops its children too
    return subprocess.Popen([sys.executable, *args], start_new_session=True)


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def settle(util: WorkloadUtilisation, seconds: float = 2.0) -> float:
    """The utilisation after `seconds`, read every 0.1 s as a meter would (max of the last second)."""
    values = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        values.append(util())
        time.sleep(0.1)
    return max(values[len(values) // 2 :])


def test_the_benchmarks_children_count_and_other_programs_do_not(procs):
    ncpu = os.cpu_count() or 1
    parent = spawn("-c", PARENT, BUSY)  # idles itself; its child works
    other = spawn("-c", BUSY)  # another program on the laptop
    procs += [parent, other]
    util = WorkloadUtilisation()
    util.track(parent.pid)
    seen = settle(util)
    # The child's core shows (within what a shared machine gives it): before, only the idle
    # parent counted and the meter read idle while the harness worked.
    assert seen > 0.25 / ncpu, seen
    lone = WorkloadUtilisation()
    lone.track(other.pid)
    assert settle(lone) > 0.25 / ncpu
    sleeper = spawn("-c", "import time; time.sleep(30)")
    procs.append(sleeper)
    idle = WorkloadUtilisation()
    idle.track(sleeper.pid)  # a benchmark that idles: the busy `other` must not leak in
    assert settle(idle, 1.5) < 0.15 / ncpu + 0.05


def test_a_standalone_emulator_follows_any_labconsole_worker(procs, monkeypatch):
    from labconsole.instruments import load_model

    # A marker of this test's own: other labconsoles' workers on a shared machine stay out of it.
    marker = f"labconsole.workload.worker-{uuid.uuid4().hex}"
    monkeypatch.setattr(load_model, "WORKER_MODULE", marker.encode())
    ncpu = os.cpu_count() or 1
    util = WorkloadUtilisation(any_benchmark=True)
    assert util() == 0.0  # no benchmark running: idle
    procs.append(spawn("-c", BUSY, "-m", marker))  # argv as a worker's
    deadline = time.monotonic() + 5
    while procs[0].pid not in benchmark_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs[0].pid in benchmark_workers()
    assert settle(util) > 0.25 / ncpu
    os.killpg(procs[0].pid, signal.SIGKILL)
    procs[0].wait()
    time.sleep(0.6)
    util()
    assert settle(util, 1.0) == 0.0  # the worker ended: idle again


@pytest.mark.parametrize("name", ["wt310", "ptd", "lpm01a"])
def test_emulators_follow_the_benchmark_by_default(name):
    out = run_cli("emulate", name, "--help", timeout=60)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "workload (default: the benchmark's CPU use" in text


def test_the_bench_says_what_a_simulated_meter_follows():
    assert simulated_load("simulated", {}, None) == "workload"
    assert simulated_load("yokogawa", {}, {"utilisation": "host"}) == "host"
    assert simulated_load("yokogawa", {}, None) is None
    assert "not the whole machine's" in describe_utilisation("workload")
    assert "other programs move it" in describe_utilisation("host")
