"""MLPerf Training power: labconsole's score against the official result summarizer
(mlperf-logging), on the real published Dell v4.1 result and on damaged copies of it."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole.mlperf.training import mllog, score
from labconsole.mlperf.training.checks import run_training_checks
from labconsole.mlperf.training.folder import read_training_folder

ORG = FIXTURES / "training-power" / "v4.1__Dell__8xXE9680x8H100-SXM-80GB-POWER__llama2_70b_lora" / "Dell"
BENCH = ORG / "results" / "8xXE9680x8H100-SXM-80GB-POWER" / "llama2_70b_lora"
PUBLISHED_J = 16384267.9502019  # the README's figure, from mlperf-logging 4.1.68's summarizer
PUBLISHED_TTT_MIN = 5.051522250280583


def official_energy(org: Path, tmp: Path) -> float | None:
    """Run the real summarizer on an org folder; its llama2_70b_lora:Energy column (J), or None."""
    pytest.importorskip("mlperf_logging")
    out = tmp / "summary"
    proc = subprocess.run([sys.executable, "-m", "mlperf_logging.result_summarizer", str(org) + "/", "training", "4.1.0",
                           "--csv", str(out) + ".csv"], capture_output=True, text=True, timeout=120, cwd=tmp)
    detailed = Path(str(out) + "_detailed.csv")
    assert detailed.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(detailed, newline="") as fh:
        row = next(csv.DictReader(fh))
    v = row["llama2_70b_lora:Energy"]
    return float(v) if v else None


def copy_org(tmp_path: Path) -> tuple[Path, Path]:
    org = tmp_path / "Dell"
    shutil.copytree(ORG, org)
    return org, org / "results" / BENCH.parent.name / BENCH.name


def rewrite(path: Path, fn) -> None:
    lines = path.read_text(encoding="latin-1").splitlines(keepends=True)
    path.write_text("".join(fn(lines)), encoding="latin-1")


def test_published_result_scored_exactly():
    r = read_training_folder(ORG)
    assert r.energy_score_j == pytest.approx(PUBLISHED_J, rel=1e-12)
    assert r.time_score_min == pytest.approx(PUBLISHED_TTT_MIN, rel=1e-12)
    assert len(r.runs) == 10 and all(len(run.energy.nodes) == 8 for run in r.runs)
    assert len(r.counted) == 8 and r.semantics == score.GATED


def test_report_json_gives_metric_and_runs():
    out = run_cli("report", str(BENCH), "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["metric"]["unit"] == "J" and rep["metric"]["name"] == "energy to train"
    assert rep["metric"]["value"] == pytest.approx(PUBLISHED_J, rel=1e-9)
    assert len(rep["runs"]) == 10
    run0 = next(r for r in rep["runs"] if r["name"] == "result_0")
    assert run0["ttt_s"] == pytest.approx(293.927) and run0["energy_j"] > 1e7
    # each run's energy is the sum of its nodes (the switch is measured: 0 J, as the summarizer)
    assert run0["energy_j"] == pytest.approx(sum(n["energy_j"] for n in run0["nodes"]), rel=1e-12)
    assert run0["switches"][0]["energy_j"] == 0 and run0["switches"][0]["measured_readings"] > 300


def test_check_passes_the_published_result_with_our_warnings():
    out = run_cli("check", str(ORG), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    rep = json.loads(out.stdout)
    by = {c["name"]: c for c in rep["checks"]}
    assert by["Energy score"]["status"] == "pass" and by["Energy score"]["origin"] == "mlperf"
    assert by["Interconnect counted"]["status"] == "warn" and "0 J" in by["Interconnect counted"]["message"]
    assert by["Power window covers the run"]["status"] == "warn"  # Dell's window ends up to 2 s early
    assert by["Clocks agree"]["status"] == "warn"  # the switch logs are 5 h off


# Damaged copies: the real summarizer and labconsole must give the same figure (or both none).

def _drop_run_stop(bench: Path) -> None:
    rewrite(bench / "result_3.txt", lambda ls: [ln for ln in ls if '"run_stop"' not in ln])


def _no_stop_marker(bench: Path) -> None:
    # the stop marker and the last 30 readings gone: the summarizer takes the last reading as the stop
    def fn(ls):
        ls = [ln for ln in ls if "power_measurement_stop" not in ln]
        readings = [i for i, ln in enumerate(ls) if '"power_reading"' in ln]
        gone = set(readings[-30:])
        return [ln for i, ln in enumerate(ls) if i not in gone]
    rewrite(bench / "power" / "result_2" / "node_5.txt", fn)


def _switch_estimate(bench: Path) -> None:
    for d in (bench / "power").iterdir():
        (d / "sw_0.txt").write_text(':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": "conversion_eff", "value": 0.9, "metadata": {}}\n'
                                    ':::MLLOG {"namespace": "", "time_ms": 2, "event_type": "POINT_IN_TIME", "key": "interconnect_power_est", "value": 16100, "metadata": {"switch_id": "sw_01"}}\n')


def _shuffled_readings(bench: Path) -> None:
    # out-of-order lines (SMC's real data has them): the gated summarizer sorts by time
    def fn(ls):
        body = ls[3:-3]
        return ls[:3] + body[::-1] + ls[-3:]
    rewrite(bench / "power" / "result_7" / "node_1.txt", fn)


def _scaling(bench: Path) -> None:
    (bench / "scaling.json").write_text('{"scaling_factor": 1.25}')


def _fewer_runs(bench: Path) -> None:
    for k in (8, 9):
        (bench / f"result_{k}.txt").unlink()
        shutil.rmtree(bench / "power" / f"result_{k}")


@pytest.mark.parametrize("damage", [_drop_run_stop, _no_stop_marker, _switch_estimate, _shuffled_readings, _scaling, _fewer_runs],
                         ids=lambda f: f.__name__.strip("_"))
def test_agrees_with_the_official_summarizer_on_damaged_copies(tmp_path, damage):
    org, bench = copy_org(tmp_path)
    damage(bench)
    ours = read_training_folder(bench).energy_score_j
    theirs = official_energy(org, tmp_path)
    assert ours is not None and theirs is not None
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours != pytest.approx(PUBLISHED_J, rel=1e-9) or damage is _shuffled_readings


def test_a_dropped_run_is_named(tmp_path):
    org, bench = copy_org(tmp_path)
    _drop_run_stop(bench)
    r = read_training_folder(bench)
    dropped = [run for run in r.runs if run.dropped]
    assert [run.name for run in dropped] == ["result_3"] and "run_stop not recorded" in dropped[0].dropped
    assert len(r.counted) == 8  # one dropped by the checker, one fastest dropped by olympic scoring


# The summarizer's crash cases: a message, never a traceback.

def _line(t, key, value, md="{}"):
    return f':::MLLOG {{"namespace": "", "time_ms": {t}, "event_type": "POINT_IN_TIME", "key": "{key}", "value": {value}, "metadata": {md}}}\n'


def _node_log(tmp_path: Path, lines: list[str]) -> mllog.MllogFile:
    f = tmp_path / "node_0.txt"
    f.write_text("".join(lines))
    return mllog.read(f)


def test_stop_equal_to_start_is_explained(tmp_path):
    # SMC v4.0's shape: the stop marker carries the start's time and comes last
    lines = [_line(1000, "power_measurement_start", '"null"', '""')]
    lines += [_line(1000 + 2000 * i, "power_reading", 100 + i, '""') for i in range(1, 61)]
    lines += [_line(1000, "power_measurement_stop", '"null"', '""')]
    log = _node_log(tmp_path, lines)
    with pytest.raises(score.ScoreError, match="divides by zero.*v4.0"):
        score.node_energy(log, 60_000, score.GATED)
    # the v4.0 round's summarizer: file order, stop moved to the last reading
    e = score.node_energy(log, 60_000, score.FILE_ORDER)
    mean_w = sum((100 + i) * 2000 for i in range(1, 61)) / (120_000)
    assert e.energy_j == pytest.approx(mean_w * 60, rel=1e-12)


def test_no_start_marker_is_explained(tmp_path):
    log = _node_log(tmp_path, [_line(1000 + i * 1000, "power_reading", 100) for i in range(5)])
    with pytest.raises(score.ScoreError, match="no power_measurement_start"):
        score.node_energy(log, 1000)


def test_a_reading_that_is_not_a_number_names_its_line(tmp_path):
    log = _node_log(tmp_path, [_line(0, "power_measurement_start", "null"), _line(1000, "power_reading", '"abc"'),
                               _line(2000, "power_measurement_stop", "null")])
    with pytest.raises(score.ScoreError, match=r"node_0.txt:2: power_reading value 'abc'"):
        score.node_energy(log, 1000)


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-Infinity"])
def test_a_reading_that_is_not_finite_is_invalid(tmp_path, value):
    log = _node_log(tmp_path, [_line(0, "power_measurement_start", "null"), _line(1000, "power_reading", 100),
                               _line(2000, "power_reading", value), _line(3000, "power_measurement_stop", "null")])
    with pytest.raises(score.ScoreError, match=r"node_0.txt:3: power_reading value .* not a finite number"):
        score.node_energy(log, 1000)


def test_crash_cases_reach_the_command_line_as_messages(tmp_path):
    org, bench = copy_org(tmp_path)
    rewrite(bench / "power" / "result_4" / "node_0.txt", lambda ls: [ln for ln in ls if "power_measurement_start" not in ln])
    out = run_cli("report", str(bench), "--json")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    rep = json.loads(out.stdout)
    assert rep["metric"]["value"] is None and "no power_measurement_start" in rep["note"]
    out = run_cli("check", str(bench))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "[FAIL] Energy score" in out.stdout


# Our checks, each against data that breaks its rule.

def _thin_readings(bench: Path) -> None:
    # keep every third reading: about 0.33 readings/s
    def fn(ls):
        out, n = [], 0
        for ln in ls:
            if '"power_reading"' in ln:
                n += 1
                if n % 3:
                    continue
            out.append(ln)
        return out
    for f in (bench / "power" / "result_0").glob("node_*.txt"):
        rewrite(f, fn)


def _late_window(bench: Path) -> None:
    # the window starts 60 s after run_start on one node
    def fn(ls):
        out = []
        for ln in ls:
            obj = json.loads(ln[ln.index("{"):])
            if obj["key"] == "power_measurement_start":
                obj["time_ms"] += 60_000
            out.append(":::MLLOG " + json.dumps(obj) + "\n")
        return out
    rewrite(bench / "power" / "result_5" / "node_2.txt", fn)


def _short_log(bench: Path) -> None:
    def fn(ls):
        keep, n = [], 0
        for ln in ls:
            if '"power_reading"' in ln:
                n += 1
                if n > 40:
                    continue
            keep.append(ln)
        return keep
    rewrite(bench / "power" / "result_6" / "node_3.txt", fn)


@pytest.mark.parametrize("damage,check", [(_thin_readings, "Reading rate"), (_late_window, "Power window covers the run"),
                                          (_short_log, "At least 60 readings")], ids=["rate", "window", "samples"])
def test_our_checks_fail_what_the_rules_forbid(tmp_path, damage, check):
    org, bench = copy_org(tmp_path)
    before = {c.name: c.status for c in run_training_checks(read_training_folder(bench))}
    damage(bench)
    after = {c.name: c for c in run_training_checks(read_training_folder(bench))}
    assert before[check] in ("pass", "warn") and after[check].status == "fail", after[check].message
    assert after[check].origin == "labconsole"
    assert after["Energy score"].status == "pass"  # the official figure still stands


def test_not_a_training_folder_is_bad_input(tmp_path):
    (tmp_path / "power").mkdir()
    (tmp_path / "result_0.txt").write_text("not mllog\n")
    out = run_cli("report", str(tmp_path), "--json")
    assert out.returncode == 0  # a training folder whose only run has no run_start: no score, said so
    rep = json.loads(out.stdout)
    assert rep["metric"]["value"] is None and "run_start not recorded" in rep["runs"][0]["dropped"]
    (tmp_path / "scaling.json").write_text('{"scaling_factor": "x"}')
    out = run_cli("report", str(tmp_path))
    assert out.returncode == 2 and "scaling.json: scaling_factor" in out.stderr and "Traceback" not in out.stderr


def test_compare_two_training_results(tmp_path):
    org, bench = copy_org(tmp_path)
    _scaling(bench)  # B: the same runs scaled by 1.25
    out = run_cli("compare", str(ORG), str(bench), "--json")
    assert out.returncode == 0, out.stderr
    cmp = json.loads(out.stdout)
    fig = {f["key"]: f for f in cmp["figures"]}
    assert fig["metric"]["a"] == pytest.approx(PUBLISHED_J, rel=1e-12)
    assert fig["metric"]["rel_change_pct"] == pytest.approx((1.25 / 1.0033670033670032 - 1) * 100, rel=1e-9)
    assert cmp["a"]["kind"] == cmp["b"]["kind"] == "mlperf-training"
    text = run_cli("compare", str(ORG), str(bench))
    assert "energy to train [J]" in text.stdout and "MLPerf Training power result" in text.stdout
    mixed = run_cli("compare", str(ORG), str(FIXTURES / "mlperf-results"))
    assert mixed.returncode == 2 and "like with like" in mixed.stderr
