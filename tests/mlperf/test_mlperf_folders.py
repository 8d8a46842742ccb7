"""Published MLPerf power result folders: the metric to the last digit, read-only, as published (CRLF, gaps).

The two folders under tests/fixtures/mlperf-results/ are copied byte for byte from
mlcommons/inference_results_v3.1 (NVIDIA Orin, ResNet-50 Offline, MaxQ) and v4.0 (Dell
XR8620 with one L4, ResNet-50 Offline, MaxQ). As published they lack ptd_logs.txt, server.log
and the ranging run's detail log and spl.txt; the v4.0 spl.txt has CRLF line ends (the PTD host
ran Windows) and ends with a blank line.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from powerdev_real import OFFICIAL_CHECK_NAMES
from labconsole.mlperf import metrics
from labconsole.mlperf import checks
from labconsole.bundle.reader import RunOpenError, open_run
from powerdev_fakes import make_session

V31 = FIXTURES / "mlperf-results" / "v3.1__NVIDIA__Orin_TRT_MaxQ__resnet50__Offline"
V40 = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


def checker_metric(perf: Path) -> tuple[float, float, int]:
    """The submission checker's computation, written out independently of labconsole.

    mlcommons/inference tools/submission/submission_checker/checks/power_check.py,
    get_power_metric_check: power_begin/power_end from run_1/mlperf_log_detail.txt parsed with
    "%m-%d-%Y %H:%M:%S.%f" (UTC); every spl.txt line starting with "Time" whose timestamp is
    strictly between them and whose Watts field (field 3) is > 0 is averaged with sum()/len();
    Offline: metric = that average in W, efficiency = result_samples_per_second / average.
    """
    fmt = "%m-%d-%Y %H:%M:%S.%f"
    first: dict = {}
    with open(perf / "run_1" / "mlperf_log_detail.txt") as f:
        for line in f:
            if line.startswith(":::MLLOG"):
                e = json.loads(line[len(":::MLLOG") :])
                first.setdefault(e["key"], e["value"])  # the checker keeps the first value of a key
    begin = datetime.datetime.strptime(first["power_begin"], fmt)
    end = datetime.datetime.strptime(first["power_end"], fmt)
    power = []
    with open(perf / "run_1" / "spl.txt") as f:  # text mode: CRLF becomes LF, as for the checker
        for line in f:
            if not line.startswith("Time"):
                continue
            ts = datetime.datetime.strptime(line.split(",")[1], fmt)
            if begin < ts < end and float(line.split(",")[3]) > 0:
                power.append(float(line.split(",")[3]))
    avg = sum(power) / len(power)
    return avg, float(first["result_samples_per_second"]) / avg, len(power)


# The exact values (repr of the float) the checker computes on the published files:
#   v3.1 Orin: 636 samples strictly inside 08-14-2023 18:41:36.504 .. 18:52:12.868 (636.364 s)
#              of the 681 in run_1/spl.txt; mean 23.56693396226417 W;
#              3526.29 samples/s / 23.56693396226417 W = 149.62871307936635 samples/J.
#   v4.0 Dell: 698 samples of 718 inside 02-23-2024 09:40:35.896 .. 09:52:13.588 (697.692 s);
#              mean 269.07393982808037 W; 12297.7 / 269.07393982808037 = 45.703794309688185 samples/J.
PUBLISHED = {
    V31: (23.56693396226417, 149.62871307936635, 636, 636.364),
    V40: (269.07393982808037, 45.703794309688185, 698, 697.692),
}


@pytest.mark.parametrize("folder", [V31, V40], ids=["v3.1-orin", "v4.0-dell"])
def test_report_reproduces_the_published_metric_exactly(folder):
    avg, eff, n, window = PUBLISHED[folder]
    assert checker_metric(folder / "performance") == (avg, eff, n)  # the derivation above holds
    out = run_cli("report", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["kind"] == "mlperf" and rep["scenario"] == "Offline"
    assert rep["metric"] == {"name": "avg_power", "value": avg, "unit": "W"}
    assert rep["samples_per_joule"] == eff
    assert rep["power"]["samples_in_window"] == n
    assert rep["power"]["window_s"] == window
    assert set(rep["missing"]) >= {"power/ptd_logs.txt", "power/server.log", "ranging/mlperf_log_detail.txt", "ranging/spl.txt"}


@pytest.mark.parametrize("folder", [V31, V40], ids=["v3.1-orin", "v4.0-dell"])
def test_check_lists_every_check_with_a_verdict_and_a_reason(folder):
    out = run_cli("check", str(folder / "performance"), "--json")
    doc = json.loads(out.stdout)
    names = [c["name"] for c in doc["checks"]]
    official = list(OFFICIAL_CHECK_NAMES)
    for name in official + ["ranging vs testing", "uncertainty", "clock offset", "minimum duration", "sample regularity", "invalid samples", "loadgen validity", "loadgen errors"]:
        assert name in names
    for c in doc["checks"]:
        assert c["status"] in ("pass", "warn", "fail", "skip") and len(c["message"]) > 10
    by = {c["name"]: c for c in doc["checks"]}
    # These copies were trimmed (no power/ptd_logs.txt, server.log, ranging logs): a folder
    # missing required files fails, as the official checker fails it, and says what is missing
    assert by["Check errors and warnings from PTD logs"]["status"] == "fail"
    assert "ptd_logs.txt is missing" in by["Check errors and warnings from PTD logs"]["message"]
    assert by["Check results checksum"]["status"] == "fail" and "5 file(s) match" in by["Check results checksum"]["message"]
    assert "required but absent from this folder: power/ptd_logs.txt, power/server.log" in by["Check results checksum"]["message"]
    assert by["files present"]["status"] == "fail" and "power/ptd_logs.txt" in by["files present"]["message"]
    assert "ranging/mlperf_log_detail.txt" in by["ranging vs testing"]["message"]
    # both used PTD 1.10.0, which their rounds' checkers accepted (today's rejects it)
    assert doc["rules"]["name"] == ("v3.1" if folder == V31 else "v4.0") and doc["rules"]["chosen_by"] == "auto"
    assert by["Check PTD commands and replies"]["status"] == "pass" and "1.10.0" in by["Check PTD commands and replies"]["message"]
    assert doc["passed"] is False and out.returncode == 1
    # what the round's checker could check on these files still passes (it cannot open the
    # trimmed ranging/mlperf_log_detail.txt for the time check either)
    assert "ranging/mlperf_log_detail.txt is missing" in by["Check time difference"]["message"]
    for name in official:
        if name not in ("Check results checksum", "Check errors and warnings from PTD logs", "Check time difference"):
            assert by[name]["status"] != "fail", (name, by[name]["message"])
    current = json.loads(run_cli("check", str(folder / "performance"), "--json", "--rules", "current").stdout)
    by = {c["name"]: c for c in current["checks"]}
    assert current["rules"]["name"] == "current" and by["Check PTD commands and replies"]["status"] == "fail"


def test_published_uncertainty_is_read_from_ptd(tmp_path):
    u31 = metrics.compute_report(open_run(V31))["uncertainty"]
    assert u31["from"] == "ptd Uncertainty reply"
    assert u31["mean_pct"] == pytest.approx(0.7786) and u31["max_pct"] == pytest.approx(1.3646) and u31["over_limit"] == 37
    u40 = metrics.compute_report(open_run(V40))["uncertainty"]
    assert u40["max_pct"] == pytest.approx(0.6405) and u40["over_limit"] == 0


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, p.read_bytes() if p.is_file() else None)
    return out


def test_report_and_check_never_write_into_an_mlperf_folder(tmp_path):
    work = tmp_path / "published"
    shutil.copytree(V40, work)
    before = _snapshot(work)
    for cmd in (("report", "--json"), ("report",), ("check", "--json"), ("check",)):
        run_cli(cmd[0], str(work), *cmd[1:])
    checks.run_checks(open_run(work / "performance"))
    metrics.compute_report(open_run(work))
    assert _snapshot(work) == before  # same names, same bytes, same mtimes


def test_crlf_blank_lines_and_minus_one_readings(tmp_path):
    work = tmp_path / "Offline" / "performance"
    shutil.copytree(V31 / "performance", work)
    spl = work / "run_1" / "spl.txt"
    lines = spl.read_text().splitlines()
    lines[100] = lines[100].split(",Watts,")[0] + ",Watts,-1.000000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,2023-08-14_11-29-10_testing"
    spl.write_bytes(("\r\n".join(lines) + "\r\n\r\n\r\n").encode())
    avg, eff, n = checker_metric(work)
    assert n == 635
    rep = metrics.compute_report(open_run(work))
    assert rep["metric"]["value"] == avg and rep["samples_per_joule"] == eff
    assert rep["power"]["invalid_in_window"] == 1
    res = {c.name: c for c in checks.run_checks(open_run(work))}
    assert res["invalid samples"].status == "warn" and "no_data 1" in res["invalid samples"].message
    assert res["Check results checksum"].status == "fail"  # the published SHA-1 no longer matches


def test_a_folder_above_holding_one_result_or_several(tmp_path):
    rep = json.loads(run_cli("report", str(V31), "--json").stdout)
    assert rep["path"].endswith("performance")
    out = run_cli("report", str(FIXTURES / "mlperf-results"), "--json")
    assert out.returncode == 2 and "holds 6 MLPerf result folders; name one of them" in out.stderr  # v3.1, v4.0 and the 4 in rounds/
    with pytest.raises(RunOpenError):
        open_run(tmp_path)


def test_a_malformed_sample_line_is_named_not_a_traceback(tmp_path):
    work = tmp_path / "performance"
    shutil.copytree(V40 / "performance", work)
    spl = work / "run_1" / "spl.txt"
    spl.write_bytes(spl.read_bytes().replace(b"Time,02-23-2024 09:41:00", b"Time,02-23-2024 09:4X:00", 1))
    out = run_cli("check", str(work))
    assert "Traceback" not in out.stderr
    assert "malformed PTD sample line" in out.stdout and out.returncode == 1


# --- the metric per scenario, as the submission checker computes it -------------------------------------
def test_singlestream_folder_reports_millijoules_per_query(tmp_path):
    s = make_session(tmp_path / "SingleStream" / "performance", scenario="SingleStream", queries=1000, testing_w=50.0)
    rep = metrics.compute_report(open_run(s.root))
    window = s.testing_window[1] - s.testing_window[0]
    mj = 50.0 * window * 1000 / 1000
    assert rep["metric"] == {"name": "energy_per_query", "value": mj, "unit": "mJ"}
    assert rep["samples_per_joule"] == 1 * 1000 / mj


def test_multistream_inferred_from_singlestream_multiplies_by_eight(tmp_path):
    # filed under MultiStream/, measured as SingleStream: power_metric = avg x window x 8 x 1000 / queries
    s = make_session(tmp_path / "MultiStream" / "performance", scenario="SingleStream", queries=800, testing_w=40.0)
    rep = metrics.compute_report(open_run(s.root))
    window = s.testing_window[1] - s.testing_window[0]
    mj = 40.0 * window * 8 * 1000 / 800
    assert rep["metric"]["value"] == mj and rep["filed_scenario"] == "MultiStream"
    assert rep["samples_per_joule"] == 8 * 1000 / mj


def test_multistream_folder(tmp_path):
    s = make_session(tmp_path / "MultiStream" / "performance", scenario="MultiStream", queries=700, testing_w=40.0)
    rep = metrics.compute_report(open_run(s.root))
    window = s.testing_window[1] - s.testing_window[0]
    mj = 40.0 * window * 1000 / 700
    assert rep["metric"]["value"] == mj and rep["samples_per_joule"] == 8 * 1000 / mj


@pytest.mark.parametrize("filed,run", [("Server", "Server"), ("Interactive", "Server"), ("Offline", "Offline")])
def test_throughput_scenarios_report_watts(tmp_path, filed, run):
    key = "result_completed_samples_per_sec" if run == "Server" else "result_samples_per_second"
    s = make_session(tmp_path / filed / "performance", scenario=run, testing_w=lambda i: 100.0 + i % 3, extra_detail={key: 2500.0})
    rep = metrics.compute_report(open_run(s.root))
    avg, _, n = checker_metric(s.root) if run == "Offline" else (None, None, None)
    assert rep["metric"]["unit"] == "W"
    if avg is not None:
        assert rep["metric"]["value"] == avg
    assert rep["samples_per_joule"] == 2500.0 / rep["metric"]["value"]
