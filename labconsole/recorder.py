"""Acquisition: one thread per source, ring buffers for live views, crash-safe streams to disk.

Each source is read in its own thread; every batch goes to (1) a bounded ring per channel that
the UI snapshots on its own timer and (2) the current segment's append-only stream in the
bundle (`<phase>/samples-<source>.csv`, or `.bin` above 1 kHz), which a flusher thread writes
and fsyncs about once a second. A source that stops answering is retried with bounded
back-off; the gap is recorded as an event with its length. A disk that refuses writes stops
the run with a clear error.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labconsole import events as ev
from labconsole.events import EventBus
from labconsole.samples.batch import OK, SAMPLE_DTYPE
from labconsole.samples.ring import ChannelRing
from labconsole.samples.streams import SampleStreamWriter, open_sample_stream, stream_format_for, stream_path
from labconsole.sources.base import Source

_SAFE_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # the profile's NAME_PATTERN
FLUSH_INTERVAL_S = 1.0
# Samples read wait in memory for the flusher. A disk slower than the sources would let them
# grow without bound: past this many bytes the run stops (what was read is still all written).
MAX_PENDING_BYTES = 512 << 20
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)


@dataclass
class SegmentStats:
    """Running statistics of one channel within one segment (phase)."""

    samples: int = 0
    invalid: int = 0
    sum_w: float = 0.0
    max_v: float = float("nan")
    max_a: float = float("nan")
    max_w: float = float("nan")
    min_w: float = float("nan")
    first_wall_ns: int | None = None
    last_wall_ns: int | None = None

    def add(self, batch: np.ndarray) -> None:
        """Fold a batch in with a handful of numpy calls whatever its size: a 100 kHz source
        delivers a hundred batches a second, a flat-out one a few 64 k-sample ones."""
        n = len(batch)
        if n == 0:
            return
        ok = batch["status"] == OK
        nvalid = int(np.count_nonzero(ok))
        all_ok = nvalid == n  # the usual case: use the fields as they are, copy nothing
        self.samples += n
        self.invalid += n - nvalid
        if self.first_wall_ns is None:
            self.first_wall_ns = int(batch["wall_ns"][0])
        self.last_wall_ns = int(batch["wall_ns"][-1])
        if not nvalid:
            return
        w = batch["watts"] if all_ok else batch["watts"][ok]
        total = float(w.sum())
        if math.isnan(total):  # NaN watts among the valid (or +inf and -inf): leave the NaNs out
            w = w[~np.isnan(w)]
            total = float(w.sum()) if len(w) else 0.0
        if len(w):
            self.sum_w += total
            hi, lo = float(w.max()), float(w.min())
            self.max_w = hi if math.isnan(self.max_w) else max(self.max_w, hi)
            self.min_w = lo if math.isnan(self.min_w) else min(self.min_w, lo)
        for name, attr in (("volts", "max_v"), ("amps", "max_a")):
            col = batch[name] if all_ok else batch[name][ok]
            hi = float(col.max())
            if math.isnan(hi):  # max() is NaN when any is: take the largest known one, if any
                col = col[~np.isnan(col)]
                if not len(col):
                    continue
                hi = float(col.max())
            cur = getattr(self, attr)
            setattr(self, attr, hi if math.isnan(cur) else max(cur, hi))

    @property
    def valid(self) -> int:
        return self.samples - self.invalid

    @property
    def mean_w(self) -> float:
        return self.sum_w / self.valid if self.valid else float("nan")

    def as_dict(self) -> dict:
        return {
            "samples": self.samples,
            "invalid": self.invalid,
            "mean_w": self.mean_w,
            "min_w": self.min_w,
            "max_w": self.max_w,
            "max_v": self.max_v,
            "max_a": self.max_a,
        }


@dataclass
class SourceState:
    source: Source
    on_failure: str = "stop"
    read_batches: int = 0
    read_samples: int = 0
    errors: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (start wall ns, end wall ns)
    failed: str | None = None  # reason, once the source is given up on
    unrecorded: int = 0  # samples read while no stream was open (only without a between folder)
    written: int = 0  # samples of this source on disk, in streams already closed
    lost: int = 0  # samples handed to a stream the disk refused: read, never written, counted here
    reconnects: int = 0
    gap_start_ns: int | None = None  # the source went silent or failed at this wall time
    last_sample_mono: float = 0.0
    last_sample_wall_ns: int = 0
    thread: threading.Thread | None = None

    def end_gap(self, end_ns: int) -> float | None:
        """Close an open gap; its length in seconds (None when there was none)."""
        if self.gap_start_ns is None:
            return None
        start, self.gap_start_ns = self.gap_start_ns, None
        self.gaps.append((start, end_ns))
        return (end_ns - start) / 1e9


class Recorder:
    def __init__(
        self,
        sources: list[tuple[Source, str]],
        bus: EventBus,
        ring_capacity: int = 1 << 18,
        fsync: bool = True,
        between_folder: Path | None = None,
        stream_formats: dict[str, str] | None = None,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ):
        """`sources`: (opened source, on_failure policy 'stop'|'continue').

        `between_folder`: where samples read outside any phase go (while ranges switch, while
        the SUT is probed): every sample read is kept somewhere, none silently dropped.
        `stream_formats`: per source name, 'csv', 'binary' or 'auto' (the default: CSV up to
        1 kHz, binary above; see samples.py).
        `max_pending_bytes`: how much may wait in memory for a slow disk before the run stops.
        """
        for src, _policy in sources:
            if not _SAFE_SOURCE_NAME.fullmatch(src.name):
                # The name becomes a file name (samples-<name>.csv): nothing may leave the folder.
                raise ValueError(f"source name {src.name!r}: letters, digits, '_', '.', '-' only, starting with a letter or digit")
        self.between_folder = between_folder
        self.stream_formats = {
            s.name: stream_format_for(s.sample_interval_s, (stream_formats or {}).get(s.name, "auto")) for s, _ in sources
        }
        self.bus = bus
        self.fsync = fsync
        self.states: dict[str, SourceState] = {s.name: SourceState(s, policy) for s, policy in sources}
        self.rings: dict[tuple[str, str], ChannelRing] = {}
        self._ring_capacity = ring_capacity
        self._max_pending = max(1, int(max_pending_bytes) // SAMPLE_DTYPE.itemsize)  # samples, per stream
        self._writers: dict = {}  # source name -> its stream writer in the current segment
        self._segment: str | None = None
        self.segment_stats: dict[str, dict[tuple[str, str], SegmentStats]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.fatal: str | None = None  # set when the run must stop (disk error, a 'stop' source failed)
        self.started = False
        self._written_closed = 0

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._segment is None:
            self.end_segment()  # until the first phase begins, samples go to the between folder
        for name, st in self.states.items():
            for ch in st.source.capabilities().channels:
                self.rings[(name, ch)] = ChannelRing(self._ring_capacity)
            st.last_sample_mono = time.monotonic()
            st.thread = threading.Thread(target=self._acquire, args=(st,), name=f"acquire-{name}", daemon=True)
            st.thread.start()
        self._flusher = threading.Thread(target=self._flush_loop, name="recorder-flush", daemon=True)
        self._flusher.start()
        self.started = True

    def stop(self) -> None:
        self._stop.set()
        for st in self.states.values():
            if st.thread is not None:
                st.thread.join(timeout=10)
        if self._flusher is not None:
            self._flusher.join(timeout=10)
        self.end_segment(final=True)
        now = time.time_ns()
        for name, st in self.states.items():
            # A source still silent (or given up on) at the end: its gap runs to the stop.
            gap_s = st.end_gap(now)
            if gap_s is not None:
                self.bus.emit(ev.WARNING, f"{name}: no samples for the last {gap_s:.1f} s of the recording", source=name, gap_s=gap_s)

    # --- segments (one per phase) ----------------------------------------------------------------
    def begin_segment(self, label: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        new = {name: self._open_writer(folder, name) for name in self.states}
        with self._lock:
            old, self._writers = self._writers, new
            self._segment = label
            self.segment_stats[label] = {}
        self._close_writers(old)

    def end_segment(self, final: bool = False) -> None:
        new: dict[str, SampleStreamWriter] = {}
        if self.between_folder is not None and not final:
            try:
                self.between_folder.mkdir(parents=True, exist_ok=True)
                new = {name: self._open_writer(self.between_folder, name) for name in self.states}
            except OSError as exc:
                self._set_fatal(f"cannot write samples to {self.between_folder}: {exc.strerror or exc}")
        with self._lock:
            old, self._writers = self._writers, new
            self._segment = None
        self._close_writers(old)

    def _open_writer(self, folder: Path, name: str):
        return open_sample_stream(stream_path(folder, name, self.stream_formats[name]), fsync=self.fsync)

    def _close_writers(self, writers: dict) -> None:
        for name, w in writers.items():
            try:
                w.close()
            except (OSError, ValueError) as exc:
                self._set_fatal(f"cannot write samples to {w.path}: {getattr(exc, 'strerror', None) or exc}")
            st = self.states.get(name)
            with self._lock:
                self._written_closed += w.written
                if st is not None:
                    st.written += w.written
                    # What the disk refused stays counted: read, never written.
                    st.lost += w.appended - w.written
            if w.appended > w.written:
                self.bus.emit(ev.ERROR, f"{name}: {w.appended - w.written} sample(s) read but not written to {w.path} (the disk refused them)", source=name, lost=w.appended - w.written)

    def stats_for(self, segment: str) -> dict[tuple[str, str], SegmentStats]:
        with self._lock:
            return dict(self.segment_stats.get(segment, {}))

    @property
    def written(self) -> int:
        with self._lock:
            return self._written_closed + sum(w.written for w in self._writers.values())

    # --- threads -------------------------------------------------------------------------------
    def _set_fatal(self, reason: str, **fields) -> None:
        if self.fatal is None:
            self.fatal = reason
            self.bus.emit(ev.ERROR, reason, **fields)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            with self._lock:
                writers = list(self._writers.values())
            for w in writers:
                try:
                    w.flush()
                except OSError as exc:
                    self._set_fatal(f"cannot write samples to {w.path}: {exc.strerror or exc}; the run stops (what was written is intact)")

    def _deliver(self, st: SourceState, channel: str, batch: np.ndarray) -> Exception | None:
        """File one batch (ring, stream, phase statistics); the problem when it could not be."""
        try:
            if not isinstance(batch, np.ndarray) or batch.dtype != SAMPLE_DTYPE:
                raise TypeError(f"channel {channel!r}: a batch of {getattr(batch, 'dtype', type(batch).__name__)}, not samples")
            if not isinstance(channel, str) or not channel or any(c in channel for c in ',"\r\n'):
                raise ValueError(f"channel name {channel!r} cannot go in a sample stream")
            ring = self.rings.get((st.source.name, channel))
            if ring is None:
                ring = self.rings.setdefault((st.source.name, channel), ChannelRing(self._ring_capacity))
            ring.append(batch)
        except Exception as exc:  # noqa: BLE001
            return exc
        overflow = None
        with self._lock:
            # Append under the lock: a segment switch must not close this writer between our
            # lookup and the append (the batch would sit in a closed writer, never flushed).
            writer = self._writers.get(st.source.name)
            if writer is not None:
                waiting = writer.append(channel, batch)
                if waiting > self._max_pending:
                    overflow = (waiting, writer.path)
            else:
                st.unrecorded += len(batch)  # no stream open (no between folder): counted, not hidden
            seg = self.segment_stats.get(self._segment) if self._segment else None
            if seg is not None:
                seg.setdefault((st.source.name, channel), SegmentStats()).add(batch)
        if overflow is not None and self.fatal is None:  # outside the lock: event sinks may ask for counts
            waiting, path = overflow
            self._set_fatal(
                f"the disk cannot keep up with {st.source.name}: {waiting:,} samples ({waiting * SAMPLE_DTYPE.itemsize / (1 << 20):.0f} MiB) "
                f"wait in memory for {path}; the run stops before memory runs out (every sample read is still written)",
                source=st.source.name, pending=waiting,
            )
        return None

    def _acquire(self, st: SourceState) -> None:
        try:
            self._acquire_loop(st)
        except Exception as exc:  # noqa: BLE001 - a bug past the driver must not end the thread silently
            reason = f"{st.source.name}: acquisition stopped by an internal error ({type(exc).__name__}: {exc})"
            st.failed = reason
            if st.gap_start_ns is None:
                st.gap_start_ns = st.last_sample_wall_ns or time.time_ns()
            if st.on_failure == "stop":
                self._set_fatal(reason, source=st.source.name)
            else:
                self.bus.emit(ev.ERROR, reason, source=st.source.name)

    def _acquire_loop(self, st: SourceState) -> None:
        src = st.source
        timeout = max(0.5, min(5.0, 3 * src.sample_interval_s))
        silent_after = max(3.0, 5 * src.sample_interval_s)
        while not self._stop.is_set():
            try:
                batches = src.read(timeout)
            except Exception as exc:  # noqa: BLE001 - any driver failure is handled the same way
                st.errors += 1
                if st.gap_start_ns is None:
                    st.gap_start_ns = st.last_sample_wall_ns or time.time_ns()  # no samples since the last one
                    self.bus.emit(ev.WARNING, f"{src.name}: read failed ({exc}); reconnecting", source=src.name)
                if not self._reconnect(st):
                    if self._stop.is_set():
                        return  # the recording ended while we waited to retry: not a failure
                    gap_s = (time.time_ns() - st.gap_start_ns) / 1e9
                    reason = f"{src.name}: gave up after {len(RECONNECT_BACKOFF_S)} reconnect attempts, {gap_s:.1f} s without samples ({exc})"
                    st.failed = reason
                    if st.on_failure == "stop":
                        self._set_fatal(reason + "; the run stops (on_failure: stop)", source=src.name, gap_s=gap_s, on_failure="stop")
                    else:
                        self.bus.emit(ev.ERROR, reason + "; the run goes on without it (on_failure: continue)", source=src.name, gap_s=gap_s, on_failure="continue")
                    return
                continue
            if not batches:
                if not src.expects_samples():
                    st.last_sample_mono = time.monotonic()  # silent by design, not a gap
                    continue
                if st.gap_start_ns is None and time.monotonic() - st.last_sample_mono > silent_after:
                    st.gap_start_ns = st.last_sample_wall_ns or time.time_ns()
                    self.bus.emit(ev.WARNING, f"{src.name}: no samples for {silent_after:.1f} s", source=src.name)
                continue
            gap_s = st.end_gap(time.time_ns())
            if gap_s is not None:
                self.bus.emit(ev.WARNING, f"{src.name}: samples resumed after a {gap_s:.1f} s gap", source=src.name, gap_s=gap_s)
            st.last_sample_mono = time.monotonic()
            st.last_sample_wall_ns = time.time_ns()
            st.read_batches += 1
            for i, cb in enumerate(batches):
                st.read_samples += len(cb.samples)
                problem = self._deliver(st, cb.channel, cb.samples)
                if problem is not None:
                    # Could not be filed (a malformed batch): counted as read and lost, and the
                    # source is given up on by the handler in _acquire.
                    rest = sum(len(b.samples) for b in batches[i + 1 :])
                    st.read_samples += rest
                    st.lost += len(cb.samples) + rest
                    raise problem

    def _reconnect(self, st: SourceState) -> bool:
        src = st.source
        for delay in RECONNECT_BACKOFF_S:
            if self._stop.wait(delay):
                return False
            try:
                with src.io_lock:
                    try:
                        src.close()
                    except Exception:  # noqa: BLE001
                        pass
                    src.open()
                st.reconnects += 1
                self.bus.emit(ev.INFO, f"{src.name}: reconnected", source=src.name)
                return True
            except Exception as exc:  # noqa: BLE001
                st.errors += 1
                self.bus.emit(ev.WARNING, f"{src.name}: reconnect failed ({exc})", source=src.name)
        return False

    # --- live views -----------------------------------------------------------------------------
    def snapshot(self, source: str, channel: str, since_wall_ns: int | None = None, last_n: int | None = None) -> np.ndarray:
        return self.rings[(source, channel)].snapshot(since_wall_ns, last_n)

    def counts(self) -> dict[str, dict]:
        """Per source: samples read, written and lost (read - written - lost - unrecorded is the
        part still pending in an open stream: 0 once the recorder has stopped), invalid samples,
        read errors, reconnects, the gaps and their lengths, and why it was given up on."""
        out = {}
        with self._lock:
            open_written = {name: w.written for name, w in self._writers.items()}
        for name, st in self.states.items():
            rings = [r for (s, _), r in self.rings.items() if s == name]
            out[name] = {
                "read": st.read_samples,
                "written": st.written + open_written.get(name, 0),
                "lost": st.lost,
                "invalid": sum(r.invalid for r in rings),
                "errors": st.errors,
                "reconnects": st.reconnects,
                "gaps": len(st.gaps),
                "gap_s": [round((b - a) / 1e9, 3) for a, b in st.gaps],
                "failed": st.failed,
                "unrecorded": st.unrecorded,
            }
        return out
