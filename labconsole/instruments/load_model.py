"""A load-following power model: the simulated source and every emulator read from it.

Power = idle + dynamic x utilisation + noise, where utilisation is real CPU utilisation: by
default that of the running workload's processes (so a simulated wall meter rises exactly when
the SUT works, whatever else shares the machine), or of the whole host.
Volts hover around mains; amps follow from power and power factor.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np


class CpuUtilisation:
    """Whole-host CPU utilisation between successive calls, 0..1.

    Reads /proc/stat on Linux; elsewhere falls back to the 1-minute load average per core.
    Thread-safe; readings closer together than `min_interval_s` reuse the last value, so many
    readers (a 100 kHz emulator) do not hammer /proc.
    """

    def __init__(self, min_interval_s: float = 0.05):
        self._min_interval = min_interval_s
        self._lock = threading.Lock()
        self._last_t = 0.0
        self._last_value = 0.0
        self._prev = self._read_stat()

    @staticmethod
    def _read_stat() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", "rb") as fh:
                fields = fh.readline().split()[1:]
        except OSError:
            return None
        values = [int(x) for x in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    def __call__(self) -> float:
        now = time.monotonic()
        with self._lock:
            if now - self._last_t < self._min_interval:
                return self._last_value
            cur = self._read_stat()
            if cur is None or self._prev is None:
                try:
                    value = min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
                except OSError:
                    value = 0.0
            else:
                dt, didle = cur[0] - self._prev[0], cur[1] - self._prev[1]
                value = self._last_value if dt <= 0 else max(0.0, min(1.0, 1.0 - didle / dt))
                self._prev = cur
            self._last_t, self._last_value = now, value
            return value


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# How a LoadGen worker is started (labconsole.workload.runner): what a standalone emulator looks
# for in other processes' command lines.
WORKER_MODULE = b"labconsole.workload.worker"


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...


def process_cpu_seconds(pid: int, reaped_children: bool = False) -> float | None:
    """CPU seconds a process has used (every thread), from /proc; None once it is gone.
    `reaped_children`: also what its children used that it has waited for (cutime, cstime)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # fields[11], [12] are utime and stime (stat fields 14 and 15); [13], [14] cutime, cstime.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


