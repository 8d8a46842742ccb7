"""SPEC PTDaemon (PTD): its TCP protocol, its log lines and its time format, as data and pure functions.

Shared by the `ptd` driver (`labconsole.sources.ptd`), the PTDaemon emulator
(`labconsole.emulators.ptd`) and the reading and writing of MLPerf power-dev files
(`labconsole.mlperf.powerdev`), so all three speak from one description (the way
`powershield.py` serves the LPM01A driver and its emulator). No I/O here.

The protocol (reference/instruments.md §2, reference/mlperf-power.md §2): ASCII lines ending in
CR LF on TCP (default port 8888), one reply line per command, except `RL`, which answers a header
`Last N samples` followed by N sample lines. Commands: Hello, Identify, RR, SR,V|A,<value|Auto>,
Go,<ms>,<rampup>[,<mark>], Stop, RL / RL,*,* / DC-RL, Watts, Uncertainty.

Time: PTD stamps samples and log lines `MM-DD-YYYY HH:MM:SS.mmm` (month first, UTC as power-dev
runs it), and LoadGen writes its `power_begin`/`power_end` markers the same way so that the two
can be matched; `format_power_time`/`parse_power_time` are the one formatter and parser of it.
"""

from __future__ import annotations

import calendar
import configparser
import datetime as _dt
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from labconsole.instruments.ranges import AccuracySpec, RangeState
from labconsole.instruments.yokogawa import lookup_model

DEFAULT_PORT = 8888
INVALID = -1.0  # PTD writes -1.000000 in every field of a sample it could not read
INVALID_GROUP = (INVALID, INVALID, INVALID, INVALID)
NO_CAL_DATE = "no_cal_date"  # Identify's calibration-date slot when none is set
GO_MAX_SAMPLES = 500000  # the maximum PTD's Go reply names

# ---------------------------------------------------------------------------------------------
# Time: `MM-DD-YYYY HH:MM:SS.mmm`, UTC

POWER_TIME_FORMAT = "%m-%d-%Y %H:%M:%S.%f"  # what MLPerf's checker parses it with
# The shape a sample line from PTD must have, to the digit (strict reading).
_WIRE_TIME_RE = re.compile(r"(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})\.(\d{1,6})", re.ASCII)


def format_power_time(wall_ns: int) -> str:
    """ns since the epoch -> `MM-DD-YYYY HH:MM:SS.mmm` (UTC; milliseconds truncated, as LoadGen and PTD write them)."""
    secs, rest = divmod(int(wall_ns), 1_000_000_000)
    return time.strftime("%m-%d-%Y %H:%M:%S", time.gmtime(secs)) + f".{rest // 1_000_000:03d}"


def parse_power_time(text: str, *, strict: bool = False) -> int:
    """`MM-DD-YYYY HH:MM:SS.mmm` (month first, UTC) -> integer ns since the epoch.

    By default read as MLPerf's tools read it (`strptime` with POWER_TIME_FORMAT): one-digit
    fields pass, an impossible date (02-30) or second 60 is a ValueError.
    strict: what the driver takes from PTD's wire: exactly two-digit ASCII fields and 1-6
    fraction digits, else ValueError("not a PTD time"); the fields are only range-checked
    (day <= 31, second <= 60) and `calendar.timegm` carries any excess over (02-30 -> 03-02),
    as the driver always has.
    """
    if not strict:
        dt = _dt.datetime.strptime(text.strip(), POWER_TIME_FORMAT)
        return calendar.timegm(dt.timetuple()) * 1_000_000_000 + dt.microsecond * 1000
    m = _WIRE_TIME_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a PTD time: {text!r}")
    mo, d, y, hh, mm, ss, frac = m.groups()
    month, day, hour, minute, second = int(mo), int(d), int(hh), int(mm), int(ss)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not a PTD time: {text!r}")
    secs = calendar.timegm((int(y), month, day, hour, minute, second, 0, 0, 0))
    return secs * 1_000_000_000 + int(frac.ljust(9, "0"))


