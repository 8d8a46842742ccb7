"""The series datacenters already collect node and GPU power in, and the PromQL that reads them
per node. No I/O: shared by the `prometheus` driver, the fleet emulator's exporter and
`labconsole export-metrics`. Facts: reference/instruments.md §7.3.

Each preset: the metric, whether it is a gauge in watts or a cumulative energy counter (with the
factor to joules), and the label that names the node in that exporter's series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Series:
    metric: str
    kind: str  # "gauge" (W) or "counter" (cumulative energy)
    to_joules: float = 1.0  # counter: the factor from the series' unit to J
    node_label: str = "instance"
    what: str = ""


PRESETS: dict[str, Series] = {
    # NVIDIA dcgm-exporter default counters: power (W, averaged by the driver) and energy since boot (mJ)
    "dcgm_power": Series("DCGM_FI_DEV_POWER_USAGE", "gauge", node_label="Hostname", what="GPU power, dcgm-exporter (W)"),
    "dcgm_energy": Series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 1e-3, "Hostname", "GPU energy, dcgm-exporter (mJ counter)"),
    # node_exporter's powercap/RAPL collector: CPU package energy (J counter)
    "node_rapl": Series("node_rapl_package_joules_total", "counter", 1.0, "instance", "CPU package energy, node_exporter RAPL (J counter)"),
    # prometheus-community ipmi_exporter: DCMI chassis power (W)
    "ipmi": Series("ipmi_dcmi_power_consumption_watts", "gauge", node_label="instance", what="chassis power, ipmi_exporter DCMI (W)"),
    # redfish_exporter: the chassis's average consumed power (W)
    "redfish": Series("redfish_chassis_power_average_consumed_watts", "gauge", node_label="instance", what="chassis power, redfish_exporter (W)"),
    # labconsole export-metrics: a lab's own meters, next to the fleet's
    "labconsole": Series("labconsole_power_watts", "gauge", node_label="node", what="labconsole export-metrics (W)"),
}

_SELECTOR = re.compile(r"^\{.*\}$|^$", re.S)


def node_query(series: Series, selector: str = "", node_label: str | None = None, window_s: float | None = None) -> str:
    """PromQL for one value per node: the series summed by the node label (a node's GPUs, or its
    power supplies, add up). `window_s`: only samples scraped in the last window count
    (last_over_time), so a node that stopped reporting disappears at once instead of repeating
    its last value for Prometheus's 5-minute lookback."""
    if not _SELECTOR.match(selector.strip()):
        raise ValueError(f"selector {selector!r}: a PromQL label matcher in braces, e.g. {{job=\"bmc\"}}")
    label = node_label or series.node_label
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
        raise ValueError(f"node_label {label!r} is not a Prometheus label name")
    inner = f"{series.metric}{selector.strip()}"
    if window_s:
        inner = f"last_over_time({inner}[{duration(window_s)}])"
    return f"sum by ({label}) ({inner})"


def duration(seconds: float) -> str:
    """A PromQL duration: whole milliseconds (`1500ms`, `2s`)."""
    ms = max(1, int(round(seconds * 1000)))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def node_name(labels: dict[str, str], label: str, strip_port: bool = True) -> str:
    """The node a result series belongs to; `host:port` instances lose the port."""
    name = labels.get(label, "")
    if strip_port and re.fullmatch(r"[^:\[\]]+:\d+", name):
        name = name.rsplit(":", 1)[0]
    elif strip_port and re.fullmatch(r"\[.*\]:\d+", name):
        name = name.rsplit(":", 1)[0]
    return name or "(no " + label + ")"


def parse_points(points: list) -> "np.ndarray":
    """[(t, "value"), ...] as Prometheus's API sends them -> an (n, 2) float array; NaN and
    +-Inf values become NaN (no reading). Raises ValueError on anything else."""
    if not points:
        return np.empty((0, 2))
    try:
        t = np.array([p[0] for p in points], dtype=np.float64)
        raw = [p[1] for p in points]
    except (TypeError, IndexError, ValueError):
        raise ValueError("malformed sample points") from None
    if not all(isinstance(x, str) for x in raw):
        raise ValueError(f"sample values must be strings, got {next(x for x in raw if not isinstance(x, str))!r}")
    v = np.array(raw, dtype=np.float64)  # numpy parses "NaN", "+Inf" like float()
    v[~np.isfinite(v)] = np.nan
    return np.column_stack([t, v])


def parse_value(text: str) -> float:
    """A sample value as Prometheus's API sends it: a string ("123.4", "NaN", "+Inf")."""
    if not isinstance(text, str):
        raise ValueError(f"sample value {text!r} is not a string")
    v = float(text)
    return v if math.isfinite(v) else math.nan
