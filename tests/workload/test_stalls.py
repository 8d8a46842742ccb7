"""A stalled LoadGen worker is noticed within a second and recorded with what each side was doing.

The real worker is stopped (SIGSTOP) in the middle of a real LoadGen test for longer than the
threshold, then let go: the console's StallWatch must see the silence, note the worker's
threads as stopped, have the worker's faulthandler write every stack to worker.log, and close
the record when lines come again; the worker's own progress thread must report its late tick.
The pipe and console sides are driven directly with a real pipe and a real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from labconsole.profile import LoadGenWorkload
from labconsole.workload.runner import LoadGenRun
from labconsole.workload.stalls import STALLS_FILE, StallWatch, TickClock, worker_threads, write_report

STOP_S = 2.5  # well past the 1 s threshold, so a console held up by a loaded machine still sees it


def test_a_stopped_worker_is_recorded_from_both_sides(tmp_path: Path):
    wl = LoadGenWorkload(sut="sleep", sut_options={"latency_ms": 1, "concurrency": 4}, scenario="Server", duration_s=4,
                         target_qps=200, min_query_count=100)
    stopped = threading.Event()
    run: LoadGenRun | None = None

    def on_progress(point) -> None:
        # Stop the worker once LoadGen is well under way, from another thread (not the reader's).
        if run is not None and run.proc is not None and point.completed > 100 and not stopped.is_set():
            stopped.set()
            pid = run.proc.pid
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(STOP_S, os.kill, (pid, signal.SIGCONT)).start()

    run = LoadGenRun(wl, tmp_path / "testing", on_progress)
    told: list[tuple[float, str]] = []
    run.on_warning = lambda message: told.append((time.monotonic(), message))
    result = run.run()
    ended = time.monotonic()
    assert stopped.is_set()
    assert result.ok, (result.reason, result.stderr_tail)
    lines = (tmp_path / "testing" / STALLS_FILE).read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines]
    # the stall we made (on a loaded machine the worker may also have stalled by itself)
    seen = [r for r in records if r.get("side") == "worker" and "reported_by" not in r
            and {t["state"] for t in r["worker_threads"].values()} <= {"T", "t"}]
    assert len(seen) == 1, records
    rec = seen[0]
    # the console saw it after about a second, and it lasted about as long as the stop
    assert 1.0 <= rec["silent_s_when_seen"] < STOP_S, rec
    assert STOP_S - 0.3 <= rec["length_s"] <= STOP_S + 3, rec
    assert rec["ended"] == "lines came again"
    # the kernel's view of the worker at that moment: every thread stopped, in do_signal_stop
    assert rec["worker_threads"] and all(t["wchan"] in ("", "do_signal_stop") for t in rec["worker_threads"].values()), rec
    assert rec["pipe_unread_bytes"] == 0 and rec["reader_stack"], rec
    assert rec["loadgen_last_line"], rec  # where LoadGen's detail log had got to
    assert all(v < 0.5 for v in rec["worker_cpu_s_during"].values()), rec
    # where the machine's CPUs went meanwhile, and the console's own share
    assert set(rec["machine_cpu_s_during"]) == {"user", "system", "idle", "iowait", "steal"}, rec
    assert sum(rec["machine_cpu_s_during"].values()) > 0.5 * rec["length_s"] and rec["console_cpu_s_during"] >= 0, rec
    assert len(rec["load_average"]) == 3
    # the worker's stacks, written by its faulthandler on SIGUSR1 once it ran again
    log = (tmp_path / "testing" / "worker.log").read_text(encoding="utf-8", errors="replace")
    assert "most recent call first" in log and "worker.py" in log, log[-2000:]
    # the worker's own account: its progress tick came late, and the process did not run meanwhile
    own = [r for r in records if r.get("reported_by") == "worker" and r.get("late_s", 0) >= STOP_S - 0.5]
    assert own and own[0]["side"] == "worker" and own[0]["stage"] == "loadgen", records
    assert "barely ran" in own[0]["what"]
    # and the operator is told while the phase runs, not only at its end
    assert any("no progress for" in w and STALLS_FILE in w for w in result.warnings), result.warnings
    assert told and told[0][0] < ended - 1.0 and told[0][1] in run.warned_live, told


def test_a_run_without_a_stall_leaves_no_record_and_teardown_is_not_one(tmp_path: Path):
    # The SUT takes longer than the threshold to stop after the test: the teardown writes no
    # progress lines by design, and must not be taken for a stall.
    wl = LoadGenWorkload(sut="sleep", sut_options={"latency_ms": 1500, "concurrency": 2}, scenario="Offline", duration_s=0.5,
                         target_qps=1, min_query_count=1)
    result = LoadGenRun(wl, tmp_path / "testing").run()
    assert result.ok, (result.reason, result.stderr_tail)
    path = tmp_path / "testing" / STALLS_FILE
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    assert not [r for r in records if r.get("side") in ("worker", "pipe") and "reported_by" not in r], records


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_bytes_waiting_in_the_pipe_mean_the_console_is_behind(tmp_path: Path):
    proc = _sleeper()
    rfd, wfd = os.pipe()
    try:
        warned: list[str] = []
        watch = StallWatch(tmp_path, proc.pid, pipe_fd=rfd, ask_stacks=False, warn=warned.append, threshold_s=0.2)
        watch.line({"event": "started"})
        line = b"{\"t\":1,\"issued\":1,\"completed\":1}\n"
        os.write(wfd, line)  # written, never read
        time.sleep(0.3)
        watch.poll()
        watch.finish()
        (rec,) = watch.records
        assert rec["side"] == "pipe" and rec["pipe_unread_bytes"] == len(line) and "reader is behind" in rec["what"], rec
        assert rec["ended"] == "the worker ended"
        assert warned and "behind" in warned[0]
        assert json.loads((tmp_path / STALLS_FILE).read_text()) == rec
    finally:
        os.close(rfd)
        os.close(wfd)
        proc.kill()
        proc.wait()


def test_no_stall_is_opened_outside_the_test_and_a_late_watch_loop_is_the_console_s_own(tmp_path: Path):
    proc = _sleeper()
    try:
        watch = StallWatch(tmp_path, proc.pid, ask_stacks=False, threshold_s=0.2)
        watch.poll()
        time.sleep(0.3)
        watch.poll()  # silent, but LoadGen has not started: start-up is not a stall
        assert [r["side"] for r in watch.records] == ["console"] and watch.records[0]["late_s"] >= 0.3
        watch.line({"event": "started"})
        watch.line({"event": "teardown"})
        time.sleep(0.3)
        watch.poll()
        watch.finish()
        assert [r["side"] for r in watch.records] == ["console", "console"]
    finally:
        proc.kill()
        proc.wait()


def test_the_worker_tells_a_busy_gap_from_an_idle_one():
    clock = TickClock(0.01, threshold_s=0.15)
    assert clock.tick_report("loadgen") is None
    c = time.process_time()
    while time.process_time() - c < 0.3:  # the process computes through the gap (0.3 s of CPU)
        pass
    busy = clock.tick_report("loadgen")
    assert busy is not None and busy["late_s"] > 0.15 and busy["process_cpu_s_during"] >= 0.29, busy
    # on a machine shared with other work the gap may be longer than the CPU it got: the wording
    # follows the share (more than half the gap computing)
    computing = busy["process_cpu_s_during"] > 0.5 * (busy["late_s"] + clock.interval_s)
    assert ("computed through" in busy["what"]) == computing, busy
    time.sleep(0.3)
    idle = clock.tick_report("loadgen")
    assert idle is not None and "barely ran" in idle["what"]
    assert write_report(0.05, "loadgen") is None
    assert write_report(1.5, "loadgen")["side"] == "pipe"


def test_the_kernel_view_of_a_process_names_its_threads():
    threads = worker_threads(os.getpid())
    assert threads and any(t["name"] for t in threads.values()) and all(t["state"] in "RSDTtZIX" for t in threads.values())
    assert worker_threads(2**22 + 12345) == {}
