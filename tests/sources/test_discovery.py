"""`labconsole discover`: every driver asked, none allowed to crash or hang it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import discovery_drivers as dd
from conftest import HELPERS, ROOT, run_cli, write_profile
from labconsole.sources import discovery, registry
from labconsole.wizard import discover_command
from labconsole.sources.discovery import discover_all, discover_everything, hints_from_profile


@pytest.fixture
def test_drivers(monkeypatch):
    drivers = {
        "good": "discovery_drivers:Good",
        "crashes": "discovery_drivers:Crashes",
        "needs": "discovery_drivers:NeedsPackage",
        "hangs": "discovery_drivers:Hangs",
        "junk": "discovery_drivers:Junk",
        "absent": "discovery_drivers:Absent",
        "gone": "labconsole_no_such_module:Driver",
    }
    monkeypatch.setattr(registry, "DRIVERS", drivers)
    dd.release.clear()
    dd.seen_hints.clear()
    yield drivers
    dd.release.set()


def test_nvml_and_rapl_are_registered():
    assert registry.DRIVERS["nvml"] == "labconsole.sources.nvml:NvmlSource"
    assert registry.DRIVERS["rapl"] == "labconsole.sources.rapl:RaplSource"
    assert registry.get_driver("nvml").driver == "nvml" and registry.get_driver("rapl").driver == "rapl"


def test_a_failing_driver_is_an_entry_never_a_crash(test_drivers, monkeypatch):
    res = discover_everything({"ptd": ["10.0.0.5:8888"]}, time_limit_s=1.5)
    by = {d.driver: d for d in res.found}
    assert by["good"].status == "available" and by["good"].address == "COM7" and by["good"].driver == "good"
    assert by["crashes"].status == "error" and by["crashes"].detail == "RuntimeError: the bus fell over"
    assert by["needs"].status == "error" and "pip install labconsole_no_such_package" in by["needs"].detail
    assert by["gone"].status == "error" and "labconsole_no_such_module" in by["gone"].detail
    assert by["hangs"].status == "error" and "no answer within 1.5 s" in by["hangs"].detail
    assert by["junk"].status == "error" and "not Discovered" in by["junk"].detail
    assert "absent" not in by and res.notes == {"absent": "no such bus on this host"}
    assert dd.seen_hints[0]["ptd"] == ["10.0.0.5:8888"] and dd.seen_hints[0]["timeout_s"] == discovery.IO_TIMEOUT_S
    monkeypatch.setattr(discovery, "DRIVER_TIME_LIMIT_S", 0.5)
    assert [(d.driver, d.status) for d in discover_all({})] == [  # the same, as a plain list
        ("crashes", "error"), ("gone", "error"), ("good", "available"), ("hangs", "error"), ("junk", "error"), ("needs", "error")]


def test_human_output_has_identity_status_and_a_snippet(test_drivers):
    res = discover_everything({}, time_limit_s=0.5)
    text = discover_command.format_human(res)
    assert "[available] good: Meter 9000 s/n 42\n    address: COM7\n    a meter\n    in a profile, under `sources:`\n      - name: m\n        driver: good\n" in text
    assert "Drivers that failed to look:\n  crashes: RuntimeError: the bus fell over" in text
    assert "Not found:\n  absent: no such bus on this host" in text
    assert "Nothing attached" not in text


def test_nothing_attached_says_so_and_suggests_the_simulated_bench():
    res = discovery.DiscoveryResult(notes={"nvml": "no NVIDIA driver"})
    text = discover_command.format_human(res)
    assert "Nothing attached was found." in text
    assert "`labconsole run` measures the built-in simulated bench" in text and "labconsole emulate" in text


def test_hints_from_a_profile(tmp_path):
    profile = SimpleNamespace(sources=[
        SimpleNamespace(name="ptd1", driver="ptd", options={"host": "192.168.1.20", "port": 8888}),
        SimpleNamespace(name="ptd2", driver="ptd", options={"address": "[::1]:8889"}),
        SimpleNamespace(name="wt", driver="yokogawa", options={"resource": "TCPIP::127.0.0.1::5025::SOCKET", "visa_library": "sim/wt310.yaml@sim"}),
        SimpleNamespace(name="usb", driver="yokogawa", options={"resource": "USB0::0x0B21::0x0025::C2XXXXXXX::INSTR"}),
        SimpleNamespace(name="lpm", driver="lpm01a", options={"port": "/dev/ttyACM0"}),
        SimpleNamespace(name="cpu", driver="rapl", options={"root": "/tmp/pc"}),
    ])
    hints = hints_from_profile(profile, base_dir=tmp_path)
    assert hints["ptd"] == ["192.168.1.20:8888", "[::1]:8889"]
    assert hints["visa_resources"] == ["TCPIP::127.0.0.1::5025::SOCKET", "USB0::0x0B21::0x0025::C2XXXXXXX::INSTR"]
    assert hints["pyvisa_sim"] == [str(tmp_path / "sim" / "wt310.yaml")]
    assert hints["serial_ports"] == ["/dev/ttyACM0"]
    assert hints["rapl_root"] == "/tmp/pc"
    assert [s["name"] for s in hints["sources"]] == ["ptd1", "ptd2", "wt", "usb", "lpm", "cpu"]


def test_main_merges_ptd_addresses_from_the_command_line_and_the_profile(test_drivers, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "DRIVERS", {"good": "discovery_drivers:Good", "simulated": "labconsole.sources.simulated:SimulatedSource"})
    prof = write_profile(tmp_path, """
        name: p
        sources:
          - name: wall
            driver: simulated
            options: {serial: "COM3"}
    """)
    rc = discover_command.main(argparse.Namespace(json=True, ptd=["127.0.0.1:8888"], profile=str(prof)))
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [(d["driver"], d["address"], d["model"], d["serial"], d["status"]) for d in out] == [("good", "COM7", "Meter 9000", "42", "available")]
    assert set(out[0]) >= {"driver", "address", "model", "serial", "status", "detail", "profile_snippet"}
    assert dd.seen_hints[0]["ptd"] == ["127.0.0.1:8888"]
    assert dd.seen_hints[0]["serial_ports"] == ["COM3"]


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    assert discover_command.main(argparse.Namespace(json=False, ptd=["nonsense"], profile=None)) == 2
    assert "--ptd: 'nonsense' is not HOST:PORT" in capsys.readouterr().err
    bad = write_profile(tmp_path, "name: p\nsources: []\n")
    assert discover_command.main(argparse.Namespace(json=False, ptd=[], profile=str(bad))) == 2
    assert "profile.yaml:2: sources" in capsys.readouterr().err


def test_the_command_on_this_host_with_a_fake_powercap(tmp_path):
    from test_rapl import server

    fake = server(tmp_path)
    prof = write_profile(tmp_path, f"""
        name: cpu-bench
        sources:
          - name: cpu
            driver: rapl
            options: {{root: "{fake.root}"}}
    """)
    out = run_cli("discover", "--json", "--profile", str(prof), timeout=120)
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)
    rapl = [e for e in entries if e["driver"] == "rapl"]
    assert len(rapl) == 7 and {e["status"] for e in rapl} == {"available"}
    assert all(set(e) >= {"driver", "address", "model", "serial", "status", "detail", "profile_snippet"} for e in entries)
    human = run_cli("discover", "--profile", str(prof), timeout=120)
    assert human.returncode == 0 and "Traceback" not in human.stderr
    assert "[available] rapl: RAPL package-0" in human.stdout
    assert f"        options:\n          domains:\n          - package-0\n          root: {fake.root}\n" in human.stdout
    assert f"    address: {fake.root}/intel-rapl:0\n" in human.stdout


def test_the_command_on_this_host_as_it_is():
    out = run_cli("discover", timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    js = run_cli("discover", "--json", timeout=120)
    entries = json.loads(js.stdout)
    if not [e for e in entries if e["status"] != "error"]:
        assert "Nothing attached was found." in out.stdout
    if not os.path.exists("/sys/class/powercap"):
        assert "rapl: RAPL: /sys/class/powercap does not exist" in out.stdout


def test_a_full_run_through_the_nvml_driver_on_fake_gpus(tmp_path):
    """`labconsole run` end to end with the nvml source on fake GPUs (real clock, real LoadGen)."""
    prof = write_profile(tmp_path, f"""
        name: fake-gpus
        recordings: {tmp_path / "rec"}
        sources:
          - name: gpus
            driver: nvml
            scope: gpu
            sample_interval_s: 0.1
            primary: true
            options: {{inference_s: 0.3}}
        workload:
          type: loadgen
          sut: sleep
          scenario: Offline
          duration_s: 2
        procedure:
          idle_s: 0.5
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(HELPERS / "run_with_fake_gpus.py"), "run", "--profile", str(prof), "--quiet"], cwd=str(tmp_path), capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    bundle = run.stdout.strip().splitlines()[-1]
    assert run_cli("check", bundle).returncode == 0
    rep = json.loads(run_cli("report", bundle, "--json").stdout)
    src = rep["sources"]["gpus"]
    assert src["channels"]["gpu0"]["avg_watts"] == pytest.approx(320.0, rel=0.03)
    assert src["channels"]["gpu1"]["avg_watts"] == pytest.approx(250.0, rel=0.03)
    assert rep["energy"]["kind"] == "counter" and rep["energy"]["avg_watts"] == pytest.approx(570.0, rel=0.02)
    env_json = json.loads((__import__("pathlib").Path(bundle) / "data" / "environment.json").read_text())
    gpus = env_json["sources"][0]["identity"]["extra"]["gpus"]
    assert [g["power_kind"] for g in gpus] == ["counter", "counter"]
    caps = env_json["sources"][0]["capabilities"]
    assert caps["power_kind"] == "counter" and caps["measured_update_period_s"] == pytest.approx(0.1, abs=0.02)


def test_loading_the_drivers_does_not_load_nvml():
    """Profiles name `nvml` without needing the package: it is imported when a GPU is opened."""
    code = (
        "import sys\n"
        "import labconsole.sources.nvml, labconsole.sources.rapl, labconsole.sources.discovery\n"
        "from labconsole.profile import parse_profile_text\n"
        "parse_profile_text(b'name: g\\nsources:\\n  - {name: g, driver: nvml, options: {gpus: [0]}}\\n')\n"
        "sys.exit(1 if 'pynvml' in sys.modules else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
