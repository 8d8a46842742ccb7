"""An emulated fleet for a `fleet` source's `emulator:` block: nodes whose BMCs are scraped by a
real Prometheus (Redfish BMC emulators behind a redfish_exporter look-alike, see
`emulators.prometheus`), nodes read over Redfish directly, and nodes behind OpenIPMI's
`ipmi_sim`; all loopback, all following the load model. Its `source_options()` are the fleet
source's `prometheus:` and `nodes:` (names node1, node2, ... in that order).

`drop: {node, after_s, for_s}` makes one node stop reporting for a while (a drill for drop-out
handling and the check that fails a run when a node is silent longer than allowed).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from labconsole.emulators.registry import serve_from_key_values, validate_options
from labconsole.emulators import ipmi as ipmi_emulator
from labconsole.emulators import prometheus as prom_emulator
from labconsole.emulators import redfish as redfish_emulator


class DropDrill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str
    after_s: float = Field(..., ge=0, le=86_400)
    for_s: float = Field(..., gt=0, le=86_400)


class FleetEmulatorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prometheus_nodes: int = Field(3, ge=0, le=256, description="nodes whose Redfish BMCs a real Prometheus scrapes")
    redfish_nodes: int = Field(0, ge=0, le=256, description="nodes read over Redfish directly")
    ipmi_nodes: int = Field(1, ge=0, le=8, description="nodes behind ipmi_sim")
    idle_w: float = Field(250.0, ge=0, le=1e4)
    dynamic_w: float = Field(250.0, ge=0, le=1e4)
    noise_w: float = Field(2.0, ge=0, le=100)
    spread: float = Field(0.1, ge=0, le=1)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = "workload"
    update_s: float = Field(0.5, gt=0, le=60)
    scrape_interval_s: float = Field(0.5, gt=0, le=60)
    drop: DropDrill | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)


Options = FleetEmulatorOptions


class FleetHandle:
    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.prometheus: Any = None
        self.redfish: Any = None
        self.ipmi: list[Any] = []
        self.offline: dict[str, Callable[[bool], None]] = {}
        self.options: dict[str, Any] = {"prometheus": [], "nodes": []}
        self._timers: list[threading.Timer] = []

    def source_options(self) -> dict[str, Any]:
        return self.options

    def set_offline(self, node: str, offline: bool) -> None:
        self.offline[node](offline)

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - stop the rest whatever one says
                pass


def start(options: dict[str, Any] | None = None) -> FleetHandle:
    o = validate_options(FleetEmulatorOptions, options, "fleet emulator")
    h = FleetHandle()
    load = {"idle_w": o.idle_w, "dynamic_w": o.dynamic_w, "noise_w": o.noise_w, "utilisation": o.utilisation, "update_s": o.update_s}
    k = 0
    try:
        if o.prometheus_nodes:
            p = prom_emulator.start({**load, "nodes": o.prometheus_nodes, "spread": o.spread, "scrape_interval_s": o.scrape_interval_s, "seed": o.seed})
            h.parts.append(p)
            h.prometheus = p
            h.options["prometheus"].append(p.source_options())
            for i, system in enumerate(p.bmcs.systems):
                k += 1
                h.offline[f"node{k}"] = (lambda s: lambda v: setattr(s, "offline", v))(system)
        if o.redfish_nodes:
            r = redfish_emulator.start({**load, "systems": o.redfish_nodes, "spread": o.spread, "seed": None if o.seed is None else o.seed + 100})
            h.parts.append(r)
            h.redfish = r
            for i, url in enumerate(r.emulator.urls):
                k += 1
                h.options["nodes"].append({"name": f"node{k}", "sources": [{"driver": "redfish", "options": {"url": url, "username": r.emulator.opts.username, "password": r.emulator.opts.password}}]})
                h.offline[f"node{k}"] = (lambda idx: lambda v: r.emulator.set_offline(idx, v))(i)
        for i in range(o.ipmi_nodes):
            sim = ipmi_emulator.start({**load, "seed": None if o.seed is None else o.seed + 200 + i})
            h.parts.append(sim)
            h.ipmi.append(sim)
            k += 1
            h.options["nodes"].append({"name": f"node{k}", "sources": [{"driver": "ipmi", "options": {**sim.source_options(), "timeout_s": 1}}]})
            h.offline[f"node{k}"] = sim.sim.set_offline
    except BaseException:
        h.stop()
        raise
    if o.drop is not None:
        if o.drop.node not in h.offline:
            h.stop()
            raise ValueError(f"drop.node: no node {o.drop.node!r} (this fleet has {', '.join(h.offline)})")
        for delay, value in ((o.drop.after_s, True), (o.drop.after_s + o.drop.for_s, False)):
            t = threading.Timer(delay, h.set_offline, args=(o.drop.node, value))
            t.daemon = True
            t.start()
            h._timers.append(t)
    return h


def main(argv: list[str] | None = None) -> int:
    """`labconsole emulate NAME [KEY=VALUE ...]`: start with these options (as in a profile's
    `emulator:` block, values in YAML), print the source options that reach it, serve until Ctrl-C."""
    return serve_from_key_values("fleet", argv, start)
