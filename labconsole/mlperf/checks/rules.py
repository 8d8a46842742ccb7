"""Our checks of a recorded run (origin "labconsole"), for `labconsole check`.

Each check returns verdicts (labconsole.verdict) with a message that says what was seen and, on
failure, what it means. The same list runs on our bundles and on MLPerf result folders:
completeness, LoadGen validity and error lines, the power window, the ranging delta, minimum
duration, sample regularity and gaps, invalid samples, uncertainty, clock offset, calibration,
the scope cross-check and acquisition; for MLPerf folders, spl.txt against PTD's own summary, and
for any record, whether labconsole's emulator produced it. The official compliance checker's
eleven checks live in `official` (origin "mlperf").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labconsole.instruments import ptd
from labconsole.mlperf import metrics
from labconsole.bundle.reader import RunRecord
from labconsole.bundle.seal import verify
from labconsole.mlperf.checks.registry import OFFICIAL, CheckResult, check
from labconsole.mlperf.powerdev import (
    REQUIRED_POWER_FILES,
    ntp_offsets_from_client_log,
    parse_identify,
    parse_watts,
    time_exchange_offsets,
)
from labconsole.samples.batch import GAP, OK, OVERRANGE, STATUS_NAMES
from labconsole.samples.reduce import median_and_percentile
from labconsole.samples.table import sample_chunks, sample_groups
from labconsole.verdict import FAIL, PASS, SKIP, WARN, worst

MLPERF_MIN_DURATION_S = 600.0  # inference_rules.adoc scenario table; the checker's TEST_DURATION_MS
MLPERF_DELTA_LIMIT_PCT = -5.0  # testing must not be more than 5 % below ranging (compliance/check.py)


def procedure_setting(record: RunRecord, key: str, default: float) -> float:
    """A number from the run's `procedure:` block (run.json), or the MLPerf default."""
    try:
        value = (record.run_info.get("procedure") or {}).get(key, default)
        return float(default if value is None else value)
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------------------------
# the record as a whole


@check
def manifest(record: RunRecord) -> list[CheckResult]:
    if record.kind != "bundle":
        return []  # MLPerf folders: the results checksum check plays this part
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
            problems.append(f"mlperf_log_detail.txt is unreadable: {ph.detail_error}" if ph.detail_error else "no mlperf_log_detail.txt")
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
    if record.missing and record.kind == "mlperf":
        # Every file of a power-dev session is required (the official checker hashes them and
        # reads ptd_logs.txt); one that is there but unreadable is named as such, not "missing".
        absent = [m for m in record.missing if ": " not in m]
        unreadable = [m for m in record.missing if ": " in m]
        parts = ([f"required but missing: {', '.join(absent)}"] if absent else []) + ([f"present but unreadable: {'; '.join(unreadable)}"] if unreadable else [])
        out.append(CheckResult("files present", FAIL, "; ".join(parts) + " (the official checker fails such a folder; a published copy trimmed of them cannot be verified)"))
    elif record.missing:
        out.append(CheckResult("files present", WARN, "missing: " + ", ".join(record.missing)))
    else:
        out.append(CheckResult("files present", PASS, "every file a complete record holds is there"))
    if record.kind == "mlperf":
        out.append(_submission_file_lists(record))
    return out


def _submission_file_lists(record: RunRecord) -> CheckResult:
    """The submission checker's `required_files_check`: exact file lists in power/, ranging/, run_1/."""
    required_perf = {"mlperf_log_summary.txt", "mlperf_log_detail.txt", "spl.txt"}
    optional_perf = {"mlperf_log_accuracy.json", "mlperf_log_trace.json", "results.json", ".gitkeep"}
    problems = []
    for sub, required, optional in (("power", set(REQUIRED_POWER_FILES), set()), ("ranging", required_perf, optional_perf), ("run_1", required_perf, optional_perf)):
        folder = record.path / sub
        present = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
        missing = sorted(required - present)
        extra = sorted(present - required - optional)
        if missing:
            problems.append(f"{sub}/ lacks {', '.join(missing)}")
        if extra:
            problems.append(f"{sub}/ has extra {', '.join(extra)}")
    if problems:
        # A missing required file fails; an extra one (power-dev's own run_1/ptd_out.txt, which a
        # submitter deletes before submitting) warns: the submission checker rejects both.
        missing = any("lacks" in p for p in problems)
        return CheckResult(
            "submission file lists",
            FAIL if missing else WARN,
            "; ".join(problems) + " (the submission checker's required_files_check rejects any missing or extra file" + ("" if missing else ": delete extra files before submitting") + ")",
            OFFICIAL,
        )
    return CheckResult("submission file lists", PASS, "power/, ranging/ and run_1/ hold exactly the files the submission checker requires", OFFICIAL)


