"""Exporters shaped like the ones datacenters run, written with the official prometheus_client,
on loopback, for a real Prometheus to scrape in the tests: dcgm-exporter (GPU power W and energy
mJ per GPU, labelled Hostname) and node_exporter's RAPL counter (J). The values are set by the
test, so what Prometheus returns can be checked exactly."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class FakeDcgmExporter:
    """One host's dcgm-exporter: `gpus` GPUs at `watts_per_gpu`, energy integrated in mJ."""

    def __init__(self, hostname: str, gpus: int = 2, watts_per_gpu: float = 300.0):
        self.hostname = hostname
        self.registry = CollectorRegistry()
        self.power = Gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", ["gpu", "UUID", "Hostname", "modelName"], registry=self.registry)
        # dcgm-exporter's series has no _total suffix, which prometheus_client's Counter would add:
        # a Gauge that only goes up gives the same series name and values
        self.energy = Gauge("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).",
                              ["gpu", "UUID", "Hostname", "modelName"], registry=self.registry)
        self.rapl = Counter("node_rapl_package_joules", "Current RAPL package value in joules", ["index", "path"], registry=self.registry)
        self.gpus = gpus
        self.watts = watts_per_gpu
        self.rapl_watts = 95.0
        self._stop = threading.Event()
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _labels(self, g: int) -> dict[str, str]:
        return {"gpu": str(g), "UUID": f"GPU-{self.hostname}-{g}", "Hostname": self.hostname, "modelName": "NVIDIA H100 80GB HBM3"}

    def _tick(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.05):
            now = time.monotonic()
            dt, last = now - last, now
            for g in range(self.gpus):
                self.power.labels(**self._labels(g)).set(self.watts)
                self.energy.labels(**self._labels(g)).inc(self.watts * dt * 1000.0)
            self.rapl.labels(index="0", path="/sys/class/powercap/intel-rapl:0").inc(self.rapl_watts * dt)

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()
