"""How the headless commands print: `check`, `report` and `run` on a terminal and in a pipe.

On a terminal: colour by verdict, failures first, a summary line with the counts, and a
progress bar for `run` (phase, percentage, ETA). In a pipe (or with NO_COLOR / TERM=dumb): the
same words without colour, one line per event, so scripts and logs read as before.
Everything printed from a file, a meter or a bundle goes through `printable` and a rich `Text`
(never through markup), so a bracket or an escape sequence in a message is shown, not obeyed.
`--json` output is not printed here.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from labconsole.termtext import printable  # the one escaper: control characters shown, never sent
from labconsole import events as ev
from labconsole.verdict import FAIL, PASS, SEVERITY, SKIP, WARN

STYLE = {FAIL: "bold red", WARN: "yellow", PASS: "green", SKIP: "dim"}


def console(file: TextIO | None = None) -> Console:
    """A console for plain command output: colour only on a terminal, no automatic
    highlighting, and no re-wrapping (a long check message stays one line in a pipe)."""
    file = file or sys.stdout
    # cli.main wraps stdout in an EscapingStream; our own colour codes must pass, and every text
    # from a file that goes into them went through printable() here
    file = getattr(file, "unescaped", file)
    return Console(file=file, highlight=False, soft_wrap=True, emoji=False)


# --- check -------------------------------------------------------------------------------------


def ordered(results: Iterable[Any]) -> list[Any]:
    """Check results most severe first (fail, warn, pass, skip), in their own order within each."""
    rank = {s: i for i, s in enumerate(SEVERITY)}
    return sorted(results, key=lambda r: rank.get(r.status, len(SEVERITY)))


def counts(statuses: Iterable[str]) -> dict[str, int]:
    out = {s: 0 for s in SEVERITY}
    for s in statuses:
        out[s if s in out else SKIP] += 1
    return out


def verdict_line(statuses: Iterable[str]) -> tuple[str, str]:
    """("FAILED: 1 fail, 3 warn, 14 pass, 12 skip", style); a pass never hides its warnings:
    "PASSED with 3 warnings: ..."."""
    n = counts(statuses)
    tally = ", ".join(f"{n[s]} {s}" for s in SEVERITY if n[s] or s in (FAIL, PASS))
    if n[FAIL]:
        return f"FAILED: {tally}", STYLE[FAIL]
    if n[WARN]:
        return f"PASSED with {n[WARN]} warning{'s' if n[WARN] != 1 else ''}: {tally}", STYLE[WARN]
    return f"PASSED: {tally}", STYLE[PASS]


def check_line(status: str, name: str, message: str) -> Text:
    line = Text()
    line.append(f"[{status.upper():4}]", style=STYLE.get(status, ""))
    line.append(f" {printable(name)}: ", style="bold" if status in (FAIL, WARN) else "")
    line.append(printable(message))
    return line


def print_checks(results: list[Any], out: Console | None = None) -> None:
    """`check`'s text: every check, failures first, then the verdict with its counts."""
    out = out or console()
    for r in ordered(results):
        out.print(check_line(r.status, r.name, r.message))
    text, style = verdict_line(r.status for r in results)
    out.print(Text(text, style=style))


# --- report --------------------------------------------------------------------------------------


def _line(out: Console, *parts: str | tuple[str, str]) -> None:
    text = Text()
    for p in parts:
        if isinstance(p, tuple):
            text.append(printable(p[0]), style=p[1])
        else:
            text.append(printable(p))
    out.print(text)


