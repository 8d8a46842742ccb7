"""One run of the MLPerf Power procedure over a profile; it produces one sealed bundle.

    sources -> calibration (identity, certificate, clock offset, zero check, idle baseline,
    update period, cross-check) -> ranging (auto-range) -> fixed ranges ->
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
from labconsole.locks import LockBusy, instrument_lock, recordings_lock
from labconsole.profile import CommandWorkload, LoadedProfile, LoadGenWorkload
from labconsole.instruments.ranges import CURRENT_MARGIN, mlperf_fixed_ranges
from labconsole.recorder import Recorder
from labconsole.sources.base import Source
from labconsole.workload.runner import CommandRun, LoadGenRun, ProgressPoint, WorkloadResult


@dataclass
class RunOptions:
    scenario: str | None = None
    duration_s: float | None = None
    out_dir: Path | None = None
    operator: str | None = None
    # `auto` LoadGen values to use instead of probing the SUT (a rerun reuses the original's).
    resolved: dict[str, float] | None = None
    # Extra run.json fields (a rerun's `rerun_of`).
    run_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    bundle: Path
    exit_status: str
    reason: str
    report: dict | None = None
    checks: list[dict] = field(default_factory=list)


class RunAborted(Exception):
    pass


class RunRefused(RuntimeError):
    """The run could not start at all (folder in use or not writable); nothing was recorded."""


class RunProcedure:
    def __init__(self, loaded: LoadedProfile, options: RunOptions | None = None, bus: EventBus | None = None, step_runner: Any = None):
        """`step_runner`: drives the calibration steps instead of running them all in order
        (the TUI's guided calibration, `labconsole.procedure.guided.GuidedCalibration`); it is
        called on this procedure's thread as `step_runner.drive(calibration, should_stop)`."""
        self.loaded = loaded
        self.step_runner = step_runner
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
        self._locks: list = []  # recordings-folder and instrument locks held during the run
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
                self._fail(self.recorder.fatal)
                return False

    def _fail(self, reason: str) -> None:
        """Stop the run as failed (not aborted): the recorder hit an error it cannot get past."""
        if not self._failed_reason:
            self._failed_reason = reason
        self.abort(reason)

    def _check_abort(self) -> None:
        if self.recorder is not None and self.recorder.fatal and not self._abort.is_set():
            self._fail(self.recorder.fatal)
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
        try:
            # One console per recordings folder and per instrument: refuse before anything is written.
            self._locks.append(recordings_lock(recordings).acquire())
            self._lock_instruments()
            self.bundle = BundleWriter.create(recordings, self.profile.name, self.scenario)
        except LockBusy as exc:
            self._release_locks()
            raise RunRefused(str(exc)) from None
        except OSError as exc:
            self._release_locks()
            raise RunRefused(f"cannot record into {recordings}: {exc.strerror or exc}") from None
        self.bus.add_sink(self._timeline_sink)
        try:
            self._start_bundle()
            self._open_sources()
            self._check_abort()
            self.recorder = Recorder(
                [(s, self.profile_spec(n).on_failure) for n, s in self.sources.items()],
                self.bus,
                between_folder=self.bundle.data / "between",
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
            try:
                self._shutdown()
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk refusing run.json: still seal
                if status == "completed":
                    status, reason = "failed", f"stopping the run failed: {type(exc).__name__}: {exc}"
                self.bus.emit(ev.ERROR, f"stopping the run failed: {type(exc).__name__}: {exc}")
        if self.recorder is not None and self.recorder.fatal and status == "completed":
            status, reason = "failed", self.recorder.fatal
        if self.recorder is not None and status == "completed":
            # Sources given up on under `on_failure: continue`: the run completed without them.
            gone = [st.failed for st in self.recorder.states.values() if st.failed]
            if gone:
                reason = "completed without " + "; ".join(gone)
        return self._finish(status, reason)

    _failed_reason: str = ""
    _events_not_written: int = 0

    def profile_spec(self, name: str):
        for s in self.profile.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def _lock_instruments(self) -> None:
        """Take each physical instrument's lock up front, so a meter another console reads
        refuses this run before a bundle exists (their commands and data must not interleave)."""
        from labconsole.sources.registry import create_source, get_driver

        held: dict[str, str] = {}
        for spec in self.profile.sources:
            if spec.emulator is not None:
                continue  # the emulator started for it gets a fresh loopback address
            try:
                if get_driver(spec.driver).lock_key is Source.lock_key:
                    continue  # a source many readers may share (simulated, NVML, RAPL, replay)
                key = create_source(spec.name, spec.driver, dict(spec.options), spec.sample_interval_s).lock_key()
            except Exception:  # noqa: BLE001 - opening the source reports what is wrong with it
                continue
            if not key:
                continue
            if key in held:
                raise LockBusy(f"sources {held[key]} and {spec.name} name the same instrument ({key}); a console reads each instrument once")
            self._locks.append(instrument_lock(key).acquire())
            held[key] = spec.name
        self._held_keys = set(held)

    _held_keys: set = set()

    def _release_locks(self) -> None:
        while self._locks:
            self._locks.pop().release()

    def _timeline_sink(self, event: ev.Event) -> None:
        if self.bundle is not None and self.bundle.events_sink is not None:
            if event.kind == ev.PROGRESS:
                now = time.monotonic()
                if now - self._last_progress_event < 1.0:
                    return
                self._last_progress_event = now
            try:
                self.bundle.events_sink(event)
            except (OSError, ValueError):
                # A disk that refuses the timeline must not take down whoever emitted the event
                # (an acquisition thread, the flusher); the count goes into run.json.
                self._events_not_written += 1

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
            cwd=str(Path.cwd()),  # python:MODULE SUTs and command workloads resolve from here
            **self.options.run_info,
        )
        self.bus.emit(ev.INFO, f"recording to {b.root}", bundle=str(b.root))

    def _open_sources(self) -> None:
        from labconsole.bundle import environment

        self._set_phase("sources")
        found = []
        for spec in self.profile.sources:
            try:
                opened = open_source(spec, held=self._held_keys)
            except Exception as exc:  # noqa: BLE001
                msg = f"source {spec.name} ({spec.driver}) cannot be used: {exc}"
                if spec.on_failure == "stop":
                    self.bus.emit(ev.ERROR, msg, source=spec.name)
                    self._failed_reason = msg
                    raise _PhaseFailed(msg) from None
                self.bus.emit(ev.WARNING, msg + "; continuing without it (on_failure: continue)", source=spec.name)
                found.append(source_entry(spec, error=exc))
                continue
            if opened.lock is not None:
                self._locks.append(opened.lock)
            if opened.emulator is not None:
                self._emulators.append(opened.emulator)
                self.bus.emit(ev.INFO, f"source {spec.name}: started a loopback emulator ({opened.emulator.source_options()})", source=spec.name)
            self.sources[spec.name] = opened.source
            found.append(source_entry(spec, opened))
            self.bus.emit(ev.INFO, f"source {spec.name}: {opened.identity.describe()}", source=spec.name, identity=opened.identity.as_dict())
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
        self.calibration.on_change = lambda: self.bundle.write_json("calibration.json", self.calibration.as_dict())
        for step in self.calibration.steps:
            if not step.applies(ctx):
                self.calibration.mark_not_applicable(step)
        if self.step_runner is not None:  # the console guides the operator step by step
            self.step_runner.drive(self.calibration, lambda: self.aborted or bool(self.recorder and self.recorder.fatal))
        else:
            for step in self.calibration.applicable():
                self._check_abort()
                self.calibration.run_step(step)
        self.bundle.write_json("calibration.json", self.calibration.as_dict())
        verdict = self.calibration.verdict()
        self.bus.emit(ev.RESULT if verdict == "pass" else ev.WARNING, f"calibration: {verdict.upper()}", phase="calibration", verdict=verdict)

    def _probe_workload(self) -> None:
        """Measure the SUT once for `auto` LoadGen settings, before ranging.

        Ranging and testing must run the same load (MLPerf runs one command twice), and a
        probe inside a phase would also put its burst of work next to the power window.
        """
        wl = self.profile.workload
        if not isinstance(wl, LoadGenWorkload):
            return
        assert self.bundle is not None
        if self.options.resolved:
            # A rerun: the values the original run measured, so the load is the same.
            self.resolved_settings = {k: float(self.options.resolved[k]) for k in ("target_qps", "expected_latency_ms") if k in self.options.resolved}
            self.bundle.update_run(workload_resolved=dict(self.options.resolved), workload_resolved_reused=True)
            shown = ", ".join(f"{k} {v:.6g}" for k, v in self.resolved_settings.items())
            self.bus.emit(ev.INFO, f"reusing the recorded 'auto' LoadGen settings: {shown}", phase="probe", settings=self.resolved_settings)
            return
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
        """Sources with ranges to set, less those given up on under `on_failure: continue`."""
        gone = {n for n, st in getattr(self.recorder, "states", {}).items() if st.failed}
        return [n for n, s in self.sources.items() if n not in gone and s.capabilities().has_ranges]

    def _tolerate(self, name: str, what: str, exc: Exception) -> None:
        """A source's command failed outside the acquisition thread: fatal under `on_failure:
        stop`; under `continue` a warning (its acquisition thread reconnects or gives up)."""
        if self.profile_spec(name).on_failure == "stop":
            raise exc
        self.bus.emit(ev.WARNING, f"{name}: could not {what} ({exc}); going on (on_failure: continue)", source=name)

    def _read_back_ranges(self) -> dict[str, dict]:
        out = {}
        for n in self._ranged_sources():
            try:
                out[n] = self.sources[n].get_ranges().as_dict()
            except Exception as exc:  # noqa: BLE001 - the phase's record must still be written
                out[n] = {"error": str(exc)}
        return out

    def _run_phase(self, phase: str, auto_range: bool) -> None:
        assert self.bundle is not None and self.recorder is not None
        if auto_range:
            for name in self._ranged_sources():
                try:
                    rs = self.sources[name].set_ranges(auto=True)
                except Exception as exc:  # noqa: BLE001
                    self._tolerate(name, f"switch auto-range on for {phase}", exc)
                    continue
                self.bus.emit(ev.INFO, f"{name}: auto-range on for {phase}", phase=phase, source=name, ranges=rs.as_dict())
        settle = self.profile.procedure.settle_s
        if settle:
            self.bus.emit(ev.INFO, f"settling {settle:g} s before {phase}", phase=phase)
            if not self.wait(settle):
                self._check_abort()
        folder = self.bundle.phase_dir(phase)
        self._set_phase(phase)
        self.progress[phase] = []
        self._phase_hook("begin", phase)
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
        summaries: dict[str, dict] = {}
        try:
            result: WorkloadResult = runner.run()
            if result.status == "completed":
                # Keep recording a moment past LoadGen's end, so every source has samples on
                # both sides of power_end (energy counters are interpolated at the edges).
                self.wait(self._tail_s())
        finally:
            with self._lock:
                self._workload = None
            summaries = self._phase_hook("end", phase)
            self.recorder.end_segment()
        stats = {f"{s}/{c}": st.as_dict() for (s, c), st in self.recorder.stats_for(phase).items()}
        self.bundle.write_json(f"{phase}/phase.json", {"workload": result.as_dict(), "samples": stats, "ranges": self._read_back_ranges(), "meter_summaries": summaries})
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

    def _phase_hook(self, which: str, phase: str) -> dict[str, dict]:
        """Tell the sources a phase begins/ends (PTD starts a marked measurement); collect the
        meters' own summaries at the end. A failing source is reported, not fatal here: its
        acquisition thread reconnects or gives up by the profile's on_failure policy."""
        out: dict[str, dict] = {}
        for name, src in self.sources.items():
            try:
                if which == "begin":
                    src.begin_phase(phase)
                    continue
                summary = src.end_phase(phase)
            except Exception as exc:  # noqa: BLE001
                self.bus.emit(ev.WARNING, f"{name}: could not {which} the {phase} phase on the meter: {exc}", phase=phase, source=name)
                continue
            if summary:
                out[name] = summary
                if summary.get("message"):
                    kind = ev.WARNING if summary.get("warning") else ev.INFO
                    self.bus.emit(kind, f"{name}: {phase}: {summary['message']}", phase=phase, source=name, meter_summary=summary)
        return out

    def _tail_s(self) -> float:
        slowest = max((src.sample_interval_s for src in self.sources.values()), default=0.1)
        return min(2.0, max(0.2, 2 * slowest))

    def _watch_fatal(self, runner: Any) -> None:
        while True:
            with self._lock:
                if self._workload is not runner:
                    return
            if self.recorder is not None and self.recorder.fatal:
                self._fail(self.recorder.fatal)
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
                self._tolerate(name, "set the fixed ranges", exc)
                continue
            self.ranges_chosen[name] = {"max_volts": max_v, "max_amps": max_a, "requested": {"volts": req_v, "amps": req_a}, "read_back": got.as_dict()}
            if known:
                ok = got.volts == want_v and got.amps == want_a
            else:  # no range table for this meter: what it chose must at least hold the request
                ok = got.volts >= req_v and got.amps >= req_a
                want_v, want_a = got.volts, got.amps
            ok = ok and not got.auto_v and not got.auto_a
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
            # Drivers that keep their own counters (lost samples, protocol errors) report them too.
            diagnostics = {n: s.diagnostics() for n, s in self.sources.items() if callable(getattr(s, "diagnostics", None))}
            self.bundle.update_run(
                acquisition={
                    "sources": counts,
                    "samples_read": sum(c["read"] for c in counts.values()),
                    "samples_written": self.recorder.written,
                    "samples_lost": sum(c["lost"] + c["unrecorded"] for c in counts.values()),
                    "events_not_written": self._events_not_written,
                    "diagnostics": diagnostics,
                }
            )

    def _finish(self, status: str, reason: str) -> RunOutcome:
        assert self.bundle is not None
        try:
            return self._analyse_and_seal(status, reason)
        finally:
            self._release_locks()  # whatever failed above, the next console may use the folder

    def _analyse_and_seal(self, status: str, reason: str) -> RunOutcome:
        from labconsole.mlperf.summary import summarise

        assert self.bundle is not None
        self._set_phase("analysis")
        # The verdict goes into run.json first, so the summary's checks see the final status.
        try:
            self.bundle.update_run(exit_status=status, reason=reason, stop=iso_utc())
        except OSError as exc:
            self.bus.emit(ev.ERROR, f"could not write run.json: {exc.strerror or exc}")
        report = None
        check_list: list[dict] = []
        try:
            report, check_list = summarise(self.bundle.root)
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


@dataclass
class OpenedSource:
    source: Source
    identity: Any  # sources.base.Identity
    capabilities: Any  # sources.base.Capabilities
    emulator: Any = None  # the loopback emulator started for it, if the profile asked for one
    lock: Any = None  # the one-console-per-instrument lock, released with the source

    def close(self) -> None:
        """Close the source, stop its emulator, release its lock (each even if one fails)."""
        try:
            self.source.close()
        finally:
            try:
                if self.emulator is not None:
                    self.emulator.stop()
            finally:
                if self.lock is not None:
                    self.lock.release()


def open_source(spec: Any, held: set | frozenset = frozenset()) -> OpenedSource:
    """Start the source's emulator where the profile asks for one, open the source, identify it.

    `held`: instrument lock keys the caller already holds (not taken again). On any failure,
    whatever was started is stopped again before the error propagates.
    """
    from labconsole.sources.registry import create_source

    handle = None
    lock = None
    try:
        options = dict(spec.options)
        if spec.emulator is not None:
            from labconsole.emulators.registry import start_for_source

            handle = start_for_source(spec.driver, dict(spec.emulator))
            options.update(handle.source_options())
        src = create_source(spec.name, spec.driver, options, spec.sample_interval_s)
        key = src.lock_key()
        if key and key not in held:  # one console per instrument: a second one is refused, not interleaved
            lock = instrument_lock(key).acquire()
        src.open()
        try:
            ident = src.identify()
            caps = src.capabilities()
        except BaseException:
            src.close()
            raise
    except BaseException:
        if handle is not None:
            handle.stop()
        if lock is not None:
            lock.release()
        raise
    return OpenedSource(src, ident, caps, handle, lock)


def source_entry(spec: Any, opened: OpenedSource | None = None, error: BaseException | None = None) -> dict[str, Any]:
    """A source as `environment.json` records it (what a rerun compares against)."""
    entry: dict[str, Any] = {"name": spec.name, "driver": spec.driver, "scope": spec.scope}
    if opened is None:
        entry.update(status="unavailable", error=str(error) if error is not None else "not opened")
    else:
        entry.update(status="ok", identity=opened.identity.as_dict(), capabilities=opened.capabilities.as_dict())
    entry["expected_identity"] = spec.identity.model_dump(mode="json") if spec.identity else None
    entry["calibration"] = spec.calibration.model_dump(mode="json") if spec.calibration else None
    return entry


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return ""
