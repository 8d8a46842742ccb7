"""Events: what the procedure tells the operator, the CLI, the TUI and the bundle's timeline.

Every step publishes events (start, progress, warning, result, ...) to one `EventBus`. The
CLI and the TUI each subscribe with their own queue; the bundle writer subscribes a sink that
appends `events.jsonl`. Replay reads the same lines back, so live and replayed timelines are
one format.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

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
        return json.dumps(asdict(self), default=_json_default, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        return cls(
            kind=str(d["kind"]),
            message=str(d.get("message", "")),
            phase=d.get("phase"),
            data=dict(d.get("data") or {}),
            wall_ns=int(d["wall_ns"]),
        )


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    return str(obj)


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


def read_events(path) -> list[Event]:
    """Read an events.jsonl; a torn last line (crash) is skipped, other bad lines are errors."""
    events: list[Event] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            if lineno == len(lines):  # last line with no newline: torn by a crash
                break
            raise ValueError(f"{path}:{lineno}: malformed event line ({exc})") from None
    return events
