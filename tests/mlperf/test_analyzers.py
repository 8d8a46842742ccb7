"""Several power analyzers for one SUT (MLPerf Inference), as power-dev's director runs them:
the merge of their sample files against power-dev's own `merge_power_logs`, the `[analyzerN]`
configuration, and a two-analyzer bundle exported, then read back by `report` and `check`."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import List

import numpy as np
import pytest

from conftest import ROOT, run_cli
from labconsole.instruments.ptd import parse_power_time, parse_powerdev_analyzers
from labconsole.mlperf.export import export_mlperf
from labconsole.mlperf.powerdev import merge_power_logs
from labconsole.samples.batch import empty_batch
from labconsole.samples.streams import SampleStreamWriter
from mlperf_fakes import write_detail_log

POWER_DEV = ROOT.parent / "shared" / "vendor" / "power-dev"
SERVER_PY = POWER_DEV / "ptd_client_server" / "lib" / "server.py"
S = 1_000_000_000
T0 = 1_764_000_000_000_000_000


def powerdev_merge():
    """power-dev's merge_power_logs, taken from the vendored server.py as it is (not copied)."""
    if not SERVER_PY.is_file():
        pytest.skip(f"power-dev is not vendored at {POWER_DEV} (../shared/vendor/power-dev from the project root)")
    tree = ast.parse(SERVER_PY.read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "merge_power_logs")
    ns: dict = {"List": List}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(SERVER_PY), "exec"), ns)
    return ns["merge_power_logs"]


def line(t: str, w: str, v="230.000000", a="0.500000", pf="0.950000", mark="s_testing") -> str:
    return f"Time,{t},Watts,{w},Volts,{v},Amps,{a},PF,{pf},Mark,{mark}"


