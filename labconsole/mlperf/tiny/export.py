"""Writing a Tiny energy session in the MLCommons runner's layout (`results.json`, `results.txt`,
`log.txt`), the folder `folders.read_mlcommons` reads and the submission checker expects.

`results.json` is the runner's list of trials (`power.samples` in J per sample period,
`power.timestamps` = [counter, sample index] pairs, `infer.iterations`/`warmups`/`results`);
`results.txt` prints each trial and the median as `main.py:print_energy_results` does.
A labconsole run adds `run.json` (sample rate, supply voltage, lost samples, the DUT, the run's
id): what the runner's files do not say. Trials with too few events are still written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from labconsole.mlperf.tiny.folders import MLC_RESULTS, TinyError, find_tiny
from labconsole.mlperf.tiny.scoring import MIN_WINDOW_S, WINDOWS


def results_txt(trials: list[dict], fs: float = 1000.0) -> str:
    """The runner's `Power Edition Output`, computed as it computes it."""
    out = ["Power Edition Output"]
    per_inf: list[float] = []
    times: list[float] = []
    for k, tr in enumerate(trials):
        samples = tr["power"]["samples"]
        ts = [int(i) for _, i in tr["power"]["timestamps"]]
        if len(ts) < 2:
            out.append(f"Energy data for trial {k}")
            out.append("  fewer than 2 timestamps: no window")
            continue
        t0, t1 = ts[-2] / fs, ts[-1] / fs
        elapsed = t1 - t0
        total = float(np.sum(np.array(samples[ts[-2] : ts[-1]], dtype=np.float64)))
        n = int(tr["infer"]["iterations"])
        e = total / n
        per_inf.append(e)
        times.append(elapsed)
        warn = "" if elapsed >= MIN_WINDOW_S else "  <<<< below minimum duration"
        out += [
            f"Energy data for trial {k}",
            f"  Elapsed time  : {elapsed}{warn}",
            f"  Inferences    : {n}",
            f"  Power         : {1e3 * total / elapsed:5.4f} mW.",
            f"  Total Energy  : {total * 1e6:.3f} uJ",
            f"  Energy/Inf    : {e * 1e6:.3f} uJ/inf",
        ]
    out.append("-" * 57)
    if per_inf:
        out.append(f"Median energy cost is {1e6 * np.median(per_inf):5.4f} uJ/inf.")
    out.append("-" * 57)
    if any(t < MIN_WINDOW_S for t in times):
        out.append("ERROR: Not valid for submission.  All inference times must be at least 10 seconds.")
    if len(trials) != WINDOWS:
        out.append(f"ERROR: Not valid for submission.  Energy mode must include exactly {WINDOWS} measurements.")
    return "\n".join(out) + "\n"


def write_mlcommons(folder: Path, trials: list[dict], log_lines: list[str], run_info: dict) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fs = float(run_info.get("sample_rate_hz") or 1000.0)
    paths = [folder / MLC_RESULTS, folder / "results.txt", folder / "log.txt", folder / "run.json"]
    paths[0].write_text(json.dumps(trials), encoding="utf-8")
    paths[1].write_text(results_txt(trials, fs), encoding="utf-8")
    paths[2].write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    paths[3].write_text(json.dumps(run_info, indent=2), encoding="utf-8")
    return paths


def export_mlcommons(bundle: str | Path, out_dir: str | Path) -> list[Path]:
    """A labconsole Tiny bundle's session, as the MLCommons runner lays it out (into a new or
    empty folder; `run.json`, ours, is left out so the folder is the runner's own)."""
    src = find_tiny(bundle)
    if src is None or not (src / "run.json").is_file():
        raise TinyError(f"{bundle}: not a labconsole Tiny run (no data/tiny/results.json)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise TinyError(f"{out}: exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (MLC_RESULTS, "results.txt", "log.txt"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
            written.append(out / name)
    return written
