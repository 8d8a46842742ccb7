"""MLPerf Training's procedure end to end: a trainer run N times, every node's power recorded,
the official layout written, and the official tools (mlperf-logging's package checker and
result summarizer) accepting labconsole's export and agreeing with its figure."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, run_cli, write_profile

DELL = FIXTURES / "training-power" / "v4.1__Dell__8xXE9680x8H100-SXM-80GB-POWER__llama2_70b_lora" / "Dell"
DELL_LOGS = DELL / "results" / "8xXE9680x8H100-SXM-80GB-POWER" / "llama2_70b_lora"
SYSTEM = "sim-2node"


def _bundle_from(stdout: str) -> Path:
    return Path([ln for ln in stdout.splitlines() if ln.strip()][-1])


def _profile(tmp_path: Path, command: str, runs: int, benchmark: str, extra: str = "") -> Path:
    return write_profile(tmp_path, f"""
        name: train-test
        recordings: {tmp_path / 'recordings'}
        sources:
          - name: node-a
            driver: simulated
            sample_interval_s: 0.05
            options: {{idle_w: 600, dynamic_w: 2400, noise_w: 2, utilisation: workload}}
          - name: node-b
            driver: simulated
            sample_interval_s: 0.05
            options: {{idle_w: 610, dynamic_w: 2400, noise_w: 2, utilisation: workload}}
        workload:
          type: training
          command: {command}
          benchmark: {benchmark}
          system: {SYSTEM}
          runs: {runs}
          pad_s: 0.3
          conversion_eff: 0.96
          switches:
            - name: leaf
              estimate_w: 350
        {extra}
        """)


def test_exported_session_passes_the_package_checker_and_the_summarizer_agrees(tmp_path):
    pytest.importorskip("mlperf_logging")
    # The stand-in re-enacts Dell's ten published llama2_70b_lora logs (compliant, converged,
    # distinct seeds) 400 times faster, so the package checker's compliance, seed and RCP
    # checks see a real benchmark's logs on today's clock.
    cmd = json.dumps(["{python}", "-m", "labconsole.workload.standin_trainer", "--replay",
                      str(DELL_LOGS / "result_{run}.txt"), "--speed", "400"])
    profile = _profile(tmp_path, cmd, runs=10, benchmark="llama2_70b_lora")
    out = run_cli("run", "--profile", str(profile), "--quiet", timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    bundle = _bundle_from(out.stdout)
    ours = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert ours["metric"]["value"] > 0 and len(ours["runs"]) == 10
    assert all(r["dropped"] is None for r in ours["runs"])

    system_json = tmp_path / "system.json"
    shutil.copyfile(DELL / "systems" / "8xXE9680x8H100-SXM-80GB-POWER.json", system_json)
    export = tmp_path / "export"
    out = run_cli("export", str(bundle), "--mlperf", str(export), "--system-json", str(system_json))
    assert out.returncode == 0, out.stderr
    org = export / "labconsole"
    bench = org / "results" / SYSTEM / "llama2_70b_lora"
    # byte for byte the bundle's logs
    src = bundle / "data" / "training" / "results" / SYSTEM / "llama2_70b_lora"
    for f in src.rglob("*.txt"):
        assert (bench / f.relative_to(src)).read_bytes() == f.read_bytes()

    checker = subprocess.run([sys.executable, "-m", "mlperf_logging.package_checker", str(org), "training", "4.1.0",
                              "--log_output", str(tmp_path / "pc.log")], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    log = checker.stdout + checker.stderr
    assert "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS" in log, log[-4000:]

    summary = tmp_path / "sum"
    subprocess.run([sys.executable, "-m", "mlperf_logging.result_summarizer", str(org) + "/", "training", "4.1.0",
                    "--csv", str(summary) + ".csv"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    with open(str(summary) + "_detailed.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    theirs = float(row["llama2_70b_lora:Energy"])
    # the package checker may have written scaling.json (RCP normalisation): report the folder as it is now
    again = json.loads(run_cli("report", str(bench), "--json").stdout)
    assert again["metric"]["value"] == pytest.approx(theirs, rel=1e-9)
    assert round(again["metric"]["value"]) == round(theirs)  # to the joule
    assert again["metric"]["value"] == pytest.approx(ours["metric"]["value"] * again["scaling_factor"], rel=1e-12)


def test_shipped_emulated_training_profile_runs_end_to_end(tmp_path):
    profile = ROOT / "profiles" / "emu-training.yaml"
    out = run_cli("run", "--profile", str(profile), "--out", str(tmp_path / "rec"), "--quiet", timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    bundle = _bundle_from(out.stdout)
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert rep["metric"]["unit"] == "J" and rep["metric"]["value"] > 0
    assert len(rep["runs"]) == 3 and all(r["energy_j"] > 0 and r["ttt_s"] > 5 for r in rep["runs"])
    assert [len(r["nodes"]) for r in rep["runs"]] == [4, 4, 4]
    # each node's energy is its mean power over the window x time to train; idle is 600 W (+-10 %)
    for r in rep["runs"]:
        for n in r["nodes"]:
            assert 530 < n["avg_watts"] < 3100 and n["readings"] >= 60
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 0, chk.stdout
    run_json = json.loads((bundle / "data" / "run.json").read_text())
    # the fleet source's nodes are the Training nodes, each its own node_<i> file
    assert run_json["training"]["nodes"] == {f"node_{i}": f"cluster/node{i + 1}" for i in range(4)}
    hosts = {json.loads(ln[len(":::MLLOG "):])["metadata"]["host"]
             for ln in next((bundle / "data" / "training").rglob("node_2.txt")).read_text().splitlines() if '"power_reading"' in ln}
    assert hosts == {"node3"}
    # the Results screen's analysis is the same: the training figure and checks, with the seal
    from labconsole.mlperf.summary import evaluate

    _, report, checks = evaluate(bundle)
    assert report["metric"]["value"] == rep["metric"]["value"] and checks[0].name == "manifest"
    # a bundle changed after sealing fails its check, and export refuses it
    node = next((bundle / "data" / "training").rglob("node_0.txt"))
    node.write_text(node.read_text() + node.read_text().splitlines(keepends=True)[2])  # one reading twice
    chk = run_cli("check", str(bundle))
    assert chk.returncode == 1 and "[FAIL] manifest" in chk.stdout
    exp = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "out"))
    assert exp.returncode == 1 and "does not verify" in exp.stderr


def test_a_run_that_does_not_converge_is_dropped_not_fatal(tmp_path):
    # run 1 exits non-zero without run_stop; the session goes on and olympic scoring drops it
    script = tmp_path / "trainer.py"
    script.write_text(
        "import sys, os\n"
        "from labconsole.workload import standin_trainer as t\n"
        "if os.environ['LABCONSOLE_RUN_INDEX'] == '1':\n"
        "    t._emit('run_start', None, event_type='INTERVAL_START'); sys.exit(3)\n"
        "t.synthetic(0.6, 1)\n")
    profile = _profile(tmp_path, json.dumps(["{python}", str(script)]), runs=3, benchmark="stand_in")
    out = run_cli("run", "--profile", str(profile), timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "run 2 will not count" in out.stdout
    rep = json.loads(run_cli("report", str(_bundle_from(out.stdout)), "--json").stdout)
    dropped = [r["name"] for r in rep["runs"] if r["dropped"]]
    assert dropped == ["result_1"] and rep["metric"]["value"] is not None


def test_a_trainer_that_cannot_start_fails_the_run_with_its_reason(tmp_path):
    profile = _profile(tmp_path, json.dumps([str(tmp_path / "no-such-trainer")]), runs=2, benchmark="stand_in")
    out = run_cli("run", "--profile", str(profile), timeout=120)
    assert out.returncode == 1 and "cannot start" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("body,field", [
    ("switches: [{name: s, source: nope}]", "no source named 'nope'"),
    ("switches: [{name: s, source: node-a, estimate_w: 3}]", "either source"),
    ("runs: 0", "runs"),
    ("nodes: [ghost]", "no source named 'ghost'"),
])
def test_profile_mistakes_are_refused_with_their_line(tmp_path, body, field):
    text = _profile(tmp_path, '["true"]', runs=1, benchmark="stand_in").read_text()
    text = text.replace("  runs: 1\n", "  runs: 1\n").replace("  switches:\n    - name: leaf\n      estimate_w: 350\n", "")
    text = text.replace("  runs: 1\n", "" if body.startswith("runs") else "  runs: 1\n")
    text = text.replace("  pad_s: 0.3\n", f"  pad_s: 0.3\n  {body}\n")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    out = run_cli("run", "--profile", str(p))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "bad.yaml:" in out.stderr and field in out.stderr