def print_report(rep: dict, out: Console | None = None, limit_pct: float = -5.0) -> None:
    """The report's figures, one per line, with what is wrong coloured."""
    out = out or console()
    m = rep.get("metric")
    p = rep.get("power") or {}
    filed, run = rep.get("filed_scenario"), rep.get("run_scenario", rep.get("scenario"))
    shown = f"{filed} (filed; LoadGen ran {run})" if filed and run and filed != run else (filed or rep.get("scenario"))
    validity = str(rep.get("result_validity"))
    _line(out, f"  scenario: {shown}   LoadGen result: ", (validity, STYLE[PASS] if validity == "VALID" else STYLE[FAIL]))
    for note in rep.get("scenario_notes") or []:
        _line(out, ("  note: ", STYLE[WARN]), note)
    if m:
        est = " (an estimate)" if m.get("estimate") else ""
        _line(out, "  metric: ", (f"{m['name']} = {m['value']:.6g} {m['unit']}", "bold"), (est, STYLE[WARN]))
    if rep.get("queries_from"):
        _line(out, f"  queries: {rep['queries']:.6g}, {rep['queries_from']}")
    if rep.get("metric_note"):
        _line(out, ("  note: ", STYLE[WARN]), rep["metric_note"])
    if p and p.get("samples_in_window"):
        _line(out, f"  average power: {p.get('avg_watts', float('nan')):.6g} W over {p.get('window_s', float('nan')):.3f} s ({p.get('samples_in_window')} samples in the window)")
    elif p:
        _line(out, ("  average power: none", STYLE[FAIL]), f": no valid samples in the {p.get('window_s', float('nan')):.3f} s window")
    if rep.get("samples_per_joule") is not None:
        pf = rep.get("performance_filed") or {}
        basis = f" (from {pf['key']} = {pf['value']:.6g}, the {filed} figure inferred from the {run} run)" if pf else ""
        _line(out, "  efficiency: ", (f"{rep['samples_per_joule']:.6g} samples/J", "bold"), basis)
    idle = rep.get("idle_baseline") or {}
    if idle.get("avg_watts") is not None:
        _line(out, f"  idle baseline: {idle['avg_watts']:.6g} W")
    delta = rep.get("ranging_delta_pct")
    if delta is not None:
        _line(out, "  testing vs ranging: ", (f"{delta:+.2f} %", STYLE[FAIL] if delta < limit_pct else ""))
    unc = rep.get("uncertainty") or {}
    if unc.get("mean_pct") is not None:
        over = f", {unc['over_limit']} sample(s) over {unc.get('limit_pct', 1):g} %" if unc.get("over_limit") else ""
        _line(out, f"  uncertainty ({unc.get('from')}): mean {unc['mean_pct']:.3f} %, max {unc['max_pct']:.3f} %", (over, STYLE[FAIL]))
    if rep.get("missing"):
        _line(out, ("  missing: ", STYLE[WARN]), ", ".join(rep["missing"]))
    for what in rep.get("unreadable") or []:
        _line(out, ("  unreadable: ", STYLE[WARN]), what)


def print_sources(rep: dict, out: Console | None = None) -> None:
    out = out or console()
    for name, s in (rep.get("sources") or {}).items():
        extra = f", counter {s['counter_avg_watts']:.6g} W" if s.get("counter_avg_watts") else ""
        avg = f"{s['avg_watts']:.6g} W" if s["samples_in_window"] else "no valid samples"
        _line(out, f"  source {name}: {avg} ({s['samples_in_window']} samples){extra}")


def print_recorded_checks(check_dicts: list[dict], out: Console | None = None, when: str = "when it was sealed", messages: bool = True) -> None:
    """A record's stored check verdicts as one summary line, the failures and warnings named
    (with their messages, or, with `messages=False`, the warnings by name only)."""
    if not check_dicts:
        return
    out = out or console()
    text, style = verdict_line(c.get("status", SKIP) for c in check_dicts)
    _line(out, "  checks ", (f"({when})", "dim"), ": ", (text, style))
    for c in ordered(_Check(**c) for c in check_dicts):
        if c.status == FAIL or (c.status == WARN and messages):
            out.print(Text("    ").append_text(check_line(c.status, c.name, c.message)))
    warned = [printable(c.get("name", "?")) for c in check_dicts if c.get("status") == WARN]
    if warned and not messages:
        _line(out, "    ", ("[WARN]", STYLE[WARN]), " " + ", ".join(warned))


class _Check:
    def __init__(self, name: str = "", status: str = SKIP, message: str = "", **_: Any):
        self.name, self.status, self.message = name, status, message


