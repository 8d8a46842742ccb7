"""Instructions per sample of labconsole's hot paths, counted by valgrind (callgrind).

    python -m bench.icount [--labconsole DIR] [OP ...]

On a shared, noisy machine a wall or CPU time moves with the neighbours; an instruction count
does not. Each operation runs twice under `valgrind --tool=callgrind` in a fresh interpreter,
with N samples and with one, and the difference divided by N - 1 is what one sample costs
(the interpreter's start, the imports and the per-call costs cancel out). `--labconsole DIR` counts another copy of the
package (e.g. `git archive` of an older commit) for before/after figures. Needs valgrind.

Cheap operations need a large N (the counts of the two runs differ by a few million
instructions whatever N is). Operations: csv_write, bin_write (append + flush of a 100 k-sample stream in 10 k batches),
csv_read, bin_read (read it back), stats (the recorder's per-segment statistics of 1 k
batches), window (the power-window average of a phase).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.core import ROOT

N = 100_000

SETUP = """
import sys, numpy as np
from pathlib import Path
from labconsole.samples import empty_batch
N = int(sys.argv[1]); folder = Path(sys.argv[2])
def batch(start, n):
    rng = np.random.default_rng(start)
    b = empty_batch(n)
    b["wall_ns"] = 1_700_000_000_000_000_000 + np.arange(start, start + n) * 10_000
    b["mono_ns"] = np.arange(start, start + n) * 10_000
    b["watts"] = rng.random(n) * 3 + 0.1
    b["volts"] = 3.3
    b["amps"] = b["watts"] / 3.3
    return b
data = batch(0, max(N, 1))[:N]
"""

OPS = {
    "csv_write": """
from labconsole.samples import SampleStreamWriter
w = SampleStreamWriter(folder / "s.csv", fsync=False)
for i in range(0, N, 10_000):
    w.append("main", data[i:i + 10_000])
w.close()
""",
    "bin_write": """
from labconsole.samples import open_sample_stream
w = open_sample_stream(folder / "s.bin", fsync=False)
for i in range(0, N, 10_000):
    w.append("main", data[i:i + 10_000])
w.close()
""",
    "csv_read": """
from labconsole.samples import read_sample_stream
read_sample_stream(folder / ("s.csv" if N > 1 else "one.csv"))
""",
    "bin_read": """
from labconsole.samples import read_sample_stream
read_sample_stream(folder / ("s.bin" if N > 1 else "one.bin"))
""",
    "stats": """
from labconsole.recorder import SegmentStats
st = SegmentStats()
for i in range(0, N, 1000):
    st.add(data[i:i + 1000])
""",
    "window": """
import pandas as pd
from labconsole.mlperf.metrics import window_average
frame = pd.DataFrame({k: data[k] for k in ("wall_ns", "watts", "status")}).assign(channel=pd.Categorical.from_codes(np.zeros(N, np.int8), ["main"]))
window_average(frame, int(data["wall_ns"][0]) - 1, int(data["wall_ns"][-1]) + 1)
""",
}
PREPARE = {  # files the read operations need, written with the same labconsole
    "csv_read": "csv_write",
    "bin_read": "bin_write",
}


def _env(labconsole: Path | None) -> dict:
    env = dict(os.environ)
    paths = ([str(labconsole)] if labconsole else []) + [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every run: counts repeat exactly
    return env


def instructions(code: str, n: int, folder: Path, env: dict) -> int:
    out = folder / f"cg.{n}.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code, str(n), str(folder)],
        env=env, cwd=str(folder), capture_output=True, text=True, timeout=3600, check=True,  # cwd: not the checkout, so PYTHONPATH decides
    )
    text = out.read_text(errors="replace")
    m = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(r"^totals:\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no instruction total in {out}")
    return int(m.group(1))


def count(op: str, labconsole: Path | None = None, n: int = N) -> dict:
    env = _env(labconsole)
    folder = Path(tempfile.mkdtemp(prefix="icount-"))
    try:
        if op in PREPARE:
            subprocess.run([sys.executable, "-c", SETUP + OPS[PREPARE[op]], str(n), str(folder)], env=env, cwd=str(folder), check=True, timeout=600)
            # and a one-sample stream of the same format for the base run
            one = folder / "one"
            one.mkdir()
            subprocess.run([sys.executable, "-c", SETUP + OPS[PREPARE[op]], "1", str(one)], env=env, cwd=str(folder), check=True, timeout=600)
            for f in one.iterdir():
                f.rename(folder / ("one" + f.suffix))
        full = instructions(SETUP + OPS[op], n, folder, env)
        base = instructions(SETUP + OPS[op], 1, folder, env)  # one sample: the same code paths, once
        return {"op": op, "n": n, "instructions": full - base, "per_sample": (full - base) / (n - 1),
                "labconsole": str(labconsole or ROOT / "labconsole")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.icount", description=__doc__.split("\n\n")[0])
    ap.add_argument("ops", nargs="*", default=list(OPS), help=f"operations ({', '.join(OPS)}); default all")
    ap.add_argument("--labconsole", type=Path, help="a folder holding another labconsole package to count")
    ap.add_argument("-n", type=int, default=N, help=f"samples (default {N})")
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("python -m bench.icount: valgrind is not installed", file=sys.stderr)
        return 2
    for op in args.ops:
        if op not in OPS:
            print(f"unknown operation {op!r} ({', '.join(OPS)})", file=sys.stderr)
            return 2
        try:
            res = count(op, args.labconsole, args.n)
        except subprocess.CalledProcessError as exc:
            print(json.dumps({"op": op, "error": (exc.stderr or "")[-300:]}), flush=True)
            continue
        print(json.dumps(res), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
