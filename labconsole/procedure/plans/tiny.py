"""MLPerf Tiny's energy mode as a plan the run engine runs (`workload: {type: tiny, ...}`).

    connect: keep the LPM01A's values by sample index, start the emulated DUT if the profile
    asks, reach the DUT (through the IO manager: `setbaud`), wait for its boot, `name`,
    `profile` -> session: one recorded phase for the whole session; N from a short timed probe
    (`auto`) or given; 5 x (`db load` + `db <hex>`, `infer N W`, the two timestamp events) ->
    analysis: the session in the MLCommons runner's layout (data/tiny/), scored by
    labconsole.mlperf.tiny exactly as published results are.

The LPM01A is configured by its source (energy output, ascii_dec, 1 kHz, `eventsrc d7 fal`) and
acquires for the whole session, as the MLCommons runner does. Each trial is what the runner
would drain after its infer: trial k's samples run from where trial k-1 ended (the first from
the acquisition's start, so the DUT's boot-time edge is in it), its window the last two events.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from labconsole import events as ev
from labconsole.emulators import tiny_dut
from labconsole.instruments import tiny as tp
from labconsole.mlperf.tiny import analysis, export
from labconsole.procedure.engine import RunAborted, RunEngine, RunFailed, Step
from labconsole.profile import TinyWorkload
from labconsole.sources.tiny_dut import DutAborted, DutError, TinyDut

_EVENT = re.compile(r"event (\d+)")
PROBE_MIN_S = 0.5  # a probe window at least this long times one inference well enough
AUTO_MARGIN = 1.05  # auto N aims this much above the minimum window


class TinyPlan:
    def __init__(self) -> None:
        self.dut: TinyDut | None = None
        self.emulator = None
        self.identity: dict[str, str] = {}
        self.trials: list[dict] = []
        self.log: list[str] = []
        self.inferences: int | None = None
        self.source_name: str | None = None
        self._next_start = 0
        self._events: list[tuple[int, int]] = []  # (counter, absolute sample index) of every D7 event
        self._event_wall: dict[int, int] = {}  # absolute sample index -> the board event's wall ns

    # --- the plan ------------------------------------------------------------------------------------
    def steps(self, engine: RunEngine) -> list[Step]:
        return [self.connect, self.session]

    def _log(self, line: str) -> None:
        self.log.append(f"{datetime.now(timezone.utc).strftime('%m%d.%H%M%S.%f')[:-3]} {line}")

    def _source(self, engine: RunEngine):
        wl = engine.profile.workload
        name = wl.energy_source or engine.profile.primary_source.name
        src = engine.sources.get(name)
        if src is None or not callable(getattr(src, "keep_trace", None)):
            raise RunFailed(f"workload.energy_source: {name} is not an open lpm01a source (MLPerf Tiny's energy monitor)")
        self.source_name = name
        return src

    def connect(self, engine: RunEngine) -> None:
        wl: TinyWorkload = engine.profile.workload  # type: ignore[assignment]
        src = self._source(engine)
        src.keep_trace()
        engine.set_phase("connect")
        port = wl.dut.port
        if wl.dut.emulator is not None:
            opts = dict(wl.dut.emulator)
            meter = engine.spec(self.source_name).emulator or {}
            for key in ("bench", "speed"):  # wired to the LPM01A emulator the source started
                if key not in opts and key in meter:
                    opts[key] = meter[key]
            try:
                self.emulator = tiny_dut.start(opts)
            except (ValueError, OSError) as exc:
                raise RunFailed(f"workload.dut.emulator: {exc}") from None
            port = self.emulator.path
            engine.bus.emit(ev.INFO, f"DUT: started the emulated DUT on {port}" + (" behind an IO manager" if self.emulator.via_io else ""))
        assert port is not None
        self.dut = TinyDut(port, wl.dut.baud, wl.dut.io_manager, wl.dut.timeout_s, log=self._log)
        try:
            self.dut.open()
            booted = self.dut.wait_for(tp.INIT_DONE, min(wl.dut.timeout_s, 3.0))
            if booted:
                self.dut.wait_for(tp.READY, 2.0)  # the boot's own m-ready, not to be taken for a reply
            self.dut.drain(0.1)
            if wl.dut.io_manager:
                try:  # the STM32 interface board has `setbaud`; the Arduino IO manager does not
                    said = self.dut.io(f"setbaud {wl.dut.dut_baud}", timeout_s=2.0)
                    if any(tp.parse_error(ln) for ln in said):
                        engine.bus.emit(ev.WARNING, f"IO manager: `setbaud {wl.dut.dut_baud}` refused ({'; '.join(said)}); going on at its own DUT baud")
                except DutAborted:
                    raise
                except DutError as exc:
                    engine.bus.emit(ev.WARNING, f"IO manager: `setbaud {wl.dut.dut_baud}`: {exc}; going on at its own DUT baud")
            self.identity = self.dut.identify()
        except DutError as exc:
            raise RunFailed(f"DUT: {exc}") from None
        what = ", ".join(f"{k} {v}" for k, v in self.identity.items())
        engine.bus.emit(ev.RESULT, f"DUT: {what}" + ("" if booted else " (no boot messages: it was already running)"), dut=self.identity)
        assert engine.bundle is not None
        engine.bundle.update_run(tiny={"dut": self.identity, "port": port})

    def session(self, engine: RunEngine) -> None:
        wl: TinyWorkload = engine.profile.workload  # type: ignore[assignment]
        assert engine.bundle is not None and engine.recorder is not None and self.dut is not None
        src = engine.sources[self.source_name]
        folder = engine.bundle.phase_dir("testing")
        engine.set_phase("testing")
        engine.progress["testing"] = []
        engine.recorder.begin_segment("testing", folder)
        engine.bus.emit(ev.PHASE_START, f"testing: MLPerf Tiny energy, {wl.windows} windows", phase="testing")
        inputs = self._inputs(wl)
        try:
            with engine.attached(self.dut):  # an abort (Ctrl-C, the console) stops the wait for the DUT
                self._windows(engine, src, wl, inputs)
        except DutAborted as exc:
            raise RunAborted(str(exc)) from None
        except DutError as exc:
            raise RunFailed(f"DUT: {exc}") from None
        finally:
            engine.recorder.end_segment()
            self._close()
        engine.bus.emit(ev.PHASE_END, "testing done", phase="testing")

    def _windows(self, engine: RunEngine, src, wl: TinyWorkload, inputs: list[bytes]) -> None:
        n = self._choose_n(engine, src, wl, inputs[0])
        for k in range(wl.windows):
            engine.check_abort()
            data = inputs[k % len(inputs)]
            trial = self._trial(engine, src, wl, data, n, wl.warmups, f"input_{k:03d}.bin" if not wl.inputs else Path(wl.inputs[k % len(wl.inputs)]).name)
            wall = trial.pop("_wall_s", None)
            self.trials.append(trial)
            w = self._window_of(trial, src.options.frequency_hz)
            msg = f"window {k + 1}/{wl.windows}: {n} inferences" + (f", {w[0]:.3f} s, {w[1]:.3f} uJ/inf" if w else ", no window (fewer than 2 timestamps)")
            engine.bus.emit(ev.STEP if w else ev.WARNING, msg, phase="testing", window=k, tiny_window={"start_s": w[2], "stop_s": w[3], "wall_start_s": wall[0], "wall_stop_s": wall[1]} if w and wall else None)

    def analyse(self, engine: RunEngine) -> tuple[dict, list[dict]]:
        self._close()
        assert engine.bundle is not None
        src = engine.sources.get(self.source_name or "")
        counters = dict(getattr(src, "counters", {}) or {})
        opts = getattr(src, "options", None)
        run_info = {
            "id": engine.bundle.root.name,
            "profile": engine.profile.name,
            "sample_rate_hz": float(getattr(opts, "frequency_hz", 1000)),
            "voltage_v": getattr(opts, "voltage_mv", 0) / 1000.0 or None,
            "lost_samples": int(counters.get("dropped", 0)),
            "supplies": sum(1 for s in engine.profile.sources if s.driver == "lpm01a"),
            "dut": self.identity,
            "inferences": self.inferences,
            "monitor": self.source_name,
            "io_manager": engine.profile.workload.dut.io_manager,
            "exit_status": engine.bundle.run_info.get("exit_status"),
            "reason": engine.bundle.run_info.get("reason", ""),
        }
        export.write_mlcommons(engine.bundle.data / "tiny", self.trials, self.log, run_info)
        return analysis.summarise(engine.bundle.root)

    # --- helpers -------------------------------------------------------------------------------------
    def _close(self) -> None:
        if self.dut is not None:
            try:
                self.dut.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                pass
            self.dut = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    @staticmethod
    def _inputs(wl: TinyWorkload) -> list[bytes]:
        if wl.inputs:
            out = []
            for name in wl.inputs:
                try:
                    out.append(Path(name).read_bytes())
                except OSError as exc:
                    raise RunFailed(f"workload.inputs: {name}: {exc.strerror or exc}") from None
                if not 0 < len(out[-1]) <= tp.MAX_DB_INPUT:
                    raise RunFailed(f"workload.inputs: {name}: {len(out[-1])} bytes (1..{tp.MAX_DB_INPUT})")
            return out
        rng = np.random.default_rng(wl.seed)
        return [rng.integers(0, 256, wl.input_bytes, dtype=np.uint8).tobytes() for _ in range(wl.windows)]

    def _choose_n(self, engine: RunEngine, src, wl: TinyWorkload, data: bytes) -> int:
        if wl.inferences != "auto":
            self.inferences = int(wl.inferences)
            return self.inferences
        fs = src.options.frequency_hz
        p = 10
        for _ in range(8):
            trial = self._trial(engine, src, wl, data, p, 0, "probe", keep_range=False)
            trial.pop("_wall_s", None)
            w = self._window_of(trial, fs)
            if w is None:
                raise RunFailed("auto inferences: the probe saw no timestamp pair (is the DUT's timestamp line wired to the LPM01A's D7?)")
            if w[0] >= PROBE_MIN_S:
                t_inf = w[0] / p
                n = max(1, math.ceil(wl.min_window_s * AUTO_MARGIN / t_inf))
                engine.bus.emit(ev.RESULT, f"auto inferences: {t_inf * 1000:.3f} ms per inference (probe of {p}) -> infer {n} {wl.warmups}", phase="testing", inferences=n)
                self.inferences = n
                return n
            p = max(p * 2, int(p * PROBE_MIN_S * 1.2 / max(w[0], 1e-6)) + 1)
        raise RunFailed("auto inferences: the probe did not reach a measurable window")

    def _trial(self, engine: RunEngine, src, wl: TinyWorkload, data: bytes, n: int, w: int, name: str, keep_range: bool = True) -> dict:
        assert self.dut is not None
        start = self._next_start
        self.dut.load(data)
        seen_before = len(self._gather(src))
        # Timeout: the inferences at the rate measured (or a generous guess) plus the DUT's own.
        per = (self._last_t_inf or 1.0)
        reply = self.dut.infer(n, w, timeout_s=wl.dut.timeout_s + 3 * (n + w) * per)
        deadline = time.monotonic() + max(2.0, wl.dut.timeout_s)
        while len(self._gather(src)) - seen_before < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the board's event line may come after the DUT's m-infer-done
        time.sleep(0.05)
        stop = src.samples_so_far()
        self._gather(src)
        results: list[float] = []
        for ln in reply.lines:
            if (v := tp.parse_results(ln)) is not None:
                results = v
        trace = src.trace()
        # An event at a trial's boundary index closes that trial (it came after its last sample).
        events = [(c, i) for c, i in self._events if start < i <= stop]
        trial = {
            "file": name,
            "infer": {"results": results, "total_inferences": 1, "iterations": n, "warmups": w},
            "power": {"samples": trace[start:stop].tolist(), "timestamps": [[f"{c:02d}", i - start] for c, i in events], "extracted_power": None, "voltage": src.options.voltage_mv / 1000.0},
            "mode": "e",
        }
        if len(events) >= 2:
            win = (events[-1][1] - events[-2][1]) / src.options.frequency_hz
            self._last_t_inf = win / n if n else None
        if keep_range:
            self._next_start = stop
        if len(events) >= 2:  # where the window lies on the live plot's time axis
            trial["_wall_s"] = (self._event_wall.get(events[-2][1], 0) / 1e9, self._event_wall.get(events[-1][1], 0) / 1e9)
        return trial

    _last_t_inf: float | None = None

    def _gather(self, src) -> list[tuple[int, int]]:
        for e in src.take_events():
            if e.kind == "event" and (m := _EVENT.search(e.text)):
                self._events.append((int(m.group(1)), int(e.sample_index)))
                self._event_wall[int(e.sample_index)] = int(e.wall_ns)
            elif e.kind in ("drop", "error"):
                self._log(f"lpm01a: {e.kind}: {e.text}")
        return self._events

    @staticmethod
    def _window_of(trial: dict, fs: float) -> tuple[float, float, float, float] | None:
        ts = [i for _, i in trial["power"]["timestamps"]]
        if len(ts) < 2:
            return None
        a, b = ts[-2], ts[-1]
        n = trial["infer"]["iterations"]
        e = float(np.sum(np.array(trial["power"]["samples"][a:b], dtype=np.float64)))
        return (b - a) / fs, e / n * 1e6, a / fs, b / fs
