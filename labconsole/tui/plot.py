"""A time plot drawn in braille dots: min/max envelopes of long series, cheap to repaint.

Measured against textual-plotext (`python -m bench plots`): plotext rebuilds its whole chart
in pure Python on every repaint; this widget decimates the history to two values per dot
column (`labconsole.session.decimate.minmax_columns`), rasterises the envelopes with numpy and hands
Textual ready-made strips through the line API, so its repaint cost hardly depends on how
many samples the history holds.

Each braille cell is 2 x 4 dots: a plot `w` cells wide has 2w dot columns; each dot column
shows the span from the lowest to the highest sample that fell in it (joined to its
neighbour so the trace stays continuous). That is the "min and max per column as two lines"
of the envelope, filled between: a spike of one sample stays visible at any zoom.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from labconsole.session.decimate import minmax_columns
from labconsole.session.interval import IntervalStats, interval_stats
from labconsole.tui.format import si, si_scale
from labconsole.termtext import printable

PALETTE = ("#4ebf71", "#e8a33c", "#58a6ff", "#e05a5a", "#b07ee8", "#2ec4c4", "#d0d060")
SPAN_BG = "#3b3417"
REGION_BG = "#1f3350"  # between the two cursors
CURSOR_FG = "#f2cc60"
SI_UNITS = ("W", "J", "V", "A")  # scaled with a prefix (mW, kW); others keep their own unit
MARKER_FG = "#6e7681"
AXIS_FG = "#8b949e"

_BRAILLE = np.array([" "] + [chr(0x2800 + i) for i in range(1, 256)], dtype="<U1")
# Dot (row, column) of a braille cell -> its bit (Unicode braille pattern numbering).
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)


@dataclass
class Series:
    label: str
    t: np.ndarray  # seconds (any origin; the plot's x range uses the same)
    y: np.ndarray
    color: str | None = None
    value_text: str = ""  # shown in the legend (e.g. the current reading)

    def __post_init__(self) -> None:  # labels are source names from a recording: raw segments
        self.label = printable(self.label)


@dataclass
class Marker:
    t: float
    label: str = ""

    def __post_init__(self) -> None:
        self.label = printable(self.label)


@dataclass
class Span:
    t0: float
    t1: float
    label: str = ""

    def __post_init__(self) -> None:
        self.label = printable(self.label)


@dataclass
class _Frame:
    series: list[Series] = field(default_factory=list)
    x_range: tuple[float, float] | None = None
    y_floor: float | None = None
    markers: list[Marker] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    origin: float = 0.0  # x labels are t - origin


def nice_range(lo: float, hi: float, floor: float | None = None) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (0.0, 1.0)
    if floor is not None:
        lo = min(lo, floor)
    if hi - lo < 1e-9:
        pad = max(abs(hi) * 0.05, 0.5)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo2 = lo - pad if (floor is None or lo - pad >= floor) else floor
    return lo2, hi + pad


def fmt_value(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    a = abs(v)
    if a >= 10000:
        return f"{v / 1000:.0f}k"
    if a >= 1000:
        return f"{v / 1000:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_seconds(s: float) -> str:
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 60:
        return f"{sign}{s:.0f}s" if s >= 10 or s == int(s) else f"{sign}{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{sign}{m}m{sec:02d}" if sec else f"{sign}{m}m"
    h, m = divmod(m, 60)
    return f"{sign}{h}h{m:02d}"


def rasterise(lo: np.ndarray, hi: np.ndarray, ymin: float, ymax: float, rows: int) -> np.ndarray:
    """Bool mask (rows x len(lo)) of the dots covering each column's lo..hi span, joined up."""
    cols = len(lo)
    valid = np.isfinite(lo) & np.isfinite(hi)
    scale = (rows - 1) / (ymax - ymin) if ymax > ymin else 0.0
    with np.errstate(invalid="ignore"):
        top = np.clip(np.rint((ymax - hi) * scale), 0, rows - 1)
        bot = np.clip(np.rint((ymax - lo) * scale), 0, rows - 1)
    top = np.where(valid, top, 0).astype(np.int64)
    bot = np.where(valid, bot, -1).astype(np.int64)
    if cols > 1:
        pv = np.concatenate(([False], valid[:-1]))
        pt = np.concatenate(([0], top[:-1]))
        pb = np.concatenate(([0], bot[:-1]))
        join = valid & pv
        top = np.where(join, np.minimum(top, pb), top)
        bot = np.where(join, np.maximum(bot, pt), bot)
    r = np.arange(rows)[:, None]
    return (r >= top[None, :]) & (r <= bot[None, :])


