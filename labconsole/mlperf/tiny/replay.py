"""A published Tiny energy folder as a bundle the console can replay (`labconsole replay DIR`).

The replay machinery plays bundles; an EnergyRunner or MLCommons-runner folder becomes one in a
scratch folder: its energy samples as the power an `lpm01a` source would have recorded
(J per period x rate), one `testing` phase over the whole trace (the MLCommons runner's trials
laid end to end, as drained), each window as a timeline step at its edges, and the median as the
run's result. The folder read is not touched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from labconsole import events as ev
from labconsole.bundle.writer import BundleWriter, iso_utc
from labconsole.events import EventBus
from labconsole.mlperf.tiny.analysis import report
from labconsole.mlperf.tiny.folders import TinyRun
from labconsole.samples.batch import empty_batch
from labconsole.samples.streams import open_sample_stream, stream_format_for, stream_path

SOURCE = "lpm01a"


def as_bundle(run: TinyRun, recordings: Path) -> Path:
    fs = run.sample_rate_hz
    scale_j = run.windows[0].scale_uj * 1e-6 if run.windows else (1e-6 if run.runner == "energyrunner" else 1.0)
    joules = np.concatenate([np.asarray(t, dtype=np.float64) for t in run.traces]) * scale_j if run.traces else np.zeros(0)
    offsets = np.cumsum([0] + [len(t) for t in run.traces])  # where each trial starts in the whole trace
    t0 = (time.time_ns() // 1_000_000_000 - 86400) * 1_000_000_000
    b = BundleWriter.create(recordings, "tiny-replay", "SingleStream", wall_ns=t0)
    volts = run.voltage_v or 3.0
    b.update_run(id=f"tiny-replay {run.path.name}", profile={"name": f"MLPerf Tiny {run.source}: {run.path.name}"}, scenario="SingleStream",
                 primary_source=SOURCE, start=iso_utc(t0), sources=[{"name": SOURCE, "driver": "lpm01a", "scope": "dc-rail", "sample_interval_s": 1.0 / fs}])
    n = len(joules)
    s = empty_batch(n)
    s["wall_ns"] = t0 + np.rint((np.arange(n) + 1) * (1e9 / fs)).astype(np.int64)
    s["mono_ns"] = s["wall_ns"] - t0 + 10**12
    s["watts"] = joules * fs
    s["volts"] = volts
    s["energy_j"] = np.cumsum(joules)
    w = open_sample_stream(stream_path(b.phase_dir("testing"), SOURCE, stream_format_for(1.0 / fs)), fsync=False)
    for i in range(0, n, int(fs)):
        w.append("main", s[i : i + int(fs)])
    w.close()
    bus = EventBus()
    assert b.events_sink is not None
    bus.add_sink(b.events_sink)
    at = lambda k: t0 + int(k * 1e9 / fs)  # noqa: E731 - sample index -> wall ns
    bus.publish(ev.Event(ev.PHASE_START, f"testing: MLPerf Tiny energy, {len(run.windows)} windows", "testing", {}, at(0)))
    trial_of = run.runner != "energyrunner"
    for k, win in enumerate(run.windows):
        base = int(offsets[k]) if trial_of and k < len(offsets) - 1 else 0
        a, z = base + win.start, base + win.stop
        bus.publish(ev.Event(ev.STEP, f"window {k + 1}: {win.runtime_s:.3f} s, {win.inferences} inferences, {win.uj_per_inf:.3f} uJ/inf", "testing",
                             {"window": k, "tiny_window": {"start_s": a / fs, "stop_s": z / fs, "wall_start_s": at(a) / 1e9, "wall_stop_s": at(z) / 1e9}}, at(z)))
    rep = report(run)
    bus.publish(ev.Event(ev.PHASE_END, "testing done", "testing", {}, at(n)))
    if rep.get("metric"):
        m = rep["metric"]
        bus.publish(ev.Event(ev.RESULT, f"{m['name']}: {m['value']:g} {m['unit']}", None, {"metric": m}, at(n)))
    b.write_json("summary.json", {"report": rep, "checks": []})
    b.update_run(stop=iso_utc(at(n)))  # run.json holds ISO times, as the engine writes them
    b.seal("completed")
    return b.root


@contextmanager
def scratch_bundle(run: TinyRun) -> Iterator[Path]:
    """`as_bundle` in a temporary folder, removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="labconsole-tiny-replay-"))
    try:
        yield as_bundle(run, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
