"""The run engine: one run of a plan over a profile, ending in one sealed bundle.

    locks -> bundle -> sources (and their emulators) -> recorder -> the plan's steps ->
    stop -> the plan's analysis -> seal, with an exit status and a reason

The engine owns the run's lifecycle and knows nothing of what is measured: a `Plan` (the
MLPerf Inference procedure, `labconsole.procedure.plans.inference`) lists the steps, and each
step uses the engine's services (sources, recorder, bundle, events, abort, waiting, attaching a
workload). This is bluesky's run-engine/plan seam, without its message protocol.

Headless and UI-agnostic: it publishes events on an EventBus (the CLI prints them, the TUI
shows them, the bundle keeps them) and exposes the recorder and the progress series for live
views to pull. `run()` blocks; `abort()` may be called from any thread (Ctrl-C, TUI button).
Whatever happens, the bundle ends sealed with an exit status and a reason, even when the plan
raises.
"""

from __future__ import annotations

import getpass
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from labconsole import __version__
from labconsole import events as ev
from labconsole.bundle import environment
from labconsole.bundle.writer import BundleWriter, iso_utc
from labconsole.emulators.registry import start_for_source
from labconsole.events import EventBus
from labconsole.locks import LockBusy, instrument_lock, recordings_lock
from labconsole.profile import LoadedProfile
from labconsole.recorder import Recorder
from labconsole.sources.base import Source
from labconsole.sources.registry import create_source, get_driver
from labconsole.workload.runner import ProgressPoint


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
    """Raised inside the run to stop it: the operator aborted, or the engine failed it."""


class RunFailed(Exception):
    """Raised by a step (or the engine) to end the run as failed with this reason."""


class RunRefused(RuntimeError):
    """The run could not start at all (folder in use or not writable); nothing was recorded."""


Step = Callable[["RunEngine"], None]


class Plan(Protocol):
    """What a run measures, step by step; the engine runs it between opening and sealing."""

    def steps(self, engine: RunEngine) -> list[Step]:
        """The steps in order, asked for once the sources are open and the recorder runs.
        The engine checks for an abort between steps; a step raises RunAborted or RunFailed
        to stop the run."""
        ...

    # Optional: `prepare(engine)`, run after the bundle exists and before the sources open (the
    # official plan starts power-dev's director there), and `release(engine)`, run once the
    # sources are closed, whatever happened (it stops what prepare started).

    def analyse(self, engine: RunEngine) -> tuple[dict, list[dict]]:
        """(report, checks) for `summary.json`, from what the bundle holds; asked for after
        the sources are closed, whatever the exit status (run.json already has it)."""
        ...


