"""The live-view core without a UI: decimation, histories, QPS, the replay clock, source and session,
guided calibration. A recorded bundle is made once (a short real run on the simulated bench)."""

from __future__ import annotations

import json

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, SIM_PROFILE, write_profile
from labconsole import events as ev
from labconsole.session.decimate import minmax_columns, minmax_pairs
from labconsole.session.live import SeriesHistory, qps_over_phases, qps_series
from labconsole.samples.ring import ChannelRing
from labconsole.samples.batch import empty_batch

MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


def tiny_profile(folder: Path, idle: float = 0.5, duration: float = 2) -> Path:
    return write_profile(
        folder,
        SIM_PROFILE.format(recordings=folder / "recordings", scenario="Offline", duration=duration, sut="matmul", sut_options="{size: 128, threads: 0}", idle=idle, interval=0.05, workload_extra=""),
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """One completed, sealed bundle of a short real run."""
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile

    folder = tmp_path_factory.mktemp("bench")
    out = RunEngine(load_profile(tiny_profile(folder)), InferencePlan()).run()
    assert out.exit_status == "completed", out.reason
    return out.bundle


# --- decimation --------------------------------------------------------------------------------


def test_minmax_columns_matches_brute_force_and_keeps_a_spike():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 100, 20_000))
    y = rng.normal(300, 5, len(t))
    y[12345] = 900.0
    y[:50] = np.nan
    env = minmax_columns(t, y, 37, 0.0, 100.0)
    edges = np.linspace(0, 100, 38)
    for i in range(37):
        sel = (t >= edges[i]) & ((t < edges[i + 1]) if i < 36 else (t <= edges[i + 1]))
        vals = y[sel]
        vals = vals[np.isfinite(vals)]
        if len(vals):
            assert env.lo[i] == vals.min() and env.hi[i] == vals.max()
            assert env.count[i] == len(vals)
        else:
            assert math.isnan(env.lo[i])
    assert np.nanmax(env.hi) == 900.0


def test_minmax_columns_leaves_empty_columns_as_gaps():
    t = np.array([0.0, 1.0, 9.0, 10.0])
    env = minmax_columns(t, np.array([1.0, 2.0, 3.0, 4.0]), 10, 0.0, 10.0)
    assert env.count.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert np.isnan(env.lo[2:9]).all()
    assert minmax_columns(np.empty(0), np.empty(0), 5).count.sum() == 0


def test_minmax_pairs_bounds_size_and_keeps_extremes_in_time_order():
    t = np.arange(100_000, dtype=float)
    y = np.sin(t / 1000)
    y[777] = 50.0
    y[88_888] = -50.0
    tt, yy = minmax_pairs(t, y, 1000)
    assert len(tt) <= 1000
    assert 50.0 in yy and -50.0 in yy
    assert (np.diff(tt) > 0).all()


# --- histories and QPS ------------------------------------------------------------------------------


def _batch(start: int, n: int, bad: int | None = None) -> np.ndarray:
    b = empty_batch(n)
    b["wall_ns"] = (np.arange(start, start + n) * 10_000_000).astype(np.int64)
    b["watts"] = np.arange(start, start + n, dtype=float)
    if bad is not None:
        b["status"][bad] = 2
    return b


def test_ring_tail_copies_only_the_newest_even_across_the_wrap():
    ring = ChannelRing(capacity=10)
    ring.append(_batch(0, 7))
    ring.append(_batch(7, 6))  # wraps
    out, total = ring.tail(4)
    assert total == 13
    assert out["watts"].tolist() == [9.0, 10.0, 11.0, 12.0]
    assert ring.tail(100)[0]["watts"].tolist() == list(map(float, range(3, 13)))
    assert len(ring.tail(0)[0]) == 0


