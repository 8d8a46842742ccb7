"""MLPerf's power compliance checker, re-implemented: its eleven checks, in our own code.

mlcommons/power-dev compliance/check.py (= mlcommons/inference tools/submission/power/
power_checker.py) reads a power-dev session folder: power/client.json, server.json,
ptd_logs.txt, and the LoadGen logs and spl.txt of ranging/ and run_1/. Each check keeps the
official name and gives the official verdict under the rules of the round the folder was made
for (`rounds`: accepted PTD versions and source sets, v1.0's message list, 2021's PTD log
times). Where labconsole is deliberately stricter, that is a check of its own name (`PTD
warnings in the testing window`); where the official tool is wrong (it stops at its first
warning; its DST allowance takes power_begin past power_end; its duration warning skips the
-5 % rule) the check does what the rule means and its message says how the official tool
differs. Without client.json and server.json the official tool cannot run at all: every
check here then fails and says whether the file is missing or there but unreadable.

On our own bundles, checks whose inputs only power-dev produces are `skip` with the reason;
the time-window check and the meter check have bundle equivalents.
"""

from __future__ import annotations

import re
import uuid as _uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labconsole import safefile
from labconsole.bundle.reader import RunRecord
from labconsole.events import phase_spans
from labconsole.instruments.ptd import format_power_time, parse_power_time, parse_ptd_log
from labconsole.mlperf import metrics
from labconsole.mlperf.checks import rounds
from labconsole.mlperf.checks.registry import OFFICIAL, CheckResult, check
from labconsole.verdict import FAIL, PASS, SKIP, WARN
from labconsole.mlperf.powerdev import (
    COMMON_ERROR_RANGING,
    COMMON_ERROR_TESTING,
    PROTOCOL_CLIENT_RE,
    PROTOCOL_SERVER_RE,
    REPLY_GO,
    REPLY_RANGE_A,
    REPLY_RANGE_V,
    REPLY_STOP,
    REPLY_STOP_IDLE,
    REQUIRED_JSON_FIELDS,
    RESULT_FILES,
    SUPPORTED_DEVICE_TYPES,
    SUPPORTED_MODEL,
    TIME_DELTA_TOLERANCE_S,
    UNCERTAINTY_ACTIVATED_RE,
    UNCERTAINTY_OVER_LIMIT_RE,
    initial_range,
    parse_identify,
    sha1_file,
)

# Both wordings: PTD 1.9.x "Uncertainty 1.25% above 1.00% limit for the last measurement sample!" [fix v1.0],
# later "Uncertainty 1.03%, which is above 1.00% limit for the last sample!" (the checker's regex).
_UNCERTAINTY_ANY_RE = re.compile(r"Uncertainty \d+\.\d+%,? (?:which is )?above 1\.00% limit")

NOT_POWERDEV = "not applicable to a labconsole bundle: it is not a power-dev client/server session"


def _result(name: str, status: str, message: str) -> CheckResult:
    return CheckResult(name, status, message, OFFICIAL)


def _json_problem(record: RunRecord, which: str) -> str:
    """Why power/<which> gives nothing: missing, or there but unreadable (and why). A file that
    is present but cannot be read as expected is a failure that says so, never "missing"."""
    if not (record.path / "power" / which).exists():
        return f"power/{which} is missing (the official checker cannot run without it)"
    reason = next((m.split(" is not valid JSON ", 1)[-1] for m in record.missing if m.startswith(f"power/{which}:")), "")
    return f"power/{which} is present but unreadable as JSON{' ' + reason if reason else ''} (a byte-order mark or any edit breaks it; the official checker fails it too)"


def _session(record: RunRecord, which: str) -> tuple[dict | None, str | None]:
    """client.json / server.json, or the reason it cannot be used (missing, unreadable, or a required field absent)."""
    obj = record.power_json.get(which)
    if not obj:
        return None, _json_problem(record, which)
    absent = [f for f in REQUIRED_JSON_FIELDS if f not in obj]
    if absent:
        return None, f"power/{which} lacks the required field(s) {', '.join(absent)}"
    return obj, None


def _both(record: RunRecord) -> tuple[dict | None, dict | None, str | None]:
    c, why_c = _session(record, "client.json")
    s, why_s = _session(record, "server.json")
    why = "; ".join(x for x in (why_c, why_s) if x) or None
    return c, s, why


