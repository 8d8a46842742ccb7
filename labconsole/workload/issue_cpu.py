"""A CPU of its own for LoadGen's issue thread while a Server test runs.

In Server, LoadGen issues every query from the thread that called StartTest, each at its
scheduled time, and a query's latency counts from that time: whatever holds the thread's CPU
when its timer fires is added to every query behind it. On a small machine the harness's own
threads (the console's meter reader, live view and progress reader, the worker's progress
thread) wake often enough to double that thread's run-queue wait against bare LoadGen (bench 1,
"Part 4" of bench/RESULTS.md). So, for a Server test:

- the issue thread is pinned to one CPU (by default the last the console may use);
- the harness's threads keep to the other CPUs: every thread of the console process
  (`confine_console`) and the worker's progress thread;
- a thread the issue thread starts (LoadGen's I/O thread, which logs every query; a SUT's
  thread started from a query) inherits its one CPU and is moved to the others
  (`WorkerPlacement.move_inherited`, at each progress tick);
- the SUT's threads started before the test may run on every CPU, as under bare LoadGen: the
  placement takes nothing from the system under test.

With one CPU there is nothing to keep apart, and `issue_cpu: none` in the profile turns it off.
Linux only (sched_setaffinity on a thread id); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SCENARIOS = ("Server",)  # where one late wake-up delays every query queued behind it


@dataclass(frozen=True)
class IssueCpu:
    """Where LoadGen's issue thread runs (`cpu`) and where the harness's threads keep (`rest`);
    `allowed` is every CPU the console was allowed at the start (given back afterwards)."""

    cpu: int
    rest: tuple[int, ...]
    allowed: tuple[int, ...]

    def as_config(self) -> dict:
        return {"cpu": self.cpu, "rest": list(self.rest), "allowed": list(self.allowed)}

    @classmethod
    def from_config(cls, obj: dict | None) -> IssueCpu | None:
        if not obj:
            return None
        return cls(int(obj["cpu"]), tuple(int(c) for c in obj["rest"]), tuple(int(c) for c in obj["allowed"]))


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on, in order (empty where that cannot be known)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return ()


def choose(setting: str | int, scenario: str) -> IssueCpu | None:
    """The placement for a test: None where nothing is to be done (another scenario, `none`,
    fewer than two CPUs). `setting`: "auto" (the last allowed CPU), "none", or a CPU number,
    which must be one the console may use (ValueError otherwise)."""
    if setting == "none" or scenario not in SCENARIOS:
        return None
    allowed = allowed_cpus()
    if len(allowed) < 2:
        return None
    if setting == "auto":
        cpu = allowed[-1]
    else:
        cpu = int(setting)
        require_allowed(cpu, allowed)
    return IssueCpu(cpu, tuple(c for c in allowed if c != cpu), allowed)


def require_allowed(cpu: int, allowed: tuple[int, ...] | None = None) -> None:
    """ValueError unless `cpu` is one this process may run on (any, where that cannot be known):
    the profile's check when it loads, and the run's when it starts."""
    allowed = allowed_cpus() if allowed is None else allowed
    if allowed and cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this machine lets labconsole use ({', '.join(map(str, allowed))})")


def _tids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def _set(tid: int, cpus) -> bool:
    try:
        os.sched_setaffinity(tid, cpus)
        return True
    except OSError:  # the thread has ended, or the CPU set is refused (cgroup changed)
        return False


_confined = 0
_confined_lock = threading.Lock()
_saved: dict[int, set[int]] = {}


@contextmanager
def confine_console(placement: IssueCpu | None) -> Iterator[None]:
    """Every thread of this process on `placement.rest` while the block runs (threads started
    meanwhile inherit it from their starter), then each thread back where it was (a thread
    started meanwhile: every CPU allowed at the start). Nested or concurrent uses share one
    confinement: the last to leave restores."""
    global _confined
    if placement is None:
        yield
        return
    with _confined_lock:
        _confined += 1
        if _confined == 1:
            _saved.clear()
            for tid in _tids():
                try:
                    _saved[tid] = os.sched_getaffinity(tid)
                except OSError:
                    continue
                _set(tid, placement.rest)
    try:
        yield
    finally:
        with _confined_lock:
            _confined -= 1
            if _confined == 0:
                for tid in _tids():
                    _set(tid, _saved.get(tid, set(placement.allowed)))
                _saved.clear()


class WorkerPlacement:
    """The worker's side: the issue thread on its CPU; the progress thread, and any thread the
    issue thread started, off it."""

    def __init__(self, placement: IssueCpu, issue_tid: int):
        self.placement = placement
        self.issue_tid = issue_tid
        self.harness_tids: set[int] = set()
        self._alone = {placement.cpu}

    def start(self) -> None:
        """Called first, on the worker's main thread: every CPU the console was allowed (it was
        started by a confined console thread, whose CPUs it inherited), which the SUT's threads,
        started from here, inherit in turn."""
        _set(0, self.placement.allowed)

    def pin_issue_thread(self) -> bool:
        """Called on the thread that will call StartTest."""
        return _set(0, self._alone)

    def keep_off(self) -> None:
        """Called on a harness thread (the progress thread): the other CPUs only."""
        self.harness_tids.add(threading.get_native_id())
        _set(0, self.placement.rest)

    def move_inherited(self) -> int:
        """The other CPUs for each thread (not the issue thread, not the harness's) that has only
        the issue thread's, having inherited it: LoadGen's I/O thread, and a SUT's thread started
        from a query. The number of threads moved."""
        n = 0
        for tid in _tids():
            if tid == self.issue_tid or tid in self.harness_tids:
                continue
            try:
                if os.sched_getaffinity(tid) != self._alone:
                    continue
            except OSError:
                continue
            n += _set(tid, self.placement.rest)
        return n
