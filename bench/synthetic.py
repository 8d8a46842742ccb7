"""Synthetic high-rate sources for the acquisition benchmark (real `Source` implementations).

- `FlatOutSource`: hands out a new batch on every `read()` as fast as it is asked, with
  optional back-pressure (the benchmark passes `backlog()`: samples read but not yet on disk)
  so that it measures what the recorder *sustains*, not how fast memory fills up.
- `PacedSource`: a PowerShield- or PPK2-class meter: `rate_hz` samples a second, delivered in
  packets every `packet_s`, with a device FIFO of `fifo_s`; a reader that falls further behind
  than the FIFO loses the oldest samples, and they are counted in `dropped`.

Every sample carries its sequence number in `mono_ns` (index x period), so what reaches the
disk can be checked for gaps and duplicates afterwards. The values (a DUT drawing a few
hundred mA at 3.3 V with bursts) come from a precomputed table, so producing them costs the
benchmark almost nothing next to what it measures.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from labconsole.samples.batch import SAMPLE_DTYPE, ChannelBatch, empty_batch
from labconsole.sources.base import Capabilities, Identity, Source

TABLE_N = 1 << 20


def _value_table(n: int = TABLE_N, seed: int = 7) -> np.ndarray:
    """A batch-shaped table of plausible readings (volts, amps, watts), cycled through."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    amps = 0.12 + 0.25 * ((t // 3000) % 4 == 0) + rng.normal(0, 0.004, n)  # idle + bursts
    table = empty_batch(n)
    table["volts"] = 3.3 + rng.normal(0, 0.001, n)
    table["amps"] = amps
    table["watts"] = table["volts"] * amps
    return table


class _SyntheticBase(Source):
    driver = "bench-synthetic"

    def __init__(self, name: str, rate_hz: float):
        super().__init__(name, None, 1.0 / rate_hz)
        self.rate_hz = float(rate_hz)
        self.period_ns = 1e9 / self.rate_hz
        self._table = _value_table()
        self._pos = 0  # next index into the table
        self.seq = 0  # samples handed out so far
        self.gen_cpu_s = 0.0  # CPU spent making batches (to subtract from the recorder's share)
        self._closed = threading.Event()
        self._t0_wall = 0
        self._t0_mono = 0

    def open(self) -> None:
        self._closed.clear()
        self._t0_wall, self._t0_mono = time.time_ns(), time.monotonic_ns()

    def close(self) -> None:
        self._closed.set()

    def identify(self) -> Identity:
        return Identity(driver=self.driver, vendor="labconsole bench", model=type(self).__name__, serial="0")

    def capabilities(self) -> Capabilities:
        return Capabilities(channels=("main",), quantities=("watts", "volts", "amps"), power_kind="instant")

    def make_batch(self, n: int) -> np.ndarray:
        """n new samples continuing the sequence (a fresh array: the recorder keeps it)."""
        c0 = time.thread_time()
        out = np.empty(n, dtype=SAMPLE_DTYPE)
        pos, left, at = self._pos, n, 0
        while left:
            take = min(left, TABLE_N - pos)
            out[at : at + take] = self._table[pos : pos + take]
            at, left, pos = at + take, left - take, (pos + take) % TABLE_N
        self._pos = pos
        idx = np.arange(self.seq, self.seq + n, dtype=np.int64)
        offs = (idx * self.period_ns).astype(np.int64)
        out["mono_ns"] = offs  # sequence x period: gaps and duplicates show on read-back
        out["wall_ns"] = self._t0_wall + offs
        self.seq += n
        self.gen_cpu_s += time.thread_time() - c0
        return out


class FlatOutSource(_SyntheticBase):
    """As fast as it is read, in batches of `batch` samples (nominal 1 MHz timestamps)."""

    def __init__(self, name: str = "flat", batch: int = 65536, backlog: Callable[[], int] | None = None, max_backlog: int = 4_000_000):
        super().__init__(name, rate_hz=1e6)
        self.batch = batch
        self.backlog = backlog
        self.max_backlog = max_backlog

    def read(self, timeout: float) -> list[ChannelBatch]:
        if self.backlog is not None:
            deadline = time.monotonic() + timeout
            while self.backlog() > self.max_backlog:
                if self._closed.wait(0.002) or time.monotonic() > deadline:
                    return []
        if self._closed.is_set():
            return []
        return [ChannelBatch("main", self.make_batch(self.batch))]


class PacedSource(_SyntheticBase):
    """`rate_hz` samples a second in packets every `packet_s`; a FIFO of `fifo_s` on the device."""

    def __init__(self, name: str = "ppk2", rate_hz: float = 100_000, packet_s: float = 0.01, fifo_s: float = 0.5):
        super().__init__(name, rate_hz)
        self.packet_s = packet_s
        self.fifo = int(rate_hz * fifo_s)
        self.dropped = 0
        self._start_mono = 0.0

    def open(self) -> None:
        super().open()
        self._start_mono = time.monotonic()

    def due(self) -> int:
        """Samples the device has produced so far and not yet handed out (or dropped)."""
        return int((time.monotonic() - self._start_mono) * self.rate_hz) - self.seq

    def read(self, timeout: float) -> list[ChannelBatch]:
        # Wake at the next packet boundary, like a USB bulk read returning a packet.
        elapsed = time.monotonic() - self._start_mono
        wait = self.packet_s - (elapsed % self.packet_s)
        if self._closed.wait(min(wait, timeout)):
            return []
        n = self.due()
        if n > self.fifo:  # the reader was late by more than the FIFO holds: the oldest are lost
            lost = n - self.fifo
            self.dropped += lost
            self.seq += lost  # the sequence (and timestamps) skip them, as a real meter's would
            n = self.fifo
        if n <= 0:
            return []
        return [ChannelBatch("main", self.make_batch(n))]


def check_sequence(mono_ns: np.ndarray, period_ns: float) -> dict:
    """Gaps and duplicates in a read-back stream whose mono_ns is sequence x period."""
    seq = np.rint(np.asarray(mono_ns, dtype=np.float64) / period_ns).astype(np.int64)
    if len(seq) == 0:
        return {"samples": 0, "missing": 0, "duplicates": 0, "out_of_order": 0}
    d = np.diff(seq)
    return {
        "samples": int(len(seq)),
        "first": int(seq[0]),
        "last": int(seq[-1]),
        "missing": int(np.sum(d[d > 1] - 1)),
        "duplicates": int(np.count_nonzero(d == 0)),
        "out_of_order": int(np.count_nonzero(d < 0)),
    }