# ---------------------------------------------------------------------------------------------
# Numbers and fields

# PTD prints values with %f: a plain decimal number. Python's float() would also take `1_0`,
# `infinity`, `nan` or other scripts' digits; a reply holding those is garbage, not a reading.
_VALUE_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def read_number(text: str) -> float:
    """A number field as PTD prints it (%f), finite; anything else is a ValueError."""
    if not _VALUE_RE.fullmatch(text):
        raise ValueError(f"not a number: {text[:40]!r}")
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {text[:40]!r}")
    return v


def format_field(value: float | None) -> str:
    """PTD's fixed-point field; -1.000000 marks an unknown or invalid value."""
    if value is None or not math.isfinite(value):
        return "-1.000000"
    return f"{value:.6f}"


# ---------------------------------------------------------------------------------------------
# The analyzers behind PTD's model names (Identify's first field): range tables for the
# procedure and the accuracy spec for per-sample uncertainty, taken from the Yokogawa per-model
# tables (crest factor 3), so each model's numbers exist once. Unknown models still work: PTD
# rounds ranges itself, the samples then carry no uncertainty (PTD's `Uncertainty` still does).


@dataclass(frozen=True)
class MeterSpec:
    voltage_ranges: tuple[float, ...]
    current_ranges: tuple[float, ...]
    accuracy: AccuracySpec


# PTD's analyzer names (MLPerf's SUPPORTED_MODEL keys, AC personalities) -> *IDN? model names.
PTD_MODEL_NAMES = {
    "YokogawaWT210": "WT210",
    "YokogawaWT310": "WT310",
    "YokogawaWT310E": "WT310E",
    "YokogawaWT330": "WT330",
    "YokogawaWT330E": "WT330E",
    "YokogawaWT330_multichannel": "WT330E",
    "YokogawaWT500": "WT500",
    "YokogawaWT500_multichannel": "WT500",
}


def _ptd_models() -> dict[str, MeterSpec]:
    out: dict[str, MeterSpec] = {}
    for ptd_name, idn_model in PTD_MODEL_NAMES.items():
        spec = lookup_model(idn_model)
        if spec is not None:
            volts, amps = spec.ranges(3)
            out[ptd_name] = MeterSpec(volts, amps, spec.accuracy_at(3))
    return out


PTD_MODELS: dict[str, MeterSpec] = _ptd_models()


# ---------------------------------------------------------------------------------------------
# Commands and their one-line replies

HELLO_REPLY = "Hello, PTDaemon here!"
READ_ALL_MULTICHANNEL, READ_ALL, READ_ALL_DC = "RL,*,*", "RL", "DC-RL"  # power-dev tries them in this order
UNKNOWN_COMMAND = "Unknown command"
INVALID_PARAMETER_COUNT = "Invalid number of parameters"
STOP_REPLY = "Stopping untimed measurement"
NO_MEASUREMENT_REPLY = "Error: no measurement to stop"
# What a client checks a reply starts with (the rest names numbers it may not expect).
GO_STARTED, STOP_STARTED, NO_MEASUREMENT = "Starting", "Stopping", "Error: no measurement"
_GO_INTERVAL_RE = re.compile(r" at (\d+)ms")
_SAMPLES_HEADER_RE = re.compile(r"Last (\d+) samples?")


def go_command(interval_ms: int, mark: str, rampup: int = 0) -> str:
    return f"Go,{interval_ms},{rampup},{mark}"


def go_reply(interval_ms: int, rampup: int = 0, max_samples: int = GO_MAX_SAMPLES) -> str:
    return f"Starting untimed measurement, maximum {max_samples} samples at {interval_ms}ms with {rampup} rampup samples"


def go_interval_ms(reply: str) -> int | None:
    """The sampling interval a Go reply names (`... at 1000ms ...`), None if it names none."""
    m = _GO_INTERVAL_RE.search(reply)
    return int(m.group(1)) if m else None


