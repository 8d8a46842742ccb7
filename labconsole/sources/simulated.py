"""The `simulated` source: a system power meter whose readings follow the workload's real CPU use.

It behaves like a WT310E-class meter on purpose, so the default bench exercises the whole
procedure: voltage and current ranges, auto-ranging (a reading taken while the range
switches is invalid), over-range above 140 % of a fixed range, an accuracy spec that gives
every sample its uncertainty, and optionally an energy counter.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Annotated, Literal

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
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError
from labconsole.instruments.yokogawa import lookup_model

if TYPE_CHECKING:
    import numpy as np

    from labconsole.samples.batch import ChannelBatch


# The longest a block of samples waits in the simulated meter before the recorder gets it.
BLOCK_S = 0.05
# Behind schedule by up to this much (the reading thread waited for the GIL, the disk), the
# meter hands over every sample it owes, as a real one's buffer would; further behind, it
# resynchronises.
CATCH_UP_S = 0.5


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

    def read(self, timeout: float) -> list[ChannelBatch]:
        """The samples due on the sample grid since the last read, delivered in blocks of up to
        BLOCK_S: a fast meter hands its buffer over a few times a second, so the recorder (and
        the CPU the system under test shares with it) wakes 1 / BLOCK_S times a second at most,
        whatever the sample rate. Each sample keeps its own time on the grid."""
        # numpy and the sample batches load with the first read, not with the profile (whose
        # check imports this module for its Options): the console's first paint does without them.
        import numpy as np

        from labconsole.samples.batch import OK, ChannelBatch, empty_batch, now_ns

        if not self._open:
            raise SourceError(f"{self.name}: read() on a closed source")
        interval = self.sample_interval_s
        now = time.monotonic()
        # Wait until a block is complete: one sample at slow rates, BLOCK_S of them at fast ones.
        wait = self._next_tick + max(0.0, BLOCK_S - interval) - now
        if wait > timeout:
            self._closed.wait(timeout)
            return []
        if wait > 0 and self._closed.wait(wait):
            return []
        now = time.monotonic()
        behind = now - self._next_tick
        if behind > CATCH_UP_S:
            # A stall (the machine or this thread was held up for long): resynchronise instead
            # of bursting out a backlog of fake samples.
            self._next_tick = now
            behind = 0.0
        n = max(1, int(behind / interval) + 1)
        ticks = self._next_tick + interval * np.arange(n)
        self._next_tick += interval * n
        wall_now, mono_now = now_ns()
        mono = np.minimum((ticks * 1e9).astype(np.int64), mono_now)
        wall = wall_now - (mono_now - mono)
        with self.io_lock:
            watts, volts, amps, pf = self.model.readings(n)
            range_v, range_a, status = self._ranges_for(volts, amps)
        batch = empty_batch(n)
        batch["wall_ns"], batch["mono_ns"] = wall, mono
        batch["range_v"], batch["range_a"], batch["status"] = range_v, range_a, status
        if self.options.energy_counter:
            # The counter integrates every reading, valid or not, as a meter's integrator does.
            last = self._last_mono if self._last_mono is not None else int(mono[0])
            dt_s = np.diff(mono, prepend=last) / 1e9
            batch["energy_j"] = self._energy_j + np.cumsum(watts * dt_s)
            self._energy_j = float(batch["energy_j"][-1])
            self._last_mono = int(mono[-1])
        ok = status == OK
        batch["watts"] = np.where(ok, watts, np.nan)
        batch["volts"] = np.where(ok, volts, np.nan)
        batch["amps"] = np.where(ok, amps, np.nan)
        batch["pf"] = np.where(ok, pf, np.nan)
        batch["uncertainty_w"] = np.where(ok, self.ACCURACY.uncertainty_w_many(watts, range_v, range_a, pf), np.nan)
        return [ChannelBatch("main", batch)]

    def _ranges_for(self, volts: np.ndarray, amps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The range each reading was taken in, and its status: with auto-ranging the reading
        during which a range switches is invalid (a real meter gives none); on fixed ranges a
        reading above 140 % of the range is over-range."""
        import numpy as np

        from labconsole.samples.batch import NO_DATA, OK, OVERRANGE

        n = len(volts)
        range_v, range_a = np.empty(n), np.empty(n)
        status = np.full(n, OK, dtype=np.uint8)
        if self._auto:
            for i in range(n):  # a state machine: sequential, but only two comparisons a sample
                changed_v = self._v.update(float(volts[i]))
                changed_a = self._a.update(float(amps[i]))
                if changed_v or changed_a:
                    status[i] = NO_DATA
                range_v[i], range_a[i] = self._v.current, self._a.current
        else:
            range_v[:], range_a[:] = self._v.current, self._a.current
            status[(amps > OVERRANGE_FACTOR * self._a.current) | (volts > OVERRANGE_FACTOR * self._v.current)] = OVERRANGE
        return range_v, range_a, status
