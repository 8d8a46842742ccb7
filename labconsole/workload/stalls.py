"""Stalls of the LoadGen worker, noticed and recorded with what each side was doing.

The worker writes a progress line every 0.2 s while LoadGen runs. When none has come for
STALL_LOG_S, the console's `StallWatch` (polled by the runner's watch loop) opens a stall and
notes both sides at that moment:
- the worker's threads as the kernel sees them (/proc: state, wait channel, CPU time), which
  needs nothing from the worker, not even its GIL;
- the worker's Python stacks: SIGUSR1 makes its faulthandler write them to worker.log
  (faulthandler answers from C, so it works while some thread holds the GIL);
- the pipe: bytes written but not yet read (the console's reader is behind) or none (the
  worker is silent), and where the console's reader thread is;
- the last line LoadGen wrote to its detail log (where the test is), and the load average.
When lines come again (or the worker ends), the stall's length, each worker thread's CPU over it,
the console's own CPU and where the machine's CPUs went (user, system, idle, iowait, steal) close
the record, which goes to stalls.jsonl in the phase folder and becomes a warning.

The worker notes its own side too (`tick_report`, `write_report`): a progress tick that came
more than STALL_LOG_S late (its thread could not run; the process's CPU over the gap says
whether it was busy or not running at all) or a write that blocked that long (the console
not reading) is sent as a "stall" event as soon as it can be.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import sys
import termios
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

STALL_LOG_S = 1.0  # a worker that writes five lines a second and writes none for this long is stalled
STALLS_FILE = "stalls.jsonl"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def worker_threads(pid: int) -> dict[str, dict]:
    """Each thread of process `pid` as the kernel sees it: name, state (R running, S sleeping,
    D in the kernel, T stopped), wait channel and CPU seconds. Empty when it cannot be read."""
    out: dict[str, dict] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        # comm is in parentheses and may hold spaces or parentheses itself: split at the last ')'.
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            cpu_s = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        except (IndexError, ValueError):
            continue
        wchan = ""
        try:
            with open(f"{base}/wchan", encoding="ascii", errors="replace") as fh:
                wchan = fh.read().strip()
        except OSError:
            pass
        out[tid] = {"name": name, "state": fields[0] if fields else "?", "wchan": wchan if wchan != "0" else "", "cpu_s": round(cpu_s, 2)}
    return out


def machine_cpu() -> dict[str, float]:
    """The whole machine's CPU seconds so far, by kind (from /proc/stat): over a stall, where the
    CPUs went (busy elsewhere, waiting on the disk, taken by the hypervisor: steal)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return {}
    ticks = [int(x) for x in fields[:8]] + [0] * max(0, 8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
    return {"user": (user + nice) / _CLOCK_TICKS, "system": (system + irq + softirq) / _CLOCK_TICKS,
            "idle": idle / _CLOCK_TICKS, "iowait": iowait / _CLOCK_TICKS, "steal": steal / _CLOCK_TICKS}


def own_cpu() -> float:
    """This (the console's) process's CPU seconds so far, all threads."""
    t = os.times()
    return t.user + t.system


def pipe_unread(fd: int | None) -> int | None:
    """Bytes waiting in the pipe behind `fd`, not yet read (None if it cannot be asked)."""
    if fd is None or not hasattr(termios, "FIONREAD"):
        return None
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return None


def last_line(path: Path, limit: int = 4096) -> str | None:
    """The last complete line of a text file (its last `limit` bytes), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else None


def thread_stack(thread: threading.Thread | None, depth: int = 4) -> list[str]:
    """The innermost `depth` frames of a thread of this process, as 'file:line function'."""
    if thread is None or thread.ident is None:
        return []
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return []
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)[-depth:]]


class StallWatch:
    """The console's side: notices a silent worker and records what both sides were doing.

    `line()` is called by the progress reader for every line, `poll()` by the watch loop
    (four times a second), `finish()` once the worker has ended. Thread-safe.
    """

    def __init__(
        self,
        phase_dir: Path,
        pid: int,
        *,
        reader: threading.Thread | None = None,
        pipe_fd: int | None = None,
        loadgen_dir: Path | None = None,
        ask_stacks: bool = True,
        warn: Callable[[str], None] | None = None,
        threshold_s: float = STALL_LOG_S,
    ):
        self.path = Path(phase_dir) / STALLS_FILE
        self.pid = pid
        self.reader = reader
        self.pipe_fd = pipe_fd
        self.loadgen_dir = loadgen_dir
        self.ask_stacks = ask_stacks
        self.warn = warn
        self.threshold_s = threshold_s
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._watching = False  # only while LoadGen runs: start-up and teardown write no lines
        self._last_line = time.monotonic()
        self._last_poll: float | None = None
        self._open: dict | None = None
        self._machine_before: dict[str, float] = {}
        self._console_before = 0.0

    # --- the reader's side ---------------------------------------------------------------------
    def line(self, msg: dict | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            self._last_line = now
            if self._open is not None:
                self._close(now, "lines came again")
            event = msg.get("event") if isinstance(msg, dict) else None
            if event == "started":
                self._watching = True
            elif event in ("teardown", "done", "failed"):
                self._watching = False
            if event == "stall":  # the worker's own account, sent once it could
                self._write({k: v for k, v in msg.items() if k != "event"} | {"reported_by": "worker"})

    # --- the watch loop's side ----------------------------------------------------------------
    def poll(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last_poll is not None and now - self._last_poll > self.threshold_s:
                # The console itself was held up (its own CPU, its GIL, the machine).
                self._write({"side": "console", "late_s": round(now - self._last_poll, 3),
                             "what": "the console's watch loop ran late: the console process was held up"})
            self._last_poll = now
            if self._watching and self._open is None and now - self._last_line > self.threshold_s:
                self._start(now)

    def pipe_closed(self) -> None:
        """The worker closed its end (it ended): nothing more to wait for or to ask the pipe."""
        with self._lock:
            self.pipe_fd = None
            self._watching = False

    def finish(self) -> None:
        with self._lock:
            if self._open is not None:
                self._close(time.monotonic(), "the worker ended")

    # --- records -------------------------------------------------------------------------------
    def _start(self, now: float) -> None:
        unread = pipe_unread(self.pipe_fd)
        rec = {
            "side": "pipe" if unread else "worker",
            "what": (f"{unread} bytes written by the worker wait unread: the console's reader is behind" if unread
                     else "the worker wrote nothing"),
            "wall_ns": time.time_ns(),
            "silent_s_when_seen": round(now - self._last_line, 3),
            "pipe_unread_bytes": unread,
            "reader_stack": thread_stack(self.reader),
            "loadgen_last_line": last_line(self.loadgen_dir / "mlperf_log_detail.txt") if self.loadgen_dir else None,
            "worker_threads": worker_threads(self.pid),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }
        self._machine_before, self._console_before = machine_cpu(), own_cpu()
        if self.ask_stacks:
            try:
                os.kill(self.pid, signal.SIGUSR1)  # the worker's faulthandler writes every stack to worker.log
                rec["worker_stacks"] = "in worker.log (SIGUSR1)"
            except (ProcessLookupError, PermissionError):
                pass
        self._open = {"since": self._last_line, **rec}
        if self.warn is not None:
            self.warn(f"the LoadGen worker has written no progress for {rec['silent_s_when_seen']:.1f} s ({rec['what']}); recorded in {STALLS_FILE}")

    def _close(self, now: float, how: str) -> None:
        rec, self._open = self._open, None
        assert rec is not None
        since = rec.pop("since")
        after = worker_threads(self.pid)
        before = rec.get("worker_threads") or {}
        rec["length_s"] = round(now - since, 3)
        rec["ended"] = how
        rec["worker_cpu_s_during"] = {
            f"{t['name']} ({tid})": round(after[tid]["cpu_s"] - t["cpu_s"], 2) for tid, t in before.items() if tid in after
        }
        # Where the machine's CPUs went meanwhile (all CPUs together), and the console's share.
        machine = machine_cpu()
        rec["machine_cpu_s_during"] = {k: round(machine[k] - self._machine_before.get(k, 0.0), 2) for k in machine}
        rec["console_cpu_s_during"] = round(own_cpu() - self._console_before, 2)
        self._write(rec)

    def _write(self, rec: dict) -> None:
        self.records.append(rec)
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError:
            pass  # the record stays in memory and in the warnings


# --- the worker's side ---------------------------------------------------------------------------
class TickClock:
    """The worker's progress thread's own account: was a tick late, and was the process busy?"""

    def __init__(self, interval_s: float, threshold_s: float = STALL_LOG_S):
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self._last = time.monotonic()
        self._last_cpu = time.process_time()

    def tick_report(self, stage: str) -> dict | None:
        """Call once per tick: a "stall" event when this tick came more than the threshold late."""
        now, cpu = time.monotonic(), time.process_time()
        late = now - self._last - self.interval_s
        gap, used = now - self._last, cpu - self._last_cpu
        self._last, self._last_cpu = now, cpu
        if late <= self.threshold_s:
            return None
        return {
            "event": "stall", "side": "worker", "stage": stage, "late_s": round(late, 3), "wall_ns": time.time_ns(),
            "process_cpu_s_during": round(used, 3),
            "what": ("the worker computed through the gap (a thread held the GIL or the CPU)" if used > 0.5 * gap
                     else "the worker barely ran during the gap (descheduled, stopped or waiting)"),
        }


def write_report(blocked_s: float, stage: str, threshold_s: float = STALL_LOG_S) -> dict | None:
    """A "stall" event when one write of a progress line blocked longer than the threshold."""
    if blocked_s <= threshold_s:
        return None
    return {"event": "stall", "side": "pipe", "stage": stage, "blocked_s": round(blocked_s, 3), "wall_ns": time.time_ns(),
            "what": "a progress line waited to be written: the console was not reading the pipe"}