def format_range_value(value: float) -> str:
    """Six decimals like power-dev's SR commands, rounded up so a requested maximum never shrinks."""
    return f"{math.ceil(float(value) * 1e6 - 1e-6) / 1e6:.6f}"


def set_range_command(quantity: str, value: str) -> str:
    """`SR,V,<volts|Auto>` or `SR,A,<amps|Auto>` (quantity "V" or "A")."""
    return f"SR,{quantity},{value}"


def range_changed_reply(quantity: str) -> str:
    return f"Range {quantity} changed"


def samples_header(n: int) -> str:
    """The first line of an RL reply."""
    return f"Last {n} sample{'' if n == 1 else 's'}"


def parse_samples_header(header: str) -> int | None:
    """How many sample lines follow an RL reply's header; None if it is no such header."""
    m = _SAMPLES_HEADER_RE.fullmatch(header)
    return int(m.group(1)) if m else None


def is_nothing_unread(reply: str) -> bool:
    """PTD's "nothing new yet" to RL (util.pl knows `No unread...` and `Insufficient unread...`;
    the exact wording is not public, so any reply about unread samples counts)."""
    return "unread" in reply.lower()


def is_error_reply(reply: str) -> bool:
    """PTD's error replies start with Error / Invalid / Unknown (util.pl, power-dev)."""
    return reply.startswith(("Error", "Invalid", "Unknown", "Null channel", "Channel number out", "Meter busy"))


# ---------------------------------------------------------------------------------------------
# Identify


@dataclass
class PtdIdentity:
    """The fields of PTD's `Identify` reply (field order from SPEC's design document, as quoted
    in SPEC CPU's harness util.pl)."""

    model: str  # PTD's name for the analyzer, e.g. YokogawaWT310E (MLPerf checks this one)
    interval_ms: int
    can: dict[str, bool]  # watts, volts, amps, pf, energy, frequency
    accepted_by_spec: bool
    version: str  # 1.11.1
    crc: str
    build_date: str
    os: str
    mode: str  # power | temperature
    accuracy_estimation: bool | None
    range_setting: bool | None
    channels: int
    calibration_date: str | None  # None when PTD says no_cal_date
    meter_idn: str  # the analyzer's own *IDN?, ';'-separated
    raw: str

    @property
    def idn_fields(self) -> list[str]:
        return self.meter_idn.split(";")

    def _idn_field(self, index: int, default: str = "") -> str:
        """Field `index` of the meter's `vendor;model;serial;firmware`; a bare name is the model."""
        f = self.idn_fields
        return f[index] if len(f) > max(index, 1) else default

    @property
    def vendor(self) -> str:
        return self._idn_field(0)

    @property
    def meter_model(self) -> str:
        return self._idn_field(1, self.meter_idn)

    @property
    def serial(self) -> str:
        return self._idn_field(2)

    @property
    def firmware(self) -> str:
        return self._idn_field(3)

    @property
    def emulator(self) -> bool:
        return "labconsole-emulator" in self.os or self.serial.startswith("EMU")


_CAN_NAMES = ("watts", "volts", "amps", "pf", "energy", "frequency")