# --- 1, 2: sources checksum ---------------------------------------------------------------------
@check
def sources_checksum(record: RunRecord) -> list[CheckResult]:
    """Each side's power-dev source set must be one the round's checker accepts
    (sources_checksums.json, a list of sets; each side is compared with the list on its own)."""
    names = ("Check client sources checksum", "Check server sources checksum")
    if record.kind != "mlperf":
        return [_result(n, SKIP, NOT_POWERDEV) for n in names]
    rules = rounds.in_force(record)
    out = []
    sides = {label: _session(record, f"{label}.json") for label in ("client", "server")}
    for name, label, other in ((names[0], "client", "server"), (names[1], "server", "client")):
        mine, why = sides[label]
        if mine is None:
            out.append(_result(name, FAIL, why or f"power/{label}.json unusable"))
            continue
        src = mine.get("sources")
        if not isinstance(src, dict) or not src:
            out.append(_result(name, FAIL, f"{label}.json has no source checksums"))
            continue
        fp = rounds.sources_fingerprint(src)
        osrc = (sides[other][0] or {}).get("sources")
        side_note = ""
        if isinstance(osrc, dict) and osrc and osrc != src:
            # The official checker never compares the two sides: a client and a server from two
            # accepted releases both pass (v2.1 Dell XR12 did).
            diff = sorted(k for k in set(src) | set(osrc) if src.get(k) != osrc.get(k))
            side_note = f"; client and server ran different power-dev sources ({', '.join(diff[:6])}{'...' if len(diff) > 6 else ''}), which is allowed: each side is checked on its own"
        if rules.is_current:
            if src == rounds.CURRENT_SOURCES:
                out.append(_result(name, PASS, f"{len(src)} source files: the set today's sources_checksums.json accepts (power-dev c4b3ad8){side_note}"))
            else:
                changed = sorted(k for k in set(src) | set(rounds.CURRENT_SOURCES) if src.get(k) != rounds.CURRENT_SOURCES.get(k))
                out.append(_result(name, FAIL, f"{len(src)} source files, not the set today's checker accepts (differs in {', '.join(changed[:6])}{'...' if len(changed) > 6 else ''}): an edited or other power-dev release{side_note}"))
            continue
        seen = rounds.SOURCE_SETS_SEEN.get(fp, ())
        if rules.name in seen:
            out.append(_result(name, PASS, f"{len(src)} source files: a set {rules.checker} passed in published results (set {fp}){side_note}"))
        else:
            where = f" (seen in published {', '.join(seen)} results)" if seen else ""
            out.append(
                _result(
                    name,
                    WARN,
                    f"{len(src)} source files (set {fp}{where}); labconsole does not hold the list of sets {rules.checker} accepted:"
                    f" run that round's checker for this one{side_note}",
                )
            )
    return out


# --- 3: PTD commands and replies ------------------------------------------------------------------
def _ptd_blocks(msgs: list[dict]) -> list[list[dict]]:
    """ptd_messages split per analyzer (each PTD start begins with Hello)."""
    blocks: list[list[dict]] = []
    for m in msgs:
        if m.get("cmd") == "Hello" or not blocks:
            blocks.append([])
        blocks[-1].append(m)
    return blocks


@check
def ptd_messages(record: RunRecord) -> list[CheckResult]:
    name = "Check PTD commands and replies"
    if record.kind != "mlperf":
        return [_result(name, SKIP, NOT_POWERDEV + " (its PTD exchanges are checked by the ptd driver as they happen)")]
    s, why = _session(record, "server.json")
    if s is None:
        return [_result(name, FAIL, why or "server.json unusable")]
    msgs = s.get("ptd_messages")
    if not isinstance(msgs, list) or not msgs:
        return [_result(name, FAIL, "server.json has no ptd_messages")]
    msgs = [m if isinstance(m, dict) else {} for m in msgs]
    rules = rounds.in_force(record)
    fails: list[str] = []
    warns: list[str] = []
    seen: list[str] = []
    blocks = _ptd_blocks(msgs)
    for bi, block in enumerate(blocks, start=1):
        tag = f"analyzer {bi}: " if len(blocks) > 1 else ""
        ident = next((m.get("reply", "") for m in block if m.get("cmd") == "Identify"), "")
        if not ident:
            fails.append(tag + "there is no answer to the 'Identify' command")
        else:
            idr = parse_identify(ident)
            if idr.model not in SUPPORTED_MODEL:
                fails.append(tag + f"power meter {idr.model!r} is not one the checker supports ({', '.join(SUPPORTED_MODEL)})")
            seen.append(f"{tag}{idr.model}, PTD {idr.version or '(no version)'}")
            if idr.version not in rules.ptd_versions:
                later = [r.name for r in (*rounds.ROUNDS, rounds.CURRENT) if idr.version in r.ptd_versions]
                fails.append(
                    tag + f"PTD version {idr.version or '(none)'!r} is not one {rules.checker} accepts ({', '.join(rules.ptd_versions)})"
                    + (f"; it was accepted in round(s) {', '.join(later)}" if later else "")
                )
        stops = 0
        for m in block:
            cmd, reply = str(m.get("cmd", "")), str(m.get("reply", ""))
            expected = None
            if cmd.startswith("SR,A"):
                expected = REPLY_RANGE_A
            elif cmd.startswith("SR,V"):
                expected = REPLY_RANGE_V
            elif cmd.startswith("Go,1000,"):
                expected = REPLY_GO
            elif cmd == "Stop":
                expected = REPLY_STOP_IDLE if stops == 2 else REPLY_STOP
                stops += 1
            elif cmd.startswith("Go,"):
                fails.append(tag + f"{cmd!r}: MLPerf samples at 1000 ms ('Go,1000,0,<mark>')")
            if expected is not None and reply != expected:
                fails.append(tag + f"wrong reply for {cmd!r}: expected {expected!r}, got {reply!r}")
        # The initial ranges (RR's reply) must be restored when the session is done.
        rr_index = next((i for i, m in enumerate(block) if m.get("cmd") == "RR"), None)
        if rr_index is None:
            fails.append(tag + "no 'RR' (read ranges) command: the initial ranges are unknown")
            continue
        rr = str(block[rr_index].get("reply", ""))
        if rr_index != 2:
            warns.append(tag + f"'RR' is message {rr_index + 1}; the official checker reads the initial ranges from the 3rd message")
        init_a, init_v = initial_range(rr, 1), initial_range(rr, 3)
        if init_a is None or init_v is None:
            fails.append(tag + f"cannot read the initial ranges from {rr!r}")
            continue
        sr_a = [m.get("cmd") for m in block if str(m.get("cmd", "")).startswith("SR,A")]
        sr_v = [m.get("cmd") for m in block if str(m.get("cmd", "")).startswith("SR,V")]
        if not sr_a or sr_a[-1] != f"SR,A,{init_a}":
            fails.append(tag + f"the current range is not restored to its initial {init_a!r} (last: {sr_a[-1] if sr_a else 'none'!r})")
        elif not (len(sr_a) >= 3 and sr_a[2] == f"SR,A,{init_a}" or len(sr_a) >= 4 and sr_a[3] == f"SR,A,{init_a}"):
            warns.append(tag + "the current range is restored, but not as the 3rd or 4th SR,A command where the official checker looks for it")
        if not sr_v or sr_v[-1] != f"SR,V,{init_v}":
            fails.append(tag + f"the voltage range is not restored to its initial {init_v!r} (last: {sr_v[-1] if sr_v else 'none'!r})")
        elif not (len(sr_v) >= 3 and sr_v[2] == f"SR,V,{init_v}"):
            warns.append(tag + "the voltage range is restored, but not as the 3rd SR,V command where the official checker looks for it")
    head = "; ".join(seen) or "no analyzer identified"
    if fails:
        return [_result(name, FAIL, f"{head}: " + "; ".join(fails + warns))]
    if warns:
        return [_result(name, WARN, f"{head}: replies as expected; " + "; ".join(warns))]
    return [_result(name, PASS, f"{head}: every reply as expected, initial ranges restored")]


