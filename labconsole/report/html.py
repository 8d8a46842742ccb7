"""The report as one self-contained HTML file: a run (`report PATH --html`) or two (`compare A B --html`).

Everything is inline (styles, plotly.js, the data), and a Content-Security-Policy forbids any
fetch, so the file opens offline and cannot leak where it is opened. Every text that came from
a recording (source names, messages, paths, the profile) goes through `html.escape`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from labconsole import __version__
from labconsole.mlperf.compare import Comparison
from labconsole.report.model import RunReport, Table
from labconsole.report.plots import interactive_html

# No network at all: scripts and styles only inline; images only data:/blob: (plotly's
# "download as SVG" button); connect-src none stops any fetch/XHR/WebSocket.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f23;background:#fff}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:20px;margin:8px 0 4px;word-break:break-all}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#57606a;font-size:12px}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:700;color:#fff;margin-right:8px}
.pass{background:#1a7f37}.warn{background:#9a6700}.fail{background:#cf222e}.skip{background:#6e7781}
tr.s-pass td:first-child{color:#1a7f37;font-weight:600}tr.s-warn td:first-child{color:#9a6700;font-weight:600}
tr.s-fail td:first-child{color:#cf222e;font-weight:700}tr.s-skip td:first-child{color:#6e7781}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;vertical-align:top;padding:3px 8px;border-bottom:1px solid #eee}
th{background:#f6f8fa;font-weight:600}td{word-break:break-word}
table.headline td:first-child{width:180px;color:#57606a}table.headline tr:first-child td{font-size:18px;font-weight:700;color:#1b1f23}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.better{color:#1a7f37}.worse{color:#cf222e}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
.note{color:#57606a;font-size:12px;margin:4px 0}
details>summary{cursor:pointer;font-weight:600;margin:12px 0}
footer{color:#57606a;font-size:11px;margin-top:32px}
"""


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{e(CSP)}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"generator\" content=\"labconsole {e(__version__)}\">"
        f"<title>{e(title)}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n"
        f"<footer>Written by labconsole {e(__version__)}. Self-contained: opens without a network. "
        "Plots: drag to zoom, double-click to reset.</footer>\n</main></body></html>\n"
    )


