"""The LoadGen worker: runs one real MLPerf LoadGen test in its own process.

    python -m labconsole.workload.worker --config CONFIG.json --progress-fd N

It is a separate process so that a LoadGen abort or a SUT crash never takes the console down.
Progress goes out as JSON lines on the inherited pipe `N` (about ten a second):
    {"t": <wall s>, "issued": <samples>, "completed": <samples>}
plus a few event lines: {"event": "settings", ...}, {"event": "started"}, {"event": "done"}.
LoadGen's own logs are written into the config's `outdir` (created first: LoadGen does not).

Traps handled (reference/loadgen.md): the outdir must exist; FromConfig is never called (no
"Multiple conf files" error); the audit.config path points at a file that cannot exist, so a
stray one in some working directory never reconfigures the run; trace is off unless asked;
no issue threads are registered from Python.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from typing import Any, TextIO

PROGRESS_INTERVAL_S = 0.1


class Progress:
    """Writes progress lines to the pipe every PROGRESS_INTERVAL_S until stopped."""

    def __init__(self, out: TextIO, sut: Any):
        self._out = out
        self._sut = sut
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def send(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError):
                # The console is gone (killed): nobody will ever collect this run, so do not
                # leave a benchmark loading the machine behind it.
                os._exit(4)

    def tick(self) -> None:
        self.send({"t": time.time(), "issued": self._sut.issued, "completed": self._sut.completed})

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            self.tick()

    def start(self) -> None:
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


def run(cfg: dict, progress_out: TextIO) -> int:
    if cfg["sut"] == "matmul":
        # One BLAS thread per SUT lane: the SUT's own threads are the parallelism, so the
        # load (and the simulated meter's reading) is what the profile asked for.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    for extra in cfg.get("pythonpath") or []:
        if extra not in sys.path:
            sys.path.insert(0, extra)

    import mlperf_loadgen as lg

    from labconsole.workload.suts import fatal, make_sut

    outdir = cfg["outdir"]
    os.makedirs(outdir, exist_ok=True)

    def complete(ids: list[int]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    sut = make_sut(cfg["sut"], cfg.get("sut_options") or {}, complete, seed=int((cfg.get("seeds") or {}).get("qsl", 0)) & 0xFFFFFFFF)
    progress = Progress(progress_out, sut)
    resolved = resolve_settings(cfg, sut)
    if cfg.get("probe_only"):
        # Measure the SUT for `auto` settings and stop: the console runs this once before the
        # ranging phase, so ranging and testing then run exactly the same load.
        progress.send({"event": "settings", "values": resolved, "loadgen_version": _loadgen_version()})
        sut.stop()
        return 0
    ts = build_test_settings(lg, cfg, resolved)
    progress.send({"event": "settings", "values": resolved, "loadgen_version": _loadgen_version()})

    lo = lg.LogOutputSettings()
    lo.outdir = outdir
    lo.copy_summary_to_stdout = False
    ls = lg.LogSettings()
    ls.log_output = lo
    ls.enable_trace = bool(cfg.get("trace", False))

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
    import gc

    gc.collect()
    gc.freeze()
    progress.start()
    progress.send({"event": "started", "t": time.time()})
    absent_audit = os.path.join(outdir, "no-audit-config", "audit.config")
    try:
        lg.StartTestWithLogSettings(lg_sut, qsl, ts, ls, absent_audit)
    finally:
        progress.stop()
        sut.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(lg_sut)
    if sut.error is not None:
        print(f"labconsole worker: the SUT raised {type(sut.error).__name__}: {sut.error}", file=sys.stderr)
        progress.send({"event": "failed", "error": f"{type(sut.error).__name__}: {sut.error}"})
        return 3
    progress.send({"event": "done", "t": time.time()})
    return 0


def _loadgen_version() -> str:
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001
        return "unknown"


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM this worker when the console dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

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