def print_run_summary(out_come: Any, out: Console | None = None) -> None:
    """After a run: its end, the figures, and its checks as a verdict line with counts."""
    out = out or console()
    out.print("")
    status = str(out_come.exit_status)
    _line(out, "run ", (status, STYLE[PASS] if status == "completed" else STYLE[FAIL]), f": {out_come.reason}" if out_come.reason else "")
    rep = out_come.report or {}
    if rep.get("kind") == "mlperf-training":  # MLPerf Training: energy to train, per run
        from labconsole.mlperf.training.report import report_lines

        for line in report_lines(rep):
            _line(out, line)
    elif rep.get("kind") == "tiny":  # MLPerf Tiny: energy per inference over 5 windows
        from labconsole.mlperf.tiny.text import render_report

        out.print(Text(printable(render_report(rep))))
    elif rep:
        print_report(rep, out)
    print_recorded_checks(out_come.checks, out, when="of this run")


# --- run ---------------------------------------------------------------------------------------

_TAG = {ev.WARNING: "WARN ", ev.ERROR: "ERROR", ev.RESULT: "RESULT", ev.PHASE_START: ">>", ev.PHASE_END: "<<", ev.STEP: "step"}
_TAG_STYLE = {ev.WARNING: STYLE[WARN], ev.ERROR: STYLE[FAIL], ev.RESULT: STYLE[PASS], ev.PHASE_START: "bold cyan", ev.PHASE_END: "cyan"}


def event_text(e: Any) -> Text | None:
    """One event as a line: time, tag, phase, message (None for progress ticks)."""
    if e.kind == ev.PROGRESS:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(e.wall_ns / 1e9))
    tag = _TAG.get(e.kind, "")
    text = Text(f"{stamp} ")
    if tag:
        text.append(tag, style=_TAG_STYLE.get(e.kind, ""))
        text.append(" ")
    if e.phase:
        text.append(f"[{printable(e.phase)}] ")
    text.append(printable(e.message))
    return text


def live_line(proc: Any) -> str | None:
    """Elapsed, QPS and the latest watts of each source, during a recorded phase."""
    rec = proc.recorder
    recorded = proc.phase in ("idle", "ranging", "testing", "calibration") or proc.phase.startswith("result_")  # a Training run
    if rec is None or not recorded:
        return None
    parts = [f"[{proc.phase}] {time.monotonic() - proc.phase_started_mono:5.1f} s"]
    parts += _live_parts(proc)
    return "  ".join(parts)


def _live_parts(proc: Any) -> list[str]:
    parts = []
    pts = proc.progress.get(proc.phase) or []
    if len(pts) >= 2:
        a, b = pts[max(0, len(pts) - 11)], pts[-1]
        dt = (b.wall_ns - a.wall_ns) / 1e9
        qps = (b.completed - a.completed) / dt if dt > 0 else 0.0
        parts.append(f"completed {b.completed}  QPS {qps:,.1f}")
    rec = proc.recorder
    rings = rec.rings if rec is not None else {}
    per_source: dict[str, int] = {}
    for src, _ch in rings:
        per_source[src] = per_source.get(src, 0) + 1
    totals: dict[str, list[float]] = {}
    for (src, ch), ring in rings.items():
        last = ring.last
        if last is not None and not math.isnan(float(last["watts"])):
            if per_source[src] > 6:  # a fleet's nodes: one total, not a line as wide as the fleet
                totals.setdefault(src, []).append(float(last["watts"]))
                continue
            label = src if ch == "main" else f"{src}/{ch}"
            parts.append(f"{printable(label)} {float(last['watts']):.4g} W")
    for src, vals in totals.items():
        parts.append(f"{printable(src)} {sum(vals):.5g} W ({len(vals)} of {per_source[src]} nodes)")
    return parts