# --- 4, 5: UUID and session name ------------------------------------------------------------------
@check
def uuid_and_session(record: RunRecord) -> list[CheckResult]:
    names = ("Check UUID", "Check session name")
    if record.kind != "mlperf":
        return [_result(n, SKIP, NOT_POWERDEV) for n in names]
    c, s, why = _both(record)
    if c is None or s is None:
        return [_result(n, FAIL, why or "") for n in names]
    out = []
    problems = []
    ids = {}
    for side in ("client", "server"):
        try:
            a = _uuid.UUID(str((c.get("uuid") or {}).get(side)))
            b = _uuid.UUID(str((s.get("uuid") or {}).get(side)))
        except (ValueError, TypeError, AttributeError):
            problems.append(f"'{side}' uuid missing or not a UUID")
            continue
        ids[side] = a
        if a != b:
            problems.append(f"'{side} uuid' is not equal in client.json ({a}) and server.json ({b})")
    # ours: the `new` exchange carries both UUIDs; they must be the ones recorded
    new = next((m for m in c.get("messages") or [] if isinstance(m, dict) and str(m.get("cmd", "")).startswith("new,")), None)
    if new and ids:
        sent = str(new.get("cmd", "")).split(",")[-1]
        got = str(new.get("reply", "")).split(",")[-1]
        if "client" in ids and sent != str(ids["client"]):
            problems.append(f"the client sent uuid {sent} in 'new', not the recorded {ids['client']}")
        if "server" in ids and got != str(ids["server"]):
            problems.append(f"the server answered uuid {got} to 'new', not the recorded {ids['server']}")
    if problems:
        out.append(_result(names[0], FAIL, "; ".join(problems)))
    else:
        new_note = " (and match the 'new' exchange)" if new else " (client.json records no 'new' exchange to compare them with)"
        out.append(_result(names[0], PASS, f"client {ids.get('client')} and server {ids.get('server')} UUIDs agree{new_note}"))
    sc, ss = c.get("session_name"), s.get("session_name")
    if sc != ss:
        out.append(_result(names[1], FAIL, f"session name is not equal: client {sc!r}, server {ss!r}"))
        return out
    problems = []
    # ours: PTD's Go marks and the samples' Mark column belong to this session
    marks = [str(m.get("cmd", "")).split(",", 3)[-1] for m in s.get("ptd_messages") or [] if isinstance(m, dict) and str(m.get("cmd", "")).startswith("Go,")]
    for mark in marks:
        if mark not in (f"{sc}_ranging", f"{sc}_testing"):
            problems.append(f"PTD measurement mark {mark!r} is not {sc}_ranging/_testing")
    for sub, mode in (("run_1", "testing"), ("ranging", "ranging")):
        spl = record.path / sub / "spl.txt"
        if spl.exists():
            bad = _foreign_marks(spl, f"{sc}_{mode}")
            if bad:
                problems.append(f"{sub}/spl.txt has samples marked {', '.join(sorted(bad)[:3])!s}, not {sc}_{mode}")
    if problems:
        out.append(_result(names[1], FAIL, f"session {sc!r}: " + "; ".join(problems)))
    else:
        out.append(_result(names[1], PASS, f"session {sc!r} on both sides, in PTD's marks and in the samples' Mark column"))
    return out


def _foreign_marks(path, expected: str) -> set[str]:
    out = set()
    try:  # the reader has named a spl.txt it could not read; this check has nothing to add
        text = safefile.read_text(path, "samples", root=Path(path).parent.parent, errors="replace")
    except ValueError:
        return out
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):  # universal newlines, as open() read it
        if not line.startswith("Time"):
            continue
        parts = line.split(",")
        if "Mark" in parts:
            mark = parts[parts.index("Mark") + 1] if parts.index("Mark") + 1 < len(parts) else ""
            if mark != expected:
                out.add(mark)
    return out


