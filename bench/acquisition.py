"""2. Acquisition: synthetic sources through labconsole's recorder into the bundle's stream.

Two sources, each run through the real `Recorder` (acquisition thread, ring buffers, segment
statistics, the stream writer and its flusher thread, fsync about once a second), with a
viewer thread pulling ring snapshots at 10 Hz the way a live plot does:

- flat out: a source that hands out 64 k-sample batches as fast as they are taken (held back
  only when the samples read but not yet on disk pass a bound, so the figure is what the
  recorder sustains, not how fast RAM fills): samples/s reaching the disk, CPU per sample;
- paced at 100 kHz in 10 ms packets (a PowerShield/PPK2-class meter with a 0.5 s FIFO):
  CPU as % of one core, and samples dropped (FIFO overruns plus anything missing on disk,
  checked sample by sample on read-back).

The anchor is the same source drained by the simplest possible loop: raw `ndarray` bytes
appended to a file, fsync once a second, one thread. That is what the source and the disk
allow; the ratio says what labconsole's recording costs on top.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from pathlib import Path

from bench.core import Context, CpuClock, Result, alternate, median, thread_cpu_s
from bench.synthetic import FlatOutSource, PacedSource, check_sequence
from labconsole.events import EventBus
from labconsole.recorder import Recorder
from labconsole.samples.streams import read_sample_stream

FLAT_TARGET = 1_000_000  # samples/s sustained in batches
PACED_CPU_TARGET_PCT = 10.0  # % of one core at 100 kHz


def make_recorder(src, fmt: str | None) -> Recorder:
    kw = {}
    if fmt is not None:
        if "stream_formats" not in inspect.signature(Recorder).parameters:
            raise RuntimeError("this labconsole's Recorder has no stream_formats option")
        kw["stream_formats"] = {src.name: fmt}
    return Recorder([(src, "stop")], EventBus(), **kw)


class Viewer:
    """A live plot's pull: the newest 10 k samples of the ring, 10 times a second."""

    def __init__(self, rec: Recorder, source: str, last_n: int = 10_000, hz: float = 10.0):
        self.rec, self.source, self.last_n, self.period = rec, source, last_n, 1.0 / hz
        self.cpu_s = 0.0
        self.snapshots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-viewer", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            c0 = time.thread_time()
            ring = self.rec.rings.get((self.source, "main"))
            if ring is not None:
                if hasattr(ring, "tail"):  # what live views use where it exists: copies only the newest
                    ring.tail(self.last_n)
                else:
                    ring.snapshot(last_n=self.last_n)
            self.cpu_s += time.thread_time() - c0
            self.snapshots += 1

    def __enter__(self) -> "Viewer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_recorder(src, seconds: float, folder: Path, fmt: str | None = None) -> dict:
    """Record `src` for `seconds` through the real recorder; figures include the final drain."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("samples-*"):
        old.unlink()
    src.open()
    rec = make_recorder(src, fmt)
    if isinstance(src, FlatOutSource):
        src.backlog = lambda: src.seq - rec.written
    rec.begin_segment("testing", folder)
    with CpuClock() as clock:
        rec.start()
        with Viewer(rec, src.name) as viewer:
            time.sleep(seconds)
            st = rec.states[src.name]
            threads = {"acquire": thread_cpu_s(st.thread.ident if st.thread else None),
                       "flush": thread_cpu_s(rec._flusher.ident if rec._flusher else None)}
            src.close()
            rec.stop()  # joins the threads and flushes what is pending
    paths = sorted(folder.glob(f"samples-{src.name}.*"))
    t0 = time.perf_counter()
    frame = read_sample_stream(paths[0]).frame
    read_s = time.perf_counter() - t0
    seq = check_sequence(frame["mono_ns"].to_numpy(), src.period_ns)
    on_disk = seq["samples"]
    produced = src.seq - getattr(src, "dropped", 0)
    recorder_cpu = clock.cpu_s - src.gen_cpu_s - viewer.cpu_s
    return {
        "format": paths[0].suffix.lstrip("."),
        "wall_s": clock.wall_s,
        "samples": on_disk,
        "rate": on_disk / clock.wall_s,
        "process_cpu_s": clock.cpu_s,
        "source_cpu_s": src.gen_cpu_s,
        "viewer_cpu_s": viewer.cpu_s,
        "viewer_snapshots": viewer.snapshots,
        "recorder_cpu_s": recorder_cpu,
        "recorder_cpu_pct": 100.0 * recorder_cpu / clock.wall_s,
        "process_cpu_pct": 100.0 * clock.cpu_s / clock.wall_s,
        "cpu_ns_per_sample": 1e9 * recorder_cpu / on_disk if on_disk else None,
        "thread_cpu_s_before_drain": threads,
        "fifo_dropped": getattr(src, "dropped", 0),
        "dropped": getattr(src, "dropped", 0) + max(0, produced - on_disk),  # FIFO overruns + lost on the way
        "missing_on_disk": seq["missing"],
        "duplicates": seq["duplicates"],
        "bytes_on_disk": paths[0].stat().st_size,
        "read_back_s": read_s,
    }


def run_bare(src, seconds: float, folder: Path) -> dict:
    """The anchor: drain `src` into a raw file, fsync once a second, nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bare.raw"
    src.open()
    samples = 0
    with open(path, "wb") as fh, CpuClock() as clock:
        t_end = time.monotonic() + seconds
        next_sync = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            for cb in src.read(0.5):
                fh.write(cb.samples.data)
                samples += len(cb.samples)
            if time.monotonic() >= next_sync:
                fh.flush()
                os.fsync(fh.fileno())
                next_sync += 1.0
        src.close()
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    cpu = clock.cpu_s - src.gen_cpu_s
    return {
        "wall_s": clock.wall_s,
        "samples": samples,
        "rate": samples / clock.wall_s,
        "process_cpu_s": clock.cpu_s,
        "source_cpu_s": src.gen_cpu_s,
        "writer_cpu_pct": 100.0 * cpu / clock.wall_s,
        "cpu_ns_per_sample": 1e9 * cpu / samples if samples else None,
        "fifo_dropped": getattr(src, "dropped", 0),
    }


