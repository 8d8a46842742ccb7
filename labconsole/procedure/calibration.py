"""Calibration as guided steps: each has instructions, a measurement, a verdict and a reason.

Steps run headless in `labconsole run` (all in order) and one at a time in the TUI (run,
retry, skip). Results go to `calibration.json` and, as STEP events, to the timeline.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from labconsole import events as ev
from labconsole.samples import OK

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass
class StepResult:
    key: str
    title: str
    status: str  # pass | warn | fail | skip
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    started_wall_ns: int = 0
    ended_wall_ns: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CalibrationContext:
    """What a step may use. `wait(s)` sleeps but returns False early when the run is aborted."""

    profile: Any  # labconsole.profile.Profile
    sources: dict[str, Any]  # name -> opened Source
    specs: dict[str, Any]  # name -> SourceSpec
    identities: dict[str, Any]
    capabilities: dict[str, Any]
    recorder: Any  # labconsole.recorder.Recorder
    bus: ev.EventBus
    phase_dir: Callable[[str], Any]
    wait: Callable[[float], bool]
    extra: dict[str, Any] = field(default_factory=dict)


class Step:
    key = ""
    title = ""
    instructions = ""

    def applies(self, ctx: CalibrationContext) -> bool:
        return True

    def run(self, ctx: CalibrationContext) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, status: str, reason: str, **measured: Any) -> StepResult:
        return StepResult(self.key, self.title, status, reason, measured)


def _stats(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


class IdleBaseline(Step):
    key = "idle_baseline"
    title = "Idle baseline"
    instructions = (
        "Leave the system under test idle: no benchmark, no logins, fans settled. "
        "The console records every source for the profile's idle time and reports the mean, "
        "the spread and whether the reading is stable (first half against second half)."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        seconds = float(ctx.profile.procedure.idle_s)
        if seconds <= 0:
            return StepResult(self.key, self.title, SKIP, "procedure.idle_s is 0: no idle baseline recorded")
        folder = ctx.phase_dir("idle")
        start = time.time_ns()
        ctx.recorder.begin_segment("idle", folder)
        ctx.bus.emit(ev.PHASE_START, f"idle baseline: {seconds:g} s with the SUT idle", phase="idle", duration_s=seconds)
        completed = ctx.wait(seconds)
        ctx.recorder.end_segment()
        end = time.time_ns()
        ctx.bus.emit(ev.PHASE_END, "idle baseline recorded" if completed else "idle baseline interrupted", phase="idle")
        per_source: dict[str, Any] = {}
        worst = PASS
        reasons = []
        for (src, ch), ring in ctx.recorder.rings.items():
            snap = ring.snapshot(since_wall_ns=start)
            snap = snap[snap["wall_ns"] <= end]
            good = snap[(snap["status"] == OK) & np.isfinite(snap["watts"])]
            w = good["watts"]
            mean, std = _stats(w)
            half = len(w) // 2
            drift_pct = math.nan
            if half >= 2 and mean > 0:
                drift_pct = (float(w[half:].mean()) - float(w[:half].mean())) / mean * 100.0
            cv_pct = std / mean * 100.0 if mean > 0 else math.nan
            entry = {"mean_w": mean, "std_w": std, "cv_pct": cv_pct, "drift_pct": drift_pct, "samples": int(len(snap)), "valid": int(len(good))}
            per_source.setdefault(src, {})[ch] = entry
            if len(good) < 2:
                worst = WARN if worst == PASS else worst
                reasons.append(f"{src}/{ch}: too few valid samples ({len(good)})")
            elif abs(drift_pct) > 2.0 or cv_pct > 5.0:
                worst = WARN if worst == PASS else worst
                reasons.append(f"{src}/{ch}: unstable (spread {cv_pct:.1f} %, drift {drift_pct:+.1f} %)")
        primary = ctx.profile.primary_source.name
        prim = per_source.get(primary, {})
        avg = sum(v["mean_w"] for v in prim.values() if not math.isnan(v["mean_w"])) if prim else math.nan
        reason = "; ".join(reasons) or f"stable; {primary} idles at {avg:.2f} W"
        if not completed:
            worst, reason = WARN, "interrupted before the idle time was over; " + reason
        res = self.result(worst, reason, seconds=seconds, sources=per_source, primary_avg_w=avg)
        ctx.extra["idle_baseline"] = {"avg_watts": avg, "sources": per_source}
        return res


DEFAULT_STEPS: list[type[Step]] = [IdleBaseline]


class Calibration:
    """Runs steps, keeps their results (last attempt wins, attempts counted)."""

    def __init__(self, ctx: CalibrationContext, steps: list[Step] | None = None):
        self.ctx = ctx
        self.steps = steps if steps is not None else [cls() for cls in DEFAULT_STEPS]
        self.results: dict[str, StepResult] = {}

    def applicable(self) -> list[Step]:
        return [s for s in self.steps if s.applies(self.ctx)]

    def run_step(self, step: Step) -> StepResult:
        self.ctx.bus.emit(ev.INFO, f"calibration: {step.title}", phase="calibration", step=step.key, instructions=step.instructions)
        t0 = time.time_ns()
        try:
            res = step.run(self.ctx)
        except Exception as exc:  # noqa: BLE001 - a step's failure is a verdict, not a crash
            res = step.result(FAIL, f"the step raised {type(exc).__name__}: {exc}")
        res.started_wall_ns, res.ended_wall_ns = t0, time.time_ns()
        prev = self.results.get(step.key)
        res.attempts = (prev.attempts + 1) if prev else 1
        self.results[step.key] = res
        kind = ev.WARNING if res.status in (WARN, FAIL) else ev.STEP
        self.ctx.bus.emit(kind, f"{step.title}: {res.status.upper()}: {res.reason}", phase="calibration", step=step.key, status=res.status, measured=res.measured)
        return res

    def skip(self, step: Step, why: str = "skipped by the operator") -> StepResult:
        res = StepResult(step.key, step.title, SKIP, why, started_wall_ns=time.time_ns(), ended_wall_ns=time.time_ns())
        prev = self.results.get(step.key)
        res.attempts = (prev.attempts + 1) if prev else 1
        self.results[step.key] = res
        self.ctx.bus.emit(ev.STEP, f"{step.title}: SKIPPED: {why}", phase="calibration", step=step.key, status=SKIP)
        return res

    def run_all(self) -> list[StepResult]:
        for step in self.applicable():
            self.run_step(step)
        return list(self.results.values())

    def as_dict(self) -> dict:
        return {
            "steps": [r.as_dict() for r in self.results.values()],
            "idle_baseline": self.ctx.extra.get("idle_baseline"),
            "verdict": self.verdict(),
        }

    def verdict(self) -> str:
        statuses = [r.status for r in self.results.values()]
        if FAIL in statuses:
            return FAIL
        if WARN in statuses:
            return WARN
        return PASS