def parse_identify(reply: str) -> PtdIdentity:
    """Parse an Identify reply. The OS field may itself hold commas, so the fixed fields are
    taken from the front (9), `version=`/`OS=`/`mode=` by name, and the rest from the back."""
    parts = reply.split(",")
    if len(parts) < 12:
        raise ValueError(f"Identify reply has {len(parts)} fields, expected at least 12: {reply!r}")
    model = parts[0].strip()
    try:
        interval_ms = int(parts[1])
        flags = [int(x) for x in parts[2:9]]
    except ValueError:
        raise ValueError(f"Identify reply: fields 2-9 are not numbers: {reply!r}") from None
    try:
        i_ver = next(i for i, p in enumerate(parts) if p.startswith("version="))
        i_os = next(i for i, p in enumerate(parts) if p.startswith("OS="))
        i_mode = max(i for i, p in enumerate(parts) if p.startswith("mode="))
    except (StopIteration, ValueError):
        raise ValueError(f"Identify reply lacks version=, OS= or mode=: {reply!r}") from None
    if not i_ver < i_os < i_mode:
        raise ValueError(f"Identify reply: version=, OS=, mode= out of order: {reply!r}")
    version_full = parts[i_ver][len("version=") :]
    vparts = version_full.split("-")
    os_text = ",".join(parts[i_os : i_mode])[len("OS=") :]
    mode = parts[i_mode][len("mode=") :].strip()
    tail = parts[i_mode + 1 :]
    if len(tail) < 5:
        raise ValueError(f"Identify reply: too few fields after mode=: {reply!r}")
    meter_idn = tail[-1].strip()
    cal = tail[-2].strip()
    numbers = tail[:-2]

    def flag(i: int) -> bool | None:
        try:
            return bool(int(numbers[i]))
        except (IndexError, ValueError):
            return None

    try:
        channels = int(numbers[2])
    except (IndexError, ValueError):
        channels = 1
    return PtdIdentity(
        model=model,
        interval_ms=interval_ms,
        can=dict(zip(_CAN_NAMES, (bool(x) for x in flags[:6]))),
        accepted_by_spec=bool(flags[6]),
        version=vparts[0],
        crc=vparts[1] if len(vparts) > 1 else "",
        build_date=vparts[2] if len(vparts) > 2 else "",
        os=os_text,
        mode=mode,
        accuracy_estimation=flag(0),
        range_setting=flag(1),
        channels=max(1, channels),
        calibration_date=None if cal in (NO_CAL_DATE, "") else cal,
        meter_idn=meter_idn,
        raw=reply,
    )


def format_identify(
    model: str, interval_ms: int, version: str, crc: str, build_date: str, os_text: str, channels: int,
    calibration_date: str, meter_idn: str, can: str = "1,1,1,1,0,1", accepted_by_spec: bool = True,
) -> str:
    """An Identify reply in PTD's field layout (what `parse_identify` reads back); `can` holds the
    six capability flags (watts, volts, amps, pf, energy, frequency), `meter_idn` the analyzer's
    *IDN? with ';' for ','. Accuracy estimation and range setting are reported on."""
    return (
        f"{model},{interval_ms},{can},{int(accepted_by_spec)},"
        f"version={version}-{crc}-{build_date},OS={os_text},mode=power,"
        f"1,1,{channels},0,0,{calibration_date},{meter_idn}"
    )


# ---------------------------------------------------------------------------------------------
# RR: ranges


@dataclass
class RangeGroup:
    """One channel's part of an RR reply: autorange -1 unknown / 0 off / 1 on; range -1 unknown."""

    auto_a: int
    amps: float
    auto_v: int
    volts: float

    def state(self) -> RangeState:
        return RangeState(
            volts=self.volts if self.volts > 0 else math.nan,
            amps=self.amps if self.amps > 0 else math.nan,
            auto_v=self.auto_v != 0,  # unknown (-1) counts as "not fixed"
            auto_a=self.auto_a != 0,
        )

    def setting(self, quantity: str) -> str:
        """The SR value that puts this range back: `Auto` unless autorange is off and the range
        known (power-dev's `_get_initial_range` rule)."""
        auto, value = (self.auto_v, self.volts) if quantity == "V" else (self.auto_a, self.amps)
        return "Auto" if auto != 0 or value <= 0 else format_range_value(value)

    def reply_fields(self) -> str:
        return f"{self.auto_a},{self.amps:.6f},{self.auto_v},{self.volts:.6f}"


UNKNOWN_RANGES = RangeGroup(-1, INVALID, -1, INVALID)  # the sum channel's group (multichannel PTD >= 1.4.3)


