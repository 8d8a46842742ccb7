"""The `replay` source: a recorded run's samples played back with their timing.

Reads a bundle or an MLPerf result folder (`labconsole.bundle.reader.open_run`) and yields
one recorded source's samples when a `ReplayClock` reaches their recorded time: at 1x, 10x,
100x, or as fast as it goes (`speed: max`), with pause and seek. Samples keep their recorded
timestamps (so a replayed testing run still lines up with its LoadGen power window) unless
`retime: true` restamps them as if read now, for using a recording as a live source.

The same class feeds the console's replay of a whole run (`labconsole.session.replay.ReplaySession`
shares one clock between all the recorded sources) and a profile that names it:

    - name: wall
      driver: replay
      options: {path: recordings/2026-...-Offline, source: wall, speed: 10}
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from labconsole.samples.batch import FLOAT_FIELDS, SAMPLE_DTYPE, ChannelBatch
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError

MAX = math.inf  # speed "as fast as it goes"
SPEEDS = (1.0, 10.0, 100.0, MAX)


def parse_speed(value: str | float) -> float:
    """'1', '10x', '100', 'max' -> a speed factor (math.inf for max); ValueError otherwise."""
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        text = str(value).strip().lower()
        if text in ("max", "inf", "fast", "0"):
            return MAX
        v = float(text.rstrip("x×"))
    if v == 0:
        return MAX
    if not (0 < v <= 1e6) or math.isnan(v):
        raise ValueError(f"speed must be a factor in (0, 1e6] or 'max', not {value!r}")
    return v


def speed_label(speed: float) -> str:
    return "max" if math.isinf(speed) else f"{speed:g}x"


class ReplayClock:
    """Recorded time played back: now() moves at `speed` x real time from a position.

    Thread-safe. `seek()` bumps `generation` so readers reposition; at speed `MAX` the
    position moves only by `advance()` (the player steps it as fast as it can).
    """

    def __init__(self, start_ns: int, end_ns: int, speed: float = 1.0):
        self.start_ns = int(start_ns)
        self.end_ns = max(int(end_ns), int(start_ns))
        self._cond = threading.Condition()
        self._pos = self.start_ns
        self._anchor = time.monotonic()
        self.speed = float(speed)
        self.paused = False
        self.generation = 0

    def _now_locked(self) -> int:
        if self.paused or math.isinf(self.speed):
            return self._pos
        return min(self.end_ns, self._pos + int((time.monotonic() - self._anchor) * 1e9 * self.speed))

    def now_ns(self) -> int:
        with self._cond:
            return self._now_locked()

    def _reanchor(self) -> None:
        self._pos = self._now_locked()
        self._anchor = time.monotonic()

    def set_speed(self, speed: float) -> None:
        with self._cond:
            self._reanchor()
            self.speed = float(speed)
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._reanchor()
            self.paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._reanchor()
            self.paused = False
            self._cond.notify_all()

    def toggle_pause(self) -> bool:
        (self.resume if self.paused else self.pause)()
        return self.paused

    def seek(self, wall_ns: int) -> None:
        with self._cond:
            self._pos = min(self.end_ns, max(self.start_ns, int(wall_ns)))
            self._anchor = time.monotonic()
            self.generation += 1
            self._cond.notify_all()

    def advance(self, delta_ns: int) -> None:
        with self._cond:
            self._pos = min(self.end_ns, self._pos + int(delta_ns))
            self._anchor = time.monotonic()
            self._cond.notify_all()

    @property
    def at_end(self) -> bool:
        return self.now_ns() >= self.end_ns

    @property
    def fraction(self) -> float:
        span = self.end_ns - self.start_ns
        return 1.0 if span <= 0 else (self.now_ns() - self.start_ns) / span

    def wait_until(self, wall_ns: int, timeout: float) -> bool:
        """Block until now() >= wall_ns or `timeout` s pass (or the clock is changed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = self._now_locked()
                if now >= wall_ns:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self.paused or math.isinf(self.speed):
                    step = left
                else:
                    step = min(left, (wall_ns - now) / 1e9 / self.speed)
                self._cond.wait(max(0.0005, step))


# ---------------------------------------------------------------------------------------------
# Recorded samples


def frame_to_samples(frame) -> np.ndarray:
    """A sample frame (from a bundle's stream or an MLPerf spl.txt) as a SAMPLE_DTYPE array."""
    n = len(frame)
    out = np.zeros(n, dtype=SAMPLE_DTYPE)
    out["wall_ns"] = frame["wall_ns"].to_numpy(dtype=np.int64)
    out["mono_ns"] = frame["mono_ns"].to_numpy(dtype=np.int64) if "mono_ns" in frame.columns else 0
    for name in FLOAT_FIELDS:
        out[name] = frame[name].to_numpy(dtype=np.float64) if name in frame.columns else np.nan
    out["status"] = frame["status"].to_numpy().astype(np.uint8)
    return out


def recorded_samples(record) -> dict[tuple[str, str], np.ndarray]:
    """Every (source, channel)'s samples across the record's phases, in time order."""
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for phase in record.phases.values():
        frame = phase.samples
        if frame is None or len(frame) == 0:
            continue
        sources = frame["source"].to_numpy() if "source" in frame.columns else np.full(len(frame), record.primary_source or "source")
        channels = frame["channel"].astype(str).to_numpy()
        for src in dict.fromkeys(sources.tolist()):
            for ch in dict.fromkeys(channels[sources == src].tolist()):
                sel = (sources == src) & (channels == ch)
                parts.setdefault((str(src), str(ch)), []).append(frame_to_samples(frame[sel]))
    out = {}
    for key, chunks in parts.items():
        arr = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        order = np.argsort(arr["wall_ns"], kind="stable")
        out[key] = arr[order]
    return out


def recording_problem(path: Path) -> str | None:
    """Why `path` cannot be a recording to replay (a bundle or an MLPerf result folder), without
    reading it: the loader's check. None when it looks like one."""
    try:
        if not path.is_dir():
            return f"{path}: no such folder" if not path.exists() else f"{path}: not a folder (a bundle or an MLPerf result folder)"
        if (path / "data" / "run.json").exists() or (path / "bagit.txt").exists():
            return None
        for perf in (path, path / "performance"):
            if (perf / "power").is_dir() and ((perf / "run_1").is_dir() or (perf / "ranging").is_dir()):
                return None
        if any(p.name == "performance" for p in path.glob("*/performance")) or any(path.glob("**/performance/power")):
            return None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return f"{path}: neither a labconsole bundle (data/run.json) nor an MLPerf power result folder (performance/power, ranging, run_1)"


class ReplayOptions(DriverOptions):
    path: str = Field(min_length=1, max_length=4096, description="a bundle or an MLPerf result folder")
    source: str | None = Field(None, description="which recorded source (default: the recording's primary)")
    speed: Annotated[float, Field(ge=0, le=1e6)] | Literal["max"] = Field(1.0, description="1, 10, 100, ... or 'max' (as fast as it goes); 0 is max")

    @field_validator("path")
    @classmethod
    def _a_recording(cls, value: str) -> str:
        # Refused when the profile loads (exit 2, FILE:LINE), not when a run opens the source.
        problem = recording_problem(Path(value).expanduser())
        if problem:
            raise ValueError(problem)
        return value
    retime: bool = Field(False, description="stamp samples with the time they are replayed instead of their recorded time")
    loop: bool = Field(False, description="start again from the beginning at the end")


class ReplaySource(Source):
    driver = "replay"
    Options = ReplayOptions
    options: ReplayOptions
    MAX_BATCH = 5000  # samples per channel per read, so "max" speed still comes in pieces

    def __init__(self, name: str, options: ReplayOptions | None = None, sample_interval_s: float = 0.1, *, data: dict[str, np.ndarray] | None = None, clock: ReplayClock | None = None, identity: Identity | None = None):
        """`data` and `clock` let a replay session share one loaded recording and one clock."""
        super().__init__(name, options, sample_interval_s)
        self._data = data
        self._clock = clock
        self._owns_clock = clock is None
        self._identity = identity
        self._cursor: dict[str, int] = {}
        self._gen = -1
        self._open = False
        self._closed = threading.Event()
        self._offset_wall = 0
        self._offset_mono = 0

    @property
    def clock(self) -> ReplayClock:
        assert self._clock is not None, "open() the source first"
        return self._clock

    def open(self) -> None:
        if self._data is None:
            self._load()
        if self._clock is None:
            starts = [int(a["wall_ns"][0]) for a in self._data.values() if len(a)]
            ends = [int(a["wall_ns"][-1]) for a in self._data.values() if len(a)]
            if not starts:
                raise SourceError(f"{self.name}: the recording has no samples to replay")
            self._clock = ReplayClock(min(starts), max(ends), parse_speed(self.options.speed))
        if self.options.retime:
            self._offset_wall = time.time_ns() - self.clock.now_ns()
            self._offset_mono = time.monotonic_ns() - self.clock.now_ns()
        self._open = True
        self._closed.clear()

    def _load(self) -> None:
        from labconsole.bundle.reader import RunOpenError, open_run

        try:
            record = open_run(self.options.path)
        except RunOpenError as exc:
            raise SourceError(f"{self.name}: {exc}") from None
        want = self.options.source or record.primary_source
        data = {ch: arr for (src, ch), arr in recorded_samples(record).items() if src == want}
        if not data:
            have = sorted({src for src, _ in recorded_samples(record)})
            raise SourceError(f"{self.name}: {self.options.path} has no samples of source {want!r} (it has: {', '.join(have) or 'none'})")
        self._data = data
        self._identity = Identity(driver=self.driver, model=f"replay of {want}", address=str(Path(self.options.path)), extra={"recorded_source": want})

    def close(self) -> None:
        self._open = False
        self._closed.set()

    def identify(self) -> Identity:
        return self._identity or Identity(driver=self.driver, model="replay", address=str(self.options.path))

    def capabilities(self) -> Capabilities:
        data = self._data or {}
        has_energy = any(np.isfinite(a["energy_j"]).any() for a in data.values() if len(a))
        return Capabilities(channels=tuple(data) or ("main",), quantities=("watts", "volts", "amps", "pf"), power_kind="meter", has_energy_counter=bool(has_energy))

    def _reposition(self) -> None:
        now = self.clock.now_ns()  # a sample stamped exactly now is still to come
        self._cursor = {ch: int(np.searchsorted(a["wall_ns"], now, side="left")) for ch, a in (self._data or {}).items()}
        self._gen = self.clock.generation

    def seek_to(self, wall_ns: int) -> None:
        """Continue after `wall_ns` (a session that seeks its shared clock repositions each source)."""
        self._cursor = {ch: int(np.searchsorted(a["wall_ns"], wall_ns, side="right")) for ch, a in (self._data or {}).items()}
        self._gen = self.clock.generation

    def next_wall_ns(self) -> int | None:
        """Recorded time of the next sample not yet read (None at the end)."""
        nxt = [int(a["wall_ns"][self._cursor.get(ch, 0)]) for ch, a in (self._data or {}).items() if self._cursor.get(ch, 0) < len(a)]
        return min(nxt) if nxt else None

    @property
    def exhausted(self) -> bool:
        return self.next_wall_ns() is None

    def read(self, timeout: float) -> list[ChannelBatch]:
        if not self._open:
            raise SourceError(f"{self.name}: read() on a closed source")
        clock = self.clock
        if clock.generation != self._gen:
            self._reposition()
        nxt = self.next_wall_ns()
        if nxt is None:
            if self.options.loop and self._owns_clock:
                clock.seek(clock.start_ns)
                return []
            self._closed.wait(timeout)
            return []
        fast = math.isinf(clock.speed) and self._owns_clock
        if not fast and not clock.wait_until(nxt, timeout):
            return []
        if clock.generation != self._gen:
            return []  # seeked while waiting: the next read repositions
        target = clock.now_ns()
        out = []
        last_t = None
        for ch, arr in (self._data or {}).items():
            i = self._cursor.get(ch, 0)
            j = len(arr) if fast else int(np.searchsorted(arr["wall_ns"], target, side="right"))
            j = min(j, i + self.MAX_BATCH)
            if j > i:
                batch = arr[i:j].copy()
                if self.options.retime:
                    batch["wall_ns"] += self._offset_wall
                    batch["mono_ns"] = batch["wall_ns"] - self._offset_wall + self._offset_mono
                out.append(ChannelBatch(ch, batch))
                self._cursor[ch] = j
                last_t = max(last_t or 0, int(arr["wall_ns"][j - 1]))
        if fast and last_t is not None:
            clock.advance(last_t - clock.now_ns())
        return out
