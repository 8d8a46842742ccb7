"""The `prometheus` driver against a REAL Prometheus server (the `prometheus` binary, Debian's
package), started here on loopback with a config the test writes, scraping exporters shaped
like dcgm-exporter, node_exporter (RAPL) and a Redfish exporter in front of emulated BMCs.
Also: TLS and basic auth in front of Prometheus (its --web.config.file), a server that answers
late, garbage, and PromQL errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fake_exporters import FakeDcgmExporter
from labconsole.emulators import prometheus as fleet_emulator
from labconsole.emulators.prometheus import PrometheusServer, prometheus_binary
from labconsole.instruments import promql
from labconsole.sources.base import SourceError
from labconsole.sources.registry import create_source

pytestmark = pytest.mark.skipif(prometheus_binary() is None, reason="needs the prometheus binary (apt-get install prometheus; .ci/run installs it)")


@pytest.fixture(scope="module")
def dcgm_fleet():
    """Two hosts' dcgm-exporters (2 GPUs at 300 W, 4 GPUs at 250 W) scraped every 0.25 s."""
    hosts = [FakeDcgmExporter("gpu-a", 2, 300.0), FakeDcgmExporter("gpu-b", 4, 250.0)]
    prom = PrometheusServer([{"job_name": "dcgm", "static_configs": [{"targets": [h.address for h in hosts]}]}], scrape_interval_s=0.25).start()
    try:
        prom.wait_for_targets(2)
        time.sleep(1.5)  # a few scrapes, so counters have an increase to take
        yield prom, hosts
    finally:
        prom.stop()
        for h in hosts:
            h.stop()


def collect(src, seconds):
    got = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for b in src.read(0.5):
            got.setdefault(b.channel, []).extend(zip(b.samples["wall_ns"].tolist(), b.samples["watts"].tolist(), b.samples["energy_j"].tolist()))
    return got


@pytest.mark.parametrize("mode", ["range", "live"])
def test_dcgm_power_per_host(dcgm_fleet, mode):
    prom, _ = dcgm_fleet
    src = create_source("gpus", "prometheus", {"url": prom.url, "series": "dcgm_power", "mode": mode, "lag_s": 0.5}, 0.25)
    src.open()
    try:
        assert src.nodes == ["gpu-a", "gpu-b"]  # Hostname labels, each host's GPUs summed
        got = collect(src, 2.0)
        assert {n: {w for _, w, _ in pts} for n, pts in got.items()} == {"gpu-a": {600.0}, "gpu-b": {1000.0}}
        if mode == "range":  # one point per step on Prometheus's grid, none repeated or skipped
            t = [p[0] for p in got["gpu-a"]]
            assert all(abs((b - a) - 250_000_000) < 2_000 for a, b in zip(t, t[1:])) and len(t) >= 4
        assert src.identify().model.startswith("Prometheus 2.")
        assert abs(src.clock_offset_s()) < 1.0
    finally:
        src.close()


def test_dcgm_energy_counter_gives_power_and_joules(dcgm_fleet):
    prom, _ = dcgm_fleet
    src = create_source("gpus", "prometheus", {"url": prom.url, "series": "dcgm_energy", "lag_s": 0.5}, 0.5)
    src.open()
    try:
        got = collect(src, 3.0)
        for node, watts in (("gpu-a", 600.0), ("gpu-b", 1000.0)):
            pts = got[node]
            mean = sum(w for _, w, _ in pts) / len(pts)
            assert mean == pytest.approx(watts, rel=0.1)  # scrape jitter moves single points, not the mean
            assert all(j > 0 for _, _, j in pts) and pts[-1][2] > pts[0][2]  # mJ counter kept in J
    finally:
        src.close()


def test_node_rapl_counter_by_instance(dcgm_fleet):
    prom, hosts = dcgm_fleet
    src = create_source("cpus", "prometheus", {"url": prom.url, "series": "node_rapl", "lag_s": 0.5, "strip_port": False}, 0.5)
    src.open()
    try:
        assert src.nodes == sorted(h.address for h in hosts)  # host:port kept (both exporters are on 127.0.0.1)
        got = collect(src, 2.5)
        for pts in got.values():
            assert sum(w for _, w, _ in pts) / len(pts) == pytest.approx(95.0, rel=0.1)
    finally:
        src.close()


def test_redfish_bmcs_through_an_exporter_and_prometheus():
    handle = fleet_emulator.start({"nodes": 3, "utilisation": 0.5, "noise_w": 0.0, "scrape_interval_s": 0.25, "update_s": 0.25})
    try:
        src = create_source("fleet", "prometheus", handle.source_options(), 0.25)
        src.open()
        try:
            assert src.nodes == ["node1", "node2", "node3"]
            got = collect(src, 1.5)
            expected = [s.model.expected_watts(0.5) for s in handle.bmcs.systems]
            assert [sorted({round(w, 3) for _, w, _ in got[n]}) for n in src.nodes] == [[round(e, 3)] for e in expected]
            # a BMC that stops answering: its exporter answers 503, the series go stale, the node drops out
            dropped = time.time_ns()
            handle.bmcs.systems[1].offline = True
            later = collect(src, src.options.stale_after_s + src.options.lag_s + 2.0)
            last = {n: max(t for t, _, _ in pts) for n, pts in later.items()}
            limit = dropped + int((src.options.stale_after_s + 0.5) * 1e9)  # within the staleness window, not 5 minutes
            assert last["node2"] <= limit < last["node1"] and last["node3"] > limit
        finally:
            src.close()
    finally:
        handle.stop()


