"""Reading LoadGen's logs: `mlperf_log_detail.txt` (:::MLLOG JSON lines) and the summary.

Parsed the way MLPerf's tools read them: the first line must start with `:::MLLOG`, a key
that repeats keeps its first value (the submission checker's rule), and the power window is
the first `power_begin`/`power_end` pair, UTC `MM-DD-YYYY HH:MM:SS.mmm` (PTD's time format, read
by `labconsole.instruments.ptd.parse_power_time`). Anything malformed is an error that names
the file and the line.
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labconsole import safefile
from labconsole.instruments.ptd import parse_power_time

MLLOG_PREFIX = ":::MLLOG "
_POWER_RE = re.compile(r"(\d+-\d+-\d+ \d+:\d+:\d+\.\d+)")

# The performance metric per scenario (the key the submission checker reads, v5.0+; older
# logs only have the plain percentile keys, which we fall back to).
METRIC_KEYS = {
    "Offline": ("result_samples_per_second",),
    "Server": ("result_completed_samples_per_sec", "result_scheduled_samples_per_sec"),
    "SingleStream": ("early_stopping_latency_ss", "result_90.00_percentile_latency_ns"),
    "MultiStream": ("early_stopping_latency_ms", "result_99.00_percentile_per_query_latency_ns"),
}


# The types of the values analysis reads (LoadGen writes them so): a detail log holding a list
# where a count belongs is refused naming the line and the key, never a TypeError downstream.
_TEXT_KEYS = ("effective_scenario", "requested_scenario", "result_validity", "result_invalid_reason", "power_begin", "power_end")
_NUMBER_KEYS = (
    "result_query_count", "effective_samples_per_query", "result_mean_query_latency_ns", "result_qps_with_loadgen_overhead",
    "generated_query_count", "generated_samples_per_query", "effective_min_duration_ms", "effective_min_query_count",
    "effective_target_qps", "effective_target_latency_ns", "result_qps_without_loadgen_overhead",
    *(k for keys in METRIC_KEYS.values() for k in keys),
)


def _value_problem(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if key in _TEXT_KEYS and not isinstance(value, str):
        return f"{key}: text expected, found {type(value).__name__}"
    if key in _NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{key}: a number expected, found {type(value).__name__}"
    return None


class LoadGenLogError(ValueError):
    """A LoadGen log that cannot be trusted; the message names the file and line."""


@dataclass
class DetailLog:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[int, str, Any]] = field(default_factory=list)
    warnings: list[tuple[int, str, Any]] = field(default_factory=list)
    power_begin: str | None = None
    power_end: str | None = None
    power_begin_ns: int | None = None
    power_end_ns: int | None = None
    line_count: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def scenario(self) -> str | None:
        return self.values.get("effective_scenario") or self.values.get("requested_scenario")

    @property
    def validity(self) -> str | None:
        return self.values.get("result_validity")

    @property
    def query_count(self) -> int | None:
        v = self.values.get("result_query_count")
        return int(v) if v is not None else None

    @property
    def window_s(self) -> float | None:
        if self.power_begin_ns is None or self.power_end_ns is None:
            return None
        return (self.power_end_ns - self.power_begin_ns) / 1e9

    def performance_metric(self) -> tuple[str, float] | None:
        for key in METRIC_KEYS.get(self.scenario or "", ()):
            if key in self.values:
                try:
                    return key, float(self.values[key])
                except (TypeError, ValueError):
                    return None
        return None


def decode_lines(path: Path) -> list[str]:
    """The file's lines (CR stripped); a byte that is not UTF-8 is an error naming the line."""
    try:
        # only a regular file, and a bounded size: a FIFO or /dev/zero as a log must not hang
        raw = safefile.read_bytes(path, "log")
    except safefile.FileRefused as exc:
        if exc.errno == errno.ENOENT:
            raise LoadGenLogError(f"{path}: missing") from None
        raise LoadGenLogError(f"{path}: cannot read ({exc.reason})") from None
    out = []
    for lineno, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise LoadGenLogError(f"{path}:{lineno}: not UTF-8 text (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1})") from None
    return out


