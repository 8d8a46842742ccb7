"""MLPerf Tiny energy scoring on the two published results (tests/fixtures/tiny-results/README.md).

The published medians are pinned: EnergyRunner's to 0.02 % (its JSON timestamps have 3 decimals,
its windows were cut on finer ones), the MLCommons runner's exactly as printed.
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from conftest import FIXTURES, run_cli
from labconsole.mlperf.tiny import analysis, folders, scoring

TINY = FIXTURES / "tiny-results"
KRAI = TINY / "v1.1__Krai__NUCLEO-L4R5ZI_X-CUBE-AI-7.3__ad__energy"
ST = TINY / "v1.3__STMicroelectronics__NUCLEO_L4R5ZI-P__kws__energy"
KRAI_MEDIAN, ST_MEDIAN = 529.299, 1430.6681  # the README's published medians


def test_energyrunner_median_within_0_02_pct_and_each_window_as_results_txt():
    run = folders.read_tiny(KRAI)
    rep = analysis.report(run)
    assert rep["metric"]["name"] == "energy per inference" and rep["metric"]["unit"] == "uJ/inf"
    assert rep["metric"]["value"] == pytest.approx(KRAI_MEDIAN, rel=2e-4)
    assert len(rep["windows"]) == 5
    # results.txt's per-window Energy/Inf., each within 0.02 % too; runtime = t1 - t0 as printed
    published = [524.438, 529.127, 529.299, 529.509, 529.645]
    for w, p, rt in zip(rep["windows"], published, [11.373, 11.371, 11.371, 11.372, 11.374]):
        assert w["uj_per_inf"] == pytest.approx(p, rel=2e-4)
        assert w["inferences"] == 1500 and w["runtime_s"] == pytest.approx(rt, abs=1e-9)
        assert w["energy_uj"] == pytest.approx(w["uj_per_inf"] * 1500)
    # window 1 (9.091 .. 20.464 s): the published 786656.360 uJ to the last printed digit
    assert rep["windows"][0]["energy_uj"] == pytest.approx(786656.360, abs=5e-4)
    assert rep["median_throughput_inf_s"] == pytest.approx(131.903, abs=5e-4)
    assert rep["published"]["median_uj_per_inf"] == KRAI_MEDIAN and rep["published"]["matches"]


def test_mlcommons_runner_median_exact_and_each_trial_as_printed():
    rep = analysis.report(folders.read_tiny(ST))
    assert rep["metric"]["value"] == ST_MEDIAN
    assert f"{rep['metric']['unrounded']:5.4f}" == "1430.6681"
    printed = [(357855.490, 1431.422, "10.886000000000001"), (357667.030, 1430.668, "10.879000000000001"), (357475.430, 1429.902, "10.873"), (357824.650, 1431.299, "10.889999999999999"), (357414.780, 1429.659, "10.865")]
    for w, (energy, per_inf, elapsed) in zip(rep["windows"], printed):
        assert f"{w['energy_uj']:.3f}" == f"{energy:.3f}" and f"{w['uj_per_inf']:.3f}" == f"{per_inf:.3f}"
        assert str(w["runtime_s"]) == elapsed  # the runner's own float arithmetic
    # trial 0 has 3 events (an extra edge at the start): the window is the last two
    assert (rep["windows"][0]["start_sample"], rep["windows"][0]["stop_sample"]) == (4042, 14928)
    assert rep["published"]["matches"] and rep["published"]["tolerance"].startswith("exact")
    assert "median_throughput_inf_s" not in rep  # the MLCommons runner prints none in energy mode
    assert rep["dut"] == {"name": "STMicroelectronics", "profile": "ULPMark for tinyML Firmware V0.0.1", "model": "kws01"}


def test_energyrunner_window_rule_is_ceil_on_both_edges():
    x = np.arange(10, dtype=np.float64)  # sample i holds i µJ
    w = scoring.window_at_times(x, 1000.0, 0.0021, 0.005, 1, 0, 1.0)
    assert (w.start, w.stop, w.energy) == (3, 5, 3 + 4)
    w = scoring.window_at_times(x, 1000.0, 0.003, 0.006, 1, 0, 1.0)  # on a sample: included at the start, excluded at the end
    assert (w.start, w.stop) == (3, 6)
    assert scoring.pair_edges([0.1, 1, 2, 3, 4]) == [(1, 2), (3, 4)]  # odd count: the first is the sync edge
    assert scoring.pair_edges([1, 2, 3, 4]) == [(1, 2), (3, 4)]


def test_median_uses_every_window_even_short_ones_and_checks_warn():
    x = np.ones(30_000)
    ws = [scoring.window_at_indices(x, 1000.0, 0, n, 10, k, 1e6) for k, n in enumerate([2000, 12_000, 11_000, 13_000, 10_500])]
    assert scoring.median_uj_per_inf(ws) == pytest.approx(11_000 / 10 * 1e6)
    run = folders.TinyRun(KRAI, scoring.MLCOMMONS, "mlcommons", 1000.0, ws, 30_000, voltage_v=1.8, supplies=1, lost_samples=0)
    by = {c.name: c for c in analysis.checks(run)}
    assert by["tiny: window length"].status == "warn" and "1: 2.000 s" in by["tiny: window length"].message
    assert by["tiny: 5 windows"].status == "pass"
    run.windows = ws[:4]
    assert {c.name: c for c in analysis.checks(run)}["tiny: 5 windows"].status == "fail"


def test_checks_fail_on_lost_samples_skipped_counters_dut_errors_and_two_supplies(tmp_path):
    st = tmp_path / "st"
    shutil.copytree(ST, st)
    trials = json.loads((st / "results.json").read_text())
    trials[1]["power"]["timestamps"][0][0] = "07"  # counter 07 then 04: an edge was lost
    (st / "results.json").write_text(json.dumps(trials))
    with open(st / "log.txt", "a") as fh:
        fh.write("e-[Invalid hex digit 'zz']\n")
    by = {c.name: c.status for c in analysis.checks(folders.read_tiny(st))}
    assert by["tiny: timestamps consecutive"] == "fail" and by["tiny: DUT errors"] == "fail"
    assert by["tiny: published median"] == "pass"  # the samples were not touched
    krai = tmp_path / "krai"
    shutil.copytree(KRAI, krai)
    raw = (krai / "trace1-energy.bin").read_bytes()
    (krai / "trace1-energy.bin").write_bytes(raw[: 5 + 4 * 90_000])  # cut before the last timestamp
    (krai / "log.txt").write_text((krai / "log.txt").read_text().replace("mountc emon emon", "mountc emon emon\nmountc emon2 emon"))
    by = {c.name: c.status for c in analysis.checks(folders.read_tiny(krai))}
    assert by["tiny: no lost samples"] == "fail" and by["tiny: published median"] == "fail"


def test_a_changed_sample_moves_the_median_off_the_published_line(tmp_path):
    krai = tmp_path / "krai"
    shutil.copytree(KRAI, krai)
    raw = bytearray((krai / "trace1-energy.bin").read_bytes())
    fs, = struct.unpack("<f", raw[1:5])
    x = np.frombuffer(bytes(raw[5:]), dtype="<f4").copy()
    x[48_100:59_400] *= 1.01  # window 3 (the median one) 1 % higher
    (krai / "trace1-energy.bin").write_bytes(bytes(raw[:5]) + x.astype("<f4").tobytes())
    rep = analysis.report(folders.read_tiny(krai))
    assert not rep["published"]["matches"] and rep["metric"]["value"] > KRAI_MEDIAN * 1.0002


def test_bad_folders_are_clear_errors(tmp_path):
    (tmp_path / "trace1-energy.bin").write_bytes(b"\x00\x00")
    (tmp_path / "trace1-timestamps.json").write_text("[1, 2]")
    with pytest.raises(folders.TinyError, match="not an EnergyRunner trace"):
        folders.read_tiny(tmp_path)
    assert folders.find_tiny(tmp_path / "nope") is None
    r = run_cli("report", str(tmp_path))
    assert r.returncode == 2 and "trace1-energy.bin" in r.stderr


def test_cli_report_check_compare_on_the_published_folders(tmp_path):
    r = run_cli("report", "--json", str(ST))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["metric"] == {"name": "energy per inference", "value": ST_MEDIAN, "unit": "uJ/inf", "unrounded": rep["metric"]["unrounded"], "windows": 5}
    assert set(rep["windows"][0]) >= {"energy_uj", "inferences", "runtime_s", "uj_per_inf"}
    # the folder above energy/ is accepted too
    above = tmp_path / "ad"
    shutil.copytree(KRAI, above / "energy")
    r = run_cli("report", "--json", str(above))
    assert r.returncode == 0 and json.loads(r.stdout)["metric"]["value"] == pytest.approx(KRAI_MEDIAN, rel=2e-4)
    r = run_cli("check", str(KRAI))
    assert r.returncode == 0 and "PASSED" in r.stdout and "tiny: published median" in r.stdout
    r = run_cli("compare", "--json", str(KRAI), str(ST))
    assert r.returncode == 0
    cmp = json.loads(r.stdout)
    metric = next(f for f in cmp["figures"] if f["key"] == "metric")
    assert metric["a"] == pytest.approx(KRAI_MEDIAN, rel=2e-4) and metric["b"] == ST_MEDIAN
    assert any("models differ" in n for n in cmp["notes"])
    r = run_cli("report", "--scenario", "Offline", str(ST))
    assert r.returncode == 2


@pytest.mark.parametrize("folder", [KRAI, ST], ids=["energyrunner", "mlcommons"])
def test_replay_plays_a_published_folder_with_its_windows_marked(folder):
    import math
    import time

    from labconsole import events as ev
    from labconsole.mlperf.tiny.replay import scratch_bundle
    from labconsole.session.replay import ReplaySession

    run = folders.read_tiny(folder)
    with scratch_bundle(run) as bundle:
        s = ReplaySession(bundle, speed=math.inf)
        s.start()
        try:
            deadline = time.monotonic() + 60
            while not s.finished and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.finished and s.status == "replayed"
            _, events = s.poll_events()
            windows = [e.data["tiny_window"] for e in events if e.kind == ev.STEP]
            assert len(windows) == 5 and all(w["stop_s"] - w["start_s"] == pytest.approx(win.runtime_s, abs=2e-3) for w, win in zip(windows, run.windows))
            result = [e for e in events if e.kind == ev.RESULT]
            assert result and result[0].data["metric"]["value"] == run.metric_value
            ring = s.rings()[("lpm01a", "main")]
            assert ring.total == run.total_samples
        finally:
            s.close()
        # the power the console plots is the energy per period x rate: the same energy in each window
        from labconsole.bundle.reader import open_run

        frame = open_run(bundle).phases["testing"].samples
        j = frame["watts"].to_numpy() / run.sample_rate_hz
        if run.runner == "energyrunner":
            w = run.windows[2]
            assert j[w.start : w.stop].sum() * 1e6 == pytest.approx(w.energy_uj, rel=1e-6)
    assert not bundle.exists()


def test_text_from_a_folder_is_made_printable(tmp_path):
    st = tmp_path / "st"
    shutil.copytree(ST, st)
    log = (st / "log.txt").read_text().replace("Device model retrieved: kws01", "Device model retrieved: kws01\x1b[2J\x07")
    (st / "log.txt").write_text(log)
    run = folders.read_tiny(st)
    assert run.dut["model"] == "kws01[2J"
    r = run_cli("report", str(st))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout
