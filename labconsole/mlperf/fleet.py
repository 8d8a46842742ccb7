"""A fleet run's nodes, from recorded data only: each node's share of the system's power and
energy, and how long each node went silent in the power window.

The recorded shape (written by the `fleet` source, `labconsole.sources.fleet`): the primary
source's channels are the nodes; a node read by several members has channels `node#k`, which
add up to the node. environment.json's identity of the source lists the nodes expected
(`extra.nodes`), the drop-out limit (`extra.max_dropout_s`) and each member's clock offset.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from labconsole.samples.table import sample_chunks

from labconsole.bundle.reader import RunRecord

DEFAULT_MAX_DROPOUT_S = 10.0


def node_of(channel: str) -> str:
    return str(channel).split("#", 1)[0]


def fleet_identity(record: RunRecord, source: str | None = None) -> dict[str, Any] | None:
    """The fleet source's recorded identity extra, or None when `source` is not a fleet."""
    name = source or record.primary_source
    for s in record.environment.get("sources") or []:
        if isinstance(s, dict) and s.get("name") == name and s.get("driver") == "fleet":
            return ((s.get("identity") or {}).get("extra")) or {}
    for s in record.sources:
        if s.get("name") == name and s.get("driver") == "fleet":
            return {}
    return None


def node_shares(record: RunRecord, per_channel: dict[str, dict], window_s: float) -> list[dict[str, Any]]:
    """[{name, avg_watts, energy_j, share, samples}] per node, from the window's per-channel means
    (a node's channels summed); energy = mean power x window, as the system's."""
    nodes: dict[str, dict[str, Any]] = {}
    for ch, st in per_channel.items():
        n = nodes.setdefault(node_of(ch), {"name": node_of(ch), "avg_watts": 0.0, "samples": 0})
        n["avg_watts"] += float(st.get("avg_watts") or 0.0)
        n["samples"] += int(st.get("samples") or 0)
    total = sum(n["avg_watts"] for n in nodes.values())
    for n in nodes.values():
        n["energy_j"] = n["avg_watts"] * window_s
        n["share"] = n["avg_watts"] / total if total > 0 else None
    return sorted(nodes.values(), key=lambda n: _natural(n["name"]))


def _natural(name: str) -> list:
    """node2 before node10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def silences(frame: Any, begin_ns: int, end_ns: int, expected: list[str] | None = None) -> dict[str, float]:
    """Per node: the longest stretch of the window [begin, end] without one of its samples
    (the window's edges count). A node expected but never heard from: the whole window."""
    out: dict[str, float] = {}
    window_s = (end_ns - begin_ns) / 1e9
    if frame is not None and len(frame):
        # chunk by chunk (a streamed phase is never held whole): each node's times in the window
        inside: dict[str, list[np.ndarray]] = {}
        for chunk in sample_chunks(frame, ("wall_ns", "channel")):
            codes, names = chunk.codes("channel")
            wall = chunk["wall_ns"]
            in_window = (wall > begin_ns) & (wall < end_ns)
            for code in np.unique(codes):
                inside.setdefault(names[int(code)], []).append(wall[(codes == code) & in_window])
        for ch, parts in sorted(inside.items()):  # by name: a tie for the longest names the first
            t = np.sort(np.concatenate(parts))
            if len(t) == 0:
                longest = window_s
            else:
                edges = np.concatenate([[begin_ns], t, [end_ns]])
                longest = float(np.diff(edges).max()) / 1e9
            node = node_of(ch)
            out[node] = max(out.get(node, 0.0), longest)
    for n in expected or []:
        out.setdefault(n, window_s)
    return out
