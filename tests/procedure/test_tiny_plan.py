"""The MLPerf Tiny energy procedure end to end against the two emulators wired together:
`run` -> bundle with data/tiny/ in the MLCommons runner's layout -> `report`, `check`, `export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.mlperf.tiny import analysis, folders

EMU_TINY = ROOT / "profiles" / "emu-tiny.yaml"


def _run(profile: Path, out: Path):
    r = run_cli("run", "--profile", str(profile), "--out", str(out), "--quiet", timeout=240)
    bundle = Path(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    return r, bundle


@pytest.fixture(scope="module")
def emu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    r, bundle = _run(EMU_TINY, out)
    assert r.returncode == 0, r.stdout + r.stderr
    return bundle


def test_report_gives_the_median_energy_per_inference_and_five_windows(emu_run):
    r = run_cli("report", "--json", str(emu_run))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    m = rep["metric"]
    assert (m["name"], m["unit"]) == ("energy per inference", "uJ/inf")
    # the emulated DUT: 30 mW for 40 ms per inference = 1200 µJ (noise 0.05 mW, windows cut at sample edges)
    assert m["value"] == pytest.approx(1200.0, rel=0.005)
    assert len(rep["windows"]) == 5
    ns = {w["inferences"] for w in rep["windows"]}
    assert len(ns) == 1 and ns.pop() * 0.040 >= 10.0  # auto N: each window >= 10 s
    for w in rep["windows"]:
        assert w["runtime_s"] >= 10.0 and w["energy_uj"] == pytest.approx(w["uj_per_inf"] * w["inferences"])
    assert rep["lost_samples"] == 0 and rep["voltage_v"] == 3.0
    assert rep["dut"]["model"] == "kws01" and rep["dut"]["name"] == "labconsole emulated DUT"
    # the summary the engine sealed says the same
    summary = json.loads((emu_run / "data" / "summary.json").read_text())
    assert summary["report"]["metric"]["value"] == m["value"]


def test_check_passes_and_the_session_is_the_mlcommons_runner_layout(emu_run, tmp_path):
    r = run_cli("check", str(emu_run))
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout
    trials = json.loads((emu_run / "data" / "tiny" / "results.json").read_text())
    assert len(trials) == 5
    for t in trials:
        assert set(t) >= {"file", "infer", "power"} and t["infer"]["warmups"] == 1
        assert len(t["power"]["timestamps"]) >= 2 and t["power"]["voltage"] == 3.0
    counters = [int(c) for t in trials for c, _ in t["power"]["timestamps"]]
    assert counters == list(range(counters[0], counters[0] + len(counters)))  # consecutive, as the runner requires
    assert counters[0] == 0 and len(trials[0]["power"]["timestamps"]) > 2  # the boot-time edge and the probe are in trial 0
    assert "Median energy cost is" in (emu_run / "data" / "tiny" / "results.txt").read_text()
    out = tmp_path / "exported"
    r = run_cli("export", str(emu_run), "--mlperf", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "results.json", "results.txt"]
    ours = folders.read_tiny(emu_run)
    theirs = folders.read_tiny(out)
    assert theirs.source == "mlcommons" and theirs.metric_value == ours.metric_value
    assert analysis.report(theirs)["published"]["matches"]
    r = run_cli("export", str(emu_run), "--mlperf", str(out))
    assert r.returncode == 1 and "not empty" in r.stderr


def _profile(tmp_path: Path, replace: dict[str, str]) -> Path:
    text = EMU_TINY.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_a_given_n_with_short_windows_warns_and_is_kept(tmp_path):
    prof = _profile(tmp_path, {"inferences: auto ": "inferences: 50 ", "name: emu-tiny": "name: emu-tiny-short"})
    r, bundle = _run(prof, tmp_path / "rec")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = analysis.report(folders.read_tiny(bundle))
    assert [w["inferences"] for w in rep["windows"]] == [50] * 5
    assert all(w["runtime_s"] == pytest.approx(2.0, abs=0.02) for w in rep["windows"])
    assert rep["metric"]["value"] == pytest.approx(1200.0, rel=0.01)
    r = run_cli("check", "--json", str(bundle))
    got = {c["name"]: c["status"] for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 0 and got["tiny: window length"] == "warn"
    assert "Not valid for submission.  All inference times must be at least 10 seconds." in (bundle / "data" / "tiny" / "results.txt").read_text()


def test_a_dut_nobody_powers_fails_the_run_clearly(tmp_path):
    # The DUT on a bench of its own: the LPM01A never switches its supply on, so it never boots.
    prof = _profile(tmp_path, {"      boot_ms: 200": "      boot_ms: 200\n      bench: elsewhere", "  dut:\n    io_manager: true": "  dut:\n    io_manager: true\n    timeout_s: 1"})
    r, bundle = _run(prof, tmp_path / "rec")
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text
    assert "run failed: DUT: `name`: no m-ready from the DUT in 1 s" in text


def test_an_input_too_big_for_the_dut_fails_the_run_and_its_check(tmp_path):
    # An input larger than the DUT's buffer (96x96x3 bytes) is refused before it is sent; the run
    # fails saying so, the bundle is sealed, and `check` fails it.
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(30000))
    prof = _profile(tmp_path, {"  input_bytes: 490": f"  input_bytes: 490\n  inputs: [{big}]", "inferences: auto ": "inferences: 20 "})
    r, bundle = _run(prof, tmp_path / "rec")
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text
    assert "run failed: workload.inputs: " in text and "30000 bytes (1..27648)" in text
    c = run_cli("check", "--json", str(bundle))
    got = {x["name"]: x["status"] for x in json.loads(c.stdout)["checks"]}
    assert c.returncode == 1 and got["tiny: run completed"] == "fail" and got["tiny: 5 windows"] == "fail"


def test_check_fails_a_tiny_bundle_whose_samples_were_edited(emu_run, tmp_path):
    import shutil

    copy = tmp_path / emu_run.name
    shutil.copytree(emu_run, copy)
    trials = json.loads((copy / "data" / "tiny" / "results.json").read_text())
    trials[2]["power"]["samples"][5000] *= 2
    (copy / "data" / "tiny" / "results.json").write_text(json.dumps(trials))
    r = run_cli("check", "--json", str(copy))
    got = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 1 and got["manifest"]["status"] == "fail" and "results.json" in got["manifest"]["message"]


def test_an_abort_during_an_infer_stops_the_run_at_once(tmp_path):
    import threading
    import time

    from labconsole.events import EventBus
    from labconsole.procedure.engine import RunEngine, RunOptions
    from labconsole.procedure.plans.tiny import TinyPlan
    from labconsole.profile import load_profile

    # real time (speed 1) and 250 x 40 ms: one infer takes 10 s
    prof = _profile(tmp_path, {"      speed: 25 ": "      speed: 1 ", "inferences: auto ": "inferences: 250 ", "name: emu-tiny": "name: emu-tiny-abort"})
    bus = EventBus()
    q = bus.subscribe()
    proc = RunEngine(load_profile(prof), TinyPlan(), RunOptions(out_dir=tmp_path / "rec"), bus)
    out: list = []
    t = threading.Thread(target=lambda: out.append(proc.run()))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            e = q.get(timeout=60)
            if e.kind == "phase_start":
                break
        time.sleep(4.0)  # the input is loaded (~1.5 s at 9600 baud), the infer under way
        asked = time.monotonic()
        proc.abort("stopped by the test")
        t.join(timeout=30)
        took = time.monotonic() - asked
    finally:
        if t.is_alive():
            proc.abort("cleanup")
            t.join(timeout=30)
    assert out and out[0].exit_status == "aborted" and out[0].reason == "stopped by the test"
    # the infer under way was not waited for: no trial was completed (one would be, had the wait
    # for its m-ready gone on to the end), and the sealed bundle says so
    assert json.loads((out[0].bundle / "data" / "tiny" / "results.json").read_text()) == []
    assert took < 30


def test_recover_and_the_catalogue_keep_a_tiny_bundle_tiny(emu_run, tmp_path):
    import shutil

    from labconsole.mlperf.summary import headline

    copy = tmp_path / emu_run.name
    shutil.copytree(emu_run, copy)
    head = headline(copy)
    assert head["metric"].endswith(" uJ/inf") and head["checks"] == "pass" and head["status"] == "completed"
    for p in copy.glob("*.txt"):  # the seal, as if the console had died before writing it
        p.unlink()
    r = run_cli("recover", str(copy))
    assert r.returncode == 0, r.stderr
    summary = json.loads((copy / "data" / "summary.json").read_text())
    assert summary["report"]["kind"] == "tiny" and summary["report"]["metric"]["unit"] == "uJ/inf"
    r = run_cli("check", "--json", str(copy))
    got = {c["name"]: c["status"] for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 0 and got["tiny: run completed"] == "warn" and got["manifest"] == "pass"
    assert headline(copy)["status"] == "recovered"


def test_run_refuses_loadgen_options_and_reruns_a_tiny_bundle(emu_run, tmp_path):
    r = run_cli("run", "--profile", str(EMU_TINY), "--duration", "5")
    assert r.returncode == 2 and "--scenario, --duration" in r.stderr
    r = run_cli("run", "--from", str(emu_run), "--out", str(tmp_path), "--quiet", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    again = Path(r.stdout.strip().splitlines()[-1])
    rep = analysis.report(folders.read_tiny(again))
    assert len(rep["windows"]) == 5 and rep["metric"]["value"] == pytest.approx(1200.0, rel=0.005)


def test_dut_errors_are_the_duts_not_the_io_managers(emu_run, tmp_path):
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(emu_run / "data" / "tiny", copy)
    log = copy / "log.txt"
    log.write_text(log.read_text() + "0101.000000.000 -> setbaud 9600\n0101.000000.000 <- e-[Unknown command: setbaud]\n")
    assert folders.read_tiny(copy).dut_errors == []  # the IO manager's, not the DUT's
    log.write_text(log.read_text() + "0101.000000.000 <- [dut]: e-[Invalid hex digit 'zz']\n")
    assert folders.read_tiny(copy).dut_errors == ["0101.000000.000 <- [dut]: e-[Invalid hex digit 'zz']"]


def test_the_results_screen_reads_a_tiny_bundle_with_the_tiny_figures(emu_run):
    from labconsole.session.results import load_results

    data = load_results(emu_run)
    assert data["report"]["kind"] == "tiny" and data["report"]["metric"]["unit"] == "uJ/inf"
    names = [c.name for c in data["checks"]]
    assert "tiny: 5 windows" in names and "manifest" in names and "clock offset" not in names
    assert data["power"] and data["power"][0][0] == "lpm01a"
