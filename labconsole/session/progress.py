"""How far a run is, in what is known: LoadGen's issued/completed samples against the count it
must reach, elapsed time against the minimum duration, and an estimate for the whole run.

LoadGen does not stop at its minimum duration: Offline issues one query of
max(min_query_count, 1.1 x duration x expected QPS) samples and ends when the last is done
(its minimum duration is not used at all), Server issues every query it generated, and
SingleStream / MultiStream also need their minimum query count. So a phase's clock alone
says "0 s left" while LoadGen still works; this module says what it is waiting for.
Pure arithmetic on snapshots (no I/O, no UI), so the TUI, the CLI and tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

WORKLOAD_PHASES = ("ranging", "testing")
PHASE_OVERHEAD_S = 3.0  # LoadGen's start, the worker's settings, the tail recorded after the end
RATE_WINDOW_S = 3.0


@dataclass
class PhaseProgress:
    """A workload phase (ranging, testing) as far as it went."""

    phase: str
    scenario: str
    elapsed_s: float
    min_duration_s: float
    issued: int | None = None
    completed: int | None = None
    target: int | None = None  # samples LoadGen issues at least (None until its worker said)
    rate: float | None = None  # completed per second, lately

    @property
    def goal(self) -> int | None:
        """The samples that must complete: the target, or more if LoadGen issued more."""
        vals = [v for v in (self.target, self.issued) if v is not None]
        return max(vals) if vals else None

    @property
    def waiting(self) -> int | None:
        """Samples issued (or still to issue) and not completed yet."""
        g = self.goal
        return None if g is None or self.completed is None else max(0, g - self.completed)

    @property
    def time_left_s(self) -> float:
        return max(0.0, self.min_duration_s - self.elapsed_s)

    @property
    def remaining_s(self) -> float | None:
        """Seconds until LoadGen is done, as well as is known (None: nothing to go on yet)."""
        # Offline ignores its minimum duration; the others need it as well as their count.
        by_time = 0.0 if self.scenario == "Offline" else self.time_left_s
        w = self.waiting
        if w is not None and self.rate:
            return max(by_time, w / self.rate)
        if w == 0:
            return by_time
        if self.scenario == "Offline" and self.completed is None:
            return self.time_left_s  # LoadGen not started: sized for the minimum duration
        return self.time_left_s if self.time_left_s > 0 else None

    @property
    def finishing(self) -> bool:
        """The minimum duration is over and LoadGen still waits for samples."""
        w = self.waiting
        return self.elapsed_s >= self.min_duration_s and bool(w)

    @property
    def fraction(self) -> float:
        """0..1, never going back: completed/goal where LoadGen's count decides, else time."""
        parts = []
        if self.scenario != "Offline" or self.goal is None:
            parts.append(min(1.0, self.elapsed_s / self.min_duration_s) if self.min_duration_s > 0 else 1.0)
        if self.goal and self.completed is not None:
            parts.append(min(1.0, self.completed / self.goal))
        return min(parts) if parts else 0.0

    def words(self) -> str:
        """One short line: what the phase waits for (plain text)."""
        head = f"{_dur(self.elapsed_s)}/min {_dur(self.min_duration_s)}"
        if self.finishing:
            rem = self.remaining_s
            return f"finishing: waiting for {self.waiting:,} queries" + (f" ~{_dur(rem)}" if rem is not None else "") + f" · {head}"
        if self.completed is not None and self.goal:
            head += f" · {self.completed:,}/{self.goal:,}"
        rem = self.remaining_s
        return head + (f" · left {_dur(rem)}" if rem is not None else "")


@dataclass
class RunEstimate:
    elapsed_s: float
    total_s: float  # elapsed + what the remaining phases should take

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.total_s - self.elapsed_s)

    @property
    def fraction(self) -> float:
        return min(1.0, self.elapsed_s / self.total_s) if self.total_s > 0 else 1.0


def recent_rate(wall_ns: np.ndarray, completed: np.ndarray, window_s: float = RATE_WINDOW_S) -> float | None:
    """Completed per second over the last `window_s` of progress points."""
    import numpy as np

    if len(wall_ns) < 2:
        return None
    t = np.asarray(wall_ns, dtype=np.float64) / 1e9
    j = int(np.searchsorted(t, t[-1] - window_s, side="left"))
    j = min(j, len(t) - 2)
    dt = t[-1] - t[j]
    if dt <= 0:
        return None
    r = (float(completed[-1]) - float(completed[j])) / dt
    return r if r > 0 else None


def phase_progress(phase: str, scenario: str, elapsed_s: float, min_duration_s: float, points, target: dict | None) -> PhaseProgress:
    """From the phase's progress points ((wall_ns, issued, completed) objects) and the worker's target."""
    p = PhaseProgress(phase, scenario, elapsed_s, float(min_duration_s))
    if target and target.get("samples") is not None:
        p.target = int(target["samples"])
        if target.get("min_duration_s"):
            p.min_duration_s = float(target["min_duration_s"])
    if points:
        import numpy as np

        last = points[-1]
        p.issued, p.completed = int(last.issued), int(last.completed)
        tail = points[-64:]
        p.rate = recent_rate(np.array([q.wall_ns for q in tail], dtype=np.int64), np.array([q.completed for q in tail], dtype=np.int64))
    return p


def run_estimate(phase_log: list[tuple[str, float]], now_mono: float, current: PhaseProgress | None, *, duration_s: float,
                 idle_s: float, ranging: bool, probes: bool, guided: bool = False) -> RunEstimate:
    """The whole run's expected length: phases done count as they took, the current one as far
    as it went plus what it still needs, the rest as planned (a testing phase as long as the
    ranging phase took, since it runs the same load)."""
    start = phase_log[0][1] if phase_log else now_mono
    took: dict[str, float] = {}
    for (name, t0), (_, t1) in zip(phase_log, phase_log[1:]):
        took[name] = took.get(name, 0.0) + (t1 - t0)
    now_phase, now_t0 = phase_log[-1] if phase_log else ("starting", now_mono)
    plan = ["starting", "sources", "calibration"] + (["probe"] if probes else []) + (["ranging"] if ranging else []) + ["testing", "analysis"]
    guess = {
        "starting": 0.5, "sources": 1.0, "calibration": idle_s + 4.0, "probe": 3.0,
        "ranging": duration_s + PHASE_OVERHEAD_S, "testing": duration_s + PHASE_OVERHEAD_S, "analysis": 2.0, "stopping": 1.0,
    }
    if "ranging" in took:
        guess["testing"] = max(guess["testing"], took["ranging"])
    elapsed = now_mono - start
    total = elapsed
    try:
        i_now = plan.index(now_phase)
    except ValueError:
        i_now = len(plan) - 2 if now_phase == "stopping" else -1
    in_phase = now_mono - now_t0
    if now_phase in WORKLOAD_PHASES and current is not None and current.phase == now_phase:
        rem = current.remaining_s
        rem = (rem if rem is not None else max(0.0, guess[now_phase] - in_phase)) + 1.0
        total += rem
        if now_phase == "ranging":  # testing runs the same load: as long as ranging will have taken
            guess["testing"] = max(guess["testing"], in_phase + rem)
    elif now_phase in guess and not (guided and now_phase == "calibration"):
        total += max(0.0, guess[now_phase] - in_phase)
    for name in plan[i_now + 1:] if i_now >= 0 else []:
        total += guess[name]
    return RunEstimate(elapsed, max(total, elapsed))


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}:{s:02d}"
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
