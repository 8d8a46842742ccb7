"""19. Training scoring: a 64-node, 10-run MLPerf Training power session scored end to end.

The folder is written in the official layout (shaped like Dell's v4.1 result: a
power_measurement_start, conversion_eff, one power_reading per node per second, a stop marker;
a result log per run with run_start/run_stop), 64 nodes x 10 runs of 10 minutes at 1 Hz:
384,000 readings in 640 node logs. labconsole reads and scores it (`read_training_folder`:
every log parsed, every node's energy, olympic averaging), side by side with the official
summarizer's own power code (mlperf-logging's `_compute_total_power` for each run, the part
of `result_summarizer` that reads power logs) when mlperf-logging is installed.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from bench.core import Context, Result, alternate, median

NODES, RUNS, RUN_S, RATE_HZ = 64, 10, 600, 1.0
TARGET_S = 2.0


def _line(t_ms: int, key: str, value, md: dict, et: str = "POINT_IN_TIME") -> str:
    return ":::MLLOG " + json.dumps({"namespace": "", "time_ms": t_ms, "event_type": et, "key": key, "value": value, "metadata": md}) + "\n"


def make_folder(root: Path, nodes: int = NODES, runs: int = RUNS, run_s: float = RUN_S) -> tuple[Path, int]:
    bench = root / "org" / "results" / "sys" / "bert"
    rng = random.Random(19)
    t0 = 1_760_000_000_000
    readings = 0
    for k in range(runs):
        start = t0 + k * int((run_s + 120) * 1000)
        ttt = int(run_s * 1000 * rng.uniform(0.95, 1.05))
        (bench / "power" / f"result_{k}").mkdir(parents=True, exist_ok=True)
        (bench / f"result_{k}.txt").write_text(
            _line(start, "run_start", None, {}, "INTERVAL_START") + _line(start + ttt, "run_stop", None, {"status": "success"}, "INTERVAL_END"))
        n_read = int(ttt / 1000 * RATE_HZ) + 2
        for i in range(nodes):
            lines = [_line(start - 1000, "power_measurement_start", None, {}, "INTERVAL_START"),
                     _line(start - 1000, "conversion_eff", 0.96, {"measurement_type": "AC"})]
            base = rng.uniform(5000, 7000)
            lines += [_line(start - 1000 + j * 1000, "power_reading", round(base + rng.gauss(0, 50), 1), {"host": f"node_{i}"}) for j in range(1, n_read)]
            lines.append(_line(start - 1000 + n_read * 1000, "power_measurement_stop", None, {}, "INTERVAL_END"))
            (bench / "power" / f"result_{k}" / f"node_{i}.txt").write_text("".join(lines))
            readings += n_read - 1
    return bench, readings


def labconsole_score(bench: Path) -> float:
    from labconsole.mlperf.training.folder import read_training_folder

    return read_training_folder(bench, rules="current").energy_score_j


def official_power(bench: Path) -> list[float] | None:
    try:
        from mlperf_logging.result_summarizer import result_summarizer as rs
    except ImportError:
        return None
    out = []
    for k in range(len(list(bench.glob("result_*.txt")))):
        f = bench / f"result_{k}.txt"
        lines = f.read_text().splitlines()
        t = [json.loads(ln[len(":::MLLOG "):])["time_ms"] for ln in lines]
        out.append(rs._compute_total_power(str(bench), str(f), t[1] - t[0], "4.1.0"))
    return out


def run(ctx: Context) -> Result:
    res = Result("training", 19, "Training scoring: a 64-node, 10-run session scored (official layout) vs the official summarizer's power code")
    nodes = NODES if not ctx.quick else 16
    t = time.perf_counter()
    bench, readings = make_folder(ctx.folder("training"), nodes=nodes)
    ctx.log(f"  {nodes} nodes x {RUNS} runs, {readings:,} readings, written in {time.perf_counter() - t:.1f} s")
    sides = {"labconsole": lambda: _timed(labconsole_score, bench)}
    have_official = official_power(bench) is not None if ctx.quick else True
    if have_official:
        sides["official"] = lambda: _timed(official_power, bench)
    runs = alternate(sides, ctx.pick(3, 1), ctx.log)
    ours = median([r[0] for r in runs["labconsole"]])
    anchor = median([r[0] for r in runs["official"]]) if "official" in runs and runs["official"][0][1] is not None else None
    scale = NODES / nodes
    label = f"score {NODES} nodes x {RUNS} runs" + ("" if scale == 1 else f" (measured at {nodes} nodes, x{scale:g})")
    res.add(label, ours * scale, "s", anchor=None if anchor is None else anchor * scale,
            anchor_label="mlperf-logging's _compute_total_power, every run", target=f"< {TARGET_S:g} s", met=ours * scale < TARGET_S)
    res.add("readings scored per second", readings / ours, "/s")
    res.notes.append(f"{readings:,} readings in {nodes * RUNS} node logs; labconsole's figure is the full `report` path (parse, score, olympic average)")
    res.details = {"runs": {k: [r[0] for r in v] for k, v in runs.items()}, "readings": readings, "nodes": nodes}
    return res


def _timed(fn, arg):
    t = time.perf_counter()
    out = fn(arg)
    return time.perf_counter() - t, out