# --- 6: time difference ------------------------------------------------------------------------------
@check
def time_difference(record: RunRecord) -> list[CheckResult]:
    name = "Check time difference"
    if record.kind != "mlperf":
        return _bundle_windows(record)
    c, s, why = _both(record)
    if c is None or s is None:
        return [_result(name, FAIL, why or "")]
    fails, warns, info = [], [], []
    phases_c, phases_s = c.get("phases") or {}, s.get("phases") or {}
    for mode in ("ranging", "testing"):
        pc, ps = phases_c.get(mode), phases_s.get(mode)
        if not isinstance(pc, list) or not isinstance(ps, list):
            fails.append(f"no {mode} phases in client.json/server.json")
            continue
        if len(pc) != len(ps):
            fails.append(f"phases amount is not equal for {mode} ({len(pc)} vs {len(ps)})")
            continue
        worst_d = 0.0
        for i, (a, b) in enumerate(zip(pc, ps)):
            d = abs(float(a[0]) - float(b[0]))
            worst_d = max(worst_d, d)
            if d > TIME_DELTA_TOLERANCE_S:
                fails.append(f"{mode} phase {i + 1}: client and server stamps differ by {d * 1000:.0f} ms (limit {TIME_DELTA_TOLERANCE_S * 1000:.0f} ms)")
        info.append(f"{mode} client/server phase stamps within {worst_d * 1000:.0f} ms")
    durations = {}
    for mode, sub in (("ranging", "ranging"), ("testing", "run_1")):
        ph = record.phases.get(mode)
        pc = phases_c.get(mode)
        if ph is not None and ph.detail is not None and ph.detail.power_begin_ns is not None:
            b, e = ph.detail.power_begin_ns / 1e9, ph.detail.power_end_ns / 1e9
        else:
            # A log our reader rejects may still give the official checker its two times (it
            # reads only the lines holding power_begin and power_end): judge what it would see.
            why = ph.detail_problem(f"{sub}/mlperf_log_detail.txt") if ph else f"{sub}/ is missing"
            fails.append(f"cannot check the {mode} LoadGen window: {why}")
            window = _official_window(record.path / sub / "mlperf_log_detail.txt")
            if window is None:
                continue
            b, e = window
        begin_text, end_text = format_power_time(int(b * 1e9)), format_power_time(int(e * 1e9))
        b, e = b + _loadgen_shift_ns(record) / 1e9, e + _loadgen_shift_ns(record) / 1e9  # 2021 rules: local time
        durations[mode] = e - b
        if not isinstance(pc, list) or len(pc) < 3:
            continue
        lo, hi = float(pc[1][0]), float(pc[2][0])
        inside = lo < b < hi and lo < e < hi
        dst = lo < b - 3600 < hi and lo < e - 3600 < hi
        # The official checker's DST workaround accepts power_begin and power_end each on its
        # own, either in the phase or 1 h late: a window with one end moved passes it.
        official_ok = (lo < b < hi or lo < b - 3600 < hi) and (lo < e < hi or lo < e - 3600 < hi)
        if not b < e:
            fails.append(
                f"the {mode} LoadGen window is empty or reversed: power_begin {begin_text} is not before power_end {end_text}"
                + (" (the official checker passes this: its DST workaround accepts each end on its own, 1 h late, and its duration warning then stops it before the -5 % rule)" if official_ok else "")
            )
        elif inside:
            info.append(f"{mode} LoadGen window inside the client's phase")
        elif dst:
            warns.append(f"the {mode} LoadGen window lies inside the client's phase only 1 h earlier: accepted by the official checker's DST workaround, but the clocks disagree by an hour")
        else:
            fails.append(
                f"the {mode} LoadGen window {begin_text}..{end_text} is not within the client's {mode} phase"
                f" {format_power_time(int(lo * 1e9))}..{format_power_time(int(hi * 1e9))} (UTC)"
                + (" (the official checker passes this: its DST workaround accepts each end on its own, 1 h late)" if official_ok else "")
            )
    duration_warning = False
    if "ranging" in durations and "testing" in durations and durations["ranging"] > 0:
        diff = (durations["ranging"] - durations["testing"]) / durations["ranging"]
        if diff > 0.5:
            duration_warning = True
            warns.append(
                f"the testing run ({durations['testing']:.2f} s) is {diff:.0%} shorter than ranging ({durations['ranging']:.2f} s); they should run the same workload"
                " (the official checker warns above 50 % but its message says '5 percent')"
            )
    # The last part of the official check: testing power not more than 5 % below ranging, with
    # its rounding; its duration warning stops it before this rule ('ranging vs testing' applies it anyway).
    delta = metrics.checker_ranging_delta_pct(record)
    if delta is not None and not delta > -5 and not duration_warning:
        fails.append(f"testing average power is {delta:+.2f} % against ranging: more than 5 % below it")
    tail = " (the -5 % power rule of this check is also reported, unrounded, as 'ranging vs testing')"
    if fails:
        return [_result(name, FAIL, "; ".join(fails + warns) + tail)]
    if warns:
        return [_result(name, WARN, "; ".join(info + warns) + tail)]
    return [_result(name, PASS, "; ".join(info) + tail)]


_OFFICIAL_TIME_RE = re.compile(r"(\d*-\d*-\d* \d*:\d*:\d*\.\d*)")