def test_history_syncs_incrementally_marks_invalid_as_nan_and_restarts_on_a_new_ring():
    ring = ChannelRing(capacity=1000)
    h = SeriesHistory()
    ring.append(_batch(0, 5, bad=2))
    assert h.sync(ring) == 5
    ring.append(_batch(5, 3))
    assert h.sync(ring) == 3
    assert h.sync(ring) == 0
    assert len(h) == 8 and math.isnan(h.y[2]) and h.y[7] == 7.0
    other = ChannelRing(capacity=10)
    other.append(_batch(100, 2))
    h.sync(other)
    assert h.y.tolist() == [100.0, 101.0]


def test_history_stays_bounded_without_losing_a_spike():
    h = SeriesHistory(cap=10_000)
    for k in range(30):
        b = _batch(k * 1000, 1000)
        if k == 17:
            b["watts"][500] = 1e6
        h.extend_samples(b)
    assert len(h) <= 10_000
    assert h.y.max() == 1e6


def test_qps_is_completed_per_second_over_a_window():
    w = (np.arange(0, 31) * 100_000_000).astype(np.int64)  # 10 points a second for 3 s
    c = np.arange(0, 31) * 50  # 500 completed per second
    t, q = qps_series(w, c, window_s=1.0)
    assert len(t) == 30
    assert np.allclose(q, 500.0)
    assert qps_series(w[:1], c[:1])[0].size == 0


def test_qps_over_phases_puts_them_in_time_order_with_a_gap_between():
    w = (np.arange(0, 11) * 100_000_000).astype(np.int64)
    c = np.arange(0, 11) * 50
    later = (w + 60 * 1_000_000_000, c * 2)
    t, q = qps_over_phases({"testing": later, "ranging": (w, c), "idle": (w[:0], c[:0])})
    assert len(t) == len(q) == 2 * (10 + 1)
    assert np.all(np.diff(t) > 0)  # ranging first, although testing came first in the dict
    assert np.isnan(q[10]) and np.isnan(q[-1])  # a gap after each phase, not a ramp into the next
    assert np.allclose(q[:10], 500.0) and np.allclose(q[11:21], 1000.0)
    assert qps_over_phases({})[0].size == 0


# --- replay -------------------------------------------------------------------------------------------


def test_replay_clock_speed_pause_and_seek():
    from labconsole.sources.replay import ReplayClock, parse_speed

    c = ReplayClock(0, 10_000_000_000, speed=100.0)
    time.sleep(0.05)
    assert c.now_ns() > 2_000_000_000  # 50 ms at 100x is about 5 s
    c.pause()
    a = c.now_ns()
    time.sleep(0.03)
    assert c.now_ns() == a
    g = c.generation
    c.seek(1_000_000_000)
    assert c.now_ns() == 1_000_000_000 and c.generation == g + 1
    c.resume()
    assert c.wait_until(1_500_000_000, 2.0)
    c.seek(10**12)
    assert c.at_end
    assert parse_speed("10x") == 10.0 and math.isinf(parse_speed("max"))
    with pytest.raises(ValueError):
        parse_speed("-3")


def test_replay_source_in_a_profile_yields_exactly_the_recorded_samples(bundle, tmp_path):
    """Record and replay through one code path: the `replay` driver behind the real Recorder."""
    from labconsole.bundle.reader import open_run
    from labconsole.events import EventBus
    from labconsole.profile import load_profile
    from labconsole.recorder import Recorder
    from labconsole.sources.registry import create_source
    from labconsole.sources.replay import recorded_samples

    prof = write_profile(
        tmp_path,
        f"""
        name: replayed
        recordings: {tmp_path / "rec"}
        sources:
          - name: wall
            driver: replay
            sample_interval_s: 0.05
            options: {{path: "{bundle}", source: wall, speed: max}}
        """,
    )
    spec = load_profile(prof).profile.sources[0]
    src = create_source(spec.name, spec.driver, spec.options, spec.sample_interval_s)
    src.open()
    assert src.identify().driver == "replay"
    rec = Recorder([(src, "stop")], EventBus(), fsync=False)
    rec.start()
    want = recorded_samples(open_run(bundle))[("wall", "main")]
    deadline = time.monotonic() + 20
    while rec.rings[("wall", "main")].total < len(want) and time.monotonic() < deadline:
        time.sleep(0.05)
    rec.stop()
    src.close()
    got = rec.rings[("wall", "main")].snapshot()
    assert np.array_equal(got["wall_ns"], want["wall_ns"])
    assert np.array_equal(got["watts"], want["watts"], equal_nan=True)
    assert np.array_equal(got["status"], want["status"])