CASES = {
    "equal": [
        [line("01-02-2026 10:00:00.000", "100.500000"), line("01-02-2026 10:00:01.000", "101.250000")],
        [line("01-02-2026 10:00:00.003", "50.125000"), line("01-02-2026 10:00:01.002", "49.875000")],
    ],
    # -1 (analyzer off) left out of the sum, negative readings made positive, unequal lengths
    "invalid-negative-unequal": [
        [line("01-02-2026 10:00:00.000", "-1.000000", "-1.000000", "-1.000000", "-1.000000"), line("01-02-2026 10:00:01.000", "-120.000000"), line("01-02-2026 10:00:02.000", "7.0")],
        [line("01-02-2026 10:00:00.010", "80.000000"), line("01-02-2026 10:00:01.010", "81.000000")],
        [line("01-02-2026 10:00:00.020", "1.000000"), line("01-02-2026 10:00:01.020", "2.000000"), line("01-02-2026 10:00:02.020", "3.0"), line("01-02-2026 10:00:03.020", "4.0")],
    ],
    # a damaged line (skipped as power-dev skips it), a multichannel analyzer's line, CRLF
    "garbage-multichannel": [
        [line("01-02-2026 10:00:00.000", "10.000000"), "Time,01-02-2026 10:00:01.000,Watts,oops", line("01-02-2026 10:00:02.000", "12.000000")],
        [line("01-02-2026 10:00:00.000", "30.000000") + ",Ch1,Watts,10.000000,Volts,230.0,Amps,0.1,PF,0.9,Ch2,Watts,20.000000,Volts,230.0,Amps,0.2,PF,0.9"] * 3,
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_merge_is_power_devs_byte_for_byte(tmp_path, case, ending):
    official = powerdev_merge()
    texts = [ending.join(lines) + ending + ending for lines in CASES[case]]  # PTD files end with an empty line
    files = []
    for i, text in enumerate(texts, start=1):
        p = tmp_path / f"spl_analyzer_{i}.txt"
        p.write_bytes(text.encode())
        files.append(str(p))
    official(files, str(tmp_path / "spl.txt"))
    expected = (tmp_path / "spl.txt").read_bytes().decode()
    assert merge_power_logs(texts) == expected
    assert expected  # every case merges at least one line


def test_merge_sums_watts_and_blanks_volts_amps_pf():
    a = [line("01-02-2026 10:00:00.000", "100.000000", mark="x_ranging")]
    b = [line("01-02-2026 10:00:00.250", "-25.500000", mark="other")]
    merged = merge_power_logs(["\n".join(a) + "\n\n", "\n".join(b) + "\n\n"])
    fields = merged.rstrip("\n").split(",")
    # time and mark from analyzer 1; |W| summed; V, A, PF -1; then each analyzer's raw line
    assert fields[:12] == ["Time", "01-02-2026 10:00:00.000", "Watts", "125.500000", "Volts", "-1.000000", "Amps", "-1.000000", "PF", "-1.000000", "Mark", "x_ranging"]
    assert fields[12] == "Analyzer1" and fields[25] == "Analyzer2" and fields[29] == "-25.500000"


CONF = """
[server]
ntpServer: 127.0.0.1
[ptd]
ptd: /opt/ptd/ptd-linux-x86
analyzerCount: 2
[analyzer1]
deviceType: 49
interfaceFlag: -y
devicePort: C2PH13047V
networkPort: 8888
[analyzer2]
deviceType: 77
interfaceFlag:
devicePort: /dev/ttyUSB0
networkPort: 8889
channel: 1,2
"""


def test_powerdev_config_names_each_analyzer_and_its_port():
    a1, a2 = parse_powerdev_analyzers(CONF)
    assert (a1.index, a1.device_type, a1.interface_flag, a1.device_port, a1.network_port, a1.channel) == (1, 49, "-y", "C2PH13047V", 8888, None)
    assert (a2.index, a2.device_type, a2.interface_flag, a2.network_port, a2.channel) == (2, 77, "", 8889, (1, 2))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("[analyzer2]", "[analyzerX]"), "[analyzer2] is missing"),
        (lambda t: t.replace("networkPort: 8889", "networkPort: 8888"), "share a networkPort"),
        (lambda t: t.replace("deviceType: 77\n", ""), "[analyzer2] deviceType: required"),
        (lambda t: t.replace("analyzerCount: 2", "analyzerCount: two"), "[ptd] analyzerCount: cannot read 'two'"),
        # the stale template form: analyzer keys under [ptd], no [analyzer1] (power-dev HEAD fails it too)
        (lambda t: t[: t.index("[analyzer1]")].replace("analyzerCount: 2", "deviceType: 49"), "[analyzer1] is missing"),
    ],
)
def test_powerdev_config_mistakes_are_named(edit, message):
    with pytest.raises(ValueError) as err:
        parse_powerdev_analyzers(edit(CONF), "server.conf")
    assert message in str(err.value) and str(err.value).startswith("server.conf: ")


