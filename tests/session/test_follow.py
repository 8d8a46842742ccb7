"""Following a run another process records: FollowSession over the bundle as it is written."""

from __future__ import annotations

import threading
import time

import numpy as np

from conftest import SIM_PROFILE, write_profile


def test_follow_sees_the_run_grow_then_sealed_with_every_sample(tmp_path):
    from labconsole.bundle.reader import open_run
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile
    from labconsole.session.follow import FollowSession
    from labconsole.sources.replay import recorded_samples

    rec = tmp_path / "recordings"
    prof = write_profile(tmp_path, SIM_PROFILE.format(recordings=rec, scenario="Offline", duration=3, sut="matmul",
                                                      sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra=""))
    follow = FollowSession(rec, poll_s=0.1)
    assert follow.status == "waiting" and follow.phase_clock().phase == "waiting for a run"
    outcome = []
    engine = RunEngine(load_profile(prof), InferencePlan())
    runner = threading.Thread(target=lambda: outcome.append(engine.run()))
    runner.start()
    seen_phases, growth = set(), []
    try:
        while runner.is_alive():
            follow.poll()
            seen_phases.add(follow.phase_clock().phase)
            ring = follow.rings().get(("wall", "main"))
            growth.append(ring.total if ring is not None else 0)
            if follow.status == "running":
                assert not follow.finished
            time.sleep(0.1)
    finally:
        runner.join()
    follow.poll()
    bundle = outcome[0].bundle
    assert follow.bundle_path() == bundle and follow.finished and follow.status == "completed"
    assert {"ranging", "testing"} <= seen_phases
    assert sum(1 for a, b in zip(growth, growth[1:]) if b > a) >= 3, "the samples did not arrive while the run went"
    recorded = recorded_samples(open_run(bundle))[("wall", "main")]
    total = follow.rings()[("wall", "main")].total
    assert total == len(recorded)  # every sample once: no duplicates from re-reading a stream
    reset, events = follow.poll_events(10_000)
    assert reset and any(e.kind == "phase_start" and e.phase == "testing" for e in events)
    w, c = follow.progress()["testing"]
    assert len(w) > 3 and np.all(np.diff(c) >= 0)
    pw = follow.power_window()
    assert pw is not None and pw[0] < pw[1]
