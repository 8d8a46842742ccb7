"""`report`, `check` and the Results screen read a bundle's phases chunk by chunk
(`open_run(stream=True)`): the same figures, bit for bit, as the whole-frame path, however the
chunks are cut (one sample at a time, a window edge inside a chunk, chunks with nothing in the
window), on data with NaN, infinities, invalid statuses, gaps and a clock that steps back; and
the memory of `report` stays flat as the phase grows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from labconsole.bundle.reader import open_run
from labconsole.mlperf import checks, metrics
from labconsole.mlperf.checks import rules
from labconsole.samples.batch import GAP, NO_DATA, OK, OVERRANGE, empty_batch
from labconsole.samples.streams import BinarySampleStreamWriter, SampleStreamWriter
from labconsole.samples.table import StreamTable
from labconsole.session.results import power_envelopes
from mlperf_fakes import write_detail_log

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _stream(path, channels, n, rng, *, period_ns, start_ns, fmt_flush=97, hostile=True, counter=False, uncertainty=False, mono_back=False):
    w = (BinarySampleStreamWriter if path.suffix == ".bin" else SampleStreamWriter)(path, fsync=False)
    for a in range(0, n, fmt_flush):
        k = min(fmt_flush, n - a)
        for ci, ch in enumerate(channels):
            b = empty_batch(k)
            i = np.arange(a, a + k)
            b["wall_ns"] = start_ns + i * period_ns + ci
            b["mono_ns"] = i * period_ns
            if mono_back and a > n // 2:
                b["mono_ns"] -= 10 * period_ns  # a clock that steps back: the wall clock is used
            b["watts"] = 100.0 + rng.normal(size=k) * 3.0 + ci
            if hostile:
                r = rng.random(k)
                b["watts"][r < 0.01] = np.nan
                b["watts"][(r > 0.5) & (r < 0.503)] = np.inf
                b["watts"][(r > 0.6) & (r < 0.602)] = -np.inf
                b["watts"][(r > 0.7) & (r < 0.71)] = 0.0
                b["watts"][(r > 0.8) & (r < 0.81)] = -5.0
                b["status"][(r > 0.2) & (r < 0.22)] = NO_DATA
                b["status"][(r > 0.3) & (r < 0.305)] = OVERRANGE
                b["status"][(r > 0.4) & (r < 0.402)] = GAP
            if counter:
                b["energy_j"] = (i * period_ns / S) * 100.0 + ci
            if uncertainty:
                b["uncertainty_w"] = np.where(rng.random(k) < 0.9, np.abs(b["watts"]) * 0.004, np.nan)
            if a > n // 3 and a < n // 3 + 3 * fmt_flush:
                continue  # a gap: three flushes' worth of samples never came
            w.append(ch, b)
        w.flush()
    w.close()


def make_bundle(tmp_path, n=3000, seed=0, fmt=".bin"):
    rng = np.random.default_rng(seed)
    root = tmp_path / f"bundle-{seed}{fmt[1:]}"
    data = root / "data"
    data.mkdir(parents=True)
    period = 2_000_000  # 500 Hz
    run = {
        "exit_status": "completed",
        "scenario": "Offline",
        "primary_source": "meter",
        "sources": [
            {"name": "meter", "scope": "wall", "sample_interval_s": period / S},
            {"name": "gpu", "scope": "gpu", "sample_interval_s": period / S},
        ],
    }
    (data / "run.json").write_text(json.dumps(run))
    for phase, start in (("idle", T0 - 100 * S), ("ranging", T0 - 50 * S), ("testing", T0)):
        folder = data / phase
        folder.mkdir()
        _stream(folder / f"samples-meter{fmt}", ["main"], n, rng, period_ns=period, start_ns=start, uncertainty=True)
        _stream(folder / f"samples-gpu{fmt}", ["gpu0", "gpu1"], n // 2, rng, period_ns=2 * period, start_ns=start, counter=True, mono_back=True)
        if phase != "idle":
            # the window's edges fall inside chunks, and exactly on a sample (strict window)
            write_detail_log(folder / "loadgen", "Offline", start + 101 * period, start + (n - 57) * period, extra={"result_samples_per_second": 500.0})
    return root


def _set_chunks(record, rows):
    for ph in record.phases.values():
        if isinstance(ph.samples, StreamTable):
            ph.samples.chunk_rows = rows


def _text(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)  # floats by repr: equal text = equal bits


@pytest.mark.parametrize("fmt", [".bin", ".csv"])
def test_report_and_checks_streamed_are_the_whole_frame_figures_bit_for_bit(tmp_path, fmt, monkeypatch):
    from labconsole.samples import streams

    monkeypatch.setattr(streams, "CSV_PIECE_BYTES", 1500)  # CSV is read in pieces of ~15 lines
    root = make_bundle(tmp_path, n=700, fmt=fmt)
    whole = open_run(root)
    assert not isinstance(whole.phases["testing"].samples, StreamTable)
    want_report = _text(metrics.compute_report(whole))
    want_checks = _text([c.as_dict() for c in checks.run_checks(whole)])
    for rows in (1, 3, 64, 1000, 1 << 20):
        rec = open_run(root, stream=True)
        assert isinstance(rec.phases["testing"].samples, StreamTable)
        _set_chunks(rec, rows)
        assert _text(metrics.compute_report(rec)) == want_report, rows
        assert _text([c.as_dict() for c in checks.run_checks(rec)]) == want_checks, rows


def _left_to_right(values) -> float:
    total = 0.0
    for v in values:
        total += float(v)
    return total


def test_streamed_figures_are_the_ones_computed_sample_by_sample(tmp_path):
    """An independent reference: each figure computed row by row in Python, MLPerf's way
    (strict window, status OK, 0 < watts < inf, summed left to right in sample order)."""
    root = make_bundle(tmp_path, seed=3)
    rec = open_run(root, stream=True)
    _set_chunks(rec, 5)
    rep = metrics.compute_report(rec)
    frame = open_run(root).phases["testing"].samples
    meter = frame[frame["source"] == "meter"]
    b, e = rec.phases["testing"].detail.power_begin_ns, rec.phases["testing"].detail.power_end_ns
    rows = list(zip(meter["wall_ns"].tolist(), meter["watts"].tolist(), meter["status"].tolist()))
    inside = [(w, s) for t, w, s in rows if b < t < e]
    counted = [w for w, s in inside if s == OK and 0 < w < math.inf]
    assert rep["power"]["samples_in_window"] == len(counted)
    assert rep["power"]["avg_watts"] == _left_to_right(counted) / len(counted)  # an infinite reading is invalid, never averaged
    assert rep["power"]["invalid_in_window"] == len(inside) - len(counted)
    # the whole-phase mean and the idle baseline: left to right too
    valid = [w for _, w, s in rows if s == OK and 0 < w < math.inf]
    assert rep["phases"]["testing"]["avg_watts"] == _left_to_right(valid) / len(valid)
    gpu = frame[frame["source"] == "gpu"]
    per = {}
    for t, ch, w, s in zip(gpu["wall_ns"], gpu["channel"].astype(str), gpu["watts"], gpu["status"]):
        if b < t < e and s == OK and 0 < w < math.inf:
            per.setdefault(ch, []).append(w)
    want = 0.0
    for ch in ("gpu0", "gpu1"):
        assert rep["sources"]["gpu"]["channels"][ch]["avg_watts"] == _left_to_right(per[ch]) / len(per[ch])
        want += _left_to_right(per[ch]) / len(per[ch])
    assert rep["sources"]["gpu"]["avg_watts"] == want
    # the energy counter, interpolated at both edges exactly as np.interp over every reading
    energy = 0.0
    for ch in ("gpu0", "gpu1"):
        sub = gpu[(gpu["channel"] == ch) & np.isfinite(gpu["energy_j"].to_numpy())]
        t = sub["wall_ns"].to_numpy().astype(np.float64)
        energy += float(np.interp(e, t, sub["energy_j"].to_numpy()) - np.interp(b, t, sub["energy_j"].to_numpy()))
    assert rep["sources"]["gpu"]["counter_energy_j"] == energy


def _old_regularity(frame, begin_ns, end_ns, expected_s):
    """The whole-frame regularity as it was before streaming (np.median, np.percentile, sums)."""
    wall = frame["wall_ns"].to_numpy()
    inside = (wall > begin_ns) & (wall < end_ns) & (frame["status"].to_numpy() != GAP)
    sub = frame[inside]
    window_s = (end_ns - begin_ns) / 1e9
    n = len(sub)
    out = {"samples": n, "window_s": window_s, "expected_s": expected_s}
    if n < 2:
        out.update(median_s=math.nan, max_gap_s=window_s, gap_s=window_s, gaps=1)
        return out
    mono = sub["mono_ns"].to_numpy()
    if np.all(np.diff(mono) > 0):
        t = (sub["wall_ns"].to_numpy()[0] + (mono - mono[0])).astype(np.float64) / 1e9
    else:
        t = sub["wall_ns"].to_numpy().astype(np.float64) / 1e9
    dt = np.diff(t)
    median = float(np.median(dt))
    ref = max(expected_s or 0.0, median)
    threshold = 2.5 * ref
    edges = [(wall[inside][0] - begin_ns) / 1e9, (end_ns - wall[inside][-1]) / 1e9]
    spans = np.concatenate([dt, edges])
    big = spans[spans > threshold]
    out.update(median_s=median, p99_s=float(np.percentile(dt, 99)), max_gap_s=float(spans.max()), gaps=int(len(big)), gap_s=float((big - ref).sum()) if len(big) else 0.0, threshold_s=threshold)
    return out


@pytest.mark.parametrize("gather", [0, 1 << 30])  # exact selection in passes, and gathering
def test_regularity_streamed_is_the_old_whole_frame_regularity(tmp_path, monkeypatch, gather):
    from labconsole.samples import reduce

    monkeypatch.setattr(reduce, "GATHER_LIMIT", gather)
    root = make_bundle(tmp_path, seed=5)
    frame = open_run(root).phases["testing"].samples
    rec = open_run(root, stream=True)
    _set_chunks(rec, 7)
    ph = rec.phases["testing"]
    b, e = ph.detail.power_begin_ns, ph.detail.power_end_ns
    groups = rules.sample_groups(ph.samples, rules._REGULARITY_COLUMNS)
    assert [k for k, _ in groups] == [("gpu", "gpu0"), ("gpu", "gpu1"), ("meter", "main")]
    for (src, ch), chunks in groups:
        sub = frame[(frame["source"] == src) & (frame["channel"] == ch)]
        old = _old_regularity(sub, b, e, 0.002)
        assert _text(rules.regularity(chunks, b, e, 0.002)) == _text(old)
        assert _text(rules.regularity(sub, b, e, 0.002)) == _text(old)
        assert old["gaps"] >= 1  # the gap in every stream is found


def test_a_phase_of_one_sample_and_a_window_with_nothing_in_it(tmp_path):
    root = tmp_path / "b"
    data = root / "data"
    (data / "testing").mkdir(parents=True)
    (data / "run.json").write_text(json.dumps({"exit_status": "completed", "primary_source": "m", "scenario": "Offline"}))
    one = empty_batch(1)
    one["wall_ns"], one["watts"] = T0 + 2 * S, 42.0
    w = BinarySampleStreamWriter(data / "testing" / "samples-m.bin", fsync=False)
    w.append("main", one)
    w.close()
    BinarySampleStreamWriter(data / "testing" / "samples-n.bin", fsync=False).close()  # no samples at all
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 + S, T0 + 3 * S)
    for rows in (1, 4):
        rec = open_run(root, stream=True)
        _set_chunks(rec, rows)
        assert _text(metrics.compute_report(rec)) == _text(metrics.compute_report(open_run(root)))
        assert metrics.compute_report(rec)["power"]["avg_watts"] == 42.0
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 + 5 * S, T0 + 6 * S)  # after every sample
    rec = open_run(root, stream=True)
    stats = metrics.phase_power(rec, "testing")
    assert stats.samples == 0 and math.isnan(stats.avg_w)
    assert _text([c.as_dict() for c in checks.run_checks(rec)]) == _text([c.as_dict() for c in checks.run_checks(open_run(root))])


def test_results_plots_are_envelopes_of_every_valid_sample(tmp_path):
    root = make_bundle(tmp_path, seed=7)
    rec = open_run(root, stream=True)
    _set_chunks(rec, 11)
    power, marks = power_envelopes(rec, buckets=64)
    whole = open_run(root)
    assert [name for _, name in sorted(marks)] == ["idle", "ranging", "testing"]
    assert sorted(marks)[0][0] == float(whole.phases["idle"].samples["wall_ns"].min()) / 1e9
    labels = [label for label, _, _ in power]
    assert labels == ["gpu/gpu0", "gpu/gpu1", "meter"]
    for label, t, y in power:
        assert len(t) <= 2 * 64
        src, _, ch = label.partition("/")
        frames = [ph.samples for ph in whole.phases.values()]
        ok = np.concatenate([f[(f["source"] == src) & (f["channel"] == (ch or "main")) & (f["status"] == OK)]["watts"].to_numpy() for f in frames])
        ok = ok[np.isfinite(ok)]
        assert np.nanmax(y) == ok.max() and np.nanmin(y) == ok.min()  # no spike lost


# ---------------------------------------------------------------------------------------------
# memory


def _write_big(root, n):
    data = root / "data"
    (data / "testing").mkdir(parents=True)
    (data / "run.json").write_text(json.dumps({"exit_status": "completed", "primary_source": "m", "scenario": "Offline",
                                               "sources": [{"name": "m", "scope": "wall", "sample_interval_s": 1e-5}]}))
    w = BinarySampleStreamWriter(data / "testing" / "samples-m.bin", fsync=False)
    per = 100_000  # a flush a second at 100 kHz
    rng = np.random.default_rng(0)
    for a in range(0, n, per):
        b = empty_batch(min(per, n - a))
        b["mono_ns"] = (a + np.arange(len(b))) * 10_000
        b["wall_ns"] = T0 + b["mono_ns"]
        b["watts"] = 100.0 + rng.random(len(b))
        w.append("main", b)
        w.flush()
    w.close()
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 - 1, T0 + n * 10_000)
    (data / "ranging").mkdir()
    os.link(data / "testing" / "samples-m.bin", data / "ranging" / "samples-m.bin")
    write_detail_log(data / "ranging" / "loadgen", "Offline", T0 - 1, T0 + n * 10_000)


def _peak_rss_bytes(args) -> tuple[int, str]:
    """Peak RSS of one command, measured by a fresh parent that runs only it."""
    probe = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout)"
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=300, check=True, cwd=ROOT).stdout
    kb, _, rest = out.partition("\n")
    return int(kb) * 1024, rest


def test_report_memory_does_not_grow_with_the_phase(tmp_path):
    """`report` on 8 M samples a phase (two phases) against the same on 10 k: whole-array
    loading needs at least two float64 columns of each phase (wall, watts: 32 bytes a sample,
    256 MB here; the code before streaming took ~36); streamed, the difference stays under one
    column of one phase (8 bytes a sample): a chunk's worth, whatever the phase's length."""
    n = 8_000_000
    _write_big(tmp_path / "big", n)
    _write_big(tmp_path / "small", 10_000)
    cmd = [sys.executable, "-m", "labconsole", "report", "--json"]
    small, _ = _peak_rss_bytes([*cmd, str(tmp_path / "small")])
    big, text = _peak_rss_bytes([*cmd, str(tmp_path / "big")])
    rep = json.loads(text)
    assert rep["power"]["samples_in_window"] == n and rep["phases"]["testing"]["samples"] == n
    assert big - small < n * 8, f"report on {n} samples a phase used {(big - small) / 1e6:.0f} MB more than on 10 k"
