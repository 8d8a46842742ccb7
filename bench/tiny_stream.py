"""7. MLPerf Tiny at 100 kHz: an LPM01A stream in binary format recorded for 10 minutes, windows scored.

The LPM01A emulator (bin_hexa, current output, 100 kHz: the board's fastest, binary being the
only format that carries it) supplies the emulated DUT (5 ms per inference at 30 mW, 5 mW idle,
behind its IO manager at 9600 baud) on one bench in this process, in real time (speed 1). The
real `lpm01a` driver reads it through pyserial and the real recorder writes the bundle's binary
stream; meanwhile the host drives the DUT (`db load`, `infer N 1`) for 5 windows that fill the
session. Afterwards the stream is read back, each sample turned into energy (A x V / f), and the
windows cut at the DUT's timestamp edges by EnergyRunner's rule (`[ceil(t0 f), ceil(t1 f))`, the
edges in seconds since the trace began, as `trace1-timestamps.json` gives them: binary frames
carry no D7 events, so the times come from the wired bench).

Figures: samples recorded against the samples the session's length implies; samples lost
(recorder + the board's TimeStamp accounting + GAP rows: target 0); the median energy per
inference against the emulated DUT's 150 µJ (target within 0.5 %); this process's CPU.
"""

from __future__ import annotations

import math
import resource
import time

import numpy as np

from bench.core import Context, Result
from labconsole.emulators import lpm01a, tiny_bench, tiny_dut
from labconsole.events import EventBus
from labconsole.mlperf.tiny.scoring import median_uj_per_inf, pair_edges, window_at_times
from labconsole.recorder import Recorder
from labconsole.samples.batch import GAP
from labconsole.samples.streams import read_sample_stream
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource
from labconsole.sources.tiny_dut import TinyDut

FS = 100_000
INFER_MS, INFER_MW, IDLE_MW = 5.0, 30.0, 5.0
EXPECTED_UJ = INFER_MW * INFER_MS  # mW x ms = µJ
WINDOWS = 5
TOLERANCE_PCT = 0.5


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(ctx: Context, seconds: float | None = None) -> Result:
    res = Result("tiny", 8, "MLPerf Tiny at 100 kHz: an LPM01A binary stream recorded for 10 minutes, windows scored")
    seconds = seconds or ctx.pick(600.0, 30.0)
    folder = ctx.folder("tiny")
    name = "bench-tiny-stream"
    meter = lpm01a.start({"bench": name, "speed": 1.0, "noise_mw": 0.05, "relaxed_limits": True, "buffer_bytes": 1 << 22})
    dut = tiny_dut.start({"bench": name, "inference_ms": INFER_MS, "infer_mw": INFER_MW, "idle_mw": IDLE_MW, "boot_ms": 50})
    src = Lpm01aSource("lpm01a", Lpm01aOptions(port=meter.path, format="bin_hexa", output="current", frequency_hz=FS, voltage_mv=3000, enforce_board_limits=False, stall_timeout_s=5))
    rec: Recorder | None = None
    client = TinyDut(dut.path, via_io=True, timeout_s=10)
    n_inf = 0
    try:
        src.open()  # `pwr on`: the DUT boots; `start`: the stream begins
        rec = Recorder([(src, "stop")], EventBus(), stream_formats={"lpm01a": "binary"})
        rec.begin_segment("testing", folder)
        c0, t_start = _cpu(), time.monotonic()
        rec.start()
        client.open()
        client.wait_for("m-init-done", 5)
        client.io("setbaud 9600")
        client.identify()
        data = bytes(range(256)) * 2
        # 5 windows filling the session (each input's load over the 9600-baud UART takes ~1.4 s)
        per_window = max(1.0, (seconds - WINDOWS * 2.0) / WINDOWS)
        n_inf = max(1, int(per_window / (INFER_MS / 1000)))
        ctx.log(f"{seconds:g} s at {FS // 1000} kHz: {WINDOWS} x (load 490 bytes, infer {n_inf} 1)")
        for _ in range(WINDOWS):
            client.load(data[:490])
            client.infer(n_inf, 1, timeout_s=30 + 2 * n_inf * INFER_MS / 1000)
        left = seconds - (time.monotonic() - t_start)
        if left > 0:
            time.sleep(left)
        wall = time.monotonic() - t_start
        cpu = _cpu() - c0
    finally:
        client.close()
        try:
            if rec is not None:
                rec.stop()  # as the run engine does: the recorder first, then the source
        finally:
            src.close()
            t0 = meter.acquisition_start
            edges = [t - t0 for t in dut.bench.edges_between(t0, math.inf)]
            dut.stop()
            meter.stop()
            tiny_bench.forget(name)
    counts = rec.counts()["lpm01a"] if rec is not None else {}
    t_read = time.perf_counter()
    frame = read_sample_stream(next(folder.glob("samples-lpm01a.*"))).frame
    joules = (frame["watts"].to_numpy() / FS)
    gap_rows = int((frame["status"].to_numpy() == GAP).sum())
    joules = np.where(np.isfinite(joules), joules, 0.0)
    pairs = pair_edges(edges[-2 * WINDOWS :])
    windows = [window_at_times(joules * 1e6, float(FS), a, b, n_inf, k, 1.0) for k, (a, b) in enumerate(pairs)]
    median = median_uj_per_inf(windows)
    score_s = time.perf_counter() - t_read
    lost = int(counts.get("lost", 0) + counts.get("unrecorded", 0) + src.counters.get("dropped", 0) + gap_rows)
    expected_n = int(wall * FS)
    res.add("samples recorded", float(len(frame)), "", anchor=float(expected_n), anchor_label="session length x 100 kHz",
            note=f"{wall:.1f} s session; the anchor counts from when the recorder started, the stream from `start`")
    res.add("samples lost (recorder, board TimeStamps, GAP rows)", float(lost), "", target="0", met=lost == 0)
    res.add("median energy per inference (5 windows)", median, "uJ/inf", anchor=EXPECTED_UJ, anchor_label="the emulated DUT's 30 mW x 5 ms",
            target=f"within {TOLERANCE_PCT:g} %", met=bool(windows) and abs(median / EXPECTED_UJ - 1) * 100 <= TOLERANCE_PCT)
    res.add("windows scored", float(len(windows)), "", target=str(WINDOWS), met=len(windows) == WINDOWS)
    res.add("process CPU while streaming (driver, recorder, both emulators), % of one core", 100 * cpu / wall if wall else None, "%")
    res.add("reading the stream back and scoring the windows", score_s, "s")
    res.notes.append(f"{len(frame):,} samples, {n_inf} inferences per window; windows {', '.join(f'{w.runtime_s:.3f} s' for w in windows)}")
    res.details = {"seconds": seconds, "wall_s": wall, "counts": counts, "driver_counters": dict(src.counters), "gap_rows": gap_rows,
                   "windows": [w.as_dict() for w in windows], "edges_s": edges}
    return res
