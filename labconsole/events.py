"""Events: what the procedure tells the operator, the CLI, the TUI and the bundle's timeline.

Every step publishes events (start, progress, warning, result, ...) to one `EventBus`. The
CLI and the TUI each subscribe with their own queue; the bundle writer subscribes a sink that
appends `events.jsonl`. `read_events` reads the lines back for replay, checks and export, so
live and replayed timelines are one format.

The timeline is the console's first JSON, so the console's one JSON encoder lives here too
(`to_json`, for the timeline, the bundle's files and `--json` output): this is the bottom
layer, importable by every module that writes JSON.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from labconsole import safefile

# Kinds, in the order an operator cares about them.
INFO = "info"
PHASE_START = "phase_start"
PHASE_END = "phase_end"
STEP = "step"  # a calibration step's verdict
PROGRESS = "progress"
WARNING = "warning"
ERROR = "error"
RESULT = "result"
KINDS = (INFO, PHASE_START, PHASE_END, STEP, PROGRESS, WARNING, ERROR, RESULT)


@dataclass
class Event:
    kind: str
    message: str
    phase: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    wall_ns: int = field(default_factory=time.time_ns)

    def to_json(self) -> str:
        return to_json(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        """An event from its JSON; TypeError/KeyError when a field has the wrong type (a
        file's line is data, not trusted: a phase that is a number would break a replay)."""
        kind, phase, data, wall_ns = d["kind"], d.get("phase"), d.get("data") or {}, d["wall_ns"]
        if not isinstance(kind, str) or not (phase is None or isinstance(phase, str)) or not isinstance(data, dict):
            raise TypeError("an event's kind and phase are text, its data an object")
        if isinstance(wall_ns, bool) or not isinstance(wall_ns, int):
            raise TypeError("an event's wall_ns is an integer")
        return cls(kind=kind, message=str(d.get("message", "")), phase=phase, data=dict(data), wall_ns=wall_ns)


class EventBus:
    """Fan-out of events to subscriber queues and synchronous sinks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[Event]] = []
        self._sinks: list[Callable[[Event], None]] = []
        self.history: list[Event] = []

    def subscribe(self) -> "queue.Queue[Event]":
        q: queue.Queue[Event] = queue.Queue()
        with self._lock:
            self._queues.append(q)
            for ev in self.history:  # a late subscriber still sees the whole timeline
                q.put(ev)
        return q

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        with self._lock:
            self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[Event], None]) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def publish(self, event: Event) -> Event:
        with self._lock:
            # Progress ticks are frequent; keep them out of the replay-to-late-subscriber history.
            if event.kind != PROGRESS:
                self.history.append(event)
            sinks = list(self._sinks)
            queues = list(self._queues)
        for sink in sinks:
            sink(event)
        for q in queues:
            q.put(event)
        return event

    def emit(self, kind: str, message: str, phase: str | None = None, **data: Any) -> Event:
        return self.publish(Event(kind=kind, message=message, phase=phase, data=data))


class JsonlSink:
    """Appends each event to a JSON-lines file and flushes, so a crash keeps the timeline."""

    def __init__(self, path) -> None:
        self._fh = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._fh is None:
                return
            self._fh.write(event.to_json() + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read_events(path, root=None) -> list[Event]:
    """The timeline an events.jsonl holds, in file order; [] when there is no file.

    Only a regular file is read (a FIFO would block), no more than safefile's cap, and with
    `root` (the bundle) never through a link leading out of it: those raise FileRefused.

    A line that is not an event is skipped, not an error: `JsonlSink` writes whole lines and
    flushes each, so a bad line is the one a crash cut off (the last), and one damaged line
    must not hide the rest of the timeline from replay, `check` or export.
    """
    if not os.path.lexists(path):
        return []
    lines = safefile.read_text(path, "events", root=root, errors="replace").split("\n")
    events: list[Event] = []
    for line in lines:
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return events


def phase_spans(events: list[Event]) -> dict[str, tuple[int, int | None]]:
    """(start, end) wall ns of each phase in a timeline: its last start (the phase as finally
    run) and the end recorded after it, None when there is none (a crash)."""
    spans: dict[str, tuple[int, int | None]] = {}
    for e in events:
        if not e.phase:
            continue
        if e.kind == PHASE_START:
            spans[e.phase] = (e.wall_ns, None)
        elif e.kind == PHASE_END and e.phase in spans:
            spans[e.phase] = (spans[e.phase][0], e.wall_ns)
    return spans


def to_json(obj: Any, indent: int | None = None) -> str:
    """The console's JSON: one line (the timeline) by default, `indent` for files and `--json`.

    NaN and infinities are written as null: JSON has no such numbers (RFC 8259; JavaScript's
    JSON.parse refuses Python's `NaN` token), and here they always mean "no value". numpy
    scalars become numbers, objects with `as_dict()` their dict, dates their ISO text, and
    anything else its str(). Files MLPerf's tools read are not written with this: they keep
    the format of the tools that wrote them first.
    """
    if indent is None:
        return json.dumps(_plain(obj), separators=(",", ":"), allow_nan=False)
    return json.dumps(_plain(obj), indent=indent, allow_nan=False)


def _plain(obj: Any) -> Any:
    """`obj` as what json encodes: dicts, lists, str, int, finite float, bool and None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    np = sys.modules.get("numpy")  # a numpy scalar exists only where numpy is loaded
    if np is not None and isinstance(obj, np.generic):
        return _plain(obj.item())
    if hasattr(obj, "as_dict"):
        return _plain(obj.as_dict())
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)
