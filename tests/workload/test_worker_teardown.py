"""The LoadGen worker's teardown, run many times: no crash after a finished test (issue 22).

Each run calls the worker directly (`python -m labconsole.workload.worker --config ...`) with a
tiny min_duration, so one teardown costs about as much as starting Python: the stress is in
the number of teardowns, with multi-lane SUTs whose threads complete samples, under a CPU
burner that keeps the lanes and LoadGen's threads descheduled at awkward moments.

The quick test runs in the normal suite. The stress test is long (hundreds of teardowns) and
runs only when asked, with the number of teardowns per case (8 cases: 63 make 504):

    LABCONSOLE_TEARDOWN_STRESS=63 pytest tests/workload/test_worker_teardown.py

It can also be run as a script, to count crashes of any copy of the package (an old one too):

    python tests/workload/test_worker_teardown.py --per-case 63 --folder /tmp/stress --pkg-root /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A user's SUT in the spirit of a real framework's: a pool of its own threads, kept for the
# whole run, does the work of each batch; the worker's lane thread completes the samples.
USER_SUT = '''
import time
from concurrent.futures import ThreadPoolExecutor

_POOL = ThreadPoolExecutor(4, thread_name_prefix="user-sut")


def _one(index, latency_ms):
    time.sleep(latency_ms / 1000.0)
    return index


def run(indices, latency_ms=0.2):
    list(_POOL.map(_one, indices, [latency_ms] * len(indices)))
'''

SLEEP = ("sleep", {"latency_ms": 0.2, "concurrency": 8})
USER = ("python:teardown_user_sut:run", {"latency_ms": 0.2})
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
CASES = [(scenario, sut, opts) for scenario in SCENARIOS for sut, opts in (SLEEP, USER)]


def worker_config(scenario: str, sut: str, sut_options: dict, outdir: Path, sut_dir: Path) -> dict:
    """A very short run: min_duration 50 ms and a few queries, every setting given (no probe)."""
    return {
        "probe_only": False,
        "scenario": scenario,
        "sut": sut,
        "sut_options": sut_options,
        "duration_s": 0.05,
        "min_query_count": 8,
        "max_duration_s": None,
        "target_qps": 2000.0,
        "expected_latency_ms": 0.1,
        "latency_bound_ms": 100.0,
        "samples_per_query": 8,
        "total_sample_count": 256,
        "performance_sample_count": 256,
        "seeds": {"qsl": 0, "sample_index": 0, "schedule": 0},
        "trace": False,
        "outdir": str(outdir),
        "pythonpath": [str(sut_dir)],
    }


def write_user_sut(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "teardown_user_sut.py").write_text(textwrap.dedent(USER_SUT).lstrip(), encoding="utf-8")
    return folder


class Burner:
    """`n` processes spinning on the CPU, for at most `limit_s` (they stop themselves), killed on exit."""

    def __init__(self, n: int, limit_s: float):
        self.n = n
        self.limit_s = limit_s
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Burner:
        code = f"import time\nend = time.monotonic() + {self.limit_s!r}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL) for _ in range(self.n)]
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()


def run_worker(cfg_path: Path, pkg_root: Path, log_path: Path, extra_env: dict | None = None, timeout: float = 60.0) -> int:
    """One worker run as the console starts it (stdout and stderr into one log, a progress pipe)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pkg_root)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONFAULTHANDLER", None)
    env.update(extra_env or {})
    rfd, wfd = os.pipe()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labconsole.workload.worker", "--config", str(cfg_path), "--progress-fd", str(wfd)],
            cwd=str(cfg_path.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(wfd,),
        )
    os.close(wfd)
    lines: list[bytes] = []

    def read() -> None:
        with os.fdopen(rfd, "rb") as progress:
            lines.extend(progress.read().splitlines())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang counts as a crash; its log says where it was
        proc.kill()
        code = proc.wait()
    reader.join(5)
    events = [ln for ln in lines if b'"event"' in ln]
    with open(log_path, "ab") as log:
        log.write(b"progress events: " + b" ".join(events) + b"\n")
    return code


