"""A fleet run's figures from recorded data: the system's power is the sum of the nodes',
each node's energy is its share, and `check` fails a node silent longer than allowed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from labconsole.samples.batch import empty_batch
from labconsole.samples.streams import SampleStreamWriter
from mlperf_fakes import write_detail_log

S = 1_000_000_000
T0 = 1_764_000_000_000_000_000


def make_fleet_bundle(tmp_path: Path, watts: dict[str, float], silent: dict[str, tuple[float, float]] | None = None, max_dropout_s=3.0, expected=None) -> Path:
    """Testing window T0+1 s .. T0+21 s; each node sampled every 0.5 s at a constant power;
    `silent`: node -> (from_s, to_s) after T0 with no samples."""
    root = tmp_path / "bundle"
    data = root / "data"
    data.mkdir(parents=True)
    run = {"id": "f1ee7000-0000-4000-8000-000000000001", "exit_status": "completed", "primary_source": "fleet", "scenario": "Offline",
           "start": "2025-11-24T16:00:00.000Z", "sources": [{"name": "fleet", "driver": "fleet", "scope": "system", "sample_interval_s": 0.5}]}
    (data / "run.json").write_text(json.dumps(run))
    extra = {"nodes": expected or sorted(watts), "max_dropout_s": max_dropout_s, "members": []}
    (data / "environment.json").write_text(json.dumps({"sources": [{"name": "fleet", "driver": "fleet", "identity": {"model": "fleet", "extra": extra}}]}))
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 + S, T0 + 21 * S, queries=1000, extra={"result_samples_per_second": 50.0})
    w = SampleStreamWriter(data / "testing" / "samples-fleet.csv", fsync=False)
    for node, p in watts.items():
        t = np.arange(0, 22 * S, S // 2, dtype=np.int64) + T0 + 123_000
        if silent and node in silent:
            a, b = silent[node]
            t = t[(t < T0 + int(a * S)) | (t > T0 + int(b * S))]
        batch = empty_batch(len(t))
        batch["wall_ns"], batch["mono_ns"], batch["watts"] = t, t - T0, p
        w.append(node, batch)
    w.close()
    events = [{"kind": "phase_start", "message": "testing", "phase": "testing", "data": {}, "wall_ns": T0},
              {"kind": "phase_end", "message": "testing done", "phase": "testing", "data": {}, "wall_ns": T0 + 22 * S}]
    (data / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root


def report(path):
    out = run_cli("report", str(path), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def checks(path):
    out = run_cli("check", str(path), "--json")
    return {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def test_system_is_the_sum_of_the_nodes(tmp_path):
    watts = {"node1": 300.0, "node2": 350.0, "node10": 400.0}
    rep = report(make_fleet_bundle(tmp_path, watts))
    assert rep["power"]["avg_watts"] == pytest.approx(1050.0)
    assert rep["energy_j"] == pytest.approx(1050.0 * 20.0)
    assert [n["name"] for n in rep["nodes"]] == ["node1", "node2", "node10"]  # node2 before node10
    for n in rep["nodes"]:
        assert n["avg_watts"] == pytest.approx(watts[n["name"]]) and n["energy_j"] == pytest.approx(watts[n["name"]] * 20.0)
    assert sum(n["share"] for n in rep["nodes"]) == pytest.approx(1.0)
    c = checks(make_fleet_bundle(tmp_path / "again", watts))["node reporting"]
    assert c["status"] == "pass" and "3 node(s)" in c["message"]


def test_a_node_read_by_two_members_is_their_sum(tmp_path):
    rep = report(make_fleet_bundle(tmp_path, {"node1": 300.0, "node2#1": 200.0, "node2#2": 150.0}, expected=["node1", "node2"]))
    assert {n["name"]: n["avg_watts"] for n in rep["nodes"]} == pytest.approx({"node1": 300.0, "node2": 350.0})


def test_a_node_silent_longer_than_allowed_fails_the_check(tmp_path):
    ok = checks(make_fleet_bundle(tmp_path / "short", {"node1": 300.0, "node2": 300.0}, silent={"node2": (5.0, 7.0)}))["node reporting"]
    assert ok["status"] == "pass"  # 2 s < 3 s allowed
    bad = checks(make_fleet_bundle(tmp_path / "long", {"node1": 300.0, "node2": 300.0}, silent={"node2": (5.0, 12.0)}))["node reporting"]
    assert bad["status"] == "fail" and "node2 silent 7.5 s" in bad["message"] and "3 s allowed" in bad["message"]


def test_a_node_never_heard_from_fails(tmp_path):
    bad = checks(make_fleet_bundle(tmp_path, {"node1": 300.0}, expected=["node1", "node2"]))["node reporting"]
    assert bad["status"] == "fail" and "node2 silent 20.0 s" in bad["message"]


def test_not_a_fleet_skips(tmp_path):
    from test_export import make_bundle  # a single-meter bundle

    c = checks(make_bundle(tmp_path))["node reporting"]
    assert c["status"] == "skip"
    assert report(make_bundle(tmp_path / "b"))["nodes"] == []
