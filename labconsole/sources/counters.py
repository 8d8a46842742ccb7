"""Sensors read by polling: hardware energy counters, their update period, and the read loop.

Shared by the drivers whose numbers come from the host rather than from a meter (NVML, RAPL):

* `EnergyCounter` turns a raw cumulative counter into joules since the source opened, handling
  wrap-around (RAPL's `max_energy_range_uj`) or a reset (NVML's counter restarts when the driver
  reloads), and derives watts from the counter's own changes, labelled `counter`.
* `infer_update_period` is Zeus's method: poll tightly, and the smallest interval between two
  observed value changes is the sensor's real update period.
* `PollingSource` samples on a fixed grid at the profile's interval and polls the counters in
  between, so a counter that updates every 100 ms is seen changing within a few ms of the update
  (watts are energy over the time between *changes*, not between our reads) and a counter that
  wraps every minute is never left unread long enough to wrap twice.
"""

from __future__ import annotations

import math
import statistics
import threading
from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from labconsole.samples.batch import ERROR, NO_DATA, OK, ChannelBatch, now_ns
from labconsole.sources.base import Source, SourceError


# ---------------------------------------------------------------------------------------------
# Update period


@dataclass
class UpdatePeriod:
    """What tight polling of one sensor showed."""

    period_s: float | None  # the smallest interval between two observed changes (Zeus)
    median_s: float | None  # the typical interval (a value that repeats makes one interval look double)
    changes: int  # value changes observed
    polls: int
    window_s: float
    poll_gap_s: float | None  # median time between our polls: the resolution of the estimate

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.period_s is None:
            return f"no change seen in {self.window_s:.2f} s ({self.polls} reads): slower than the window, or a constant value"
        return f"{self.period_s * 1000:.1f} ms (median {self.median_s * 1000:.1f} ms, {self.changes} changes in {self.window_s:.2f} s)"


def infer_update_period(times_ns: Sequence[int], values: Sequence[Any]) -> UpdatePeriod:
    """Zeus's method on a tight-polling record: min interval between observed value changes.

    The first change is not counted as the start of an interval's worth of waiting: polling
    began at an arbitrary point of the sensor's cycle, so intervals run from change to change.
    """
    n = min(len(times_ns), len(values))
    window_s = (times_ns[n - 1] - times_ns[0]) / 1e9 if n >= 2 else 0.0
    gaps = [(times_ns[i] - times_ns[i - 1]) / 1e9 for i in range(1, n)]
    poll_gap = statistics.median(gaps) if gaps else None
    # (time a change was first seen, how late it may have been seen: the gap since the poll before)
    changes = [(times_ns[i], gaps[i - 1]) for i in range(1, n) if values[i] != values[i - 1]]
    intervals = [((b - a) / 1e9, max(ua, ub)) for (a, ua), (b, ub) in zip(changes, changes[1:]) if b > a]
    if not intervals:
        return UpdatePeriod(None, None, len(changes), n, window_s, poll_gap)
    # A stalled poll (a busy host) sees a change late and makes the next interval look short:
    # the minimum is taken over the intervals whose both ends were seen promptly.
    prompt = max(2 * (poll_gap or 0.0), 0.001)
    sharp = [x for x, late in intervals if late <= prompt] or [x for x, _ in intervals]
    return UpdatePeriod(min(sharp), statistics.median(x for x, _ in intervals), len(changes), n, window_s, poll_gap)


# ---------------------------------------------------------------------------------------------
# Energy counters


