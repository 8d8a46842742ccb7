"""The LoadGen worker: runs one real MLPerf LoadGen test in its own process.

    python -m labconsole.workload.worker --config CONFIG.json --progress-fd N

It is a separate process so that a LoadGen abort or a SUT crash never takes the console down.
Progress goes out as JSON lines on the inherited pipe `N` (five a second: the console's views
refresh at 5 Hz, and every line wakes a thread on each side):
    {"t": <wall s>, "issued": <samples>, "completed": <samples>}
plus a few event lines: {"event": "settings", ...}, {"event": "started"}, {"event": "done"}.
LoadGen's own logs are written into the config's `outdir` (created first: LoadGen does not).

Traps handled (reference/loadgen.md): the outdir must exist; FromConfig is never called (no
"Multiple conf files" error); the audit.config path points at a file that cannot exist, so a
stray one in some working directory never reconfigures the run; trace is off unless asked;
no issue threads are registered from Python.

Teardown (issue 22): once the test returns, completions are shut off (a late one is dropped,
never handed to LoadGen), the SUT's threads are joined (bounded: a SUT that does not stop is
named on stderr and in a "warning" event) and only then are LoadGen's SUT and QSL destroyed.
Every thread that completed samples holds a LoadGen thread-local logger, and LoadGen's global
logger is a C++ static destroyed by exit(): a thread still exiting then crashed the worker
with SIGSEGV after a finished test. So the worker leaves through the interpreter's normal exit
only once those threads are gone for good, and with os._exit (after flushing) otherwise.
`faulthandler` writes a native crash's Python stacks to stderr, which is worker.log.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import gc
import importlib.metadata
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, TextIO

from labconsole.workload import issue_cpu
from labconsole.workload.stalls import TickClock, write_report

PROGRESS_INTERVAL_S = 0.2
# How long the teardown waits for completions under way and for the SUT's threads to stop.
SUT_STOP_TIMEOUT_S = 10.0


class CompletionGate:
    """Lets completions through to LoadGen until closed; after that they are dropped.

    `close` waits (bounded) for the completions already inside LoadGen to return, so once it
    returns True no SUT thread is in LoadGen or can enter it again.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._open = True
        self._inside = 0
        self.dropped = 0  # samples completed after the test (a SUT bug): never sent to LoadGen

    def wrap(self, complete: Callable[[list[int]], None]) -> Callable[[list[int]], None]:
        cv = self._cv

        def gated(ids: list[int]) -> None:
            with cv:
                if not self._open:
                    self.dropped += len(ids)
                    return
                self._inside += 1
            try:
                complete(ids)
            finally:
                with cv:
                    self._inside -= 1
                    if not self._inside:
                        cv.notify_all()

        return gated

    def close(self, timeout: float) -> bool:
        with self._cv:
            self._open = False
            return self._cv.wait_for(lambda: not self._inside, timeout)


def _thread_gone(t: threading.Thread) -> bool:
    """True once `t` has finished, its native exit (thread-local destructors) included.

    Thread.join returns when the Python side is done, a moment before the OS thread has run
    its C++ thread_local destructors (LoadGen's logger among them). On Linux the thread's
    /proc entry goes away only once it has exited; elsewhere that cannot be seen: False.
    """
    if t.is_alive():
        return False
    if t.native_id is None or not sys.platform.startswith("linux"):
        return False
    return not os.path.exists(f"/proc/self/task/{t.native_id}")


