"""The shipped emu-ptd profile: the full procedure through the real `ptd` driver over TCP to the
PTD emulator the console starts, then a passing `labconsole check`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, run_cli
from labconsole.samples.streams import read_sample_stream


def test_emu_ptd_profile_full_procedure(tmp_path):
    # The shipped profile with a load that other processes on a shared machine cannot disturb:
    # a constant utilisation for the emulated meter (ranging vs testing) and the sleep SUT,
    # whose capacity does not depend on free CPU (LoadGen's 'auto' QPS probe stays right).
    text = (ROOT / "profiles" / "emu-ptd.yaml").read_text()
    for old, new in (("utilisation: workload", "utilisation: 0.5"), ("sut: matmul", "sut: sleep"),
                     ("    size: 256\n    threads: 0\n", "    latency_ms: 2\n    concurrency: 8\n")):
        assert old in text
        text = text.replace(old, new)
    profile = tmp_path / "emu-ptd.yaml"
    profile.write_text(text)
    out = run_cli("run", "--profile", str(profile), "--duration", "3", "--out", str(tmp_path / "rec"), "--quiet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    bundle = Path(out.stdout.strip().splitlines()[-1])
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 0, chk.stdout + chk.stderr

    run = json.loads((bundle / "data" / "run.json").read_text())
    rng = run["ranges"]["wall"]
    # MLPerf's raw values went to PTD (SR,V,<max V>; SR,A,<1.1 x max A>); PTD rounded them up.
    assert rng["requested"]["volts"] == rng["max_volts"] and abs(rng["requested"]["amps"] - 1.1 * rng["max_amps"]) < 1e-12
    rb = rng["read_back"]
    assert rb["volts"] == 300.0 and rb["amps"] >= rng["requested"]["amps"] and not rb["auto_v"] and not rb["auto_a"]

    env = json.loads((bundle / "data" / "environment.json").read_text())
    [src] = [s for s in env["sources"] if s["name"] == "wall"]
    assert src["identity"]["model"] == "YokogawaWT310E" and src["identity"]["extra"]["emulator"] is True

    for phase, auto in (("ranging", True), ("testing", False)):
        info = json.loads((bundle / "data" / phase / "phase.json").read_text())
        summary = info["meter_summaries"]["wall"]
        assert summary["mark"].endswith("_" + phase)
        frame = read_sample_stream(bundle / "data" / phase / "samples-wall.csv").frame
        # Every sample PTD counted in the phase is in the phase's stream, and nothing else.
        assert summary["watts"]["samples"] == len(frame) >= 8
        if auto:
            assert summary["uncertainty"]["avg"] == -1.0  # unknown while auto-ranging, as PTD says
        else:
            assert 0 < summary["uncertainty"]["avg"] < 0.01 and summary["uncertainty"]["unknown"] == 0
            assert (frame["status"] == 0).all() and frame["uncertainty_w"].notna().all()

    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert rep["result_validity"] == "VALID" and rep["power"]["samples_in_window"] >= 8
    assert rep["uncertainty"] is not None and rep["uncertainty"]["samples_unknown"] == 0