def _all_pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def descendants(roots: set[int]) -> set[int]:
    """Every live process below `roots` (children, grandchildren...), by /proc's parent pids."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child not in roots:
                found.add(child)
                todo.append(child)
    return found


def benchmark_workers() -> set[int]:
    """The LoadGen workers of any labconsole on this machine (by their command line)."""
    found = set()
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if WORKER_MODULE in fh.read():
                    found.add(pid)
        except OSError:
            continue
    return found


class WorkloadUtilisation:
    """CPU utilisation of the running benchmark's process tree only, 0..1 of the whole machine.

    The console registers the LoadGen worker's (or a command workload's) pid here while a phase
    runs; its children and their children count too (a harness that starts its own processes),
    as does what its finished children used (once their parent has waited for them). With no workload registered the utilisation is 0
    (the SUT is idle). Other load on a shared machine does not leak into the simulated reading,
    so a busy laptop does not fail a demo run's -5 % rule. /proc/<pid>/stat counts in clock
    ticks (10 ms), so the value is the slope over about the last `window_s`, like a meter's
    averaging.

    `any_benchmark`: for an emulator started on its own (`labconsole emulate`), which runs no
    workload itself: follow the LoadGen workers of any labconsole on this machine instead.
    """

    TREE_EVERY_S = 0.5  # how often the process tree is walked again (a /proc scan)

    def __init__(self, window_s: float = 0.5, any_benchmark: bool = False):
        self.window_s = window_s
        self.any_benchmark = any_benchmark
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self._tree: set[int] = set()
        self._tree_t = -1e9
        self._history: list[tuple[float, float]] = []  # (monotonic s, cpu seconds of the tree)
        self._gone_cpu = 0.0  # cpu seconds of processes that exited (keeps the series monotonic)
        self._last: dict[int, float] = {}
        self._ncpu = os.cpu_count() or 1

    def track(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            self._tree_t = -1e9

    def untrack(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)
            self._gone_cpu += self._last.pop(pid, 0.0)
            if not self._pids:
                self._reset()

    def _reset(self) -> None:
        self._history.clear()
        self._last.clear()
        self._tree.clear()
        self._gone_cpu = 0.0

    def _roots(self, now: float) -> set[int]:
        if not self.any_benchmark:
            return self._pids
        if now - self._tree_t >= self.TREE_EVERY_S:
            workers = benchmark_workers()
            for gone in self._pids - workers:  # a worker that ended: keep what it used
                self._gone_cpu += self._last.pop(gone, 0.0)
            if not workers:
                self._reset()
            self._pids = workers
        return self._pids

    def __call__(self) -> float:
        now = time.monotonic()
        with self._lock:
            roots = self._roots(now)
            if not roots:
                return 0.0
            if now - self._tree_t >= self.TREE_EVERY_S:
                self._tree = descendants(roots)
                self._tree_t = now
            total = self._gone_cpu
            for pid in roots | self._tree:
                # Each process with what its waited-for children used: a child that exits moves
                # from its own line into its parent's, so nothing is counted twice.
                cpu = process_cpu_seconds(pid, reaped_children=True)
                if cpu is None:
                    last = self._last.pop(pid, 0.0)
                    self._tree.discard(pid)
                    if pid in roots:  # the benchmark itself ended: keep what it used
                        self._gone_cpu += last
                        total += last
                        roots.discard(pid)
                    continue
                self._last[pid] = cpu
                total += cpu
            self._history.append((now, total))
            while len(self._history) > 2 and now - self._history[1][0] >= self.window_s:
                self._history.pop(0)
            t0, c0 = self._history[0]
            if now - t0 <= 0:
                return 0.0
            return max(0.0, min(1.0, (total - c0) / (now - t0) / self._ncpu))


_SHARED_UTILISATION: CpuUtilisation | None = None
_WORKLOAD_UTILISATION: WorkloadUtilisation | None = None


def workload_utilisation() -> WorkloadUtilisation:
    """The process-wide tracker the workload runner registers its worker with."""
    global _WORKLOAD_UTILISATION
    if _WORKLOAD_UTILISATION is None:
        _WORKLOAD_UTILISATION = WorkloadUtilisation()
    return _WORKLOAD_UTILISATION


def follow_any_benchmark() -> None:
    """For `labconsole emulate NAME` (a process that runs no workload itself): 'workload'
    follows the LoadGen workers of any labconsole on this machine, by their process trees."""
    workload_utilisation().any_benchmark = True


def host_utilisation() -> CpuUtilisation:
    global _SHARED_UTILISATION
    if _SHARED_UTILISATION is None:
        _SHARED_UTILISATION = CpuUtilisation()
    return _SHARED_UTILISATION


@dataclass
class Reading:
    watts: float
    volts: float
    amps: float
    pf: float


@dataclass
class LoadModel:
    """idle + dynamic x utilisation, with Gaussian noise; mains voltage with a little ripple."""

    idle_w: float = 60.0
    dynamic_w: float = 140.0
    noise_w: float = 1.0
    volts: float = 230.0
    volts_noise: float = 0.3
    pf_idle: float = 0.85
    pf_load: float = 0.95
    seed: int | None = None
    utilisation: Callable[[], float] = field(default_factory=host_utilisation)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def reading(self) -> Reading:
        u = max(0.0, min(1.0, self.utilisation()))
        with self._lock:
            watts = max(0.0, self.idle_w + self.dynamic_w * u + self._rng.gauss(0.0, self.noise_w))
            volts = self.volts + self._rng.gauss(0.0, self.volts_noise)
        pf = self.pf_idle + (self.pf_load - self.pf_idle) * u
        amps = watts / (volts * pf) if volts > 0 and pf > 0 else 0.0
        return Reading(watts, volts, amps, pf)

    def readings(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """n readings at once (watts, volts, amps, pf), at one utilisation: the same random
        stream as n calls of `reading`, for a meter that hands over a block of samples."""
        import numpy as np

        u = max(0.0, min(1.0, self.utilisation()))
        with self._lock:
            g = self._rng.gauss
            noise = np.array([g(0.0, sd) for _ in range(n) for sd in (self.noise_w, self.volts_noise)], dtype=float).reshape(n, 2) if n else np.empty((0, 2))
        watts = np.maximum(0.0, self.idle_w + self.dynamic_w * u + noise[:, 0])
        volts = self.volts + noise[:, 1]
        pf = np.full(n, self.pf_idle + (self.pf_load - self.pf_idle) * u)
        with np.errstate(invalid="ignore", divide="ignore"):
            amps = np.where((volts > 0) & (pf > 0), watts / (volts * pf), 0.0)
        return watts, volts, amps, pf

    def expected_watts(self, utilisation: float) -> float:
        return self.idle_w + self.dynamic_w * max(0.0, min(1.0, utilisation))

    def max_amps(self) -> float:
        """Worst-case current at full load (for sizing emulator ranges)."""
        return (self.idle_w + self.dynamic_w + 4 * self.noise_w) / (self.volts * min(self.pf_idle, self.pf_load))


ACTIVE_THRESHOLD = 0.02  # "active": the benchmark uses more than this share of the machine


def utilisation_source(value: "str | float") -> Callable[[], float]:
    """What a load model follows, by the name a profile or emulator option gives it.

    'workload': the running benchmark's CPU use (in-process tracker); 'host': the whole
    machine's; 'active': 1 while the benchmark computes at all, else 0 (a microcontroller
    running its inference loop draws its active power whatever a host CPU share says);
    a number: that constant utilisation.
    """
    if value == "workload":
        return workload_utilisation()
    if value == "host":
        return host_utilisation()
    if value == "active":
        work = workload_utilisation()
        return lambda: 1.0 if work() > ACTIVE_THRESHOLD else 0.0
    return constant_utilisation(float(value))


UTILISATION_NAMES = ("workload", "host", "active")


def utilisation_arg(text: str) -> "str | float":
    """An emulator's `--utilisation` (an argparse type): a name `utilisation_source` knows, or a number in [0, 1]."""
    if text in UTILISATION_NAMES:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be {', '.join(UTILISATION_NAMES)} or a number in [0, 1], not {text!r}")
    return value


def constant_utilisation(value: float) -> Callable[[], float]:
    """A fixed utilisation, for tests that must not depend on the host's load."""
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError("utilisation must lie in [0, 1]")
    return lambda: value


def describe_utilisation(value: "str | float") -> str:
    """What a simulated or emulated meter's power follows, in words (the Bench shows it)."""
    if value == "workload":
        return "follows the benchmark's CPU use (its worker's process tree), not the whole machine's: other programs do not move it"
    if value == "active":
        return "draws its active power while the benchmark computes, its idle power otherwise"
    if value == "host":
        return "follows the whole machine's CPU use: other programs move it too (and can fail the -5 % rule)"
    return f"draws a constant {float(value):g} of its dynamic power"


def simulated_load(driver: str, options: dict | None, emulator: dict | None) -> "str | float | None":
    """The `utilisation` a profile's source follows when it is simulated or emulated, else None."""
    if driver == "simulated":
        return (options or {}).get("utilisation", "workload")
    if emulator is not None:
        return emulator.get("utilisation", "workload")
    return None
