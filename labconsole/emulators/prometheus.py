"""A fleet on loopback, the way a datacenter collects it: Redfish BMCs (the Redfish emulator), a
redfish_exporter look-alike that turns each BMC's chassis power into a Prometheus series (the
official `prometheus_client` writes the exposition format), and a REAL Prometheus server (the
`prometheus` binary, e.g. Debian's package) scraping the exporter with the multi-target
pattern the real exporters use (`/redfish?target=BMC`, relabelled to `instance`).

`PrometheusServer` (start the binary with a config we write, on 127.0.0.1, wait until ready,
stop it and wait) is also what the tests use. NOT a measurement: the BMCs are load models.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from labconsole.emulators.registry import serve_from_key_values, validate_options
from labconsole.emulators.redfish import RedfishEmulator, RedfishEmulatorOptions
from labconsole.instruments import promql

READY_TIMEOUT_S = 60.0


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PrometheusServer:
    """The real Prometheus, on loopback, with the scrape jobs given (each a dict as in
    prometheus.yml's scrape_configs). Its data lives in a temporary folder removed at stop."""

    def __init__(self, scrape_configs: list[dict[str, Any]], scrape_interval_s: float = 1.0, binary: str | None = None,
                 web_config: dict[str, Any] | None = None, blocks: Path | None = None):
        self.binary = binary or prometheus_binary()
        if not self.binary:
            raise FileNotFoundError("the prometheus binary is not installed (Debian: apt-get install prometheus)")
        self.scrape_configs = scrape_configs
        # --web.config.file: TLS (tls_server_config) and basic_auth_users (bcrypt hashes)
        self.web_config = web_config
        self.blocks = blocks  # TSDB blocks (promtool tsdb create-blocks-from) to serve besides what it scrapes
        self.scrape_interval_s = scrape_interval_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config and self.web_config.get("tls_server_config") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        cfg = {"global": {"scrape_interval": promql.duration(self.scrape_interval_s), "scrape_timeout": promql.duration(min(self.scrape_interval_s, 10.0))},
               "scrape_configs": self.scrape_configs}
        return json.dumps(cfg, indent=2)  # YAML is a superset of JSON: Prometheus reads it as is

    def start(self) -> "PrometheusServer":
        self._dir = tempfile.TemporaryDirectory(prefix="labconsole-prometheus-")
        d = Path(self._dir.name)
        (d / "prometheus.yml").write_text(self.config_text())
        if self.blocks is not None:
            shutil.copytree(self.blocks, d / "data", dirs_exist_ok=True)
        self.log_path = d / "prometheus.log"
        web = []
        if self.web_config:
            (d / "web.yml").write_text(json.dumps(self.web_config))
            web = [f"--web.config.file={d / 'web.yml'}"]
        for _attempt in range(3):  # a free port can be taken between asking and binding
            self.port = free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", "--storage.tsdb.retention.time=30d", *web],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)
            log.close()
            if self._wait_ready():
                return self
            self._terminate()
        tail = self.log_path.read_text(errors="replace")[-600:] if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"Prometheus did not become ready on 127.0.0.1 within {READY_TIMEOUT_S:g} s: {tail}")

    def _wait_ready(self) -> bool:
        end = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            if self.web_config:  # TLS or auth in front: a listening port is as far as we can see without credentials
                time.sleep(0.5)
                return True
            try:
                with self._opener().open(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        return False

    @staticmethod
    def _opener() -> urllib.request.OpenerDirector:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def wait_for_targets(self, up: int, timeout_s: float = 30.0) -> None:
        """Block until `up` targets have been scraped successfully (first samples exist)."""
        opener = self._opener()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                q = urllib.parse.urlencode({"query": "sum(up)"})
                with opener.open(f"{self.url}/api/v1/query?{q}", timeout=2) as r:
                    res = json.load(r)["data"]["result"]
                if res and float(res[0]["value"][1]) >= up:
                    return
            except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus scraped fewer than {up} targets within {timeout_s:g} s")

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def multi_target_job(job: str, exporter: str, path: str, targets: list[str], interval_s: float | None = None,
                     node_names: list[str] | None = None) -> dict[str, Any]:
    """A scrape job for a multi-target exporter (redfish_exporter, ipmi_exporter): Prometheus asks
    the exporter `path?target=T` for each target and labels the series instance=T (and node=NAME
    where names are given, as a site's relabelling names its hosts)."""
    groups = [{"targets": [t], "labels": {"node": n}} for t, n in zip(targets, node_names)] if node_names else [{"targets": targets}]
    job_cfg: dict[str, Any] = {
        "job_name": job, "metrics_path": path, "static_configs": groups,
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }
    if interval_s:
        job_cfg["scrape_interval"] = promql.duration(interval_s)
    return job_cfg


class MultiTargetExporter:
    """A small exporter serving `path?target=T` with one gauge per target, written by the official
    client library. `read(target)` returns the watts, or None when the target cannot be reached
    (the exporter then answers 503, as the real ones do, and the target's series go stale)."""

    def __init__(self, metric: str, help_text: str, read: Callable[[str], float | None], path: str = "/redfish"):
        self.metric, self.help_text, self.read, self.path = metric, help_text, read, path
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                target = urllib.parse.parse_qs(url.query).get("target", [""])[0]
                if url.path != outer.path or not target:
                    self.send_error(404)
                    return
                watts = outer.read(target)
                if watts is None:
                    self.send_error(503, f"cannot reach {target}")
                    return
                reg = CollectorRegistry()
                Gauge(outer.metric, outer.help_text, registry=reg).set(watts)
                body = generate_latest(reg)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="exporter", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "MultiTargetExporter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FleetEmulatorOptions(BaseModel):
    """A `prometheus` source's `emulator:` block: BMCs behind an exporter behind Prometheus."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(3, ge=1, le=256, description="how many Redfish BMCs (nodes)")
    idle_w: float = Field(250.0, ge=0, le=1e6)
    dynamic_w: float = Field(350.0, ge=0, le=1e6)
    noise_w: float = Field(2.0, ge=0, le=1e5)
    spread: float = Field(0.1, ge=0, le=1)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = "workload"
    update_s: float = Field(0.5, gt=0, le=60, description="the BMCs' sensor refresh")
    scrape_interval_s: float = Field(0.5, gt=0, le=60, description="Prometheus's scrape interval")
    drop_node_after_s: float | None = Field(None, gt=0, le=86400, description="node 1 stops reporting this long after start (a drill for drop-out handling)")
    drop_for_s: float = Field(3600.0, gt=0, le=86400, description="and comes back after this long")
    name_prefix: str = Field("node", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,30}$", description="nodes are named <prefix>1, <prefix>2, ... (their `node` label)")
    seed: int | None = Field(None, ge=0, lt=2**32)


Options = FleetEmulatorOptions


class FleetEmulatorHandle:
    def __init__(self, bmcs: RedfishEmulator, exporter: MultiTargetExporter, prom: PrometheusServer, node_names: dict[str, str]):
        self.bmcs, self.exporter, self.prometheus, self.node_names = bmcs, exporter, prom, node_names
        self._timers: list[threading.Timer] = []

    def source_options(self) -> dict[str, Any]:
        return {"url": self.prometheus.url, "series": "redfish", "selector": '{job="bmc"}', "node_label": "node",
                "stale_after_s": max(2.0, 4 * self.prometheus.scrape_interval_s), "lag_s": max(1.0, 2 * self.prometheus.scrape_interval_s)}

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        for part in (self.prometheus.stop, self.exporter.stop, self.bmcs.stop):
            try:
                part()
            except Exception:  # noqa: BLE001 - stop the rest whatever one says
                pass


def start(options: dict[str, Any] | None = None) -> FleetEmulatorHandle:
    o = validate_options(FleetEmulatorOptions, options, "fleet emulator")
    bmcs = RedfishEmulator(RedfishEmulatorOptions(systems=o.nodes, idle_w=o.idle_w, dynamic_w=o.dynamic_w, noise_w=o.noise_w, spread=o.spread,
                                                  utilisation=o.utilisation, update_s=o.update_s, seed=o.seed)).start()
    by_target = {f"127.0.0.1:{p}": s for p, s in zip(bmcs.ports, bmcs.systems)}

    def read(target: str) -> float | None:
        s = by_target.get(target)
        if s is None or s.offline:
            return None
        s.refresh()
        return s.watts

    exporter = prom = None
    try:
        exporter = MultiTargetExporter(promql.PRESETS["redfish"].metric, "Chassis average consumed power (W), from the BMC over Redfish", read).start()
        names = [f"{o.name_prefix}{k}" for k in range(1, o.nodes + 1)]
        prom = PrometheusServer([multi_target_job("bmc", exporter.address, "/redfish", list(by_target), node_names=names)], o.scrape_interval_s).start()
        prom.wait_for_targets(o.nodes)
    except BaseException:
        for part in (prom, exporter):
            if part is not None:
                part.stop()
        bmcs.stop()
        raise
    handle = FleetEmulatorHandle(bmcs, exporter, prom, dict(zip(by_target, names)))
    if o.drop_node_after_s:
        first = bmcs.systems[0]

        def drop(value: bool) -> None:
            first.offline = value

        for delay, value in ((o.drop_node_after_s, True), (o.drop_node_after_s + o.drop_for_s, False)):
            t = threading.Timer(delay, drop, args=(value,))
            t.daemon = True
            t.start()
            handle._timers.append(t)
    return handle


def main(argv: list[str] | None = None) -> int:
    """`labconsole emulate NAME [KEY=VALUE ...]`: start with these options (as in a profile's
    `emulator:` block, values in YAML), print the source options that reach it, serve until Ctrl-C."""
    return serve_from_key_values("prometheus-fleet", argv, start)