def _m(runs: list[dict], key: str) -> float:
    return median([r[key] for r in runs if r.get(key) is not None])


def run(ctx: Context, seconds: float | None = None, reps: int | None = None, csv_too: bool | None = None) -> Result:
    res = Result("acquisition", 2, "Acquisition: synthetic sources through the recorder into the bundle's stream")
    seconds = seconds or ctx.pick(10.0, 2.0)
    reps = reps or ctx.pick(3, 1)
    csv_too = (not ctx.quick) if csv_too is None else csv_too
    folder = ctx.folder("acq")

    ctx.log(f"flat-out source: recorder vs bare file, {reps} x {seconds:g} s each, alternating")
    flat = alternate({
        "labconsole": lambda: run_recorder(FlatOutSource(), seconds, folder / "flat"),
        "bare": lambda: run_bare(FlatOutSource(), seconds, folder / "bare"),
    }, reps, ctx.log)
    rate, bare_rate = _m(flat["labconsole"], "rate"), _m(flat["bare"], "rate")
    fmt_used = flat["labconsole"][0]["format"]
    res.add(f"flat out: samples/s to disk ({fmt_used})", rate, "/s", anchor=bare_rate, anchor_label="raw bytes to a file",
            target=f">= {FLAT_TARGET / 1e6:g} M/s", met=rate >= FLAT_TARGET)
    ns = _m(flat["labconsole"], "cpu_ns_per_sample")
    res.add("flat out: recorder CPU per sample", ns, "ns", anchor=_m(flat["bare"], "cpu_ns_per_sample"), anchor_label="raw write")
    res.add("flat out: samples/s one core of recorder CPU allows (1e9 / CPU ns)", 1e9 / ns if ns else None, "/s",
            target=f">= {FLAT_TARGET / 1e6:g} M/s", met=bool(ns) and 1e9 / ns >= FLAT_TARGET,
            note="what the recorder sustains given a core; the wall-clock figure above also measures the machine's load")
    res.add("flat out: samples lost", float(sum(r["dropped"] + r["duplicates"] for r in flat["labconsole"])), "", target="0",
            met=all(r["dropped"] == 0 and r["duplicates"] == 0 for r in flat["labconsole"]))

    ctx.log(f"100 kHz paced source: recorder vs bare file, {reps} x {seconds:g} s each, alternating")
    paced = alternate({
        "labconsole": lambda: run_recorder(PacedSource(), seconds, folder / "paced"),
        "bare": lambda: run_bare(PacedSource(), seconds, folder / "bare"),
    }, reps, ctx.log)
    pct = _m(paced["labconsole"], "recorder_cpu_pct")
    res.add(f"100 kHz: recorder CPU, % of one core ({paced['labconsole'][0]['format']})", pct, "%",
            anchor=_m(paced["bare"], "writer_cpu_pct"), anchor_label="raw write",
            target=f"< {PACED_CPU_TARGET_PCT:g} %", met=pct < PACED_CPU_TARGET_PCT)
    res.add("100 kHz: whole process CPU (source, viewer included)", _m(paced["labconsole"], "process_cpu_pct"), "%")
    dropped = sum(r["dropped"] + r["duplicates"] for r in paced["labconsole"])
    res.add("100 kHz: samples dropped", float(dropped), "", anchor=float(sum(r["fifo_dropped"] for r in paced["bare"])),
            anchor_label="raw write", target="0", met=dropped == 0)
    res.details = {"seconds": seconds, "reps": reps, "flat": flat, "paced": paced}

    if csv_too:
        ctx.log("the same through the CSV stream (the format for ordinary rates), for comparison")
        fc = [run_recorder(FlatOutSource(max_backlog=1_000_000), seconds, folder / "flat-csv", fmt="csv")]
        pc = [run_recorder(PacedSource(), seconds, folder / "paced-csv", fmt="csv")]
        res.add("CSV stream: flat out samples/s to disk", _m(fc, "rate"), "/s", anchor=bare_rate, anchor_label="raw bytes to a file")
        res.add("CSV stream: 100 kHz recorder CPU, % of one core", _m(pc, "recorder_cpu_pct"), "%")
        res.add("CSV stream: 100 kHz samples dropped", float(sum(r["dropped"] for r in pc)), "")
        res.details["csv"] = {"flat": fc, "paced": pc}
    lab = flat["labconsole"][0]
    res.notes.append(f"flat out: {lab['bytes_on_disk'] / max(1, lab['samples']):.1f} bytes per sample on disk; "
                     f"reading {lab['samples'] / 1e6:.2f} M samples back took {lab['read_back_s']:.2f} s")
    return res