class EnergyCounter:
    """A hardware energy counter read now and then: joules since the first reading, and watts.

    `wrap_units`: the counter's range (it wraps to 0 after `wrap_units - 1`); None when it never
    wraps, and then a decrease means the counter was reset (the energy of that interval is lost;
    the next sample says so with status ERROR). With `max_plausible_w`, a wrap-around counter
    left unread so long that it could have wrapped more than once is also flagged, not guessed.
    """

    def __init__(self, joules_per_unit: float, wrap_units: int | None = None, max_plausible_w: float | None = None):
        self.joules_per_unit = float(joules_per_unit)
        self.wrap_units = wrap_units
        self.max_plausible_w = max_plausible_w
        self.energy_j = 0.0  # accumulated since the first reading
        self.raw: int | None = None
        self.last_read_ns: int | None = None
        self.wraps = 0
        self.resets = 0
        self.ambiguous = 0  # intervals too long to tell how many times the counter wrapped
        self._change: tuple[int, float] | None = None  # (time first seen, energy) of the current value
        self._emitted: tuple[int, float] | None = None  # the change point the last sample ended at
        self._watts = math.nan
        self._broken = False  # the next sample must report the lost interval

    def observe(self, raw: int, t_ns: int) -> None:
        """Take one reading of the counter (raw units) made at monotonic time `t_ns`."""
        raw = int(raw)
        if self.raw is None:
            self.raw, self.last_read_ns = raw, t_ns
            self._change = (t_ns, self.energy_j)
            return
        prev_t = self.last_read_ns if self.last_read_ns is not None else t_ns
        self.last_read_ns = t_ns
        if raw == self.raw:
            return
        if raw > self.raw:
            delta = raw - self.raw
        elif self.wrap_units:
            delta = raw + self.wrap_units - self.raw
            self.wraps += 1
        else:
            self.resets += 1
            self._lose_interval(raw, t_ns)
            return
        if self.wrap_units and self.max_plausible_w:
            # At the highest plausible power, could the counter have gone round more than once?
            if (t_ns - prev_t) / 1e9 * self.max_plausible_w >= self.wrap_units * self.joules_per_unit:
                self.ambiguous += 1
                self._lose_interval(raw, t_ns)
                return
        self.raw = raw
        self.energy_j += delta * self.joules_per_unit
        self._change = (t_ns, self.energy_j)

    def _lose_interval(self, raw: int, t_ns: int) -> None:
        self.raw = raw
        self._change = (t_ns, self.energy_j)
        self._emitted = None
        self._broken = True

    def prime(self) -> None:
        """Start the first sample's span at the latest change (after the warm-up reads)."""
        self._emitted = self._change

    def take_sample(self) -> tuple[float, float, int]:
        """(watts, energy_j, status) for the sample being emitted now.

        Watts = energy between the change point the previous sample ended at and the latest
        change point, over the time between them. When the counter has not moved since the
        previous sample (sampling faster than it updates), the sensor has nothing new: the
        previous watts are repeated, as a meter's display would.
        """
        if self._broken:
            self._broken = False
            self._emitted = self._change
            return math.nan, math.nan, ERROR
        if self._change is None:
            return math.nan, math.nan, NO_DATA
        if self._emitted is None:
            self._emitted = self._change
            return math.nan, self.energy_j, NO_DATA
        (t1, e1), (t0, e0) = self._change, self._emitted
        if t1 > t0:
            self._watts = (e1 - e0) / ((t1 - t0) / 1e9)
            self._emitted = self._change
        if math.isnan(self._watts):
            return math.nan, self.energy_j, NO_DATA
        return self._watts, self.energy_j, OK

    def as_dict(self) -> dict[str, Any]:
        return {"wraps": self.wraps, "resets": self.resets, "ambiguous_intervals": self.ambiguous}


# ---------------------------------------------------------------------------------------------
# The read loop


class PollingSource(Source):
    """Samples on a fixed grid every `sample_interval_s`; `_poll()` runs every `poll_s` between.

    Subclasses implement `_poll(mono_ns)` (read what needs tracking: counters) and
    `_emit(wall_ns, mono_ns)` (read and return one sample per channel). Time comes from `_now()`
    and waiting from `_wait()`, so tests can run the loop on a virtual clock.
    """

    def __init__(self, name: str, options=None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        self.poll_s = self.sample_interval_s
        self._closed = threading.Event()
        self._closed.set()
        self._next_tick_ns = 0

    # hooks a test may replace ------------------------------------------------------------------
    def _now(self) -> tuple[int, int]:
        return now_ns()

    def _wait(self, seconds: float) -> bool:
        """Sleep; True when the source was closed meanwhile."""
        return self._closed.wait(seconds)

    # subclass interface -----------------------------------------------------------------------------
    @abstractmethod
    def _poll(self, mono_ns: int) -> None: ...

    @abstractmethod
    def _emit(self, wall_ns: int, mono_ns: int) -> list[ChannelBatch]: ...

    # ----------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        """Call first in open(): waiting works from here on (tight polling uses it)."""
        self._closed.clear()

    def _start_ticks(self) -> None:
        """Call last in open(): the first sample is due one interval from now."""
        self._next_tick_ns = self._now()[1] + int(self.sample_interval_s * 1e9)

    def _stop_sampling(self) -> None:
        self._closed.set()

    def tight_poll(self, seconds: float, read_all) -> list[tuple[int, Any]]:
        """Call `read_all()` back to back for `seconds`, with a breath of 0.5 ms between calls
        so a small host keeps running; returns [(mono_ns, result), ...]."""
        out = []
        _, start = self._now()
        end = start + int(seconds * 1e9)
        while True:
            _, t = self._now()
            out.append((t, read_all()))
            if t >= end or self._wait(0.0005):
                return out

    def read(self, timeout: float) -> list[ChannelBatch]:
        if self._closed.is_set():
            raise SourceError(f"{self.name}: read() on a closed source")
        interval_ns = int(self.sample_interval_s * 1e9)
        poll_ns = max(int(self.poll_s * 1e9), 1_000_000)
        _, now = self._now()
        deadline = now + int(timeout * 1e9)
        while now < self._next_tick_ns:
            if now >= deadline:
                return []
            step = min(self._next_tick_ns, deadline, now + poll_ns) - now
            if self._wait(step / 1e9):
                return []
            _, now = self._now()
            if now < self._next_tick_ns:
                with self.io_lock:
                    self._poll(now)
        # On a fixed grid; after a stall, resynchronise rather than burst out a backlog.
        self._next_tick_ns += interval_ns
        if self._next_tick_ns < now:
            self._next_tick_ns = now + interval_ns
        with self.io_lock:
            wall, mono = self._now()
            return self._emit(wall, mono)
