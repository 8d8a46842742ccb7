"""1. Harness overhead: the null SUT through labconsole's LoadGen worker vs bare LoadGen.

labconsole's way is the real path of a phase: `LoadGenRun` spawns `labconsole.workload.worker`
(the real LoadGen in its own process, progress lines five times a second on a pipe), while this
process, like the console, runs a recorder with a simulated meter sampling at 100 Hz into a
stream, turns every progress point into an event on the bus, and a console thread renders a
live line from the events and the ring once a second. The anchor is bare `mlperf_loadgen` with
the zero-work SUT of reference/loadgen.md (Appendix A) in a fresh process with the same
settings (`bench/bare_loadgen.py`). Runs alternate.

- Offline: LoadGen's own `result_samples_per_second`, labconsole / bare.
- Server: the highest target QPS that stays VALID, found by the same bracketing search both
  ways (double or halve until the result flips, then bisect), the two searches interleaved step
  by step so the machine's noise hits both alike.
- Server tail latency at a fixed 10 k and 100 k QPS: LoadGen's own p99 and p99.9, labconsole
  (worker + meter + live view) against bare LoadGen, many short alternating runs, medians. Where
  the time goes: the run-queue wait of LoadGen's issue thread (the time it was ready to issue a
  query but another thread had its CPU), read from /proc/PID/task/TID/schedstat over the test
  itself, for bare LoadGen, the worker alone and the worker with the console beside it. A
  query's latency starts at its scheduled time, so every microsecond the issue thread waits for a
  CPU is added to the queries behind it: that wait is what separates the three. And what sets
  p99.9 on a 2-vCPU machine: the times the issue thread is away for over 1 ms for any reason
  (bench/absences.py; a probe in both ways' processes notes each issue call), compared with
  bare's round by round.
- Stalls: every labconsole run is watched as the console watches a phase (workload/stalls.py);
  a worker silent for more than a second is counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench import absences
from bench.core import ROOT, ChildCpu, Context, CpuClock, Result, alternate, median
from labconsole import events as ev
from labconsole.session.decimate import minmax_pairs
from labconsole.session.live import SeriesHistory, qps_series
from labconsole.events import EventBus
from labconsole.workload.loadgen_log import parse_detail_log
from labconsole.instruments.load_model import process_cpu_seconds
from labconsole.profile import LoadGenWorkload
from labconsole.recorder import Recorder
from labconsole.sources.simulated import SimulatedOptions, SimulatedSource
from labconsole.workload.runner import LoadGenRun, ProgressPoint

RATIO_TARGET = 0.95
OFFLINE_QPS = 1e6  # offline_expected_qps: one query of 1.1 x this x duration samples (as in the reference)
SERVER_START_QPS = 200_000.0
FIXED_QPS = 100_000.0  # below the knee both ways: compares cost per query and tail latency, not luck
TAIL_QPS = (10_000.0, 100_000.0)  # the Server tail-latency rows
TAIL_TARGET = 1.1  # labconsole's p99 and p99.9 at most this times bare LoadGen's
PLOT_COLUMNS = 160  # the live view's plot width (dot columns of a 160-column terminal, as the Run screen)


class IssueThreadWait:
    """Run-queue wait and CPU of a LoadGen process's issue thread over the test itself.

    With server_num_issue_query_threads = 0 LoadGen issues from the thread that called
    StartTest, the process's main thread (tid = pid), in bare LoadGen and in the worker alike.
    /proc/PID/task/PID/schedstat gives its CPU time, its time waiting on a run queue (ready,
    but another thread had the CPU) and its time slices. Polled from a thread; the first reading
    is taken once LoadGen has opened its detail log (the test has begun), the last one before
    the process exits, so start-up and teardown are left out."""

    def __init__(self, loadgen_dir: Path, interval_s: float = 0.25):
        self.loadgen_dir = loadgen_dir
        self.interval_s = interval_s
        self.pid: int | None = None
        self.first: tuple[float, int, int] | None = None
        self.last: tuple[float, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="issue-thread-wait", daemon=True)

    def _read(self) -> tuple[float, int, int] | None:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/schedstat", encoding="ascii") as fh:
                run_ns, wait_ns, _ = (int(x) for x in fh.read().split())
        except (OSError, ValueError, TypeError):
            return None
        return time.monotonic(), run_ns, wait_ns

    def _loop(self) -> None:
        detail = self.loadgen_dir / "mlperf_log_detail.txt"
        while not self._stop.wait(self.interval_s):
            if self.pid is None or not detail.exists():
                continue
            r = self._read()
            if r is None:
                continue
            if self.first is None:
                self.first = r
            self.last = r

    def __enter__(self) -> "IssueThreadWait":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def figures(self) -> dict:
        """ms of run-queue wait and of CPU per second of the test (None if not seen long enough)."""
        if self.first is None or self.last is None or self.last[0] - self.first[0] < 0.5:
            return {"issue_wait_ms_per_s": None, "issue_cpu_ms_per_s": None}
        span = self.last[0] - self.first[0]
        return {"issue_wait_ms_per_s": (self.last[2] - self.first[2]) / 1e6 / span,
                "issue_cpu_ms_per_s": (self.last[1] - self.first[1]) / 1e6 / span}


def workload(scenario: str, qps: float, duration_s: float) -> LoadGenWorkload:
    return LoadGenWorkload(sut="null", scenario=scenario, duration_s=duration_s, min_query_count=100, target_qps=qps)


def _outcome(loadgen_dir: Path, wall_s: float, how: str) -> dict:
    detail = parse_detail_log(loadgen_dir / "mlperf_log_detail.txt")
    perf = detail.performance_metric()
    return {
        "how": how,
        "validity": detail.validity,
        "metric": perf[0] if perf else None,
        "value": perf[1] if perf else None,
        "target_qps": detail.get("requested_server_target_qps") or detail.get("requested_offline_expected_qps"),
        "p99_ms": (detail.get("result_99.00_percentile_latency_ns") or 0) / 1e6,
        "p999_ms": (detail.get("result_99.90_percentile_latency_ns") or 0) / 1e6,
        "samples": detail.get("result_query_count") if detail.scenario == "Server" else detail.get("generated_samples_per_query"),
        "invalid_reason": detail.get("result_invalid_reason"),
        "wall_s": round(wall_s, 2),
    }


class ConsoleSide:
    """What the console process does while a phase runs: record, follow progress, render."""

    def __init__(self, folder: Path):
        self.bus = EventBus()
        self.src = SimulatedSource("wall", SimulatedOptions(seed=1), sample_interval_s=0.01)
        self.src.open()
        self.rec = Recorder([(self.src, "stop")], self.bus)
        self.rec.begin_segment("testing", folder)
        self.lines = 0
        self._q = self.bus.subscribe()
        self._stop = threading.Event()
        self._ui = threading.Thread(target=self._render, name="bench-console", daemon=True)
        self._last: ProgressPoint | None = None
        self.runner: LoadGenRun | None = None
        self.first_cpu: tuple[float, int] | None = None
        self.last_cpu: tuple[float, int] | None = None

    def test_cpu_per_sample(self) -> float | None:
        if self.first_cpu is None or self.last_cpu is None or self.last_cpu[1] <= self.first_cpu[1]:
            return None
        return (self.last_cpu[0] - self.first_cpu[0]) / (self.last_cpu[1] - self.first_cpu[1])

    def on_progress(self, point: ProgressPoint) -> None:
        # The worker's CPU between its first and last progress points (the test itself, without
        # the interpreter's start), from /proc like the simulated meter's load model.
        if self.runner is not None and self.runner.proc is not None:
            cpu = process_cpu_seconds(self.runner.proc.pid)
            if cpu is not None:
                if self.first_cpu is None:
                    self.first_cpu = (cpu, point.completed)
                self.last_cpu = (cpu, point.completed)
        self._last = point
        self.bus.emit(ev.PROGRESS, f"{point.completed} completed", phase="testing", issued=point.issued, completed=point.completed)

    def _render(self) -> None:
        """The live view without the terminal: what the Run screen's 5 Hz tick computes (the
        power history synced from the ring and decimated to the plot's columns, the QPS series
        from the progress points, the status line), events drained as they come."""
        history = SeriesHistory()
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                self._q.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
            if time.monotonic() - last >= 0.2:
                last = time.monotonic()
                ring = self.rec.rings.get(("wall", "main"))
                if ring is not None:
                    history.sync(ring)
                    minmax_pairs(history.t, history.y, 2 * PLOT_COLUMNS)
                points = list(self.runner.progress) if self.runner is not None else []
                if len(points) > 1:
                    qps_series(np.array([p.wall_ns for p in points[-600:]]), np.array([p.completed for p in points[-600:]]))
                p = self._last
                _line = f"completed {p.completed if p else 0}  {history.last_valid():.1f} W"
                self.lines += 1

    def __enter__(self) -> "ConsoleSide":
        self.rec.start()
        self._ui.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ui.join(timeout=5)
        self.rec.stop()
        self.src.close()


def run_labconsole(scenario: str, qps: float, duration_s: float, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ConsoleSide(folder) as console, CpuClock() as console_cpu, ChildCpu() as worker_cpu, IssueThreadWait(folder / "loadgen") as wait:
        runner = LoadGenRun(workload(scenario, qps, duration_s), folder, console.on_progress, scenario=scenario, duration_s=duration_s)
        console.runner = runner
        threading.Thread(target=_follow_pid, args=(runner, wait), daemon=True).start()
        result = runner.run()
    if not result.ok:
        raise RuntimeError(f"labconsole's LoadGen run {result.status}: {result.reason} {result.stderr_tail[-5:]}")
    out = _outcome(folder / "loadgen", time.perf_counter() - t0, "labconsole")
    out["progress_points"] = len(runner.progress)
    out["meter_samples"] = console.rec.written
    out["process_cpu_s"] = worker_cpu.cpu_s
    per = console.test_cpu_per_sample()
    out["loadgen_cpu_us_per_sample"] = 1e6 * per if per is not None else None
    out["console_cpu_pct"] = 100.0 * console_cpu.cpu_s / console_cpu.wall_s
    out["stalls"] = [r for r in (runner.stalls.records if runner.stalls else []) if r.get("side") != "console"]
    out["issue_cpu"] = runner.placement.as_config() if runner.placement is not None else None  # what the harness did (workload/issue_cpu.py)
    out.update(wait.figures())
    return out


def _placement(runs: list[dict]) -> str:
    """How the runs placed LoadGen's issue thread, in words."""
    seen = {(p["cpu"], tuple(p["rest"])) if (p := r.get("issue_cpu")) else None for r in runs}
    if seen == {None}:
        return "LoadGen's issue thread not placed (issue_cpu none, one CPU, or not Server)"
    if len(seen) == 1:
        cpu, rest = next(iter(seen))
        return f"LoadGen's issue thread on CPU {cpu}, the console's and the harness's threads on {', '.join(map(str, rest))} (workload.issue_cpu)"
    return f"LoadGen's issue thread placed differently between runs: {sorted(map(str, seen))}"


