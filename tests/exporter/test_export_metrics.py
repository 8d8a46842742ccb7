"""`labconsole export-metrics`: the profile's sources in Prometheus's exposition format (the
official client library), scraped by a real Prometheus and read back through the `prometheus`
source; a failing source is withdrawn and marked down; the command itself."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, write_profile
from labconsole.emulators.prometheus import PrometheusServer, prometheus_binary
from labconsole.exporter.prometheus import SourceExporter
from labconsole.profile import load_profile
from labconsole.sources.registry import create_source

PROFILE = """
name: exported-bench
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    scope: wall
    sample_interval_s: 0.1
    options: {{idle_w: 100, dynamic_w: 100, noise_w: 0, utilisation: 0.5}}
  - name: gpus
    driver: simulated
    scope: gpu
    sample_interval_s: 0.1
    options: {{idle_w: 40, dynamic_w: 0, noise_w: 0, utilisation: 0.0}}
workload: {{type: loadgen, sut: null, scenario: Offline, duration_s: 1}}
"""


def scrape(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def exporter(tmp_path):
    prof = load_profile(write_profile(tmp_path, PROFILE.format(rec=tmp_path / "rec"))).profile
    ex = SourceExporter(list(prof.sources), node="bench7").start()
    port = ex.serve("127.0.0.1", 0)
    try:
        time.sleep(0.6)
        yield ex, port
    finally:
        ex.stop()


def test_series_and_labels(exporter):
    ex, port = exporter
    m = scrape(port)
    wall = (("channel", "main"), ("node", "bench7"), ("scope", "wall"), ("source", "wall"))
    assert m[("labconsole_power_watts", wall)] == pytest.approx(150.0, abs=0.01)
    assert m[("labconsole_power_watts", (("channel", "main"), ("node", "bench7"), ("scope", "gpu"), ("source", "gpus")))] == pytest.approx(40.0, abs=0.01)
    assert m[("labconsole_source_up", (("node", "bench7"), ("source", "wall")))] == 1.0
    e1 = m[("labconsole_energy_joules_total", wall)]
    t1 = m[("labconsole_sample_timestamp_seconds", wall)]
    assert abs(t1 - time.time()) < 2
    time.sleep(1.0)
    m2 = scrape(port)
    assert m2[("labconsole_energy_joules_total", wall)] - e1 == pytest.approx(150.0 * (m2[("labconsole_sample_timestamp_seconds", wall)] - t1), rel=0.05)


def test_a_failing_source_is_withdrawn(exporter):
    ex, port = exporter
    wall = next(r for r in ex.readers if r.spec.name == "wall")

    wall.source.read = lambda timeout: (_ for _ in ()).throw(RuntimeError("meter unplugged"))
    time.sleep(0.8)
    m = scrape(port)
    assert m[("labconsole_source_up", (("node", "bench7"), ("source", "wall")))] == 0.0
    assert not any(k[0] == "labconsole_power_watts" and ("source", "wall") in k[1] for k in m)
    assert any(k[0] == "labconsole_power_watts" and ("source", "gpus") in k[1] for k in m)
    assert "meter unplugged" in next(s["error"] for s in ex.status() if s["source"] == "wall")



@pytest.mark.skipif(prometheus_binary() is None, reason="needs the prometheus binary (apt-get install prometheus)")
def test_scraped_by_prometheus_and_read_back(exporter):
    ex, port = exporter
    prom = PrometheusServer([{"job_name": "lab", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}], 0.25).start()
    try:
        prom.wait_for_targets(1)
        time.sleep(1.0)
        src = create_source("lab", "prometheus", {"url": prom.url, "series": "labconsole", "selector": '{scope="wall"}', "lag_s": 0.5}, 0.25)
        src.open()
        try:
            assert src.nodes == ["bench7"]
            got = []
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                got += [float(w) for b in src.read(0.5) for w in b.samples["watts"]]
            assert got and all(w == pytest.approx(150.0, abs=0.01) for w in got)
        finally:
            src.close()
    finally:
        prom.stop()


def test_the_command(tmp_path):
    path = write_profile(tmp_path, PROFILE.format(rec=tmp_path / "rec"))
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "export-metrics", "--profile", str(path), "--port", "0", "--node", "n1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:") and "(node n1)" in line
        port = int(line.split(":")[2].split("/")[0])
        time.sleep(0.8)
        assert any(k[0] == "labconsole_power_watts" for k in scrape(port))
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()
