"""What a live view reads: one protocol for a run in progress and for a recorded run played back.

The console's Run screen draws a `LiveSession`: the phase and its clock, the ring buffers of
every channel, the LoadGen progress series and the event timeline. `ProcedureSession` wraps a
`RunEngine` running in its own thread; `labconsole.session.replay.ReplaySession` plays a bundle or
an MLPerf result folder through the `replay` source. Everything here is pulled by the viewer
on its own timer (nothing is pushed into a UI), and nothing here imports a UI toolkit, so the
same objects serve the TUI, the CLI and tests.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labconsole import events as ev
from labconsole.emulators.registry import start_for_source
from labconsole.session.progress import WORKLOAD_PHASES, PhaseProgress, RunEstimate, phase_progress, run_estimate
from labconsole.events import Event, EventBus

if TYPE_CHECKING:
    import numpy as np

    from labconsole.samples.ring import ChannelRing

# numpy is imported in the functions that compute with it: the console's first paint imports
# this module (the Bench screen's monitor) and does without numpy (issue 15: first paint < 0.5 s).

# Phases in which the workload or the idle baseline runs (they get a progress bar).
TIMED_PHASES = ("idle", "ranging", "testing")


@dataclass
class PhaseClock:
    phase: str
    elapsed_s: float
    expected_s: float | None  # None when the phase has no known length

    @property
    def remaining_s(self) -> float | None:
        if self.expected_s is None:
            return None
        return max(0.0, self.expected_s - self.elapsed_s)

    @property
    def fraction(self) -> float | None:
        if not self.expected_s:
            return None
        return min(1.0, max(0.0, self.elapsed_s / self.expected_s))


class SeriesHistory:
    """The whole history of one channel (time s, watts), kept outside any widget.

    `sync(ring)` copies only what the ring gained since the last call. Invalid samples are
    kept as NaN so gaps stay visible. Above `cap` points the history is halved by keeping
    each bucket's min and max, so memory stays bounded and no spike is lost.
    """

    def __init__(self, cap: int = 2_000_000):
        import numpy as np

        self.cap = cap
        self._t = np.empty(4096, dtype=np.float64)
        self._y = np.empty(4096, dtype=np.float64)
        self._n = 0
        self._ring: ChannelRing | None = None
        self._seen = 0
        self.last_range: tuple[float, float] | None = None  # (range_v, range_a) of the newest sample
        self._version = 0  # bumped when samples already held change (cleared, halved)
        self._mean: tuple | None = None  # mean_since's running sum: (t0, version, next index, sum, count)

    def __len__(self) -> int:
        return self._n

    @property
    def t(self) -> np.ndarray:
        return self._t[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]

    def clear(self) -> None:
        self._n = 0
        self._seen = 0
        self._version += 1

    def extend(self, t: np.ndarray, y: np.ndarray) -> None:
        import numpy as np

        k = len(t)
        if k == 0:
            return
        need = self._n + k
        if need > len(self._t):
            size = max(need, 2 * len(self._t))
            self._t = np.resize(self._t, size)
            self._y = np.resize(self._y, size)
        self._t[self._n : need] = t
        self._y[self._n : need] = y
        self._n = need
        if self._n > self.cap:
            from labconsole.session.decimate import minmax_pairs

            tt, yy = minmax_pairs(self.t, self.y, self.cap // 2)
            self._n = len(tt)
            self._version += 1
            self._t[: self._n] = tt
            self._y[: self._n] = yy

    def extend_samples(self, batch: np.ndarray) -> None:
        import numpy as np

        from labconsole.samples.batch import OK

        if len(batch) == 0:
            return
        watts = np.where(batch["status"] == OK, batch["watts"], np.nan)
        self.extend(batch["wall_ns"] / 1e9, watts)
        last = batch[-1]
        self.last_range = (float(last["range_v"]), float(last["range_a"]))

    def sync(self, ring: ChannelRing) -> int:
        """Take what `ring` gained; a different ring (a replay seek) restarts the history."""
        if ring is not self._ring:
            self._ring = ring
            self.clear()
        new = ring.total - self._seen
        if new <= 0:
            return 0
        batch, total = ring.tail(new)
        self._seen = total
        self.extend_samples(batch)
        return len(batch)

    def mean_since(self, t0: float) -> float:
        """Mean of the valid samples from `t0` on. Asked every tick for the same `t0` (the
        phase's start), it adds only the samples that came since: a 2 M-point history cost
        6 ms a tick summed again whole."""
        import numpy as np

        c = self._mean
        if c is not None and c[0] == t0 and c[1] == self._version and c[2] <= self._n:
            _, _, i, total, count = c
        else:
            i, total, count = int(np.searchsorted(self.t, t0, side="left")), 0.0, 0
        y = self._y[i : self._n]
        y = y[np.isfinite(y)]
        total += float(y.sum())
        count += len(y)
        self._mean = (t0, self._version, max(i, self._n), total, count)
        return total / count if count else float("nan")

    def last_valid_point(self) -> tuple[float, float]:
        """(t, value) of the newest valid point; (NaN, NaN) when there is none."""
        import numpy as np

        y = self.y
        tail = max(0, len(y) - 256)  # the newest is nearly always near the end: look there first
        ok = np.flatnonzero(np.isfinite(y[tail:]))
        if len(ok):
            return float(self.t[tail + ok[-1]]), float(y[tail + ok[-1]])
        ok = np.flatnonzero(np.isfinite(y[:tail]))
        if len(ok) == 0:
            return math.nan, math.nan
        return float(self.t[ok[-1]]), float(y[ok[-1]])

    def last_valid(self) -> float:
        import numpy as np

        y = self.y[-64:]
        y = y[np.isfinite(y)]
        return float(y[-1]) if len(y) else float("nan")


def qps_series(wall_ns: np.ndarray, completed: np.ndarray, window_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Completed queries per second at each progress point, over the preceding `window_s`.

    (completed[i] - completed[j]) / (t[i] - t[j]) with j the first point at most `window_s`
    earlier; the first point of a series has no rate and is left out.
    """
    import numpy as np

    t = np.asarray(wall_ns, dtype=np.float64) / 1e9
    c = np.asarray(completed, dtype=np.float64)
    if len(t) < 2:
        return np.empty(0), np.empty(0)
    j = np.searchsorted(t, t - window_s, side="left")
    j = np.minimum(j, np.arange(len(t)) - 1)
    ok = j >= 0
    i = np.nonzero(ok)[0]
    j = j[ok]
    dt = t[i] - t[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(dt > 0, (c[i] - c[j]) / dt, np.nan)
    return t[i], q


def qps_over_phases(progress: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """QPS over a whole run from each phase's (wall_ns, completed): the phases in time order,
    a NaN between two of them so a plot shows a gap, not a ramp."""
    import numpy as np

    ts, qs = [], []
    for _, (w, c) in sorted(progress.items(), key=lambda kv: int(kv[1][0][0]) if len(kv[1][0]) else 0):
        t, q = qps_series(w, c)
        if len(t):
            ts += [t, [t[-1] + 1e-6]]
            qs += [q, [np.nan]]
    if not ts:
        return np.empty(0), np.empty(0)
    return np.concatenate(ts), np.concatenate(qs)


class LiveSession(ABC):
    """What the Run screen needs, whatever drives it (a run, a replay)."""

    kind = "live"
    title = ""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def phase_clock(self) -> PhaseClock: ...

    @abstractmethod
    def rings(self) -> dict[tuple[str, str], ChannelRing]: ...

    @abstractmethod
    def progress(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per phase: (wall_ns, completed) of the LoadGen progress points so far."""

    @abstractmethod
    def poll_events(self, limit: int = 500) -> tuple[bool, list[Event]]:
        """(reset, new events): `reset` means the timeline restarted (a seek) and the log must be cleared."""

    @property
    @abstractmethod
    def finished(self) -> bool: ...

    @property
    @abstractmethod
    def status(self) -> str:
        """running | completed | aborted | failed | paused | created."""

    def now_s(self) -> float:
        """The wall time the view is at (for a replay: the recorded time being played)."""
        return time.time()

    def start_s(self) -> float | None:
        """Wall time of the session's start (the x-axis origin of whole-run plots)."""
        return None

    def bundle_path(self) -> Path | None:
        return None

    def power_window(self) -> tuple[float, float] | None:
        """(begin, end) wall seconds of the testing run's power window, once known."""
        return None

    def failure(self) -> str | None:
        """Why the session ended without completing (a refusal, a failure before the first
        phase, a failed or aborted run), in words; None while it runs or when it completed."""
        return None

    def abort(self, reason: str) -> None:  # pragma: no cover - replay has nothing to abort
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------


class ProcedureSession(LiveSession):
    """A `RunEngine` in a thread of its own, seen through the live-view protocol."""

    kind = "live"

    def __init__(self, loaded, options=None, step_runner=None):
        from labconsole.procedure.engine import RunEngine
        from labconsole.procedure.plans import plan_for

        self.bus = EventBus()
        self._queue: queue.Queue[Event] = self.bus.subscribe()
        self.proc = RunEngine(loaded, plan_for(loaded.profile, step_runner=step_runner), options, self.bus)
        wl = loaded.profile.workload
        if wl.type == "training":
            self.title = f"{loaded.profile.name}: Training {wl.benchmark}, {wl.runs} runs"
        else:
            self.title = f"{loaded.profile.name}: {self.proc.scenario}, {self.proc.duration_s:g} s"
        self.step_runner = step_runner
        self.outcome = None
        self.crash: BaseException | None = None
        self.refused = False  # the run could not start at all (folder or instrument in use, folder not writable)
        self._thread: threading.Thread | None = None
        self._started_s: float | None = None
        self._started_mono: float | None = None
        self._ended_mono: float | None = None
        self._phase_started: dict[str, float] = {}

    def start(self) -> None:
        self._started_s = time.time()
        self._started_mono = time.monotonic()
        self._thread = threading.Thread(target=self._target, name="procedure", daemon=True)
        self._thread.start()

    def _target(self) -> None:
        from labconsole.procedure.engine import RunRefused

        try:
            self.outcome = self.proc.run()
        except RunRefused as exc:  # nothing was recorded: the reason goes to the viewer's log
            self.crash = exc
            self.refused = True
            self.bus.emit(ev.ERROR, f"the run was refused: {exc}")
        except BaseException as exc:  # noqa: BLE001 - reported to the viewer, never lost
            self.crash = exc
            self.bus.emit(ev.ERROR, f"the run failed before it started: {type(exc).__name__}: {exc}")
        finally:
            self._ended_mono = time.monotonic()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    @property
    def status(self) -> str:
        if self._thread is None:
            return "created"
        if self.alive:
            return "stopping" if self.proc.aborted else "running"
        if self.crash is not None:
            return "refused" if self.refused else "failed"
        return self.outcome.exit_status if self.outcome else self.proc.state

    def failure(self) -> str | None:
        if not self.finished:
            return None
        if self.crash is not None:
            return str(self.crash) if self.refused else f"{type(self.crash).__name__}: {self.crash}"
        o = self.outcome
        if o is not None and o.exit_status != "completed":
            return o.reason or f"the run ended {o.exit_status}"
        return None

    @property
    def started_phases(self) -> bool:
        """True once a timed phase (idle, probe, ranging, testing) or calibration began."""
        return bool(self._phase_started) or bool(self.proc.progress)

    def phase_clock(self) -> PhaseClock:
        phase = self.proc.phase
        if self._ended_mono is not None:
            # Ended: the clock stops (the whole run's length), nothing is expected any more.
            return PhaseClock("refused" if self.refused else phase, self._ended_mono - (self._started_mono or self._ended_mono), None)
        elapsed = time.monotonic() - self.proc.phase_started_mono
        expected = None
        if phase == "idle":
            expected = float(self.proc.profile.procedure.idle_s)
        elif phase in ("ranging", "testing"):
            expected = float(self.proc.duration_s)
        return PhaseClock(phase, elapsed, expected)

    def workload_progress(self) -> PhaseProgress | None:
        """The ranging or testing phase on now: LoadGen's counts against its target, time against the minimum."""
        proc = self.proc
        phase = proc.phase
        if phase not in WORKLOAD_PHASES or self._ended_mono is not None:
            return None
        points = (proc.progress.get(phase) or [])[-64:]  # the last few: the count now and the rate lately
        return phase_progress(phase, proc.scenario, time.monotonic() - proc.phase_started_mono, proc.duration_s, points, proc.workload_target())

    def run_estimate(self) -> RunEstimate | None:
        """The whole run so far and as expected (calibration, idle, probe, ranging, testing)."""
        if self._ended_mono is not None or self._thread is None:
            return None
        proc = self.proc
        wl = proc.profile.workload
        probes = proc.options.resolved is None and "auto" in (str(getattr(wl, "target_qps", "")), str(getattr(wl, "expected_latency_ms", "")))
        return run_estimate(list(proc.phase_log), time.monotonic(), self.workload_progress(), duration_s=proc.duration_s,
                            idle_s=float(proc.profile.procedure.idle_s), ranging=bool(proc.profile.procedure.ranging), probes=probes,
                            guided=self.step_runner is not None)

    def rings(self) -> dict[tuple[str, str], ChannelRing]:
        rec = self.proc.recorder
        return dict(rec.rings) if rec is not None else {}

    def progress(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        import numpy as np

        out = {}
        for phase, points in list(self.proc.progress.items()):
            pts = list(points)  # appended by the procedure thread; a copy is consistent
            out[phase] = (np.array([p.wall_ns for p in pts], dtype=np.int64), np.array([p.completed for p in pts], dtype=np.int64))
        return out

    def poll_events(self, limit: int = 500) -> tuple[bool, list[Event]]:
        out: list[Event] = []
        while len(out) < limit:
            try:
                e = self._queue.get_nowait()
            except queue.Empty:
                break
            if e.kind == ev.PHASE_START and e.phase:
                self._phase_started[e.phase] = e.wall_ns / 1e9
            out.append(e)
        return False, out

    def start_s(self) -> float | None:
        return self._started_s

    def bundle_path(self) -> Path | None:
        b = self.proc.bundle
        return b.root if b is not None else None

    def abort(self, reason: str = "aborted by the operator") -> None:
        self.proc.abort(reason)

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    def close(self) -> None:
        if self.alive:
            self.proc.abort("the console was closed")


def identity_of(source: Any) -> dict:
    try:
        return source.identify().as_dict()
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc)}


class BenchMonitor:
    """Live readings of a profile's sources while no run holds them (the Bench screen).

    Opens each source (starting its loopback emulator where the profile asks for one) and
    runs a `Recorder` with no segment: rings only, nothing written. All of it happens in a
    thread; `stop()` closes everything so a run can open the same instruments.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        self.bus = EventBus()
        self.recorder = None
        self.status: dict[str, str] = {s.name: "opening" for s in loaded.profile.sources}
        self.identities: dict[str, dict] = {}
        self._sources: list = []
        self._emulators: list = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._target, name="bench-monitor", daemon=True)
        self._thread.start()

    def _target(self) -> None:
        from labconsole.recorder import Recorder
        from labconsole.sources.registry import create_source

        opened = []
        try:
            for spec in self.loaded.profile.sources:
                if self._stop.is_set():
                    return
                try:
                    options = dict(spec.options)
                    if spec.emulator is not None:
                        handle = start_for_source(spec.driver, dict(spec.emulator))
                        self._emulators.append(handle)
                        options.update(handle.source_options())
                    src = create_source(spec.name, spec.driver, options, spec.sample_interval_s)
                    src.open()
                    self._sources.append(src)
                    self.identities[spec.name] = identity_of(src)
                    self.status[spec.name] = "ok"
                    opened.append((src, "continue"))
                except Exception as exc:  # noqa: BLE001 - shown on the bench, not a crash
                    self.status[spec.name] = f"unavailable: {exc}"
            if opened and not self._stop.is_set():
                self.recorder = Recorder(opened, self.bus, ring_capacity=1 << 14, fsync=False)
                self.recorder.start()
            self._stop.wait()
        finally:
            self._close()
            self.stopped.set()

    def _close(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        for src in self._sources:
            try:
                src.close()
            except Exception:  # noqa: BLE001
                pass
        for h in self._emulators:
            try:
                h.stop()
            except Exception:  # noqa: BLE001
                pass
        self._sources.clear()
        self._emulators.clear()

    def rings(self) -> dict[tuple[str, str], ChannelRing]:
        rec = self.recorder
        return dict(rec.rings) if rec is not None else {}

    def stop(self) -> None:
        """Ask the thread to close everything (returns at once; `stopped` is set when done)."""
        self._stop.set()
        if self._thread is None:  # never started: nothing was opened, nothing to wait for
            self.stopped.set()