def _all_gone(threads: list[threading.Thread], timeout: float) -> bool:
    if threads and not sys.platform.startswith("linux"):
        return False
    deadline = time.monotonic() + timeout
    while not all(_thread_gone(t) for t in threads):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def leave_now(code: int, *streams: TextIO) -> None:
    """Flush and end the process without interpreter finalisation or C++ static destructors."""
    for fh in (*streams, sys.stdout, sys.stderr):
        try:
            fh.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class Progress:
    """Writes progress lines to the pipe every PROGRESS_INTERVAL_S until stopped.

    A tick is kept short: LoadGen's issue thread needs the GIL for every query, so the line is
    formatted by hand (no json) and written straight to the pipe's file descriptor, where the
    GIL is released for the system call. Each tick also checks that it was not late, and each
    write that it did not block (`stalls`): either is reported once it can be.
    """

    def __init__(self, out: TextIO, sut: Any, placement: issue_cpu.WorkerPlacement | None = None):
        self._out = out
        self._placement = placement
        try:
            out.flush()
            self._fd: int | None = out.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None
        self._sut = sut
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._clock = TickClock(PROGRESS_INTERVAL_S)
        self.stage = "starting"  # what the worker is doing: starting, loadgen, teardown

    def _write(self, data: str) -> None:
        raw = data.encode("utf-8")
        with self._lock:
            t0 = time.monotonic()
            try:
                if self._fd is None:
                    self._out.write(data)
                    self._out.flush()
                else:
                    while raw:
                        raw = raw[os.write(self._fd, raw):]
            except (BrokenPipeError, ValueError, OSError):
                # The console is gone (killed): nobody will ever collect this run, so do not
                # leave a benchmark loading the machine behind it.
                os._exit(4)
            blocked = time.monotonic() - t0
        report = write_report(blocked, self.stage)
        if report is not None:
            self.send(report)

    def send(self, obj: dict) -> None:
        self._write(json.dumps(obj, separators=(",", ":")) + "\n")

    def tick(self) -> None:
        sut = self._sut
        self._write('{"t":%.6f,"issued":%d,"completed":%d}\n' % (time.time(), sut.issued, sut.completed))
        late = self._clock.tick_report(self.stage)
        if late is not None:
            self.send(late)

    def _loop(self) -> None:
        placement = self._placement
        if placement is not None:
            placement.keep_off()  # this thread wakes five times a second: not on the issue thread's CPU
            # LoadGen starts its I/O thread as the test begins: off the issue CPU within ~20 ms,
            # within the first tick's interval (these waits are part of it)
            for _ in range(int(PROGRESS_INTERVAL_S / 0.02) - 1):
                if self._stop.wait(0.02) or placement.move_inherited():
                    break
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            self.tick()
            if placement is not None:
                placement.move_inherited()  # LoadGen's I/O thread, started by the issue thread

    def start(self) -> None:
        self._clock = TickClock(PROGRESS_INTERVAL_S)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.tick()


def resolve_settings(cfg: dict, sut: Any) -> dict:
    """Fill in `auto` values from the SUT's measured capacity and latency."""
    scenario = cfg["scenario"]
    out: dict[str, Any] = {}
    needs_capacity = (scenario in ("Offline", "Server") and cfg.get("target_qps", "auto") == "auto")
    needs_latency = scenario in ("SingleStream", "MultiStream") and cfg.get("expected_latency_ms", "auto") == "auto"
    if needs_capacity:
        cap = float(sut.capacity())
        out["measured_capacity_qps"] = cap
        # Offline: above the measured rate, so the one big query lasts >= min_duration even if
        # the SUT runs faster than it did while probed (a busy neighbour went quiet); LoadGen adds
        # 10 % on top. Server: half the capacity keeps p99 latency in bounds.
        out["target_qps"] = max(1.0, cap * (1.5 if scenario == "Offline" else 0.5))
    else:
        out["target_qps"] = float(cfg.get("target_qps", 1.0)) if cfg.get("target_qps", "auto") != "auto" else 1.0
    if needs_latency:
        lat = float(sut.latency_s())
        out["measured_latency_ms"] = lat * 1000
        spq = cfg.get("samples_per_query", 8) if scenario == "MultiStream" else 1
        # A query's samples run on the SUT's lanes in parallel.
        per_query = lat * math.ceil(spq / max(1, sut.lanes))
        # Under-estimate on purpose: LoadGen pre-generates queries from this hint, and too few
        # makes the run end early and INVALID ("Ran out of generated queries").
        out["expected_latency_ms"] = max(0.001, per_query * 1000 * 0.5)
    else:
        v = cfg.get("expected_latency_ms", "auto")
        out["expected_latency_ms"] = float(v) if v != "auto" else 1.0
    return out


def target_samples(cfg: dict, resolved: dict) -> int:
    """How many samples LoadGen issues at least (its effective settings, loadgen.md §1.4), so a
    live view can show completed against it: Offline one query of max(min_query_count,
    1.1 x min_duration x expected QPS) samples; Server max(min_query_count, QPS x duration);
    SingleStream / MultiStream at least min_query_count queries (the time usually decides)."""
    scenario = cfg["scenario"]
    min_q = int(cfg.get("min_query_count") or 100)  # LoadGen's default
    dur = float(cfg["duration_s"])
    if scenario == "Offline":
        return max(min_q, int(1.1 * dur * float(resolved["target_qps"])))
    if scenario == "Server":
        return max(min_q, int(math.ceil(dur * float(resolved["target_qps"]))))
    spq = int(cfg.get("samples_per_query", 8)) if scenario == "MultiStream" else 1
    return min_q * spq


