"""When LoadGen calls a run with `auto` settings INVALID, what to change before trying again.

LoadGen ends an INVALID run's summary with recommendations; the ones about the load it was
told to expect are what a busy machine causes (the probe measured the SUT while a neighbour
slowed it, then the neighbour went quiet, or the other way round):

    Offline       "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
    Server        "Increase the target QPS so the loadgen pre-generates more queries."
                  "Reduce target QPS to improve latency."
    Single/Multi  "Decrease the expected latency so the loadgen pre-generates more queries."

`retune` turns those into new settings: the SUT probed again, and never less of a change than
a factor of two in the direction LoadGen asks. Anything else (a crash, too few samples per query)
is not a matter of settings, and gives None.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labconsole.workload.loadgen_log import LoadGenLogError, decode_lines, parse_summary_log

STEP = 2.0  # at least this factor, in the direction LoadGen recommends

# (words in the recommendation, the setting, the direction)
_ADVICE = (
    ("increase expected qps", "target_qps", +1),
    ("increase the target qps", "target_qps", +1),
    ("reduce target qps", "target_qps", -1),
    ("decrease the expected latency", "expected_latency_ms", -1),
)


@dataclass
class Retune:
    settings: dict[str, float]  # the new `auto` values
    advice: str  # LoadGen's recommendation, as it wrote it
    changes: str  # "target_qps 150 -> 300"


def invalid_advice(loadgen_dir: Path) -> tuple[str | None, list[str]]:
    """(LoadGen's verdict, its recommendations) from the summary log under `loadgen_dir`."""
    path = loadgen_dir / "mlperf_log_summary.txt"
    if not path.exists():
        return None, []
    try:
        summary = parse_summary_log(path)
        lines = decode_lines(path)
    except (LoadGenLogError, OSError, UnicodeDecodeError):
        return None, []
    advice, inside = [], False
    for line in lines:
        if line.strip().startswith("Recommendations:"):
            inside = True
            continue
        if inside:
            if line.strip().startswith("*"):
                advice.append(line.strip().lstrip("*").strip())
            elif line.strip():
                break
    return summary.validity, advice


def retune(advice: list[str], current: dict[str, float], reprobed: dict[str, float] | None = None) -> Retune | None:
    """New settings for what LoadGen recommends, from the current ones and a fresh probe."""
    for text in advice:
        low = text.lower()
        for words, key, sign in _ADVICE:
            if words not in low or key not in current:
                continue
            old = float(current[key])
            stepped = old * STEP if sign > 0 else old / STEP
            fresh = (reprobed or {}).get(key)
            new = stepped if fresh is None else (max(stepped, float(fresh)) if sign > 0 else min(stepped, float(fresh)))
            settings = {**{k: float(v) for k, v in current.items()}, key: new}
            return Retune(settings, text, f"{key} {old:.6g} -> {new:.6g}")
    return None
