"""The live view of a fleet: a total and a per-node grid that stays readable at 64 nodes."""

from __future__ import annotations

import math
import re

import numpy as np

from labconsole.session import fleet_view


def readings(n=64, silent=(), now=1000.0):
    latest = {f"node{i}": (now - 0.3, 250.0 + i) for i in range(1, n + 1)}
    for name in silent:
        latest[name] = (now - 30.0, 999.0)
    return fleet_view.node_readings(latest, now, stale_s=5.0)


def plain(line: str) -> str:
    return re.sub(r"\[/?[a-z ]*\]", "", line)


def test_64_nodes_fit_a_stats_panel():
    rs = readings(64, silent=("node7",))
    lines = fleet_view.breakdown_lines("fleet", rs, width=60, max_lines=24)
    assert plain(lines[0]) == f"fleet total {sum(250.0 + i for i in range(1, 65) if i != 7) / 1000:,.2f} kW  64 nodes, 1 silent"
    assert len(lines) <= 24 and all(len(plain(ln)) <= 60 for ln in lines)
    body = " ".join(plain(ln) for ln in lines[1:])
    assert all(f"node{i} " in body for i in range(1, 65))  # every node shown
    assert re.search(r"node7\s+--", body) and "999" not in body  # silent: marked, not counted
    assert body.index("node2 ") < body.index("node10 ")  # natural order


def test_more_nodes_than_fit_show_the_heaviest_and_the_silent():
    rs = readings(300, silent=("node5",))
    lines = fleet_view.breakdown_lines("fleet", rs, width=40, max_lines=12)
    assert len(lines) <= 12 and "+ " in lines[-1] and "more nodes" in lines[-1]
    body = " ".join(plain(ln) for ln in lines)
    assert "node5" in body and "node300" in body and "node1 " not in body


def test_total_series_holds_each_node_until_it_goes_stale():
    t = np.arange(0.0, 10.0, 1.0)
    a = (t, np.full(10, 100.0))
    b = (t[:5] + 0.5, np.full(5, 50.0))  # node b stops at 4.5 s
    grid, total = fleet_view.total_series([a, b], 0.0, 9.0, 10, stale_s=2.0)
    assert list(grid) == list(t)
    assert total[0] == 100.0 and total[1] == 150.0 and total[5] == 150.0 and total[6] == 150.0 and total[7] == 100.0
    assert math.isnan(fleet_view.total_series([(np.empty(0), np.empty(0))], 0, 1, 5, 1.0)[1][0])
