"""The console's side of a workload: start it in its own process, follow it, stop it.

`LoadGenRun` starts `labconsole.workload.worker` and reads its progress lines from a private
pipe; `CommandRun` runs the user's own harness (an argument list, never a shell) and then
collects the LoadGen logs it wrote. Both write the worker's stdout and stderr to
`worker.log` in the phase folder and the progress series to `progress.csv`, enforce a
watchdog (total time and stalled progress) and can be aborted; none of it can take the
console down with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from labconsole.events import to_json
from labconsole.instruments.load_model import workload_utilisation
from labconsole.workload import issue_cpu
from labconsole.workload.stalls import StallWatch

if TYPE_CHECKING:  # the profile's models, as the procedure hands them over (workload sits below the profile)
    from labconsole.profile import CommandWorkload, LoadGenWorkload

PROGRESS_HEADER = "wall_ns,issued,completed\n"


@dataclass
class ProgressPoint:
    wall_ns: int
    issued: int
    completed: int


@dataclass
class WorkloadResult:
    status: str  # completed | failed | aborted | timeout
    exit_code: int | None
    reason: str = ""
    stderr_tail: list[str] = field(default_factory=list)
    started_wall_ns: int = 0
    ended_wall_ns: int = 0
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the worker said went wrong but not fatally

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "stderr_tail": self.stderr_tail,
            "started_wall_ns": self.started_wall_ns,
            "ended_wall_ns": self.ended_wall_ns,
            "settings": self.settings,
            **({"warnings": self.warnings} if self.warnings else {}),
        }


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def tail_lines(path: Path, n: int = 20) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in data.splitlines() if ln.strip()][-n:]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the console dies, so no load is orphaned."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _ProcessRun:
    """Process management shared by both workload kinds."""

    POLL_S = 0.1  # how often the watch loop looks at the process (and calls its `poll`)

    def __init__(self, phase_dir: Path, timeout_s: float, stall_s: float | None, on_progress: Callable[[ProgressPoint], None] | None):
        self.phase_dir = Path(phase_dir)
        self.loadgen_dir = self.phase_dir / "loadgen"
        self.log_path = self.phase_dir / "worker.log"
        self.progress_path = self.phase_dir / "progress.csv"
        self.timeout_s = timeout_s
        self.stall_s = stall_s
        self.on_progress = on_progress
        self.proc: subprocess.Popen | None = None
        self.progress: list[ProgressPoint] = []
        self.settings: dict = {}
        # What LoadGen must complete, once the worker said: {"samples", "min_duration_s", "scenario"}.
        self.target: dict = {}
        self.warnings: list[str] = []
        self._abort = threading.Event()
        self._wake = threading.Event()  # an abort, or the worker's pipe closing
        self._pipe_closed = False
        self._abort_reason = ""
        self._last_change = time.monotonic()
        self._progress_fh = None
        self.started_wall_ns = 0
        self.stalls: StallWatch | None = None  # LoadGen's worker only: it writes five lines a second
        # Told at once of a warning that matters while the phase runs (a stall); those it was
        # told of are in `warned_live`, so the phase's end does not repeat them.
        self.on_warning: Callable[[str], None] | None = None
        self.warned_live: list[str] = []

    def _warn_now(self, message: str) -> None:
        self.warnings.append(message)
        if self.on_warning is not None:
            self.warned_live.append(message)
            self.on_warning(message)

    # --- progress ---------------------------------------------------------------------------
    def _record(self, point: ProgressPoint) -> None:
        last = self.progress[-1] if self.progress else None
        if last is None or (point.completed, point.issued) != (last.completed, last.issued):
            self._last_change = time.monotonic()
        self.progress.append(point)
        if self._progress_fh is not None:
            self._progress_fh.write(f"{point.wall_ns},{point.issued},{point.completed}\n")
        if self.on_progress is not None:
            self.on_progress(point)

    def abort(self, reason: str = "aborted by the operator") -> None:
        self._abort_reason = reason
        self._abort.set()
        self._wake.set()

    def _terminate(self) -> None:
        """SIGTERM the worker's process group, then SIGKILL if it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _spawn(self, argv: list[str], cwd: Path, env: dict | None, pass_fds: tuple = ()) -> None:
        self.phase_dir.mkdir(parents=True, exist_ok=True)
        self.loadgen_dir.mkdir(parents=True, exist_ok=True)
        self._progress_fh = open(self.progress_path, "w", encoding="utf-8", buffering=1)
        self._progress_fh.write(PROGRESS_HEADER)
        log = open(self.log_path, "ab")
        try:
            self.started_wall_ns = time.time_ns()
            try:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=str(cwd),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=pass_fds,
                    start_new_session=True,  # its own process group: we can stop all of it
                    close_fds=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            except BaseException:
                self._progress_fh.close()  # nothing will write progress: do not leak the file
                self._progress_fh = None
                raise
        finally:
            log.close()

    def _watch(self, poll: Callable[[], None] | None = None) -> WorkloadResult:
        """Wait for the process while enforcing the watchdog and honouring abort."""
        assert self.proc is not None

        tracker = workload_utilisation()  # simulated meters follow this process's CPU use
        tracker.track(self.proc.pid)
        try:
            return self._watch_loop(poll)
        finally:
            tracker.untrack(self.proc.pid)

    def _watch_loop(self, poll: Callable[[], None] | None) -> WorkloadResult:
        assert self.proc is not None
        t0 = time.monotonic()
        status, reason = "completed", ""
        while True:
            if poll is not None:
                poll()
            code = self.proc.poll()
            if code is not None:
                break
            # Woken at once by an abort or by the worker closing its pipe (it is ending), else
            # every POLL_S: each wake-up is CPU the system under test may be waiting for.
            self._wake.wait(0.005 if self._pipe_closed else self.POLL_S)
            if self._abort.is_set():
                status, reason = "aborted", self._abort_reason
                self._terminate()
                break
            elapsed = time.monotonic() - t0
            if elapsed > self.timeout_s:
                status, reason = "timeout", f"the workload ran past its {self.timeout_s:.0f} s limit and was stopped"
                self._terminate()
                break
            if self.stall_s is not None and time.monotonic() - self._last_change > self.stall_s:
                status, reason = "timeout", f"no progress for {self.stall_s:.0f} s (a SUT that never completes?); stopped"
                self._terminate()
                break
        code = self.proc.wait()
        if poll is not None:
            poll()
        if self._progress_fh is not None:
            self._progress_fh.close()
            self._progress_fh = None
        tail = tail_lines(self.log_path)
        if status == "completed" and code != 0:
            status, reason = "failed", f"the workload failed ({describe_exit(code)})"
        return WorkloadResult(status, code, reason, tail if status != "completed" else [], self.started_wall_ns, time.time_ns(), self.settings, list(self.warnings))


