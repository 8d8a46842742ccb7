"""Checks of a recorded run against MLPerf's power rules and our own, for `labconsole check`.

Each check returns a verdict (pass / warn / fail) and a message that says what was seen and,
on failure, what it means. The same list runs on our bundles and on MLPerf result folders;
a check whose inputs a record lacks says so instead of passing silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from labconsole import analysis
from labconsole.bundle.reader import RunRecord
from labconsole.bundle.seal import verify

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass
class CheckResult:
    name: str
    status: str
    message: str

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "message": self.message}


CheckFn = Callable[[RunRecord], list[CheckResult]]
REGISTRY: list[CheckFn] = []


def check(fn: CheckFn) -> CheckFn:
    REGISTRY.append(fn)
    return fn


@check
def manifest(record: RunRecord) -> list[CheckResult]:
    if record.kind != "bundle":
        return []
    v = verify(record.path)
    if not v.sealed:
        return [CheckResult("manifest", FAIL, v.problems[0])]
    if v.problems:
        return [CheckResult("manifest", FAIL, "; ".join(v.problems))]
    return [CheckResult("manifest", PASS, f"sealed; {v.files_checked} payload files match their SHA-256")]


@check
def completeness(record: RunRecord) -> list[CheckResult]:
    out = []
    if record.kind == "bundle":
        status = record.exit_status
        if status == "completed":
            out.append(CheckResult("run status", PASS, "the run completed"))
        elif status == "recovered":
            out.append(CheckResult("run status", WARN, f"recovered after the console died: {record.run_info.get('reason') or 'data up to the last flush'}"))
        elif status == "running":
            out.append(CheckResult("run status", FAIL, "the run never finished (exit status still 'running'); `labconsole recover` seals what is there"))
        else:
            out.append(CheckResult("run status", FAIL, f"the run ended '{status}': {record.run_info.get('reason') or 'no reason recorded'}"))
    for name in ("ranging", "testing"):
        ph = record.phases.get(name)
        if ph is None:
            sev = FAIL if name == "testing" else WARN
            out.append(CheckResult(f"{name} phase", sev, f"no {name} phase recorded"))
            continue
        problems = []
        if ph.detail is None:
            problems.append(ph.detail_error or "no mlperf_log_detail.txt")
        if ph.samples is None or len(ph.samples) == 0:
            problems.append("; ".join(ph.sample_errors) or "no samples")
        if ph.torn:
            problems.append("last line cut off by a crash in " + ", ".join(ph.torn))
        if problems:
            fatal = ph.detail is None or ph.samples is None or len(ph.samples) == 0
            sev = FAIL if (fatal and name == "testing") else WARN
            out.append(CheckResult(f"{name} phase", sev, "; ".join(problems)))
        else:
            out.append(CheckResult(f"{name} phase", PASS, f"LoadGen logs and {len(ph.samples)} samples present"))
    if record.missing:
        out.append(CheckResult("files present", WARN, "missing: " + ", ".join(record.missing)))
    return out


@check
def loadgen_validity(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None:
        return [CheckResult("loadgen validity", FAIL, "no testing detail log to read the result from")]
    validity = ph.detail.validity
    out = []
    if validity == "VALID":
        out.append(CheckResult("loadgen validity", PASS, "LoadGen says the testing run is VALID"))
    else:
        reason = ph.detail.get("result_invalid_reason") or ""
        out.append(CheckResult("loadgen validity", FAIL, f"LoadGen says the testing run is {validity or 'unknown'}{': ' + str(reason) if reason else ''}"))
    if ph.detail.errors:
        first = ph.detail.errors[0]
        out.append(
            CheckResult(
                "loadgen errors",
                FAIL,
                f"{len(ph.detail.errors)} error line(s) in the detail log, first at line {first[0]}: {first[1]} {str(first[2])[:120]}",
            )
        )
    else:
        out.append(CheckResult("loadgen errors", PASS, "no error lines in the detail log"))
    return out


@check
def power_window(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None:
        return [CheckResult("power window", FAIL, "no testing detail log")]
    if ph.detail.power_begin_ns is None:
        return [CheckResult("power window", FAIL, f"{ph.detail.path}: no power_begin/power_end markers")]
    stats = analysis.phase_power(record, "testing")
    if stats is None or stats.samples == 0:
        return [CheckResult("power window", FAIL, f"no valid power samples between power_begin {ph.detail.power_begin} and power_end {ph.detail.power_end}")]
    return [
        CheckResult(
            "power window",
            PASS,
            f"{stats.samples} samples between {ph.detail.power_begin} and {ph.detail.power_end} ({stats.window_s:.3f} s), average {stats.avg_w:.6f} W",
        )
    ]


@check
def ranging_delta(record: RunRecord) -> list[CheckResult]:
    delta = analysis.ranging_delta_pct(record)
    if delta is None:
        return [CheckResult("ranging vs testing", WARN, "cannot compare: the ranging run's detail log or samples are missing")]
    limit = -5.0
    checker = analysis.checker_ranging_delta_pct(record)
    msg = f"testing average is {delta:+.2f} % against ranging (limit {limit:+.0f} %)"
    if checker is not None and delta > limit and not checker > limit:
        return [CheckResult("ranging vs testing", FAIL, msg + f"; the official checker's rounding gives {checker:+.2f} %, which fails")]
    if delta > limit:
        return [CheckResult("ranging vs testing", PASS, msg)]
    return [CheckResult("ranging vs testing", FAIL, msg + ": MLPerf fails a testing run more than 5 % below ranging")]


def run_checks(record: RunRecord) -> list[CheckResult]:
    results: list[CheckResult] = []
    for fn in REGISTRY:
        try:
            results.extend(fn(record))
        except Exception as exc:  # noqa: BLE001 - one broken input must not hide the others
            results.append(CheckResult(fn.__name__.replace("_", " "), FAIL, f"could not be checked: {type(exc).__name__}: {exc}"))
    return results


def passed(results: list[CheckResult]) -> bool:
    return all(r.status != FAIL for r in results)
