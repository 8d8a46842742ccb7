"""The STM32 PowerShield (X-NUCLEO-LPM01A) serial protocol: commands, replies and stream formats.

Shared by the `lpm01a` driver and its pseudo-terminal emulator, so both speak from one description
(the way `ranges.py` serves the Yokogawa driver and its emulator).

Where the facts come from (quoted in `reference/instruments.md` 3.1-3.2 unless noted):
- command table, MLPerf Tiny set-up and tear-down, `PowerShield > ` prompt, `ack`/`error` +
  `Error detail:` replies, `TimeStamp:` and `event NN ris` lines:
  mlcommons/tiny benchmark/runner/power_manager/power_manager_lpm.py and script.py;
- the exact reply framing `\\r\\nPowerShield > ack <command as sent>\\r\\n\\r\\n`, `stop` answered
  by `PowerShield > Acquisition completed` (no ack), a NUL byte after a TimeStamp line, and
  `PowerShield > ack volt get 3292-03`: public host scripts written against real boards;
- the binary format (2-byte samples, metadata `F0 <type> ... FF FF`, type F3 = 4-byte ms + buffer
  %): zephyrproject-rtos/zephyr scripts/pm/power_monitor_stm32l562e_dk/PowerShield.py.
Not confirmed against a board here: the exact `powershield`/`version`/error wording, how often
TimeStamp lines come at rates other than 1 kHz, what the board does when its buffer overflows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from labconsole.samples.batch import ERROR, OK

# --- the device ---------------------------------------------------------------------------------
USB_VID, USB_PID = 0x0483, 0x5740  # ST's virtual COM port IDs (shared with other ST CDC firmware)
DEFAULT_BAUD = 3686400
PROMPT = "PowerShield > "
EOL = b"\r\n"

# `freq` accepts exactly these (Hz); the argument is written with a k suffix from 1 kHz up.
FREQUENCIES_HZ = (100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1)
VOLT_MIN_MV, VOLT_MAX_MV = 1800, 3300
ASCII_CONTINUOUS_MAX_HZ = 5000  # ascii_dec: unlimited acquisition time up to 5 kHz
ASCII_TIMED_LIMITS_S = {10000: 1.0, 20000: 0.5}  # ascii_dec at 10/20 kHz: at most this long
ENERGY_MAX_HZ = 10000  # `output energy` integrates for at least 100 us
TRIGDELAY_MAX_MS = 30000
# Static mode measures 1 nA..200 mA "with an accuracy of better than 2%" (UM2243 p. 23).
ACCURACY_READING_PCT = 2.0
MAX_CURRENT_A = 0.200  # nothing above this is a reading the board can make
TIMESTAMP_EVERY = 1000  # samples between TimeStamp lines (seen at 1 kHz)


def freq_arg(hz: int) -> str:
    """`1000` -> '1k', `500` -> '500': how `freq` takes its argument."""
    if hz not in FREQUENCIES_HZ:
        raise ValueError(f"{hz} Hz is not a PowerShield sampling frequency (allowed: {', '.join(map(str, FREQUENCIES_HZ))})")
    return f"{hz // 1000}k" if hz >= 1000 else str(hz)


_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3}
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)(?:([numk])|([+-]\d{1,2}))?$")


def parse_number(text: str) -> float:
    """A PowerShield numeric argument: '3300m', '2-3', '100u', '10k', '0', 'inf'."""
    t = text.strip().lower()
    if t == "inf":
        return math.inf
    m = _NUMBER.match(t)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    value = float(m.group(1))
    if m.group(2):
        value *= _SUFFIX[m.group(2)]
    elif m.group(3):
        value *= 10.0 ** int(m.group(3))
    return value


# --- replies (what the board writes back to a command) -------------------------------------------
def reply_ack(command: str, payload: str = "") -> bytes:
    text = f"ack {command}" + (f" {payload}" if payload else "")
    return b"\r\n" + (PROMPT + text).encode("ascii") + b"\r\n\r\n"


def reply_error(command: str, detail: str) -> bytes:
    return b"\r\n" + f"{PROMPT}error {command}".encode("ascii") + b"\r\n\r\n" + f"Error detail: {detail}".encode("ascii") + b"\r\n"


REPLY_COMPLETED = b"\r\n" + (PROMPT + "Acquisition completed").encode("ascii") + b"\r\n"


def strip_prompt(line: str) -> str:
    """The text of a reply line without the prompt(s) in front of it."""
    line = line.strip()
    while line.startswith("PowerShield >"):
        line = line[len("PowerShield >") :].lstrip()
    return line


# --- ASCII samples: `DDDD±EE` = DDDD x 10^±EE (amps, or joules in energy mode) --------------------
def encode_ascii_tokens(values: np.ndarray) -> list[str]:
    """Values -> 4-digit mantissa tokens, as the board prints them ('6409-07' = 640.9 uA)."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 1e-15)
    exp = np.floor(np.log10(v)).astype(np.int64) - 3
    mant = np.rint(v / np.power(10.0, exp)).astype(np.int64)
    carry = mant >= 10000
    mant[carry] //= 10
    exp[carry] += 1
    return [f"{m:04d}{'-' if e < 0 else '+'}{abs(e):02d}" for m, e in zip(mant.tolist(), exp.tolist(), strict=True)]