def build_test_settings(lg: Any, cfg: dict, resolved: dict) -> Any:
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, cfg["scenario"])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(round(cfg["duration_s"] * 1000))
    if cfg.get("max_duration_s"):
        ts.max_duration_ms = int(round(cfg["max_duration_s"] * 1000))
    if cfg.get("min_query_count"):
        ts.min_query_count = int(cfg["min_query_count"])
    seeds = cfg.get("seeds") or {}
    ts.qsl_rng_seed = int(seeds.get("qsl", 0))
    ts.sample_index_rng_seed = int(seeds.get("sample_index", 0))
    ts.schedule_rng_seed = int(seeds.get("schedule", 0))
    scenario = cfg["scenario"]
    if scenario == "Offline":
        ts.offline_expected_qps = resolved["target_qps"]
    elif scenario == "Server":
        ts.server_target_qps = resolved["target_qps"]
        ts.server_target_latency_ns = int(cfg.get("latency_bound_ms", 100.0) * 1e6)
    elif scenario == "SingleStream":
        ts.single_stream_expected_latency_ns = int(resolved["expected_latency_ms"] * 1e6)
    elif scenario == "MultiStream":
        ts.multi_stream_expected_latency_ns = int(resolved["expected_latency_ms"] * 1e6)
        ts.multi_stream_samples_per_query = int(cfg.get("samples_per_query", 8))
    ts.server_num_issue_query_threads = 0  # non-zero from Python hangs StartTest
    return ts


def prepare_process(cfg: dict) -> None:
    """What must be set before LoadGen and the SUT's modules load."""
    if cfg["sut"] == "matmul":
        # One BLAS thread per SUT lane: the SUT's own threads are the parallelism, so the
        # load (and the simulated meter's reading) is what the profile asked for.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    for extra in cfg.get("pythonpath") or []:  # a user's python:MODULE:FUNCTION SUT
        if extra not in sys.path:
            sys.path.insert(0, extra)


def log_settings(lg: Any, cfg: dict, outdir: str) -> Any:
    lo = lg.LogOutputSettings()
    lo.outdir = outdir
    lo.copy_summary_to_stdout = False
    ls = lg.LogSettings()
    ls.log_output = lo
    ls.enable_trace = bool(cfg.get("trace", False))
    return ls


