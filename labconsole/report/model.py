"""A run report as data: what a document about one recorded run shows, independent of how.

`build_report(path)` reads a recording (a bundle or an MLPerf power result folder), runs the
same analysis and checks as `labconsole report` and `check`, and returns a `RunReport`: the
headline (metric and verdict first), the whole-run series (power per source, QPS), the bands
to mark on them (phases, the power window) and titled tables (checks, sources, calibration,
ranging vs testing, bench and environment, files and checksums). Renderers (`html`, `plots`)
only lay the model out, so another kind of record (Tiny, Training) plugs in by adding a
builder to `BUILDERS` that fills the same model.

Series are decimated here (min and max per bucket, `session.decimate`), so a renderer is
handed at most a few thousand points per trace whatever the length of the run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labconsole.bundle.environment_diff import record_environment
from labconsole.bundle.reader import RunRecord, open_run
from labconsole.mlperf import checks as mlperf_checks
from labconsole.mlperf import metrics
from labconsole.session.decimate import minmax_pairs
from labconsole.session.live import qps_over_phases
from labconsole.session.replay import recorded_progress
from labconsole.verdict import PASS, worst

# Above this many points a trace is reduced to min/max pairs: 4000 points keep a spike of one
# sample visible at any zoom a 4K screen shows, and keep the HTML small (JSON numbers).
MAX_POINTS = 4000
# Hash files for the files table only up to this size each (an MLPerf folder is a few MB; a
# bundle's own manifest already holds its checksums).
HASH_LIMIT_BYTES = 512 * 1024 * 1024


@dataclass
class Trace:
    label: str
    axis: str  # "power" | "qps": which plot it belongs to
    unit: str
    t: np.ndarray  # seconds from the report's origin
    y: np.ndarray  # NaN where the sample is invalid (a gap stays a gap)
    raw_points: int  # before decimation

    @property
    def decimated(self) -> bool:
        return self.raw_points > len(self.t)


@dataclass
class Band:
    label: str
    t0: float  # seconds from the origin
    t1: float
    kind: str  # "phase" | "window"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    status: list[str | None] = field(default_factory=list)  # per row: pass/warn/fail/skip for colouring
    note: str = ""
    preformatted: bool = False  # one cell of text kept as it is (a profile)


@dataclass
class RunReport:
    title: str
    kind: str  # "bundle" | "mlperf" (later "tiny", "training")
    path: Path
    origin_utc: str  # what t = 0 is, for people
    verdict: str  # pass | warn | fail: the worst check, or fail when the run did not complete
    verdict_reason: str
    headline: list[tuple[str, str]]  # (label, value), the metric first
    metric: dict | None
    traces: list[Trace] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)  # the `report --json` object it was built from

    def traces_on(self, axis: str) -> list[Trace]:
        return [t for t in self.traces if t.axis == axis]


def decimate(t: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about `max_points` points, keeping each bucket's min and max. NaN (a gap) is
    kept where a bucket holds nothing valid, so the plot does not join across a gap."""
    if len(t) <= max_points:
        return np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    tt, yy = minmax_pairs(np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64), max_points)
    return tt, yy


def _fmt(v: Any, spec: str = ".6g", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:{spec}}" + (f" {unit}" if unit else "")
    return str(v) + (f" {unit}" if unit else "")