class LoadGenRun(_ProcessRun):
    """The real MLPerf LoadGen in `labconsole.workload.worker`."""

    # The worker's end is seen on its pipe and an abort wakes the loop at once, so the loop
    # itself only keeps the watchdogs and the stall watch: four times a second is enough.
    POLL_S = 0.25

    def __init__(
        self,
        workload: LoadGenWorkload,
        phase_dir: Path,
        on_progress=None,
        scenario: str | None = None,
        duration_s: float | None = None,
        resolved: dict | None = None,
    ):
        """`resolved`: `auto` settings measured by an earlier phase (target_qps,
        expected_latency_ms). Ranging and testing must run the same load, as MLPerf runs the
        same command twice, so the testing phase reuses what the ranging phase measured."""
        self.workload = workload
        self.scenario = scenario or workload.scenario
        self.duration_s = duration_s or workload.duration_s
        self.resolved = dict(resolved or {})
        timeout = workload.timeout_s or (3 * self.duration_s + 120)
        stall = workload.stall_s or max(60.0, 0.5 * self.duration_s)
        super().__init__(phase_dir, timeout, stall, on_progress)
        # Server: LoadGen's issue thread gets a CPU the harness's threads keep off (issue_cpu.py)
        try:
            self.placement = issue_cpu.choose(workload.issue_cpu, self.scenario)
        except ValueError as exc:  # the profile's CPU is not this machine's (checked when it loaded)
            self.placement = None
            self.warnings.append(f"workload.issue_cpu: {exc}: LoadGen's issue thread is not placed")

    def needs_probe(self) -> bool:
        """True when some `auto` setting must be measured from the SUT first."""
        wl = self.workload
        if self.scenario in ("Offline", "Server"):
            return "target_qps" not in self.resolved and wl.target_qps == "auto"
        return "expected_latency_ms" not in self.resolved and wl.expected_latency_ms == "auto"

    def config(self, probe_only: bool = False) -> dict:
        wl = self.workload
        return {
            "probe_only": probe_only,
            "scenario": self.scenario,
            "sut": wl.sut,
            "sut_options": wl.sut_options,
            "duration_s": self.duration_s,
            "min_query_count": wl.min_query_count,
            "max_duration_s": wl.max_duration_s,
            "target_qps": self.resolved.get("target_qps", wl.target_qps),
            "expected_latency_ms": self.resolved.get("expected_latency_ms", wl.expected_latency_ms),
            "latency_bound_ms": wl.latency_bound_ms,
            "samples_per_query": wl.samples_per_query,
            "total_sample_count": wl.total_sample_count,
            "performance_sample_count": wl.performance_sample_count,
            "seeds": wl.seeds.model_dump(),
            "trace": wl.trace,
            "outdir": str(self.loadgen_dir.resolve()),
            "pythonpath": [str(Path.cwd())],
            "issue_cpu": None if probe_only or self.placement is None else self.placement.as_config(),
        }

    def run(self, probe_only: bool = False) -> WorkloadResult:
        """Run the LoadGen test (or, with `probe_only`, just measure the SUT's capacity)."""
        self.phase_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.phase_dir / "workload.json"
        cfg_path.write_text(to_json(self.config(probe_only), indent=2) + "\n", encoding="utf-8")
        with issue_cpu.confine_console(None if probe_only else self.placement):
            return self._run(cfg_path, probe_only)

    def _run(self, cfg_path: Path, probe_only: bool) -> WorkloadResult:
        rfd, wfd = os.pipe()
        env = dict(os.environ)
        # The worker must import this very labconsole, installed or not.
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._spawn(
                [sys.executable, "-m", "labconsole.workload.worker", "--config", str(cfg_path.resolve()), "--progress-fd", str(wfd), "--parent-pid", str(os.getpid())],
                cwd=self.loadgen_dir,
                env=env,
                pass_fds=(wfd,),
            )
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        reader = threading.Thread(target=self._read_progress, args=(rfd,), name="workload-progress", daemon=True)
        assert self.proc is not None
        self.stalls = StallWatch(self.phase_dir, self.proc.pid, reader=reader, pipe_fd=rfd, loadgen_dir=self.loadgen_dir,
                                 warn=self._warn_now)
        reader.start()
        result = self._watch(self.stalls.poll)
        reader.join(timeout=5)
        self.stalls.finish()
        result.warnings = list(self.warnings)
        result.settings = self.settings
        if result.status == "completed" and not probe_only and not (self.loadgen_dir / "mlperf_log_detail.txt").exists():
            result.status, result.reason = "failed", "LoadGen wrote no mlperf_log_detail.txt"
            result.stderr_tail = tail_lines(self.log_path)
        return result

    def _read_progress(self, rfd: int) -> None:
        with os.fdopen(rfd, "r", encoding="utf-8", errors="replace") as fh:
            try:
                self._read_lines(fh)
            finally:
                if self.stalls is not None:
                    self.stalls.pipe_closed()  # before the descriptor is closed (and its number reused)
                self._pipe_closed = True
                self._wake.set()

    def _read_lines(self, fh) -> None:
        for line in fh:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if self.stalls is not None:
                self.stalls.line(msg)
            if "event" in msg:
                if msg["event"] == "settings":
                    self.settings = dict(msg.get("values") or {})
                    self.settings["loadgen_version"] = msg.get("loadgen_version")
                elif msg["event"] == "target":
                    self.target = {k: msg.get(k) for k in ("samples", "min_duration_s", "scenario")}
                elif msg["event"] == "warning":  # e.g. a SUT that did not stop after the test
                    self.warnings.append(str(msg.get("message", "")))
                continue
            try:
                point = ProgressPoint(int(float(msg["t"]) * 1e9), int(msg["issued"]), int(msg["completed"]))
            except (KeyError, TypeError, ValueError):
                continue
            self._record(point)


