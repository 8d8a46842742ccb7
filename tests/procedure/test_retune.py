"""An `auto` load that LoadGen still calls INVALID (a busy machine) is adjusted and measured
again once, and the run says so, instead of recording an INVALID run.

The SUT here is real Python code run by the real LoadGen worker: slow while it is probed (a
neighbour hogs the machine) and ten times faster after (the neighbour went quiet), which is
what makes LoadGen's Offline query end before its minimum duration ("Increase expected QPS").
"""

from __future__ import annotations

import json
import textwrap

from conftest import run_cli, write_profile

from labconsole.workload.retune import invalid_advice, retune

# Each worker process takes a number on its first call: the first (the probe) is slow.
SUT = '''
import fcntl, os, time
_mode = None

def work(indices, state, slow_s, fast_s):
    global _mode
    if _mode is None:
        with open(state, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            n = len(fh.read())
            fh.write("x")
        _mode = slow_s if n == 0 else fast_s
    time.sleep(_mode * len(indices))
'''

PROFILE = """
name: busy
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.05
    options: {{idle_w: 60, dynamic_w: 140, noise_w: 0.5, utilisation: 0.3}}
workload:
  type: loadgen
  sut: "python:busy_sut:work"
  sut_options: {{state: "{state}", slow_s: 0.02, fast_s: 0.002}}
  scenario: Offline
  duration_s: 1
  target_qps: auto
procedure:
  idle_s: 0.3
  ranging: true
"""


def test_retune_follows_loadgens_recommendation():
    offline = retune(["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."], {"target_qps": 100.0}, {"target_qps": 150.0})
    assert offline.settings == {"target_qps": 200.0} and offline.changes == "target_qps 100 -> 200"
    assert retune(["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."], {"target_qps": 100.0}, {"target_qps": 900.0}).settings["target_qps"] == 900.0
    server = retune(["Reduce target QPS to improve latency."], {"target_qps": 100.0}, {"target_qps": 80.0})
    assert server.settings["target_qps"] == 50.0
    stream = retune(["Decrease the expected latency so the loadgen pre-generates more queries."], {"expected_latency_ms": 8.0}, None)
    assert stream.settings["expected_latency_ms"] == 4.0
    assert retune(["The test exited early, before enough queries were issued."], {"target_qps": 100.0}) is None
    assert retune(["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."], {"expected_latency_ms": 1.0}) is None  # not auto


def test_invalid_advice_reads_loadgens_summary(tmp_path):
    (tmp_path / "mlperf_log_summary.txt").write_text(
        "================================================\nMLPerf Results Summary\n================================================\n"
        "SUT name : PySUT\nScenario : Offline\nMode     : PerformanceOnly\nSamples per second: 408.6\nResult is : INVALID\n"
        "  Min duration satisfied : NO\n  Min queries satisfied : Yes\n  Early stopping satisfied: Yes\nRecommendations:\n"
        " * Increase expected QPS so the loadgen pre-generates a larger (coalesced) query.\n\n"
        "================================================\nAdditional Stats\n",
        encoding="utf-8",
    )
    assert invalid_advice(tmp_path) == ("INVALID", ["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."])
    assert invalid_advice(tmp_path / "nothing") == (None, [])


def test_a_busy_machine_during_the_probe_does_not_record_an_invalid_run(tmp_path):
    (tmp_path / "busy_sut.py").write_text(textwrap.dedent(SUT), encoding="utf-8")
    profile = write_profile(tmp_path, PROFILE.format(rec=tmp_path / "rec", state=tmp_path / "state"))
    out = run_cli("run", "--profile", str(profile), cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    bundle = tmp_path / "rec" / out.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    run = json.loads((bundle / "data" / "run.json").read_text())
    retuned = run["workload_retuned"]
    assert retuned["after"] == "ranging" and retuned["advice"].startswith("Increase expected QPS")
    assert run["workload_resolved"]["target_qps"] == retuned["settings"]["target_qps"]
    assert (bundle / "data" / "ranging-invalid" / "loadgen" / "mlperf_log_summary.txt").exists()  # kept, set aside
    assert invalid_advice(bundle / "data" / "ranging" / "loadgen")[0] == "VALID"
    assert invalid_advice(bundle / "data" / "testing" / "loadgen")[0] == "VALID"
    summary = json.loads((bundle / "data" / "summary.json").read_text())
    assert summary["report"]["result_validity"] == "VALID"
    events = [json.loads(line) for line in (bundle / "data" / "events.jsonl").read_text().splitlines()]
    said = [e for e in events if "retune" in (e.get("data") or e)]
    assert said and "running ranging again, once" in said[0]["message"], said
    assert "adjusted target_qps" in out.stdout  # and the operator was told