def _utc(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


# ---------------------------------------------------------------------------------------------
# builders


def build_report(path: str | Path, scenario: str | None = None) -> RunReport:
    """The report of the recording at `path` (slow: reads every sample; the manifest check
    hashes every file). Raises `labconsole.bundle.reader.RunOpenError` for a path that is no
    recording and ValueError for an unknown `scenario`."""
    return report_for_record(open_run(path), scenario)


def report_for_record(record: RunRecord, scenario: str | None = None) -> RunReport:
    builder = BUILDERS.get(record.kind)
    if builder is None:  # pragma: no cover - open_run returns only the kinds below
        raise ValueError(f"{record.path}: no report for a record of kind {record.kind!r}")
    return builder(record, scenario)


def power_series(record: RunRecord) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(wall_ns, watts with NaN where invalid) per (source, channel) across the phases, in time
    order. Only the three columns a plot needs: at 1 M samples a phase this is ~0.3 s where
    building whole sample records (`sources.replay.recorded_samples`) takes ~4 s."""
    parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for phase in record.phases.values():
        f = phase.samples
        if f is None or not len(f):
            continue
        wall = f["wall_ns"].to_numpy(dtype=np.int64)
        watts = np.where(f["status"].to_numpy() == 0, f["watts"].to_numpy(dtype=np.float64), np.nan)
        keys = [c for c in ("source", "channel") if c in f.columns]
        if not keys:
            parts.setdefault((record.primary_source or "source", "main"), []).append((wall, watts))
            continue
        for key, idx in f.groupby(keys, observed=True, sort=False).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            src = str(key[0]) if "source" in keys else (record.primary_source or "source")
            ch = str(key[-1]) if "channel" in keys else "main"
            parts.setdefault((src, ch), []).append((wall[idx], watts[idx]))
    out = {}
    for key, chunks in parts.items():
        w = np.concatenate([c[0] for c in chunks])
        y = np.concatenate([c[1] for c in chunks])
        order = np.argsort(w, kind="stable")
        out[key] = (w[order], y[order])
    return out


def _headline(rep: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    m = rep.get("metric")
    if m:
        est = " (an estimate)" if m.get("estimate") else ""
        rows.append(("metric", f"{m['name']} = {_fmt(m.get('value'))} {m.get('unit', '')}{est}"))
    else:
        rows.append(("metric", "none: " + "; ".join(rep.get("missing") or []) if rep.get("missing") else "none"))
    filed, run = rep.get("filed_scenario"), rep.get("run_scenario", rep.get("scenario"))
    rows.append(("scenario", f"{filed} (filed; LoadGen ran {run})" if filed and run and filed != run else str(filed or rep.get("scenario") or "-")))
    rows.append(("LoadGen result", str(rep.get("result_validity") or "-")))
    p = rep.get("power") or {}
    if p:
        rows.append(("average power", f"{_fmt(p.get('avg_watts'), '.6g', 'W')} over {_fmt(p.get('window_s'), '.3f', 's')} ({p.get('samples_in_window')} samples in the window)"))
    if rep.get("samples_per_joule") is not None:
        rows.append(("efficiency", _fmt(rep["samples_per_joule"], ".6g", "samples/J")))
    perf = rep.get("performance")
    if perf:
        rows.append(("performance", f"{perf.get('key')} = {_fmt(perf.get('value'))}"))
    idle = rep.get("idle_baseline") or {}
    if idle.get("avg_watts") is not None:
        rows.append(("idle baseline", _fmt(idle["avg_watts"], ".6g", "W")))
    if rep.get("ranging_delta_pct") is not None:
        rows.append(("testing vs ranging", f"{rep['ranging_delta_pct']:+.2f} %"))
    energy = rep.get("energy")
    if energy:
        rows.append(("energy", f"{_fmt(energy.get('joules'), '.6g', 'J')} ({energy.get('kind')})"))
    unc = rep.get("uncertainty") or {}
    if unc.get("mean_pct") is not None:
        rows.append(("uncertainty", f"mean {unc['mean_pct']:.3f} %, max {unc['max_pct']:.3f} % ({unc.get('from')})"))
    return rows


def _verdict(record: RunRecord, results: list) -> tuple[str, str]:
    statuses = [r.status for r in results]
    counts = {s: statuses.count(s) for s in ("pass", "warn", "fail", "skip") if statuses.count(s)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no checks"
    verdict = worst([PASS, *statuses])
    if record.kind == "bundle" and record.exit_status not in (None, "completed"):
        return "fail", f"the run did not complete ({record.exit_status}: {record.run_info.get('reason') or 'no reason recorded'}); checks: {summary}"
    return verdict, f"checks: {summary}"


def inference_report(record: RunRecord, scenario: str | None = None) -> RunReport:
    """An MLPerf Inference power run: a labconsole bundle or an MLPerf power result folder."""
    rep = metrics.compute_report(record, scenario)
    results = mlperf_checks.run_checks(record)
    verdict, why = _verdict(record, results)
    samples = power_series(record)
    starts = [float(w[0]) / 1e9 for w, _ in samples.values() if len(w)]
    progress = recorded_progress(record)
    starts += [float(w[0]) / 1e9 for w, _ in progress.values() if len(w)]
    origin = min(starts) if starts else 0.0

    traces: list[Trace] = []
    for (src, ch), (wall_ns, y) in samples.items():
        t = wall_ns / 1e9 - origin
        tt, yy = decimate(t, y)
        traces.append(Trace(src if ch == "main" else f"{src}/{ch}", "power", "W", tt, yy, len(t)))
    qt, qy = qps_over_phases(progress)
    if len(qt):
        tt, yy = decimate(qt - origin, qy)
        traces.append(Trace("QPS", "qps", "q/s", tt, yy, len(qt)))

    bands: list[Band] = []
    for name, ph in record.phases.items():
        if name == "between" or ph.samples is None or not len(ph.samples):
            continue
        w = ph.samples["wall_ns"]
        bands.append(Band(name, float(w.min()) / 1e9 - origin, float(w.max()) / 1e9 - origin, "phase"))
    bands.sort(key=lambda b: b.t0)
    t = record.phases.get("testing")
    if t is not None and t.detail is not None and t.detail.power_begin_ns is not None:
        bands.append(Band("power window", t.detail.power_begin_ns / 1e9 - origin, t.detail.power_end_ns / 1e9 - origin, "window"))

    kind = "MLPerf power result folder" if record.kind == "mlperf" else f"labconsole bundle, {record.exit_status or 'status unknown'}"
    name = record.path.parent.name + "/" + record.path.name if record.kind == "mlperf" else record.path.name
    notes = list(rep.get("scenario_notes") or [])
    if rep.get("metric_note"):
        notes.append(rep["metric_note"])
    if rep.get("queries_from"):
        notes.append(f"queries: {_fmt(rep.get('queries'))}, {rep['queries_from']}")
    notes += [f"missing: {m}" for m in rep.get("missing") or []]
    notes += [f"unreadable: {u}" for u in rep.get("unreadable") or []]
    decimated = [tr.label for tr in traces if tr.decimated]
    if decimated:
        notes.append(f"plots show each bucket's min and max (at most {MAX_POINTS} points a trace): {', '.join(decimated)}")
    return RunReport(
        title=f"{name} ({kind})",
        kind=record.kind,
        path=record.path,
        origin_utc=_utc(origin if starts else None),
        verdict=verdict,
        verdict_reason=why,
        headline=_headline(rep),
        metric=rep.get("metric"),
        traces=traces,
        bands=bands,
        tables=[
            _checks_table(results),
            _sources_table(record, rep),
            _phases_table(record, rep),
            _calibration_table(record),
            _run_table(record, origin if starts else None),
            _environment_table(record),
            _files_table(record, results),
            *([Table("Profile as used", ["profile.yaml"], [[record.profile_text]], preformatted=True)] if record.profile_text else []),
        ],
        notes=notes,
        report=rep,
    )


BUILDERS: dict[str, Callable[[RunRecord, str | None], RunReport]] = {
    "bundle": inference_report,
    "mlperf": inference_report,
}


# ---------------------------------------------------------------------------------------------
# tables


def _checks_table(results: list) -> Table:
    order = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
    rows, status = [], []
    for r in sorted(results, key=lambda r: order.get(r.status, 9)):
        rows.append([r.status.upper(), r.name, r.origin, r.message])
        status.append(r.status)
    return Table("Checks", ["verdict", "check", "origin", "reason"], rows, status, note="origin mlperf: MLPerf's power compliance checker re-implemented; labconsole: ours")


def _sources_table(record: RunRecord, rep: dict) -> Table:
    env_sources = {s.get("name"): s for s in (record_environment(record).get("sources") or []) if isinstance(s, dict)}
    figures = rep.get("sources") or {}
    rows = []
    for s in record.sources or [{"name": n} for n in figures]:
        name = str(s.get("name"))
        ident = (env_sources.get(name) or {}).get("identity") or {}
        f = figures.get(name) or {}
        who = " ".join(str(ident.get(k)) for k in ("vendor", "model") if ident.get(k)) or "-"
        if ident.get("serial"):
            who += f" s/n {ident['serial']}"
        if ident.get("firmware"):
            who += f" fw {ident['firmware']}"
        primary = " (primary)" if name == record.primary_source else ""
        rows.append([
            name + primary, str(s.get("driver", "-")), str(s.get("scope", "-")), who,
            _fmt(s.get("sample_interval_s"), "g", "s"), _fmt(f.get("avg_watts"), ".6g", "W"), _fmt(f.get("samples_in_window"), "d"),
            _fmt(f.get("counter_avg_watts"), ".6g", "W"),
        ])
    return Table("Sources", ["source", "driver", "scope", "identity", "interval", "avg in window", "samples in window", "from its energy counter"], rows)


def _phases_table(record: RunRecord, rep: dict) -> Table:
    rows = []
    for name, ph in (rep.get("phases") or {}).items():
        pr = record.phases.get(name)
        vmax = amax = rv = ra = None
        if pr is not None and pr.samples is not None and len(pr.samples):
            f = pr.samples
            ok = f["status"] == 0 if "status" in f.columns else slice(None)
            if "volts" in f.columns:
                vmax = float(np.nanmax(f["volts"][ok])) if np.isfinite(f["volts"][ok]).any() else None
            if "amps" in f.columns:
                amax = float(np.nanmax(f["amps"][ok])) if np.isfinite(f["amps"][ok]).any() else None
            if "range_v" in f.columns and np.isfinite(f["range_v"]).any():
                rv = ", ".join(f"{v:g}" for v in sorted(set(f["range_v"].dropna().tolist())))
            if "range_a" in f.columns and np.isfinite(f["range_a"]).any():
                ra = ", ".join(f"{v:g}" for v in sorted(set(f["range_a"].dropna().tolist())))
        rows.append([
            name, _fmt(ph.get("duration_s"), ".3f", "s"), _fmt(ph.get("samples"), "d"), _fmt(ph.get("invalid"), "d"),
            _fmt(ph.get("avg_watts"), ".6g", "W"), _fmt(vmax, ".5g", "V"), _fmt(amax, ".5g", "A"), rv or "-", ra or "-",
            "yes" if ph.get("power_window") else "no",
        ])
    delta = rep.get("ranging_delta_pct")
    note = (f"testing vs ranging: {delta:+.2f} % (MLPerf fails a testing run more than 5 % below its ranging run)" if delta is not None
            else "no ranging-vs-testing figure (a phase or its power window is missing)")
    return Table("Ranging vs testing", ["phase", "duration", "samples", "invalid", "avg power", "max V", "max A", "V ranges", "A ranges", "power window"], rows, note=note)


def _calibration_table(record: RunRecord) -> Table:
    steps = (record.calibration or {}).get("steps") or []
    rows, status = [], []
    for st in steps:
        if not isinstance(st, dict):
            continue
        rows.append([str(st.get("status", "-")).upper(), str(st.get("title") or st.get("key")), str(st.get("reason") or ""), str(st.get("attempts", ""))])
        status.append(st.get("status"))
    note = ""
    if not rows:
        note = ("an MLPerf result folder holds no calibration record: the meter's identity and PTD settings are under Bench and environment"
                if record.kind == "mlperf" else "this bundle has no calibration.json")
    return Table("Calibration", ["verdict", "step", "reason", "attempts"], rows, status, note=note)


def _run_table(record: RunRecord, origin: float | None) -> Table:
    info = record.run_info or {}
    prof = info.get("profile")
    rows = [["path", str(record.path)], ["kind", record.kind], ["id", str(info.get("id") or "-")],
            ["profile", str(prof.get("name") if isinstance(prof, dict) else prof or "-")]]
    for k in ("operator", "start", "stop", "exit_status", "reason", "scenario"):
        if info.get(k) not in (None, ""):
            rows.append([k.replace("_", " "), str(info[k])])
    rows.append(["plots' t = 0", _utc(origin)])
    return Table("Run", ["field", "value"], rows)


def _flatten(obj: Any, prefix: str = "", out: list | None = None, depth: int = 0) -> list[list[str]]:
    out = [] if out is None else out
    if isinstance(obj, dict) and depth < 4:
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(obj, list) and depth < 4 and all(isinstance(v, dict) for v in obj) and obj:
        for i, v in enumerate(obj):
            name = v.get("name") if isinstance(v.get("name"), str) else str(i)
            _flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}[{name}]", out, depth + 1)
    else:
        text = ", ".join(str(x) for x in obj) if isinstance(obj, list) else str(obj)
        out.append([prefix, text])
    return out


def _environment_table(record: RunRecord) -> Table:
    env = record_environment(record)
    rows = [r for r in _flatten(env) if not r[0].endswith("collected_wall_ns")]
    note = "" if env else "no environment recorded"
    return Table("Bench and environment", ["key", "value"], rows, note=note)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files_table(record: RunRecord, results: list) -> Table:
    root = record.path
    rows = []
    manifest = root / "manifest-sha256.txt"
    if record.kind == "bundle" and manifest.exists():
        listed = []
        for name in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
            p = root / name
            if p.exists():
                for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                    digest, _, rel = line.strip().partition(" ")
                    if rel.strip():
                        listed.append((rel.strip(), digest))
        for rel, digest in listed:
            p = root / rel
            size = p.stat().st_size if p.is_file() and not p.is_symlink() else None
            rows.append([rel, _fmt(size, ",d", "B") if size is not None else "missing", digest])
        man = next((r for r in results if r.name == "manifest"), None)
        note = "SHA-256 from the bundle's BagIt manifests" + (f"; manifest check: {man.status.upper()}: {man.message}" if man else "")
    else:
        for p in sorted(q for q in root.rglob("*") if q.is_file() and not q.is_symlink()):
            size = p.stat().st_size
            digest = _sha256(p) if size <= HASH_LIMIT_BYTES else f"not hashed (over {HASH_LIMIT_BYTES >> 20} MiB)"
            rows.append([str(p.relative_to(root)), _fmt(size, ",d", "B"), digest])
        note = ("SHA-256 computed now (the folder is only read)" if record.kind == "mlperf"
                else "an unsealed bundle: no manifest; SHA-256 computed now")
    return Table("Files and checksums", ["file", "size", "sha256"], rows, note=note)