def stress(per_case: int, folder: Path, pkg_root: Path = ROOT, burners: int = 2, parallel: int = 2, extra_env: dict | None = None, cases=CASES, budget_s: float = 900.0) -> dict:
    """`per_case` teardowns of every case, `parallel` at a time, under `burners` CPU burners.

    Returns {"runs", "crashes": [...], "failures": [...], "wall_s"}; a crash is a run killed by
    a signal, a failure any other non-zero exit. Each run's log is kept for a crash.
    """
    sut_dir = write_user_sut(folder / "sut")
    jobs = []
    for k, (scenario, sut, opts) in enumerate(cases):
        for i in range(per_case):
            run_dir = folder / f"c{k}-{i}"
            run_dir.mkdir(parents=True)
            cfg = worker_config(scenario, sut, opts, run_dir / "loadgen", sut_dir)
            (run_dir / "workload.json").write_text(json.dumps(cfg), encoding="utf-8")
            jobs.append((scenario, sut, run_dir))
    # Interleave the cases, so a burst of load hits all of them alike.
    jobs.sort(key=lambda j: int(j[2].name.split("-")[1]))
    crashes: list[dict] = []
    failures: list[dict] = []
    t0 = time.monotonic()

    def one(job) -> None:
        scenario, sut, run_dir = job
        if time.monotonic() - t0 > budget_s:
            return
        code = run_worker(run_dir / "workload.json", pkg_root, run_dir / "worker.log", extra_env)
        if code == 0:
            return
        entry = {"scenario": scenario, "sut": sut, "code": code, "log": (run_dir / "worker.log").read_text(errors="replace")[-4000:]}
        (crashes if code < 0 else failures).append(entry)

    with Burner(burners, limit_s=budget_s + 120), ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, jobs))
    ran = sum(1 for _, _, d in jobs if (d / "worker.log").exists())
    return {"runs": ran, "crashes": crashes, "failures": failures, "wall_s": time.monotonic() - t0}


def _describe(res: dict) -> str:
    lines = [f"{res['runs']} runs, {len(res['crashes'])} crashes, {len(res['failures'])} failures, {res['wall_s']:.0f} s"]
    for e in (res["crashes"] + res["failures"])[:5]:
        lines.append(f"--- {e['scenario']} {e['sut']}: exit {e['code']}\n{e['log']}")
    return "\n".join(lines)


def test_twenty_four_teardowns_under_load_never_crash(tmp_path):
    res = stress(3, tmp_path, burners=1, parallel=2, budget_s=120)
    assert res["runs"] == 3 * len(CASES)
    assert not res["crashes"] and not res["failures"], _describe(res)


STRESS = int(os.environ.get("LABCONSOLE_TEARDOWN_STRESS", "0") or 0)


@pytest.mark.slow
@pytest.mark.skipif(STRESS <= 0, reason="long: set LABCONSOLE_TEARDOWN_STRESS=<teardowns per case> to run it")
@pytest.mark.timeout(1800)
def test_hundreds_of_teardowns_under_load_never_crash(tmp_path):
    res = stress(STRESS, tmp_path, burners=2, parallel=2, budget_s=1500)
    assert res["runs"] == STRESS * len(CASES), _describe(res)
    assert not res["crashes"] and not res["failures"], _describe(res)


def test_a_native_crash_leaves_a_python_stack_in_the_worker_log(tmp_path):
    sut_dir = tmp_path / "sut"
    sut_dir.mkdir()
    (sut_dir / "crashing_sut.py").write_text("import faulthandler\n\ndef run(indices):\n    faulthandler._sigsegv()\n", encoding="utf-8")
    cfg = worker_config("Offline", "python:crashing_sut:run", {}, tmp_path / "loadgen", sut_dir)
    (tmp_path / "workload.json").write_text(json.dumps(cfg), encoding="utf-8")
    code = run_worker(tmp_path / "workload.json", ROOT, tmp_path / "worker.log")
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert code == -int(signal.SIGSEGV), log
    assert "Fatal Python error: Segmentation fault" in log
    assert 'crashing_sut.py", line 4 in run' in log and "in _lane" in log


class _FakeLoadGen:
    def __init__(self):
        self.destroyed: list[str] = []

    def DestroyQSL(self, qsl):
        self.destroyed.append("qsl")

    def DestroySUT(self, sut):
        self.destroyed.append("sut")


