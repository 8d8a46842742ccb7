"""One run of the MLPerf Power procedure over a profile; it produces one sealed bundle.

    sources -> calibration (idle baseline, ...) -> ranging (auto-range) -> fixed ranges ->
    testing -> analysis -> seal

Headless and UI-agnostic: it publishes events on an EventBus (the CLI prints them, the TUI
shows them, the bundle keeps them) and exposes the recorder and the progress series for live
views to pull. `run()` blocks; `abort()` may be called from any thread (Ctrl-C, TUI button).
Whatever happens, the bundle ends sealed with an exit status and a reason.
"""

from __future__ import annotations

import getpass
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labconsole import __version__
from labconsole import events as ev
from labconsole.bundle.writer import BundleWriter, iso_utc
from labconsole.events import EventBus
from labconsole.profile import CommandWorkload, LoadedProfile, LoadGenWorkload
from labconsole.ranges import mlperf_fixed_ranges
from labconsole.recorder import Recorder
from labconsole.sources.base import Source
from labconsole.workload.runner import CommandRun, LoadGenRun, ProgressPoint, WorkloadResult


@dataclass
class RunOptions:
    scenario: str | None = None
    duration_s: float | None = None
    out_dir: Path | None = None
    operator: str | None = None


@dataclass
class RunOutcome:
    bundle: Path
    exit_status: str
    reason: str
    report: dict | None = None
    checks: list[dict] = field(default_factory=list)


class RunAborted(Exception):
    pass


