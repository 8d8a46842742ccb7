"""6. Replay: a one-hour recording at 10 samples/s played back as fast as it goes.

The recording is built with labconsole's own writers, shaped like a real run's bundle: one
simulated wall meter at 10 samples/s for an hour (36,000 samples in CSV streams, flushed each
second like the recorder does, split into idle / ranging / testing and the samples between
phases), LoadGen's progress at 10 points a second through ranging and testing (`progress.csv`
and a progress event each in `events.jsonl`, as the procedure emits them), LoadGen logs with
the power window, `run.json`, and the BagIt seal.

Figures, each from the moment the replay is asked for to the moment every recorded sample
has reached the viewer and the session says it is done:

- the console: the real app (headless, 160x48), `start_replay(path, max)` as the Recordings
  screen and `labconsole replay --speed max` do; its Run screen pulls and draws on its own
  5 Hz timer;
- the session path without a UI: `ReplaySession(path, speed=max)` and a viewer pulling
  `LiveData` at the Run screen's rate (what the console does, without Textual);
- the replay source alone at speed max (a profile's `driver: replay`), read until exhausted.

The anchor is the least any replay must do: read everything it shows (the sample streams with
`pandas.read_csv`, each line of `events.jsonl` with `json.loads`, each `progress.csv`), in
the same process, alternating.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.core import Context, CpuClock, Result, alternate, median

TARGET_X = 100.0
RATE_HZ = 10.0
DURATION_S = 3600.0
PROGRESS_HZ = 10.0
SOURCE = "wall"
TICK_S = 0.2  # the Run screen's timer


def _timeline() -> list[tuple[str, float, float]]:
    """(phase, start s, end s) of the hour; the gaps are 'between' (settling, range switches)."""
    return [("idle", 5.0, 65.0), ("ranging", 70.0, 1830.0), ("testing", 1835.0, 3595.0)]


def make_recording(recordings: Path, duration_s: float = DURATION_S, rate_hz: float = RATE_HZ) -> dict:
    """Write the bundle (see the module's docstring); returns its path and what it holds."""
    from bench.analysis import write_loadgen_logs
    from labconsole import events as ev
    from labconsole.bundle.writer import BundleWriter, iso_utc
    from labconsole.events import EventBus
    from labconsole.samples.batch import empty_batch
    from labconsole.samples.streams import open_sample_stream, stream_format_for, stream_path
    from labconsole.workload.runner import PROGRESS_HEADER

    t0 = (time.time_ns() // 1_000_000_000 - 2 * 86400) * 1_000_000_000  # two days ago, on a second
    b = BundleWriter.create(recordings, "replay-bench", "Offline", wall_ns=t0)
    bus = EventBus()
    bus.add_sink(b.events_sink)
    fmt = stream_format_for(1.0 / rate_hz)
    b.update_run(id="replay-bench", profile={"name": "replay-bench"}, scenario="Offline", primary_source=SOURCE,
                 start=iso_utc(t0), sources=[{"name": SOURCE, "driver": "simulated", "scope": "wall", "sample_interval_s": 1.0 / rate_hz}])
    s = lambda sec: t0 + int(sec * 1e9)  # noqa: E731 - seconds into the hour -> wall ns

    # Samples: idle ~100 W, loaded ~300 W while LoadGen runs, noise; 10 per read, a flush a second.
    n = int(duration_s * rate_hz)
    rng = np.random.default_rng(6)
    samples = empty_batch(n)
    samples["wall_ns"] = t0 + (np.arange(n) * (1e9 / rate_hz)).astype(np.int64)
    samples["mono_ns"] = samples["wall_ns"] - t0 + 10**12
    tl = _timeline()
    loaded = np.zeros(n, dtype=bool)
    for phase, a, z in tl[1:]:
        loaded |= (samples["wall_ns"] >= s(a)) & (samples["wall_ns"] < s(z))
    samples["watts"] = np.where(loaded, 300.0, 100.0) + rng.normal(0, 1.5, n)
    samples["volts"] = 230.0 + rng.normal(0, 0.2, n)
    samples["amps"] = samples["watts"] / samples["volts"]
    samples["pf"] = 0.97
    samples["uncertainty_w"] = 0.002 * samples["watts"] + 0.05
    samples["range_v"], samples["range_a"] = 300.0, 5.0

    def folder_of(wall_ns: np.ndarray) -> np.ndarray:
        out = np.full(len(wall_ns), "between", dtype=object)
        for phase, a, z in tl:
            out[(wall_ns >= s(a)) & (wall_ns < s(z))] = phase
        return out

    where = folder_of(samples["wall_ns"])
    writers: dict[str, object] = {}
    per_read = max(1, int(rate_hz * 1.0))  # a second of samples between flushes
    for i in range(0, n, per_read):
        chunk = samples[i : i + per_read]
        dest = where[i : i + per_read]
        for phase in dict.fromkeys(dest.tolist()):
            w = writers.get(phase)
            if w is None:
                w = writers[phase] = open_sample_stream(stream_path(b.phase_dir(phase), SOURCE, fmt), fsync=False)
            w.append("main", chunk[dest == phase])
            w.flush()
    for w in writers.values():
        w.close()

    # The timeline: phases, progress (LoadGen's 10 points a second), the result.
    emitted = 0

    def emit(kind: str, msg: str, wall_ns: int, phase: str | None = None, **data) -> None:
        nonlocal emitted
        bus.publish(ev.Event(kind, msg, phase, data, wall_ns))
        emitted += 1

    emit(ev.INFO, f"recording to {b.root}", s(0.5), bundle=str(b.root))
    emit(ev.INFO, "source wall: simulated meter", s(1.0), source=SOURCE)
    progress_points = 0
    qps = 1000.0
    for phase, a, z in tl:
        emit(ev.PHASE_START, f"{phase}: Offline, {z - a:g} s", s(a), phase, scenario="Offline", duration_s=z - a)
        if phase != "idle":
            d = b.phase_dir(phase)
            lines = [PROGRESS_HEADER]
            k = int((z - a) * PROGRESS_HZ)
            for j in range(1, k + 1):
                w = s(a + j / PROGRESS_HZ)
                done = int(j / PROGRESS_HZ * qps)
                lines.append(f"{w},{done + 8},{done}\n")
                emit(ev.PROGRESS, f"{done} completed", w, phase, issued=done + 8, completed=done)
            (d / "progress.csv").write_text("".join(lines), encoding="utf-8")
            progress_points += k
            write_loadgen_logs(d / "loadgen", s(a + 1.0), s(z - 1.0))
        emit(ev.PHASE_END, f"{phase} done", s(z), phase)
    emit(ev.RESULT, "samples_per_second: 1000 (Offline)", s(duration_s - 1), metric={"name": "samples_per_second", "value": 1000.0, "unit": "samples/s"})
    b.update_run(stop=iso_utc(s(duration_s)))  # run.json holds ISO times, as the engine writes them
    b.seal("completed")
    return {"path": b.root, "samples": n, "progress_points": progress_points, "duration_s": duration_s,
            "events": emitted, "bytes": sum(p.stat().st_size for p in b.root.rglob("*") if p.is_file())}


# ---------------------------------------------------------------------------------------------
# labconsole's ways


def replay_session(path: Path, want: int) -> dict:
    """ReplaySession at max speed with a LiveData viewer at the Run screen's rate, to the end."""
    from labconsole.session.replay import ReplaySession
    from labconsole.sources.replay import MAX
    from labconsole.tui.widgets import LiveData

    with CpuClock() as c:
        t0 = time.perf_counter()
        session = ReplaySession(path, speed=MAX)
        opened = time.perf_counter() - t0
        session.start()
        live = LiveData()
        live.attach(session)
        next_pull = time.perf_counter()
        try:
            while True:
                now = time.perf_counter()
                if now >= next_pull:
                    live.pull()
                    next_pull = now + TICK_S
                if session.finished:
                    live.pull()
                    break
                if now - t0 > 600:
                    raise TimeoutError("the replay did not finish in 600 s")
                time.sleep(0.005)
        finally:
            session.close()
    got = sum(len(h) for h in live.histories.values())
    if got != want:
        raise AssertionError(f"the viewer got {got} samples, the recording holds {want}")
    return {"wall": c.wall_s, "cpu": c.cpu_s, "open": opened, "samples": got, "events": len(live.events)}


def replay_console(path: Path, want: int) -> dict:
    """The console itself (headless, 160x48): start_replay at max, until the Run screen holds every sample."""
    import asyncio

    from labconsole.profile import default_profile_path, load_profile
    from labconsole.sources.replay import MAX
    from labconsole.tui.app import LabConsole
    from labconsole.tui.screens.run import RunScreen

    loaded = load_profile(default_profile_path())
    out: dict = {}

    async def go() -> None:
        app = LabConsole(loaded, start_mode="run")
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            with CpuClock() as c:
                t0 = time.perf_counter()
                app.start_replay(path, MAX)
                while True:
                    s = app.session
                    scr = app.screen
                    if s is not None and s.finished and isinstance(scr, RunScreen) and scr.live.session is s:
                        if sum(len(h) for h in scr.live.histories.values()) >= want and s.status == "replayed":
                            break
                    if time.perf_counter() - t0 > 600:
                        raise TimeoutError("the console's replay did not finish in 600 s")
                    await asyncio.sleep(0.005)
            out.update(wall=c.wall_s, cpu=c.cpu_s, samples=sum(len(h) for h in scr.live.histories.values()),
                       ticks=len(scr.tick_times), tick_ms_median=float(np.median(scr.tick_times)) if scr.tick_times else None)
            app.session.close()

    asyncio.run(go())
    return out


def replay_source(path: Path) -> dict:
    """The `replay` driver at speed max, read until exhausted (no clock pacing, no viewer)."""
    from labconsole.sources.replay import ReplayOptions, ReplaySource

    with CpuClock() as c:
        t0 = time.perf_counter()
        src = ReplaySource("wall", ReplayOptions(path=str(path), source=SOURCE, speed="max"))
        src.open()
        opened = time.perf_counter() - t0
        got = 0
        while not src.exhausted:
            got += sum(len(cb.samples) for cb in src.read(0.1))
        src.close()
    return {"wall": c.wall_s, "cpu": c.cpu_s, "open": opened, "samples": got}


# ---------------------------------------------------------------------------------------------
# The anchor


def read_everything(path: Path) -> dict:
    """Read what the replay shows, plainly: sample CSVs (pandas), events.jsonl (json), progress CSVs."""
    import pandas as pd

    with CpuClock() as c:
        data = Path(path) / "data"
        n = 0
        for f in sorted(data.glob("*/samples-*.csv")):
            n += len(pd.read_csv(f))
        with open(data / "events.jsonl", encoding="utf-8") as fh:
            events = [json.loads(line) for line in fh]
        for f in sorted(data.glob("*/progress.csv")):
            pd.read_csv(f)
    return {"wall": c.wall_s, "cpu": c.cpu_s, "samples": n, "events": len(events)}


def run(ctx: Context) -> Result:
    res = Result("replay", 6, "Replay: a one-hour 10 samples/s recording replayed as fast as it goes")
    reps = ctx.pick(5, 1)
    ctx.log(f"writing a {DURATION_S / 3600:g} h recording at {RATE_HZ:g} samples/s with labconsole's writers")
    t = time.perf_counter()
    rec = make_recording(ctx.folder("recordings"))
    ctx.log(f"  {rec['samples']:,} samples, {rec['progress_points']:,} progress points, {rec['bytes'] / 1e6:.1f} MB, written in {time.perf_counter() - t:.1f} s")
    path, want = rec["path"], rec["samples"]
    read_everything(path)  # warm the page cache for everyone
    runs = alternate({"console": lambda: replay_console(path, want), "session": lambda: replay_session(path, want),
                      "read": lambda: read_everything(path)}, reps, ctx.log)
    src = [replay_source(path) for _ in range(ctx.pick(3, 1))]
    anchor = median([r["wall"] for r in runs["read"]])
    for label, key in (("the console (Run screen drawing, 160x48)", "console"), ("the session and a viewer, no UI", "session")):
        wall = median([r["wall"] for r in runs[key]])
        x = DURATION_S / wall
        res.add(f"replay speed, {label}", x, "x real time", target=f">= {TARGET_X:g}x", met=x >= TARGET_X)
        res.add(f"replay wall time, {label}", wall, "s", anchor=anchor, anchor_label="read it all: pandas + json")
    res.add("replay CPU time, the console", median([r["cpu"] for r in runs["console"]]), "s",
            anchor=median([r["cpu"] for r in runs["read"]]), anchor_label="read it all: pandas + json")
    res.add("of which opening the recording (ReplaySession)", median([r["open"] for r in runs["session"]]), "s")
    w = median([r["wall"] for r in src])
    res.add("replay source alone (driver: replay, speed max): samples/s", want / w, "/s")
    res.notes.append(f"the recording: {DURATION_S / 3600:g} h, {want:,} samples at {RATE_HZ:g}/s (CSV streams), "
                     f"{rec['progress_points']:,} progress points, {rec['bytes'] / 1e6:.1f} MB, sealed; every sample checked to reach the viewer")
    res.notes.append(f"speed max plays a recording in ~{_max_steps()} steps (labconsole.session.replay.MAX_SPEED_STEPS) so the screen shows it unfold")
    res.details = {"recording": {k: (str(v) if isinstance(v, Path) else v) for k, v in rec.items()}, "runs": runs, "source_runs": src}
    return res


def _max_steps() -> int:
    from labconsole.session.replay import MAX_SPEED_STEPS

    return MAX_SPEED_STEPS


if __name__ == "__main__":
    import sys

    from bench.core import table

    r = run(Context(quick="--quick" in sys.argv))
    print(table(r))
    for note in r.notes:
        print("  note:", note)