def parse_ranges(reply: str) -> list[RangeGroup]:
    """`Ranges,{Amp Autorange},{Amp Range},{Volt Autorange},{Volt Range}` (4 values per channel)."""
    parts = reply.split(",")
    if parts[0] != "Ranges" or len(parts) < 5 or (len(parts) - 1) % 4:
        raise ValueError(f"not a Ranges reply: {reply!r}")
    groups = []
    try:
        for i in range(1, len(parts), 4):
            groups.append(RangeGroup(int(read_number(parts[i])), read_number(parts[i + 1]), int(read_number(parts[i + 2])), read_number(parts[i + 3])))
    except ValueError:
        raise ValueError(f"Ranges reply has a field that is not a number: {reply!r}") from None
    return groups


def format_ranges(groups: list[RangeGroup]) -> str:
    return "Ranges," + ",".join(g.reply_fields() for g in groups)


# ---------------------------------------------------------------------------------------------
# Watts and Uncertainty: PTD's own summary of the measurement


@dataclass(frozen=True)
class WattsReply:
    """`Watts,<avg>,<min>,<max>,<samples>,<errors>,<valid>` (PTD's own summary of a measurement)."""

    avg: float
    min: float
    max: float
    samples: int
    errors: int
    valid: int

    def reply(self) -> str:
        return "Watts,%.6f,%.6f,%.6f,%d,%d,%d" % (self.avg, self.min, self.max, self.samples, self.errors, self.valid)

    def summary_dict(self) -> dict[str, float | int]:
        """The keys a `ptd` source's phase summary records (events.jsonl)."""
        return {"avg_w": self.avg, "min_w": self.min, "max_w": self.max, "samples": self.samples, "errors": self.errors, "valid": self.valid}


@dataclass(frozen=True)
class UncertaintyReply:
    """`Uncertainty,<avg>,<min>,<max>,<samples>,<over>,<within>,<unknown>` (fractions, 0.0031 = 0.31 %).

    util.pl names the counts total, invalid, valid, unknown; in real replies a ranging run at
    Auto has all samples "unknown" and a clean testing run all "within" (reference §2.2).
    avg -1 means no sample's uncertainty was known.
    """

    avg: float
    min: float
    max: float
    samples: int
    over_limit: int
    within: int
    unknown: int

    @property
    def known(self) -> bool:
        return self.avg >= 0

    def reply(self) -> str:
        if not self.known:  # as observed in a real ranging log: -1.0, not -1.000000
            return f"Uncertainty,-1.0,{self.min:.6f},{self.max:.6f},{self.samples},{self.over_limit},{self.within},{self.unknown}"
        return "Uncertainty,%.6f,%.6f,%.6f,%d,%d,%d,%d" % (self.avg, self.min, self.max, self.samples, self.over_limit, self.within, self.unknown)

    def summary_dict(self) -> dict[str, float | int]:
        """The keys a `ptd` source's phase summary records (events.jsonl; util.pl's names)."""
        return {"avg": self.avg, "min": self.min, "max": self.max, "total": self.samples, "invalid": self.over_limit, "valid": self.within, "unknown": self.unknown}


UNKNOWN_UNCERTAINTY_MIN = 10000000.0  # a real reply with no known uncertainty: min 1e7, max 0


def parse_watts(reply: str, number: Callable[[str], float] = read_number) -> WattsReply:
    """A Watts reply; `number` reads the three averages (float() accepts what C's printf may
    write for no data, such as nan). ValueError names what was wrong."""
    parts = reply.split(",")
    if parts[0] != "Watts" or len(parts) < 7:
        raise ValueError(f"not a Watts reply: {reply!r}")
    try:
        return WattsReply(number(parts[1]), number(parts[2]), number(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]))
    except ValueError:
        raise ValueError(f"Watts reply has a field that is not a number: {reply!r}") from None