def parse_detail_log(path: str | Path) -> DetailLog:
    path = Path(path)
    lines = decode_lines(path)
    log = DetailLog(path=path)
    content = [(i, ln) for i, ln in enumerate(lines, start=1) if ln.strip()]
    if not content:
        raise LoadGenLogError(f"{path}:1: empty detail log")
    first_no, first = content[0]
    if not first.lstrip("\ufeff").startswith(":::MLLOG"):
        raise LoadGenLogError(f"{path}:{first_no}: not a LoadGen detail log (the first line must start with ':::MLLOG')")
    last_no = content[-1][0]
    for lineno, line in content:
        line = line.lstrip("\ufeff")
        if not line.startswith(":::MLLOG"):
            raise LoadGenLogError(f"{path}:{lineno}: unexpected line (not ':::MLLOG'): {line[:60]!r}")
        try:
            entry = json.loads(line[len(":::MLLOG") :])
            key = entry["key"]
            value = entry.get("value")
        except (ValueError, KeyError, TypeError) as exc:
            what = "truncated line (file cut off?)" if lineno == last_no else "malformed MLLOG line"
            raise LoadGenLogError(f"{path}:{lineno}: {what}: {exc}") from None
        if not isinstance(key, str):
            raise LoadGenLogError(f"{path}:{lineno}: MLLOG key must be a string")
        meta = entry.get("metadata") or {}
        if isinstance(meta, dict):
            if meta.get("is_error"):
                log.errors.append((lineno, key, value))
            elif meta.get("is_warning"):
                log.warnings.append((lineno, key, value))
        if key not in log.values:  # the checker keeps the first value of a repeated key
            wrong = _value_problem(key, value)
            if wrong:
                raise LoadGenLogError(f"{path}:{lineno}: {wrong}")
            log.values[key] = value
            log.lines[key] = lineno
    log.line_count = len(lines)
    for key, attr in (("power_begin", "power_begin"), ("power_end", "power_end")):
        if key in log.values:
            text = str(log.values[key])
            m = _POWER_RE.search(text)
            if not m:
                raise LoadGenLogError(f"{path}:{log.lines[key]}: {key} {text!r} is not 'MM-DD-YYYY HH:MM:SS.mmm'")
            try:
                ns = parse_power_time(m.group(1))
            except ValueError:
                raise LoadGenLogError(f"{path}:{log.lines[key]}: {key} {text!r} is not a valid date and time") from None
            setattr(log, attr, m.group(1))
            setattr(log, attr + "_ns", ns)
    if (log.power_begin is None) != (log.power_end is None):
        missing = "power_end" if log.power_end is None else "power_begin"
        present = "power_begin" if missing == "power_end" else "power_end"
        raise LoadGenLogError(f"{path}:{log.lines[present]}: {present} without {missing}")
    if log.power_begin_ns is not None and log.power_end_ns is not None:
        if log.lines["power_end"] < log.lines["power_begin"]:
            raise LoadGenLogError(f"{path}:{log.lines['power_end']}: power_end comes before power_begin (reordered log)")
        if log.power_end_ns < log.power_begin_ns:
            raise LoadGenLogError(
                f"{path}:{log.lines['power_end']}: power_end {log.power_end} is earlier than power_begin {log.power_begin}"
            )
    return log


@dataclass
class SummaryLog:
    path: Path
    fields: dict[str, str]

    @property
    def validity(self) -> str | None:
        return self.fields.get("Result is")

    @property
    def scenario(self) -> str | None:
        return self.fields.get("Scenario")


def parse_summary_log(path: str | Path) -> SummaryLog:
    path = Path(path)
    lines = decode_lines(path)
    fields: dict[str, str] = {}
    for line in lines:
        if ":" in line and not line.startswith(" *"):
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key and key not in fields:
                fields[key] = value
    if "Result is" not in fields and "Scenario" not in fields:
        raise LoadGenLogError(f"{path}:1: not a LoadGen summary (no 'Scenario' or 'Result is' line)")
    return SummaryLog(path, fields)
