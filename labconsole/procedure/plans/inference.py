"""The MLPerf Power procedure for Inference, as a plan the run engine runs.

    calibration (identity, certificate, clock offset, zero check, idle baseline, update
    period, cross-check) -> probe the SUT ('auto' LoadGen settings) -> ranging (auto-range)
    -> fixed ranges (MLPerf's rule) -> testing; then the analysis (MLPerf's figures, checks)

Each step uses the engine's services (its sources, recorder, bundle, event bus, waiting and
abort); the engine opens and closes everything around them and seals the bundle.
"""

from __future__ import annotations

import math
from typing import Any

from labconsole import events as ev
from labconsole.instruments.ranges import CURRENT_MARGIN, mlperf_fixed_ranges
from labconsole.procedure.calibration import Calibration, CalibrationContext
from labconsole.procedure.engine import RunAborted, RunEngine, RunFailed, Step
from labconsole.profile import CommandWorkload, LoadGenWorkload
from labconsole.workload.retune import invalid_advice, retune
from labconsole.workload.runner import CommandRun, LoadGenRun, ProgressPoint, WorkloadResult


class InferencePlan:
    def __init__(self, step_runner: Any = None):
        """`step_runner`: drives the calibration steps instead of running them all in order
        (the TUI's guided calibration, `labconsole.procedure.guided.GuidedCalibration`); it is
        called on the run's thread as `step_runner.drive(calibration, should_stop)`."""
        self.step_runner = step_runner
        self.calibration = None
        self.resolved_settings: dict[str, float] = {}  # `auto` LoadGen values measured by the probe
        self.ranges_chosen: dict[str, dict] = {}
        self.retuned: dict | None = None  # the one retry after LoadGen called an `auto` load INVALID

    def steps(self, engine: RunEngine) -> list[Step]:
        steps: list[Step] = [self.calibrate, self.probe_sut]
        if engine.profile.procedure.ranging:
            steps += [self.ranging, self.choose_fixed_ranges]
        return steps + [self.testing]

    def analyse(self, engine: RunEngine) -> tuple[dict, list[dict]]:
        from labconsole.mlperf.summary import summarise

        assert engine.bundle is not None
        return summarise(engine.bundle.root)

    # --- the steps ---------------------------------------------------------------------------------
    def calibrate(self, engine: RunEngine) -> None:
        bundle = engine.bundle
        assert bundle is not None and engine.recorder is not None
        engine.set_phase("calibration")
        ctx = CalibrationContext(
            profile=engine.profile,
            sources=engine.sources,
            specs={s.name: s for s in engine.profile.sources},
            identities={n: s.identify() for n, s in engine.sources.items()},
            capabilities={n: s.capabilities() for n, s in engine.sources.items()},
            recorder=engine.recorder,
            bus=engine.bus,
            phase_dir=bundle.phase_dir,
            wait=engine.wait,
        )
        calibration = self.calibration = Calibration(ctx)
        calibration.on_change = lambda: bundle.write_json("calibration.json", calibration.as_dict())
        for step in calibration.steps:
            if not step.applies(ctx):
                calibration.mark_not_applicable(step)
        if self.step_runner is not None:  # the console guides the operator step by step
            self.step_runner.drive(calibration, engine.should_stop)
        else:
            for step in calibration.applicable():
                engine.check_abort()
                calibration.run_step(step)
        bundle.write_json("calibration.json", calibration.as_dict())
        verdict = calibration.verdict()
        engine.bus.emit(ev.RESULT if verdict == "pass" else ev.WARNING, f"calibration: {verdict.upper()}", phase="calibration", verdict=verdict)

    def probe_sut(self, engine: RunEngine) -> None:
        """Measure the SUT once for `auto` LoadGen settings, before ranging.

        Ranging and testing must run the same load (MLPerf runs one command twice), and a
        probe inside a phase would also put its burst of work next to the power window.
        """
        wl = engine.profile.workload
        if not isinstance(wl, LoadGenWorkload):
            return
        assert engine.bundle is not None
        resolved = engine.options.resolved
        if resolved:
            # A rerun: the values the original run measured, so the load is the same.
            self.resolved_settings = {k: float(resolved[k]) for k in ("target_qps", "expected_latency_ms") if k in resolved}
            engine.bundle.update_run(workload_resolved=dict(resolved), workload_resolved_reused=True)
            shown = ", ".join(f"{k} {v:.6g}" for k, v in self.resolved_settings.items())
            engine.bus.emit(ev.INFO, f"reusing the recorded 'auto' LoadGen settings: {shown}", phase="probe", settings=self.resolved_settings)
            return
        probe = LoadGenRun(wl, engine.bundle.phase_dir("probe"), scenario=engine.scenario, duration_s=engine.duration_s)
        if not probe.needs_probe():
            return
        engine.set_phase("probe")
        engine.bus.emit(ev.INFO, f"measuring the {wl.sut} SUT for the 'auto' LoadGen settings", phase="probe")
        with engine.attached(probe, watch=False):
            result = probe.run(probe_only=True)
        if result.status == "aborted":
            raise RunAborted(result.reason)
        if result.status != "completed" or not result.settings:
            tail = "\n".join(result.stderr_tail[-10:])
            engine.bus.emit(ev.ERROR, f"SUT probe: {result.reason or 'no settings reported'}" + (f"\nlast lines of the worker:\n{tail}" if tail else ""), phase="probe")
            raise RunFailed(f"SUT probe: {result.reason or 'no settings reported'}")
        self.resolved_settings = {k: result.settings[k] for k in ("target_qps", "expected_latency_ms") if k in result.settings}
        engine.bundle.update_run(workload_resolved=result.settings)
        shown = ", ".join(f"{k} {v:.6g}" for k, v in result.settings.items() if isinstance(v, (int, float)))
        engine.bus.emit(ev.RESULT, f"SUT probe: {shown}", phase="probe", settings=result.settings)

    def ranging(self, engine: RunEngine) -> None:
        """The workload with the meters auto-ranging, to see the highest volts and amps."""
        self._record_phase(engine, "ranging", auto_range=True)
        if self._retune_after(engine, "ranging"):
            self._record_phase(engine, "ranging", auto_range=True)

    def choose_fixed_ranges(self, engine: RunEngine) -> None:
        """MLPerf's rule: voltage range holds the max volts, current range holds 1.1 x max amps."""
        assert engine.recorder is not None
        stats = engine.recorder.stats_for("ranging")
        for name in self._ranged_sources(engine):
            src = engine.sources[name]
            caps = src.capabilities()
            chans = [st for (s, _), st in stats.items() if s == name]
            max_v = max((st.max_v for st in chans if not math.isnan(st.max_v)), default=math.nan)
            max_a = max((st.max_a for st in chans if not math.isnan(st.max_a)), default=math.nan)
            if math.isnan(max_v) or math.isnan(max_a):
                engine.bus.emit(ev.WARNING, f"{name}: no valid volts/amps while ranging; keeping auto-range for testing (not MLPerf-grade)", source=name)
                continue
            rounded = caps.ranges_rounded_by_meter
            known = bool(caps.voltage_ranges and caps.current_ranges) or not rounded
            if known:
                want_v, want_a = mlperf_fixed_ranges(max_v, max_a, caps.voltage_ranges, caps.current_ranges)
            # A meter that rounds up itself gets MLPerf's raw values, as power-dev sends them
            # (SR,V,<max V>; SR,A,<1.1 x max A>); otherwise the range picked from the table.
            req_v, req_a = (max_v, max_a * CURRENT_MARGIN) if rounded else (want_v, want_a)
            try:
                got = src.set_ranges(volts=req_v, amps=req_a, auto=False)
            except Exception as exc:  # noqa: BLE001
                engine.tolerate(name, "set the fixed ranges", exc)
                continue
            self.ranges_chosen[name] = {"max_volts": max_v, "max_amps": max_a, "requested": {"volts": req_v, "amps": req_a}, "read_back": got.as_dict()}
            if known:
                ok = got.volts == want_v and got.amps == want_a
            else:  # no range table for this meter: what it chose must at least hold the request
                ok = got.volts >= req_v and got.amps >= req_a
                want_v, want_a = got.volts, got.amps
            ok = ok and not got.auto_v and not got.auto_a
            kind = ev.RESULT if ok else ev.ERROR
            engine.bus.emit(
                kind,
                f"{name}: ranging saw max {max_v:.2f} V / {max_a:.4f} A -> fixed ranges {want_v:g} V / {want_a:g} A"
                + ("" if ok else f" but the meter reads back {got.volts:g} V / {got.amps:g} A (auto {got.auto_v}/{got.auto_a})"),
                phase="ranging",
                source=name,
                **self.ranges_chosen[name],
            )
            if not ok:
                raise RunFailed(f"{name}: the meter did not accept the fixed ranges")
        if engine.bundle is not None:
            engine.bundle.update_run(ranges=self.ranges_chosen)

    def testing(self, engine: RunEngine) -> None:
        """The same workload at the fixed ranges: the measurement MLPerf reports."""
        self._record_phase(engine, "testing", auto_range=False)
        if self._retune_after(engine, "testing"):
            if engine.profile.procedure.ranging:  # ranging and testing must run the same load
                self._record_phase(engine, "ranging", auto_range=True)
                self.choose_fixed_ranges(engine)
            self._record_phase(engine, "testing", auto_range=False)

    # --- an `auto` load LoadGen called INVALID: adjust it and measure again, once ---------------------
    def _retune_after(self, engine: RunEngine, phase: str) -> bool:
        """True when `phase` came out INVALID for a reason the `auto` settings cause (LoadGen's
        "Increase expected QPS...", "Reduce target QPS..."): the SUT was probed again, the
        settings changed, and the INVALID phases set aside as `<phase>-invalid/` in the bundle
        (kept, not analysed). Only once a run, only for settings the profile leaves `auto`, and
        never for a rerun, which repeats the recorded settings on purpose."""
        wl = engine.profile.workload
        if self.retuned is not None or engine.options.resolved or not isinstance(wl, LoadGenWorkload):
            return False
        auto = {k: v for k, v in self.resolved_settings.items() if getattr(wl, k, None) == "auto"}
        if not auto:
            return False
        assert engine.bundle is not None
        validity, advice = invalid_advice(engine.bundle.data / phase / "loadgen")
        if validity != "INVALID":
            return False
        reprobed = self._probe(engine, "probe-retry")
        change = retune(advice, auto, reprobed)
        if change is None:
            engine.bus.emit(ev.WARNING, f"{phase}: LoadGen says INVALID ({'; '.join(advice) or 'no recommendation'}): not something the 'auto' settings change; recorded as it is", phase=phase)
            return False
        set_aside = [phase] + (["ranging"] if phase == "testing" and engine.profile.procedure.ranging else [])
        for name in set_aside:
            src = engine.bundle.data / name
            if src.exists():
                src.rename(engine.bundle.data / f"{name}-invalid")
        self.resolved_settings.update(change.settings)
        self.retuned = {"after": phase, "advice": change.advice, "change": change.changes, "settings": change.settings, "reprobed": reprobed or {}, "set_aside": [f"{n}-invalid" for n in set_aside]}
        engine.bundle.update_run(workload_resolved={**(engine.bundle.run_info.get("workload_resolved") or {}), **change.settings}, workload_retuned=self.retuned)
        again = " and ".join(n for n in ("ranging", "testing") if n in set_aside or n == phase)
        engine.bus.emit(
            ev.WARNING,
            f"{phase}: LoadGen says INVALID ({change.advice}) with the probed 'auto' settings (a busy machine?): "
            f"adjusted {change.changes} and running {again} again, once (the INVALID try is kept as {', '.join(self.retuned['set_aside'])})",
            phase=phase,
            retune=self.retuned,
        )
        return True

    def _probe(self, engine: RunEngine, folder: str) -> dict | None:
        """The SUT measured again (its `auto` values), or None when the probe fails."""
        assert engine.bundle is not None
        probe = LoadGenRun(engine.profile.workload, engine.bundle.phase_dir(folder), scenario=engine.scenario, duration_s=engine.duration_s)
        engine.set_phase("probe")
        with engine.attached(probe, watch=False):
            result = probe.run(probe_only=True)
        if result.status == "aborted":
            raise RunAborted(result.reason)
        if result.status != "completed" or not result.settings:
            return None
        return {k: float(result.settings[k]) for k in ("target_qps", "expected_latency_ms") if k in result.settings}

    # --- a recorded phase --------------------------------------------------------------------------
    def _record_phase(self, engine: RunEngine, phase: str, auto_range: bool) -> None:
        assert engine.bundle is not None and engine.recorder is not None
        if auto_range:
            for name in self._ranged_sources(engine):
                try:
                    rs = engine.sources[name].set_ranges(auto=True)
                except Exception as exc:  # noqa: BLE001
                    engine.tolerate(name, f"switch auto-range on for {phase}", exc)
                    continue
                engine.bus.emit(ev.INFO, f"{name}: auto-range on for {phase}", phase=phase, source=name, ranges=rs.as_dict())
        settle = engine.profile.procedure.settle_s
        if settle:
            engine.bus.emit(ev.INFO, f"settling {settle:g} s before {phase}", phase=phase)
            if not engine.wait(settle):
                engine.check_abort()
        folder = engine.bundle.phase_dir(phase)
        engine.set_phase(phase)
        engine.progress[phase] = []
        self._phase_hook(engine, "begin", phase)
        engine.recorder.begin_segment(phase, folder)
        engine.bus.emit(ev.PHASE_START, f"{phase}: {engine.scenario}, {engine.duration_s:g} s", phase=phase, scenario=engine.scenario, duration_s=engine.duration_s)

        def on_progress(point: ProgressPoint, phase: str = phase) -> None:
            engine.progress[phase].append(point)
            engine.bus.emit(ev.PROGRESS, f"{point.completed} completed", phase=phase, issued=point.issued, completed=point.completed)

        wl = engine.profile.workload
        if isinstance(wl, LoadGenWorkload):
            runner: Any = LoadGenRun(wl, folder, on_progress, scenario=engine.scenario, duration_s=engine.duration_s, resolved=self.resolved_settings)
        elif isinstance(wl, CommandWorkload):
            runner = CommandRun(wl, folder, on_progress, duration_s=engine.duration_s)
        else:  # pragma: no cover
            raise RunFailed(f"unknown workload type {type(wl).__name__}")
        runner.on_warning = lambda message, phase=phase: engine.bus.emit(ev.WARNING, f"{phase}: the workload: {message}", phase=phase)
        summaries: dict[str, dict] = {}
        try:
            with engine.attached(runner):
                result: WorkloadResult = runner.run()
                if result.status == "completed":
                    # Keep recording a moment past LoadGen's end, so every source has samples on
                    # both sides of power_end (energy counters are interpolated at the edges).
                    engine.wait(self._tail_s(engine))
        finally:
            summaries = self._phase_hook(engine, "end", phase)
            engine.recorder.end_segment()
        for warning in result.warnings:
            if warning not in runner.warned_live:
                engine.bus.emit(ev.WARNING, f"{phase}: the workload: {warning}", phase=phase)
        stats = {f"{s}/{c}": st.as_dict() for (s, c), st in engine.recorder.stats_for(phase).items()}
        engine.bundle.write_json(f"{phase}/phase.json", {"workload": result.as_dict(), "samples": stats, "ranges": self._read_back_ranges(engine), "meter_summaries": summaries})
        if result.status == "completed":
            engine.bus.emit(ev.PHASE_END, f"{phase} done", phase=phase, workload=result.as_dict())
            return
        if result.status == "aborted":
            engine.bus.emit(ev.PHASE_END, f"{phase} aborted: {result.reason}", phase=phase)
            raise RunAborted(result.reason)
        tail = "\n".join(result.stderr_tail[-10:])
        msg = f"{phase}: {result.reason}" + (f"\nlast lines of the worker:\n{tail}" if tail else "")
        engine.bus.emit(ev.ERROR, msg, phase=phase, workload=result.as_dict())
        raise RunFailed(f"{phase}: {result.reason}")

    def _phase_hook(self, engine: RunEngine, which: str, phase: str) -> dict[str, dict]:
        """Tell the sources a phase begins/ends (PTD starts a marked measurement); collect the
        meters' own summaries at the end. A failing source is reported, not fatal here: its
        acquisition thread reconnects or gives up by the profile's on_failure policy."""
        out: dict[str, dict] = {}
        for name, src in engine.sources.items():
            try:
                if which == "begin":
                    src.begin_phase(phase)
                    continue
                summary = src.end_phase(phase)
            except Exception as exc:  # noqa: BLE001
                engine.bus.emit(ev.WARNING, f"{name}: could not {which} the {phase} phase on the meter: {exc}", phase=phase, source=name)
                continue
            if summary:
                out[name] = summary
                if summary.get("message"):
                    kind = ev.WARNING if summary.get("warning") else ev.INFO
                    engine.bus.emit(kind, f"{name}: {phase}: {summary['message']}", phase=phase, source=name, meter_summary=summary)
        return out

    @staticmethod
    def _tail_s(engine: RunEngine) -> float:
        slowest = max((src.sample_interval_s for src in engine.sources.values()), default=0.1)
        return min(2.0, max(0.2, 2 * slowest))

    @staticmethod
    def _ranged_sources(engine: RunEngine) -> list[str]:
        """Sources with ranges to set, less those given up on under `on_failure: continue`."""
        return [n for n, s in engine.sources_still_read().items() if s.capabilities().has_ranges]

    def _read_back_ranges(self, engine: RunEngine) -> dict[str, dict]:
        out = {}
        for n in self._ranged_sources(engine):
            try:
                out[n] = engine.sources[n].get_ranges().as_dict()
            except Exception as exc:  # noqa: BLE001 - the phase's record must still be written
                out[n] = {"error": str(exc)}
        return out
