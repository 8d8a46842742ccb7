"""MLPerf's power rules as checks: ours and the official checker's, one registry.

`rules` holds ours (origin "labconsole"): completeness, LoadGen validity and error lines, the
power window, the ranging delta, minimum duration, sample regularity and gaps, invalid samples,
uncertainty, clock offset, calibration and the scope cross-check. `official` holds the
official compliance checker's eleven (origin "mlperf"). Both register with `registry.check`;
`run_checks` runs every registered check on a record, ours first, in the order they are written,
under the rules of the round the record was made for (`rounds`: `--rules auto|vX.Y|current`).
"""

from __future__ import annotations

from labconsole.bundle.reader import RunRecord
from labconsole.mlperf.checks.registry import REGISTERED, CheckResult
from labconsole.mlperf.checks.rounds import RulesChoice, applying, choose
from labconsole.verdict import FAIL, passed

# Importing a module registers its checks, so these two lines are the order `check` prints.
from labconsole.mlperf.checks import rules  # noqa: F401 - registers ours, first
from labconsole.mlperf.checks import fleet  # noqa: F401 - ours for fleet runs (every node reported)
from labconsole.mlperf.checks import official  # noqa: F401 - registers the official checker's, after ours


def run_checks(record: RunRecord, rules: RulesChoice | str | None = None) -> list[CheckResult]:  # noqa: F811 - the module `rules` is imported only to register its checks
    """Every registered check on `record`, under `rules` (a RulesChoice, or a --rules spec:
    auto, current, vX.Y; default auto: the round the record was made for)."""
    choice = rules if isinstance(rules, RulesChoice) else choose(record, rules)
    results: list[CheckResult] = []
    with applying(choice):
        for fn in REGISTERED:
            try:
                results.extend(fn(record))
            except Exception as exc:  # noqa: BLE001 - one broken input must not hide the others
                results.append(CheckResult(fn.__name__.replace("_", " "), FAIL, f"could not be checked: {type(exc).__name__}: {exc}"))
    return results


__all__ = ["CheckResult", "RulesChoice", "choose", "passed", "run_checks"]