def fill_short_gaps(lo: np.ndarray, hi: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Join columns across runs of at most `max_gap` empty columns (a sparse series, e.g.
    10 progress points a second on a wide plot); longer runs stay gaps (the source was silent)."""
    valid = np.isfinite(lo) & np.isfinite(hi)
    n = len(lo)
    if max_gap < 1 or valid.sum() < 2 or valid.all():
        return lo, hi
    idx = np.arange(n)
    prev = np.maximum.accumulate(np.where(valid, idx, -1))
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
    fill = ~valid & (prev >= 0) & (nxt < n) & (nxt - prev - 1 <= max_gap)
    if not fill.any():
        return lo, hi
    vi = idx[valid]
    lo, hi = lo.copy(), hi.copy()
    lo[fill] = np.interp(idx[fill], vi, lo[vi])
    hi[fill] = np.interp(idx[fill], vi, hi[vi])
    return lo, hi


def typical_spacing(t: np.ndarray) -> float:
    """Median time between the newest samples of a series (how sparse it is)."""
    tail = np.asarray(t[-2000:], dtype=np.float64)
    if len(tail) < 2:
        return 0.0
    d = np.diff(tail)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 0.0


def braille_codes(mask: np.ndarray) -> np.ndarray:
    """(4h x 2w) dot mask -> (h x w) braille pattern codes 0..255."""
    rows, cols = mask.shape
    h, w = rows // 4, cols // 2
    m = mask[: h * 4, : w * 2].reshape(h, 4, w, 2).transpose(0, 2, 1, 3)
    return np.tensordot(m.astype(np.int64), _DOT_BITS, axes=([2, 3], [0, 1]))


class TimePlot(Widget, can_focus=True):
    """Series over time (envelopes), optional shaded spans (the power window) and markers.

    Cursors, as Joulescope's UI has them: a click puts cursor A, a second click cursor B (a
    third starts again); with the plot focused, `←`/`→` move the last cursor a column
    (`shift`: ten), `enter` adds one, `esc` clears them. Between A and B the title shows Δt,
    the mean and, for watts, the energy in joules of the first series.
    """

    DEFAULT_CSS = """
    TimePlot { height: 1fr; min-height: 4; }
    TimePlot:focus { background: $boost; }
    """
    BINDINGS = [
        ("left", "nudge(-1)", "cursor ←"),
        ("right", "nudge(1)", "cursor →"),
        ("shift+left", "nudge(-10)", "cursor ←←"),
        ("shift+right", "nudge(10)", "cursor →→"),
        ("enter", "add_cursor", "cursor"),
        ("escape", "clear_cursors", "clear cursors"),
    ]

    def __init__(self, title: str = "", unit: str = "", *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.unit = unit
        self.empty_text = "no data yet"
        self._frame = _Frame()
        self._strips: list[Strip] | None = None
        self._built_for: Size | None = None
        self.last_build_ms = 0.0
        self.builds = 0
        self.cursors: list[float] = []  # times of cursor A (and B)
        self._view: tuple[float, float, int, int] | None = None  # x0, x1, gutter, plot width of the last build
        self._axis_unit = unit

    # --- cursors ---------------------------------------------------------------------------
    def set_cursors(self, *times: float) -> None:
        self.cursors = [float(t) for t in times[:2]]
        self._strips = None
        self.refresh()

    def _t_at_column(self, col: int) -> float | None:
        if self._view is None:
            return None
        x0, x1, _, pw = self._view
        col = min(max(col, 0), pw - 1)
        return x0 + (col + 0.5) * (x1 - x0) / pw

    def on_click(self, event) -> None:
        if self._view is None:
            return
        t = self._t_at_column(event.x - self._view[2])
        if t is None:
            return
        self.set_cursors(*(self.cursors + [t] if len(self.cursors) == 1 else [t]))

    def action_add_cursor(self) -> None:
        if self._view is None:
            return
        x0, x1, _, pw = self._view
        if not self.cursors:
            self.set_cursors(x0 + (x1 - x0) / 3)
        elif len(self.cursors) == 1:
            self.set_cursors(self.cursors[0], min(x1, self.cursors[0] + (x1 - x0) / 3))
        else:
            self.set_cursors(self.cursors[1])

    def action_nudge(self, columns: int) -> None:
        if self._view is None or not self.cursors:
            return
        x0, x1, _, pw = self._view
        moved = min(max(self.cursors[-1] + columns * (x1 - x0) / pw, x0), x1)
        self.set_cursors(*self.cursors[:-1], moved)

    def action_clear_cursors(self) -> None:
        self.set_cursors()

    @property
    def measurement(self) -> IntervalStats | None:
        """Δt, mean and energy between the cursors, on the first series that has data."""
        if len(self.cursors) < 2:
            return None
        have = [s for s in self._frame.series if len(s.t)]
        if not have:
            return None
        return interval_stats(have[0].t, have[0].y, self.cursors[0], self.cursors[1])

    def measurement_text(self) -> str:
        if not self.cursors:
            return ""
        origin = self._frame.origin
        if len(self.cursors) == 1:
            return f"  A {fmt_seconds(self.cursors[0] - origin)} (click or enter: B)"
        m = self.measurement
        if m is None:
            return ""
        unit = self.unit or ""
        mean = si(m.mean_w, unit) if unit in SI_UNITS else f"{fmt_value(m.mean_w)} {unit}"
        text = f"  A→B Δt {m.dt_s:.3g} s  mean {mean}"
        if unit == "W":
            text += f"  energy {si(m.energy_j, 'J')}"
        return text

    # --- data ------------------------------------------------------------------------------
    def show(self, series: list[Series], x_range: tuple[float, float] | None = None, *, origin: float = 0.0, y_floor: float | None = None, markers: list[Marker] | None = None, spans: list[Span] | None = None) -> None:
        """Replace what the plot shows; the arrays are only read at the next repaint."""
        self._frame = _Frame(list(series), x_range, y_floor, list(markers or []), list(spans or []), origin)
        self._strips = None
        self.refresh()

    # --- drawing ----------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        size = self.size
        if self._strips is None or self._built_for != size:
            t0 = time.perf_counter()
            self._strips = self._build(size.width, size.height)
            self._built_for = size
            self.last_build_ms = (time.perf_counter() - t0) * 1e3
            self.builds += 1
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(size.width)

    def _title_strip(self, width: int, series: list[Series]) -> Strip:
        segs = [Segment(self.title, Style(bold=True))]
        for i, s in enumerate(series):
            color = s.color or PALETTE[i % len(PALETTE)]
            segs.append(Segment("  ●", Style(color=color)))
            segs.append(Segment(f" {s.label}" + (f" {s.value_text}" if s.value_text else "")))
        cursor = self.measurement_text()
        if cursor:
            segs.append(Segment(cursor, Style(color=CURSOR_FG, bold=True)))
        return Strip(segs).crop_extend(0, width, None)

    def _build(self, width: int, height: int) -> list[Strip]:
        fr = self._frame
        if width <= 0 or height <= 0:
            return []
        strips = [self._title_strip(width, fr.series)]
        gutter = 6
        pw, ph = width - gutter, height - 2
        if ph < 1 or pw < 4:
            return strips + [Strip.blank(width)] * (height - 1)
        have = [s for s in fr.series if len(s.t)]
        if fr.x_range is not None:
            x0, x1 = fr.x_range
        elif have:
            x0 = min(float(s.t[0]) for s in have)
            x1 = max(float(s.t[-1]) for s in have)
        else:
            x0, x1 = 0.0, 1.0
        if x1 <= x0:
            x1 = x0 + 1.0
        dots_w, dots_h = 2 * pw, 4 * ph
        envs = [(i, minmax_columns(s.t, s.y, dots_w, x0, x1)) for i, s in enumerate(fr.series) if len(s.t)]
        lo_all = [np.nanmin(e.lo) for _, e in envs if np.isfinite(e.lo).any()]
        hi_all = [np.nanmax(e.hi) for _, e in envs if np.isfinite(e.hi).any()]
        if not lo_all:
            blank = Strip([Segment(" " * gutter), Segment(self.empty_text.center(pw)[:pw], Style(color=AXIS_FG, italic=True))])
            body = [Strip.blank(width)] * ph
            if ph:
                body[ph // 2] = blank.crop_extend(0, width, None)
            return strips + body + [self._x_axis(width, gutter, pw, x0, x1, fr.origin)]
        ymin, ymax = nice_range(min(lo_all), max(hi_all), fr.y_floor)
        self._view = (x0, x1, gutter, pw)
        # Cell keys: 0 empty, 1+i series i; +32 inside a span; +64 a marker column.
        key = np.zeros((ph, pw), dtype=np.int64)
        code = np.zeros((ph, pw), dtype=np.int64)
        col_dt = (x1 - x0) / dots_w
        for i, env in envs:
            spacing = typical_spacing(fr.series[i].t)
            lo, hi = fill_short_gaps(env.lo, env.hi, int(math.ceil(3 * spacing / col_dt)) if spacing > 0 else 0)
            c = braille_codes(rasterise(lo, hi, ymin, ymax, dots_h))
            code |= c
            key = np.where(c > 0, i + 1, key)
        cell_t = x0 + (np.arange(pw) + 0.5) * (x1 - x0) / pw
        for sp in fr.spans:
            inside = (cell_t >= sp.t0) & (cell_t <= sp.t1)
            key[:, inside] += 32
        marker_cols = []
        for mk in fr.markers:
            if x0 <= mk.t <= x1:
                col = min(pw - 1, int((mk.t - x0) / (x1 - x0) * pw))
                marker_cols.append(col)
                empty = code[:, col] == 0
                key[empty, col] += 64
        chars = _BRAILLE[code]
        for col in marker_cols:
            chars[code[:, col] == 0, col] = "│"
        for mk, col in zip([m for m in fr.markers if x0 <= m.t <= x1], marker_cols):
            # The phase name beside its line on the top row, where nothing is drawn.
            text = mk.label[: max(0, pw - col - 1)]
            seg = slice(col + 1, col + 1 + len(text))
            if text and (code[0, seg] == 0).all() and (key[0, seg] & 64 == 0).all():
                chars[0, seg] = list(text)
                key[0, seg] = (key[0, seg] & 32) | 64
        styles: dict[int, Style] = {}

        def style_for(k: int) -> Style:
            st = styles.get(k)
            if st is None:
                s = k & 31
                fg = None
                if k & 64:
                    fg = MARKER_FG
                elif s:
                    fg = fr.series[s - 1].color or PALETTE[(s - 1) % len(PALETTE)]
                if k & 256:
                    fg = CURSOR_FG
                bg = REGION_BG if k & 128 else (SPAN_BG if k & 32 else None)
                st = styles[k] = Style(color=fg, bgcolor=bg)
            return st

        # Watts (and the other SI units) scale with a prefix: a board's 15 mW reads 15.0, not 0.01.
        factor, prefix = si_scale(max(abs(ymin), abs(ymax))) if self.unit in SI_UNITS else (1.0, "")
        self._axis_unit = prefix + (self.unit or "")
        labels = {0: fmt_value(ymax / factor), ph - 1: fmt_value(ymin / factor)}
        if ph >= 5:
            labels[(ph - 1) // 2] = fmt_value((ymax + ymin) / 2 / factor)
        # The cursors: a line where nothing is drawn, the region between them shaded.
        cursor_cols = [min(pw - 1, max(0, int((c - x0) / (x1 - x0) * pw))) for c in self.cursors if x0 <= c <= x1]
        if len(self.cursors) == 2:
            lo_c, hi_c = sorted(self.cursors)
            key[:, (cell_t >= lo_c) & (cell_t <= hi_c)] |= 128
        for col in cursor_cols:
            empty = code[:, col] == 0
            chars[empty, col] = "┊"
            key[empty, col] = (key[empty, col] & ~64) | 256
        axis_style = Style(color=AXIS_FG)
        # Each row as one str (a C-ordered <U1 row viewed as one <U{pw} string), cut where the
        # style changes: slicing a str is far cheaper than joining numpy characters per run.
        rows = np.ascontiguousarray(chars).view(f"<U{pw}").ravel().tolist()
        changes = key[:, 1:] != key[:, :-1]
        for r in range(ph):
            lab = labels.get(r, "")
            segs = [Segment(f"{lab:>{gutter - 1}}" + ("┤" if lab else "│"), axis_style)]
            cuts = (np.flatnonzero(changes[r]) + 1).tolist()
            starts = [0, *cuts]
            text = rows[r].ljust(pw)  # a numpy str drops trailing NULs (none here); keep the width anyway
            for a, b, k in zip(starts, [*cuts, pw], key[r, starts].tolist()):
                segs.append(Segment(text[a:b], style_for(k)))
            strips.append(Strip(segs, width))
        strips.append(self._x_axis(width, gutter, pw, x0, x1, fr.origin, fr.spans))
        return strips

    def _x_axis(self, width: int, gutter: int, pw: int, x0: float, x1: float, origin: float, spans: list[Span] | None = None) -> Strip:
        line = [" "] * pw
        ticks = [(0, fmt_seconds(x0 - origin)), (pw - 1, fmt_seconds(x1 - origin))]
        if pw >= 30:
            ticks.insert(1, (pw // 2, fmt_seconds((x0 + x1) / 2 - origin)))
        for pos, text in ticks:
            start = min(max(0, pos - len(text) // 2), pw - len(text))
            if pos == 0:
                start = 0
            elif pos == pw - 1:
                start = pw - len(text)
            line[start : start + len(text)] = list(text)
        for sp in spans or []:
            if sp.label and x0 <= sp.t0 <= x1:
                col = int((sp.t0 - x0) / (x1 - x0) * pw)
                text = sp.label[: max(0, pw - col)]
                if all(c == " " for c in line[col : col + len(text)]):
                    line[col : col + len(text)] = list(text)
        unit = (getattr(self, "_axis_unit", None) or self.unit or "")[: gutter - 1]
        return Strip([Segment(f"{unit:>{gutter - 1}} ", Style(color=AXIS_FG)), Segment("".join(line), Style(color=AXIS_FG))], width).crop_extend(0, width, None)
