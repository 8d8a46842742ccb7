"""Following a run that another process is recording: the live-view protocol over a bundle on disk.

An observer (`labconsole serve --watch`, a colleague in a browser) must see the operator's run
without a second run and without touching the instruments: the recorder already flushes every
stream, the timeline and LoadGen's progress to the bundle about once a second, so the bundle
being written *is* the live stream. `FollowSession` polls the newest bundle under a recordings
folder and feeds what was appended into rings, as a replay does; when the operator starts
another run, the newer bundle is followed from its start. Nothing here writes anywhere.

A stream that grew is read again whole (the readers handle a torn last line or block) and only
its new rows are kept: simple and robust to the writer's flush pattern, at the cost of O(size)
per poll (a 20-minute run at 5 Hz is 6 k rows, read in milliseconds).
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np

from labconsole import events as ev
from labconsole.events import Event
from labconsole.samples.ring import ChannelRing
from labconsole.samples.streams import StreamFormatError, find_sample_streams, read_sample_stream
from labconsole.session.live import LiveSession, PhaseClock
from labconsole.sources.replay import frame_to_samples
from labconsole.workload.loadgen_log import LoadGenLogError, parse_detail_log

PHASE_FOLDERS = ("idle", "ranging", "testing", "between")
RING_CAPACITY = 1 << 20


def newest_bundle(recordings: Path) -> Path | None:
    """The newest bundle folder under `recordings` (names start with the UTC start time)."""
    try:
        found = [p for p in recordings.iterdir() if p.is_dir() and not p.is_symlink() and (p / "data").is_dir()]
    except OSError:
        return None
    return max(found, key=lambda p: p.name) if found else None


class FollowSession(LiveSession):
    kind = "follow"

    def __init__(self, recordings: str | Path, poll_s: float = 0.5):
        self.recordings = Path(recordings).expanduser()
        self.poll_s = poll_s
        self.title = f"watching {self.recordings}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bundle: Path | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._rings: dict[tuple[str, str], ChannelRing] = {}
        self._seen: dict[tuple[Path, str], int] = {}  # (stream, channel) -> rows taken
        self._sizes: dict[Path, int] = {}
        self._events: list[Event] = []
        self._pending: list[Event] = []
        self._reset = True
        self._ev_offset = 0
        self._progress: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._phase: str | None = None
        self._phase_t0: float | None = None
        self._start_s: float | None = None
        self._sealed = False
        self._exit_status: str | None = None
        self._window: tuple[float, float] | None = None

    # --- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="follow", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except OSError:  # a file went away between listing and reading: next poll
                pass
            self._stop.wait(self.poll_s)

    # --- reading the bundle ----------------------------------------------------------------------
    def poll(self) -> None:
        """Take what the newest bundle gained since the last call (public for tests)."""
        bundle = newest_bundle(self.recordings)
        if bundle is None:
            return
        if bundle != self._bundle:
            with self._lock:
                self._bundle = bundle
                self._reset_state()
                name = bundle.name
                self.title = f"watching {name}"
        data = bundle / "data"
        self._read_events(data / "events.jsonl")
        for phase in PHASE_FOLDERS:
            folder = data / phase
            if folder.is_dir():
                self._read_samples(folder)
                self._read_progress(phase, folder / "progress.csv")
        if (bundle / "tagmanifest-sha256.txt").exists() and not self._sealed:
            try:
                info = json.loads((data / "run.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {}
            self._exit_status = info.get("exit_status") if isinstance(info, dict) else None
            self._sealed = True
        if self._window is None:
            detail = data / "testing" / "loadgen" / "mlperf_log_detail.txt"
            if detail.exists() and self._phase != "testing":
                try:
                    d = parse_detail_log(detail)
                except LoadGenLogError:
                    d = None
                if d is not None and d.power_begin_ns is not None:
                    self._window = (d.power_begin_ns / 1e9, d.power_end_ns / 1e9)

    def _read_events(self, path: Path) -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(self._ev_offset)
                raw = fh.read()
        except OSError:
            return
        end = raw.rfind(b"\n")
        if end < 0:
            return
        self._ev_offset += end + 1
        new = []
        for line in raw[:end].decode("utf-8", errors="replace").split("\n"):
            try:
                new.append(Event.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        for e in new:
            if self._start_s is None:
                self._start_s = e.wall_ns / 1e9
            if e.kind == ev.PHASE_START and e.phase:
                self._phase, self._phase_t0 = e.phase, e.wall_ns / 1e9
            elif e.kind == ev.PHASE_END and e.phase == self._phase:
                self._phase = f"after {e.phase}"
        with self._lock:
            self._events += new
            self._pending += new

    def _read_samples(self, folder: Path) -> None:
        for source, path in find_sample_streams(folder):
            if path.is_symlink():
                continue
            size = path.stat().st_size
            if self._sizes.get(path) == size:
                continue
            self._sizes[path] = size
            try:
                frame = read_sample_stream(path).frame
            except StreamFormatError:
                continue
            if not len(frame):
                continue
            channels = frame["channel"].astype(str).to_numpy() if "channel" in frame.columns else np.full(len(frame), "main")
            for ch in dict.fromkeys(channels.tolist()):
                rows = frame[channels == ch]
                taken = self._seen.get((path, ch), 0)
                if len(rows) <= taken:
                    continue
                batch = frame_to_samples(rows.iloc[taken:])
                self._seen[(path, ch)] = len(rows)
                with self._lock:
                    ring = self._rings.get((source, ch))
                    if ring is None:
                        ring = self._rings[(source, ch)] = ChannelRing(RING_CAPACITY)
                ring.append(batch)
                if self._start_s is None and len(batch):
                    self._start_s = float(batch["wall_ns"][0]) / 1e9

    def _read_progress(self, phase: str, path: Path) -> None:
        import pandas as pd  # deferred: pandas only once there is a progress series to read

        try:
            raw = path.read_bytes()
        except OSError:
            return
        raw = raw[: raw.rfind(b"\n") + 1]
        if raw.count(b"\n") < 2:
            return
        try:
            f = pd.read_csv(io.BytesIO(raw), dtype={"wall_ns": "int64", "issued": "int64", "completed": "int64"})
        except ValueError:
            return
        with self._lock:
            self._progress[phase] = (f["wall_ns"].to_numpy(dtype=np.int64), f["completed"].to_numpy(dtype=np.int64))

    # --- the live-view protocol ------------------------------------------------------------------
    def rings(self) -> dict[tuple[str, str], ChannelRing]:
        with self._lock:
            return dict(self._rings)

    def poll_events(self, limit: int = 500) -> tuple[bool, list[Event]]:
        with self._lock:
            reset, self._reset = self._reset, False
            out, self._pending = self._pending[:limit], self._pending[limit:]
        return reset, out

    def progress(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with self._lock:
            return dict(self._progress)

    def phase_clock(self) -> PhaseClock:
        if self._bundle is None:
            return PhaseClock("waiting for a run", 0.0, None)
        if self._sealed:
            return PhaseClock("done", 0.0, None)
        phase = self._phase or "starting"
        return PhaseClock(phase, time.time() - self._phase_t0 if self._phase_t0 else 0.0, None)

    @property
    def finished(self) -> bool:
        return self._sealed

    @property
    def status(self) -> str:
        if self._bundle is None:
            return "waiting"
        if self._sealed:
            return self._exit_status or "sealed"
        return "running"

    def start_s(self) -> float | None:
        return self._start_s

    def bundle_path(self) -> Path | None:
        return self._bundle

    def power_window(self) -> tuple[float, float] | None:
        return self._window