def _official_window(path) -> tuple[float, float] | None:
    """power_begin, power_end (epoch s) as compliance/check.py reads them: the first line holding
    each word (any case), its first MM-DD-YYYY HH:MM:SS.mmm. None where it would fail to."""
    begin = end = None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                low = line.lower()
                key = "b" if "power_begin" in low else "e" if "power_end" in low else None
                if key is None:
                    continue
                m = _OFFICIAL_TIME_RE.search(line)
                if not m:
                    return None
                t = parse_power_time(m.group(1)) / 1e9
                if key == "b":
                    begin = t
                else:
                    end = t
                if begin is not None and end is not None:
                    return begin, end
    except (OSError, ValueError):
        return None
    return None


def _bundle_windows(record: RunRecord) -> list[CheckResult]:
    """Our equivalent: each LoadGen window lies inside the phase the console recorded."""
    name = "Check time difference"
    spans = phase_spans(record.events())  # the same spans `export --mlperf` writes as power-dev's phases
    fails, warns, info = [], [], []
    durations = {}
    for mode in ("ranging", "testing"):
        ph = record.phases.get(mode)
        if ph is None or ph.detail is None or ph.detail.power_begin_ns is None:
            why = ph.detail_problem() if ph else f"no {mode} phase"
            (warns if mode == "ranging" else fails).append(f"no {mode} LoadGen window ({why})")
            continue
        b, e = ph.detail.power_begin_ns, ph.detail.power_end_ns
        durations[mode] = (e - b) / 1e9
        span = spans.get(mode)
        if not span or span[1] is None:
            warns.append(f"the timeline has no complete {mode} phase to compare the LoadGen window with")
            continue
        if span[0] < b and e < span[1]:
            info.append(f"{mode} LoadGen window inside the recorded phase ({(b - span[0]) / 1e9:.2f} s after its start, {(span[1] - e) / 1e9:.2f} s before its end)")
        else:
            fails.append(f"the {mode} LoadGen window {ph.detail.power_begin}..{ph.detail.power_end} is not inside the recorded phase: host and LoadGen clocks disagree")
    if "ranging" in durations and "testing" in durations and durations["ranging"] > 0:
        diff = (durations["ranging"] - durations["testing"]) / durations["ranging"]
        if diff > 0.5:
            warns.append(f"the testing window ({durations['testing']:.2f} s) is {diff:.0%} shorter than ranging ({durations['ranging']:.2f} s)")
    msg = "; ".join(fails + warns + info) or "nothing to compare"
    return [_result(name, FAIL if fails else WARN if warns else PASS, msg)]


# --- 7: client/server messages --------------------------------------------------------------------------
@check
def client_server_messages(record: RunRecord) -> list[CheckResult]:
    name = "Check client server messages"
    if record.kind != "mlperf":
        return [_result(name, SKIP, NOT_POWERDEV)]
    c, s, why = _both(record)
    if c is None or s is None:
        return [_result(name, FAIL, why or "")]
    mc, ms = c.get("messages") or [], s.get("messages") or []
    if not isinstance(mc, list) or not isinstance(ms, list):
        return [_result(name, FAIL, "client.json or server.json 'messages' is not a list")]
    mc = [m if isinstance(m, dict) else {} for m in mc]
    ms = [m if isinstance(m, dict) else {} for m in ms]
    rules = rounds.in_force(record)
    note = ""
    if rules.client_misses_last_upload and len(ms) == len(mc) + 1 and str(ms[-1].get("cmd", "")).endswith(",upload,client.json"):
        # v1.0's protocol: the client uploaded client.json after writing it, so its own list
        # lacks that last exchange, and the round's checker expected one message fewer.
        note = f"; the server's last message ({ms[-1].get('cmd')!r}) came after client.json was written, as {rules.checker} expected"
        ms = ms[:-1]
    if len(mc) != len(ms):
        upload = " (the client's list lacks the server's final upload of client.json: the v1.0 protocol, which that round's checker accepted)" if len(ms) == len(mc) + 1 and str(ms[-1].get("cmd", "")).endswith(",upload,client.json") else ""
        return [_result(name, FAIL, f"client commands list length ({len(mc)}) should equal the server's ({len(ms)}) under {rules.checker}{upload}")]
    if not mc:
        return [_result(name, FAIL, "no client/server messages recorded")]
    for i, (a, b) in enumerate(zip(mc, ms)):
        if a.get("cmd") != b.get("cmd"):
            return [_result(name, FAIL, f"commands {i} differ: server {b.get('cmd')!r}, client {a.get('cmd')!r}")]
        if a.get("cmd") != "time" and a.get("reply") != b.get("reply"):
            return [_result(name, FAIL, f"replies to {a.get('cmd')!r} differ: server {b.get('reply')!r}, client {a.get('reply')!r}")]
    mcv = PROTOCOL_CLIENT_RE.search(str(ms[0].get("cmd", "")))
    msv = PROTOCOL_SERVER_RE.search(str(ms[0].get("reply", "")))
    if not mcv or not msv:
        return [_result(name, FAIL, f"the first exchange is not the power-dev handshake: {ms[0].get('cmd')!r} -> {ms[0].get('reply')!r}")]
    if mcv.group(1) != msv.group(1):
        return [_result(name, FAIL, f"client.py protocol v{mcv.group(1)} is not server.py v{msv.group(1)}")]
    return [_result(name, PASS, f"{len(mc)} messages identical on both sides (replies to 'time' excepted), protocol v{mcv.group(1)}{note}")]