def parse_uncertainty(reply: str, number: Callable[[str], float] = read_number) -> UncertaintyReply:
    """An Uncertainty reply (see `parse_watts` for `number`)."""
    parts = reply.split(",")
    if parts[0] != "Uncertainty" or len(parts) < 8:
        raise ValueError(f"not an Uncertainty reply: {reply!r}")
    try:
        return UncertaintyReply(number(parts[1]), number(parts[2]), number(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]), int(parts[7]))
    except ValueError:
        raise ValueError(f"Uncertainty reply has a field that is not a number: {reply!r}") from None


# ---------------------------------------------------------------------------------------------
# Sample lines: RL's reply lines, the -l log file's, and power-dev's spl.txt

Group = tuple[float, float, float, float]  # watts, volts, amps, pf
_CHANNEL_LABEL = re.compile(r"(Ch|Analyzer)\d+")


def format_group(group: Group) -> str:
    w, v, a, pf = group
    return f"Watts,{format_field(w)},Volts,{format_field(v)},Amps,{format_field(a)},PF,{format_field(pf)}"


def format_sample_line(t_ns: int, groups: list[Group], mark: str | None = None) -> str:
    """`Time,<ts>,Watts,w,Volts,v,Amps,a,PF,pf` then, for multichannel meters, one group per
    channel after the sum. Without a mark: an RL reply line (channels unlabelled); with one: the
    log-file and spl.txt form (`Mark,<mark>` after the first group, then `ChN,` groups)."""
    line = f"Time,{format_power_time(t_ns)},{format_group(groups[0])}"
    if mark is None:
        return ",".join([line] + [format_group(g) for g in groups[1:]])
    return ",".join([line, "Mark", mark] + [f"Ch{k},{format_group(g)}" for k, g in enumerate(groups[1:], start=1)])


def parse_sample_line(line: str) -> tuple[int, list[Group]]:
    """A sample line -> (PTD time ns, [(watts, volts, amps, pf) per group]).

    `Time,<ts>,Watts,w,Volts,v,Amps,a,PF,pf` then, for multichannel meters, more
    `Watts,..,PF,..` groups (sum first, then each channel), optionally labelled `ChN` and
    with a `Mark,<mark>` pair (log-file and spl.txt forms are accepted too).
    """
    tokens = line.split(",")
    if len(tokens) < 10 or tokens[0] != "Time":
        raise ValueError(f"not a sample line: {line[:120]!r}")
    t = parse_power_time(tokens[1], strict=True)
    groups = []
    i = 2
    while i < len(tokens):
        tok = tokens[i]
        if tok == "Watts":
            if i + 8 > len(tokens) or tokens[i + 2] != "Volts" or tokens[i + 4] != "Amps" or tokens[i + 6] != "PF":
                raise ValueError(f"truncated or malformed sample group at field {i + 1}: {line[:120]!r}")
            try:
                vals = tuple(read_number(tokens[i + k]) for k in (1, 3, 5, 7))
            except ValueError as exc:
                raise ValueError(f"{exc} in sample line: {line[:120]!r}") from None
            groups.append(vals)  # type: ignore[arg-type]
            i += 8
        elif tok == "Mark" and i + 1 < len(tokens):
            i += 2
        elif _CHANNEL_LABEL.fullmatch(tok):
            i += 1
        else:
            raise ValueError(f"unexpected field {tok[:40]!r} in sample line: {line[:120]!r}")
    if not groups:
        raise ValueError(f"sample line without values: {line[:120]!r}")
    return t, groups


# ---------------------------------------------------------------------------------------------
# PTD's console (power-dev's ptd_logs.txt) and the message lines of its -l log


def console_line(t_ns: int, text: str) -> str:
    """`MM-DD-YYYY HH:MM:SS.mmm: <text>`; text is `LEVEL: message` for errors and warnings."""
    return f"{format_power_time(t_ns)}: {text}"


def log_message_line(t_ns: int, level: str, message: str) -> str:
    """A message in the -l log: `Time,<ts>,NOTICE|ERROR|WARNING,<message>`."""
    return f"Time,{format_power_time(t_ns)},{level},{message}"


