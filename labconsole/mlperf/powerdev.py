"""The artefacts of MLPerf's power workflow (mlcommons/power-dev + SPEC PTDaemon), read and written.

What the official tools expect, in one place: the compliance checker's constants
(mlcommons/power-dev: compliance/check.py, byte-identical to mlcommons/inference:
tools/submission/power/power_checker.py), the PTD replies it demands, its reading of Identify
and RR, PTD's replies as recorded in server.json, client.log's NTP lines, and the `spl.txt`
sample line. The PTD protocol itself (reply layout, sample and log lines, the time format) is
`labconsole.instruments.ptd`. `mlperf.checks.official` uses this module to re-implement the
checker; `mlperf.export` uses it to write the same formats.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from labconsole import safefile
from labconsole.instruments import ptd

# --- the checker's constants (compliance/check.py at power-dev HEAD c4b3ad8) ------------------
SUPPORTED_VERSION = ("1.11.1",)  # earlier rounds' lists: labconsole.mlperf.checks.rounds
SUPPORTED_MODEL = {
    "YokogawaWT210": 8,
    "YokogawaWT500": 35,
    "YokogawaWT500_multichannel": 48,
    "YokogawaWT310": 49,
    "YokogawaWT310E": 49,
    "YokogawaWT330": 52,
    "YokogawaWT330E": 52,
    "YokogawaWT330_multichannel": 77,
    "YokogawaWT210_DC": 508,
    "YokogawaWT310_DC": 549,
    "YokogawaWT330_DC": 586,
}
SUPPORTED_DEVICE_TYPES = frozenset(SUPPORTED_MODEL.values())
# The replies the checker demands to the letter (check_reply): PTD's, Go at MLPerf's 1 s without ramp-up.
REPLY_RANGE_A = ptd.range_changed_reply("A")
REPLY_RANGE_V = ptd.range_changed_reply("V")
REPLY_GO = ptd.go_reply(1000)
REPLY_STOP = ptd.STOP_REPLY
REPLY_STOP_IDLE = ptd.NO_MEASUREMENT_REPLY
COMMON_ERROR_RANGING = (
    "Can't evaluate uncertainty of this sample!",
    "Bad watts reading nan from ",
    "Bad amps reading nan from ",
    "Bad pf reading nan from ",
    "Bad volts reading nan from ",
    "Current appears to be too high for set range",
)
COMMON_ERROR_TESTING = ("USB.",)
UNCERTAINTY_OVER_LIMIT_RE = re.compile(r"Uncertainty \d+.\d+%, which is above 1.00% limit for the last sample!")
UNCERTAINTY_ACTIVATED_RE = re.compile(r"Uncertainty checking for Yokogawa\S+ is activated")
TIME_DELTA_TOLERANCE_S = 0.8  # client vs server phase stamps (TIME_DELTA_TOLERANCE = 800 "ms")
CRITICAL_CLOCK_OFFSET_S = 0.4  # power-dev time_sync.CRITICAL_DIFFERENCE_TIME_MS
REQUIRED_JSON_FIELDS = ("version", "timezone", "modules", "sources", "messages", "uuid", "session_name", "results", "phases")
# Files whose SHA-1 the checker compares (RESULT_PATHS without client.json/server.json).
RESULT_FILES = (
    "power/client.log",
    "power/ptd_logs.txt",
    "power/server.log",
    "ranging/mlperf_log_detail.txt",
    "ranging/mlperf_log_summary.txt",
    "ranging/spl.txt",
    "run_1/mlperf_log_detail.txt",
    "run_1/mlperf_log_summary.txt",
    "run_1/spl.txt",
)
REQUIRED_POWER_FILES = ("client.json", "client.log", "ptd_logs.txt", "server.json", "server.log")
PROTOCOL_CLIENT_RE = re.compile(r"mlcommons\/power client v(\d+)$")
PROTOCOL_SERVER_RE = re.compile(r"mlcommons\/power server v(\d+)$")

_NTP_LINE_RE = re.compile(r"NTP:offset = (-?\d+(?:\.\d+)?) s, delay = (-?\d+(?:\.\d+)?) s")


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with safefile.open_regular(path) as fh:  # never blocks on a FIFO or reads a device
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- PTD replies as recorded in server.json ------------------------------------------------------
# The replies' layout is the protocol's (labconsole.instruments.ptd). What is MLPerf's here: the
# checker's own reading of Identify, and a recorded reply is evidence to report on, not a live
# exchange: surrounding blanks ignored, numbers read as float() reads them (PTD's printf may write
# nan), and None for a reply that cannot be read rather than an error.
@dataclass
class IdentifyReply:
    model: str
    version: str  # e.g. "1.10.0" (up to the first '-' after "version=", as the checker reads it)
    raw: str
    calibration_date: str | None = None  # PTD's calibration-date slot ("no_cal_date" when unset)
    instrument: str | None = None  # the analyzer's own *IDN? answer, e.g. "YOKOGAWA;WT310E;C2YK12023V;F1.04"


def parse_identify(reply: str) -> IdentifyReply:
    """Identify as compliance/check.py reads it (first field, `version=` up to the first '-');
    never fails, since the checker reports what it finds."""
    fields = reply.split(",")
    m = re.search(r"(?<=version=)(.+?)-", reply)
    cal = next((f for f in fields if f == ptd.NO_CAL_DATE or re.fullmatch(r"\d{4}-\d\d-\d\d|\d\d-\d\d-\d{4}", f)), None)
    instrument = fields[-1] if fields and ";" in fields[-1] else None
    return IdentifyReply(model=fields[0].strip(), version=m.group(1) if m else "", raw=reply, calibration_date=cal, instrument=instrument)


def parse_uncertainty(reply: str) -> ptd.UncertaintyReply | None:
    try:
        return ptd.parse_uncertainty(reply.strip(), number=float)
    except ValueError:
        return None


def parse_watts(reply: str) -> ptd.WattsReply | None:
    try:
        return ptd.parse_watts(reply.strip(), number=float)
    except ValueError:
        return None


def initial_range(rr_reply: str, index: int) -> str | None:
    """The range PTD had before the session, from `Ranges,<A auto>,<A>,<V auto>,<V>` (index 1: A, 3: V).

    The checker's `get_initial_range`: a range is restored by value only if autorange is "0"
    and the value is > 0; otherwise the initial setting is "Auto". None if unreadable.
    """
    parts = rr_reply.split(",")
    try:
        if parts[index] == "0" and float(parts[index + 1]) > 0:
            return parts[index + 1]
    except (ValueError, IndexError):
        return None
    return "Auto"


# --- client.log and server.json's time exchanges ------------------------------------------------------
def ntp_offsets_from_client_log(lines: list[str]) -> list[tuple[float, float]]:
    """(offset s, delay s) of every `NTP:offset = X s, delay = Y s` line power-dev's client logged."""
    out = []
    for line in lines:
        m = _NTP_LINE_RE.search(line)
        if m:
            out.append((float(m.group(1)), float(m.group(2))))
    return out


