"""Sample types, the per-channel ring buffer for live views, and the crash-safe sample stream.

A *sample* is one reading of one channel: wall-clock ns (to match LoadGen's UTC power
markers), monotonic ns (for intervals), watts, and where the source knows them volts, amps,
power factor, a cumulative energy counter, the uncertainty of the watts value, the ranges in
use and a status. Samples travel in numpy structured arrays (batches) so that a 100 kHz
source costs one append per batch, not one Python object per reading.
"""

from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_DTYPE = np.dtype(
    [
        ("wall_ns", "<i8"),
        ("mono_ns", "<i8"),
        ("watts", "<f8"),
        ("volts", "<f8"),
        ("amps", "<f8"),
        ("pf", "<f8"),
        ("energy_j", "<f8"),  # cumulative counter where the source keeps one, else NaN
        ("uncertainty_w", "<f8"),  # absolute uncertainty of `watts` from the accuracy spec
        ("range_v", "<f8"),
        ("range_a", "<f8"),
        ("status", "u1"),
    ]
)

# Status codes. Anything but OK is an invalid sample: counted, kept on disk, never averaged.
OK = 0
OVERRANGE = 1  # the meter flagged over-range (INF / 9.9E+37 / '---OL---')
NO_DATA = 2  # the meter said "no data" (NAN / 9.91E+37 / -1 from PTD)
ERROR = 3  # protocol error, garbage, timeout: the reading could not be trusted
GAP = 4  # a placeholder written for a stretch where the source did not answer

STATUS_NAMES = {OK: "ok", OVERRANGE: "overrange", NO_DATA: "no_data", ERROR: "error", GAP: "gap"}

FLOAT_FIELDS = ("watts", "volts", "amps", "pf", "energy_j", "uncertainty_w", "range_v", "range_a")
CSV_COLUMNS = ("wall_ns", "mono_ns", "channel") + FLOAT_FIELDS + ("status",)
CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"


def now_ns() -> tuple[int, int]:
    """(wall ns, monotonic ns) taken together, as close to the reading as possible."""
    return time.time_ns(), time.monotonic_ns()


def empty_batch(n: int) -> np.ndarray:
    """A batch of n samples with every optional quantity unknown (NaN) and status OK."""
    batch = np.zeros(n, dtype=SAMPLE_DTYPE)
    for name in FLOAT_FIELDS:
        batch[name] = np.nan
    return batch


def one_sample(
    wall_ns: int,
    mono_ns: int,
    watts: float,
    *,
    volts: float = float("nan"),
    amps: float = float("nan"),
    pf: float = float("nan"),
    energy_j: float = float("nan"),
    uncertainty_w: float = float("nan"),
    range_v: float = float("nan"),
    range_a: float = float("nan"),
    status: int = OK,
) -> np.ndarray:
    batch = np.empty(1, dtype=SAMPLE_DTYPE)
    batch[0] = (wall_ns, mono_ns, watts, volts, amps, pf, energy_j, uncertainty_w, range_v, range_a, status)
    return batch


@dataclass
class ChannelBatch:
    """Samples of one channel of one source, as a source's `read()` returns them."""

    channel: str
    samples: np.ndarray  # SAMPLE_DTYPE


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
        """An ordered copy of the buffered samples (optionally only the newest or the recent ones)."""
        with self._lock:
            if self._size < self.capacity:
                out = self._buf[: self._size].copy()
            else:
                out = np.concatenate((self._buf[self._head :], self._buf[: self._head]))
        if since_wall_ns is not None:
            out = out[np.searchsorted(out["wall_ns"], since_wall_ns, side="left") :]
        if last_n is not None:
            out = out[-last_n:]
        return out

    def tail(self, n: int) -> tuple[np.ndarray, int]:
        """The newest `n` samples (copying only those) and `total` at that moment.

        Live views call this on a timer with n = total - what they already have, so a full
        ring of a fast source is not copied five times a second.
        """
        with self._lock:
            n = max(0, min(int(n), self._size))
            start = self._head - n
            if start >= 0:
                out = self._buf[start : self._head].copy()
            else:
                out = np.concatenate((self._buf[start:], self._buf[: self._head]))
            return out, self.total


# ---------------------------------------------------------------------------------------------
# The sample stream on disk: append-only CSV, one file per source, all its channels in it.
# A crash loses at most what was not yet flushed (the recorder flushes about once a second) and
# may leave one torn last line, which the reader drops and reports.


