"""A recorded run played back through the live-view protocol (the console's Replay).

`ReplaySession(path)` opens a bundle or an MLPerf result folder, gives each recorded source a
`replay` source on one shared `ReplayClock`, and a player thread moves their samples into
ring buffers as the clock passes them, exactly as the recorder does for a live run. The
timeline's events appear when they happened (from `events.jsonl`; an MLPerf folder has none,
so phase and power-window events are made from its logs and samples) and the QPS series comes
from each phase's `progress.csv`. The Run screen cannot tell it from a live run, which is the
point: one drawing path for both.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from labconsole import events as ev
from labconsole.events import Event
from labconsole.session.live import LiveSession, PhaseClock
from labconsole.samples.ring import ChannelRing
from labconsole.sources.base import Identity
from labconsole.sources.replay import MAX, ReplayClock, ReplayOptions, ReplaySource, recorded_samples, speed_label

MAX_SPEED_STEPS = 300  # at speed "max" the whole recording plays in about this many steps


def synthesize_events(record) -> list[Event]:
    """A timeline for a record that has none (MLPerf result folders): phases, power window, result."""
    out: list[Event] = []
    scenario = record.scenario or "?"
    for name, phase in record.phases.items():
        frame = phase.samples
        detail = phase.detail
        if frame is not None and len(frame):
            t0, t1 = int(frame["wall_ns"].min()), int(frame["wall_ns"].max())
            out.append(Event(ev.PHASE_START, f"{name}: {scenario} ({len(frame)} samples recorded)", name, {"synthesized": True}, t0))
            out.append(Event(ev.PHASE_END, f"{name} done", name, {"synthesized": True}, t1))
        if detail is not None and detail.power_begin_ns is not None:
            out.append(Event(ev.INFO, f"LoadGen power_begin {detail.power_begin}", name, {"synthesized": True}, detail.power_begin_ns))
            out.append(Event(ev.INFO, f"LoadGen power_end {detail.power_end}", name, {"synthesized": True}, detail.power_end_ns))
    if out:
        try:
            from labconsole.mlperf import metrics

            rep = metrics.compute_report(record)
            m = rep.get("metric")
            if m:
                last = max(e.wall_ns for e in out)
                out.append(Event(ev.RESULT, f"{m['name']}: {m['value']:.6g} {m['unit']} ({scenario})", None, {"metric": m, "synthesized": True}, last))
        except Exception:  # noqa: BLE001 - a replay without a result line is still a replay
            pass
    out.sort(key=lambda e: e.wall_ns)
    return out


def recorded_events(record) -> list[Event]:
    if record.kind == "bundle":
        events = record.events()
        if events:
            return sorted(events, key=lambda e: e.wall_ns)
    return synthesize_events(record)


def recorded_progress(record) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, phase in record.phases.items():
        frame = phase.progress
        if frame is not None and len(frame):
            out[name] = (frame["wall_ns"].to_numpy(dtype=np.int64), frame["completed"].to_numpy(dtype=np.int64))
    return out


class ReplaySession(LiveSession):
    kind = "replay"

    def __init__(self, path: str | Path, speed: float = 1.0, record=None):
        from labconsole.bundle.reader import open_run

        self.record = record if record is not None else open_run(path)
        self.path = Path(self.record.path)
        self.samples = recorded_samples(self.record)
        self.events = recorded_events(self.record)
        self._progress = recorded_progress(self.record)
        self._event_t = np.array([e.wall_ns for e in self.events], dtype=np.int64)
        times = [int(a["wall_ns"][0]) for a in self.samples.values() if len(a)] + [int(a["wall_ns"][-1]) for a in self.samples.values() if len(a)]
        times += [int(t) for t in self._event_t[:1]] + [int(t) for t in self._event_t[-1:]]
        for w, _ in self._progress.values():
            times += [int(w[0]), int(w[-1])]
        if not times:
            raise ValueError(f"{self.path}: nothing to replay (no samples, no events)")
        self.clock = ReplayClock(min(times), max(times), speed)
        self.spans = self._phase_spans()
        name = (self.record.run_info.get("profile") or {}).get("name") or self.path.name
        self.title = f"replay of {name}: {self.record.scenario or '?'}"
        self.sources: dict[str, ReplaySource] = {}
        for src in dict.fromkeys(s for s, _ in self.samples):
            data = {ch: arr for (s, ch), arr in self.samples.items() if s == src}
            ident = Identity(driver="replay", model=f"replay of {src}", address=str(self.path), extra={"recorded_source": src})
            self.sources[src] = ReplaySource(src, ReplayOptions(path=str(self.path), source=src), data=data, clock=self.clock, identity=ident)
        self._lock = threading.Lock()
        self._rings: dict[tuple[str, str], ChannelRing] = {}
        self._pending: list[Event] = []
        self._reset = False
        self._ev_cursor = 0
        self._gen = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _phase_spans(self) -> list[tuple[str, int, int]]:
        spans, open_at = [], {}
        for e in self.events:
            if e.kind == ev.PHASE_START and e.phase:
                open_at[e.phase] = e.wall_ns
            elif e.kind == ev.PHASE_END and e.phase in open_at:
                spans.append((e.phase, open_at.pop(e.phase), e.wall_ns))
        for phase, t0 in open_at.items():  # a phase cut off by an abort or a crash
            spans.append((phase, t0, self.clock.end_ns))
        return sorted(spans, key=lambda s: s[1])

    # --- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        for src in self.sources.values():
            src.open()
        self._rebuild()
        self._thread = threading.Thread(target=self._play, name="replay-player", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for src in self.sources.values():
            src.close()

    @property
    def speed(self) -> float:
        return self.clock.speed

    def set_speed(self, speed: float) -> None:
        self.clock.set_speed(speed)

    def toggle_pause(self) -> bool:
        return self.clock.toggle_pause()

    def seek(self, wall_ns: int) -> None:
        self.clock.seek(wall_ns)

    def seek_fraction(self, fraction: float) -> None:
        c = self.clock
        self.clock.seek(c.start_ns + int((c.end_ns - c.start_ns) * min(1.0, max(0.0, fraction))))

    # --- the player thread --------------------------------------------------------------------
    def _rebuild(self) -> None:
        """After a seek: rings and the event list as they were at the new position."""
        pos = self.clock.now_ns()
        rings = {}
        for (src, ch), arr in self.samples.items():
            ring = ChannelRing(max(1024, len(arr)))
            ring.append(arr[: int(np.searchsorted(arr["wall_ns"], pos, side="right"))])
            rings[(src, ch)] = ring
        for src in self.sources.values():
            src.seek_to(pos)
        k = int(np.searchsorted(self._event_t, pos, side="right"))
        with self._lock:
            self._rings = rings
            self._pending = list(self.events[:k])
            self._reset = True
            self._ev_cursor = k
            self._gen = self.clock.generation

    def _play(self) -> None:
        clock = self.clock
        while not self._stop.is_set():
            if clock.generation != self._gen:
                self._rebuild()
            for name, src in self.sources.items():
                for cb in src.read(0):
                    ring = self._rings.get((name, cb.channel))
                    if ring is not None:
                        ring.append(cb.samples)
            now = clock.now_ns()
            k = int(np.searchsorted(self._event_t, now, side="right"))
            if k > self._ev_cursor:
                with self._lock:
                    self._pending.extend(self.events[self._ev_cursor : k])
                    self._ev_cursor = k
            if math.isinf(clock.speed) and not clock.paused:
                if now >= clock.end_ns:
                    self._stop.wait(0.05)
                else:
                    clock.advance(max(1, (clock.end_ns - clock.start_ns) // MAX_SPEED_STEPS))
                    self._stop.wait(0.005)
                continue
            nxt = [t for t in (src.next_wall_ns() for src in self.sources.values()) if t is not None]
            if self._ev_cursor < len(self._event_t):
                nxt.append(int(self._event_t[self._ev_cursor]))
            if nxt and not clock.paused:
                clock.wait_until(min(nxt), 0.05)
            else:
                self._stop.wait(0.05)

    # --- the live-view protocol ----------------------------------------------------------------
    def rings(self) -> dict[tuple[str, str], ChannelRing]:
        with self._lock:
            return dict(self._rings)

    def poll_events(self, limit: int = 500) -> tuple[bool, list[Event]]:
        with self._lock:
            reset, self._reset = self._reset, False
            out, self._pending = self._pending[:limit], self._pending[limit:]
        return reset, out

    def progress(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        now = self.clock.now_ns()
        out = {}
        for phase, (w, c) in self._progress.items():
            k = int(np.searchsorted(w, now, side="right"))
            if k:
                out[phase] = (w[:k], c[:k])
        return out

    def phase_clock(self) -> PhaseClock:
        now = self.clock.now_ns()
        for phase, t0, t1 in self.spans:
            if t0 <= now <= t1:
                return PhaseClock(phase, (now - t0) / 1e9, (t1 - t0) / 1e9)
        if now >= self.clock.end_ns:
            return PhaseClock("done", (now - self.clock.start_ns) / 1e9, None)
        k = int(np.searchsorted(self._event_t, now, side="right"))
        phase = next((e.phase for e in reversed(self.events[:k]) if e.phase), None) or "starting"
        return PhaseClock(phase if phase not in dict.fromkeys(s[0] for s in self.spans) else f"after {phase}", 0.0, None)

    def now_s(self) -> float:
        return self.clock.now_ns() / 1e9

    def start_s(self) -> float | None:
        return self.clock.start_ns / 1e9

    def end_s(self) -> float:
        return self.clock.end_ns / 1e9

    @property
    def finished(self) -> bool:
        return self.clock.at_end and self._ev_cursor >= len(self.events) and all(s.exhausted for s in self.sources.values())

    @property
    def status(self) -> str:
        if self.finished:
            return "replayed"
        return "paused" if self.clock.paused else f"replaying {speed_label(self.clock.speed)}"

    def bundle_path(self) -> Path | None:
        return self.path

    def power_window(self) -> tuple[float, float] | None:
        t = self.record.phases.get("testing")
        if t is None or t.detail is None or t.detail.power_begin_ns is None:
            return None
        return t.detail.power_begin_ns / 1e9, t.detail.power_end_ns / 1e9


__all__ = ["ReplaySession", "MAX", "synthesize_events"]
