"""The console's side of the worker's progress pipe: settings, progress points and warnings."""

from __future__ import annotations

import json
import os

from labconsole.profile import default_profile_path, load_profile
from labconsole.workload.runner import LoadGenRun


def test_progress_settings_and_a_worker_warning_reach_the_result(tmp_path):
    workload = load_profile(default_profile_path()).profile.workload
    run = LoadGenRun(workload, tmp_path / "testing")
    (tmp_path / "testing").mkdir()
    rfd, wfd = os.pipe()
    lines = [
        {"event": "settings", "values": {"target_qps": 5.0}, "loadgen_version": "6.0"},
        {"t": 1.5, "issued": 10, "completed": 8},
        "not json",
        {"event": "warning", "message": "the SUT did not stop within 10 s after the test (sut-lane-3 still running)"},
        {"event": "done", "t": 2.0},
    ]
    with os.fdopen(wfd, "w") as fh:
        fh.write("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    run._read_progress(rfd)
    assert run.settings == {"target_qps": 5.0, "loadgen_version": "6.0"}
    assert run.warnings == ["the SUT did not stop within 10 s after the test (sut-lane-3 still running)"]
    assert [(p.wall_ns, p.issued, p.completed) for p in run.progress] == [(1_500_000_000, 10, 8)]
