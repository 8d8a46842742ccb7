"""The checks' registry: what a check returns, and the `check` decorator that lists it.

A check is a function of a `RunRecord` that returns zero or more `CheckResult`s. `@check`
appends it to `REGISTERED`; `labconsole.mlperf.checks.run_checks` runs them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from labconsole.bundle.reader import RunRecord

# Who wrote the rule: us, or MLPerf's official checker (whose check names we keep).
OURS, OFFICIAL = "labconsole", "mlperf"


@dataclass
class CheckResult:
    """The verdict of one check: `status` is one of labconsole.verdict's; `message` says what was seen."""

    name: str
    status: str
    message: str
    origin: str = OURS

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "message": self.message, "origin": self.origin}


CheckFn = Callable[[RunRecord], list[CheckResult]]
REGISTERED: list[CheckFn] = []


def check(fn: CheckFn) -> CheckFn:
    REGISTERED.append(fn)
    return fn
