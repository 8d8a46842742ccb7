"""Writing reports: what `labconsole report --html/--plot`, `compare --html/--plot` and the
console's `e` (export) on the Results screen call. Never writes into the recording read (a
sealed bundle, an MLPerf folder hash-checked by the official tools)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from labconsole.bundle.reader import open_run
from labconsole.mlperf.compare import compare_runs
from labconsole.report.html import render_compare, render_report, write_text
from labconsole.report.model import RunReport, build_report, report_for_record
from labconsole.report.plots import STATIC_FORMATS, write_static

# Where the console's export goes: $LABCONSOLE_REPORTS_DIR, else reports/ where it was started.
REPORTS_DIR_ENV = "LABCONSOLE_REPORTS_DIR"


class ReportError(ValueError):
    """An output the report cannot write (message names it)."""


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    report: RunReport | None = None


def _check_outputs(record_path: Path, outs: list[Path | None]) -> None:
    root = record_path.resolve()
    for out in outs:
        if out is None:
            continue
        target = out.resolve()
        if target == root or root in target.parents:
            raise ReportError(f"{out}: inside the recording read ({record_path}); a report is never written into a recording")
        if not target.parent.is_dir():
            raise ReportError(f"{out}: the folder {out.parent} does not exist")
        if target.is_dir():
            raise ReportError(f"{out}: is a folder; name the file to write")


def _check_plot_name(plot: Path | None) -> None:
    if plot is not None and plot.suffix.lower() not in STATIC_FORMATS:
        raise ReportError(f"--plot {plot}: the plots are written as .png or .svg (the name's suffix says which)")


def write_run_report(path: str | Path, html_out: str | Path | None = None, plot_out: str | Path | None = None, scenario: str | None = None) -> Written:
    html_p = Path(html_out) if html_out else None
    plot_p = Path(plot_out) if plot_out else None
    _check_plot_name(plot_p)
    _check_outputs(Path(path), [html_p, plot_p])
    rep = build_report(path, scenario)
    done = Written(report=rep)
    if html_p is not None:
        done.files.append(write_text(html_p, render_report(rep)))
    if plot_p is not None:
        done.files.append(write_static(rep, plot_p))
    return done


def write_compare_report(a: str | Path, b: str | Path, html_out: str | Path | None = None, plot_out: str | Path | None = None) -> Written:
    html_p = Path(html_out) if html_out else None
    plot_p = Path(plot_out) if plot_out else None
    _check_plot_name(plot_p)
    _check_outputs(Path(a), [html_p, plot_p])
    _check_outputs(Path(b), [html_p, plot_p])
    ra, rb = open_run(a), open_run(b)
    rep_a, rep_b = report_for_record(ra), report_for_record(rb)
    done = Written()
    if html_p is not None:
        done.files.append(write_text(html_p, render_compare(compare_runs(ra, rb), rep_a, rep_b)))
    if plot_p is not None:
        done.files.append(write_static([("A", rep_a), ("B", rep_b)], plot_p))
    return done


def reports_dir() -> Path:
    return Path(os.environ.get(REPORTS_DIR_ENV) or Path.cwd() / "reports").expanduser()


def export_for_console(path: str | Path, folder: str | Path | None = None) -> Written:
    """The console's export: <folder>/<recording>.html and .png (folder: `reports_dir()`)."""
    path = Path(path)
    out = Path(folder) if folder is not None else reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = path.name if path.name != "performance" else f"{path.parent.name}-performance"
    return write_run_report(path, out / f"{stem}.html", out / f"{stem}.png")
