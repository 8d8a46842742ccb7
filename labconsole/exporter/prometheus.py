"""A lab's meters next to the fleet's: the profile's sources read continuously and served in
Prometheus's exposition format by the official client library (`prometheus_client`), so the
site's Prometheus scrapes them like any exporter (`labconsole export-metrics`).

Series (labels: node, source, channel, scope):
    labconsole_power_watts                 gauge: the newest valid reading
    labconsole_energy_joules_total         counter: the source's energy counter where it has one,
                                           else the readings integrated (each held until the next)
    labconsole_sample_timestamp_seconds    gauge: when the newest reading was taken
    labconsole_source_up                   gauge (labels: node, source): 1 while the source reads
A source that fails is retried; while it fails its power series are withdrawn (Prometheus then
marks them stale) and source_up is 0. `node` is the host's name unless given; a fleet source's
channels are its nodes, so they are exported with node = the channel.
"""

from __future__ import annotations

import math
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from labconsole.emulators.registry import start_for_source
from labconsole.samples.batch import OK
from labconsole.sources.base import Source
from labconsole.sources.registry import create_source

RETRY_S = 2.0


@dataclass
class _Channel:
    watts: float = math.nan
    t: float = 0.0
    energy_j: float = 0.0
    counter_base: float | None = None  # the source's own counter at the first reading


@dataclass
class _Reader:
    spec: Any
    source: Source | None = None
    emulator: Any = None
    up: bool = False
    error: str | None = None
    channels: dict[str, _Channel] = field(default_factory=dict)


class SourceExporter(Collector):
    def __init__(self, sources: list[Any], node: str | None = None):
        self.node = node or socket.gethostname()
        self.readers = [_Reader(spec) for spec in sources]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._server: Any = None

    # --- reading ---------------------------------------------------------------------------------
    def _open(self, r: _Reader) -> None:
        spec = r.spec
        options = dict(spec.options)
        if spec.emulator is not None and r.emulator is None:
            r.emulator = start_for_source(spec.driver, dict(spec.emulator))
        if r.emulator is not None:
            options.update(r.emulator.source_options())
        src = create_source(spec.name, spec.driver, options, spec.sample_interval_s)
        src.open()
        r.source = src

    def _loop(self, r: _Reader) -> None:
        while not self._stop.is_set():
            try:
                if r.source is None:
                    self._open(r)
                batches = r.source.read(0.5)
                r.up, r.error = True, None
            except Exception as exc:  # noqa: BLE001 - a failing meter is reported, then retried
                with self._lock:
                    r.up, r.error, r.channels = False, str(exc), {}
                if r.source is not None:
                    try:
                        r.source.close()
                    except Exception:  # noqa: BLE001
                        pass
                    r.source = None
                self._stop.wait(RETRY_S)
                continue
            with self._lock:
                for b in batches:
                    s = b.samples
                    ch = r.channels.setdefault(b.channel, _Channel())
                    for row in s:
                        if int(row["status"]) != OK or not math.isfinite(float(row["watts"])):
                            continue
                        t, w, e = float(row["wall_ns"]) / 1e9, float(row["watts"]), float(row["energy_j"])
                        if math.isfinite(e):
                            if ch.counter_base is None or e < ch.counter_base:
                                ch.counter_base = e
                            ch.energy_j = e - ch.counter_base
                        elif ch.t and math.isfinite(ch.watts) and t > ch.t:
                            ch.energy_j += ch.watts * (t - ch.t)
                        ch.watts, ch.t = w, t

    def start(self) -> "SourceExporter":
        for r in self.readers:
            t = threading.Thread(target=self._loop, args=(r,), name=f"export-{r.spec.name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def serve(self, host: str = "127.0.0.1", port: int = 9464) -> int:
        """Serve /metrics; returns the port (port 0: a free one)."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for r in self.readers:
            for part in (r.source, r.emulator):
                if part is not None:
                    try:
                        part.close() if part is r.source else part.stop()
                    except Exception:  # noqa: BLE001
                        pass

    # --- the exposition ------------------------------------------------------------------------------
    def collect(self) -> Iterable[Any]:
        labels = ["node", "source", "channel", "scope"]
        power = GaugeMetricFamily("labconsole_power_watts", "Power of a labconsole source's channel (W), its newest valid reading", labels=labels)
        energy = CounterMetricFamily("labconsole_energy_joules", "Energy of a labconsole source's channel since the exporter started (J)", labels=labels)
        stamp = GaugeMetricFamily("labconsole_sample_timestamp_seconds", "When the newest reading was taken (Unix time)", labels=labels)
        up = GaugeMetricFamily("labconsole_source_up", "1 while the source delivers readings", labels=["node", "source"])
        with self._lock:
            for r in self.readers:
                up.add_metric([self.node, r.spec.name], 1.0 if r.up else 0.0)
                fleet = r.spec.driver == "fleet"
                for name, ch in r.channels.items():
                    if not ch.t:
                        continue
                    node = name.split("#", 1)[0] if fleet else self.node
                    lab = [node, r.spec.name, name, r.spec.scope]
                    power.add_metric(lab, ch.watts)
                    energy.add_metric(lab, ch.energy_j)
                    stamp.add_metric(lab, ch.t)
        yield from (power, energy, stamp, up)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"source": r.spec.name, "up": r.up, "error": r.error, "channels": sorted(r.channels)} for r in self.readers]


def run(profile: Any, host: str, port: int, node: str | None, announce) -> tuple[SourceExporter, int]:
    exporter = SourceExporter(list(profile.sources), node).start()
    try:
        bound = exporter.serve(host, port)
    except OSError:
        exporter.stop()
        raise
    announce(f"labconsole exporter: http://{host if ':' not in host else f'[{host}]'}:{bound}/metrics (node {exporter.node!r}, {len(exporter.readers)} source(s))")
    return exporter, bound