class RunProcedure:
    def __init__(self, loaded: LoadedProfile, options: RunOptions | None = None, bus: EventBus | None = None):
        self.loaded = loaded
        self.profile = loaded.profile
        self.options = options or RunOptions()
        self.bus = bus or EventBus()
        wl = self.profile.workload
        self.scenario = self.options.scenario or wl.scenario
        self.duration_s = float(self.options.duration_s or wl.duration_s)
        self.bundle: BundleWriter | None = None
        self.recorder: Recorder | None = None
        self.sources: dict[str, Source] = {}
        self.phase: str = "starting"
        self.phase_started_mono: float = time.monotonic()
        self.progress: dict[str, list[ProgressPoint]] = {}
        self.state = "created"
        self.calibration = None
        self.ranges_chosen: dict[str, dict] = {}
        self._emulators: list = []  # loopback emulators started for sources with `emulator:`
        self.resolved_settings: dict[str, float] = {}  # `auto` LoadGen values measured by the first phase
        self._abort = threading.Event()
        self._abort_reason = ""
        self._workload = None
        self._lock = threading.Lock()
        self._last_progress_event = 0.0

    # --- control -----------------------------------------------------------------------------
    def abort(self, reason: str = "aborted by the operator") -> None:
        with self._lock:
            if not self._abort.is_set():
                self._abort_reason = reason
                self._abort.set()
            wl = self._workload
        if wl is not None:
            wl.abort(reason)

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep, but wake for an abort or a fatal recorder error; True when the time ran out."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._abort.wait(min(left, 0.2)):
                return False
            if self.recorder is not None and self.recorder.fatal:
                self.abort(self.recorder.fatal)
                return False

    def _check_abort(self) -> None:
        if self.recorder is not None and self.recorder.fatal and not self._abort.is_set():
            self.abort(self.recorder.fatal)
        if self._abort.is_set():
            raise RunAborted(self._abort_reason)

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_started_mono = time.monotonic()

    # --- the run ---------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        self.state = "running"
        status, reason = "completed", ""
        recordings = Path(self.options.out_dir or self.profile.recordings)
        self.bundle = BundleWriter.create(recordings, self.profile.name, self.scenario)
        self.bus.add_sink(self._timeline_sink)
        try:
            self._start_bundle()
            self._open_sources()
            self._check_abort()
            self.recorder = Recorder(
                [(s, self.profile_spec(n).on_failure) for n, s in self.sources.items()],
                self.bus,
                stream_formats={n: self.profile_spec(n).stream for n in self.sources},
            )
            self.recorder.start()
            self._calibrate()
            self._check_abort()
            self._probe_workload()
            self._check_abort()
            if self.profile.procedure.ranging:
                self._run_phase("ranging", auto_range=True)
                self._check_abort()
                self._choose_ranges()
            self._check_abort()
            self._run_phase("testing", auto_range=False)
        except RunAborted as exc:
            status, reason = ("failed" if self._failed_reason else "aborted"), (self._failed_reason or str(exc))
        except _PhaseFailed as exc:
            status, reason = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - any crash still seals the bundle
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
            self.bus.emit(ev.ERROR, f"the run failed: {reason}")
        finally:
            self._shutdown()
        if self.recorder is not None and self.recorder.fatal and status == "completed":
            status, reason = "failed", self.recorder.fatal
        return self._finish(status, reason)

    _failed_reason: str = ""

    def profile_spec(self, name: str):
        for s in self.profile.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def _timeline_sink(self, event: ev.Event) -> None:
        if self.bundle is not None and self.bundle.events_sink is not None:
            if event.kind == ev.PROGRESS:
                now = time.monotonic()
                if now - self._last_progress_event < 1.0:
                    return
                self._last_progress_event = now
            self.bundle.events_sink(event)

    def _start_bundle(self) -> None:
        assert self.bundle is not None
        b = self.bundle
        b.write_text("profile.yaml", self.loaded.text)
        prim = self.profile.primary_source.name
        b.update_run(
            id=str(uuid.uuid4()),
            profile={"name": self.profile.name, "path": str(self.loaded.path), "sha256": self.loaded.sha256},
            overrides={"scenario": self.options.scenario, "duration_s": self.options.duration_s},
            scenario=self.scenario,
            duration_s=self.duration_s,
            workload=self.profile.workload.model_dump(mode="json"),
            procedure=self.profile.procedure.model_dump(mode="json"),
            primary_source=prim,
            sources=[{"name": s.name, "driver": s.driver, "scope": s.scope, "sample_interval_s": s.sample_interval_s} for s in self.profile.sources],
            versions={"labconsole": __version__},
            operator=self.options.operator or self.profile.operator or _user(),
            start=iso_utc(),
            stop=None,
            exit_status="running",
            reason="",
        )
        self.bus.emit(ev.INFO, f"recording to {b.root}", bundle=str(b.root))

    def _open_sources(self) -> None:
        from labconsole import environment
        from labconsole.sources.registry import create_source

        self._set_phase("sources")
        found = []
        for spec in self.profile.sources:
            try:
                options = dict(spec.options)
                if spec.emulator is not None:
                    from labconsole.emulators.registry import start_for_source

                    handle = start_for_source(spec.driver, dict(spec.emulator))
                    self._emulators.append(handle)
                    options.update(handle.source_options())
                    self.bus.emit(ev.INFO, f"source {spec.name}: started a loopback emulator ({handle.source_options()})", source=spec.name)
                src = create_source(spec.name, spec.driver, options, spec.sample_interval_s)
                src.open()
                ident = src.identify()
                caps = src.capabilities()
            except Exception as exc:  # noqa: BLE001
                msg = f"source {spec.name} ({spec.driver}) cannot be used: {exc}"
                if spec.on_failure == "stop":
                    self.bus.emit(ev.ERROR, msg, source=spec.name)
                    self._failed_reason = msg
                    raise _PhaseFailed(msg) from None
                self.bus.emit(ev.WARNING, msg + "; continuing without it (on_failure: continue)", source=spec.name)
                found.append({"name": spec.name, "driver": spec.driver, "status": "unavailable", "error": str(exc)})
                continue
            self.sources[spec.name] = src
            found.append({"name": spec.name, "driver": spec.driver, "status": "ok", "identity": ident.as_dict(), "capabilities": caps.as_dict(), "scope": spec.scope})
            self.bus.emit(ev.INFO, f"source {spec.name}: {ident.describe()}", source=spec.name, identity=ident.as_dict())
        if not self.sources:
            raise _PhaseFailed("no source could be opened")
        assert self.bundle is not None
        self.bundle.write_json("environment.json", environment.collect(found))
        if self.profile.primary_source.name not in self.sources:
            raise _PhaseFailed(f"the primary source {self.profile.primary_source.name} is unavailable; the metric cannot be measured")

    def _calibrate(self) -> None:
        from labconsole.procedure.calibration import Calibration, CalibrationContext

        assert self.bundle is not None and self.recorder is not None
        self._set_phase("calibration")
        ctx = CalibrationContext(
            profile=self.profile,
            sources=self.sources,
            specs={s.name: s for s in self.profile.sources},
            identities={n: s.identify() for n, s in self.sources.items()},
            capabilities={n: s.capabilities() for n, s in self.sources.items()},
            recorder=self.recorder,
            bus=self.bus,
            phase_dir=self.bundle.phase_dir,
            wait=self.wait,
        )
        self.calibration = Calibration(ctx)
        for step in self.calibration.applicable():
            self._check_abort()
            self.calibration.run_step(step)
        self.bundle.write_json("calibration.json", self.calibration.as_dict())

    def _probe_workload(self) -> None:
        """Measure the SUT once for `auto` LoadGen settings, before ranging.

        Ranging and testing must run the same load (MLPerf runs one command twice), and a
        probe inside a phase would also put its burst of work next to the power window.
        """
        wl = self.profile.workload
        if not isinstance(wl, LoadGenWorkload):
            return
        assert self.bundle is not None
        probe = LoadGenRun(wl, self.bundle.phase_dir("probe"), scenario=self.scenario, duration_s=self.duration_s)
        if not probe.needs_probe():
            return
        self._set_phase("probe")
        self.bus.emit(ev.INFO, f"measuring the {wl.sut} SUT for the 'auto' LoadGen settings", phase="probe")
        with self._lock:
            self._workload = probe
        try:
            result = probe.run(probe_only=True)
        finally:
            with self._lock:
                self._workload = None
        if result.status == "aborted":
            raise RunAborted(result.reason)
        if result.status != "completed" or not result.settings:
            tail = "\n".join(result.stderr_tail[-10:])
            self.bus.emit(ev.ERROR, f"SUT probe: {result.reason or 'no settings reported'}" + (f"\nlast lines of the worker:\n{tail}" if tail else ""), phase="probe")
            raise _PhaseFailed(f"SUT probe: {result.reason or 'no settings reported'}")
        self.resolved_settings = {k: result.settings[k] for k in ("target_qps", "expected_latency_ms") if k in result.settings}
        self.bundle.update_run(workload_resolved=result.settings)
        shown = ", ".join(f"{k} {v:.6g}" for k, v in result.settings.items() if isinstance(v, (int, float)))
        self.bus.emit(ev.RESULT, f"SUT probe: {shown}", phase="probe", settings=result.settings)

    def _ranged_sources(self) -> list[str]:
        return [n for n, s in self.sources.items() if s.capabilities().has_ranges]

    def _run_phase(self, phase: str, auto_range: bool) -> None:
        assert self.bundle is not None and self.recorder is not None
        if auto_range:
            for name in self._ranged_sources():
                rs = self.sources[name].set_ranges(auto=True)
                self.bus.emit(ev.INFO, f"{name}: auto-range on for {phase}", phase=phase, source=name, ranges=rs.as_dict())
        settle = self.profile.procedure.settle_s
        if settle:
            self.bus.emit(ev.INFO, f"settling {settle:g} s before {phase}", phase=phase)
            if not self.wait(settle):
                self._check_abort()
        folder = self.bundle.phase_dir(phase)
        self._set_phase(phase)
        self.progress[phase] = []
        self.recorder.begin_segment(phase, folder)
        self.bus.emit(ev.PHASE_START, f"{phase}: {self.scenario}, {self.duration_s:g} s", phase=phase, scenario=self.scenario, duration_s=self.duration_s)

        def on_progress(point: ProgressPoint, phase: str = phase) -> None:
            self.progress[phase].append(point)
            self.bus.emit(ev.PROGRESS, f"{point.completed} completed", phase=phase, issued=point.issued, completed=point.completed)

        wl = self.profile.workload
        if isinstance(wl, LoadGenWorkload):
            runner: Any = LoadGenRun(wl, folder, on_progress, scenario=self.scenario, duration_s=self.duration_s, resolved=self.resolved_settings)
        elif isinstance(wl, CommandWorkload):
            runner = CommandRun(wl, folder, on_progress, duration_s=self.duration_s)
        else:  # pragma: no cover
            raise _PhaseFailed(f"unknown workload type {type(wl).__name__}")
        with self._lock:
            self._workload = runner
        if self._abort.is_set():
            runner.abort(self._abort_reason)
        watcher = threading.Thread(target=self._watch_fatal, args=(runner,), daemon=True)
        watcher.start()
        try:
            result: WorkloadResult = runner.run()
        finally:
            with self._lock:
                self._workload = None
            self.recorder.end_segment()
        stats = {f"{s}/{c}": st.as_dict() for (s, c), st in self.recorder.stats_for(phase).items()}
        self.bundle.write_json(f"{phase}/phase.json", {"workload": result.as_dict(), "samples": stats, "ranges": {n: self.sources[n].get_ranges().as_dict() for n in self._ranged_sources()}})
        if result.status == "completed":
            self.bus.emit(ev.PHASE_END, f"{phase} done", phase=phase, workload=result.as_dict())
            return
        if result.status == "aborted":
            self.bus.emit(ev.PHASE_END, f"{phase} aborted: {result.reason}", phase=phase)
            raise RunAborted(result.reason)
        tail = "\n".join(result.stderr_tail[-10:])
        msg = f"{phase}: {result.reason}" + (f"\nlast lines of the worker:\n{tail}" if tail else "")
        self.bus.emit(ev.ERROR, msg, phase=phase, workload=result.as_dict())
        raise _PhaseFailed(f"{phase}: {result.reason}")

    def _watch_fatal(self, runner: Any) -> None:
        while True:
            with self._lock:
                if self._workload is not runner:
                    return
            if self.recorder is not None and self.recorder.fatal:
                self._failed_reason = self.recorder.fatal
                self.abort(self.recorder.fatal)
                return
            time.sleep(0.2)

    def _choose_ranges(self) -> None:
        """MLPerf's rule: voltage range holds the max volts, current range holds 1.1 x max amps."""
        assert self.recorder is not None
        stats = self.recorder.stats_for("ranging")
        for name in self._ranged_sources():
            src = self.sources[name]
            caps = src.capabilities()
            chans = [st for (s, _), st in stats.items() if s == name]
            max_v = max((st.max_v for st in chans if not math.isnan(st.max_v)), default=math.nan)
            max_a = max((st.max_a for st in chans if not math.isnan(st.max_a)), default=math.nan)
            if math.isnan(max_v) or math.isnan(max_a):
                self.bus.emit(ev.WARNING, f"{name}: no valid volts/amps while ranging; keeping auto-range for testing (not MLPerf-grade)", source=name)
                continue
            want_v, want_a = mlperf_fixed_ranges(max_v, max_a, caps.voltage_ranges, caps.current_ranges)
            got = src.set_ranges(volts=want_v, amps=want_a, auto=False)
            self.ranges_chosen[name] = {"max_volts": max_v, "max_amps": max_a, "requested": {"volts": want_v, "amps": want_a}, "read_back": got.as_dict()}
            ok = (got.volts == want_v and got.amps == want_a and not got.auto_v and not got.auto_a)
            kind = ev.RESULT if ok else ev.ERROR
            self.bus.emit(
                kind,
                f"{name}: ranging saw max {max_v:.2f} V / {max_a:.4f} A -> fixed ranges {want_v:g} V / {want_a:g} A"
                + ("" if ok else f" but the meter reads back {got.volts:g} V / {got.amps:g} A (auto {got.auto_v}/{got.auto_a})"),
                phase="ranging",
                source=name,
                **self.ranges_chosen[name],
            )
            if not ok:
                raise _PhaseFailed(f"{name}: the meter did not accept the fixed ranges")
        if self.bundle is not None:
            self.bundle.update_run(ranges=self.ranges_chosen)

    def _shutdown(self) -> None:
        self._set_phase("stopping")
        if self.recorder is not None and self.recorder.started:
            self.recorder.stop()
        for name, src in self.sources.items():
            try:
                src.close()
            except Exception as exc:  # noqa: BLE001
                self.bus.emit(ev.WARNING, f"{name}: close failed: {exc}", source=name)
        for handle in self._emulators:
            try:
                handle.stop()
            except Exception as exc:  # noqa: BLE001
                self.bus.emit(ev.WARNING, f"emulator stop failed: {exc}")
        self._emulators.clear()
        if self.recorder is not None and self.bundle is not None:
            counts = self.recorder.counts()
            self.bundle.update_run(acquisition={"sources": counts, "samples_written": self.recorder.written})

    def _finish(self, status: str, reason: str) -> RunOutcome:
        from labconsole import analysis, checks
        from labconsole.bundle.reader import open_run

        assert self.bundle is not None
        self._set_phase("analysis")
        # The verdict goes into run.json first, so the summary's checks see the final status.
        self.bundle.update_run(exit_status=status, reason=reason, stop=iso_utc())
        report = None
        check_list: list[dict] = []
        try:
            record = open_run(self.bundle.root)
            report = analysis.compute_report(record)
            check_list = [c.as_dict() for c in checks.run_checks(record) if c.name != "manifest"]
            self.bundle.write_json("summary.json", {"report": report, "checks": check_list})
            if report.get("metric"):
                m = report["metric"]
                self.bus.emit(ev.RESULT, f"{m['name']}: {m['value']:.6g} {m['unit']} ({self.scenario})", metric=m)
        except Exception as exc:  # noqa: BLE001 - analysis problems must not stop the seal
            self.bus.emit(ev.WARNING, f"analysis failed: {type(exc).__name__}: {exc}")
        self.bus.emit(ev.INFO, f"run {status}" + (f": {reason}" if reason else ""), exit_status=status)
        self.bus.remove_sink(self._timeline_sink)
        try:
            self.bundle.seal(status, reason)
        except OSError as exc:
            self.bus.emit(ev.ERROR, f"could not seal the bundle: {exc.strerror or exc}; `labconsole recover {self.bundle.root}` can seal it later")
        self.state = status
        self._set_phase("done")
        return RunOutcome(self.bundle.root, status, reason, report, check_list)


class _PhaseFailed(Exception):
    pass


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return ""
