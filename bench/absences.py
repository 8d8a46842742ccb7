"""The issue thread's absences: when LoadGen's issue callback did not run for over 1 ms.

p99.9 of a 3 s Server run at 10 k QPS is its 30th worst query, so a single absence of the
issue thread of 2-3 ms (every query scheduled meanwhile waits behind it) sets it. The probe
(`gap_probe/sitecustomize.py`) is loaded into bare LoadGen and labconsole's worker alike
through PYTHONPATH (`probe_in_children`) and notes each issue call; labconsole itself is not
changed. Used by bench 1's tail rows and by `python -m bench.issue_gaps`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.core import median

PROBE = Path(__file__).with_name("gap_probe")


def noted(run_fn: Callable[..., dict], path: Path) -> Callable[..., dict]:
    """`run_fn` (a bench.harness way), its LoadGen test's issue calls noted into `path`; the
    figures it returns get `gaps`: calls, span_ns and each gap over 1 ms (start, end ns)."""
    def run(*args) -> dict:
        before = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
        os.environ["LABCONSOLE_BENCH_GAPS"] = str(path)
        try:
            out = run_fn(*args)
        finally:
            del os.environ["LABCONSOLE_BENCH_GAPS"]
        lines = path.read_text(encoding="utf-8").splitlines()[before:]
        # the worker alone and labconsole probe the SUT first (no LoadGen test): the test is the last line
        out["gaps"] = json.loads(lines[-1]) if lines else None
        return out

    return run


def summarize(runs: list[dict]) -> dict:
    kept = [r for r in runs if r.get("gaps")]
    secs = sum(r["gaps"]["span_ns"] for r in kept) / 1e9
    g1 = [[b - a for a, b in r["gaps"]["gaps"]] for r in kept]
    n1 = sum(len(g) for g in g1)
    n2 = sum(1 for g in g1 for d in g if d > 2e6)
    return {
        "runs": len(kept), "test_s": round(secs, 2),
        "p99_ms": median([r["p99_ms"] for r in kept]), "p999_ms": median([r["p999_ms"] for r in kept]),
        "absences_over_1ms": n1, "absences_over_2ms": n2,
        "absences_over_1ms_per_s": n1 / secs if secs else None, "absences_over_2ms_per_s": n2 / secs if secs else None,
        "away_ms_per_s": sum(sum(g) for g in g1) / 1e6 / secs if secs else None,
        "absences_over_1ms_each_run": [len(g) for g in g1], "p999_ms_each_run": [round(r["p999_ms"], 3) for r in kept],
    }


def rates(runs: list[dict], over_ms: float = 1.0) -> list[float | None]:
    """Each run's absences over `over_ms` per second of its test (None where nothing was noted)."""
    out: list[float | None] = []
    for r in runs:
        g = r.get("gaps")
        out.append(sum(1 for a, b in g["gaps"] if b - a > over_ms * 1e6) / (g["span_ns"] / 1e9) if g and g["span_ns"] else None)
    return out


def paired(ours: list[dict], anchor: list[dict], over_ms: float = 1.0) -> dict:
    """Two ways' absence rates round by round (bench.core.alternate runs round i of every way
    seconds apart). The machine's absences come in spells minutes long, far from a steady
    Poisson rate, so pooled counts would claim a precision they do not have: this gives the
    median of each way's per-run rates, their ratio, and in how many rounds ours had more,
    with a two-sided sign test's p (ties left out)."""
    a, b = rates(ours, over_ms), rates(anchor, over_ms)
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    more, fewer = sum(1 for x, y in pairs if x > y), sum(1 for x, y in pairs if x < y)
    n = more + fewer
    tail = sum(math.comb(n, k) for k in range(min(more, fewer) + 1)) / 2**n if n else 1.0
    ma, mb = median([x for x, _ in pairs]) if pairs else None, median([y for _, y in pairs]) if pairs else None
    return {"rounds": len(pairs), "ours_median_per_s": ma, "anchor_median_per_s": mb,
            "ratio_of_medians": (ma / mb) if ma is not None and mb else None,
            "rounds_ours_more": more, "rounds_ours_fewer": fewer, "sign_test_p": min(1.0, 2 * tail)}


@contextmanager
def probe_in_children() -> Iterator[None]:
    """The probe in every Python process started meanwhile (both ways alike)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(PROBE) + (os.pathsep + old if old else "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