class CommandRun(_ProcessRun):
    """The user's own harness. Progress is elapsed time only; logs are collected afterwards."""

    def __init__(self, workload: CommandWorkload, phase_dir: Path, on_progress=None, duration_s: float | None = None):
        self.workload = workload
        self.duration_s = duration_s or workload.duration_s
        timeout = workload.timeout_s or (3 * self.duration_s + 300)
        super().__init__(phase_dir, timeout, None, on_progress)

    def run(self) -> WorkloadResult:
        wl = self.workload
        env = dict(os.environ)
        env.update(wl.env)
        cwd = Path(wl.cwd) if wl.cwd else Path.cwd()
        logs_dir = Path(wl.loadgen_logs)
        try:
            self._spawn(list(wl.command), cwd=cwd, env=env)
        except OSError as exc:
            return WorkloadResult("failed", None, f"cannot start {wl.command[0]!r}: {exc.strerror or exc}", [], time.time_ns(), time.time_ns())
        start_ns = self.started_wall_ns

        def tick() -> None:
            self._record(ProgressPoint(time.time_ns(), 0, 0))

        result = self._watch(poll=tick)
        if result.status == "completed":
            found = find_loadgen_logs(logs_dir if logs_dir.is_absolute() else cwd / logs_dir, start_ns, result.ended_wall_ns)
            if found is None:
                result.status = "failed"
                result.reason = f"no LoadGen logs with a power window inside this run were found under {logs_dir}"
            else:
                for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
                    src = found / name
                    if src.exists():
                        shutil.copy2(src, self.loadgen_dir / name)
        return result


def find_loadgen_logs(root: Path, start_wall_ns: int, end_wall_ns: int) -> Path | None:
    """The folder under `root` whose detail log's power window lies inside [start, end].

    What power-dev's client does (`find_loadgen_logs`), so a harness that keeps old logs
    around does not get last week's run attributed to this one.
    """
    from labconsole.workload.loadgen_log import LoadGenLogError, parse_detail_log

    if not root.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for detail in root.rglob("mlperf_log_detail.txt"):
        try:
            log = parse_detail_log(detail)
        except LoadGenLogError:
            continue
        if log.power_begin_ns is None or log.power_end_ns is None:
            continue
        if start_wall_ns < log.power_begin_ns and log.power_end_ns < end_wall_ns:
            if best is None or log.power_begin_ns > best[0]:
                best = (log.power_begin_ns, detail.parent)
    return best[1] if best else None