# --- 8: results checksum -------------------------------------------------------------------------------
@check
def results_checksum(record: RunRecord) -> list[CheckResult]:
    name = "Check results checksum"
    if record.kind != "mlperf":
        return [_result(name, SKIP, "labconsole bundles are checked by their SHA-256 manifest (see 'manifest')")]
    c, s, why = _both(record)
    if c is None or s is None:
        return [_result(name, FAIL, why or "")]
    rc = {k: v for k, v in (c.get("results") or {}).items() if k in RESULT_FILES}
    rs = {k: v for k, v in (s.get("results") or {}).items() if k in RESULT_FILES}
    fails, absent, ok = [], [], []
    for k in sorted(set(rc) & set(rs)):
        if rc[k] != rs[k]:
            fails.append(f"{k}: client.json says {rc[k]}, server.json {rs[k]}")
    recorded = {**rc, **rs}
    for k in RESULT_FILES:
        path = record.path / k
        on_disk = path.is_file()
        if k not in recorded:
            if on_disk:
                fails.append(f"{k}: on disk but in neither client.json nor server.json results")
            else:
                fails.append(f"{k}: required, absent from the results lists and from disk")
            continue
        if not on_disk:
            absent.append(k)
            continue
        got = sha1_file(path)
        if got != recorded[k]:
            fails.append(f"{k}: SHA-1 {got} on disk, {recorded[k]} recorded (the file was changed: line endings? re-encoding?)")
        else:
            ok.append(k)
    text = f"{len(ok)} file(s) match their recorded SHA-1"
    if fails:
        return [_result(name, FAIL, text + "; " + "; ".join(fails) + (f"; absent: {', '.join(absent)}" if absent else ""))]
    if absent:
        return [_result(name, FAIL, text + f"; required but absent from this folder: {', '.join(absent)} (the official checker fails a folder with absent files too; a copy trimmed of them cannot be verified)")]
    return [_result(name, PASS, text + ", and client.json and server.json agree")]


# --- 9: PTD log errors and warnings -----------------------------------------------------------------------
@dataclass
class _PtdLog:
    lines: list  # instruments.ptd.PtdLogLine
    ranging: tuple[int, int]  # PTD's ranging run: Go with the ranging mark .. Completed test (PTD time)
    testing: tuple[int, int]  # LoadGen's testing window (UTC; 2021 rules: + client.json timezone)
    shift_ns: int  # added to PTD log times before comparing them with LoadGen's (2021 rules: server.json timezone)


def _read_ptd_log(record: RunRecord) -> tuple[_PtdLog | None, str | None]:
    """ptd_logs.txt with the ranging run found, or why the official checker cannot read it (a failure)."""
    lines = record.power_texts.get("ptd_logs.txt")
    if lines is None:
        unreadable = next((m for m in record.missing if m.startswith("power/ptd_logs.txt: ")), None)
        why = unreadable or "power/ptd_logs.txt is missing"
        return None, f"{why}: it is required (the official checker fails without it)"
    s, why = _session(record, "server.json")
    if s is None:
        return None, (why or "") + ": the session name (ranging mark) is unknown"
    testing = record.phases.get("testing")
    if testing is None or testing.detail is None or testing.detail.power_begin_ns is None:
        why = testing.detail_problem("run_1/mlperf_log_detail.txt (the testing window)") if testing else "run_1/ (the testing window) is missing"
        return None, f"{why}: PTD's warnings cannot be placed in the testing window (the official checker reads only the power_begin/power_end lines and may pass such a log; 'Check time difference' judges the window)"
    log = parse_ptd_log(lines)
    mark = f"{s.get('session_name')}_ranging"
    start = stop = None
    for ln in log:
        if ln.wall_ns is None:
            continue
        if start is None and ln.message == f": Go with mark {mark!r}":
            start = ln.wall_ns
        elif start is not None and ln.message == ": Completed test":
            stop = ln.wall_ns
            break
    if start is None or stop is None:
        return None, f"cannot find the ranging run in ptd_logs.txt (': Go with mark {mark!r}' ... ': Completed test')"
    lg = _loadgen_shift_ns(record)
    return _PtdLog(log, (start, stop), (testing.detail.power_begin_ns + lg, testing.detail.power_end_ns + lg), _timezone_ns(record, "server.json")), None


def _timezone_ns(record: RunRecord, which: str) -> int:
    """The 2021 rules' correction of a local time to UTC: + `timezone` (seconds west of UTC) of
    client.json (LoadGen's times) or server.json (PTD's log); 0 under later rules."""
    if not rounds.in_force(record).local_times:
        return 0
    try:
        return int(float((record.power_json.get(which) or {}).get("timezone") or 0) * 1e9)
    except (TypeError, ValueError):
        return 0


def _loadgen_shift_ns(record: RunRecord) -> int:
    return _timezone_ns(record, "client.json")


def _is_over_limit(msg: str) -> bool:
    return bool(UNCERTAINTY_OVER_LIMIT_RE.search(msg))


