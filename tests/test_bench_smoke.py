"""The benchmarks stay runnable (they are run by hand, never timed here): the list, and one
benchmark's building blocks on tiny inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_bench_lists_every_benchmark():
    out = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = [line.split()[1] for line in out.stdout.splitlines() if line.strip()]
    assert names == ["harness", "acquisition", "analysis", "plots", "startup", "replay", "memory", "tiny", "tinyrun", "fleet", "console", "training"]


def test_analysis_bench_building_blocks_on_a_tiny_bundle(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.analysis import baseline_in_process, make_bundle, report_in_process

    binary = make_bundle(tmp_path / "bin", 20_000, "binary")
    csv = make_bundle(tmp_path / "csv", 20_000, "csv")
    assert binary["testing"].suffix == ".bin" and csv["testing"].suffix == ".csv"
    rep = report_in_process(binary["path"])["report"]
    base = baseline_in_process(csv["testing"], csv["begin_ns"], csv["end_ns"])
    assert rep["power"]["samples_in_window"] == base["n"] == 20_000
    assert abs(rep["power"]["avg_watts"] - base["avg"]) < 1e-9 * base["avg"]


def test_plot_bench_repaints_through_the_run_screens_path_on_a_short_history():
    import asyncio

    sys.path.insert(0, str(ROOT))
    from bench.plots import TICK_SAMPLES, live_history, time_floor, time_ours

    t = asyncio.run(time_ours(2_000, reps=2))
    assert len(t.wall_ms) == len(t.build_ms) == 2 and t.frame_bytes > 0
    session, live = live_history(2_000)
    (h,) = live.histories.values()
    assert len(h) == 2_000 and session.ring.total == 2_000 and TICK_SAMPLES > 0
    assert len(asyncio.run(time_floor(1)).wall_ms) == 1


def test_replay_bench_recording_is_a_sealed_bundle_that_replays_every_sample(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.replay import make_recording, read_everything, replay_session, replay_source
    from labconsole.bundle.seal import verify

    rec = make_recording(tmp_path, duration_s=3600.0, rate_hz=0.5)  # the hour's shape, few samples
    assert rec["samples"] == 1800
    v = verify(rec["path"])
    assert v.ok, v.problems
    got = replay_session(rec["path"], rec["samples"])
    assert got["samples"] == rec["samples"] and got["events"] > 0
    assert replay_source(rec["path"])["samples"] == rec["samples"]
    plain = read_everything(rec["path"])
    assert plain["samples"] == rec["samples"] and plain["events"] == rec["events"]


def test_memory_bench_measures_both_report_paths_on_a_tiny_bundle(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.analysis import make_bundle
    from bench.memory import WHOLE_ARRAY_REPORT, measured

    b = make_bundle(tmp_path / "bin", 20_000, "binary")
    new = measured([sys.executable, "-m", "labconsole", "report", str(b["path"]), "--json"])
    old = measured([sys.executable, "-c", WHOLE_ARRAY_REPORT, str(b["path"])])
    assert new["rss_mb"] > 10 and old["rss_mb"] > 10 and new["wall"] > 0
    assert json.loads(new["stdout"])["power"] == json.loads(old["stdout"])["power"]


def test_tiny_stream_bench_scores_a_short_100khz_session():
    sys.path.insert(0, str(ROOT))
    from bench.core import Context
    from bench.tiny_stream import run

    ctx = Context(quick=True, verbose=False)
    try:
        res = run(ctx, seconds=12.0)
    finally:
        ctx.cleanup()
    rows = {r.figure: r for r in res.rows}
    assert rows["windows scored"].value == 5
    assert rows["samples lost (recorder, board TimeStamps, GAP rows)"].met
    assert rows["median energy per inference (5 windows)"].met  # the emulated DUT's 150 uJ within 0.5 %


def test_harness_bench_reads_the_issue_threads_wait_and_both_tail_percentiles(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.harness import run_bare, run_worker_alone

    for run in (run_bare, run_worker_alone):
        out = run("Server", 2_000.0, 1.5, tmp_path / run.__name__)
        assert out["validity"] == "VALID" and 0 < out["p99_ms"] <= out["p999_ms"], out
        # LoadGen's issue thread (the process's main thread) was seen over the test itself
        assert out["issue_cpu_ms_per_s"] is not None and out["issue_cpu_ms_per_s"] > 0, out
        assert out["issue_wait_ms_per_s"] is not None and out["issue_wait_ms_per_s"] >= 0, out
    assert out["stalls"] == []


def test_absence_probe_notes_every_issue_call_in_bare_loadgen_and_the_worker(tmp_path):
    """bench.absences loads its probe into both ways' processes through PYTHONPATH; if LoadGen
    or the worker stopped looking ConstructSUT up where the probe wraps it, nothing would be noted."""
    sys.path.insert(0, str(ROOT))
    from bench import absences
    from bench.harness import run_bare, run_worker_alone

    with absences.probe_in_children():
        for run in (run_bare, run_worker_alone):
            out = absences.noted(run, tmp_path / f"{run.__name__}.jsonl")("Server", 2_000.0, 1.5, tmp_path / run.__name__)
            noted = out["gaps"]
            # one call a query in Server: LoadGen's count, and a span as long as the test
            assert noted is not None and noted["calls"] == out["samples"] > 2_000, (run.__name__, out)
            assert 1.2e9 < noted["span_ns"] < 3e9, noted
            assert all(b - a > 1_000_000 for a, b in noted["gaps"])
        summary = absences.summarize([out])
        assert summary["runs"] == 1 and summary["absences_over_1ms"] == len(noted["gaps"])
    assert str(absences.PROBE) not in os.environ.get("PYTHONPATH", "")