class RunEstimate:
    """How far a run is, from the profile alone: each phase's expected seconds, and where the
    run stands in them. Calibration and the probe have no fixed length, so they count as what
    they usually take; a phase that runs over (LoadGen past its minimum duration) holds at 99 %
    of itself and says "finishing" instead of an ETA that would lie."""

    CALIBRATION_EXTRA_S = 4.0  # identity, clock, update-period steps around the idle baseline
    PROBE_S = 3.0

    def __init__(self, proc: Any):
        prof = proc.profile
        self.phases: list[tuple[str, float]] = [("calibration", prof.procedure.idle_s + self.CALIBRATION_EXTRA_S)]
        if getattr(prof.workload, "target_qps", None) == "auto" or getattr(prof.workload, "expected_latency_ms", None) == "auto":
            self.phases.append(("probe", self.PROBE_S))
        if prof.procedure.ranging:
            self.phases.append(("ranging", proc.duration_s + 1.0))
        self.phases.append(("testing", proc.duration_s + 1.0))
        self.total_s = sum(s for _, s in self.phases)

    def where(self, phase: str, elapsed_s: float) -> tuple[float, float | None]:
        """(fraction of the whole run done 0..1, seconds left or None when not known)."""
        names = [n for n, _ in self.phases]
        if phase in ("analysis", "stopping", "done"):
            return 1.0, 0.0
        if phase not in names:
            return 0.0, self.total_s
        i = names.index(phase)
        before = sum(s for _, s in self.phases[:i])
        length = self.phases[i][1]
        in_phase = min(elapsed_s, 0.99 * length)
        after = sum(s for _, s in self.phases[i + 1 :])
        left = None if elapsed_s > length else (length - elapsed_s) + after
        return (before + in_phase) / self.total_s, left


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "finishing"
    seconds = max(0, int(round(seconds)))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


class RunDisplay:
    """What `labconsole run` shows while it runs: on a terminal a progress bar above which the
    events scroll; elsewhere the events and a live line a second, as plain text."""

    def __init__(self, proc: Any, quiet: bool = False, out: Console | None = None):
        self.proc = proc
        self.quiet = quiet
        self.out = out or console()
        self.estimate = RunEstimate(proc)
        self.progress: Progress | None = None
        self._task = None
        self._last_live = 0.0
        if self.out.is_terminal and not quiet:
            self.progress = Progress(
                TextColumn("{task.fields[phase]:<11}", style="bold cyan"),
                BarColumn(bar_width=None),
                TextColumn("{task.percentage:>3.0f} %"),
                TextColumn("{task.fields[eta]}"),
                TextColumn("{task.fields[live]}", style="dim"),
                console=self.out,
                transient=True,
                expand=True,
            )
            self._task = self.progress.add_task("run", total=1000, phase="starting", eta="", live="")

    def __enter__(self) -> RunDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def event(self, e: Any) -> None:
        if self.quiet:
            return
        line = event_text(e)
        if line is not None:
            self.out.print(line)

    def tick(self) -> None:
        if self.quiet:
            return
        proc = self.proc
        if self.progress is not None:
            done, left = self.estimate.where(proc.phase, time.monotonic() - proc.phase_started_mono)
            parts = _live_parts(proc) if proc.recorder is not None else []
            if self.out.width < 110:  # a narrow terminal keeps room for the bar: the watts only
                parts = [p for p in parts if p.endswith(" W")][:1]
            live = "  ".join(parts[-3:])
            self.progress.update(self._task, completed=int(done * 1000), phase=proc.phase, eta=fmt_eta(left), live=live)
            return
        if time.monotonic() - self._last_live >= 1.0:
            self._last_live = time.monotonic()
            line = live_line(proc)
            if line:
                self.out.print(line)


def print_report_of(record: Any, rep: dict, out: Console | None = None) -> None:
    """`report`'s text: what the record is, its figures, its sources, and the checks it was
    sealed with (a bundle's summary.json) as one verdict line with counts."""
    out = out or console()
    kind = "MLPerf result folder" if record.kind == "mlperf" else f"bundle, {record.exit_status}"
    _line(out, (str(record.path), "bold"), f" ({kind})")
    print_report(rep, out)
    print_sources(rep, out)
    stored = (getattr(record, "summary", None) or {}).get("checks") or []
    print_recorded_checks(stored, out, when="when sealed; `labconsole check` checks again", messages=False)