def _format_floats(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip text for each float; NaN becomes an empty field."""
    text = values.astype("U32")
    text[np.isnan(values)] = ""
    return text


def format_csv(channel: str, batch: np.ndarray) -> str:
    """CSV rows (no header) for one channel's batch, vectorised with numpy."""
    if len(batch) == 0:
        return ""
    cols = [batch["wall_ns"].astype("U20"), batch["mono_ns"].astype("U20")]
    cols.append(np.full(len(batch), channel, dtype=f"U{max(1, len(channel))}"))
    cols.extend(_format_floats(batch[name]) for name in FLOAT_FIELDS)
    cols.append(batch["status"].astype("U3"))
    rows = cols[0]
    for col in cols[1:]:
        rows = np.char.add(np.char.add(rows, ","), col)
    return "\n".join(rows.tolist()) + "\n"


class SampleStreamWriter:
    """Append-only CSV stream of one source's samples.

    `append()` is cheap and is called on the acquisition thread; `flush()` formats, writes and
    fsyncs, and is called by the recorder's flusher thread about once a second. A write error
    (full or read-only disk) is kept and re-raised to the flusher, which stops the run.
    """

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self._fsync = fsync
        self._pending: list[ChannelBatch] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Unbuffered, and the size of what is safely on disk kept: a write the disk refuses
        # part-way is cut back to that size, so a row is either written and counted or not on
        # disk at all (no half rows, no rows written twice when the write is retried).
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size == 0:
            try:
                self._write_all(CSV_HEADER.encode("utf-8"))
            except OSError:
                os.close(self._fd)
                self._fd = None
                raise
        self.written = 0  # samples on disk (flushed)
        self.appended = 0  # samples handed to the writer

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass  # the reader drops a torn last line; the rows stay counted as not written
            raise
        self._size += len(data)

    def append(self, channel: str, batch: np.ndarray) -> None:
        if len(batch) == 0:
            return
        with self._lock:
            self._pending.append(ChannelBatch(channel, batch))
            self.appended += len(batch)

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(cb.samples) for cb in self._pending)

    def flush(self) -> int:
        """Write everything pending; returns the number of samples written."""
        with self._flush_lock:
            with self._lock:
                todo, self._pending = self._pending, []
            if self._fd is None:
                if todo:
                    with self._lock:  # put them back: nothing may be silently dropped
                        self._pending[:0] = todo
                    raise ValueError(f"{self.path}: stream already closed")
                return 0
            text = "".join(format_csv(cb.channel, cb.samples) for cb in todo)
            n = sum(len(cb.samples) for cb in todo)
            if text:
                before = self._size
                try:
                    self._write_all(text.encode("utf-8"))
                    if self._fsync:
                        try:
                            os.fsync(self._fd)
                        except OSError:
                            # Not known to be on disk: cut it back, so a retry cannot repeat rows.
                            os.ftruncate(self._fd, before)
                            self._size = before
                            raise
                except OSError:
                    with self._lock:
                        self._pending[:0] = todo
                    raise
            self.written += n
            return n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._flush_lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None


class StreamFormatError(ValueError):
    """A sample stream that cannot be read; the message names the file and line."""


@dataclass
class StreamReadResult:
    frame: "object"  # pandas.DataFrame with CSV_COLUMNS
    torn_tail: bool  # the last line was cut off by a crash and was dropped
    path: Path


def read_sample_stream(path: Path) -> StreamReadResult:
    """Read a sample stream written by `SampleStreamWriter` into a pandas DataFrame.

    A torn last line (a crash mid-write) is dropped and reported; any other malformed line is
    an error naming the file and the line number.
    """
    import pandas as pd

    path = Path(path)
    raw = path.read_bytes()
    torn = False
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n")
        raw = raw[: cut + 1] if cut >= 0 else b""
        torn = True
    if not raw.strip():
        raise StreamFormatError(f"{path}:1: empty sample stream (no header)")
    first_line = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if first_line != CSV_HEADER.strip():
        raise StreamFormatError(f"{path}:1: unexpected header {first_line[:80]!r}; expected {CSV_HEADER.strip()!r}")
    dtypes = {"wall_ns": "int64", "mono_ns": "int64", "channel": "str", "status": "int64"}
    dtypes.update({name: "float64" for name in FLOAT_FIELDS})
    # Exact float parsing (the averages must agree bit for bit with what was written): pandas 3
    # parses exactly by default and deprecates the option; pandas 2 needs "round_trip".
    extra = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in FLOAT_FIELDS}, engine="c", **extra)
    except (ValueError, pd.errors.ParserError) as exc:
        line = _first_bad_line(raw)
        where = f"{path}:{line}" if line else str(path)
        raise StreamFormatError(f"{where}: malformed sample line ({exc})") from None
    return StreamReadResult(frame=frame, torn_tail=torn, path=path)


def _first_bad_line(raw: bytes) -> int | None:
    """The 1-based line number of the first line that does not parse (for error messages)."""
    ncols = len(CSV_COLUMNS)
    for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines()[1:], start=2):
        parts = line.split(",")
        if len(parts) != ncols:
            return lineno
        try:
            int(parts[0]), int(parts[1]), int(parts[-1])
            for p in parts[3:-1]:
                if p:
                    float(p)
        except ValueError:
            return lineno
    return None
