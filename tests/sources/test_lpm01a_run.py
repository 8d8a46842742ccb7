"""LPM01A profiles: the shipped ones load, mistakes name their line, and a short run passes `check`."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, run_cli, write_profile

from labconsole.profile import ProfileError, load_profile


@pytest.mark.parametrize("name", ["emu-lpm01a.yaml", "lpm01a-tiny.yaml"])
def test_shipped_profiles_load(name):
    loaded = load_profile(ROOT / "profiles" / name)
    assert loaded.profile.sources[0].driver == "lpm01a"


BAD = """
name: bad
sources:
  - name: dut
    driver: lpm01a
    primary: true
    options:
      port: /dev/ttyACM0
      frequency_hz: {freq}
      format: {fmt}
      acquisition_mode: {mode}
workload:
  type: loadgen
  sut: "null"
  duration_s: 1
"""


@pytest.mark.parametrize(
    "freq, fmt, mode, words",
    [
        (3000, "ascii_dec", "dyn", "not one of the PowerShield's frequencies"),
        (10000, "ascii_dec", "dyn", "use format: bin_hexa"),
        (20000, "bin_hexa", "dyn", "output energy integrates for at least 100 us"),
        (1000, "ascii_dec", "stat", "cannot stream"),
    ],
)
def test_impossible_settings_are_profile_errors_with_their_line(tmp_path, freq, fmt, mode, words):
    path = write_profile(tmp_path, BAD.format(freq=freq, fmt=fmt, mode=mode))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert words in text and f"{path}:" in text


@pytest.mark.slow
def test_a_short_run_on_the_emulated_lpm01a_passes_check(tmp_path):
    text = (ROOT / "profiles" / "emu-lpm01a.yaml").read_text()
    text = text.replace("recordings: recordings", f"recordings: {tmp_path / 'rec'}")
    text = text.replace("  idle_s: 3", "  idle_s: 0.5").replace("    size: 256", "    size: 128")
    assert "utilisation: active" in text  # busy while the benchmark runs, whoever else shares the host
    profile = tmp_path / "emu-lpm01a.yaml"
    profile.write_text(text)
    out = run_cli("run", "--profile", str(profile), "--duration", "2", "--quiet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    bundles = list((tmp_path / "rec").iterdir())
    assert len(bundles) == 1
    check = run_cli("check", str(bundles[0]))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[FAIL]" not in check.stdout
    run = json.loads((bundles[0] / "data" / "run.json").read_text())
    counts = run["acquisition"]["sources"]["dut"]
    assert counts["read"] > 2000 and counts["invalid"] == 0 and counts["errors"] == 0
    diag = run["acquisition"]["diagnostics"]["dut"]["counters"]
    assert diag["dropped"] == 0 and diag["protocol_errors"] == 0 and diag["timestamps"] >= 2
    report = json.loads(run_cli("report", str(bundles[0]), "--json").stdout)
    assert report["idle_baseline"]["avg_watts"] == pytest.approx(0.005, abs=0.0005)  # 5 mW idle
    assert report["power"]["avg_watts"] == pytest.approx(0.025, abs=0.002)  # 25 mW while it runs
    env = json.loads((bundles[0] / "data" / "environment.json").read_text())
    blob = json.dumps(env)
    assert "EMULATOR-LABCONSOLE-0001" in blob and "X-NUCLEO-LPM01A" in blob