def run_worker_alone(scenario: str, qps: float, duration_s: float, folder: Path) -> dict:
    """The worker with no console beside it (no meter, no live view): the breakdown's middle step."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with IssueThreadWait(folder / "loadgen") as wait:
        runner = LoadGenRun(workload(scenario, qps, duration_s), folder, None, scenario=scenario, duration_s=duration_s)
        threading.Thread(target=_follow_pid, args=(runner, wait), daemon=True).start()
        result = runner.run()
    if not result.ok:
        raise RuntimeError(f"labconsole's LoadGen run {result.status}: {result.reason} {result.stderr_tail[-5:]}")
    out = _outcome(folder / "loadgen", time.perf_counter() - t0, "worker alone")
    out["stalls"] = [r for r in (runner.stalls.records if runner.stalls else []) if r.get("side") != "console"]
    out.update(wait.figures())
    return out


def _follow_pid(runner: LoadGenRun, wait: IssueThreadWait) -> None:
    """Hand the worker's pid to the wait meter once the runner has spawned it."""
    for _ in range(2000):
        if runner.proc is not None:
            wait.pid = runner.proc.pid
            return
        time.sleep(0.005)


def run_bare(scenario: str, qps: float, duration_s: float, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    wl = workload(scenario, qps, duration_s)
    cfg = {
        "scenario": scenario, "duration_s": duration_s, "min_query_count": wl.min_query_count, "target_qps": qps,
        "latency_bound_ms": wl.latency_bound_ms, "seeds": wl.seeds.model_dump(), "total_sample_count": wl.total_sample_count,
        "performance_sample_count": wl.performance_sample_count, "outdir": str((folder / "loadgen").resolve()),
    }
    (folder / "bare.json").write_text(json.dumps(cfg), encoding="utf-8")
    t0 = time.perf_counter()
    with ChildCpu() as cpu, IssueThreadWait(folder / "loadgen") as wait:
        proc = subprocess.Popen([sys.executable, "-m", "bench.bare_loadgen", str(folder / "bare.json")], cwd=str(ROOT),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait.pid = proc.pid
        try:
            stdout, stderr = proc.communicate(timeout=30 * duration_s + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"bare LoadGen failed ({proc.returncode}): {stderr[-800:]}")
    out = _outcome(folder / "loadgen", time.perf_counter() - t0, "bare")
    out["process_cpu_s"] = cpu.cpu_s
    test = json.loads(stdout.strip().splitlines()[-1])
    out["loadgen_cpu_us_per_sample"] = 1e6 * test["test_cpu_s"] / out["samples"] if out.get("samples") else None
    out.update(wait.figures())
    return out


def _iqr(values: list[float]) -> str:
    """The middle half of a figure's runs, as 'lo-hi ms': how far apart runs of the same way land."""
    v = sorted(x for x in values if x is not None)
    if len(v) < 4:
        return "n/a"
    return f"{v[len(v) // 4]:.3g}-{v[(3 * len(v)) // 4]:.3g} ms"


def _clear(folder: Path) -> Path:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return folder


def server_search(run_fn, start: float, steps: int, tol: float):
    """Generator: yields the next QPS to try, receives its validity; returns the best VALID."""
    lo = hi = None
    q = start
    for _ in range(steps):
        valid = yield q
        if valid:
            lo = q
            q = q * 2 if hi is None else (lo + hi) / 2
        else:
            hi = q
            q = q / 2 if lo is None else (lo + hi) / 2
        if lo is not None and hi is not None and hi / lo <= 1 + tol:
            break
    return lo


def add_absence_rows(res: Result, k: str, runs: dict[str, list[dict]]) -> None:
    """What sets the tail here: how often LoadGen's issue thread is away for over 1 ms, a
    machine's doing or the harness's; were the harness to cause absences, it would have more
    than bare round after round."""
    one, two = absences.paired(runs["labconsole"], runs["bare"], 1.0), absences.paired(runs["labconsole"], runs["bare"], 2.0)
    if not one["rounds"]:
        return
    lab = absences.summarize(runs["labconsole"])
    bare = absences.summarize(runs["bare"])
    res.add(f"Server @ {k} QPS: LoadGen issue thread's absences over 1 ms, worker + meter + live view", one["ours_median_per_s"], "/s",
            anchor=one["anchor_median_per_s"], anchor_label="bare LoadGen",
            note=f"what sets p99.9: gaps of over 1 ms between two issue calls (bench/absences.py), median of the runs' rates; labconsole had more in "
                 f"{one['rounds_ours_more']} of {one['rounds']} alternating rounds, fewer in {one['rounds_ours_fewer']} (sign test p {one['sign_test_p']:.2g}); "
                 f"over 2 ms: more in {two['rounds_ours_more']}, fewer in {two['rounds_ours_fewer']} (p {two['sign_test_p']:.2g}); "
                 f"each run's count {lab['absences_over_1ms_each_run']} against {bare['absences_over_1ms_each_run']}")


def run(ctx: Context) -> Result:
    res = Result("harness", 1, "Harness overhead: null SUT through labconsole's LoadGen worker vs bare LoadGen")
    off_dur = ctx.pick(10.0, 1.0)
    off_reps = ctx.pick(3, 1)
    srv_dur = ctx.pick(10.0, 1.0)
    srv_steps = ctx.pick(6, 3)
    srv_tol = ctx.pick(0.05, 0.25)
    srv_reps = ctx.pick(2, 1)
    base = ctx.folder("harness")
    ways = {"labconsole": run_labconsole, "bare": run_bare}

    ctx.log(f"Offline, offline_expected_qps {OFFLINE_QPS:g}, min duration {off_dur:g} s, {off_reps} alternating runs each")
    def offline_run(how: str):
        def run() -> dict:
            out = ways[how]("Offline", OFFLINE_QPS, off_dur, _clear(base / f"offline-{how}"))
            ctx.log(f"Offline {how}: {out['validity']} {out['value']:,.0f} samples/s")
            return out
        return run

    offline = alternate({how: offline_run(how) for how in ways}, off_reps)
    lab, bare = median([r["value"] for r in offline["labconsole"]]), median([r["value"] for r in offline["bare"]])
    res.add("Offline samples/s (LoadGen's result)", lab, "/s", anchor=bare, anchor_label="bare LoadGen",
            target=f">= {RATIO_TARGET} x bare", met=bare > 0 and lab / bare >= RATIO_TARGET)

    tail_dur = ctx.pick(3.0, 1.5)
    tail_reps = ctx.pick(10, 4)
    tail_ways = {"labconsole": run_labconsole, "bare": run_bare}
    if not ctx.quick:  # the breakdown's middle step
        tail_ways["worker alone"] = run_worker_alone
    tail: dict[float, dict[str, list[dict]]] = {}
    for q in TAIL_QPS:
        ctx.log(f"Server at a fixed {q:,.0f} QPS, {tail_dur:g} s: p99, p99.9 and the issue thread's run-queue wait, {tail_reps} alternating runs each way")

        def tail_run(how: str, q: float = q):
            def run() -> dict:
                name = f"tail-{how.replace(' ', '-')}"
                out = absences.noted(tail_ways[how], base / f"{name}.jsonl")("Server", q, tail_dur, _clear(base / name))
                wait = out.get("issue_wait_ms_per_s")
                ctx.log(f"Server {how} @ {q:,.0f}: {out['validity']}, p99 {out['p99_ms']:.3f} ms, p99.9 {out['p999_ms']:.3f} ms, "
                        f"issue thread waited {wait if wait is None else round(wait, 2)} ms/s")
                return out
            return run

        with absences.probe_in_children():
            tail[q] = alternate({how: tail_run(how) for how in tail_ways}, tail_reps)
        runs = tail[q]
        k = f"{q / 1e3:g} k"
        for pct, key in (("p99", "p99_ms"), ("p99.9", "p999_ms")):
            lab, bare = median([r[key] for r in runs["labconsole"]]), median([r[key] for r in runs["bare"]])
            res.add(f"Server @ {k} QPS: {pct} latency, worker + meter + live view", lab, "ms", anchor=bare, anchor_label="bare LoadGen",
                    target=f"<= {TAIL_TARGET} x bare", met=bare > 0 and lab / bare <= TAIL_TARGET,
                    note=f"median of {tail_reps} runs of {tail_dur:g} s each way, alternating; interquartile range "
                         f"{_iqr([r[key] for r in runs['labconsole']])} (labconsole), {_iqr([r[key] for r in runs['bare']])} (bare)"
                         + (f"; the worker alone: {median([r[key] for r in runs['worker alone']]):.3f} ms" if "worker alone" in runs else ""))
        add_absence_rows(res, k, runs)
        waits = {how: median([r["issue_wait_ms_per_s"] for r in runs[how]]) for how in tail_ways}
        res.add(f"Server @ {k} QPS: LoadGen issue thread's run-queue wait, worker + meter + live view", waits["labconsole"], "ms/s",
                anchor=waits["bare"], anchor_label="bare LoadGen",
                note="where the time goes: ready to issue but without a CPU, per second of test"
                     + (f"; the worker alone {waits['worker alone']:.2f} ms/s" if "worker alone" in waits else "")
                     + f"; {_placement(runs['labconsole'])}")
    fixed = {"labconsole": tail[FIXED_QPS]["labconsole"], "bare": tail[FIXED_QPS]["bare"]}
    lab_us = median([r["loadgen_cpu_us_per_sample"] for r in fixed["labconsole"]])
    bare_us = median([r["loadgen_cpu_us_per_sample"] for r in fixed["bare"]])
    res.add(f"Server @ {FIXED_QPS / 1e3:g} k QPS: LoadGen process CPU per query, during the test", lab_us, "us", anchor=bare_us, anchor_label="bare LoadGen",
            target="<= 1/0.95 x bare", met=lab_us <= bare_us / RATIO_TARGET,
            note="the issue thread's cost per query sets the Server knee; robust to the machine's load")
    res.add("console process CPU while LoadGen runs (meter, progress, live view)",
            median([r["console_cpu_pct"] for r in offline["labconsole"] + fixed["labconsole"]]), "%")

    ctx.log(f"Server: highest VALID target QPS, min duration {srv_dur:g} s, searches interleaved, {srv_reps} repetition(s)")
    server: dict[str, list] = {"labconsole": [], "bare": []}
    best: dict[str, list[float | None]] = {"labconsole": [], "bare": []}
    for rep in range(srv_reps):
        gens = {how: server_search(None, SERVER_START_QPS, srv_steps, srv_tol) for how in ways}
        nxt = {how: next(g) for how, g in gens.items()}
        done: dict[str, float | None] = {}
        while len(done) < len(ways):
            order = [h for h in (list(ways) if rep % 2 == 0 else list(ways)[::-1]) if h not in done]
            for how in order:
                q = nxt[how]
                out = ways[how]("Server", q, srv_dur, _clear(base / f"server-{how}"))
                out["rep"] = rep
                server[how].append(out)
                valid = out["validity"] == "VALID"
                ctx.log(f"Server {how} @ {q:,.0f} QPS: {out['validity']} (p99 {out['p99_ms']:.2f} ms)")
                try:
                    nxt[how] = gens[how].send(valid)
                except StopIteration as stop:
                    done[how] = stop.value
        for how in ways:
            best[how].append(done[how])
    lab_q = median([q for q in best["labconsole"] if q is not None]) if any(best["labconsole"]) else None
    bare_q = median([q for q in best["bare"] if q is not None]) if any(best["bare"]) else None
    met = None if not (lab_q and bare_q) else lab_q / bare_q >= RATIO_TARGET
    res.add("Server: highest VALID target QPS", lab_q, "QPS", anchor=bare_q, anchor_label="bare LoadGen",
            target=f">= {RATIO_TARGET} x bare", met=met)
    # Server runs (the fixed-rate ones and the search) are where the unexplained stall was seen,
    # and a Server worker's progress thread always gets the GIL between queries: any silence
    # there is a stall. Offline is counted apart: LoadGen hands its one query (11 M samples
    # here) to Python as a list that pybind11 builds with the GIL held for seconds, so the
    # progress thread is silent then by design (bare LoadGen does the same, unwatched).
    watched = [r for runs in [*[t[h] for t in tail.values() for h in t if h != "bare"], server["labconsole"]] for r in runs]
    stalls = [st for r in watched for st in r.get("stalls", []) if "reported_by" not in st]
    res.add("worker stalls longer than 1 s (no progress line), Server runs", len(stalls), "", target="0", met=not stalls,
            note=f"{len(watched)} runs, {sum(r['wall_s'] for r in watched):.0f} s watched as the console watches a phase (workload/stalls.py)"
                 + (f"; first: {json.dumps(stalls[0])[:400]}" if stalls else ""))
    silences = [st for r in offline["labconsole"] for st in r.get("stalls", []) if "reported_by" not in st]
    busy = sum(1 for st in silences if max(st.get("worker_cpu_s_during", {0: 0}).values(), default=0) > 0.5 * st.get("length_s", 0))
    res.add("progress silences longer than 1 s, Offline runs (LoadGen's one query built with the GIL held)", len(silences), "",
            note=f"{busy} of them with LoadGen's issue thread computing through it, over {len(offline['labconsole'])} runs; "
                 "each record also says where the machine's CPUs went (stalls.jsonl)")
    res.details = {"offline": offline, "server_tail": {str(int(q)): t for q, t in tail.items()}, "server_runs": server, "server_best": best,
                   "settings": {"offline_qps": OFFLINE_QPS, "offline_duration_s": off_dur, "server_duration_s": srv_dur, "tail_duration_s": tail_dur, "tail_reps": tail_reps,
                                "server_steps": srv_steps, "server_tolerance": srv_tol, "meter_interval_s": 0.01}}
    res.notes.append(f"Server search resolution: +-{srv_tol * 100:.0f} % ({srv_steps} steps from {SERVER_START_QPS:,.0f} QPS); "
                     "the knee is a coin flip on a loaded machine, so compare the two ways, not runs across days")
    return res
