"""Ours, for fleet runs: every node reported throughout the power window."""

from __future__ import annotations

from labconsole.bundle.reader import RunRecord
from labconsole.mlperf.checks.registry import CheckResult, check
from labconsole.mlperf.metrics import source_frame
from labconsole.mlperf.fleet import DEFAULT_MAX_DROPOUT_S, fleet_identity, silences
from labconsole.verdict import FAIL, PASS, SKIP, WARN

NAME = "node reporting"


@check
def node_reporting(record: RunRecord) -> list[CheckResult]:
    extra = fleet_identity(record)
    if extra is None:
        return [CheckResult(NAME, SKIP, "the primary source is not a fleet of nodes")]
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None or ph.detail.power_begin_ns is None:
        return [CheckResult(NAME, WARN, "no testing power window to check the nodes against")]
    limit = float(extra.get("max_dropout_s") or DEFAULT_MAX_DROPOUT_S)
    frame = source_frame(ph, record.primary_source)
    quiet = silences(frame, ph.detail.power_begin_ns, ph.detail.power_end_ns, list(extra.get("nodes") or []))
    if not quiet:
        return [CheckResult(NAME, FAIL, "no node reported in the testing window")]
    bad = {n: s for n, s in quiet.items() if s > limit}
    if bad:
        listed = ", ".join(f"{n} silent {s:.1f} s" for n, s in sorted(bad.items()))
        return [CheckResult(NAME, FAIL, f"{len(bad)} of {len(quiet)} node(s) dropped out for longer than the {limit:g} s allowed (max_dropout_s): {listed};"
                                        " the system's power misses them for that time")]
    worst_node = max(quiet, key=quiet.get)
    return [CheckResult(NAME, PASS, f"{len(quiet)} node(s) reported throughout the window (longest silence {quiet[worst_node]:.2f} s, {worst_node}; limit {limit:g} s)")]