class _Sink:
    def __init__(self):
        self.lines: list[str] = []

    def write(self, line):
        self.lines.append(line)

    def flush(self):
        pass


def test_completions_after_the_gate_closes_are_dropped_and_close_waits_for_one_under_way():
    from labconsole.workload.worker import CompletionGate

    gate = CompletionGate()
    inside, release, seen = threading.Event(), threading.Event(), []

    def complete(ids):
        seen.extend(ids)
        inside.set()
        release.wait(5)

    gated = gate.wrap(complete)
    t = threading.Thread(target=gated, args=([1, 2],))
    t.start()
    assert inside.wait(5)
    assert gate.close(0.05) is False  # one completion is still inside LoadGen
    release.set()
    t.join(5)
    assert gate.close(1.0) is True
    gated([3])
    assert seen == [1, 2] and gate.dropped == 1


def test_a_sut_thread_that_does_not_stop_is_named_and_loadgen_is_left_alone(monkeypatch, capsys):
    from labconsole.workload import worker
    from labconsole.workload.worker import CompletionGate, Progress, teardown

    monkeypatch.setattr(worker, "SUT_STOP_TIMEOUT_S", 0.1)
    hold = threading.Event()
    stuck = threading.Thread(target=hold.wait, args=(10,), name="sut-lane-3", daemon=True)
    stuck.start()

    class StuckSut:
        issued = completed = 0
        threads = [stuck]

        def stop(self, timeout):
            stuck.join(timeout)
            return [stuck] if stuck.is_alive() else []

    lg, sink = _FakeLoadGen(), _Sink()
    sut = StuckSut()
    try:
        assert teardown(lg, sut, CompletionGate(), object(), object(), Progress(sink, sut)) is False
    finally:
        hold.set()
    assert lg.destroyed == []
    err = capsys.readouterr().err
    assert "the SUT did not stop within 0.1 s after the test (sut-lane-3 still running)" in err
    assert "sut-lane-3, most recent call last:" in err and "in wait" in err  # where it is stuck
    events = [json.loads(line) for line in sink.lines]
    assert events == [{"event": "warning", "message": events[0]["message"]}] and "sut-lane-3" in events[0]["message"]


def test_a_sut_that_stops_is_joined_before_loadgen_is_destroyed():
    from labconsole.workload.suts import SleepOptions, SleepSut
    from labconsole.workload.worker import CompletionGate, Progress, teardown

    gate, done = CompletionGate(), []
    sut = SleepSut(gate.wrap(done.extend), SleepOptions(latency_ms=1, concurrency=4))

    class Sample:
        def __init__(self, i):
            self.id, self.index = i, i

    sut.issue([Sample(i) for i in range(8)])
    lg = _FakeLoadGen()
    assert teardown(lg, sut, gate, object(), object(), Progress(_Sink(), sut)) is True
    assert lg.destroyed == ["qsl", "sut"]
    assert not any(t.is_alive() for t in sut.threads)
    assert len(done) + gate.dropped == 8  # nothing reaches LoadGen after the gate closed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="count worker crashes over many short LoadGen runs")
    ap.add_argument("--per-case", type=int, default=25)
    ap.add_argument("--pkg-root", type=Path, default=ROOT)
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=900.0)
    ap.add_argument("--faulthandler-env", action="store_true", help="PYTHONFAULTHANDLER=1 (for a worker without faulthandler)")
    ap.add_argument("--cases", default="", help="comma-separated case numbers (default all)")
    ap.add_argument("--sleep-concurrency", type=int, default=None, help="lanes of the sleep SUT (default 8)")
    a = ap.parse_args()
    cases = [CASES[int(c)] for c in a.cases.split(",")] if a.cases else CASES
    if a.sleep_concurrency:
        cases = [(sc, sut, dict(opts, concurrency=a.sleep_concurrency) if sut == "sleep" else opts) for sc, sut, opts in cases]
    env = {"PYTHONFAULTHANDLER": "1"} if a.faulthandler_env else None
    result = stress(a.per_case, a.folder, a.pkg_root, a.burners, a.parallel, env, cases, a.budget_s)
    print(_describe(result))
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}))
    (a.folder / "result.json").write_text(json.dumps(result, indent=1))