# --------------------------------------------------------------------------------------------
# LoadGen


@check
def loadgen_validity(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None:
        why = ph.detail_problem("the testing detail log") if ph else "no testing phase"
        return [CheckResult("loadgen validity", FAIL, f"{why}: no result to read")]
    validity = ph.detail.validity
    out = []
    if validity == "VALID":
        msg = "LoadGen says the testing run is VALID"
        sev = PASS
        rng = record.phases.get("ranging")
        if rng is not None and rng.detail is not None and rng.detail.validity not in (None, "VALID"):
            sev, msg = WARN, msg + f"; the ranging run is {rng.detail.validity} (it should be the same, valid workload)"
        out.append(CheckResult("loadgen validity", sev, msg))
    else:
        reason = ph.detail.get("result_invalid_reason") or ""
        out.append(CheckResult("loadgen validity", FAIL, f"LoadGen says the testing run is {validity or 'unknown'}{': ' + str(reason) if reason else ''}"))
    warn_note = f"; {len(ph.detail.warnings)} warning line(s)" if ph.detail.warnings else ""
    if ph.detail.errors:
        first = ph.detail.errors[0]
        out.append(
            CheckResult(
                "loadgen errors",
                FAIL,
                f"{len(ph.detail.errors)} error line(s) in the detail log, first at line {first[0]}: {first[1]} {str(first[2])[:120]}{warn_note}"
                " (LoadGen does not turn these into INVALID; the submission checker is meant to reject them)",
            )
        )
    else:
        out.append(CheckResult("loadgen errors", PASS, "no error lines in the testing detail log" + warn_note))
    return out


@check
def power_window(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None:
        return [CheckResult("power window", FAIL, ph.detail_problem("the testing detail log") if ph else "no testing phase")]
    if ph.detail.power_begin_ns is None:
        return [CheckResult("power window", FAIL, f"{ph.detail.path}: no power_begin/power_end markers")]
    stats = metrics.phase_power(record, "testing")
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
    """MLPerf: testing avg power must be > ranging avg power - 5 % (compliance/check.py, check 6)."""
    name = "ranging vs testing"
    delta = metrics.ranging_delta_pct(record)
    if delta is None:
        what = []
        for mode in ("ranging", "testing"):
            ph = record.phases.get(mode)
            if ph is None:
                what.append(f"no {mode} phase")
                continue
            if ph.detail is None:
                what.append(ph.detail_problem(f"{mode}/mlperf_log_detail.txt" if record.kind == "bundle" else f"{'run_1' if mode == 'testing' else mode}/mlperf_log_detail.txt"))
            if ph.samples is None or len(ph.samples) == 0:
                what.append(f"{mode} samples (spl.txt) missing" if record.kind == "mlperf" else f"no {mode} samples")
        return [CheckResult(name, WARN, "cannot compare ranging and testing power: " + ("; ".join(w for w in what if w) or "missing valid samples in a window"), OFFICIAL)]
    limit = procedure_setting(record, "ranging_delta_limit_pct", MLPERF_DELTA_LIMIT_PCT)
    checker = metrics.checker_ranging_delta_pct(record)
    r = metrics.phase_power(record, "ranging")
    t = metrics.phase_power(record, "testing")
    own = "" if limit == MLPERF_DELTA_LIMIT_PCT else f"; the profile's limit, MLPerf's is {MLPERF_DELTA_LIMIT_PCT:+.0f} %"
    msg = f"testing average {t.avg_w:.5f} W is {delta:+.2f} % against ranging {r.avg_w:.5f} W (limit {limit:+g} %{own})"
    rw, tw = (record.phases[m].detail.window_s if record.phases.get(m) and record.phases[m].detail else None for m in ("ranging", "testing"))
    if rw and tw is not None and (rw - tw) / rw > 0.5:
        # compliance/check.py raises its duration warning first and never reaches the -5 % rule.
        msg += f"; the official checker does not apply this rule here: the testing window ({tw:.2f} s) is more than 50 % shorter than ranging's ({rw:.2f} s), and its duration warning stops it first"
    if checker is not None and delta > limit and not checker > MLPERF_DELTA_LIMIT_PCT:
        return [CheckResult(name, FAIL, msg + f"; the official checker rounds the averages to 5 decimals and the delta to 2, giving {checker:+.2f} %, which fails", OFFICIAL)]
    if delta > limit:
        return [CheckResult(name, PASS, msg, OFFICIAL)]
    return [CheckResult(name, FAIL, msg + f": testing more than {-limit:g} % below ranging fails (the ranges chosen may not fit the load, or the load changed)", OFFICIAL)]


@check
def minimum_duration(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None or ph.detail.window_s is None:
        why = ph.detail_problem("the testing detail log") if ph else "no testing phase"
        return [CheckResult("minimum duration", WARN, f"no testing power window to measure ({why})")]
    need = procedure_setting(record, "submission_min_duration_s", MLPERF_MIN_DURATION_S)
    got = ph.detail.window_s
    eff = ph.detail.get("effective_min_duration_ms")
    setting = ""
    try:
        if eff is not None and float(eff) < MLPERF_MIN_DURATION_S * 1000:
            setting = f"; LoadGen's min_duration was {float(eff) / 1000:g} s (the submission checker requires 600 s: 'Test duration less than 600s in user config')"
    except (TypeError, ValueError):
        pass
    if got >= need and not setting:
        return [CheckResult("minimum duration", PASS, f"testing power window {got:.3f} s >= {need:g} s: long enough for submission grade")]
    if got >= need:
        return [CheckResult("minimum duration", WARN, f"testing power window {got:.3f} s{setting}")]
    return [CheckResult("minimum duration", WARN, f"testing power window {got:.3f} s is shorter than {need:g} s: this run is not submission grade (MLPerf needs 600 s){setting}")]


# --------------------------------------------------------------------------------------------
# samples


def _expected_interval(record: RunRecord, source: str) -> float | None:
    for s in record.sources:
        if s.get("name") == source:
            try:
                return float(s.get("sample_interval_s"))
            except (TypeError, ValueError):
                return None
    return None


_REGULARITY_COLUMNS = ("wall_ns", "mono_ns", "status")


def regularity(frame: Any, begin_ns: int, end_ns: int, expected_s: float | None) -> dict:
    """Intervals and gaps of one channel's samples over the window (edges count as gaps).

    `frame`: one channel's samples (a DataFrame), or a function yielding them in chunks (each
    call again): a few passes, each holding one chunk, with the figures a whole frame gives
    (the median and 99th percentile selected exactly, samples.reduce). Times are the monotonic
    clock from the first sample's wall time when it rises strictly through the window, else
    the wall clock."""
    pieces = (lambda: sample_chunks(frame, _REGULARITY_COLUMNS)) if hasattr(frame, "columns") else frame
    window_s = (end_ns - begin_ns) / 1e9

    def inside_rows():
        for chunk in pieces():
            wall = chunk["wall_ns"]
            inside = (wall > begin_ns) & (wall < end_ns) & (chunk["status"] != GAP)
            if inside.any():
                yield wall[inside], chunk["mono_ns"][inside]

    n, rising, first, last, last_mono = 0, True, None, None, None
    for wall, mono in inside_rows():
        if rising:
            rising = bool(np.all(np.diff(mono) > 0)) and (last_mono is None or mono[0] > last_mono)
        if first is None:
            first = (wall[0], mono[0])
        last, last_mono = wall[-1], mono[-1]
        n += len(wall)
    out: dict[str, Any] = {"samples": n, "window_s": window_s, "expected_s": expected_s}
    if n < 2:
        out.update(median_s=math.nan, max_gap_s=window_s, gap_s=window_s, gaps=1)
        return out
    base, mono0 = first

    def intervals():
        prev = None
        for wall, mono in inside_rows():
            t = (base + (mono - mono0)).astype(np.float64) / 1e9 if rising else wall.astype(np.float64) / 1e9
            yield np.diff(t, prepend=prev) if prev is not None else np.diff(t)
            prev = t[-1]

    median, p99 = median_and_percentile(intervals, n - 1, 99)
    ref = max(expected_s or 0.0, median)
    threshold = 2.5 * ref
    edges = np.array([(first[0] - begin_ns) / 1e9, (end_ns - last) / 1e9])
    big, max_gap = [], float(edges.max())
    for dt in intervals():
        if len(dt):
            max_gap = max(max_gap, float(dt.max()))
            big.append(dt[dt > threshold])
    big.append(edges[edges > threshold])
    big_all = np.concatenate(big)
    out.update(
        median_s=median,
        p99_s=p99,
        max_gap_s=max_gap,
        gaps=int(len(big_all)),
        gap_s=float((big_all - ref).sum()) if len(big_all) else 0.0,
        threshold_s=threshold,
    )
    return out


@check
def sample_regularity(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None or ph.detail.power_begin_ns is None:
        return [CheckResult("sample regularity", WARN, "no testing power window to check the samples against")]
    if ph.samples is None or len(ph.samples) == 0:
        return [CheckResult("sample regularity", FAIL, "no testing samples")]
    b, e = ph.detail.power_begin_ns, ph.detail.power_end_ns
    statuses, lines = [], []
    for (source, channel), frame in sample_groups(ph.samples, _REGULARITY_COLUMNS):
        label = source if channel == "main" else f"{source}/{channel}"
        exp = _expected_interval(record, source)
        r = regularity(frame, b, e, exp)
        if r["samples"] < 2:
            statuses.append(FAIL)
            lines.append(f"{label}: {r['samples']} sample(s) in a {r['window_s']:.1f} s window")
            continue
        text = f"{label}: {r['samples']} samples, median interval {r['median_s']:.3f} s" + (f" (profile {exp:g} s)" if exp else "")
        sev = PASS
        if exp and r["median_s"] > 1.5 * exp:
            sev = WARN
            text += ", slower than asked"
        if r["gaps"]:
            frac = r["gap_s"] / r["window_s"] if r["window_s"] > 0 else 1.0
            text += f", {r['gaps']} gap(s) longer than {r['threshold_s']:.2f} s (largest {r['max_gap_s']:.2f} s, {frac:.1%} of the window uncovered)"
            sev = FAIL if frac > 0.10 else WARN
        statuses.append(sev)
        lines.append(text)
    sev = worst(statuses)
    suffix = "" if sev == PASS else ("; gaps bias MLPerf's plain mean of samples" if any("gap" in ln for ln in lines) else "")
    return [CheckResult("sample regularity", sev, "; ".join(lines) + suffix)]


@check
def invalid_samples(record: RunRecord) -> list[CheckResult]:
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None or ph.detail.power_begin_ns is None or ph.samples is None:
        return [CheckResult("invalid samples", WARN, "no testing samples and window to count invalid samples in")]
    frame = metrics.source_frame(ph, record.primary_source)
    if frame is None or len(frame) == 0:
        return [CheckResult("invalid samples", FAIL, f"no samples of the primary source {record.primary_source}")]
    n, nonpos, infinite, nan, counts = 0, 0, 0, 0, {}
    for chunk in sample_chunks(frame, ("wall_ns", "watts", "status")):
        inside = metrics.window_mask(chunk["wall_ns"], ph.detail.power_begin_ns, ph.detail.power_end_ns)
        st = chunk["status"][inside]
        watts = chunk["watts"][inside]
        n += int(inside.sum())
        for k, v in zip(*np.unique(st[st != OK], return_counts=True)):
            counts[int(k)] = counts.get(int(k), 0) + int(v)
        # An infinite reading is invalid, like NaN: no meter reports one (PTD writes -1 for an
        # invalid sample), so it is excluded from the average and fails this check.
        ok = st == OK
        infinite += int((ok & np.isinf(watts)).sum())
        nan += int((ok & np.isnan(watts)).sum())
        nonpos += int((ok & np.isfinite(watts) & ~(watts > 0)).sum())
    bad = {STATUS_NAMES.get(k, str(k)): counts[k] for k in sorted(counts)}
    if infinite:
        bad["infinite watts"] = infinite
    if nan:
        bad["NaN watts"] = nan
    if nonpos:
        bad["watts <= 0"] = nonpos
    ptd = ""
    if record.kind == "mlperf":
        w = parse_watts(metrics.ptd_phase_replies(record, "testing").get("Watts", ""))
        if w is not None:
            ptd = f"; PTD's own count for the testing run: {w.samples} samples, {w.errors} errors"
    if not bad:
        return [CheckResult("invalid samples", PASS, f"all {n} samples of {record.primary_source} in the testing window are valid{ptd}")]
    total = sum(bad.values())
    text = f"{total} of {n} samples of {record.primary_source} in the testing window are excluded from the average ({', '.join(f'{k} {v}' for k, v in bad.items())}){ptd}"
    if bad.get(STATUS_NAMES[OVERRANGE]):
        return [CheckResult("invalid samples", FAIL, text + ": over-range at fixed testing ranges means the range is too small and readings are clipped")]
    if infinite:
        return [CheckResult("invalid samples", FAIL, text + ": an infinite reading is not a measurement (the file was not written by a meter, or was edited)")]
    return [CheckResult("invalid samples", WARN, text)]


@check
def uncertainty(record: RunRecord) -> list[CheckResult]:
    name = "uncertainty"
    limit = procedure_setting(record, "max_uncertainty_pct", metrics.MLPERF_UNCERTAINTY_LIMIT_PCT)
    quirk = (
        " (the official checker fails only on PTD's per-sample 'above 1.00% limit' WARNING lines in ptd_logs.txt, and,"
        " because it adds its 800 ms tolerance as 800 s, only on testing runs longer than about 1600 s)"
    )
    if record.kind == "mlperf":
        u = metrics.mlperf_uncertainty(record, limit)
        if u is None:
            return [CheckResult(name, WARN, "no Uncertainty reply for the testing run in server.json ptd_messages: uncertainty unknown", OFFICIAL)]
        if u.get("unreadable"):
            return [CheckResult(name, WARN, f"PTD's Uncertainty reply is unreadable: {u['reply']!r}", OFFICIAL)]
        if "mean_pct" not in u:
            return [CheckResult(name, FAIL, f"PTD could not evaluate the testing run's uncertainty ({u['reply']}): uncertainty checking was not active at fixed ranges", OFFICIAL)]
        text = f"PTD: testing uncertainty mean {u['mean_pct']:.3f} %, max {u['max_pct']:.3f} % over {u['samples']} samples (limit {limit:g} %)"
        if u["mean_pct"] > limit:
            return [CheckResult(name, FAIL, text + ": the average sample is above the limit" + quirk, OFFICIAL)]
        if u["over_limit"] or u["max_pct"] > limit:
            return [
                CheckResult(
                    name,
                    WARN,
                    text + f"; {u['over_limit']} sample(s) above the limit by PTD's count (the count's meaning is inferred from PTD replies):"
                    " MLPerf treats a testing sample above 1 % as an error" + quirk,
                    OFFICIAL,
                )
            ]
        if u.get("unknown"):
            return [CheckResult(name, WARN, text + f"; {u['unknown']} sample(s) of unknown uncertainty", OFFICIAL)]
        return [CheckResult(name, PASS, text, OFFICIAL)]
    ph = record.phases.get("testing")
    if ph is None or ph.detail is None or ph.detail.power_begin_ns is None:
        return [CheckResult(name, WARN, "no testing power window to summarise the uncertainty over", OFFICIAL)]
    u = metrics.uncertainty_summary(metrics.source_frame(ph, record.primary_source), ph.detail.power_begin_ns, ph.detail.power_end_ns, limit)
    if u is None or not u.get("samples_known"):
        return [
            CheckResult(
                name,
                WARN,
                f"the primary source {record.primary_source} gives no per-sample uncertainty (no accuracy spec): MLPerf requires a meter whose uncertainty is checked below {limit:g} % per sample",
                OFFICIAL,
            )
        ]
    text = f"{record.primary_source}: mean {u['mean_pct']:.3f} %, max {u['max_pct']:.3f} % over {u['samples_known']} samples (limit {limit:g} % per sample)"
    if u["over_limit"]:
        return [CheckResult(name, FAIL, text + f"; {u['over_limit']} sample(s) above the limit: MLPerf treats each as an error (choose a smaller range or a better meter)" + quirk, OFFICIAL)]
    mlperf = metrics.MLPERF_UNCERTAINTY_LIMIT_PCT
    if limit > mlperf and u["max_pct"] > mlperf:
        # The profile allows a coarser meter (an MLPerf Tiny DC monitor is specified at 2 %):
        # within its own limit, but say plainly that MLPerf Inference's 1 % rule is not met.
        return [CheckResult(name, WARN, text + f"; within this profile's {limit:g} % but above MLPerf Inference's {mlperf:g} % per sample: not submission grade", OFFICIAL)]
    if u["samples_unknown"]:
        return [CheckResult(name, WARN, text + f"; {u['samples_unknown']} sample(s) without an uncertainty", OFFICIAL)]
    return [CheckResult(name, PASS, text, OFFICIAL)]


def _samples_vs_summary(frame: Any, w: Any) -> list[str]:
    """How a phase's spl.txt disagrees with PTD's own `Watts` summary of that run (avg, min, max
    over the valid samples; samples, errors, valid counts). PTD prints 6 decimals, as spl.txt
    does, so the mean of the file's values lies within 1e-6 W of PTD's average."""
    n = len(frame)
    watts = frame["watts"].to_numpy()
    ok = (frame["status"].to_numpy() == OK) & np.isfinite(watts)
    v = watts[ok]
    out = []
    if n != w.samples:
        out.append(f"{n} samples in the file, PTD counted {w.samples}")
    if len(v) != w.valid:
        out.append(f"{len(v)} valid samples in the file, PTD counted {w.valid}")
    if len(v):
        hi, lo, mean = float(v.max()), float(v.min()), float(metrics.sequential_sum(v) / len(v))
        if hi > w.max + 5e-7:
            out.append(f"a sample of {hi:.6f} W above PTD's maximum {w.max:.6f} W")
        if lo < w.min - 5e-7:
            out.append(f"a sample of {lo:.6f} W below PTD's minimum {w.min:.6f} W")
        if abs(mean - w.avg) > 1.5e-6 + 1e-9 * abs(w.avg):
            out.append(f"the samples average {mean:.6f} W, PTD's summary says {w.avg:.6f} W")
    return out


@check
def samples_vs_ptd_summary(record: RunRecord) -> list[CheckResult]:
    """Ours: spl.txt against PTD's own Watts summary of each run in server.json (the official
    checker hashes spl.txt but never compares it with what PTD said it measured; a file edited
    and re-hashed passes it)."""
    if record.kind != "mlperf":
        return []
    name = "samples vs PTD's summary"
    found, problems, fine = 0, [], []
    for mode, sub in (("ranging", "ranging"), ("testing", "run_1")):
        reply = metrics.ptd_phase_replies(record, mode).get("Watts")
        ph = record.phases.get(mode)
        if not reply or ph is None or ph.samples is None:
            continue
        w = parse_watts(reply)
        if w is None:
            problems.append(f"{sub}: PTD's Watts reply is unreadable: {reply!r}")
            continue
        found += 1
        bad = _samples_vs_summary(ph.samples, w)
        if bad:
            problems.append(f"{sub}/spl.txt: " + "; ".join(bad))
        else:
            fine.append(f"{sub}/spl.txt: {w.samples} samples ({w.valid} valid), average {w.avg:.6f} W, {w.min:.6f}..{w.max:.6f} W as PTD summarised them")
    if problems:
        return [CheckResult(name, FAIL, "; ".join(problems) + ": the samples are not the ones PTD measured (the official checker does not compare them with PTD's summary)")]
    if not found:
        return [CheckResult(name, SKIP, "server.json records no PTD Watts summary to compare spl.txt with (power-dev asked PTD for one from 2023 on)")]
    return [CheckResult(name, PASS, "; ".join(fine))]


def _emulated_sources(record: RunRecord) -> list[str]:
    """What says labconsole's own emulator produced the samples (its Identify reply, its serial)."""
    out = []
    if record.kind == "mlperf":
        msgs = (record.power_json.get("server.json") or {}).get("ptd_messages")
        for m in msgs if isinstance(msgs, list) else []:
            if isinstance(m, dict) and m.get("cmd") == "Identify":
                ident = ptd.parse_identify(str(m.get("reply", "")))
                if ident.emulator:
                    out.append(f"PTD's Identify reply says labconsole's emulator answered (OS={ident.os!r}, serial {ident.serial!r})")
        return out
    for s in record.environment.get("sources") or []:
        if not isinstance(s, dict):
            continue
        extra = (s.get("identity") or {}).get("extra") or {}
        if isinstance(extra, dict) and (extra.get("emulator") or extra.get("emulated")):
            out.append(f"source {s.get('name')}: its identity says it is labconsole's emulator ({(s.get('identity') or {}).get('serial') or extra.get('ptd_os') or 'emulated'})")
    return out


@check
def measurement_evidence(record: RunRecord) -> list[CheckResult]:
    """Ours: a session recorded through labconsole's own emulator is flagged (it still passes
    otherwise: the emulator profiles are how people learn the console)."""
    found = _emulated_sources(record)
    if found:
        return [CheckResult("measurement evidence", WARN, "; ".join(found) + ": its readings come from a load model, not a power analyzer: not measurement evidence")]
    return []


# --------------------------------------------------------------------------------------------
# clocks, calibration, scopes


@check
def clock_offset(record: RunRecord) -> list[CheckResult]:
    name = "clock offset"
    limit_ms = procedure_setting(record, "max_clock_offset_ms", 400.0)
    if record.kind == "mlperf":
        ntp = ntp_offsets_from_client_log(record.power_texts.get("client.log", []))
        client = record.power_json.get("client.json") or {}
        remote = time_exchange_offsets(client.get("messages") or []) if isinstance(client.get("messages"), list) else []
        if not ntp and not remote:
            missing = [x for x in ("power/client.log", "power/client.json") if x in record.missing]
            return [CheckResult(name, WARN, "no NTP offsets in client.log and no `time` exchanges in client.json" + (f" (missing: {', '.join(missing)})" if missing else ""))]
        parts, bad = [], False
        if ntp:
            worst_ntp = max(abs(o) for o, _ in ntp) * 1000
            bad |= worst_ntp > limit_ms
            parts.append(f"SUT vs NTP: {len(ntp)} reading(s) in client.log, largest |offset| {worst_ntp:.0f} ms")
        else:
            parts.append("no NTP readings in client.log")
        if remote:
            worst_r = max(remote) * 1000
            bad |= worst_r > limit_ms
            parts.append(f"SUT vs director: {len(remote)} `time` exchange(s), largest difference {worst_r:.0f} ms")
        text = "; ".join(parts) + f" (limit {limit_ms:g} ms, power-dev's CRITICAL_DIFFERENCE_TIME_MS)"
        return [CheckResult(name, FAIL if bad else (PASS if ntp and remote else WARN), text)]
    step = _calibration_step(record, "clock_offset")
    if step is None:
        return [CheckResult(name, WARN, "no clock offset was measured (calibration.json has no clock_offset step)")]
    if step.get("status") == SKIP:
        return [CheckResult(name, WARN, f"the clock offset step was skipped: {step.get('reason')}")]
    measured = step.get("measured") or {}
    offsets = {k: v for k, v in (measured.get("offsets_ms") or {}).items() if isinstance(v, (int, float))}
    if not offsets:
        return [CheckResult(name, WARN, f"no offset measured: {step.get('reason')}")]
    worst_ms = max(abs(v) for v in offsets.values())
    text = ", ".join(f"{k} {v:+.1f} ms" for k, v in offsets.items()) + f" (limit {limit_ms:g} ms)"
    if worst_ms > limit_ms:
        return [CheckResult(name, FAIL, text + ": LoadGen's UTC window and the samples' timestamps may not line up")]
    if step.get("status") == FAIL:
        return [CheckResult(name, FAIL, f"{text}; {step.get('reason')}")]
    return [CheckResult(name, PASS if step.get("status") == PASS else WARN, text + ("" if step.get("status") == PASS else f"; {step.get('reason')}"))]


def _calibration_step(record: RunRecord, key: str) -> dict | None:
    for s in (record.calibration or {}).get("steps") or []:
        if isinstance(s, dict) and s.get("key") == key:
            return s
    return None


@check
def calibration(record: RunRecord) -> list[CheckResult]:
    if record.kind == "mlperf":
        server = record.power_json.get("server.json") or {}
        ident = next((m.get("reply", "") for m in server.get("ptd_messages") or [] if isinstance(m, dict) and m.get("cmd") == "Identify"), "")
        cal = parse_identify(ident).calibration_date if ident else None
        return [CheckResult("calibration", SKIP, "MLPerf result folders carry no calibration record" + (f"; PTD's Identify calibration-date slot says {cal!r}" if cal else ""))]
    steps = (record.calibration or {}).get("steps")
    if not steps:
        return [CheckResult("calibration", WARN, "no calibration steps recorded (calibration.json missing or empty)")]
    parts, statuses = [], []
    for s in steps:
        st = s.get("status", "?")
        if st == SKIP and s.get("applicable") is False:
            continue  # not applicable to this bench (recorded with its reason in calibration.json)
        statuses.append(WARN if st == SKIP else st)  # a step the operator skipped is unverified
        if st != PASS:
            parts.append(f"{s.get('title', s.get('key'))}: {st}: {s.get('reason')}")
    # A step that failed or warned decides; otherwise the calibration passed (a status we do
    # not know, from a damaged file, is not held against it). No applicable step is a warning.
    verdict = worst([PASS, *statuses]) if statuses else WARN
    if verdict == PASS:
        return [CheckResult("calibration", PASS, f"all {len(steps)} calibration steps passed")]
    return [CheckResult("calibration", verdict, "; ".join(parts))]


@check
def scope_cross_check(record: RunRecord) -> list[CheckResult]:
    """A wall/system meter against the sum of the GPU, CPU and DRAM sources over the testing window."""
    whole = [s for s in record.sources if s.get("scope") in ("wall", "system")]
    parts = [s for s in record.sources if s.get("scope") in ("gpu", "cpu", "dram")]
    if not whole or not parts:
        return [CheckResult("scope cross-check", SKIP, "no wall/system source together with GPU/CPU/DRAM sources to compare")]
    rep = metrics.compute_report(record)
    srcs = rep.get("sources") or {}
    w = whole[0]["name"]
    prim = record.primary_source
    if any(s["name"] == prim for s in whole):
        w = prim
    whole_w = (srcs.get(w) or {}).get("avg_watts")
    part_w = {s["name"]: (srcs.get(s["name"]) or {}).get("avg_watts") for s in parts}
    if whole_w is None or (isinstance(whole_w, float) and math.isnan(whole_w)) or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in part_w.values()):
        return [CheckResult("scope cross-check", WARN, "a source has no valid samples in the testing window; cannot compare scopes")]
    total = sum(part_w.values())
    ratio = total / whole_w if whole_w > 0 else math.inf
    text = f"{' + '.join(part_w)} = {total:.2f} W is {ratio:.1%} of {w} {whole_w:.2f} W during testing"
    if ratio > 1.0:
        return [CheckResult("scope cross-check", WARN, text + ": the parts exceed the whole (overlapping scopes, a wrong scope in the profile, or a meter reading high)")]
    return [CheckResult("scope cross-check", PASS, text + " (the rest: PSU loss, fans, board, other devices)")]


@check
def acquisition(record: RunRecord) -> list[CheckResult]:
    """Every sample read is on disk or counted lost; sources given up on, gaps and reconnects."""
    acq = record.run_info.get("acquisition") if record.kind == "bundle" else None
    if not isinstance(acq, dict) or not isinstance(acq.get("sources"), dict):
        return []  # MLPerf folders, and bundles a crash left without counts (run status says so)
    lost, notes, worst_sev = 0, [], PASS
    for name, c in acq["sources"].items():
        if not isinstance(c, dict):
            continue
        gone = int(c.get("lost") or 0) + int(c.get("unrecorded") or 0)
        lost += gone
        if gone:
            notes.append(f"{name}: {gone} sample(s) read but not written")
        if c.get("failed"):
            worst_sev = WARN
            notes.append(f"{name} was given up on: {c['failed']}")
        gaps = [float(g) for g in (c.get("gap_s") or [])]
        if gaps or c.get("reconnects"):
            worst_sev = WARN
            notes.append(f"{name}: {len(gaps)} gap(s) ({sum(gaps):.1f} s without samples), {int(c.get('reconnects') or 0)} reconnect(s)")
    read = acq.get("samples_read")
    if lost:
        return [CheckResult("acquisition", FAIL, "; ".join(notes))]
    head = f"every sample read ({read}) was written" if read is not None else "no sample was lost"
    return [CheckResult("acquisition", worst_sev, head + ("; " + "; ".join(notes) if notes else ""))]
