"""MLPerf Tiny's energy procedure on a real bench, when one is attached:
`pytest -m hardware --device-address /dev/ttyACM0,/dev/ttyACM1` (the LPM01A, then the IO manager;
the DUT's timestamp GPIO wired to the LPM01A's D7, the DUT powered from its VOUT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.profile import load_profile

REAL = ROOT / "profiles" / "tiny-energy.yaml"


def test_the_real_bench_profile_loads():
    loaded = load_profile(REAL)
    wl = loaded.profile.workload
    assert wl.type == "tiny" and wl.dut.io_manager and wl.windows == 5
    assert loaded.profile.primary_source.options["events"] == "d7_falling"


@pytest.mark.hardware
def test_real_lpm01a_and_dut_run_the_tiny_energy_procedure(request, tmp_path):
    address = request.config.getoption("--device-address")
    if "," not in address:
        pytest.skip("give --device-address LPM01A_PORT,IO_MANAGER_PORT")
    meter, io = address.split(",", 1)
    text = REAL.read_text().replace("/dev/ttyACM0", meter).replace("/dev/ttyACM1", io)
    prof = tmp_path / "tiny.yaml"
    prof.write_text(text)
    r = run_cli("run", "--profile", str(prof), "--out", str(tmp_path / "rec"), "--quiet", timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    bundle = Path(r.stdout.strip().splitlines()[-1])
    rep = json.loads(run_cli("report", "--json", str(bundle)).stdout)
    assert rep["metric"]["unit"] == "uJ/inf" and rep["metric"]["value"] > 0
    assert len(rep["windows"]) == 5 and all(w["runtime_s"] >= 10 for w in rep["windows"])
    assert rep["lost_samples"] == 0
    c = run_cli("check", str(bundle))
    assert c.returncode == 0, c.stdout
