"""The checks' registry: what a check returns, and the `check` decorator that lists it.

A check is a function of a `RunRecord` that returns zero or more `CheckResult`s. `@check`
appends it to `REGISTERED`; `labconsole.mlperf.checks.run_checks` runs them in that order.
"""

from __future__ import annotations

from typing import Callable

from labconsole.bundle.reader import RunRecord

# CheckResult and the origins live in labconsole.verdict (a reader of verdicts need not load
# every check to hold one); they are re-exported here, where checks are written.
from labconsole.verdict import OFFICIAL, OURS, CheckResult  # noqa: F401

CheckFn = Callable[[RunRecord], list[CheckResult]]
REGISTERED: list[CheckFn] = []


def check(fn: CheckFn) -> CheckFn:
    REGISTERED.append(fn)
    return fn
