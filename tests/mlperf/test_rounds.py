"""Published results of older rounds (v1.0-v3.0): the metric as the submission checker files it, to the last bit.

The folders under tests/fixtures/mlperf-results/rounds/ are copied byte for byte (see the README
there, which gives each folder's source, its filed and run scenario and the checker's figure).
Each keeps the results repository's `<scenario folder>/performance/` layout, so the scenario it
is filed under is the folder above performance/ (`offline` in lower case for the v1.0 one).

What the submission checker does (mlcommons/inference tools/submission/submission_checker:
checks/power_check.py get_power_metric_check, checks/performance_check.py's inferred results,
and the pre-v2.0 branch of submission_checker_old.py get_power_metric):
  - the scenario is `scenario_fixed`, the folder's name (compared lowercased), not LoadGen's;
  - Offline/Server: W, samples/J = performance figure / W; for an Offline result inferred
    from a SingleStream run the figure is result_qps_without_loadgen_overhead;
  - SingleStream/MultiStream: avg W x window s x 1000 / queries mJ, x 8 for a MultiStream
    result inferred from a SingleStream run; samples/J = samples_per_query x 1000 / mJ;
  - queries = result_query_count; a log from before LoadGen v2.0 has none, and the checker
    then used result_qps_with_loadgen_overhead x window (an estimate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole.bundle.reader import open_run
from labconsole.instruments.ptd import format_power_time
from labconsole.mlperf import checks
from labconsole.mlperf.checks import official
from labconsole.mlperf.export import export_mlperf
from powerdev_fakes import make_session, ptd_time
from test_export import make_bundle

ROUNDS = FIXTURES / "mlperf-results" / "rounds"
V10 = ROUNDS / "v1.0__Krai__rpi4coral-fan.on-tflite-v2.4.1-ruy__resnet50__offline"
V11 = ROUNDS / "v1.1__Inspur__NE5260M5_A100-PCIex2_TRT_MaxQ__3d-unet-99.9__SingleStream"
V21 = ROUNDS / "v2.1__Dell__XR12_A2x1_TRT_MaxQ__resnet50__MultiStream"
V30 = ROUNDS / "v3.0__SiMa__davinci_dualm2__resnet50__SingleStream"

# folder: (filed, run, the submission checker's metric (value, unit)) -- the README's table
PUBLISHED = {
    V10: ("Offline", "SingleStream", 6.6994563426688645, "W"),
    V11: ("SingleStream", "SingleStream", 18442.999187743335, "mJ"),
    V21: ("MultiStream", "MultiStream", 894.4282241973461, "mJ"),
    V30: ("SingleStream", "SingleStream", 15.285569636160059, "mJ"),
}
IDS = ["v1.0-krai-offline", "v1.1-inspur-ss", "v2.1-dell-ms", "v3.0-sima-ss"]


def report(*args: str) -> dict:
    out = run_cli("report", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def detail_values(folder: Path) -> dict:
    perf = next(folder.glob("*/performance"))
    first: dict = {}
    for line in (perf / "run_1" / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG"):
            e = json.loads(line[len(":::MLLOG") :])
            first.setdefault(e["key"], e["value"])
    return first


@pytest.mark.parametrize("folder", list(PUBLISHED), ids=IDS)
def test_report_gives_the_submission_checkers_metric_exactly(folder):
    filed, run, value, unit = PUBLISHED[folder]
    rep = report(str(folder))
    assert (rep["metric"]["value"], rep["metric"]["unit"]) == (value, unit)
    assert (rep["filed_scenario"], rep["run_scenario"], rep["scenario_from"]) == (filed, run, "folder")
    assert rep["scenario"] == run  # `scenario` stays LoadGen's


def test_an_offline_filed_singlestream_run_gives_watts_and_the_inferred_offline_efficiency():
    rep = report(str(V10))
    avg = rep["power"]["avg_watts"]
    qps = detail_values(V10)["result_qps_without_loadgen_overhead"]
    assert qps == 1.68745
    # before the fix: 606294547 ns (the 90th percentile latency) / W = 90,499,067 "samples/J"
    assert rep["samples_per_joule"] == qps / avg == 0.2518786471153822
    assert rep["performance_filed"] == {"key": "result_qps_without_loadgen_overhead", "value": qps, "inferred_from": "SingleStream"}
    assert any("filed as Offline, LoadGen ran SingleStream" in n for n in rep["scenario_notes"])
    text = run_cli("report", str(V10)).stdout
    assert "scenario: Offline (filed; LoadGen ran SingleStream)" in text
    assert "note: filed as Offline, LoadGen ran SingleStream" in text
    assert "result_qps_without_loadgen_overhead = 1.68745" in text


@pytest.mark.parametrize("folder", [V11, V21, V30], ids=IDS[1:])
def test_no_filed_vs_run_note_when_they_agree(folder):
    rep = report(str(folder))
    assert rep["scenario_notes"] == []
    assert "LoadGen ran" not in run_cli("report", str(folder)).stdout


def test_a_log_without_result_query_count_is_estimated_and_says_so():
    rep = report(str(V11))
    d = detail_values(V11)
    assert "result_query_count" not in d
    window = rep["power"]["window_s"]
    assert rep["metric"] == {"name": "energy_per_query", "value": rep["power"]["avg_watts"] * window * 1000 / (d["result_qps_with_loadgen_overhead"] * window), "unit": "mJ", "estimate": True}
    assert rep["queries"] == d["result_qps_with_loadgen_overhead"] * window
    assert "result_qps_with_loadgen_overhead" in rep["queries_from"] and "predates result_query_count" in rep["queries_from"]
    assert rep["samples_per_joule"] == 1000 / 18442.999187743335
    text = run_cli("report", str(V11)).stdout
    assert "18443 mJ (an estimate)" in text and "estimated as result_qps_with_loadgen_overhead" in text
    # a log with result_query_count: counted, not estimated
    rep = report(str(V30))
    assert "estimate" not in rep["metric"] and "queries_from" not in rep and rep["queries"] == detail_values(V30)["result_query_count"]


def test_scenario_overrides_the_folder():
    d = detail_values(V10)
    rep = report(str(V10), "--scenario", "singlestream")  # any case
    avg, window = rep["power"]["avg_watts"], rep["power"]["window_s"]
    queries = d["result_qps_with_loadgen_overhead"] * window  # a v1.0 log: the estimate
    assert (rep["filed_scenario"], rep["run_scenario"], rep["scenario_from"]) == ("SingleStream", "SingleStream", "--scenario")
    assert rep["metric"] == {"name": "energy_per_query", "value": avg * window * 1000 / queries, "unit": "mJ", "estimate": True}
    assert any("replaces the scenario the folder is filed under (offline)" in n for n in rep["scenario_notes"])
    rep = report(str(V10), "--scenario", "MultiStream")  # a SingleStream run filed as MultiStream: x 8
    mj = avg * window * 8 * 1000 / queries
    assert rep["metric"]["value"] == mj and rep["samples_per_joule"] == 8 * 1000 / mj
    assert any("filed as MultiStream, LoadGen ran SingleStream" in n for n in rep["scenario_notes"])
    rep = report(str(V30), "--scenario", "Offline")  # watts, whatever LoadGen ran
    assert rep["metric"] == {"name": "avg_power", "value": rep["power"]["avg_watts"], "unit": "W"}
    bad = run_cli("report", str(V10), "--scenario", "Batch")
    assert bad.returncode == 2 and "'Batch' is not a scenario" in bad.stderr and "Traceback" not in bad.stderr


def test_a_folder_not_named_after_a_scenario_uses_loadgens_and_says_so(tmp_path):
    shutil.copytree(V30 / "SingleStream" / "performance", tmp_path / "results-copy" / "performance")
    rep = report(str(tmp_path / "results-copy"))
    assert (rep["filed_scenario"], rep["scenario_from"]) == ("SingleStream", "loadgen")
    assert rep["metric"]["value"] == 15.285569636160059
    assert any("'results-copy'" in n and "is not a scenario name" in n for n in rep["scenario_notes"])
    assert "is not a scenario name" in run_cli("report", str(tmp_path / "results-copy")).stdout
    # and a lower-case scenario folder is that scenario
    shutil.copytree(V30 / "SingleStream" / "performance", tmp_path / "x" / "singlestream" / "performance")
    assert report(str(tmp_path / "x"))["scenario_from"] == "folder"


# --- source checksums -----------------------------------------------------------------------------------
def test_client_and_server_from_different_accepted_sources_do_not_fail():
    # v2.1 Dell: the client ran lib/server.py cda0cdfa..., the server 24ae49fb...; the checker of
    # that round passed both (its sources_checksums.json listed both sets)
    record = open_run(V21)
    c, s = (record.power_json[n]["sources"] for n in ("client.json", "server.json"))
    assert [k for k in c if c[k] != s[k]] == ["lib/server.py"]
    res = {r.name: r for r in official.sources_checksum(record)}
    for name in ("Check client sources checksum", "Check server sources checksum"):
        assert res[name].status != "fail", res[name].message
        assert "different power-dev sources (lib/server.py), which is allowed" in res[name].message
    out = run_cli("check", str(V21), "--json")
    verdicts = {c["name"]: c["status"] for c in json.loads(out.stdout)["checks"]}
    assert verdicts["Check client sources checksum"] != "fail" and verdicts["Check server sources checksum"] != "fail"


def test_a_session_whose_sides_ran_different_sources_is_judged_side_by_side(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")
    path = s.root / "power" / "client.json"
    client = json.loads(path.read_text())
    client["sources"] = dict(client["sources"], **{"lib/client.py": "0" * 40})
    path.write_text(json.dumps(client))
    res = official.sources_checksum(open_run(s.root))
    # today's rules (the server ran today's sources): the edited client fails, the server passes
    assert [r.status for r in res] == ["fail", "pass"]
    assert all("lib/client.py" in r.message and "which is allowed: each side is checked on its own" in r.message for r in res)


# --- smaller ------------------------------------------------------------------------------------------------
def test_an_unparsable_detail_log_is_unreadable_not_missing(tmp_path):
    shutil.copytree(V30, tmp_path / "r", copy_function=shutil.copyfile)
    detail = tmp_path / "r" / "SingleStream" / "performance" / "run_1" / "mlperf_log_detail.txt"
    lines = detail.read_text().split("\n")
    lines[2] = "garbage"
    detail.write_text("\n".join(lines))
    rep = report(str(tmp_path / "r"))
    assert rep["metric"] is None and rep["missing"] == []
    assert len(rep["unreadable"]) == 1 and "mlperf_log_detail.txt:3: unexpected line" in rep["unreadable"][0]
    assert rep["metric_note"].startswith("no metric: testing detail log is unreadable: ")
    text = run_cli("report", str(tmp_path / "r")).stdout
    assert "unreadable: " in text and "mlperf_log_detail.txt:3" in text
    res = {r.name: r for r in checks.run_checks(open_run(tmp_path / "r"))}
    for name in ("loadgen validity", "power window", "minimum duration", "ranging vs testing", "Check time difference", "Check errors and warnings from PTD logs"):
        assert "is unreadable: " in res[name].message and "mlperf_log_detail.txt:3" in res[name].message, (name, res[name].message)
        assert "missing" not in res[name].message.replace("missing valid", ""), (name, res[name].message)
    assert "no testing detail log" not in res["power window"].message


def test_the_uuid_check_names_the_new_exchange_only_when_there_is_one(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")
    uuid = {r.name: r for r in official.uuid_and_session(open_run(s.root))}["Check UUID"]
    assert uuid.status == "pass" and "match the 'new' exchange" in uuid.message
    path = s.root / "power" / "client.json"
    client = json.loads(path.read_text())
    client["messages"] = [m for m in client["messages"] if not str(m.get("cmd", "")).startswith("new,")]
    path.write_text(json.dumps(client))
    uuid = {r.name: r for r in official.uuid_and_session(open_run(s.root))}["Check UUID"]
    assert uuid.status == "pass" and "'new' exchange" in uuid.message and "match the 'new' exchange" not in uuid.message
    assert "records no 'new' exchange" in uuid.message


def _bundle_with_source(tmp_path: Path, driver: str, model: str) -> Path:
    root = make_bundle(tmp_path)  # the export tests' bundle, with another meter
    env = {"sources": [{"name": "wall", "driver": driver, "identity": {"model": model, "address": "ptd://127.0.0.1:8888"}}]}
    (root / "data" / "environment.json").write_text(json.dumps(env))
    run = json.loads((root / "data" / "run.json").read_text())
    run["sources"][0]["driver"] = driver
    (root / "data" / "run.json").write_text(json.dumps(run))
    return root


@pytest.mark.parametrize(
    "driver,model,device_type,ptd",
    [("ptd", "YokogawaWT310E", 49, True), ("ptd", "YokogawaWT330_multichannel", 77, True), ("yokogawa", "WT310E", 49, False), ("simulated", "Simulated meter", None, False)],
)
def test_export_names_the_device_and_who_produced_the_samples(tmp_path, driver, model, device_type, ptd):
    bundle = _bundle_with_source(tmp_path, driver, model)
    out = tmp_path / "export"
    export_mlperf(bundle, out)
    server = json.loads((out / "power" / "server.json").read_text())
    assert server["ptd_config"][0]["device_type"] == device_type
    note = server["labconsole"]["note"]
    readme = (out / "README-labconsole.txt").read_text()
    assert "NOT an official MLPerf" in note and "NOT an official MLPerf" in readme
    if ptd:
        assert "no SPEC PTDaemon produced it" not in note + readme
        assert "its samples came from a SPEC PTDaemon" in note and "its samples came from a SPEC PTDaemon" in readme
    else:
        assert "no SPEC PTDaemon produced it" in note
    cli = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "again"))
    assert cli.returncode == 0, cli.stderr
    assert ("its samples came from a SPEC PTDaemon" in cli.stdout) is ptd


# --- the rules of a round (issue 13, item 4) ------------------------------------------------------------------
ROUND_OF = {V10: "v1.0", V11: "v1.1", V21: "v2.1", V30: "v3.0"}
OFFICIAL_NAMES = [
    "Check client sources checksum", "Check server sources checksum", "Check PTD commands and replies", "Check UUID",
    "Check session name", "Check time difference", "Check client server messages", "Check results checksum",
    "Check errors and warnings from PTD logs", "Check PTD configuration", "Check debug is disabled on server-side",
]


@pytest.mark.parametrize("folder", list(PUBLISHED), ids=IDS)
def test_each_round_is_judged_by_its_own_rules_and_no_official_check_fails(folder):
    out = run_cli("check", str(folder), "--json")
    doc = json.loads(out.stdout)
    assert doc["rules"]["name"] == ROUND_OF[folder] and doc["rules"]["chosen_by"] == "auto"
    assert any("run on " in w for w in doc["rules"]["why"])
    # every round's own checker passed these published results: no check under an official name fails
    official_checks = [c for c in doc["checks"] if c["origin"] == "mlperf"]
    assert {c["name"] for c in official_checks} >= set(OFFICIAL_NAMES)
    assert [c for c in official_checks if c["status"] == "fail"] == []
    assert doc["passed"] is True and out.returncode == 0
    text = run_cli("check", str(folder)).stdout
    assert text.startswith(f"rules: {ROUND_OF[folder]} (") and "auto: run on " in text


def test_the_v1_0_client_recorded_one_message_fewer_as_its_round_expected():
    # before: "client commands list length (10) should equal the server's (11)"
    res = {r.name: r for r in checks.run_checks(open_run(V10))}["Check client server messages"]
    assert res.status == "pass" and "'session,2021-03-03_00-06-49,upload,client.json'" in res.message and "came after client.json was written" in res.message
    for rules in ("v1.1", "current"):
        res = {r.name: r for r in checks.run_checks(open_run(V10), rules)}["Check client server messages"]
        assert res.status == "fail" and "length (10) should equal the server's (11)" in res.message and "the v1.0 protocol" in res.message


def test_current_rules_fail_what_only_older_rounds_accepted():
    doc = json.loads(run_cli("check", str(V10), "--json", "--rules", "current").stdout)
    assert doc["rules"] == {"name": "current", "checker": "today's checker (power-dev c4b3ad8, 2025-02-21)", "chosen_by": "--rules", "why": ["forced with --rules current"]}
    by = {c["name"]: c for c in doc["checks"]}
    assert by["Check PTD commands and replies"]["status"] == "fail" and "'1.9.2'" in by["Check PTD commands and replies"]["message"]
    assert by["Check client sources checksum"]["status"] == "fail" and by["Check PTD configuration"]["status"] == "fail"
    assert doc["passed"] is False
    # a round named by its number alone, or with a capital V, is the same round
    assert json.loads(run_cli("check", str(V10), "--json", "--rules", "1.0").stdout)["rules"]["name"] == "v1.0"
    bad = run_cli("check", str(V10), "--rules", "v9.9")
    assert bad.returncode == 2 and "'v9.9' is not a set of rules" in bad.stderr and "Traceback" not in bad.stderr


def test_uncertainty_warnings_in_testing_are_an_error_only_from_the_2023_rules_on():
    # SiMa v3.0: one 'above 1.00% limit' line inside the testing run, which its round's checker passed
    for rules, ours in (("auto", "warn"), ("v3.0", "warn"), ("v3.1", "fail"), ("current", "fail")):
        res = {r.name: r for r in checks.run_checks(open_run(V30), rules)}
        assert res["PTD warnings in the testing window"].status == ours, (rules, res["PTD warnings in the testing window"].message)
        assert "line 1877" in res["PTD warnings in the testing window"].message
        # the official-named check gives the official verdict: outside its 800 s slip, so not seen
        assert res["Check errors and warnings from PTD logs"].status != "fail"


def test_a_session_is_dated_into_its_round_and_todays_sources_mean_todays_rules(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")  # 2023-11-14, today's power-dev sources
    assert checks.choose(open_run(s.root)).rules.name == "current"
    for side in (s.client, s.server):
        side["sources"] = dict(side["sources"], **{"lib/server.py": "1" * 40})
    s.save()
    choice = checks.choose(open_run(s.root))
    assert choice.rules.name == "v4.0" and "run on 2023-11-14" in choice.why[0]
    # a labconsole bundle is new work: today's rules
    bundle = make_bundle(tmp_path / "b")
    choice = checks.choose(open_run(bundle))
    assert choice.rules.name == "current" and "labconsole bundle" in choice.why[0]


def test_the_2021_rules_read_ptd_log_times_in_the_servers_time_zone(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")
    s.server["timezone"] = 7200  # two hours west of UTC: PTD's log in local time is 2 h behind
    s.save()
    p = s.root / "power" / "ptd_logs.txt"
    local = s.testing_window[0] + 5 - 7200
    p.write_text(p.read_text() + f"{ptd_time(local)}: WARNING: Voltage dropped\n")
    s.rehash()
    record = open_run(s.root)
    by_rules = {rules: {r.name: r for r in checks.run_checks(record, rules)}["PTD warnings in the testing window"] for rules in ("v1.1", "v2.0")}
    assert by_rules["v1.1"].status == "warn" and "Voltage dropped" in by_rules["v1.1"].message
    assert by_rules["v2.0"].status == "pass"


def test_the_2021_rules_read_loadgen_times_in_the_clients_time_zone(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")
    s.client["timezone"] = 7200  # LoadGen wrote local time, 2 h behind UTC
    s.save()
    for sub, (b, e) in (("ranging", s.ranging_window), ("run_1", s.testing_window)):
        detail = s.root / sub / "mlperf_log_detail.txt"
        text = detail.read_text()
        for t in (b, e):
            text = text.replace(format_power_time(int(t * 1e3) * 1_000_000), format_power_time(int((t - 7200) * 1e3) * 1_000_000))
        detail.write_text(text)
    s.rehash()
    record = open_run(s.root)
    by_rules = {rules: {r.name: r for r in checks.run_checks(record, rules)}["Check time difference"] for rules in ("v1.1", "v2.0")}
    assert by_rules["v1.1"].status == "pass", by_rules["v1.1"].message
    assert by_rules["v2.0"].status == "fail" and "is not within the client's testing phase" in by_rules["v2.0"].message
