"""Checks that used to pass broken data (issue 13 item 5, issue 21 "Checks that pass broken data"):
a byte-order mark in front of every file, an infinite reading, an empty power window, a bundle
changed after sealing, and the cross-check of spl.txt against PTD's own summary (item 6). Each on
a copy of real published data where one exists, and on a sealed labconsole bundle.

A file that is present but cannot be read as expected is a failure that says so, never
"missing", never a pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, run_cli
from labconsole.bundle.reader import open_run
from labconsole.bundle.seal import seal
from labconsole.mlperf import checks
from labconsole.mlperf.export import ExportError, export_mlperf
from powerdev_fakes import make_session
from test_export import make_bundle

V30 = FIXTURES / "mlperf-results" / "rounds" / "v3.0__SiMa__davinci_dualm2__resnet50__SingleStream"
V40 = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
BOM = b"\xef\xbb\xbf"


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    return dst


def by_name(path: Path, rules: str | None = None) -> dict:
    return {r.name: r for r in checks.run_checks(open_run(path), rules)}


def check_json(path: Path) -> tuple[int, dict]:
    out = run_cli("check", str(path), "--json")
    return out.returncode, json.loads(out.stdout)


def sealed_bundle(tmp_path: Path) -> Path:
    root = make_bundle(tmp_path)
    seal(root)
    return root


def _bom_every_file(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            p.write_bytes(BOM + p.read_bytes())


# --- a byte-order mark in front of every file --------------------------------------------------------------------
def test_a_bom_in_front_of_every_file_of_a_published_result_fails_and_says_unreadable(tmp_path):
    folder = copy(V30, tmp_path / "r")
    _bom_every_file(folder)
    rc, doc = check_json(folder)
    assert rc == 1 and doc["passed"] is False
    by = {c["name"]: c for c in doc["checks"]}
    # before: "missing or unreadable" and a warning, so the run passed
    res = by["Check results checksum"]
    assert res["status"] == "fail" and "present but unreadable as JSON" in res["message"] and "missing" not in res["message"]
    assert by["files present"]["status"] == "fail" and "present but unreadable" in by["files present"]["message"]
    # no check under an official name warns where the official tool cannot even read the session
    assert not [c for c in doc["checks"] if c["origin"] == "mlperf" and c["name"].startswith("Check ") and c["status"] == "warn"]
    rep = json.loads(run_cli("report", str(folder), "--json").stdout)
    assert rep["missing"] == [] and any("client.json" in u and "not valid JSON" in u for u in rep["unreadable"])


def test_a_bom_in_front_of_every_file_of_a_sealed_bundle_fails(tmp_path):
    root = sealed_bundle(tmp_path)
    assert checks.passed(by_name(root).values())
    _bom_every_file(root)
    rc, doc = check_json(root)
    assert rc == 1
    by = {c["name"]: c for c in doc["checks"]}
    assert by["manifest"]["status"] == "fail"


# --- infinite readings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_an_infinite_or_nan_reading_in_spl_txt_is_never_averaged(tmp_path, value):
    folder = copy(V30, tmp_path / "r")
    spl = folder / "SingleStream" / "performance" / "run_1" / "spl.txt"
    lines = spl.read_bytes().decode().split("\n")
    i = next(k for k, ln in enumerate(lines) if ln.startswith("Time")) + 300  # inside the window
    parts = lines[i].split(",")
    parts[3] = value
    lines[i] = ",".join(parts)
    spl.write_bytes(("\n".join(lines)).encode())
    rep = json.loads(run_cli("report", str(folder), "--json").stdout)
    avg = rep["power"]["avg_watts"]
    assert avg is not None and 12.0 < avg < 14.0  # the other 599 samples, not inf or nan
    assert rep["power"]["samples_in_window"] == 599 and rep["power"]["invalid_in_window"] == 1
    res = by_name(folder)["invalid samples"]
    assert "1 of 600 samples" in res.message
    if value in ("inf", "Infinity", "-inf"):
        assert res.status == "fail" and "infinite watts 1" in res.message
    else:
        assert res.status == "warn" and "NaN watts 1" in res.message


def test_an_infinite_reading_in_a_bundle_is_never_averaged(tmp_path):
    root = make_bundle(tmp_path)
    csv = root / "data" / "testing" / "samples-wall.csv"
    lines = csv.read_text().splitlines()
    parts = lines[20].split(",")
    parts[3] = "inf"
    lines[20] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")
    out = run_cli("report", str(root), "--json")
    rep = json.loads(out.stdout)
    assert out.returncode == 0 and 100 < rep["power"]["avg_watts"] < 112
    text = run_cli("report", str(root)).stdout
    assert "inf W" not in text and "nan W" not in text
    res = by_name(root)["invalid samples"]
    assert res.status == "fail" and "infinite watts 1" in res.message


# --- an empty power window ------------------------------------------------------------------------------------------
def test_a_window_with_no_valid_samples_fails_report_and_check(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance", testing_w=-1.0)  # PTD's invalid reading, every sample
    s.rehash()
    out = run_cli("report", str(s.root))
    assert out.returncode == 1 and "nan" not in out.stdout.lower()
    assert "no valid samples between power_begin" in out.stdout
    rep = json.loads(run_cli("report", str(s.root), "--json").stdout)
    assert rep["metric"] is None and rep["power"]["avg_watts"] is None and rep["metric_note"].startswith("no metric: no valid samples")
    rc, doc = check_json(s.root)
    assert rc == 1 and {c["name"]: c for c in doc["checks"]}["power window"]["status"] == "fail"


def test_a_bundle_window_with_no_samples_fails_report_and_check(tmp_path):
    root = make_bundle(tmp_path)
    csv = root / "data" / "testing" / "samples-wall.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:3]) + "\n")  # only the samples before power_begin remain
    out = run_cli("report", str(root))
    assert out.returncode == 1 and "nan W" not in out.stdout and "no valid samples" in out.stdout
    rc, doc = check_json(root)
    assert rc == 1 and {c["name"]: c for c in doc["checks"]}["power window"]["status"] == "fail"


# --- export of a bundle changed after sealing ------------------------------------------------------------------------
def test_export_refuses_a_bundle_changed_after_sealing(tmp_path):
    root = sealed_bundle(tmp_path)
    csv = root / "data" / "testing" / "samples-wall.csv"
    csv.write_text(csv.read_text().replace("100.123456", "200.123456"))
    with pytest.raises(ExportError, match="changed after sealing.*data/testing/samples-wall.csv"):
        export_mlperf(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    out = run_cli("export", str(root), "--mlperf", str(tmp_path / "out2"))
    assert out.returncode == 1 and "changed after sealing" in out.stderr and not (tmp_path / "out2").exists()


def test_export_of_an_unsealed_bundle_says_so(tmp_path):
    res = export_mlperf(make_bundle(tmp_path), tmp_path / "out")
    assert any("not sealed" in n for n in res.notes)
    sealed = sealed_bundle(tmp_path / "s")
    assert not any("not sealed" in n for n in export_mlperf(sealed, tmp_path / "out2").notes)


# --- spl.txt against PTD's own summary (item 6) -------------------------------------------------------------------
def _spl(folder: Path) -> Path:
    return folder / "performance" / "run_1" / "spl.txt"


def test_published_samples_agree_with_ptds_summary():
    res = by_name(V40)["samples vs PTD's summary"]
    assert res.status == "pass" and "718 samples (718 valid), average 267.269387 W" in res.message
    # results from before 2023 recorded no Watts summary
    assert by_name(V30)["samples vs PTD's summary"].status == "skip"


def test_a_forged_sample_above_ptds_maximum_fails(tmp_path):
    folder = copy(V40, tmp_path / "r")
    lines = _spl(folder).read_bytes().decode().split("\n")
    parts = lines[100].split(",")
    parts[3] = f"{float(parts[3]) + 50:.6f}"  # 50 W above, like the forged sample
    lines[100] = ",".join(parts)
    _spl(folder).write_bytes(("\n".join(lines)).encode())
    res = by_name(folder)["samples vs PTD's summary"]
    assert res.status == "fail" and "above PTD's maximum 270.460000 W" in res.message and "official checker does not compare" in res.message


def test_a_truncated_spl_txt_fails(tmp_path):
    folder = copy(V40, tmp_path / "r")
    lines = [ln for ln in _spl(folder).read_bytes().decode().split("\n") if ln.startswith("Time")]
    _spl(folder).write_bytes(("\n".join(lines[:10]) + "\n").encode())
    res = by_name(folder)["samples vs PTD's summary"]
    assert res.status == "fail" and "10 samples in the file, PTD counted 718" in res.message


def test_a_small_edit_inside_ptds_range_moves_the_average_and_fails(tmp_path):
    folder = copy(V40, tmp_path / "r")
    text = _spl(folder).read_bytes().decode()
    lines = text.split("\n")
    parts = lines[200].split(",")
    parts[3] = f"{float(parts[3]) - 1:.6f}"
    lines[200] = ",".join(parts)
    _spl(folder).write_bytes(("\n".join(lines)).encode())
    res = by_name(folder)["samples vs PTD's summary"]
    assert res.status == "fail" and "PTD's summary says 267.269387 W" in res.message


# --- a session recorded through labconsole's emulator (item 6) --------------------------------------------------------
def test_a_session_recorded_through_the_emulator_is_flagged_and_still_passes(tmp_path):
    s = make_session(tmp_path / "Offline" / "performance")
    ident = next(m for m in s.server["ptd_messages"] if m["cmd"] == "Identify")
    ident["reply"] = ident["reply"].replace("OS=Linux", "OS=labconsole-emulator (Linux 6.1)")
    s.save()
    res = by_name(s.root)
    assert res["measurement evidence"].status == "warn" and "not measurement evidence" in res["measurement evidence"].message
    assert checks.passed(list(res.values()))
    # a real meter: no such line
    assert "measurement evidence" not in by_name(V40)


def test_a_bundle_recorded_through_an_emulator_is_flagged(tmp_path):
    root = make_bundle(tmp_path)
    env = {"sources": [{"name": "wall", "driver": "ptd", "identity": {"model": "YokogawaWT310E", "serial": "EMU0001", "extra": {"emulator": True}}}]}
    (root / "data" / "environment.json").write_text(json.dumps(env))
    res = by_name(root)["measurement evidence"]
    assert res.status == "warn" and "source wall" in res.message and "not measurement evidence" in res.message


# --- the class as a property: no damaged copy passes, none is called "missing" when present ------------------------
V30_PERF = V30 / "SingleStream" / "performance"
SESSION_FILES = sorted(str(p.relative_to(V30_PERF)) for p in V30_PERF.rglob("*") if p.is_file())
DAMAGES = {
    "bom": lambda b: BOM + b,
    "prefix": lambda b: b"\x00garbage," + b,
    "truncate": lambda b: b[: len(b) // 2],
    "infinite": lambda b: b.replace(b"Watts,1", b"Watts,inf,1", 1) if b"Watts,1" in b else b"x" + b,
    "empty": lambda b: b"",
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.sampled_from(SESSION_FILES), min_size=1, max_size=4, unique=True), damage=st.sampled_from(sorted(DAMAGES)))
def test_no_damaged_copy_of_a_published_result_passes(tmp_path_factory, files, damage):
    folder = copy(V30_PERF, tmp_path_factory.mktemp("dmg") / "performance")
    for rel in files:
        p = folder / rel
        p.write_bytes(DAMAGES[damage](p.read_bytes()))
    res = checks.run_checks(open_run(folder))
    assert not checks.passed(res), (files, damage)
    for r in res:
        assert not r.message.startswith("could not be checked"), (r.name, r.message)  # no check crashed
        if r.origin == "mlperf" and r.name.startswith("Check "):
            for rel in files:  # a file that is there is never reported "missing"
                assert f"{rel} is missing" not in r.message, (r.name, r.message)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.sampled_from(sorted(DAMAGES)), which=st.sampled_from(["data/run.json", "data/testing/samples-wall.csv", "data/events.jsonl", "data/testing/loadgen/mlperf_log_detail.txt"]))
def test_no_damaged_sealed_bundle_passes(tmp_path_factory, damage, which):
    root = sealed_bundle(tmp_path_factory.mktemp("b"))
    p = root / which
    p.write_bytes(DAMAGES[damage](p.read_bytes()))
    res = {r.name: r for r in checks.run_checks(open_run(root))}
    assert res["manifest"].status == "fail" and which in res["manifest"].message
    assert not checks.passed(list(res.values()))


def test_a_bundle_read_through_an_older_ptd_is_not_submission_grade(tmp_path):
    root = make_bundle(tmp_path)
    for version, status in (("1.10.0", "warn"), ("1.11.1", "pass")):
        env = {"sources": [{"name": "wall", "driver": "ptd", "identity": {"model": "YokogawaWT310E", "serial": "C2PH13047V", "extra": {"ptd_version": version}}}]}
        (root / "data" / "environment.json").write_text(json.dumps(env))
        res = by_name(root)["Check PTD configuration"]
        assert res.status == status and f"PTD {version}" in res.message, res.message
