"""Text for the console: events, numbers, verdicts (no Textual here, only rich markup)."""

from __future__ import annotations

import math
import time

from rich.markup import escape as _escape_markup

from labconsole import events as ev
from labconsole.termtext import printable


def escape(text) -> str:
    """Text from a file, a recording or an instrument, for a markup string: control characters
    shown escaped (a terminal never obeys them), Rich markup shown as the text it is."""
    return _escape_markup(printable(text))

VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim", "running": "cyan", "pending": "dim"}
VERDICT_ICON = {"pass": "✔", "warn": "▲", "fail": "✘", "skip": "↷", "running": "●", "pending": "·"}
STATUS_STYLE = {"completed": "green", "replayed": "green", "aborted": "yellow", "recovered": "yellow", "failed": "red", "refused": "red", "running": "cyan", "stopping": "yellow"}

_EVENT_TAG = {
    ev.WARNING: ("WARN", "yellow"),
    ev.ERROR: ("ERROR", "bold red"),
    ev.RESULT: ("RESULT", "bold green"),
    ev.PHASE_START: (">>", "bold cyan"),
    ev.PHASE_END: ("<<", "cyan"),
    ev.STEP: ("step", "magenta"),
}


def event_markup(e: ev.Event, whole: bool = False) -> str:
    """One event as a log line; `whole`: every line of its message (the full-screen log)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(e.wall_ns / 1e9))
    tag, style = _EVENT_TAG.get(e.kind, ("", ""))
    parts = [f"[dim]{stamp}[/]"]
    if tag:
        parts.append(f"[{style}]{tag}[/]")
    if e.phase:
        parts.append(f"[dim]\\[{escape(e.phase)}][/]")
    lines = (e.message or "").splitlines() or [""]
    msg = escape("\n".join(lines) if whole else lines[0])
    parts.append(msg)
    return " ".join(parts)


def verdict_markup(status: str, text: str | None = None) -> str:
    style = VERDICT_STYLE.get(status, "")
    icon = VERDICT_ICON.get(status, "")
    return f"[{style}]{icon} {escape(text if text is not None else status.upper())}[/]"


def status_markup(status: str | None) -> str:
    status = status or "?"
    style = next((v for k, v in STATUS_STYLE.items() if status.startswith(k)), "")
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


_PREFIXES = ((1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"))


def si_scale(magnitude: float) -> tuple[float, str]:
    """(factor, prefix) that shows `magnitude` with 1 to 3 digits before the point: 0.015 W is
    15 mW, 2500 W is 2.5 kW."""
    a = abs(magnitude)
    if not math.isfinite(a) or a == 0:
        return 1.0, ""
    for factor, prefix in _PREFIXES:
        if a >= factor * 0.9995:
            return factor, prefix
    return _PREFIXES[-1]


def si(v, unit: str, digits: int = 4) -> str:
    """A value with its unit scaled: 0.0153 W -> '15.3 mW', 1234.5 J -> '1.234 kJ'."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(f):
        return "-"
    factor, prefix = si_scale(f)
    return f"{f / factor:.{digits}g} {prefix}{unit}"


def num(v, fmt: str = ".1f", unit: str = "") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(f):
        return "-"
    return f"{f:{fmt}}" + (f" {unit}" if unit else "")


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}:{s:02d}"
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def flatten(d: dict, prefix: str = "", limit: int = 24) -> list[tuple[str, str]]:
    """Nested measurement dicts as (key, value) lines for a verdict panel."""
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(flatten(v, key + ".", limit))
        elif isinstance(v, float):
            out.append((key, num(v, ".4g")))
        elif isinstance(v, (list, tuple)):
            out.append((key, ", ".join(str(x) for x in v[:6]) + (" ..." if len(v) > 6 else "")))
        else:
            out.append((key, str(v)))
        if len(out) >= limit:
            break
    return out[:limit]
