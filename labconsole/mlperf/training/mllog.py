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
from typing import NamedTuple

TOKEN = ":::MLLOG "
# A power log of a long run at 1 Hz on one node is a few MB; a 64-node round's biggest is ~1 MB
# per file. Anything far beyond that is not a log we should read into memory.
MAX_LOG_BYTES = 512 * 1024 * 1024


class MllogError(ValueError):
    """A file that cannot be read as an MLLOG log at all (not a line: the whole file)."""


class LogLine(NamedTuple):  # a tuple: 384,000 of them are made to score a 64-node session
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


_decode = json.JSONDecoder().decode


def parse_line(text: str, lineno: int) -> LogLine:
    """One line holding the token; raises ValueError with the reason, as the official parser would."""
    # official: re.sub(".*" + TOKEN, TOKEN, l) (greedy: the last token), then json.loads
    obj = _decode(text[text.rindex(TOKEN) + len(TOKEN):].strip())
    try:
        t, key, value, metadata = obj["time_ms"], obj["key"], obj["value"], obj["metadata"]
    except KeyError as exc:
        raise ValueError(f"no {exc.args[0]!r}") from None
    except TypeError:
        raise ValueError("not a JSON object") from None
    if type(t) is not float:
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"time_ms {obj['time_ms']!r} is not a number") from None
    if not math.isfinite(t):
        raise ValueError(f"time_ms {obj['time_ms']!r} is not finite")
    if type(key) is not str:
        raise ValueError(f"key {key!r} is not a string")
    return LogLine(t, key, value, metadata, lineno)


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
    append, isfinite, n = lines.append, math.isfinite, len(TOKEN)
    try:
        with open(path, encoding="latin-1") as fh:  # the official parser's encoding: never fails to decode
            for lineno, raw in enumerate(fh, 1):
                i = raw.rfind(TOKEN)
                if i < 0:
                    continue
                # The common line, inline (a 64-node session has 384,000); anything unusual
                # goes through parse_line, which says what is wrong with it.
                try:
                    obj = _decode(raw[i + n:])
                    t = float(obj["time_ms"])
                    key = obj["key"]
                    if isfinite(t) and type(key) is str:
                        append(LogLine(t, key, obj["value"], obj["metadata"], lineno))
                        continue
                except (ValueError, KeyError, TypeError):
                    pass
                try:
                    append(parse_line(raw, lineno))
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
