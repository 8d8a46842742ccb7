"""MLLOG lines (`:::MLLOG {json}`), parsed exactly as mlperf-logging's parser does.

The official parser (compliance_checker/mlp_parser/ruleset_4xx.py) reads the file as latin-1,
keeps only lines holding `:::MLLOG `, drops everything before the token (a ` 0: ` rank prefix
in real logs), and takes `time_ms` as a float, `key`, `value` and `metadata`. Lines that fail
to parse are collected, not fatal: the summarizer drops a *result* log with any, and ignores
them in power logs. We keep that behaviour and the line numbers, so a message can point at one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

TOKEN = ":::MLLOG "
# A power log of a long run at 1 Hz on one node is a few MB; a 64-node round's biggest is ~1 MB
# per file. Anything far beyond that is not a log we should read into memory.
MAX_LOG_BYTES = 512 * 1024 * 1024


class MllogError(ValueError):
    """A file that cannot be read as an MLLOG log at all (not a line: the whole file)."""


@dataclass(frozen=True)
class LogLine:
    time_ms: float
    key: str
    value: object
    metadata: object
    lineno: int  # 1-based line number in the file, for messages


@dataclass
class MllogFile:
    path: Path
    lines: list[LogLine]
    failed: list[tuple[int, str]]  # (line number, why) for lines holding the token that did not parse

    def first(self, key: str) -> LogLine | None:
        return next((ln for ln in self.lines if ln.key == key), None)


def parse_line(text: str, lineno: int) -> LogLine:
    """One line holding the token; raises ValueError with the reason, as the official parser would."""
    body = text[text.rindex(TOKEN) + len(TOKEN):].strip()  # official: re.sub(".*" + TOKEN, TOKEN, l): greedy, last token
    obj = json.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    for field in ("time_ms", "key", "value", "metadata"):
        if field not in obj:
            raise ValueError(f"no {field!r}")
    try:
        t = float(obj["time_ms"])
    except (TypeError, ValueError):
        raise ValueError(f"time_ms {obj['time_ms']!r} is not a number") from None
    if not math.isfinite(t):
        raise ValueError(f"time_ms {obj['time_ms']!r} is not finite")
    if not isinstance(obj["key"], str):
        raise ValueError(f"key {obj['key']!r} is not a string")
    return LogLine(t, obj["key"], obj["value"], obj["metadata"], lineno)


def read(path: Path) -> MllogFile:
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise MllogError(f"{path}: cannot read ({exc.strerror})") from None
    if not path.is_file():
        raise MllogError(f"{path}: not a regular file")
    if st.st_size > MAX_LOG_BYTES:
        raise MllogError(f"{path}: {st.st_size} bytes, more than an MLLOG log can sensibly be ({MAX_LOG_BYTES})")
    lines: list[LogLine] = []
    failed: list[tuple[int, str]] = []
    try:
        with open(path, encoding="latin-1") as fh:  # the official parser's encoding: never fails to decode
            for lineno, raw in enumerate(fh, 1):
                if TOKEN not in raw:
                    continue
                try:
                    lines.append(parse_line(raw, lineno))
                except ValueError as exc:
                    failed.append((lineno, str(exc)))
    except OSError as exc:
        raise MllogError(f"{path}: cannot read ({exc.strerror})") from None
    return MllogFile(path, lines, failed)


def number(line: LogLine) -> float | None:
    """A line's value as a finite float, or None (the string "null" of SMC's start markers, etc.)."""
    v = line.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None
