"""The `simulated` source: a system power meter whose readings follow the workload's real CPU use.

It behaves like a WT310E-class meter on purpose, so the default bench exercises the whole
procedure: voltage and current ranges, auto-ranging (a reading taken while the range
switches is invalid), over-range above 140 % of a fixed range, an accuracy spec that gives
every sample its uncertainty, and optionally an energy counter.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from labconsole import __version__
from labconsole.instruments.load_model import LoadModel, utilisation_source
from labconsole.instruments.ranges import (
    OVERRANGE_FACTOR,
    WT310E_CURRENT_RANGES,
    WT310E_VOLTAGE_RANGES,
    AutoRanger,
    RangeState,
    pick_range,
)
from labconsole.samples.batch import NO_DATA, OK, OVERRANGE, SAMPLE_DTYPE, ChannelBatch, now_ns
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError
from labconsole.instruments.yokogawa import lookup_model


class SimulatedOptions(DriverOptions):
    idle_w: float = Field(60.0, ge=0, le=1e6, description="power with the SUT idle (W)")
    dynamic_w: float = Field(140.0, ge=0, le=1e6, description="extra power at full utilisation (W)")
    noise_w: float = Field(1.0, ge=0, le=1e5, description="standard deviation of the noise (W)")
    volts: float = Field(230.0, gt=0, le=1000, description="mains voltage (V rms)")
    pf_idle: float = Field(0.85, gt=0, le=1)
    pf_load: float = Field(0.95, gt=0, le=1)
    utilisation: Literal["workload", "host"] | Annotated[float, Field(ge=0, le=1)] = Field(
        "workload",
        description="'workload': the CPU use of the benchmark's processes; 'host': the whole machine's; a number fixes it (0..1)",
    )
    energy_counter: bool = Field(False, description="also report a cumulative energy counter (J)")
    serial: str = Field("SIM-0001", max_length=64)
    seed: int | None = Field(None, ge=0, lt=2**64, description="noise seed (numpy's generators take 0 .. 2**64-1)")


class SimulatedSource(Source):
    driver = "simulated"
    Options = SimulatedOptions
    options: SimulatedOptions

    # Behaves like a WT310E, so it has that meter's accuracy: +-(0.1 % of reading + 0.05 % of range)
    ACCURACY = lookup_model("WT310E").accuracy_at(3)

    def __init__(self, name: str, options: SimulatedOptions | None = None, sample_interval_s: float = 0.1):
        super().__init__(name, options, sample_interval_s)
        o = self.options
        if isinstance(o.utilisation, float) and not 0.0 <= o.utilisation <= 1.0:  # pragma: no cover
            raise SourceError(f"{name}: utilisation must be 'host' or a number in [0, 1]")
        util = utilisation_source(o.utilisation)
        self.model = LoadModel(
            idle_w=o.idle_w,
            dynamic_w=o.dynamic_w,
            noise_w=o.noise_w,
            volts=o.volts,
            pf_idle=o.pf_idle,
            pf_load=o.pf_load,
            seed=o.seed,
            utilisation=util,
        )
        self._auto = True
        self._v = AutoRanger(WT310E_VOLTAGE_RANGES, pick_range(o.volts, WT310E_VOLTAGE_RANGES))
        self._a = AutoRanger(WT310E_CURRENT_RANGES)
        self._open = False
        self._next_tick = 0.0
        self._energy_j = 0.0
        self._last_mono: int | None = None
        self._wall_offset: int | None = None  # wall ns - monotonic ns (see read)
        self._closed = threading.Event()

    def open(self) -> None:
        self._open = True
        self._closed.clear()
        self._next_tick = time.monotonic()

    def close(self) -> None:
        self._open = False
        self._closed.set()

    def identify(self) -> Identity:
        return Identity(
            driver=self.driver,
            vendor="labconsole",
            model="Simulated meter",
            serial=self.options.serial,
            firmware=__version__,
            address="simulated://" + self.name,
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            channels=("main",),
            quantities=("watts", "volts", "amps", "pf") + (("energy",) if self.options.energy_counter else ()),
            power_kind="meter",
            has_energy_counter=self.options.energy_counter,
            voltage_ranges=WT310E_VOLTAGE_RANGES,
            current_ranges=WT310E_CURRENT_RANGES,
            auto_range=True,
            update_periods_s=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            accuracy=self.ACCURACY,
        )

    def set_ranges(self, volts: float | None = None, amps: float | None = None, auto: bool | None = None) -> RangeState:
        with self.io_lock:
            if auto is not None:
                self._auto = auto
            if volts is not None:
                self._v.current = pick_range(volts, WT310E_VOLTAGE_RANGES)
                self._auto = False if auto is None else self._auto
            if amps is not None:
                self._a.current = pick_range(amps, WT310E_CURRENT_RANGES)
                self._auto = False if auto is None else self._auto
            return self.get_ranges()

    def get_ranges(self) -> RangeState:
        with self.io_lock:
            return RangeState(volts=self._v.current, amps=self._a.current, auto_v=self._auto, auto_a=self._auto)

    # Behind schedule by up to this much (the reading thread waited for the GIL, the disk), the
    # meter hands over every sample it owes, as a real one's buffer would; further behind (a
    # stall), it resynchronises instead of bursting out a backlog of fake samples.
    CATCH_UP_S = 0.5
    # A fast meter streams blocks, not single readings: at 10 kHz one read every 10 ms hands
    # over 100 samples (a reading thread woken 10,000 times a second would hold the GIL the
    # console needs). At 100 samples/s and slower every read is one sample, as before.
    BLOCK_S = 0.01

    def read(self, timeout: float) -> list[ChannelBatch]:
        if not self._open:
            raise SourceError(f"{self.name}: read() on a closed source")
        now = time.monotonic()
        block = max(1, int(self.BLOCK_S / self.sample_interval_s)) if self.sample_interval_s > 0 else 1
        wait = self._next_tick + (block - 1) * self.sample_interval_s - now  # the block's newest sample is due then
        if wait > timeout:
            self._closed.wait(timeout)
            return []
        if wait > 0 and self._closed.wait(wait):
            return []
        now = time.monotonic()
        interval = self.sample_interval_s
        if self._next_tick < now - self.CATCH_UP_S:
            self._next_tick = now
        due = 1 + int((now - self._next_tick) / interval) if interval > 0 else 1
        first = self._next_tick
        self._next_tick += due * interval
        wall, mono = now_ns()
        # Each owed sample at its tick of the meter's clock (monotonic), dated on the wall clock
        # by one offset, kept while it holds within 1 ms (reading the two clocks differs by a
        # few us each time: the grid stays a grid) and taken again when the wall clock steps.
        if self._wall_offset is None or abs(wall - mono - self._wall_offset) > 1_000_000:
            self._wall_offset = wall - mono
        monos = [int((first + k * interval) * 1e9) for k in range(due)]
        return [ChannelBatch("main", self._samples(monos, self._wall_offset))]

    def _samples(self, monos: list[int], wall_offset: int) -> np.ndarray:
        rows = []
        readings = self.model.readings(len(monos))
        energy = math.nan
        for mono, r in zip(monos, readings):
            wall = mono + wall_offset
            with self.io_lock:
                status = OK
                if self._auto:
                    changed_v = self._v.update(r.volts)
                    changed_a = self._a.update(r.amps)
                    if changed_v or changed_a:
                        status = NO_DATA  # a real meter gives no valid reading while switching range
                elif r.amps > OVERRANGE_FACTOR * self._a.current or r.volts > OVERRANGE_FACTOR * self._v.current:
                    status = OVERRANGE
                rv, ra = self._v.current, self._a.current
            if self.options.energy_counter:
                if self._last_mono is not None:
                    self._energy_j += r.watts * (mono - self._last_mono) / 1e9
                self._last_mono = mono
                energy = self._energy_j
            if status == OK:
                unc = self.ACCURACY.uncertainty_w(r.watts, rv, ra, r.pf)
                rows.append((wall, mono, r.watts, r.volts, r.amps, r.pf, energy, unc, rv, ra, status))
            else:
                rows.append((wall, mono, math.nan, math.nan, math.nan, math.nan, energy, math.nan, rv, ra, status))
        return np.array(rows, dtype=SAMPLE_DTYPE)
