"""`labconsole compare A B`: two recorded runs side by side, as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole.mlperf import metrics
from labconsole.mlperf import checks
from labconsole.bundle.environment_diff import WARNING, record_environment
from labconsole.bundle.reader import open_run
from labconsole.mlperf.compare import Figure, compare_runs, render_text

RESULTS = FIXTURES / "mlperf-results"
ORIN = RESULTS / "v3.1__NVIDIA__Orin_TRT_MaxQ__resnet50__Offline"
DELL = RESULTS / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


def _reject_nan(text: str):
    raise ValueError(f"not JSON: {text}")


@pytest.fixture(scope="module")
def orin_dell():
    return compare_runs(ORIN, DELL)


def test_figures_are_the_reports_figures_with_their_relative_change(orin_dell):
    ra = metrics.compute_report(open_run(ORIN))
    rb = metrics.compute_report(open_run(DELL))
    f = orin_dell.figure("avg_power")
    assert (f.a, f.b) == (ra["power"]["avg_watts"], rb["power"]["avg_watts"])
    assert f.rel_change_pct == pytest.approx((rb["power"]["avg_watts"] - ra["power"]["avg_watts"]) / ra["power"]["avg_watts"] * 100)
    spj = orin_dell.figure("samples_per_joule")
    assert (spj.a, spj.b) == (ra["samples_per_joule"], rb["samples_per_joule"])
    perf = orin_dell.figure("performance")
    assert perf.label == "performance (result_samples_per_second)" and perf.unit == "samples/s"
    assert (perf.a, perf.b) == (ra["performance"]["value"], rb["performance"]["value"])
    assert orin_dell.figure("metric").a == ra["metric"]["value"]
    assert orin_dell.figure("energy_per_query") is None  # Offline: samples per joule instead
    assert orin_dell.a.kind == orin_dell.b.kind == "mlperf"
    assert orin_dell.a.scenario == orin_dell.b.scenario == "Offline"


def test_check_verdicts_are_paired_by_name(orin_dell):
    ca = checks.run_checks(open_run(ORIN))
    names = [c.name for c in orin_dell.checks]
    assert names == [c.name for c in ca]
    by = {c.name: c for c in orin_dell.checks}
    assert by["loadgen validity"].a == by["loadgen validity"].b == "pass"
    assert by["ranging vs testing"].a == "warn"  # the ranging folders hold no detail log
    # The Orin's PTD reported samples over the 1 % uncertainty limit; the Dell's did not.
    assert [(c.name, c.a, c.b) for c in orin_dell.checks if c.changed] == [("uncertainty", "warn", "pass")]


def test_the_two_meters_differences_come_from_the_ptd_records(orin_dell):
    env = record_environment(open_run(ORIN, load_samples=False))
    ident = env["sources"][0]["identity"]
    assert (ident["vendor"], ident["model"], ident["serial"], ident["firmware"]) == ("YOKOGAWA", "WT333E", "C2VL22012V", "F1.04")
    assert env["ptd_version"] == "1.10.0-ed9a21d2-20220817"
    diffs = {d.key: d for d in orin_dell.environment}
    assert diffs["sources.ptd.serial"].severity == WARNING
    assert (diffs["sources.ptd.serial"].then, diffs["sources.ptd.serial"].now) == ("C2VL22012V", "0")
    assert diffs["sources.ptd.model"].message == "source ptd: model: WT333E -> 760401"
    assert diffs["ptd_version"].severity == WARNING


def test_a_bundle_against_an_mlperf_folder_names_what_the_folder_does_not_record():
    from labconsole.bundle.environment_diff import INFO, diff_environments

    folder = record_environment(open_run(ORIN, load_samples=False))
    assert folder["timezone"] == "-0700"  # power-dev's 25200 s west of UTC, written as environment.json writes it
    bundle = {
        "host": "bench-1", "os": {"system": "Linux", "release": "6.1"}, "cpu": {"model": "EPYC", "count": 64},
        "python": {"version": "3.11.9"}, "packages": {"numpy": "2.1.0", "pandas": "2.2.0"}, "timezone": "+0000",
        "sources": [{"name": "wall", "driver": "yokogawa", "status": "ok", "identity": {"model": "WT310E", "serial": "C2XX0001"}}],
    }
    diffs = diff_environments(bundle, folder, missing_source=WARNING, sides=("A", "B"))
    by_key = {d.key: d for d in diffs}
    assert by_key["sources.wall"].message == "source wall (yokogawa, WT310E s/n C2XX0001) is in A, not in B"
    assert by_key["sources.ptd"].message == "source ptd (ptd) is in B, not in A"
    assert by_key["timezone"].message == "time zone: +0000 -> -0700"
    b = by_key["unrecorded.b"]
    assert b.severity == INFO and b.message.startswith("B (an MLPerf result folder: its PTD records only) does not record, so these are not compared: host name, CPU model")
    assert b.message.endswith("the versions of 2 packages")
    assert by_key["unrecorded.a"].then == ["PTDaemon version", "PTDaemon host OS"]
    assert not any(d.key.startswith(("packages.", "host", "cpu.", "os.")) for d in diffs)  # no "(none)" line per field
    assert all("(none)" not in d.message for d in diffs)


def test_relative_change_is_none_where_it_means_nothing():
    assert Figure("x", "x", "W", None, 3.0).rel_change_pct is None
    assert Figure("x", "x", "W", 0.0, 3.0).rel_change_pct is None
    assert Figure("x", "x", "W", 2.0, float("nan")).rel_change_pct is None
    assert Figure("x", "x", "W", 2.0, 3.0).rel_change_pct == pytest.approx(50.0)
    assert Figure("x", "x", "W", -2.0, -1.0).rel_change_pct == pytest.approx(50.0)


def test_text_table_is_aligned_and_shows_each_change(orin_dell):
    text = render_text(orin_dell)
    lines = text.splitlines()
    assert lines[0].startswith(f"A: {ORIN / 'performance'} (MLPerf result folder, Offline, LoadGen VALID)")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("figure"))
    end = lines.index("", start)
    table = lines[start:end]
    assert len({len(ln) for ln in table}) == 1  # right-aligned columns: every row is as wide
    row = next(ln for ln in table if ln.startswith("average power (testing window) [W]"))
    f = orin_dell.figure("avg_power")
    assert row.split()[-2:] == [f"{f.rel_change_pct:+.2f}", "%"]
    assert f"{f.a:.6g}" in row and f"{f.b:.6g}" in row
    assert any(ln.split()[:3] == ["loadgen", "validity", "PASS"] for ln in lines)
    assert "bench differences (A -> B): 6" in lines
    assert any("serial number (a different unit): C2VL22012V -> 0" in ln for ln in lines)


def test_cli_human_and_json_output():
    out = run_cli("compare", str(ORIN), str(DELL))
    assert out.returncode == 0, out.stderr
    assert "figure" in out.stdout and "+1041.74 %" in out.stdout
    out = run_cli("compare", str(ORIN), str(DELL), "--json")
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout, parse_constant=_reject_nan)
    assert set(obj) == {"a", "b", "same_scenario", "figures", "checks", "environment", "notes"}
    assert obj["same_scenario"] is True
    assert set(obj["a"]) == {"path", "kind", "id", "profile", "scenario", "exit_status", "start", "result_validity", "primary_source", "passed"}
    for f in obj["figures"]:
        assert set(f) == {"key", "label", "unit", "a", "b", "delta", "rel_change_pct", "better"}
    power = next(f for f in obj["figures"] if f["key"] == "avg_power")
    assert power["rel_change_pct"] == pytest.approx(1041.74, abs=0.01)
    assert all(set(c) == {"name", "a", "b", "changed", "a_message", "b_message"} for c in obj["checks"])
    assert all(set(e) == {"severity", "key", "then", "now", "message"} for e in obj["environment"])


def test_cli_names_a_path_that_is_not_a_run(tmp_path):
    out = run_cli("compare", str(ORIN), str(tmp_path))
    assert out.returncode == 2
    assert "neither a labconsole bundle" in out.stderr and "Traceback" not in out.stderr


def test_different_scenarios_are_noted(tmp_path):
    from mlperf_fakes import write_detail_log, write_samples  # hand-made runs, exact numbers

    def made(name: str, scenario: str, watts: float) -> Path:
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        (root / "data" / "run.json").write_text(json.dumps({"id": name, "exit_status": "completed", "primary_source": "wall", "scenario": scenario}))
        begin = 1_700_000_000 * 10**9
        write_detail_log(root / "data" / "testing" / "loadgen", scenario, begin, begin + 10 * 10**9, queries=100,
                         extra={"result_samples_per_second": 50.0, "early_stopping_latency_ss": 2_000_000})
        wall = [begin + i * 10**8 for i in range(1, 100)]  # 10 samples/s inside the window
        write_samples(root / "data" / "testing" / "samples-wall.csv", wall, [watts] * len(wall))
        return root

    cmp = compare_runs(made("a", "Offline", 100.0), made("b", "SingleStream", 110.0))
    assert cmp.as_dict()["same_scenario"] is False
    assert any("scenarios differ" in n for n in cmp.notes)
    assert any("metrics differ" in n for n in cmp.notes)
    assert cmp.figure("metric").b is None  # watts against millijoules: no change computed
    assert cmp.figure("avg_power").rel_change_pct == pytest.approx(10.0)
