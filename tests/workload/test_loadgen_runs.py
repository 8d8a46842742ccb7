"""Short real LoadGen runs, one per scenario, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


# The simulated meter reads a constant 10 % load here: even the `sleep` SUT's worker uses more or
# less CPU as a loaded machine schedules it (ranging 83.8 W, testing 78.5 W, -6.3 %, seen in a full
# run beside a CPU burner), and the ranging-vs-testing rule must stay a test of our procedure,
# not of the neighbours. Power that follows the SUT's real load is
# test_power_rises_over_idle_while_the_sut_works's.
@pytest.mark.parametrize(
    "scenario,sut,sut_options",
    [
        ("Offline", "sleep", "{latency_ms: 0.5, concurrency: 4}"),
        ("Server", "sleep", "{latency_ms: 0.5, concurrency: 4}"),
        ("SingleStream", "sleep", "{latency_ms: 0.5, concurrency: 1}"),
        ("MultiStream", "sleep", "{latency_ms: 0.2, concurrency: 8}"),
    ],
)
def test_short_run_per_scenario(sim_profile, scenario, sut, sut_options):
    profile = sim_profile(scenario=scenario, duration=2, sut=sut, sut_options=sut_options, utilisation=0.1)
    out = run_cli("run", "--profile", str(profile), "--quiet", timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    bundle = Path(out.stdout.strip().splitlines()[-1])
    assert bundle.is_dir()
    chk = run_cli("check", str(bundle), "--json")
    res = json.loads(chk.stdout)
    assert chk.returncode == 0, json.dumps(res, indent=1)
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert rep["scenario"] == scenario
    assert rep["result_validity"] == "VALID"
    assert rep["power"]["samples_in_window"] > 10
    unit = "W" if scenario in ("Offline", "Server") else "mJ"
    assert rep["metric"]["unit"] == unit
    for name in ("ranging", "testing"):
        assert (bundle / "data" / name / "loadgen" / "mlperf_log_detail.txt").exists()
        assert (bundle / "data" / name / "progress.csv").exists()
    events = [json.loads(l) for l in (bundle / "data" / "events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert {"phase_start", "phase_end", "result"} <= kinds


def test_power_rises_over_idle_while_the_sut_works(sim_profile):
    profile = sim_profile(scenario="Offline", duration=3, idle=1.5)
    out = run_cli("run", "--profile", str(profile), "--quiet", timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    bundle = out.stdout.strip().splitlines()[-1]
    rep = json.loads(run_cli("report", bundle, "--json").stdout)
    idle = rep["idle_baseline"]["avg_watts"]
    loaded = rep["power"]["avg_watts"]
    # idle 60 W + 140 W x utilisation, noise 0.5 W: a matmul on every core shows as tens of
    # watts (about +130 W on a quiet machine). 10 W is 20 noise sigmas, yet leaves room for a
    # CI machine whose neighbours take half the CPU away from the SUT.
    assert loaded > idle + 10, (idle, loaded)


def test_failing_sut_seals_a_failed_bundle(sim_profile, tmp_path):
    mod = tmp_path / "boom_sut.py"
    mod.write_text("def run(indices):\n    raise RuntimeError('kaboom from the SUT')\n")
    # A fixed target QPS: the SUT is first called by LoadGen, not by the capacity probe.
    profile = sim_profile(scenario="Offline", duration=2, sut="python:boom_sut:run", sut_options="{}", workload_extra="target_qps: 100")
    out = run_cli("run", "--profile", str(profile), "--quiet", cwd=tmp_path, timeout=240)
    assert out.returncode == 1
    bundle = Path(out.stdout.strip().splitlines()[-1])
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed"
    assert "exit status 3" in run["reason"]
    assert "kaboom" in (bundle / "data" / "ranging" / "worker.log").read_text()
    assert run_cli("check", str(bundle)).returncode == 1