def test_range_query_over_a_window(dcgm_fleet):
    """The bulk path a fleet run's analysis uses: one range query for a whole window."""
    prom, _ = dcgm_fleet
    src = create_source("gpus", "prometheus", {"url": prom.url, "series": "dcgm_power"}, 0.25)
    src.open()
    try:
        end = time.time() - 0.5
        res = src.client.query_range(src.query, end - 1.0, end, 0.25)
        assert sorted(promql.node_name(lab, "Hostname") for lab, _ in res) == ["gpu-a", "gpu-b"]
        assert all(len(points) == 5 for _, points in res)
    finally:
        src.close()


def test_promql_error_is_named(dcgm_fleet):
    prom, _ = dcgm_fleet
    src = create_source("x", "prometheus", {"url": prom.url, "series": "custom", "metric": "up", "selector": '{job=~"("}'}, 0.5)
    with pytest.raises(SourceError, match="bad_data"):
        src.open()


def test_no_series_is_named(dcgm_fleet):
    prom, _ = dcgm_fleet
    src = create_source("x", "prometheus", {"url": prom.url, "series": "ipmi"}, 0.5)
    with pytest.raises(SourceError, match="no ipmi_dcmi_power_consumption_watts series"):
        src.open()


# --- TLS and auth in front of a real Prometheus ------------------------------------------------------
crypt = pytest.importorskip("crypt", reason="bcrypt hashes for Prometheus's basic_auth_users come from the crypt module")
trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def secured(tmp_path_factory, dcgm_fleet):
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    _, hosts = dcgm_fleet
    web = {"tls_server_config": {"cert_file": str(d / "cert.pem"), "key_file": str(d / "key.pem")},
           "basic_auth_users": {"lab": crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))}}
    prom = PrometheusServer([{"job_name": "dcgm", "static_configs": [{"targets": [h.address for h in hosts]}]}], 0.25, web_config=web).start()
    try:
        time.sleep(1.0)
        yield prom, str(d / "ca.pem")
    finally:
        prom.stop()


def test_tls_and_basic_auth(secured, monkeypatch):
    prom, ca = secured
    assert prom.url.startswith("https://")
    monkeypatch.setenv("PROM_PW", "s3cret")
    base = {"url": prom.url, "series": "dcgm_power", "username": "lab", "password_env": "PROM_PW"}
    deadline = time.monotonic() + 30
    while True:  # the first scrapes of the new server land within a few seconds, one target after the other
        src = create_source("g", "prometheus", dict(base, ca_file=ca), 0.5)
        try:
            src.open()
        except SourceError as exc:
            if "has no DCGM" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        src.close()
        if src.nodes == ["gpu-a", "gpu-b"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert src.nodes == ["gpu-a", "gpu-b"]
    with pytest.raises(SourceError, match="TLS certificate not trusted"):
        create_source("g", "prometheus", base, 0.5).open()
    monkeypatch.setenv("PROM_PW", "wrong")
    with pytest.raises(SourceError, match="HTTP 401"):
        create_source("g", "prometheus", dict(base, ca_file=ca), 0.5).open()


# --- a server that is late, or not Prometheus ---------------------------------------------------------
class _Odd(BaseHTTPRequestHandler):
    reply = b"{}"
    delay = 0.0

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    do_GET = do_POST


@pytest.fixture
def odd_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Odd,), {}))
    srv.daemon_threads = True
    srv.handle_error = lambda *a: None  # the late reply's broken pipe, after the client gave up
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("reply, message", [
    (b"<html>not prometheus</html>", "not JSON"),
    (json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}).encode(), "result without labels|result type"),
    (json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"instance": "a"}, "value": ["x"]}]}}).encode(), "malformed sample"),
    (json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out"}).encode(), "timeout: query timed out"),
])
def test_garbage_replies(odd_server, reply, message):
    odd_server.RequestHandlerClass.reply = reply
    src = create_source("x", "prometheus", {"url": f"http://127.0.0.1:{odd_server.server_address[1]}", "series": "ipmi"}, 0.5)
    with pytest.raises(SourceError, match=message):
        src.open()


def test_a_late_server_times_out(odd_server):
    odd_server.RequestHandlerClass.delay = 1.5
    src = create_source("x", "prometheus", {"url": f"http://127.0.0.1:{odd_server.server_address[1]}", "series": "ipmi", "timeout_s": 0.3}, 0.5)
    with pytest.raises(SourceError, match="no reply within 0.3 s"):
        src.open()


def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match="cannot connect"):
        create_source("x", "prometheus", {"url": f"http://127.0.0.1:{port}", "series": "ipmi"}, 0.5).open()
