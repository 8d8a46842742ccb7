"""The per-channel ring buffer that live views snapshot."""

from __future__ import annotations

import threading

import numpy as np

from labconsole.samples.batch import SAMPLE_DTYPE


class ChannelRing:
    """A bounded ring of the most recent samples of one channel, for live views.

    One writer (the acquisition thread) and any number of readers (the UI timer).
    Readers get copies, so they never see a half-written batch.
    """

    def __init__(self, capacity: int = 1 << 18):
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=SAMPLE_DTYPE)
        self._head = 0  # index of the next write
        self._size = 0
        self._lock = threading.Lock()
        self.total = 0  # samples ever appended
        self.invalid = 0  # of which status != OK
        self.last: np.void | None = None

    def append(self, batch: np.ndarray) -> None:
        n = len(batch)
        if n == 0:
            return
        bad = int(np.count_nonzero(batch["status"]))
        with self._lock:
            if n >= self.capacity:
                self._buf[:] = batch[-self.capacity :]
                self._head = 0
                self._size = self.capacity
            else:
                end = self._head + n
                if end <= self.capacity:
                    self._buf[self._head : end] = batch
                else:
                    first = self.capacity - self._head
                    self._buf[self._head :] = batch[:first]
                    self._buf[: n - first] = batch[first:]
                self._head = end % self.capacity
                self._size = min(self.capacity, self._size + n)
            self.total += n
            self.invalid += bad
            self.last = batch[-1].copy()

    def __len__(self) -> int:
        return self._size

    def snapshot(self, since_wall_ns: int | None = None, last_n: int | None = None) -> np.ndarray:
        """An ordered copy of the buffered samples (optionally only the newest or the recent ones).

        Only what is returned is copied: the cut is found in the ring's two ordered segments.
        """
        with self._lock:
            n = self._size if last_n is None else max(0, min(int(last_n), self._size))
            if since_wall_ns is not None:
                recent = sum(len(seg) - int(np.searchsorted(seg["wall_ns"], since_wall_ns, side="left")) for seg in self._segments())
                n = min(n, recent)
            return self._newest(n)

    def tail(self, n: int) -> tuple[np.ndarray, int]:
        """The newest `n` samples (copying only those) and `total` at that moment.

        Live views call this on a timer with n = total - what they already have, so a full
        ring of a fast source is not copied five times a second.
        """
        with self._lock:
            return self._newest(max(0, min(int(n), self._size))), self.total

    def _segments(self) -> tuple[np.ndarray, ...]:
        # The buffered samples in order, as views: one run before the ring wraps, two after.
        if self._size < self.capacity:
            return (self._buf[: self._size],)
        return (self._buf[self._head :], self._buf[: self._head])

    def _newest(self, n: int) -> np.ndarray:
        start = self._head - n
        if start >= 0:
            return self._buf[start : self._head].copy()
        return np.concatenate((self._buf[start:], self._buf[: self._head]))
