"""The wires between emulated boards on one MLPerf Tiny bench, in one process.

On a real bench the LPM01A's VOUT supplies the device under test and the DUT's timestamp GPIO
goes (through a level shifter) to the LPM01A's Arduino pin D7. Here a `Bench` is that wiring:
- a clock shared by both emulators, which may run faster than real time (`speed`), so a
  session of five 10 s windows takes seconds (only sample counts matter in energy mode);
- the supply: the LPM01A switches it (`set_powered`), the DUT boots when it comes on, and
  the LPM01A integrates the power the DUT draws (`power_at`);
- D7: the DUT's falling edges (`pulse`), which the LPM01A turns into `event NN` lines.

Benches are found by name (`bench(name)`), so a profile's two `emulator:` blocks (the LPM01A
source's and the Tiny workload's DUT) name the same one and are wired together.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Callable

import numpy as np


class Bench:
    def __init__(self, name: str, speed: float = 1.0):
        self.name = name
        self.speed = float(speed)
        self._lock = threading.Lock()
        # the DUT's power draw, piecewise constant: segment k starts at _seg_t[k] with _seg_w[k] watts
        self._seg_t: list[float] = [-1e18]
        self._seg_w: list[float] = [0.0]
        self._edges: list[float] = []  # falling edges on D7, bench time
        self.powered = False
        self._on_power: list[Callable[[bool], None]] = []

    def now(self) -> float:
        """Bench time in seconds (monotonic, `speed` x real time)."""
        return time.monotonic() * self.speed

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until bench time t; False when `stop` was set first."""
        while True:
            left = (t - self.now()) / self.speed
            if left <= 0:
                return True
            if stop is not None:
                if stop.wait(min(left, 0.05)):
                    return False
            else:
                time.sleep(min(left, 0.05))

    # --- the supply ------------------------------------------------------------------------------
    def on_power(self, fn: Callable[[bool], None]) -> None:
        self._on_power.append(fn)

    def set_powered(self, on: bool) -> None:
        with self._lock:
            changed = on != self.powered
            self.powered = on
            if not on:
                self._draw_locked(self.now(), 0.0)
        if changed:
            for fn in list(self._on_power):
                fn(on)

    def draw(self, t: float, watts: float) -> None:
        """From bench time t on, the DUT draws `watts` (until the next call)."""
        with self._lock:
            self._draw_locked(t, watts if self.powered else 0.0)

    def _draw_locked(self, t: float, watts: float) -> None:
        # Segments planned after t are replaced (the DUT changed its plan).
        k = bisect.bisect_left(self._seg_t, t)
        del self._seg_t[k:], self._seg_w[k:]
        self._seg_t.append(t)
        self._seg_w.append(watts)
        if len(self._seg_t) > 100_000:  # long sessions: drop history nobody samples any more
            del self._seg_t[1:50_000], self._seg_w[1:50_000]

    def power_at(self, times: np.ndarray) -> np.ndarray:
        with self._lock:
            seg_t = np.asarray(self._seg_t)
            seg_w = np.asarray(self._seg_w)
        k = np.searchsorted(seg_t, times, side="right") - 1
        return seg_w[np.clip(k, 0, len(seg_w) - 1)]

    # --- D7 --------------------------------------------------------------------------------------
    def pulse(self, t: float) -> None:
        """A falling edge on the timestamp line at bench time t (held low >= 1 µs, then released)."""
        with self._lock:
            bisect.insort(self._edges, t)

    def edges_between(self, t0: float, t1: float) -> list[float]:
        """Edges in [t0, t1), in order."""
        with self._lock:
            a = bisect.bisect_left(self._edges, t0)
            b = bisect.bisect_left(self._edges, t1)
            return self._edges[a:b]


_BENCHES: dict[str, Bench] = {}
_LOCK = threading.Lock()


def bench(name: str, speed: float | None = None) -> Bench:
    """The bench of this name in this process (created on first use; `speed` set by whoever
    gives it first)."""
    with _LOCK:
        b = _BENCHES.get(name)
        if b is None:
            b = _BENCHES[name] = Bench(name, speed or 1.0)
        elif speed is not None and speed != b.speed and not b.powered:
            b.speed = float(speed)
        return b


def forget(name: str) -> None:
    with _LOCK:
        _BENCHES.pop(name, None)