def run(cfg: dict, progress_out: TextIO) -> int:
    prepare_process(cfg)
    import mlperf_loadgen as lg

    from labconsole.workload.suts import fatal, make_sut

    outdir = cfg["outdir"]
    os.makedirs(outdir, exist_ok=True)

    def complete(ids: list[int]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    placement = issue_cpu.IssueCpu.from_config(cfg.get("issue_cpu"))
    where = issue_cpu.WorkerPlacement(placement, threading.get_native_id()) if placement is not None else None
    if where is not None:
        where.start()  # before the SUT starts its threads: they inherit every CPU, as under bare LoadGen
    gate = CompletionGate()  # closed by the teardown: no completion reaches LoadGen after it
    sut = make_sut(cfg["sut"], cfg.get("sut_options") or {}, gate.wrap(complete), seed=int((cfg.get("seeds") or {}).get("qsl", 0)) & 0xFFFFFFFF)
    progress = Progress(progress_out, sut, where)
    resolved = resolve_settings(cfg, sut)
    if cfg.get("probe_only"):
        # Measure the SUT for `auto` settings and stop: the console runs this once before the
        # ranging phase, so ranging and testing then run exactly the same load.
        progress.send({"event": "settings", "values": resolved, "loadgen_version": _loadgen_version()})
        stuck = sut.stop(SUT_STOP_TIMEOUT_S)  # no SUT thread has touched LoadGen yet
        if stuck:
            _report_stuck(progress, stuck)
            leave_now(0, progress_out)
        return 0
    ts = build_test_settings(lg, cfg, resolved)
    progress.send({"event": "settings", "values": resolved, "loadgen_version": _loadgen_version()})
    progress.send({"event": "target", "samples": target_samples(cfg, resolved), "min_duration_s": float(cfg["duration_s"]), "scenario": cfg["scenario"]})
    ls = log_settings(lg, cfg, outdir)

    def issue(samples: list) -> None:
        try:
            sut.issue(samples)
        except BaseException as exc:  # noqa: BLE001
            fatal(sut, exc)

    lg_sut = lg.ConstructSUT(issue, sut.flush)
    qsl = lg.ConstructQSL(int(cfg["total_sample_count"]), int(cfg["performance_sample_count"]), lambda i: None, lambda i: None)
    # Everything imported so far lives for the whole run: keep the cyclic garbage collector
    # from walking it again and again while LoadGen waits on the SUT (a full pass over the
    # modules labconsole and pydantic load takes ~10 ms, here ~0.4 ms: tail latency).
    gc.collect()
    gc.freeze()
    progress.stage = "loadgen"
    if where is not None and where.pin_issue_thread():
        print(f"labconsole worker: LoadGen's issue thread on CPU {placement.cpu}; the harness's threads on CPU {', '.join(map(str, placement.rest))}",
              file=sys.stderr, flush=True)
    progress.start()
    progress.send({"event": "started", "t": time.time()})
    absent_audit = os.path.join(outdir, "no-audit-config", "audit.config")
    try:
        lg.StartTestWithLogSettings(lg_sut, qsl, ts, ls, absent_audit)
    finally:
        progress.stop()
        # From here on no ticks: the console stops expecting lines until "done" or "failed".
        progress.stage = "teardown"
        progress.send({"event": "teardown", "t": time.time()})
        clean = teardown(lg, sut, gate, lg_sut, qsl, progress)
    if sut.error is not None:
        print(f"labconsole worker: the SUT raised {type(sut.error).__name__}: {sut.error}", file=sys.stderr)
        progress.send({"event": "failed", "error": f"{type(sut.error).__name__}: {sut.error}"})
        code = 3
    else:
        progress.send({"event": "done", "t": time.time()})
        code = 0
    if not clean:
        # A SUT thread may still be running (or exiting): the interpreter's finalisation and
        # LoadGen's static destructors must not run under it.
        leave_now(code, progress_out)
    return code


def teardown(lg: Any, sut: Any, gate: CompletionGate, lg_sut: Any, qsl: Any, progress: Progress) -> bool:
    """After StartTest: no SUT thread may touch LoadGen once its objects are destroyed.

    Returns True when every SUT thread is gone, so the interpreter may exit normally.
    """
    quiet = gate.close(SUT_STOP_TIMEOUT_S)  # from here on, a completion is dropped
    stuck = sut.stop(SUT_STOP_TIMEOUT_S)
    if gate.dropped:
        print(f"labconsole worker: the SUT completed {gate.dropped} sample(s) after the test had ended; ignored", file=sys.stderr, flush=True)
    if stuck or not quiet:
        _report_stuck(progress, stuck)
        return False  # LoadGen's objects are left alone: the process ends without freeing them
    lg.DestroyQSL(qsl)
    lg.DestroySUT(lg_sut)
    return _all_gone(sut.threads, 2.0)


def _report_stuck(progress: Progress, stuck: list[threading.Thread]) -> None:
    names = ", ".join(t.name for t in stuck) or "a completion inside LoadGen"
    msg = f"the SUT did not stop within {SUT_STOP_TIMEOUT_S:g} s after the test ({names} still running); the worker leaves without it"
    print(f"labconsole worker: {msg}", file=sys.stderr)
    frames = sys._current_frames()
    for t in stuck:
        frame = frames.get(t.ident) if t.ident is not None else None
        if frame is not None:
            print(f"{t.name}, most recent call last:\n" + "".join(traceback.format_stack(frame)).rstrip(), file=sys.stderr)
    sys.stderr.flush()
    progress.send({"event": "warning", "message": msg})


def _loadgen_version() -> str:
    try:
        return importlib.metadata.version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001
        return "unknown"


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM this worker when the console dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(4)  # the console died before we could ask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labconsole.workload.worker")
    ap.add_argument("--config", required=True)
    ap.add_argument("--progress-fd", type=int, default=None)
    ap.add_argument("--parent-pid", type=int, default=None)
    args = ap.parse_args(argv)
    # A native crash (LoadGen, a SUT's extension) then leaves every thread's Python stack on
    # stderr, which the console writes to worker.log.
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # The console sends SIGUSR1 when no progress line has come for a second (workload/stalls.py):
    # every thread's stack then goes to worker.log, even while some thread holds the GIL.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    die_with_parent(args.parent_pid)
    with open(args.config, encoding="utf-8") as fh:
        cfg = json.load(fh)
    out: TextIO
    if args.progress_fd is not None:
        out = os.fdopen(args.progress_fd, "w", buffering=1, encoding="utf-8")
    else:
        out = sys.stdout
    return run(cfg, out)


if __name__ == "__main__":
    sys.exit(main())
