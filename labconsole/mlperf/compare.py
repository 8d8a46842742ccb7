"""Two recorded runs side by side (`labconsole compare A B`, and the TUI's recordings screen).

Each run, a bundle or an MLPerf result folder, goes through the same analysis and checks as
`report` and `check`; the comparison lines up the figures (metric, average power, samples per
joule or energy per query, performance, idle baseline, uncertainty, ...) with the relative
change from A to B, the check verdicts, and the differences between the two benches.
UI-free: `compare_runs` returns a structure; `render_text` is the CLI's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from labconsole.bundle.environment_diff import WARNING, Difference, diff_environments, record_environment, dig


@dataclass
class Figure:
    key: str  # stable name for programs: "avg_power", "source.wall.avg_watts", ...
    label: str  # for people
    unit: str
    a: float | None
    b: float | None
    better: str | None = None  # "higher" | "lower" | None (neither is better)

    @property
    def delta(self) -> float | None:
        if _num(self.a) and _num(self.b):
            return float(self.b) - float(self.a)
        return None

    @property
    def rel_change_pct(self) -> float | None:
        """(B - A) / |A| x 100; None where A is missing or zero."""
        if _num(self.a) and _num(self.b) and float(self.a) != 0.0:
            return (float(self.b) - float(self.a)) / abs(float(self.a)) * 100.0
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "rel_change_pct": self.rel_change_pct,
            "better": self.better,
        }


@dataclass
class CheckPair:
    name: str
    a: str | None  # pass | warn | fail | None (not run for that record)
    b: str | None
    a_message: str = ""
    b_message: str = ""

    @property
    def changed(self) -> bool:
        return self.a != self.b

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a, "b": self.b, "changed": self.changed, "a_message": self.a_message, "b_message": self.b_message}


@dataclass
class RunSide:
    path: str
    kind: str
    id: str | None
    profile: str | None
    scenario: str | None
    exit_status: str | None
    start: str | None
    result_validity: str | None
    primary_source: str | None
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Comparison:
    a: RunSide
    b: RunSide
    figures: list[Figure]
    checks: list[CheckPair]
    environment: list[Difference]
    notes: list[str] = field(default_factory=list)
    reports: tuple[dict, dict] = ({}, {})  # the two `report --json` objects, for a closer look

    def figure(self, key: str) -> Figure | None:
        for f in self.figures:
            if f.key == key:
                return f
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "same_scenario": self.a.scenario == self.b.scenario,
            "figures": [f.as_dict() for f in self.figures],
            "checks": [c.as_dict() for c in self.checks],
            "environment": [d.as_dict() for d in self.environment],
            "notes": list(self.notes),
        }


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _side(record: Any, report: dict, checks: list) -> RunSide:
    from labconsole.mlperf.checks import passed

    info = record.run_info or {}
    return RunSide(
        path=str(record.path),
        kind=record.kind,
        id=info.get("id"),
        profile=dig(info, "profile", "name"),
        scenario=report.get("scenario"),
        exit_status=record.exit_status,
        start=info.get("start"),
        result_validity=report.get("result_validity"),
        primary_source=record.primary_source,
        passed=passed(checks),
    )


def _performance_unit(key: str | None) -> tuple[str, str]:
    if key and "latency" in key:
        return ("ms" if key.endswith("_ms") else "ns"), "lower"
    return "samples/s", "higher"


def figures_of(ra: dict, rb: dict) -> tuple[list[Figure], list[str]]:
    """The figures two `compute_report` objects have, lined up; plus notes on what does not match."""
    notes: list[str] = []
    figs: list[Figure] = []
    ma, mb = ra.get("metric") or {}, rb.get("metric") or {}
    name = ma.get("name") or mb.get("name") or "metric"
    unit = ma.get("unit") or mb.get("unit") or ""
    if ma and mb and (ma.get("name"), ma.get("unit")) != (mb.get("name"), mb.get("unit")):
        notes.append(f"the metrics differ ({ma.get('name')} in {ma.get('unit')} against {mb.get('name')} in {mb.get('unit')}): the runs are not comparable figure by figure")
        figs.append(Figure("metric", f"metric ({name})", unit, ma.get("value"), None, "lower"))
    else:
        figs.append(Figure("metric", f"metric ({name})", unit, ma.get("value"), mb.get("value"), "lower"))
    figs.append(Figure("avg_power", "average power (testing window)", "W", dig(ra, "power", "avg_watts"), dig(rb, "power", "avg_watts"), "lower"))
    figs.append(Figure("samples_per_joule", "samples per joule", "samples/J", ra.get("samples_per_joule"), rb.get("samples_per_joule"), "higher"))
    epq = [m.get("value") if m.get("name") == "energy_per_query" else None for m in (ma, mb)]
    if any(v is not None for v in epq):
        figs.append(Figure("energy_per_query", "energy per query", "mJ", epq[0], epq[1], "lower"))
    pa, pb = ra.get("performance") or {}, rb.get("performance") or {}
    pkey = pa.get("key") or pb.get("key")
    punit, pbetter = _performance_unit(pkey)
    if pa and pb and pa.get("key") != pb.get("key"):
        notes.append(f"the performance figures differ ({pa.get('key')} against {pb.get('key')})")
        figs.append(Figure("performance", f"performance ({pkey})", punit, pa.get("value"), None, pbetter))
    else:
        figs.append(Figure("performance", f"performance ({pkey or 'QPS'})", punit, pa.get("value"), pb.get("value"), pbetter))
    figs.append(Figure("window_s", "power window", "s", dig(ra, "power", "window_s"), dig(rb, "power", "window_s")))
    figs.append(Figure("samples_in_window", "samples in the window", "", dig(ra, "power", "samples_in_window"), dig(rb, "power", "samples_in_window")))
    figs.append(Figure("energy_j", "energy in the window", "J", dig(ra, "energy", "joules"), dig(rb, "energy", "joules"), "lower"))
    figs.append(Figure("idle_baseline", "idle baseline", "W", dig(ra, "idle_baseline", "avg_watts"), dig(rb, "idle_baseline", "avg_watts"), "lower"))
    figs.append(Figure("uncertainty_mean_pct", "uncertainty (mean of samples)", "%", dig(ra, "uncertainty", "mean_pct"), dig(rb, "uncertainty", "mean_pct"), "lower"))
    figs.append(Figure("uncertainty_max_pct", "uncertainty (worst sample)", "%", dig(ra, "uncertainty", "max_pct"), dig(rb, "uncertainty", "max_pct"), "lower"))
    figs.append(Figure("ranging_delta_pct", "testing vs ranging", "%", ra.get("ranging_delta_pct"), rb.get("ranging_delta_pct")))
    sa, sb = ra.get("sources") or {}, rb.get("sources") or {}
    for src in list(dict.fromkeys(list(sa) + list(sb))):
        figs.append(Figure(f"source.{src}.avg_watts", f"source {src}: average power", "W", dig(sa, src, "avg_watts"), dig(sb, src, "avg_watts"), "lower"))
    if ra.get("scenario") != rb.get("scenario"):
        notes.append(f"the scenarios differ ({ra.get('scenario')} against {rb.get('scenario')})")
    return figs, notes


def pair_checks(ca: list, cb: list) -> list[CheckPair]:
    """Line the two check lists up by name (a repeated name pairs in order)."""

    def keyed(results: list) -> dict[tuple[str, int], Any]:
        out: dict[tuple[str, int], Any] = {}
        seen: dict[str, int] = {}
        for r in results:
            n = seen.get(r.name, 0)
            seen[r.name] = n + 1
            out[(r.name, n)] = r
        return out

    ka, kb = keyed(ca), keyed(cb)
    pairs = []
    for k in list(dict.fromkeys(list(ka) + list(kb))):
        x, y = ka.get(k), kb.get(k)
        pairs.append(CheckPair(k[0], x.status if x else None, y.status if y else None, x.message if x else "", y.message if y else ""))
    return pairs


def compare_runs(a: Any, b: Any) -> Comparison:
    """Compare two RunRecords (or paths; `labconsole.bundle.reader.open_run` opens them)."""
    from labconsole.mlperf import metrics
    from labconsole.mlperf import checks
    from labconsole.bundle.reader import open_run

    ra_rec = a if hasattr(a, "phases") else open_run(a)
    rb_rec = b if hasattr(b, "phases") else open_run(b)
    ra, rb = metrics.compute_report(ra_rec), metrics.compute_report(rb_rec)
    ca, cb = checks.run_checks(ra_rec), checks.run_checks(rb_rec)
    figs, notes = figures_of(ra, rb)
    env = diff_environments(record_environment(ra_rec), record_environment(rb_rec), missing_source=WARNING, sides=("A", "B"))
    rerun = dig(rb_rec.run_info, "rerun_of", "id")
    if rerun and rerun == (ra_rec.run_info or {}).get("id"):
        notes.insert(0, "B is a rerun of A (labconsole run --from)")
    for side, rec in (("A", ra_rec), ("B", rb_rec)):
        if rec.kind == "bundle" and rec.exit_status != "completed":
            notes.append(f"{side} did not complete ({rec.exit_status}: {(rec.run_info or {}).get('reason') or 'no reason recorded'})")
    return Comparison(_side(ra_rec, ra, ca), _side(rb_rec, rb, cb), figs, pair_checks(ca, cb), env, notes, (ra, rb))


# ---------------------------------------------------------------------------------------------
# Text


def _fmt(v: Any, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        text = f"{v:,}"
    elif isinstance(v, float):
        text = f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    else:
        text = str(v)
    return f"{text} {unit}".rstrip() if unit and unit != "%" else (text + " %" if unit == "%" else text)


def _fmt_change(f: Figure) -> str:
    rel = f.rel_change_pct
    if rel is None:
        if f.delta is not None:
            return f"{f.delta:+.6g}{(' ' + f.unit) if f.unit and f.unit != '%' else ' pp' if f.unit == '%' else ''}"
        return "-"
    if f.unit == "%":  # a change of a percentage reads better in points
        return f"{f.delta:+.3g} pp"
    return f"{rel:+.2f} %"


format_value, format_change = _fmt, _fmt_change  # the same text on the console's Compare screen


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


def render_text(cmp: Comparison) -> str:
    """The comparison as aligned text: runs, figures with change, checks, bench differences."""
    lines: list[str] = []
    for tag, s in (("A", cmp.a), ("B", cmp.b)):
        kind = {"mlperf": "MLPerf result folder", "mlperf-training": "MLPerf Training power result", "tiny": "MLPerf Tiny energy run"}.get(s.kind) or f"bundle, {s.exit_status}"
        extra = ", ".join(x for x in (s.profile if s.kind == "bundle" else None, s.scenario, s.start, f"LoadGen {s.result_validity}" if s.result_validity else None) if x)
        lines.append(f"{tag}: {s.path} ({kind}{', ' + extra if extra else ''})")
    for n in cmp.notes:
        lines.append(f"note: {n}")
    lines.append("")
    rows = [["figure", "A", "B", "change"]]
    for f in cmp.figures:
        if f.a is None and f.b is None:
            continue
        rows.append([f.label + (f" [{f.unit}]" if f.unit else ""), _fmt(f.a), _fmt(f.b), _fmt_change(f)])
    lines.extend(_table(rows, right={1, 2, 3}))
    lines.append("")
    rows = [["check", "A", "B", ""]]
    for c in cmp.checks:
        rows.append([c.name, (c.a or "-").upper(), (c.b or "-").upper(), "changed" if c.changed else ""])
    lines.extend(_table(rows, right=set()))
    lines.append("")
    if cmp.environment:
        lines.append(f"bench differences (A -> B): {len(cmp.environment)}")
        for d in cmp.environment:
            lines.append(f"  {d}")
    else:
        lines.append("bench differences (A -> B): none")
    return "\n".join(lines)
