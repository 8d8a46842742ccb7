"""The report's plots: power and QPS over the whole run, the phases and the power window marked.

Two drawings of the same `RunReport` traces and bands:
- `interactive_html` (plotly): zoomable and pannable in the HTML report, with plotly.js inlined
  so the page needs no network;
- `write_static` (matplotlib, object API, no pyplot and no GUI backend): PNG or SVG for a lab
  notebook or a slide.

Several runs overlay on one time axis (seconds from each run's own start): `compare A B`.
Text taken from files (source names, phase names) reaches plotly escaped, because plotly draws
trace names and annotations as its own small HTML (it honours <b>, <br>, <a href>).
"""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from labconsole.report.model import RunReport

# One colour per run (A, B), then per source within a run; a shade per phase.
RUN_DASH = ("solid", "dash", "dot")
RUN_MPL_STYLE = ("-", "--", ":")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
PHASE_FILL = {"idle": "rgba(128,128,128,0.12)", "ranging": "rgba(255,165,0,0.12)", "testing": "rgba(46,139,87,0.12)"}
WINDOW_FILL = "rgba(31,119,180,0.18)"


def _runs(runs: list[tuple[str, RunReport]] | RunReport) -> list[tuple[str, RunReport]]:
    return [("", runs)] if isinstance(runs, RunReport) else list(runs)


def _finite_list(a: np.ndarray) -> list:
    """JSON-ready values: NaN becomes None, which plotly draws as a gap."""
    return [None if not np.isfinite(v) else float(v) for v in a]


def interactive_figure(runs: list[tuple[str, RunReport]] | RunReport) -> go.Figure:
    runs = _runs(runs)
    has_qps = any(r.traces_on("qps") for _, r in runs)
    rows = 2 if has_qps else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Power (W)", "QPS (completed queries/s)")[:rows])
    colour = 0
    for i, (tag, rep) in enumerate(runs):
        prefix = f"{tag}: " if tag else ""
        for tr in rep.traces:
            row = 1 if tr.axis == "power" else 2
            if row > rows:
                continue
            name = html.escape(prefix + tr.label)
            fig.add_trace(
                go.Scatter(x=tr.t.astype(float), y=_finite_list(tr.y), mode="lines", name=name, connectgaps=False,
                             line={"color": COLOURS[colour % len(COLOURS)], "dash": RUN_DASH[i % len(RUN_DASH)], "width": 1.3},
                             hovertemplate=f"{name}<br>t=%{{x:.3f}} s<br>%{{y:.4g}} {html.escape(tr.unit)}<extra></extra>"),
                row=row, col=1,
            )
            colour += 1
        for b in rep.bands:
            fill = WINDOW_FILL if b.kind == "window" else PHASE_FILL.get(b.label, "rgba(128,128,128,0.10)")
            label = html.escape(prefix + b.label)
            for row in range(1, rows + 1):
                fig.add_vrect(x0=b.t0, x1=b.t1, fillcolor=fill, line_width=1 if b.kind == "window" else 0,
                              line_color="rgba(31,119,180,0.8)", line_dash=RUN_DASH[i % len(RUN_DASH)], layer="below",
                              annotation_text=label if row == 1 else None,
                              annotation_position="top left" if b.kind == "phase" else "bottom left",
                              annotation_font_size=10, row=row, col=1)
    fig.update_xaxes(title_text="seconds from the start of the run", row=rows, col=1)
    fig.update_yaxes(rangemode="tozero", row=rows, col=1) if has_qps else None
    fig.update_layout(height=380 * rows + 80, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.12 if rows == 2 else -0.2}, hovermode="closest", dragmode="zoom")
    return fig


def interactive_html(runs: list[tuple[str, RunReport]] | RunReport, div_id: str = "plots") -> str:
    """A <div> with the zoomable plots and plotly.js itself inlined (no network to open it)."""
    fig = interactive_figure(runs)
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id=div_id,
                       config={"displaylogo": False, "responsive": True, "scrollZoom": True, "toImageButtonOptions": {"format": "svg"}})


def static_figure(runs: list[tuple[str, RunReport]] | RunReport) -> Figure:
    runs = _runs(runs)
    has_qps = any(r.traces_on("qps") for _, r in runs)
    rows = 2 if has_qps else 1
    fig = Figure(figsize=(11, 3.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    colour = 0
    for i, (tag, rep) in enumerate(runs):
        prefix = f"{tag}: " if tag else ""
        for tr in rep.traces:
            row = 0 if tr.axis == "power" else 1
            if row >= rows:
                continue
            axes[row].plot(tr.t, tr.y, RUN_MPL_STYLE[i % len(RUN_MPL_STYLE)], color=COLOURS[colour % len(COLOURS)], lw=1.0, label=prefix + tr.label)
            colour += 1
        for b in rep.bands:
            for k, ax in enumerate(axes):
                if b.kind == "window":
                    ax.axvspan(b.t0, b.t1, color="#1f77b4", alpha=0.15, ls=RUN_MPL_STYLE[i % 3], lw=1)
                else:
                    ax.axvspan(b.t0, b.t1, color={"idle": "grey", "ranging": "orange", "testing": "seagreen"}.get(b.label, "grey"), alpha=0.08, lw=0)
                if k == 0:
                    ax.annotate(prefix + b.label, (b.t0, 1.0), xycoords=("data", "axes fraction"), va="top" if b.kind == "phase" else "bottom",
                                fontsize=7, xytext=(2, -2 if b.kind == "phase" else 2), textcoords="offset points")
    axes[0].set_ylabel("power (W)")
    title = " vs ".join(f"{tag}: {rep.title}" if tag else rep.title for tag, rep in runs)
    axes[0].set_title(textwrap.fill(title, 150), fontsize=9)
    if rows == 2:
        axes[1].set_ylabel("QPS (q/s)")
        axes[1].set_ylim(bottom=0)
    axes[-1].set_xlabel("seconds from the start of the run")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    return fig


STATIC_FORMATS = (".png", ".svg")


def write_static(runs: list[tuple[str, RunReport]] | RunReport, out: str | Path) -> Path:
    """PNG or SVG (by the name's suffix) of the power and QPS plots."""
    out = Path(out)
    if out.suffix.lower() not in STATIC_FORMATS:
        raise ValueError(f"{out}: the plots are written as .png or .svg")
    fig = static_figure(runs)
    fig.savefig(out, dpi=130, format=out.suffix.lower()[1:], metadata={"Date": None} if out.suffix.lower() == ".svg" else None)
    return out
