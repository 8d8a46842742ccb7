"""The `fleet` source: nodes read in parallel, one channel each, drop-outs flagged and the run
going on (or the source failing, as on_node_failure says), members that fail to open, clock
offsets recorded; and the shipped emu-fleet profile end to end (a real Prometheus scraping
Redfish BMCs, and ipmi_sim), passing `check`, then failing it when a node drops out."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.emulators import redfish as redfish_emulator
from labconsole.emulators.ipmi import ipmi_sim_binary
from labconsole.emulators.prometheus import prometheus_binary
from labconsole.sources.base import SourceError
from labconsole.sources.fleet import FleetSource
from labconsole.sources.registry import create_source


@pytest.fixture
def bmcs():
    h = redfish_emulator.start({"systems": 3, "utilisation": 0.5, "noise_w": 0.0, "update_s": 0.1, "spread": 0.2})
    try:
        yield h.emulator
    finally:
        h.stop()


def fleet_of(bmcs, **extra):
    nodes = [{"name": f"rack1-n{i + 1}", "sources": [{"driver": "redfish", "options": {"url": u, "username": "admin", "password": "labconsole", "timeout_s": 0.5}}]}
             for i, u in enumerate(bmcs.urls)]
    return create_source("fleet", "fleet", {"nodes": nodes, **extra}, 0.1)


def drain(src, seconds):
    got = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for b in src.read(0.2):
            got.setdefault(b.channel, []).extend(b.samples["watts"].tolist())
    return got


def test_nodes_are_channels_and_sum_to_the_system(bmcs):
    src = fleet_of(bmcs)
    assert isinstance(src, FleetSource)
    src.open()
    try:
        assert src.capabilities().channels == ("rack1-n1", "rack1-n2", "rack1-n3")
        got = drain(src, 1.0)
        expected = {f"rack1-n{i + 1}": s.model.expected_watts(0.5) for i, s in enumerate(bmcs.systems)}
        assert {n: sum(w) / len(w) for n, w in got.items()} == pytest.approx(expected, abs=0.01)
        extra = src.identify().extra
        assert extra["nodes"] == ["rack1-n1", "rack1-n2", "rack1-n3"] and extra["max_dropout_s"] == 10.0
        assert all(m["identity"]["serial"].startswith("EMU") for m in extra["members"])
        assert all(m["clock_offset_s"] is not None for m in extra["members"])  # each BMC's offset recorded
    finally:
        src.close()


def test_a_node_that_stops_reporting_is_flagged_and_the_rest_go_on(bmcs):
    src = fleet_of(bmcs, max_dropout_s=1.0)
    src.open()
    try:
        drain(src, 0.5)
        bmcs.systems[1].delay_s = 3.0  # the BMC answers too late: every read times out
        got = drain(src, 2.5)
        status = src.node_status()
        assert status["rack1-n2"]["dropped_out"] and not status["rack1-n1"]["dropped_out"]
        assert len(got["rack1-n1"]) >= 8 and len(got.get("rack1-n2", [])) <= 2
        summary = src.end_phase("testing")
        assert summary["warning"] and "dropped out: rack1-n2" in summary["message"]
        bmcs.systems[1].delay_s = 0.0
        time.sleep(3.5)  # the late replies drain
        drain(src, 1.0)
        st = src.node_status()["rack1-n2"]
        assert not st["dropped_out"] and st["dropouts"][0][1] is not None  # back, the drop-out closed
    finally:
        bmcs.systems[1].delay_s = 0.0
        src.close()


def test_on_node_failure_stop_fails_the_source(bmcs):
    src = fleet_of(bmcs, max_dropout_s=0.6, on_node_failure="stop")
    src.open()
    try:
        drain(src, 0.3)
        bmcs.systems[0].delay_s = 2.0
        with pytest.raises(SourceError, match="rack1-n1 silent for more than 0.6 s"):
            drain(src, 3.0)
    finally:
        bmcs.systems[0].delay_s = 0.0
        src.close()


def test_a_member_that_cannot_open(bmcs):
    nodes = [{"name": "good", "sources": [{"driver": "redfish", "options": {"url": bmcs.urls[0], "username": "admin", "password": "labconsole"}}]},
             {"name": "bad", "sources": [{"driver": "redfish", "options": {"url": bmcs.urls[1], "username": "admin", "password": "nope"}}]}]
    src = create_source("fleet", "fleet", {"nodes": nodes}, 0.1)
    src.open()  # continue: the fleet opens without it, and says so
    try:
        members = {m["node"]: m for m in src.identify().extra["members"]}
        assert "401" in members["bad"]["error"] and members["good"]["error"] is None
    finally:
        src.close()
    with pytest.raises(SourceError, match="bad.*401"):
        create_source("fleet", "fleet", {"nodes": nodes, "on_node_failure": "stop"}, 0.1).open()


def test_options_mistakes():
    with pytest.raises(SourceError, match="needs nodes or prometheus"):
        create_source("fleet", "fleet", {}, 1.0)
    with pytest.raises(ValueError, match="listed twice: a"):
        create_source("fleet", "fleet", {"nodes": [{"name": "a", "sources": [{"driver": "simulated"}]}] * 2}, 1.0)


# --- the shipped profile, end to end -----------------------------------------------------------------------
needs_fleet_tools = pytest.mark.skipif(
    prometheus_binary() is None or ipmi_sim_binary() is None or shutil.which("ipmitool") is None,
    reason="needs prometheus, openipmi and ipmitool (apt-get install prometheus openipmi ipmitool; .ci/run installs them)")


def fleet_profile(tmp_path: Path, drop: str = "") -> Path:
    text = (ROOT / "profiles" / "emu-fleet.yaml").read_text()
    for old, new in (("utilisation: workload", "utilisation: 0.5"), ("sut: matmul", "sut: sleep"),
                     ("    size: 256\n    threads: 0\n", "    latency_ms: 2\n    concurrency: 8\n"), ("idle_s: 3", "idle_s: 1")):
        assert old in text
        text = text.replace(old, new)
    if drop:
        text = text.replace("      utilisation: 0.5\n", f"      utilisation: 0.5\n      drop: {drop}\n")
    p = tmp_path / "emu-fleet.yaml"
    p.write_text(text)
    return p


@needs_fleet_tools
def test_emu_fleet_profile_end_to_end(tmp_path):
    out = run_cli("run", "--profile", str(fleet_profile(tmp_path)), "--duration", "4", "--out", str(tmp_path / "rec"), "--quiet", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    bundle = Path(out.stdout.strip().splitlines()[-1])
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    names = [n["name"] for n in rep["nodes"]]
    assert names == ["node1", "node2", "node3", "node4"]
    # 250 W idle + 250 W x 0.5 per node (spread +-5 % over the three Redfish nodes; node4's sensor counts 4 W)
    for n in rep["nodes"]:
        assert 330 < n["avg_watts"] < 420 and n["energy_j"] == pytest.approx(n["avg_watts"] * rep["power"]["window_s"])
    assert rep["power"]["avg_watts"] == pytest.approx(sum(n["avg_watts"] for n in rep["nodes"]))
    assert rep["energy_j"] == pytest.approx(rep["power"]["avg_watts"] * rep["power"]["window_s"])
    chk = json.loads(run_cli("check", str(bundle), "--json").stdout)
    by = {c["name"]: c for c in chk["checks"]}
    assert chk["passed"] and by["node reporting"]["status"] == "pass"
    env = json.loads((bundle / "data" / "environment.json").read_text())
    members = env["sources"][0]["identity"]["extra"]["members"]
    assert {m["driver"] for m in members} == {"prometheus", "ipmi"} and all("clock_offset_s" in m for m in members)


@needs_fleet_tools
def test_emu_fleet_check_fails_when_a_node_drops_out(tmp_path):
    # node2's BMC goes silent 4 s after the fleet is up (idle or ranging) and stays silent past the
    # testing window: far longer than max_dropout_s (3 s)
    out = run_cli("run", "--profile", str(fleet_profile(tmp_path, "{node: node2, after_s: 4, for_s: 120}")), "--duration", "4",
                  "--out", str(tmp_path / "rec"), "--quiet", timeout=300)
    bundle = Path(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stdout[-3000:]  # the run goes on (on_node_failure: continue)
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 1
    by = {c["name"]: c for c in json.loads(chk.stdout)["checks"]}
    assert by["node reporting"]["status"] == "fail" and "node2 silent" in by["node reporting"]["message"]
    events = (bundle / "data" / "events.jsonl").read_text()
    assert "dropped out: node2" in events  # flagged during the run