def decode_ascii_token(token: str) -> float:
    """'6409-07' -> 6.409e-4. Raises ValueError for anything else."""
    if len(token) != 7 or token[4] not in "+-" or not token[:4].isdigit() or not token[5:].isdigit():
        raise ValueError(f"not a PowerShield sample: {token!r}")
    e = int(token[5:])
    return int(token[:4]) * 10.0 ** (-e if token[4] == "-" else e)


# --- binary samples: 16 bits, [exponent:4][mantissa:12], value = mantissa x 16^-exponent ----------
META = 0xF0
META_ERROR, META_INFO, META_TIMESTAMP, META_END, META_OVERCURRENT, META_POWER_DOWN, META_VOLTAGE = range(0xF1, 0xF8)
META_TAIL = b"\xff\xff"
_MAX_META_TEXT = 512


def encode_binary(values: np.ndarray) -> bytes:
    """Values -> big-endian 16-bit words with the largest exponent that keeps the mantissa < 4096."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 1e-18)
    exp = np.clip(np.floor(np.log(4095.0 / v) / np.log(16.0)), 0, 14).astype(np.int64)
    mant = np.clip(np.rint(v * np.power(16.0, exp)), 0, 4095).astype(np.int64)
    return ((exp << 12) | mant).astype(">u2").tobytes()


def decode_binary_words(words: np.ndarray) -> np.ndarray:
    w = np.asarray(words, dtype=np.int64)
    return (w & 0xFFF) * np.power(16.0, -(w >> 12))


def meta_timestamp(ms: int, buffer_pct: int) -> bytes:
    return bytes([META, META_TIMESTAMP]) + int(ms & 0xFFFFFFFF).to_bytes(4, "big") + bytes([max(0, min(255, buffer_pct))]) + META_TAIL


def meta_text(kind: int, text: str) -> bytes:
    return bytes([META, kind]) + text.encode("ascii", "replace").replace(b"\xff", b"?") + META_TAIL


def timestamp_line(ms: int, buffer_pct: int) -> str:
    return f"TimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff {min(99, buffer_pct):02d}%"


# --- stream parsing ------------------------------------------------------------------------------
@dataclass
class Mark:
    """Something in the stream that is not a sample, at `pos` = samples before it in this feed."""

    pos: int
    kind: str  # timestamp | event | ack | error | error_detail | completed | end | info | overcurrent | garbage
    text: str = ""
    board_ms: int | None = None
    buffer_pct: int | None = None
    flag: str = ""  # the character after 'TimeStamp:' (' ' normally)


@dataclass
class Parsed:
    values: np.ndarray  # amps or joules per sample period, as decoded
    status: np.ndarray  # OK, or ERROR for a damaged reading that kept its place
    marks: list[Mark] = field(default_factory=list)

    @property
    def garbage(self) -> int:
        return sum(1 for m in self.marks if m.kind == "garbage")


def _empty() -> Parsed:
    return Parsed(np.empty(0, np.float64), np.empty(0, np.uint8), [])


_TOKEN = re.compile(r"\d{4}[+-]\d{2}")
_TOKENS_LINE = re.compile(r"(?:\d{4}[+-]\d{2}\s*)+")
_TIMESTAMP = re.compile(r"^TimeStamp:(.)(\d+)s (\d+)ms, buff (\d+)%$")
_EVENT = re.compile(r"^event (\d+) (ris|fal)$")
_MAX_LINE = 4096  # a 'line' longer than this without a newline is garbage (binary noise)
# Board messages that are neither samples nor replies to us; seen or documented, harmless.
_INFO_PREFIXES = ("summary", "pwr on", "pwr off", "target power", "Overcurrent", "overcurrent", "Warning", "warning")


class AsciiStreamParser:
    """`ascii_dec` acquisition stream -> samples and marks, never raising on any input.

    One sample per line normally; several tokens on a line (or glued together after a lost
    line end) are each taken. A short line that is neither a token nor a known message is most
    likely a damaged reading: it counts as a protocol error AND keeps its place as one ERROR
    sample, so the timing of the samples after it stays right. Longer unknown lines count as
    protocol errors only. NUL bytes (the board sends one after a TimeStamp line) are dropped.
    """

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> Parsed:
        buf = self._buf + data
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > _MAX_LINE:
            lines.append(self._buf)
            self._buf = b""
        values: list[float] = []
        status: list[int] = []
        marks: list[Mark] = []
        for raw in lines:
            self._line(raw, values, status, marks)
        return Parsed(np.asarray(values, np.float64), np.asarray(status, np.uint8), marks)

    def flush(self) -> Parsed:
        """Whatever partial line is left (at the end of a stream) is garbage if it is not empty."""
        rest, self._buf = self._buf, b""
        values: list[float] = []
        status: list[int] = []
        marks: list[Mark] = []
        if rest.strip(b"\r\x00 "):
            marks.append(Mark(0, "garbage", rest[:80].decode("latin-1")))
        return Parsed(np.asarray(values, np.float64), np.asarray(status, np.uint8), marks)

    @staticmethod
    def _line(raw: bytes, values: list[float], status: list[int], marks: list[Mark]) -> None:
        raw = raw.replace(b"\x00", b"").strip(b"\r")
        # Fast path: one sample, `6409-07`.
        if len(raw) == 7 and raw[4] in (43, 45) and raw[:4].isdigit() and raw[5:].isdigit():
            e = (raw[5] - 48) * 10 + raw[6] - 48
            values.append(int(raw[:4]) * 10.0 ** (-e if raw[4] == 45 else e))
            status.append(OK)
            return
        text = raw.decode("latin-1").strip()
        if not text:
            return
        pos = len(values)
        if not text.isascii() or not text.isprintable():
            marks.append(Mark(pos, "garbage", text[:80]))
            if _looks_like_reading(text):
                values.append(math.nan)
                status.append(ERROR)
            return
        if _TOKENS_LINE.fullmatch(text):
            for tok in _TOKEN.findall(text):
                values.append(decode_ascii_token(tok))
                status.append(OK)
            return
        msg = strip_prompt(text)
        if not msg:
            return  # a bare prompt
        if msg.startswith("TimeStamp"):
            m = _TIMESTAMP.match(msg)
            if m:
                marks.append(Mark(pos, "timestamp", msg, int(m.group(2)) * 1000 + int(m.group(3)), int(m.group(4)), m.group(1)))
            else:
                marks.append(Mark(pos, "garbage", msg[:80]))
            return
        m = _EVENT.match(msg)
        if m:
            marks.append(Mark(pos, "event", msg))
            return
        low = msg.lower()
        if low.startswith("ack "):
            marks.append(Mark(pos, "ack", msg[4:].strip()))
        elif low.startswith("error detail"):
            marks.append(Mark(pos, "error_detail", msg.split(":", 1)[-1].strip()))
        elif low.startswith("error"):
            marks.append(Mark(pos, "error", msg))
        elif "acquisition completed" in low:
            marks.append(Mark(pos, "completed", msg))
        elif low == "end":
            marks.append(Mark(pos, "end", msg))
        elif msg.startswith(_INFO_PREFIXES):
            marks.append(Mark(pos, "info", msg))
        else:
            marks.append(Mark(pos, "garbage", msg[:80]))
            if _looks_like_reading(msg):
                values.append(math.nan)
                status.append(ERROR)


def _looks_like_reading(text: str) -> bool:
    """A short line mostly made of digits: a sample that was damaged on the way."""
    digits = sum(c.isdigit() for c in text)
    return len(text) <= 12 and digits >= max(1, len(text) // 2)


class BinaryStreamParser:
    """`bin_hexa` acquisition stream -> samples and marks, never raising on any input.

    Samples are 2 bytes each; metadata frames are `F0 <F1..F7> ... FF FF`. Nothing is taken as a
    sample before the first timestamp frame (the reply bytes before it are not data), as the
    known host implementations do. A word whose exponent nibble is F but that does not start a
    frame means the two-byte alignment was lost: it counts as a protocol error and one byte is
    skipped to find the alignment again. After the end-of-acquisition frame the stream is text
    again (the board's summary and `Acquisition completed`), parsed as ASCII.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._synced = False
        self._ended = False
        self._text = AsciiStreamParser()
        self.presync_bytes = 0  # bytes skipped before the first timestamp frame

    def feed(self, data: bytes) -> Parsed:
        if self._ended:
            return self._text.feed(data)
        buf = self._buf + data
        chunks: list[np.ndarray] = []
        errs: list[int] = []  # positions of damaged words kept as ERROR samples
        marks: list[Mark] = []
        n_samples = 0
        i = 0
        end = len(buf)
        while i < end:
            if not self._synced:
                j = buf.find(bytes([META, META_TIMESTAMP]), i)
                if j < 0:
                    keep = end - 1 if buf.endswith(bytes([META])) else end
                    self.presync_bytes += keep - i
                    i = keep
                    break
                self.presync_bytes += j - i
                i = j
                self._synced = True
                continue
            # The next metadata frame at an even offset from i; bytes before it are samples.
            j = i
            while True:
                j = buf.find(b"\xf0", j, end)
                if j < 0 or (j - i) % 2 == 0:
                    break
                j += 1
            stop = end if j < 0 else j
            run = stop - i
            if run >= 2:
                words = np.frombuffer(buf, dtype=">u2", count=run // 2, offset=i)
                bad = np.flatnonzero((words >> 12) == 0xF)
                if len(bad):
                    k = int(bad[0])
                    at = i + 2 * k
                    if k and buf[at - 1] == META and META_ERROR <= buf[at] <= META_VOLTAGE:
                        # A frame at an odd offset: a byte was lost before it. The word that ate
                        # the frame's F0 is damaged; the frame itself puts us back in step.
                        if k > 1:
                            chunks.append(decode_binary_words(words[: k - 1]))
                            n_samples += k - 1
                        chunks.append(np.array([math.nan]))
                        errs.append(n_samples)
                        n_samples += 1
                        marks.append(Mark(n_samples, "garbage", "lost byte: frame out of step"))
                        i = at - 1
                        continue
                    # lost alignment inside the run: keep the good words before it, skip one byte
                    if k:
                        chunks.append(decode_binary_words(words[:k]))
                        n_samples += k
                    marks.append(Mark(n_samples, "garbage", f"bad word {int(words[k]):04X}"))
                    i += 2 * k + 1
                    continue
                chunks.append(decode_binary_words(words))
                n_samples += len(words)
                i += 2 * len(words)
            if j < 0:
                break  # an odd trailing byte waits for the next feed
            # A frame starts at j (== i now).
            if j + 1 >= end:
                break
            kind = buf[j + 1]
            if kind < META_ERROR or kind > META_VOLTAGE:
                marks.append(Mark(n_samples, "garbage", f"bad word F0{kind:02X}"))
                i = j + 1
                continue
            consumed = self._frame(buf, j, kind, n_samples, marks)
            if consumed == 0:
                break  # incomplete frame: wait for more bytes
            i = j + consumed
            if self._ended:
                rest = self._text.feed(buf[i:])
                self._buf = b""
                return _merge(chunks, n_samples, marks, rest, errs)
        self._buf = buf[i:]
        return _merge(chunks, n_samples, marks, None, errs)

    def flush(self) -> Parsed:
        rest, self._buf = self._buf, b""
        out = _empty()
        if rest and self._synced and not self._ended:
            out.marks.append(Mark(0, "garbage", f"{len(rest)} trailing byte(s)"))
        if self._ended:
            return self._text.flush()
        return out

    def _frame(self, buf: bytes, j: int, kind: int, pos: int, marks: list[Mark]) -> int:
        """Parse the frame at j; returns bytes consumed, 0 if incomplete."""
        end = len(buf)
        if kind == META_TIMESTAMP:
            if j + 9 > end:
                return 0
            if buf[j + 7 : j + 9] != META_TAIL:
                marks.append(Mark(pos, "garbage", "timestamp frame without its FF FF tail"))
                return 2
            ms = int.from_bytes(buf[j + 2 : j + 6], "big")
            marks.append(Mark(pos, "timestamp", f"timestamp {ms} ms", ms, buf[j + 6]))
            return 9
        if kind in (META_ERROR, META_INFO):
            k = buf.find(META_TAIL, j + 2, min(end, j + 2 + _MAX_META_TEXT))
            if k < 0:
                if end - j >= _MAX_META_TEXT + 2:
                    marks.append(Mark(pos, "garbage", "text frame without its FF FF tail"))
                    return 2
                return 0
            text = buf[j + 2 : k].decode("ascii", "replace").replace("\x00", "").strip()
            marks.append(Mark(pos, "error" if kind == META_ERROR else "info", text))
            return k + 2 - j
        if kind == META_VOLTAGE:
            if j + 6 > end:
                return 0
            mv = int.from_bytes(buf[j + 2 : j + 4], "big")
            marks.append(Mark(pos, "info", f"voltage {mv} mV"))
            return 6 if buf[j + 4 : j + 6] == META_TAIL else 4
        # END, OVERCURRENT, POWER_DOWN: F0 Fx FF FF
        if j + 4 > end:
            return 0
        name = {META_END: "end", META_OVERCURRENT: "overcurrent", META_POWER_DOWN: "info"}[kind]
        text = {META_END: "end of acquisition", META_OVERCURRENT: "overcurrent", META_POWER_DOWN: "target power down"}[kind]
        marks.append(Mark(pos, name, text))
        if kind == META_END:
            self._ended = True
        return 4 if buf[j + 2 : j + 4] == META_TAIL else 2


def _merge(chunks: list[np.ndarray], n: int, marks: list[Mark], rest: Parsed | None, errs: list[int]) -> Parsed:
    values = np.concatenate(chunks) if chunks else np.empty(0, np.float64)
    status = np.zeros(len(values), np.uint8)
    status[errs] = ERROR
    out = Parsed(values, status, marks)
    if rest is not None:
        for m in rest.marks:
            m.pos += n
        out = Parsed(np.concatenate((values, rest.values)), np.concatenate((status, rest.status)), marks + rest.marks)
    return out
