"""Verdicts: what a check of a record or a calibration step concludes, and how verdicts combine.

    pass   the rule holds
    warn   it holds with a reservation, or its inputs are missing (the message says which)
    fail   the rule is broken
    skip   the rule does not apply here (the message says why)

They are plain strings because they are stored as such (summary.json, calibration.json, the
timeline) and shown as such (`check`, the screens).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"

# Most severe first: a fail outweighs a warning, a warning a pass, and anything a skip.
SEVERITY = (FAIL, WARN, PASS, SKIP)


def worst(statuses: Iterable[str]) -> str:
    """The most severe verdict among `statuses`; SKIP when there is none to judge.

    Nothing judged is a skip, the least verdict, so that verdicts combine in any grouping:
    worst(a + b) == worst([worst(a), worst(b)]), empty lists included. A caller for whom
    "nothing" means something else (no samples is a warning, no failure is a pass) says so
    where it calls. A status that is none of the four counts as a skip.
    """
    present = set(statuses)
    return next((s for s in SEVERITY if s in present), SKIP)


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


def passed(results: Iterable[CheckResult]) -> bool:
    """True unless a check failed (warnings and skips pass)."""
    return all(r.status != FAIL for r in results)