def _table(t: Table, table_id: str = "") -> str:
    ident = f' id="{e(table_id)}"' if table_id else ""
    out = [f"<h2>{e(t.title)}</h2>"]
    if t.preformatted:
        out.append(f"<pre{ident}>{e(t.rows[0][0] if t.rows else '')}</pre>")
        return "\n".join(out)
    if t.note:
        out.append(f'<p class="note">{e(t.note)}</p>')
    if t.rows:
        out.append(f'<table{ident}><thead><tr>' + "".join(f"<th>{e(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
        for i, row in enumerate(t.rows):
            st = t.status[i] if i < len(t.status) else None
            cls = f' class="s-{e(st)}"' if st else ""
            out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
    return "\n".join(out)


def _headline(rep: RunReport, ident: str = "headline") -> str:
    rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rep.headline)
    return f'<table class="headline" id="{e(ident)}">{rows}</table>'


def _verdict(rep: RunReport, ident: str = "verdict") -> str:
    return f'<p id="{e(ident)}"><span class="verdict {e(rep.verdict)}">{e(rep.verdict.upper())}</span>{e(rep.verdict_reason)}</p>'


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="note">{e(n)}</p>' for n in notes)


def _plots_section(runs, div_id: str) -> str:
    if not any(r.traces for _, r in runs):
        return '<h2>Power and QPS over the whole run</h2><p class="note" id="no-plots">no samples recorded: nothing to plot</p>'
    return ("<h2>Power and QPS over the whole run</h2>"
            '<p class="note">Shaded: the phases (idle, ranging, testing); framed in blue: the testing run\'s power window '
            "(LoadGen's power_begin to power_end, the samples MLPerf averages).</p>"
            + interactive_html(runs, div_id=div_id))


def render_report(rep: RunReport) -> str:
    body = [
        f"<h1>{e(rep.title)}</h1>",
        f'<p class="sub">{e(rep.path)} &middot; t = 0 at {e(rep.origin_utc)}</p>',
        _verdict(rep),
        _headline(rep),
        _notes(rep.notes),
        _plots_section([("", rep)], "plots"),
    ]
    for t in rep.tables:
        body.append(_table(t, "t-" + t.title.lower().replace(" ", "-")))
    return _page(f"labconsole report: {rep.title}", "\n".join(body))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _figures_table(cmp: Comparison) -> str:
    rows = []
    for f in cmp.figures:
        rel = f.rel_change_pct
        change = "-" if rel is None else (f"{f.delta:+.3g} pp" if f.unit == "%" and f.delta is not None else f"{rel:+.2f} %")
        cls = ""
        if rel is not None and f.better and rel != 0:
            good = (rel > 0) == (f.better == "higher")
            cls = " better" if good else " worse"
        rows.append(f"<tr><td>{e(f.label)}</td><td>{e(f.unit)}</td><td class=\"num\">{e(_fmt(f.a))}</td><td class=\"num\">{e(_fmt(f.b))}</td>"
                    f"<td class=\"num{cls}\">{e(change)}</td></tr>")
    return ('<h2>Figures</h2><table id="figures"><thead><tr><th>figure</th><th>unit</th><th>A</th><th>B</th><th>change</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _checks_pairs(cmp: Comparison) -> str:
    rows = []
    for c in cmp.checks:
        mark = " <b>changed</b>" if c.changed else ""
        rows.append(f'<tr><td>{e(c.name)}{mark}</td><td class="s-{e(c.a or "")}">{e((c.a or "-").upper())}</td><td>{e(c.a_message)}</td>'
                    f'<td class="s-{e(c.b or "")}">{e((c.b or "-").upper())}</td><td>{e(c.b_message)}</td></tr>')
    return ('<h2>Checks</h2><table id="check-pairs"><thead><tr><th>check</th><th>A</th><th>A: reason</th><th>B</th><th>B: reason</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _env_diffs(cmp: Comparison) -> str:
    if not cmp.environment:
        return '<h2>Bench differences</h2><p class="note">none found between A and B</p>'
    rows = "".join(f"<tr><td>{e(d.severity)}</td><td>{e(d.key)}</td><td>{e(d.then)}</td><td>{e(d.now)}</td><td>{e(d.message)}</td></tr>"
                   for d in cmp.environment)
    return ('<h2>Bench differences</h2><table id="env-diffs"><thead><tr><th>severity</th><th>key</th><th>A</th><th>B</th><th>what</th></tr></thead><tbody>'
            + rows + "</tbody></table>")


def render_compare(cmp: Comparison, a: RunReport, b: RunReport) -> str:
    body = [
        "<h1>Comparison of two runs</h1>",
        f'<p><span class="verdict {e(a.verdict)}">A {e(a.verdict.upper())}</span>{e(a.title)}</p>',
        f'<p><span class="verdict {e(b.verdict)}">B {e(b.verdict.upper())}</span>{e(b.title)}</p>',
        _notes(list(cmp.notes)),
        _figures_table(cmp),
        _plots_section([("A", a), ("B", b)], "plots"),
        _checks_pairs(cmp),
        _env_diffs(cmp),
    ]
    for tag, rep in (("A", a), ("B", b)):
        body.append(f"<details><summary>{tag}: {e(rep.title)}: the whole report</summary>")
        low = tag.lower()
        body += [_verdict(rep, f"verdict-{low}"), _headline(rep, f"headline-{low}"), _notes(rep.notes)]
        body += [_table(t, f"{low}-t-" + t.title.lower().replace(" ", "-")) for t in rep.tables]
        body.append("</details>")
    return _page(f"labconsole compare: {a.title} vs {b.title}", "\n".join(body))


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
