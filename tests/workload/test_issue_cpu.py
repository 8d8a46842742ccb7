"""LoadGen's issue thread on a CPU of its own in a Server test, the harness's threads off it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from labconsole.profile import LoadGenWorkload, ProfileError, load_profile
from labconsole.workload import issue_cpu
from labconsole.workload.runner import LoadGenRun

ALLOWED = issue_cpu.allowed_cpus()
needs_two = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to keep apart")


def _cpus(pid: int, tid: int) -> set[int]:
    return os.sched_getaffinity(tid) if pid == os.getpid() else _status_cpus(pid, tid)


def _status_cpus(pid: int, tid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    spec = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Cpus_allowed_list"))
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _threads(pid: int) -> dict[int, set[int]]:
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(t)] = _status_cpus(pid, int(t))
        except (OSError, StopIteration):
            continue
    return out


def test_only_a_server_test_on_two_cpus_or_more_is_placed(monkeypatch):
    monkeypatch.setattr(issue_cpu, "allowed_cpus", lambda: (0, 2, 5))
    p = issue_cpu.choose("auto", "Server")
    assert (p.cpu, p.rest, p.allowed) == (5, (0, 2), (0, 2, 5))
    assert issue_cpu.choose(2, "Server").rest == (0, 5)
    assert issue_cpu.IssueCpu.from_config(p.as_config()) == p
    for scenario in ("Offline", "SingleStream", "MultiStream"):
        assert issue_cpu.choose("auto", scenario) is None
    assert issue_cpu.choose("none", "Server") is None
    with pytest.raises(ValueError, match="CPU 3 is not one"):
        issue_cpu.choose(3, "Server")
    monkeypatch.setattr(issue_cpu, "allowed_cpus", lambda: (0,))
    assert issue_cpu.choose("auto", "Server") is None  # one CPU: nothing to keep apart


def test_the_profile_names_a_cpu_the_machine_has(sim_profile):
    assert LoadGenWorkload().issue_cpu == "auto"
    assert LoadGenWorkload(issue_cpu="none").issue_cpu == "none"
    for bad, words in ((True, "auto, none or a CPU number"), (4096, "is not one this machine"), ("first", "'auto' or 'none'")):
        with pytest.raises(Exception) as err:  # noqa: PT011 - pydantic's ValidationError, worded below
            LoadGenWorkload(issue_cpu=bad)
        assert words in str(err.value)
    path = sim_profile(scenario="Server", sut="null", sut_options="{}", workload_extra="issue_cpu: 4096")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert "issue_cpu" in text and f"{path}:" in text and "4096" in text
    assert load_profile(sim_profile(scenario="Server", sut="null", sut_options="{}", workload_extra="issue_cpu: none")).profile.workload.issue_cpu == "none"


@needs_two
def test_the_console_keeps_to_the_other_cpus_while_confined_and_gets_them_back():
    p = issue_cpu.choose("auto", "Server")
    before = {t: os.sched_getaffinity(t) for t in map(int, os.listdir("/proc/self/task"))}
    started: dict[str, set[int]] = {}
    go = threading.Event()

    def later():
        started["inside"] = os.sched_getaffinity(0)
        go.wait(5)

    with issue_cpu.confine_console(p):
        with issue_cpu.confine_console(p):  # a second run at the same time shares the confinement
            pass
        assert all(os.sched_getaffinity(t) == set(p.rest) for t in map(int, os.listdir("/proc/self/task")))
        th = threading.Thread(target=later)
        th.start()
        time.sleep(0.05)
    assert started["inside"] == set(p.rest)  # inherited from its starter
    now = {t: os.sched_getaffinity(t) for t in map(int, os.listdir("/proc/self/task"))}
    assert all(now[t] == cpus for t, cpus in before.items() if t in now)
    assert now[th.native_id] == set(p.allowed)  # started meanwhile: every CPU
    go.set()
    th.join()


def _watch(run: LoadGenRun, seen: list, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        proc = run.proc
        if proc is None or proc.poll() is not None or len(run.progress) < 2:
            continue
        try:
            worker, console = _threads(proc.pid), {t: os.sched_getaffinity(t) for t in map(int, os.listdir("/proc/self/task"))}
        except OSError:  # the worker ended, or a thread did, between the listing and the reading
            continue
        if proc.pid in worker and proc.poll() is None:
            seen.append((proc.pid, worker, console))


@needs_two
@pytest.mark.parametrize("setting", ["auto", "none"])
def test_a_real_server_test_runs_its_issue_thread_alone(tmp_path, setting):
    wl = LoadGenWorkload(sut="null", scenario="Server", duration_s=1.5, min_query_count=100, target_qps=2000, issue_cpu=setting)
    run = LoadGenRun(wl, tmp_path / "testing")
    seen: list = []
    stop = threading.Event()
    th = threading.Thread(target=_watch, args=(run, seen, stop), daemon=True)
    th.start()
    before = os.sched_getaffinity(0)
    result = run.run()
    stop.set()
    th.join()
    assert result.ok, result.reason
    assert os.sched_getaffinity(0) == before  # the console has its CPUs back
    assert seen, "never saw the worker during the test"
    log = (tmp_path / "testing" / "worker.log").read_text()
    if setting == "none":
        assert run.placement is None and "issue thread on CPU" not in log
        assert all(cpus[pid] == set(ALLOWED) for pid, cpus, _ in seen)
        return
    cpu = ALLOWED[-1]
    assert run.placement.cpu == cpu and f"LoadGen's issue thread on CPU {cpu}" in log
    assert '"cpu": %d' % cpu in (tmp_path / "testing" / "workload.json").read_text()  # what was done is on record
    during = [look for look in seen if len(look[1]) > 1]  # not the teardown: the progress and I/O threads are gone by then
    assert during, f"never saw the worker's threads during the test: {seen}"
    pid, worker, console = during[-1]
    assert worker[pid] == {cpu}  # the issue thread (the one that called StartTest)
    others = {t: c for t, c in worker.items() if t != pid}
    assert others and all(cpu not in c for c in others.values()), others  # progress thread, LoadGen's I/O thread
    assert all(c == set(ALLOWED) - {cpu} for c in console.values()), console
