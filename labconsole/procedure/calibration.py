"""Calibration as guided steps: each has instructions, a measurement, a verdict and a reason.

Steps run headless in `labconsole run` (all in order) and one at a time in the TUI (run,
retry, skip). Results go to `calibration.json` and, as STEP events, to the timeline. A step
that does not apply to the bench (no NTP server, no overlapping scopes...) is recorded as
skipped with the reason, so the record shows it was considered.

    identity        every source's model / serial / firmware against the profile's `identity:`
    certificate     the calibration certificate's date against its interval
    clock_offset    this host against the NTP server, and against a meter host (PTD)
    zero_check      the meter's zero-level compensation, where it has one
    idle_baseline   mean, spread and stability with the SUT idle
    update_period   each source's real update period, measured from its samples (Zeus-style)
    cross_check     a wall/system meter against the sum of GPU + CPU + DRAM sources
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from labconsole import events as ev
from labconsole.samples.batch import OK
from labconsole.sources.sntp import NtpError, sntp_offset
from labconsole.verdict import FAIL, PASS, SKIP, WARN, worst

CERTIFICATE_DUE_SOON_DAYS = 30
WHOLE_SCOPES = ("wall", "system")
PART_SCOPES = ("gpu", "cpu", "dram")


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
    instructions: str = ""
    applicable: bool = True
    history: list[dict] = field(default_factory=list)  # earlier attempts: status, reason, when

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
    today: Callable[[], _dt.date] = field(default=lambda: _dt.datetime.now(_dt.timezone.utc).date())


class Step:
    key = ""
    title = ""
    instructions = ""

    def applies(self, ctx: CalibrationContext) -> bool:
        return True

    def why_not(self, ctx: CalibrationContext) -> str:
        """Why the step does not apply to this bench (recorded with the skip)."""
        return "not applicable to this bench"

    def run(self, ctx: CalibrationContext) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self, status: str, reason: str, **measured: Any) -> StepResult:
        return StepResult(self.key, self.title, status, reason, measured)


def _stats(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def _window_samples(ctx: CalibrationContext, source: str, start_ns: int, end_ns: int) -> dict[str, np.ndarray]:
    """Each channel's samples of `source` recorded between start and end (from the live rings)."""
    out = {}
    for (src, ch), ring in ctx.recorder.rings.items():
        if src != source:
            continue
        snap = ring.snapshot(since_wall_ns=start_ns)
        out[ch] = snap[snap["wall_ns"] <= end_ns]
    return out


def _measurement_window(ctx: CalibrationContext, seconds: float, min_samples: int = 8) -> tuple[int, int, bool, str]:
    """A stretch of recorded samples to analyse: the idle baseline's if it is long enough for
    every source, else a new one of `seconds` (the sources are recorded all along)."""
    idle = ctx.extra.get("idle_window")
    if idle:
        start, end = idle
        enough = all(
            sum(len(v) for v in _window_samples(ctx, name, start, end).values()) >= min_samples for name in ctx.sources
        )
        if enough:
            return start, end, True, "the idle baseline's samples"
    start = time.time_ns()
    completed = ctx.wait(seconds)
    return start, time.time_ns(), completed, f"{seconds:g} s of samples"


# ---------------------------------------------------------------------------------------------