class RunEngine:
    def __init__(self, loaded: LoadedProfile, plan: Plan, options: RunOptions | None = None, bus: EventBus | None = None):
        self.loaded = loaded
        self.plan = plan
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
        # (phase, monotonic start) in order, for live views' whole-run estimate.
        self.phase_log: list[tuple[str, float]] = [(self.phase, self.phase_started_mono)]
        # The workload's progress per phase, filled by the plan's steps, pulled by live views.
        self.progress: dict[str, list[ProgressPoint]] = {}
        self.state = "created"
        self._locks: list = []  # recordings-folder and instrument locks held during the run
        self._held_keys: set = set()  # instrument lock keys taken before the bundle existed
        self._emulators: list = []  # loopback emulators started for sources with `emulator:`
        self._abort = threading.Event()
        self._abort_reason = ""
        self._failed_reason = ""
        self._workload = None  # the workload running now, so that abort() reaches it
        self._lock = threading.Lock()
        self._last_progress_event = 0.0
        self._events_not_written = 0

    # --- control (any thread) -------------------------------------------------------------------
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

    # --- services for the plan's steps (the run's thread) ------------------------------------------
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

    def should_stop(self) -> bool:
        """True once an abort was asked for or the recorder hit an error it cannot get past."""
        return self.aborted or bool(self.recorder and self.recorder.fatal)

    def check_abort(self) -> None:
        if self.recorder is not None and self.recorder.fatal and not self._abort.is_set():
            self._fail(self.recorder.fatal)
        if self._abort.is_set():
            raise RunAborted(self._abort_reason)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_started_mono = time.monotonic()
        self.phase_log.append((phase, self.phase_started_mono))

    def workload_target(self) -> dict:
        """What the workload running now must complete (LoadGen's sample count and minimum
        duration, once its worker said), for live progress; {} when none runs."""
        wl = self._workload
        return dict(getattr(wl, "target", None) or {})

    def spec(self, name: str):
        """The profile's entry for the source `name`."""
        for s in self.profile.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def sources_still_read(self) -> dict[str, Source]:
        """The open sources, less those given up on under `on_failure: continue`."""
        gone = {n for n, st in getattr(self.recorder, "states", {}).items() if st.failed}
        return {n: s for n, s in self.sources.items() if n not in gone}

    def tolerate(self, name: str, what: str, exc: Exception) -> None:
        """A source's command failed outside the acquisition thread: fatal under `on_failure:
        stop`; under `continue` a warning (its acquisition thread reconnects or gives up)."""
        if self.spec(name).on_failure == "stop":
            raise exc
        self.bus.emit(ev.WARNING, f"{name}: could not {what} ({exc}); going on (on_failure: continue)", source=name)

    @contextmanager
    def attached(self, runner: Any, watch: bool = True) -> Iterator[Any]:
        """While the block runs the workload `runner`, abort() reaches it. `watch`: an abort
        asked for already stops it at once, and a watchdog stops it when the recorder hits an
        error it cannot get past (a recorded phase; a short probe records nothing)."""
        with self._lock:
            self._workload = runner
        if watch:
            if self._abort.is_set():
                runner.abort(self._abort_reason)
            threading.Thread(target=self._watch_fatal, args=(runner,), daemon=True).start()
        try:
            yield runner
        finally:
            with self._lock:
                self._workload = None

    # --- the run -----------------------------------------------------------------------------------
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
            refused = RunRefused(f"cannot record into {recordings}: {exc.strerror or exc}")
            refused.bad_input = True  # the folder a person named (--out, `recordings:`): exit 2
            raise refused from None
        self.bus.add_sink(self._timeline_sink)
        try:
            self._start_bundle()
            prepare = getattr(self.plan, "prepare", None)
            if prepare is not None:  # what the plan starts before the sources (the official director)
                prepare(self)
            self._open_sources()
            self.check_abort()
            self.recorder = Recorder(
                [(s, self.spec(n).on_failure) for n, s in self.sources.items()],
                self.bus,
                between_folder=self.bundle.data / "between",
                stream_formats={n: self.spec(n).stream for n in self.sources},
            )
            self.recorder.start()
            for i, step in enumerate(self.plan.steps(self)):
                if i:
                    self.check_abort()
                step(self)
        except RunAborted as exc:
            status, reason = ("failed" if self._failed_reason else "aborted"), (self._failed_reason or str(exc))
        except RunFailed as exc:
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

    def _fail(self, reason: str) -> None:
        """Stop the run as failed (not aborted): the recorder hit an error it cannot get past."""
        if not self._failed_reason:
            self._failed_reason = reason
        self.abort(reason)

    def _watch_fatal(self, runner: Any) -> None:
        while True:
            with self._lock:
                if self._workload is not runner:
                    return
            if self.recorder is not None and self.recorder.fatal:
                self._fail(self.recorder.fatal)
                return
            time.sleep(0.2)

    def _lock_instruments(self) -> None:
        """Take each physical instrument's lock up front, so a meter another console reads
        refuses this run before a bundle exists (their commands and data must not interleave)."""
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
        self.set_phase("sources")
        found = []
        for spec in self.profile.sources:
            try:
                opened = open_source(spec, held=self._held_keys)
            except Exception as exc:  # noqa: BLE001
                msg = f"source {spec.name} ({spec.driver}) cannot be used: {exc}"
                if spec.on_failure == "stop":
                    self.bus.emit(ev.ERROR, msg, source=spec.name)
                    self._failed_reason = msg
                    raise RunFailed(msg) from None
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
            raise RunFailed("no source could be opened")
        assert self.bundle is not None
        self.bundle.write_json("environment.json", environment.collect(found))
        if self.profile.primary_source.name not in self.sources:
            raise RunFailed(f"the primary source {self.profile.primary_source.name} is unavailable; the metric cannot be measured")

    def _shutdown(self) -> None:
        self.set_phase("stopping")
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
        release = getattr(self.plan, "release", None)
        if release is not None:
            try:
                release(self)
            except Exception as exc:  # noqa: BLE001 - still seal
                self.bus.emit(ev.WARNING, f"stopping what the plan started failed: {exc}")
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
        assert self.bundle is not None
        self.set_phase("analysis")
        # The verdict goes into run.json first, so the summary's checks see the final status.
        try:
            self.bundle.update_run(exit_status=status, reason=reason, stop=iso_utc())
        except OSError as exc:
            self.bus.emit(ev.ERROR, f"could not write run.json: {exc.strerror or exc}")
        report = None
        check_list: list[dict] = []
        try:
            report, check_list = self.plan.analyse(self)
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
        self.set_phase("done")
        return RunOutcome(self.bundle.root, status, reason, report, check_list)


# --- a source as the profile describes it (the engine's and the rerun's bench probe) ---------------


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
    handle = None
    lock = None
    try:
        options = dict(spec.options)
        if spec.emulator is not None:
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