_CONSOLE_TIME_RE = re.compile(r"^(\d\d-\d\d-\d\d\d\d \d\d:\d\d:\d\d.\d\d\d)")


@dataclass
class PtdLogLine:
    lineno: int
    wall_ns: int | None  # None for lines without PTD's timestamp prefix
    message: str  # the text after "MM-DD-YYYY HH:MM:SS.mmm"; starts with ": " for PTD's own lines
    text: str


def parse_ptd_log(lines: list[str]) -> list[PtdLogLine]:
    """PTD's console lines (ptd_logs.txt), each with its time where it starts with one."""
    out = []
    for i, line in enumerate(lines, start=1):
        m = _CONSOLE_TIME_RE.match(line)
        if not m:
            out.append(PtdLogLine(i, None, line.strip(), line))
            continue
        try:
            ns = parse_power_time(m.group(1))
        except ValueError:
            out.append(PtdLogLine(i, None, line.strip(), line))
            continue
        out.append(PtdLogLine(i, ns, line[m.end() :].strip(), line))
    return out


# --- power-dev's server configuration: the analyzers ---------------------------------------------
@dataclass(frozen=True)
class AnalyzerConfig:
    """One `[analyzerN]` section of power-dev's server.conf: one PTDaemon per analyzer
    (power-dev:ptd_client_server/lib/server.py `ServerConfig`)."""

    index: int  # 1-based, as in the section name
    device_type: int
    device_port: str
    interface_flag: str
    network_port: int = DEFAULT_PORT
    channel: tuple[int, ...] | None = None
    dc_flag: str | None = None
    gpib_board: int | None = None


def parse_powerdev_analyzers(text: str, filename: str = "server.conf") -> list[AnalyzerConfig]:
    """The analyzers of a power-dev server config: `[ptd] analyzerCount` (default 1) and one
    `[analyzerN]` each, with deviceType, interfaceFlag and devicePort required (per-analyzer
    keys are read only from `[analyzerN]`, as power-dev HEAD does; a config without
    `[analyzer1]` fails there too). Raises ValueError naming the file, section and key."""
    conf = configparser.ConfigParser()
    try:
        conf.read_string(text, source=filename)
    except configparser.Error as exc:
        raise ValueError(f"{filename}: {exc}") from None

    def get(section: str, key: str, parse: Callable[[str], Any] = str, fallback: str | None = None) -> Any:
        if not conf.has_section(section):
            raise ValueError(f"{filename}: [{section}] is missing (power-dev reads each analyzer's settings from its own [analyzerN])")
        raw = conf.get(section, key, fallback=fallback)
        if raw is None:
            raise ValueError(f"{filename}: [{section}] {key}: required")
        try:
            return parse(raw)
        except ValueError:
            raise ValueError(f"{filename}: [{section}] {key}: cannot read {raw!r}") from None

    count = get("ptd", "analyzerCount", int, "1") if conf.has_section("ptd") else 1
    if not 1 <= count <= 64:
        raise ValueError(f"{filename}: [ptd] analyzerCount: {count} (1..64)")
    out = []
    for i in range(1, count + 1):
        sec = f"analyzer{i}"
        chan = get(sec, "channel", str, "")
        out.append(AnalyzerConfig(
            index=i,
            device_type=get(sec, "deviceType", int),
            device_port=get(sec, "devicePort"),
            interface_flag=get(sec, "interfaceFlag"),
            network_port=get(sec, "networkPort", int, str(DEFAULT_PORT)),
            channel=tuple(int(x) for x in chan.split(",")) if chan.strip() else None,
            dc_flag=conf.get(sec, "dcFlag", fallback=None),
            gpib_board=get(sec, "gpibBoard", int, "-1") if conf.has_option(sec, "gpibBoard") else None,
        ))
    ports = [a.network_port for a in out]
    if len(set(ports)) != len(ports):
        raise ValueError(f"{filename}: analyzers share a networkPort ({ports}); each analyzer's PTDaemon needs its own")
    return out
