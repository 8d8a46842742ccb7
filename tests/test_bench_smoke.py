"""The benchmarks stay runnable (they are run by hand, never timed here): the list, and one
benchmark's building blocks on tiny inputs."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_bench_lists_every_benchmark():
    out = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = [line.split()[1] for line in out.stdout.splitlines() if line.strip()]
    assert names == ["harness", "acquisition", "analysis", "plots", "startup", "replay"]


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