class SourceIdentity(Step):
    key = "identity"
    title = "Source identity"
    instructions = (
        "Check that every source is the instrument the profile names. The console asks each one "
        "for its model, serial number and firmware and compares them with the profile's `identity:`. "
        "A mismatch means the wrong meter is connected, or the profile describes another bench."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        statuses, reasons, per = [], [], {}
        for name, spec in ctx.specs.items():
            ident = ctx.identities.get(name)
            if ident is None:
                statuses.append(WARN)
                reasons.append(f"{name}: not connected, identity unknown")
                per[name] = {"found": None}
                continue
            found = {"vendor": ident.vendor, "model": ident.model, "serial": ident.serial, "firmware": ident.firmware}
            per[name] = {"found": found}
            expected = spec.identity
            if expected is None:
                statuses.append(WARN)
                reasons.append(f"{name}: the profile gives no identity ({ident.describe()} found); add `identity:` to pin this instrument")
                continue
            per[name]["expected"] = expected.model_dump(exclude_none=True)
            wrong = []
            if expected.model is not None and _norm(expected.model) not in (_norm(ident.model), _norm(f"{ident.vendor} {ident.model}")):
                wrong.append(f"model {ident.model!r}, profile expects {expected.model!r}")
            if expected.serial is not None and _norm(expected.serial) != _norm(ident.serial):
                wrong.append(f"serial {ident.serial!r}, profile expects {expected.serial!r}")
            if expected.firmware is not None and _norm(expected.firmware) != _norm(ident.firmware):
                wrong.append(f"firmware {ident.firmware!r}, profile expects {expected.firmware!r}")
            if wrong:
                statuses.append(FAIL)
                reasons.append(f"{name}: " + "; ".join(wrong))
            else:
                statuses.append(PASS)
        status = worst(statuses)
        reason = "; ".join(reasons) if reasons else "every source is the instrument the profile names"
        return self.result(status, reason, sources=per)


class CalibrationCertificate(Step):
    key = "certificate"
    title = "Calibration certificate"
    instructions = (
        "Check each meter's calibration certificate: its date and interval come from the profile's "
        "`calibration:` block (copy them from the certificate). Expired is a failure; due within "
        f"{CERTIFICATE_DUE_SOON_DAYS} days, or no certificate given, is a warning."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        today = ctx.today()
        statuses, reasons, per = [], [], {}
        for name, spec in ctx.specs.items():
            cert = spec.calibration
            caps = ctx.capabilities.get(name)
            ident = ctx.identities.get(name)
            reported = (getattr(ident, "extra", None) or {}).get("calibration_date") if ident is not None else None
            entry: dict[str, Any] = {"instrument_reports": reported} if reported else {}
            if cert is None:
                statuses.append(WARN)
                kind = getattr(caps, "power_kind", "meter")
                if kind != "meter":
                    reasons.append(f"{name}: no calibration certificate given; a {kind} sensor ({spec.driver}) is not a calibrated instrument, so its readings are not traceable")
                else:
                    reasons.append(f"{name}: no calibration certificate given (profile `calibration:`): the meter's accuracy is unverified")
                per[name] = entry
                continue
            due = cert.certificate_date + _dt.timedelta(days=cert.interval_days)
            left = (due - today).days
            entry.update(certificate_date=cert.certificate_date.isoformat(), interval_days=cert.interval_days, due=due.isoformat(), days_left=left)
            per[name] = entry
            if cert.certificate_date > today:
                statuses.append(WARN)
                reasons.append(f"{name}: certificate dated {cert.certificate_date} is in the future; check the date")
            elif left < 0:
                statuses.append(FAIL)
                reasons.append(f"{name}: calibration expired on {due} ({-left} days ago)")
            elif left <= CERTIFICATE_DUE_SOON_DAYS:
                statuses.append(WARN)
                reasons.append(f"{name}: calibration due on {due} ({left} days left)")
            else:
                statuses.append(PASS)
                reasons.append(f"{name}: valid until {due}")
        status = worst(statuses)
        return self.result(status, "; ".join(reasons) or "no sources", today=today.isoformat(), sources=per)


class ClockOffset(Step):
    key = "clock_offset"
    title = "Clock offset"
    instructions = (
        "Check this host's clock: LoadGen stamps its power window in UTC and the samples carry this "
        "host's (or the meter host's) time, so the clocks must agree. The console asks the profile's "
        "NTP server (`procedure.ntp_server`) and each source that runs on another host (a PTD daemon) "
        "for the offset. MLPerf's limit is 400 ms (`procedure.max_clock_offset_ms`). If it fails, "
        "synchronise the clocks (chrony/ntpdate) and retry."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        proc = ctx.profile.procedure
        limit_ms = float(proc.max_clock_offset_ms)
        statuses, reasons = [], []
        offsets: dict[str, float] = {}
        measured: dict[str, Any] = {"limit_ms": limit_ms}
        if proc.ntp_server:
            try:
                r = sntp_offset(proc.ntp_server)
            except NtpError as exc:
                statuses.append(FAIL)
                reasons.append(f"{exc}: the host clock cannot be checked")
            else:
                ms = r.offset_s * 1000.0
                offsets[f"ntp {proc.ntp_server}"] = ms
                measured["ntp"] = r.as_dict()
                ok = abs(ms) <= limit_ms
                statuses.append(PASS if ok else FAIL)
                reasons.append(f"host vs NTP {proc.ntp_server}: {ms:+.1f} ms (round trip {r.delay_s * 1000:.1f} ms)" + ("" if ok else f", beyond {limit_ms:g} ms"))
        else:
            statuses.append(WARN)
            reasons.append(f"no NTP server named (procedure.ntp_server): the host clock is not checked (MLPerf needs it within {limit_ms:g} ms of NTP)")
        for name, src in ctx.sources.items():
            try:
                off = src.clock_offset_s()
            except Exception as exc:  # noqa: BLE001 - a source that cannot tell is a finding, not a crash
                statuses.append(WARN)
                reasons.append(f"{name}: could not read its host's clock ({exc})")
                continue
            if off is None:
                continue
            ms = float(off) * 1000.0
            offsets[f"{name} host"] = ms
            ok = abs(ms) <= limit_ms
            statuses.append(PASS if ok else FAIL)
            reasons.append(f"{name} host vs this host: {ms:+.1f} ms" + ("" if ok else f", beyond {limit_ms:g} ms"))
        measured["offsets_ms"] = offsets
        return self.result(worst(statuses), "; ".join(reasons), **measured)


class ZeroCheck(Step):
    key = "zero_check"
    title = "Zero check"
    instructions = (
        "Run the meter's zero-level compensation where it has one (e.g. a power analyzer's ZERO): "
        "it removes the offset of its input circuits. Leave the wiring as it is; readings pause briefly."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        statuses, reasons, per = [], [], {}
        for name, src in ctx.sources.items():
            try:
                res = src.zero_check()
            except Exception as exc:  # noqa: BLE001
                statuses.append(FAIL)
                reasons.append(f"{name}: zero check failed: {exc}")
                per[name] = {"error": str(exc)}
                continue
            if res is None:
                continue
            res = dict(res)
            per[name] = res
            # Drivers report {"ok": bool, "message": str, ...}; "error" also means failure.
            if res.get("ok") is False or res.get("error"):
                statuses.append(FAIL)
                reasons.append(f"{name}: {res.get('message') or res.get('error') or 'zero check reported a failure'}")
            else:
                statuses.append(PASS)
                reasons.append(f"{name}: {res.get('message') or 'zero-level compensation done'}")
        if not per:
            return StepResult(self.key, self.title, SKIP, "not applicable: no source offers a zero check", applicable=False)
        return self.result(worst(statuses), "; ".join(reasons), sources=per)


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
        worst_s = PASS
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
            stable = bool(len(good) >= 2 and not (abs(drift_pct) > 2.0 or cv_pct > 5.0))
            entry = {"mean_w": mean, "std_w": std, "cv_pct": cv_pct, "drift_pct": drift_pct, "samples": int(len(snap)), "valid": int(len(good)), "stable": stable}
            per_source.setdefault(src, {})[ch] = entry
            if len(good) < 2:
                worst_s = WARN if worst_s == PASS else worst_s
                reasons.append(f"{src}/{ch}: too few valid samples ({len(good)})")
            elif not stable:
                worst_s = WARN if worst_s == PASS else worst_s
                reasons.append(f"{src}/{ch}: unstable (spread {cv_pct:.1f} %, drift {drift_pct:+.1f} %)")
        primary = ctx.profile.primary_source.name
        prim = per_source.get(primary, {})
        avg = sum(v["mean_w"] for v in prim.values() if not math.isnan(v["mean_w"])) if prim else math.nan
        reason = "; ".join(reasons) or f"stable; {primary} idles at {avg:.2f} W"
        if not completed:
            worst_s, reason = WARN, "interrupted before the idle time was over; " + reason
        res = self.result(worst_s, reason, seconds=seconds, sources=per_source, primary_avg_w=avg)
        ctx.extra["idle_baseline"] = {"avg_watts": avg, "sources": per_source}
        if completed:
            ctx.extra["idle_window"] = (start, end)
        return res


def update_period(times_s: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """How often a source delivers samples, and how often its value really changes.

    Zeus (ml-energy/zeus: zeus/monitor/power.py, `infer_counter_update_period`) polls a
    sensor and times the changes of its value: a sensor that updates every 100 ms read every
    10 ms repeats each value ten times. We do the same on the recorded samples: the delivery
    period is the median interval between samples, the update period the median interval
    between value changes.
    """
    out: dict[str, Any] = {"samples": int(len(times_s))}
    if len(times_s) < 3:
        return out
    dt = np.diff(times_s)
    out["delivery_period_s"] = float(np.median(dt))
    out["jitter_p95_s"] = float(np.percentile(np.abs(dt - np.median(dt)), 95))
    changed = np.flatnonzero(np.diff(values) != 0) + 1
    out["changes"] = int(len(changed))
    if len(changed) >= 2:
        out["update_period_s"] = float(np.median(np.diff(times_s[changed])))
    return out


class UpdatePeriod(Step):
    key = "update_period"
    title = "Sensor update period"
    instructions = (
        "Measure how often each source really delivers a new value, from its samples: a sensor "
        "polled faster than it updates repeats values, and a meter slower than the profile's "
        "`sample_interval_s` gives fewer samples than planned. Nothing to do but wait."
    )

    def run(self, ctx: CalibrationContext) -> StepResult:
        longest = max((float(s.sample_interval_s) for s in ctx.specs.values()), default=1.0)
        start, end, completed, what = _measurement_window(ctx, min(60.0, max(2.0, 12 * longest)))
        statuses, reasons, per = [], [], {}
        for name in ctx.sources:
            spec = ctx.specs[name]
            interval = float(spec.sample_interval_s)
            caps = ctx.capabilities.get(name)
            counter = bool(getattr(caps, "has_energy_counter", False))
            for ch, snap in _window_samples(ctx, name, start, end).items():
                label = name if ch == "main" else f"{name}/{ch}"
                good = snap[snap["status"] == OK]
                field_name = "energy_j" if counter and np.isfinite(good["energy_j"]).all() and len(good) else "watts"
                t = good["mono_ns"].astype(np.float64) / 1e9
                r = update_period(t, good[field_name])
                r.update(expected_s=interval, quantity=field_name)
                per.setdefault(name, {})[ch] = r
                if "delivery_period_s" not in r:
                    statuses.append(FAIL)
                    reasons.append(f"{label}: only {r['samples']} valid sample(s) in {what}")
                    continue
                text = f"{label}: a sample every {r['delivery_period_s']:.3f} s"
                sev = PASS
                if r["delivery_period_s"] > 1.5 * interval:
                    sev = WARN
                    text += f", slower than the profile's {interval:g} s"
                upd = r.get("update_period_s")
                if upd is None:
                    sev = WARN
                    text += f"; its {field_name} never changed: a stuck sensor, or one slower than the window"
                elif upd > 1.5 * max(interval, r["delivery_period_s"]):
                    sev = WARN
                    text += f", but its {field_name} changes only every {upd:.3f} s: values repeat (set sample_interval_s to {upd:.2g})"
                else:
                    text += f", {field_name} updates every {upd:.3f} s"
                statuses.append(sev)
                reasons.append(text)
        status = worst(statuses) if statuses else WARN
        reason = "; ".join(reasons) or "no samples recorded"
        if not completed:
            status, reason = WARN, "interrupted; " + reason
        ctx.extra["update_periods"] = per
        return self.result(status, reason, window=what, sources=per)


def _scopes(ctx: CalibrationContext) -> tuple[list[str], list[str]]:
    whole = [n for n in ctx.sources if ctx.specs[n].scope in WHOLE_SCOPES]
    parts = [n for n in ctx.sources if ctx.specs[n].scope in PART_SCOPES]
    primary = ctx.profile.primary_source.name
    whole.sort(key=lambda n: n != primary)  # the primary first when it is a whole
    return whole, parts


class ScopeCrossCheck(Step):
    key = "cross_check"
    title = "Cross-check of overlapping sources"
    instructions = (
        "Compare a wall or system meter with the sum of the sources inside it (GPUs, CPU packages, "
        "DRAM). The parts should be less than the whole; the rest is PSU loss, fans and the board. "
        "Parts above the whole mean overlapping or wrong scopes in the profile, or a meter reading high."
    )

    def applies(self, ctx: CalibrationContext) -> bool:
        whole, parts = _scopes(ctx)
        return bool(whole and parts)

    def why_not(self, ctx: CalibrationContext) -> str:
        return "not applicable: no wall/system source together with GPU/CPU/DRAM sources"

    def run(self, ctx: CalibrationContext) -> StepResult:
        whole, parts = _scopes(ctx)
        start, end, completed, what = _measurement_window(ctx, 3.0)

        def mean_w(name: str) -> float:
            total, any_ch = 0.0, False
            for snap in _window_samples(ctx, name, start, end).values():
                good = snap[(snap["status"] == OK) & np.isfinite(snap["watts"])]
                if len(good):
                    total += float(good["watts"].mean())
                    any_ch = True
            return total if any_ch else math.nan

        w_name = whole[0]
        w = mean_w(w_name)
        part_w = {n: mean_w(n) for n in parts}
        missing = [n for n, v in {w_name: w, **part_w}.items() if math.isnan(v)]
        if missing:
            return self.result(WARN, f"no valid samples from {', '.join(missing)} in {what}", whole=w_name, parts=part_w)
        total = sum(part_w.values())
        ratio = total / w if w > 0 else math.inf
        text = f"{' + '.join(parts)} = {total:.2f} W is {ratio:.1%} of {w_name} {w:.2f} W ({what})"
        measured = {"whole": w_name, "whole_w": w, "parts_w": part_w, "ratio": ratio}
        if ratio > 1.0:
            return self.result(WARN, text + ": the parts exceed the whole (overlapping scopes, a wrong scope, or a meter reading high)", **measured)
        status = PASS if completed else WARN
        return self.result(status, text + ("" if completed else "; interrupted"), **measured)


DEFAULT_STEPS: list[type[Step]] = [SourceIdentity, CalibrationCertificate, ClockOffset, ZeroCheck, IdleBaseline, UpdatePeriod, ScopeCrossCheck]


class Calibration:
    """Runs steps, keeps their results (last attempt wins, earlier ones kept in `history`)."""

    def __init__(self, ctx: CalibrationContext, steps: list[Step] | None = None):
        self.ctx = ctx
        self.steps = steps if steps is not None else [cls() for cls in DEFAULT_STEPS]
        self.results: dict[str, StepResult] = {}
        # Called after every stored result (the run writes calibration.json each time, so a run
        # stopped part-way keeps what was measured, whether steps run headless or guided).
        self.on_change: Callable[[], None] | None = None

    def applicable(self) -> list[Step]:
        return [s for s in self.steps if s.applies(self.ctx)]

    def step(self, key: str) -> Step:
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(key)

    def _store(self, step: Step, res: StepResult) -> StepResult:
        prev = self.results.get(step.key)
        res.attempts = (prev.attempts + 1) if prev else 1
        if prev:
            res.history = prev.history + [{"status": prev.status, "reason": prev.reason, "ended_wall_ns": prev.ended_wall_ns}]
        res.instructions = step.instructions
        self.results[step.key] = res
        if self.on_change is not None:
            self.on_change()
        return res

    def run_step(self, step: Step) -> StepResult:
        self.ctx.bus.emit(ev.INFO, f"calibration: {step.title}", phase="calibration", step=step.key, instructions=step.instructions)
        t0 = time.time_ns()
        try:
            res = step.run(self.ctx)
        except Exception as exc:  # noqa: BLE001 - a step's failure is a verdict, not a crash
            res = step.result(FAIL, f"the step raised {type(exc).__name__}: {exc}")
        res.started_wall_ns, res.ended_wall_ns = t0, time.time_ns()
        self._store(step, res)
        kind = ev.WARNING if res.status in (WARN, FAIL) else ev.STEP
        self.ctx.bus.emit(kind, f"{step.title}: {res.status.upper()}: {res.reason}", phase="calibration", step=step.key, status=res.status, measured=res.measured)
        return res

    def skip(self, step: Step, why: str = "skipped by the operator") -> StepResult:
        now = time.time_ns()
        res = StepResult(step.key, step.title, SKIP, why, started_wall_ns=now, ended_wall_ns=now)
        self._store(step, res)
        self.ctx.bus.emit(ev.STEP, f"{step.title}: SKIPPED: {why}", phase="calibration", step=step.key, status=SKIP)
        return res

    def mark_not_applicable(self, step: Step) -> StepResult:
        res = self.skip(step, step.why_not(self.ctx))
        res.applicable = False
        return res

    def run_all(self) -> list[StepResult]:
        for step in self.steps:
            if step.applies(self.ctx):
                self.run_step(step)
            else:
                self.mark_not_applicable(step)
        return list(self.results.values())

    def pending(self) -> list[Step]:
        """Steps with no result yet (the TUI's to-do list)."""
        return [s for s in self.steps if s.key not in self.results]

    def as_dict(self) -> dict:
        order = {s.key: i for i, s in enumerate(self.steps)}
        results = sorted(self.results.values(), key=lambda r: order.get(r.key, len(order)))
        return {
            "steps": [r.as_dict() for r in results],
            "idle_baseline": self.ctx.extra.get("idle_baseline"),
            "verdict": self.verdict(),
        }

    def verdict(self) -> str:
        # Skipped steps (each recorded with its reason) do not lower it: with no failure and no
        # warning the calibration passed, even when every step was skipped or none has run yet.
        return worst([PASS, *(r.status for r in self.results.values())])