def time_exchange_offsets(messages: list[dict]) -> list[float]:
    """power-dev's `validate_remote`: for each `time` request, max(|t1 - remote|, |t2 - remote|)."""
    out = []
    for msg in messages:
        if msg.get("cmd") != "time":
            continue
        try:
            remote = float(msg["reply"])
            t1, t2 = float(msg["cmd_time"]), float(msg["reply_time"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append(max(abs(t1 - remote), abs(t2 - remote)))
    return out


# --- spl.txt --------------------------------------------------------------------------------------
def format_spl_line(wall_ns: int, watts: float, volts: float, amps: float, pf: float, mark: str, valid: bool = True) -> str:
    """One `spl.txt` line as power-dev writes it (timestamp UTC, milliseconds; Mark appended)."""
    if not valid:
        watts = volts = amps = pf = float("nan")
    return ptd.format_sample_line(wall_ns, [(watts, volts, amps, pf)], mark)


# --- several analyzers -------------------------------------------------------------------------------
def analyzer_file(sub: str, index: int) -> str:
    """Each analyzer's samples as power-dev names them: `.csv` in ranging/, `.txt` in run_1/."""
    return f"{sub}/spl_analyzer_{index}.{'csv' if sub == 'ranging' else 'txt'}"


def merge_power_logs(texts: list[str]) -> str:
    """power-dev's `merge_power_logs` (ptd_client_server/lib/server.py), on texts: line k of every
    analyzer paired by index (not by time) up to the shortest file; the time and mark of analyzer
    1; Watts the sum of |W| over the analyzers whose W is not -1 (`%.6f`); Volts, Amps and PF
    -1.000000; then `Analyzer<i>,` and each analyzer's raw line. A line that does not parse (the
    empty line a PTD file ends with, a short line) is skipped, as power-dev's bare `except` does.
    The caller writes one file with several analyzers, and copies the only one's file as it is."""
    data: list[list[list[str]]] = []
    for text in texts:
        # Read as power-dev reads a file: text mode (universal newlines), each line rstrip()ped.
        data.append([line.rstrip().split(",") for line in io.StringIO(text, newline=None)])
    out = []
    for k in range(min(len(d) for d in data) if data else 0):
        try:
            time_, mark = data[0][k][1], data[0][k][11]
            total = 0.0
            for d in data:
                if float(d[k][3]) != -1:
                    total += abs(float(d[k][3]))
        except (IndexError, ValueError):
            continue
        head = ["Time", time_, "Watts", f"{total:.6f}", "Volts", f"{-1:.6f}", "Amps", f"{-1:.6f}", "PF", f"{-1:.6f}", "Mark", mark]
        out.append(",".join(head) + "".join(f",Analyzer{i},{','.join(d[k])}" for i, d in enumerate(data, start=1)) + "\n")
    return "".join(out)
