"""Progress arithmetic: LoadGen's count against its target, time against the minimum, and the
whole run's estimate (labconsole.session.progress), from snapshots."""

from __future__ import annotations

from labconsole.session.progress import PhaseProgress, phase_progress, run_estimate
from labconsole.workload.runner import ProgressPoint
from labconsole.workload.worker import target_samples


def test_target_samples_follow_loadgen_effective_settings():
    assert target_samples({"scenario": "Offline", "duration_s": 600}, {"target_qps": 100.0}) == 66000  # 1.1 x 600 x 100
    assert target_samples({"scenario": "Offline", "duration_s": 1, "min_query_count": 24576}, {"target_qps": 10.0}) == 24576
    assert target_samples({"scenario": "Server", "duration_s": 10}, {"target_qps": 50.0}) == 500
    assert target_samples({"scenario": "MultiStream", "duration_s": 10, "samples_per_query": 8}, {"expected_latency_ms": 5}) == 800


def test_offline_past_its_minimum_waits_for_samples_and_estimates_from_the_rate():
    pts = [ProgressPoint(int(t * 1e9), 6600, int(100 * t)) for t in range(0, 61)]  # 100 samples/s for 60 s
    p = phase_progress("testing", "Offline", 61.0, 30.0, pts, {"samples": 6600, "min_duration_s": 30.0})
    assert p.finishing and p.waiting == 600
    assert abs(p.remaining_s - 6.0) < 0.5  # 600 left at 100/s
    assert abs(p.fraction - 6000 / 6600) < 1e-6
    assert p.words().startswith("finishing: waiting for 600 queries")
    # before the minimum: Offline is not told by time, only by samples
    q = phase_progress("testing", "Offline", 5.0, 30.0, pts[:6], {"samples": 6600})
    assert not q.finishing and q.fraction < 0.1 and q.remaining_s > 50


def test_server_needs_both_its_time_and_its_queries():
    p = PhaseProgress("testing", "Server", 5.0, 10.0, issued=500, completed=480, target=1000, rate=100.0)
    assert p.remaining_s == 5.2 and not p.finishing  # 520 to go at 100/s outlasts 5 s of time
    assert p.fraction == 0.48


def test_the_whole_run_counts_done_phases_as_they_took_and_testing_as_long_as_ranging():
    log = [("starting", 0.0), ("sources", 0.5), ("calibration", 1.0), ("probe", 6.0), ("ranging", 9.0), ("choose", 30.0), ("testing", 31.0)]
    cur = PhaseProgress("testing", "Offline", 4.0, 10.0, issued=1000, completed=200, target=1000, rate=50.0)
    est = run_estimate(log, 35.0, cur, duration_s=10, idle_s=3, ranging=True, probes=True)
    assert est.elapsed_s == 35.0
    assert abs(est.total_s - (35.0 + 16.0 + 1.0 + 2.0)) < 1e-6  # 800 left at 50/s, the tail, the analysis
    early = run_estimate([("starting", 0.0)], 0.2, None, duration_s=10, idle_s=3, ranging=True, probes=True)
    assert early.total_s > 2 * 10  # ranging and testing at least