@check
def ptd_log_messages(record: RunRecord) -> list[CheckResult]:
    """The official verdict: PTD's errors outside the ranging run fail; its WARNING lines count
    only inside power_begin+800 s .. power_end-800 s (its 800 ms tolerance added to seconds), so
    on a 600 s run none do. What it skips that way is our own check, 'PTD warnings in the
    testing window'. Where the official tool is wrong (it stops at its first warning, so an
    error after it goes unseen) we keep scanning and say so."""
    name = "Check errors and warnings from PTD logs"
    if record.kind != "mlperf":
        return [_result(name, SKIP, NOT_POWERDEV)]
    plog, why = _read_ptd_log(record)
    if plog is None:
        return [_result(name, FAIL, why or "")]
    rules = rounds.in_force(record)
    log = plog.lines
    start, stop = plog.ranging
    fails, warns = [], []
    first_warning: int | None = None
    act = next((ln for ln in log if UNCERTAINTY_ACTIVATED_RE.search(ln.text)), None)
    if act is None:
        fails.append("'Uncertainty checking for Yokogawa... is activated' is not in ptd_logs.txt")
    elif act.wall_ns is None:
        fails.append("the 'Uncertainty checking ... is activated' line has no timestamp")
    elif not act.wall_ns < start:
        fails.append("uncertainty checking was activated after the ranging run started")
    tb, te = plog.testing
    official_lo, official_hi = tb + 800 * 10**9, te - 800 * 10**9  # its 800 "ms" added to seconds
    for ln in log:
        body = ln.text
        if "ERROR:" in body and ln.wall_ns is not None:
            msg = body.split("ERROR:", 1)[1].strip()
            if msg in COMMON_ERROR_TESTING:
                warns.append(f"line {ln.lineno}: ERROR {msg!r}, accepted (treated as a warning)")
                first_warning = first_warning or ln.lineno
            elif not start < ln.wall_ns < stop:
                fails.append(f"line {ln.lineno}: {body.strip()!r} outside the ranging run" + (f" (the official checker stops at its first warning, line {first_warning}, and misses this)" if first_warning else ""))
            elif not any(msg.startswith(c) for c in COMMON_ERROR_RANGING):
                warns.append(f"line {ln.lineno}: uncommon error during ranging {msg!r}")
                first_warning = first_warning or ln.lineno
        elif "WARNING:" in body and ln.wall_ns is not None:
            t = ln.wall_ns + plog.shift_ns
            if not official_lo < t < official_hi:
                continue
            msg = body.split("WARNING:", 1)[1].strip()
            if rules.uncertainty_is_error and _is_over_limit(msg):
                fails.append(f"line {ln.lineno}: {msg!r} during the testing run")
            else:
                warns.append(f"line {ln.lineno}: warning during the testing run: {msg!r}")
                first_warning = first_warning or ln.lineno
    shown_f = fails[:5] + ([f"... {len(fails) - 5} more"] if len(fails) > 5 else [])
    shown_w = warns[:5] + ([f"... {len(warns) - 5} more"] if len(warns) > 5 else [])
    slip = " (WARNING lines counted as the official checker counts them, from power_begin+800 s to power_end-800 s; see 'PTD warnings in the testing window')"
    if fails:
        return [_result(name, FAIL, "; ".join(shown_f + shown_w) + slip)]
    if warns:
        return [_result(name, WARN, "; ".join(shown_w) + " (the official checker stops at the first warning; all are listed here)" + slip)]
    return [_result(name, PASS, f"uncertainty checking active before ranging; errors only the usual ones during ranging ({len(log)} lines)" + slip)]


@check
def ptd_warnings_in_testing(record: RunRecord) -> list[CheckResult]:
    """Ours, stricter than the official checker: every PTD WARNING line inside the testing
    window (power_begin-0.8 s .. power_end+0.8 s), which the official tool skips through its
    800 ms-as-800 s slip. A sample above 1 % uncertainty fails under rules that make it an
    error (2023-04 on; both PTD wordings), and warns under older rounds' rules."""
    name = "PTD warnings in the testing window"
    if record.kind != "mlperf":
        return []
    plog, why = _read_ptd_log(record)
    if plog is None:
        return [CheckResult(name, FAIL if "ptd_logs.txt" in (why or "") else WARN, why or "")]
    rules = rounds.in_force(record)
    tb, te = plog.testing
    tol = int(TIME_DELTA_TOLERANCE_S * 1e9)
    over, other = [], []
    for ln in plog.lines:
        if "WARNING:" not in ln.text or ln.wall_ns is None:
            continue
        if not tb - tol < ln.wall_ns + plog.shift_ns < te + tol:
            continue
        msg = ln.text.split("WARNING:", 1)[1].strip()
        (over if _UNCERTAINTY_ANY_RE.search(msg) else other).append(f"line {ln.lineno}: {msg!r}")
    stricter = " (stricter than the official checker, which counts WARNING lines only from power_begin+800 s to power_end-800 s: none on a run shorter than 1600 s)"
    if not over and not other:
        return [CheckResult(name, PASS, f"no PTD warnings between power_begin and power_end (±{TIME_DELTA_TOLERANCE_S:g} s)")]
    parts = []
    if over:
        parts.append(f"{len(over)} sample(s) above PTD's 1.00 % uncertainty limit: " + "; ".join(over[:3]) + ("; ..." if len(over) > 3 else ""))
    if other:
        parts.append(f"{len(other)} other warning(s): " + "; ".join(other[:3]) + ("; ..." if len(other) > 3 else ""))
    if over and rules.uncertainty_is_error:
        return [CheckResult(name, FAIL, "; ".join(parts) + f": an error under {rules.checker}" + stricter)]
    if over:
        parts.append(f"{rules.checker} did not yet treat them as errors (that came in 2023-04)")
    return [CheckResult(name, WARN, "; ".join(parts) + stricter)]