def test_replay_source_names_a_missing_source(bundle):
    from labconsole.sources.base import SourceError
    from labconsole.sources.replay import ReplayOptions, ReplaySource

    src = ReplaySource("x", ReplayOptions(path=str(bundle), source="nope"))
    with pytest.raises(SourceError, match="no samples of source 'nope'.*wall"):
        src.open()


def test_replay_source_retime_stamps_samples_now(bundle):
    from labconsole.sources.replay import ReplayOptions, ReplaySource

    src = ReplaySource("w", ReplayOptions(path=str(bundle), speed="max", retime=True))
    src.open()
    got = []
    for _ in range(50):
        got += src.read(0.1)
        if src.exhausted:
            break
    src.close()
    first = min(int(cb.samples["wall_ns"][0]) for cb in got)
    assert abs(first - time.time_ns()) < 60e9


def test_replay_session_plays_everything_with_events_in_time_and_seeks(bundle):
    from labconsole.session.replay import ReplaySession
    from labconsole.sources.replay import MAX

    s = ReplaySession(bundle, speed=MAX)
    s.start()
    try:
        deadline = time.monotonic() + 30
        while not s.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.finished and s.status == "replayed"
        reset, events = s.poll_events()
        kinds = [e.kind for e in events]
        # every phase the run recorded (three, or more when the testing phase was re-ranged on a
        # loaded machine), and its result
        recorded = [json.loads(x)["kind"] for x in (bundle / "data" / "events.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
        assert kinds.count(ev.PHASE_START) == recorded.count(ev.PHASE_START) >= 3 and ev.RESULT in kinds
        assert [e.wall_ns for e in events] == sorted(e.wall_ns for e in events)
        ring = s.rings()[("wall", "main")]
        assert ring.total == len(s.samples[("wall", "main")])
        assert set(s.progress()) == {"ranging", "testing"}
        assert s.power_window() is not None
        # Seek back to the middle of testing: the rings and the timeline restart from there.
        testing = next(sp for sp in s.spans if sp[0] == "testing")
        s.clock.pause()
        s.seek((testing[1] + testing[2]) // 2)
        deadline = time.monotonic() + 5
        while s.rings()[("wall", "main")] is ring and time.monotonic() < deadline:
            time.sleep(0.02)
        reset, events = s.poll_events()
        assert reset
        shown = [e for e in events if e.kind != ev.PROGRESS]
        assert shown[-1].kind == ev.PHASE_START and shown[-1].phase == "testing"
        pc = s.phase_clock()
        assert pc.phase == "testing" and 0 < pc.elapsed_s < pc.expected_s
        assert 0 < s.rings()[("wall", "main")].total < ring.total
    finally:
        s.close()


def test_replay_session_of_an_mlperf_folder_synthesizes_its_timeline():
    from labconsole.session.replay import ReplaySession

    s = ReplaySession(MLPERF, speed=math.inf)
    msgs = [e.message for e in s.events]
    assert any("power_begin" in m for m in msgs) and any("power_end" in m for m in msgs)
    assert s.events[-1].kind == ev.RESULT and "avg_power" in s.events[-1].message
    assert [sp[0] for sp in s.spans] == ["testing"]
    assert s.progress() == {}
    assert s.power_window()[0] < s.power_window()[1]


# --- guided calibration ------------------------------------------------------------------------------


class _Step:
    def __init__(self, key, status="pass"):
        self.key, self.title, self.instructions, self.status = key, key.title(), "do it", status
        self.runs = 0

    def applies(self, ctx):
        return True

    def run(self, ctx):
        from labconsole.procedure.calibration import StepResult

        self.runs += 1
        return StepResult(self.key, self.title, self.status, f"run {self.runs}")

    def result(self, status, reason, **measured):
        from labconsole.procedure.calibration import StepResult

        return StepResult(self.key, self.title, status, reason, measured)


def test_guided_calibration_run_retry_skip_next_and_the_rest():
    from labconsole.procedure.calibration import Calibration, CalibrationContext
    from labconsole.procedure.guided import GuidedCalibration

    bus = ev.EventBus()
    ctx = CalibrationContext(profile=None, sources={}, specs={}, identities={}, capabilities={}, recorder=None, bus=bus, phase_dir=lambda p: None, wait=lambda s: True)
    steps = [_Step("a"), _Step("b", "warn"), _Step("c"), _Step("d")]
    cal = Calibration(ctx, steps=steps)
    g = GuidedCalibration()
    t = threading.Thread(target=g.drive, args=(cal, lambda: False), daemon=True)
    t.start()
    assert g.started.wait(5)

    def settle():
        deadline = time.monotonic() + 5
        time.sleep(0.05)
        while (not g.waiting or not g._commands.empty()) and not g.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)

    assert g.current.key == "a"
    g.run()
    settle()
    g.run()  # retry
    settle()
    assert cal.results["a"].attempts == 2 and steps[0].runs == 2
    g.next()
    settle()
    assert g.current.key == "b"
    g.skip("no meter host here")
    settle()
    assert cal.results["b"].status == "skip" and g.current.key == "c"
    g.run_rest()
    t.join(5)
    assert g.done.is_set() and not t.is_alive()
    assert [cal.results[k].status for k in "abcd"] == ["pass", "skip", "pass", "pass"]
    assert sum(1 for e in bus.history if e.kind in (ev.STEP, ev.WARNING)) == 5


def test_results_of_an_mlperf_folder_for_the_results_screen():
    from labconsole.session.results import load_results

    data = load_results(MLPERF)
    assert data["record"].kind == "mlperf" and data["report"]["scenario"] == "Offline"
    assert data["checks"] and data["power"]
    assert data["qps"][0].size == 0  # MLPerf result folders hold no progress series
    t0, t1 = data["window"]
    assert t0 < t1
    assert [name for _, name in data["marks"]] and data["marks"] == sorted(data["marks"])


def test_mean_since_adds_only_new_samples_and_matches_the_whole_mean():
    """The Run screen asks each tick for the mean since the phase's start: the running sum it
    keeps gives the mean of everything from t0 on, across NaNs, a new t0, a halving and a clear."""
    from labconsole.session.live import SeriesHistory

    rng = np.random.default_rng(5)
    h = SeriesHistory(cap=3000)
    t_all, y_all = [], []

    def whole(t0: float) -> float:
        t, y = np.concatenate(t_all), np.concatenate(y_all)
        y = y[t >= t0]
        y = y[np.isfinite(y)]
        return float(y.mean()) if len(y) else math.nan

    def same(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)

    for step in range(16):  # the 16th passes the cap
        t = np.arange(step * 200, (step + 1) * 200) / 100.0
        y = rng.normal(100, 5, 200)
        y[rng.integers(0, 200, 7)] = np.nan
        t_all.append(t)
        y_all.append(y)
        h.extend(t, y)
        for t0 in (3.0, 7.5):
            if len(h) == sum(map(len, t_all)):  # before the halving: the history holds every sample
                assert same(h.mean_since(t0), whole(t0))
    assert len(h) < sum(map(len, t_all))  # the cap halved it: the mean is of what it holds now
    t_held, y_held = h.t.copy(), h.y.copy()
    ok = np.isfinite(y_held) & (t_held >= 3.0)
    assert math.isclose(h.mean_since(3.0), float(y_held[ok].mean()), rel_tol=1e-12)
    h.clear()
    assert math.isnan(h.mean_since(0.0))
    h.extend(np.array([10.0, 11.0]), np.array([1.0, 3.0]))
    assert h.mean_since(0.0) == 2.0
    h.clear()  # a replay's seek: the same t0 over other samples, as many or more
    h.extend(np.array([10.0, 11.0, 12.0]), np.array([5.0, 7.0, 9.0]))
    assert h.mean_since(0.0) == 7.0
