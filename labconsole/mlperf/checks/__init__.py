"""MLPerf's power rules as checks: ours and the official checker's, one registry.

`rules` holds ours (origin "labconsole"): completeness, LoadGen validity and error lines, the
power window, the ranging delta, minimum duration, sample regularity and gaps, invalid samples,
uncertainty, clock offset, calibration and the scope cross-check. `official` holds the
official compliance checker's eleven (origin "mlperf"). Both register with `registry.check`;
`run_checks` runs every registered check on a record, ours first, in the order they are written.
"""

from __future__ import annotations

from labconsole.bundle.reader import RunRecord
from labconsole.mlperf.checks.registry import REGISTERED, CheckResult
from labconsole.verdict import FAIL

# Importing a module registers its checks, so these two lines are the order `check` prints.
from labconsole.mlperf.checks import rules  # noqa: F401 - registers ours, first
from labconsole.mlperf.checks import fleet  # noqa: F401 - ours for fleet runs (every node reported)
from labconsole.mlperf.checks import official  # noqa: F401 - registers the official checker's, after ours


def run_checks(record: RunRecord) -> list[CheckResult]:
    results: list[CheckResult] = []
    for fn in REGISTERED:
        try:
            results.extend(fn(record))
        except Exception as exc:  # noqa: BLE001 - one broken input must not hide the others
            results.append(CheckResult(fn.__name__.replace("_", " "), FAIL, f"could not be checked: {type(exc).__name__}: {exc}"))
    return results


def passed(results: list[CheckResult]) -> bool:
    """True unless a check failed (warnings and skips pass)."""
    return all(r.status != FAIL for r in results)