# --- 10: PTD configuration --------------------------------------------------------------------------------
@check
def ptd_config(record: RunRecord) -> list[CheckResult]:
    name = "Check PTD configuration"
    if record.kind != "mlperf":
        return _bundle_meter(record)
    s, why = _session(record, "server.json")
    if s is None:
        return [_result(name, FAIL, why or "")]
    cfg = s.get("ptd_config")
    if cfg is None:
        return [_result(name, FAIL, "server.json has no ptd_config")]
    note = ""
    rules = rounds.in_force(record)
    fails, seen = [], []
    if isinstance(cfg, dict):
        cfg = [cfg]
        if rules.ptd_config_list:
            fails.append(f"ptd_config is one object, the pre-2024 single-analyzer form: {rules.checker} reads a list of analyzers (power-dev c052937, 2024-09) and fails it")
        else:
            note = f" (the pre-2024 single-analyzer form, as {rules.checker} read it; today's checker expects a list and fails it)"
    elif not isinstance(cfg, list):
        return [_result(name, FAIL, f"server.json ptd_config is a {type(cfg).__name__}, not a list of analyzers")]
    models = [parse_identify(str(m.get("reply", ""))).model for m in s.get("ptd_messages") or [] if isinstance(m, dict) and m.get("cmd") == "Identify"]
    for i, an in enumerate(cfg):
        if not isinstance(an, dict):
            fails.append(f"analyzer {i + 1}: not a configuration object")
            continue
        dev = an.get("device_type")
        seen.append(str(dev))
        if dev not in SUPPORTED_DEVICE_TYPES:
            fails.append(f"device type {dev} is not supported (supported: {', '.join(str(d) for d in sorted(SUPPORTED_DEVICE_TYPES))})")
            continue
        if dev == 77:
            cmd = an.get("command") or []
            chans = cmd[cmd.index("-c") + 1] if "-c" in cmd and cmd.index("-c") + 1 < len(cmd) else ""
            if not (len(str(chans).split(",")) == 2 and an.get("channel") and len(an["channel"]) == 2):
                fails.append("expected multichannel mode ('-c a,b' and two channels) for YokogawaWT330_multichannel")
        if i < len(models) and models[i] in SUPPORTED_MODEL and SUPPORTED_MODEL[models[i]] != dev and not fails:
            fails.append(f"device type {dev} does not match the identified meter {models[i]} (type {SUPPORTED_MODEL[models[i]]})")
    if fails:
        return [_result(name, FAIL, "; ".join(fails) + note)]
    return [_result(name, PASS, f"device type(s) {', '.join(seen)} supported" + note)]


def _bundle_meter(record: RunRecord) -> list[CheckResult]:
    """Our equivalent: is the primary source a meter MLPerf accepts (a Yokogawa through PTD)?"""
    name = "Check PTD configuration"
    found = next((s for s in (record.environment.get("sources") or []) if isinstance(s, dict) and s.get("name") == record.primary_source), None)
    ident = (found or {}).get("identity") or {}
    model = str(ident.get("model", ""))
    driver = str((found or {}).get("driver", ""))
    if not found:
        return [_result(name, WARN, f"no identity recorded for the primary source {record.primary_source} (environment.json)")]
    rules = rounds.in_force(record)
    extra = ident.get("extra") if isinstance(ident.get("extra"), dict) else {}
    version = str(extra.get("ptd_version") or "")
    analyzers = extra.get("analyzers")
    if isinstance(analyzers, list) and analyzers:  # several analyzers for one SUT: each must be accepted
        results = [_meter_model(name, f"{record.primary_source} analyzer {i}", str((a or {}).get("model", "")), driver, rules, version)
                   for i, a in enumerate(analyzers, start=1)]
        worst = next((r for r in results if r.status != PASS), results[0])
        return [_result(name, worst.status, "; ".join(r.message for r in results))]
    return [_meter_model(name, f"primary source {record.primary_source}", model, driver, rules, version)]


def _meter_model(name: str, what: str, model: str, driver: str, rules, version: str) -> CheckResult:
    compact = "Yokogawa" + model.replace(" ", "").replace("-", "").upper().replace("YOKOGAWA", "")
    known = {k.upper(): k for k in SUPPORTED_MODEL}
    match = known.get(compact.upper()) or (model if model in SUPPORTED_MODEL else None)
    if match and version and version not in rules.ptd_versions:
        # read through a PTDaemon whose version the checker of these rules rejects
        return _result(name, WARN, f"{what}: {model} through PTD {version}, which {rules.checker} does not accept ({', '.join(rules.ptd_versions)}): not submission grade")
    if match:
        through = f" through PTD {version}" if version else ""
        return _result(name, PASS, f"{what}: {model} ({driver}){through} is a meter model MLPerf accepts (device type {SUPPORTED_MODEL[match]}); submissions still need PTD {', '.join(rules.ptd_versions)} and power-dev")
    return _result(name, WARN, f"{what}: {model or 'unknown model'} ({driver}) is not a meter MLPerf accepts ({', '.join(SUPPORTED_MODEL)}): not submission grade")


# --- 11: debug ------------------------------------------------------------------------------------------------
@check
def debug_disabled(record: RunRecord) -> list[CheckResult]:
    name = "Check debug is disabled on server-side"
    if record.kind != "mlperf":
        return [_result(name, SKIP, NOT_POWERDEV)]
    s, why = _session(record, "server.json")
    if s is None:
        return [_result(name, FAIL, why or "")]
    dbg: Any = s.get("debug", False)
    if dbg is False:
        return [_result(name, PASS, "the server did not run in debug mode")]
    return [_result(name, FAIL, f"the server ran in debug mode (debug: {dbg!r}; MLPP_DEBUG shortens PTD's settle times to 0.5 s)")]