# --- a two-analyzer bundle, exported and read back ---------------------------------------------------
def make_two_analyzer_bundle(tmp_path: Path, lengths=(41, 41)) -> Path:
    root = tmp_path / "bundle"
    data = root / "data"
    data.mkdir(parents=True)
    analyzers = [{"model": "YokogawaWT310E", "serial": f"C2PH0000{i}", "address": f"ptd://127.0.0.1:{8887 + i}"} for i in (1, 2)]
    run = {"id": "4f0c6a3e-0000-4000-8000-000000000002", "exit_status": "completed", "primary_source": "wall", "scenario": "Offline",
           "start": "2025-11-24T16:00:00.000Z", "sources": [{"name": "wall", "driver": "ptd", "scope": "wall", "sample_interval_s": 0.25}]}
    (data / "run.json").write_text(json.dumps(run))
    ident = {"model": "YokogawaWT310E + YokogawaWT310E", "extra": {"analyzer_count": 2, "analyzers": analyzers}}
    (data / "environment.json").write_text(json.dumps({"sources": [{"name": "wall", "driver": "ptd", "identity": ident}]}))
    events = []
    for k, phase in enumerate(("ranging", "testing")):
        base = T0 + k * 20 * S
        events.append({"kind": "phase_start", "message": phase, "phase": phase, "data": {}, "wall_ns": base})
        write_detail_log(data / phase / "loadgen", "Offline", base + S, base + 9 * S, queries=500, extra={"result_samples_per_second": 777.0})
        w = SampleStreamWriter(data / phase / "samples-wall.csv", fsync=False)
        for a, n in zip((1, 2), lengths):
            b = empty_batch(n)
            b["wall_ns"] = [base + i * S // 4 + 137_000 + a * 2_000_000 for i in range(n)]
            b["mono_ns"] = np.arange(n)
            b["watts"] = [round(50 + a * 10 + ((i * 7919) % 13) / 13 + k, 6) for i in range(n)]
            b["volts"], b["amps"], b["pf"] = 230.0, 0.3, 0.9
            if a == 2:
                b["status"][7] = 2  # analyzer 2 had no reading once: PTD's -1, left out of the sum
            w.append(f"analyzer{a}", b)
        w.close()
        events.append({"kind": "phase_end", "message": f"{phase} done", "phase": phase, "data": {}, "wall_ns": base + 11 * S})
    (data / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root


def test_export_writes_each_analyzer_and_the_merge(tmp_path):
    bundle = make_two_analyzer_bundle(tmp_path, lengths=(41, 39))
    out = tmp_path / "mlperf"
    res = export_mlperf(bundle, out)
    for sub, ext in (("ranging", "csv"), ("run_1", "txt")):
        texts = [(out / sub / f"spl_analyzer_{i}.{ext}").read_text() for i in (1, 2)]
        assert [t.count("\n") - 1 for t in texts] == [41, 39]
        assert texts[1].splitlines()[7].split(",")[3] == "-1.000000"
        assert (out / sub / "spl.txt").read_text() == merge_power_logs(texts)  # merged from the written files
        assert len((out / sub / "spl.txt").read_text().splitlines()) == 39
    assert any("2 analyzers merged as power-dev merges them" in n and "[41, 39]" in n for n in res.notes)
    server = json.loads((out / "power" / "server.json").read_text())
    assert [c["device_type"] for c in server["ptd_config"]] == [49, 49]
    assert [c["device_port"] for c in server["ptd_config"]] == ["ptd://127.0.0.1:8888", "ptd://127.0.0.1:8889"]

    # read back as MLPerf reads it: the mean of the merged Watts column in the window
    rep = run_cli("report", str(out), "--json")
    assert rep.returncode == 0, rep.stderr
    power = json.loads(rep.stdout)["power"]
    merged = [ln.split(",") for ln in (out / "run_1" / "spl.txt").read_text().splitlines()]
    begin, end = T0 + 21 * S, T0 + 29 * S
    inside = [float(f[3]) for f in merged if begin < parse_power_time(f[1]) < end and float(f[3]) > 0]
    assert power["avg_watts"] == pytest.approx(sum(inside) / len(inside), rel=1e-12)
    assert power["samples_in_window"] == len(inside)

    chk = run_cli("check", str(out), "--json")
    checks = {c["name"]: c for c in json.loads(chk.stdout)["checks"]}
    assert checks["Check PTD configuration"]["status"] == "pass" and "49, 49" in checks["Check PTD configuration"]["message"]
    assert checks["power window"]["status"] == "pass"


def test_bundle_metric_sums_the_analyzers(tmp_path):
    rep = run_cli("report", str(make_two_analyzer_bundle(tmp_path)), "--json")
    assert rep.returncode == 0, rep.stderr
    power = json.loads(rep.stdout)["power"]
    chans = power["channels"]
    assert set(chans) == {"analyzer1", "analyzer2"}
    assert power["avg_watts"] == pytest.approx(chans["analyzer1"]["avg_watts"] + chans["analyzer2"]["avg_watts"])
    chk = run_cli("check", str(make_two_analyzer_bundle(tmp_path / "b")), "--json")
    ptd = next(c for c in json.loads(chk.stdout)["checks"] if c["name"] == "Check PTD configuration")
    assert ptd["status"] == "pass" and "analyzer 1" in ptd["message"] and "analyzer 2" in ptd["message"]
