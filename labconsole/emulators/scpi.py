"""A small IEEE 488.2 / SCPI message parser for loopback instrument emulators.

What a real instrument's parser does and drivers rely on: headers in long or short form, any
case (`:INPut:VOLTage:RANGe`, `:inp:volt:rang`), optional nodes (`[:INPut]`, `[:NORMal]`),
numeric suffixes (`ITEM12`, `FILTer1`), several message units in one line separated by `;`
with relative headers (`:INP:VOLT:RANG 150V;AUTO?`), numbers with multipliers and units
(`5MA`, `100MS`, `1.5E+2V`), booleans (`ON|OFF|1|0`), character data matched by its short or
long form, an error queue with the standard codes, and NR3 replies.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

# IEEE 488.2 / SCPI error codes and the texts instruments give them.
SYNTAX_ERROR = (102, "Syntax error")
DATA_TYPE_ERROR = (104, "Data type error")
PARAMETER_NOT_ALLOWED = (108, "Parameter not allowed")
MISSING_PARAMETER = (109, "Missing parameter")
UNDEFINED_HEADER = (113, "Undefined header")
SUFFIX_NOT_ALLOWED = (138, "Suffix not allowed")
INVALID_CHARACTER_DATA = (141, "Invalid character data")
SETTING_CONFLICT = (221, "Setting conflict")
DATA_OUT_OF_RANGE = (222, "Data out of range")
MAX_NRF = 9.9e37  # IEEE 488.2's largest number (SCPI's NAN is 9.91E37): a bigger one is out of range
ILLEGAL_PARAMETER = (224, "Illegal parameter value")
QUEUE_OVERFLOW = (350, "Queue overflow")


class ScpiError(Exception):
    def __init__(self, error: tuple[int, str], detail: str = ""):
        super().__init__(f"{error[0]},{error[1]}" + (f" ({detail})" if detail else ""))
        self.code, self.text = error


@dataclass(frozen=True)
class Node:
    short: str
    long: str
    optional: bool = False
    suffix: bool = False  # takes a number: ITEM<x>

    def accepts(self, part: str) -> int | None:
        """The suffix (1 when omitted, 0 for nodes without one) if `part` names this node."""
        if self.suffix:
            m = re.fullmatch(r"([A-Z]+)(\d*)", part)
            if m and m.group(1) in (self.short, self.long):
                return int(m.group(2)) if m.group(2) else 1
            return None
        return 0 if part in (self.short, self.long) else None

    def spelled(self, verbose: bool, suffix: int | None) -> str:
        text = self.long if verbose else self.short
        return text + (str(suffix) if self.suffix and suffix else "")


def mnemonic(word: str) -> tuple[str, str]:
    """'VOLTage' -> ('VOLT', 'VOLTAGE'): the capitals are the short form."""
    short = "".join(c for c in word if c.isupper() or c.isdigit())
    return short or word.upper(), word.upper()


def pattern(text: str) -> tuple[Node, ...]:
    """':NUMeric[:NORMal]:ITEM<x>' -> nodes."""
    nodes = []
    for m in re.finditer(r"(\[)?:([A-Za-z]+)(<x>)?(\])?", text):
        short, long = mnemonic(m.group(2))
        nodes.append(Node(short, long, optional=bool(m.group(1)), suffix=bool(m.group(3))))
    return tuple(nodes)


def match(parts: list[str], nodes: tuple[Node, ...]) -> list[int | None] | None:
    """Suffixes per node if the header parts name this pattern, else None."""

    def go(i: int, j: int) -> list[int | None] | None:
        if j == len(nodes):
            return [] if i == len(parts) else None
        node = nodes[j]
        if i < len(parts):
            got = node.accepts(parts[i])
            if got is not None:
                rest = go(i + 1, j + 1)
                if rest is not None:
                    return [got] + rest
        if node.optional:
            rest = go(i, j + 1)
            if rest is not None:
                return [None] + rest
        return None

    return go(0, 0)


# ---------------------------------------------------------------------------------------------
# Parameters

_MULTIPLIERS = {"EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "M": 1e-3, "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15}
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)(.*)$", re.IGNORECASE)


def parse_number(text: str, unit: str = "") -> float:
    """<NRf>[<Multiplier>][<Unit>]: '150V', '5MA' (mA for currents), '100MS', '1.5E+2'."""
    t = text.strip().upper()
    m = _NUMBER.match(t)
    if not m:
        raise ScpiError(DATA_TYPE_ERROR, text)
    value = float(m.group(1))
    if not math.isfinite(value) or abs(value) > MAX_NRF:
        raise ScpiError(DATA_OUT_OF_RANGE, text)
    rest = m.group(2).strip()
    if unit and rest.endswith(unit) and not (unit == "A" and rest == "MA"):
        rest = rest[: -len(unit)]
    elif unit == "A" and rest == "MA":
        return value * 1e-3  # "MA" means milliampere for a current
    if not rest:
        return value
    if rest in _MULTIPLIERS:
        return value * _MULTIPLIERS[rest]
    raise ScpiError(SUFFIX_NOT_ALLOWED, text)


def parse_bool(text: str) -> bool:
    t = text.strip().upper()
    if t in ("ON", "OFF"):
        return t == "ON"
    try:
        return float(t) != 0.0
    except ValueError:
        raise ScpiError(DATA_TYPE_ERROR, text) from None


def parse_choice(text: str, choices: tuple[str, ...]) -> str:
    """Character data: returns the matching choice (its mixed-case spelling) or raises 141."""
    t = text.strip().upper()
    for c in choices:
        if t in mnemonic(c):
            return c
    raise ScpiError(INVALID_CHARACTER_DATA, text)


def split_args(text: str) -> list[str]:
    text = text.strip()
    return [a.strip() for a in text.split(",")] if text else []


def nr3(value: float, digits: int = 5) -> str:
    """Yokogawa-style NR3: engineering exponent, `digits` significant digits: 230.12E+00, 206.40E-03.
    Invalid data is NAN, over-range INF (the meters' ASCII markers)."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF"
    if value == 0:
        return f"{0:.{digits - 1}f}E+00"
    exp = int(math.floor(math.log10(abs(value)) / 3.0) * 3)
    mant = value / 10.0**exp  # 1 <= |mant| < 1000
    def fmt(m: float) -> str:
        int_digits = 1 if abs(m) < 10 else 2 if abs(m) < 100 else 3
        return f"{m:.{max(0, digits - int_digits)}f}"

    text = fmt(mant)
    if abs(float(text)) >= 1000.0:  # rounding carried into a fourth integer digit
        exp += 3
        mant /= 1000.0
    text = fmt(float(fmt(mant)))  # re-format after rounding: 99.9999 -> 100.00, not 100.000
    return f"{text}E{'+' if exp >= 0 else '-'}{abs(exp):02d}"


# ---------------------------------------------------------------------------------------------
# The command table and the message parser


Handler = Callable[[list[int | None], list[str]], "str | None"]


@dataclass
class Command:
    nodes: tuple[Node, ...]
    set: Handler | None = None
    query: Handler | None = None
    header: bool = True  # whether query replies carry a header when headers are on


@dataclass
class ErrorQueue:
    size: int = 16
    messages: bool = True  # :STATus:QMESsage: append the text to the code
    _q: deque = field(default_factory=deque)

    def push(self, code: int, text: str) -> None:
        if len(self._q) >= self.size - 1:
            if len(self._q) == self.size - 1:
                self._q.append(QUEUE_OVERFLOW)
            return
        self._q.append((code, text))

    def pop(self) -> str:
        code, text = self._q.popleft() if self._q else (0, "No error")
        return f'{code},"{text}"' if self.messages else str(code)

    def clear(self) -> None:
        self._q.clear()

    def __len__(self) -> int:
        return len(self._q)


class ScpiParser:
    """Dispatches one input line to the command table; returns the reply line (or None).

    Common commands (`*IDN?`) are looked up exactly in `common`; everything else in `commands`.
    A failing unit pushes its error and the line goes on with the next unit, as instruments do.
    """

    def __init__(self, errors: ErrorQueue):
        self.commands: list[Command] = []
        self.common: dict[str, Handler] = {}
        self.errors = errors
        self.headers = True
        self.verbose = False
        self.on_error: Callable[[int], None] | None = None  # e.g. to set *ESR bits

    def add(self, spec: str, set: Handler | None = None, query: Handler | None = None, header: bool = True) -> None:
        self.commands.append(Command(pattern(spec), set, query, header))

    def push_error(self, code: int, text: str) -> None:
        self.errors.push(code, text)
        if self.on_error is not None:
            self.on_error(code)

    def handle_line(self, line: str) -> str | None:
        replies: list[str] = []
        path: list[str] = []  # the current header path for relative headers
        for unit in _split_units(line):
            unit = unit.strip()
            if not unit:
                continue
            try:
                reply, path = self._unit(unit, path)
            except ScpiError as exc:
                self.push_error(exc.code, exc.text)
                continue
            except (ValueError, OverflowError, TypeError, IndexError, KeyError, ZeroDivisionError):
                # A number a handler cannot use (too large to count with, an index past the end):
                # a meter answers "Data out of range" and goes on; a client thread never dies.
                self.push_error(*DATA_OUT_OF_RANGE)
                continue
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _unit(self, unit: str, path: list[str]) -> tuple[str | None, list[str]]:
        head, _, args_text = unit.partition(" ")
        head = head.strip().upper()
        args = split_args(args_text)
        if head.startswith("*"):
            handler = self.common.get(head)
            if handler is None:
                raise ScpiError(UNDEFINED_HEADER, head)
            return handler([], args), path
        is_query = head.endswith("?")
        head = head.rstrip("?")
        if head.startswith(":"):
            parts = head[1:].split(":")
        else:
            parts = path + head.split(":")
        if not all(parts):
            raise ScpiError(SYNTAX_ERROR, unit)
        for cmd in self.commands:
            suffixes = match(parts, cmd.nodes)
            if suffixes is None:
                continue
            new_path = parts[:-1]
            if is_query:
                if cmd.query is None:
                    raise ScpiError(UNDEFINED_HEADER, unit)
                value = cmd.query(suffixes, args)
                if value is None:
                    return None, new_path
                if self.headers and cmd.header:
                    # The reply names the full canonical header, optional nodes included.
                    spelled = ":".join(n.spelled(self.verbose, s) for n, s in zip(cmd.nodes, suffixes))
                    value = f":{spelled} {value}"
                return value, new_path
            if cmd.set is None:
                raise ScpiError(UNDEFINED_HEADER, unit)
            cmd.set(suffixes, args)
            return None, new_path
        raise ScpiError(UNDEFINED_HEADER, unit)


def _split_units(line: str) -> list[str]:
    """Split on ';' outside double-quoted strings."""
    out, cur, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out
