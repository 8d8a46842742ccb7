"""What a live view shows of a source with many channels (a fleet's nodes): the total, and a
per-node breakdown that stays readable at 64 nodes and more. No Textual here: the console's
run screen and the benchmarks call these.

A source with more than MANY channels is drawn as ONE series, its total (each node's newest
value at each point of a time grid, summed: a node between samples holds its last reading, a
silent node stops counting once its reading is older than `stale_s`), and listed as a total line
plus a grid of nodes in columns, sorted by name, silent ones marked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

MANY = 6  # more channels than this: total + breakdown instead of one line and one curve each


@dataclass
class NodeReading:
    name: str
    watts: float  # newest valid reading (NaN: none yet)
    age_s: float | None  # how old that reading is
    silent: bool


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def node_readings(latest: dict[str, tuple[float, float]], now_s: float, stale_s: float) -> list[NodeReading]:
    """{channel: (t_s of newest valid sample, watts)} -> readings sorted by name (node2 < node10)."""
    out = []
    for name in sorted(latest, key=_natural):
        t, w = latest[name]
        age = (now_s - t) if math.isfinite(t) else None
        out.append(NodeReading(name, w, age, age is None or age > stale_s))
    return out


def total_now(readings: list[NodeReading]) -> float:
    vals = [r.watts for r in readings if not r.silent and math.isfinite(r.watts)]
    return float(sum(vals)) if vals else math.nan


def breakdown_lines(source: str, readings: list[NodeReading], width: int = 40, max_lines: int = 24) -> list[str]:
    """Rich-markup lines: `fleet  total 18,432 W  64 nodes, 2 silent`, then the nodes in as many
    columns as fit `width` (a cell: name and W), silent ones as `--` in red. With more nodes than
    fit in `max_lines`, the heaviest and the silent ones are shown and the rest counted."""
    total = total_now(readings)
    silent = [r for r in readings if r.silent]
    head = f"[b]{source}[/] total {_w(total)}  {len(readings)} nodes" + (f", [red]{len(silent)} silent[/]" if silent else "")
    if not readings:
        return [head]
    name_w = min(14, max(len(r.name) for r in readings))
    cell = name_w + 7  # "name  1234"
    cols = max(1, (width + 1) // (cell + 1))
    shown = readings
    rest = 0
    if math.ceil(len(readings) / cols) > max_lines - 2:
        keep = (max_lines - 2) * cols
        by_power = sorted((r for r in readings if not r.silent), key=lambda r: -r.watts if math.isfinite(r.watts) else 0)
        pick = {id(r) for r in silent[:keep]} | {id(r) for r in by_power[: max(0, keep - len(silent))]}
        shown = [r for r in readings if id(r) in pick]
        rest = len(readings) - len(shown)
    lines = [head]
    rows = math.ceil(len(shown) / cols)
    for i in range(rows):
        cells = []
        for j in range(cols):
            k = j * rows + i  # down the columns, like `ls`
            if k < len(shown):
                r = shown[k]
                name = r.name if len(r.name) <= name_w else r.name[: name_w - 1] + "…"
                value = "[red]   --[/]" if r.silent else f"{r.watts:5.0f}" if math.isfinite(r.watts) else "    -"
                cells.append(f"{name:<{name_w}} {value}")
        lines.append(" ".join(cells))
    if rest:
        lines.append(f"[dim]+ {rest} more nodes (the heaviest and the silent shown)[/]")
    return lines


def total_series(series: list[tuple[np.ndarray, np.ndarray]], t0: float, t1: float, points: int, stale_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The sum of many channels on a grid of `points` times over [t0, t1]: at each grid time each
    channel's newest value not older than `stale_s` (NaN values are gaps: they do not count)."""
    if points < 2 or not t1 > t0:
        return np.empty(0), np.empty(0)
    grid = np.linspace(t0, t1, points)
    total = np.zeros(points)
    counted = np.zeros(points, dtype=bool)
    for t, y in series:
        if len(t) == 0:
            continue
        idx = np.searchsorted(t, grid, side="right") - 1
        ok = idx >= 0
        idx_c = np.clip(idx, 0, len(t) - 1)
        fresh = ok & (grid - t[idx_c] <= stale_s)
        vals = y[idx_c]
        use = fresh & np.isfinite(vals)
        total[use] += vals[use]
        counted |= use
    total[~counted] = np.nan
    return grid, total


def _w(watts: float) -> str:
    if not math.isfinite(watts):
        return "-"
    return f"{watts / 1000:,.2f} kW" if watts >= 10_000 else f"{watts:,.0f} W"
