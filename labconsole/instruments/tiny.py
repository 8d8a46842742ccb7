"""The MLPerf Tiny device-under-test serial protocol, and the IO manager in front of it.

Shared by the host-side client (`labconsole.sources.tiny_dut`) and the emulator
(`labconsole.emulators.tiny_dut`). Facts (reference/tiny.md 1.1-1.5, from
mlcommons/tiny benchmark/api/internally_implemented.cpp and benchmark/runner):
- host commands end with `%` (no CR/LF); tokens split on one space; the DUT's buffer is 80 chars;
- every reply ends with `m-ready`; unknown commands get `e-[Unknown command: <tok>]`;
- boot: `m-timestamp-mode-energy|performance`, one th_timestamp() (an edge in energy mode),
  `m-init-done`, `m-ready`;
- `db load N` (`m-[Expecting N bytes]`) then `db <hex>` chunks appended in order
  (`m-load-done` when N bytes arrived); at most 96*96*3 bytes;
- `infer N W`: `m-warmup-start-W`, `m-warmup-done`, `m-infer-start-N`, timestamp, N inferences,
  timestamp, `m-infer-done`, `m-results-[...]`; performance mode prints `m-lap-us-<µs>` as
  the timestamp;
- IO manager (interface board): `dut <cmd>` answers `m-dut-passthrough(<cmd>)`, `m-ready`, then
  the DUT's lines prefixed `[dut]: `; `setbaud <baud>` sets the DUT-side UART.
"""

from __future__ import annotations

import re

TERMINATOR = "%"
READY = "m-ready"
CMD_MAX = 80  # EE_CMD_SIZE: longer commands are truncated by the DUT
MAX_DB_INPUT = 96 * 96 * 3  # MAX_DB_INPUT_SIZE
DB_CHUNK_DIRECT = 31  # bytes per `db` command talking to the DUT directly (device_under_test.py)
DB_CHUNK_VIA_IO = 26  # through the interface board, so `dut db <52 hex>` fits the 80-char buffers
DUT_PREFIX = "[dut]: "
ENERGY_BAUD = 9600  # DUT <-> IO manager in energy mode (fixed: level shifters)
IO_BAUD = 115200  # IO manager <-> host
PERF_BAUD = 115200  # DUT <-> host in performance mode
IO_NAME = "tinyML Enhanced Interface Board"
API_PROFILE = "ULPMark for tinyML Firmware V0.0.1"
DEFAULT_WARMUPS = 10  # `infer N` without W

# USB IDs as the MLCommons runner's devices_*.yaml lists them
USB_IDS = {
    "lpm01a": (0x0483, 0x5740),
    "stm32h573i-dk": (0x0483, 0x374E),
    "arduino": (0x2341, None),
    "l4r5zi": (0x0483, 0x374B),
}


INIT_DONE = "m-init-done"
LOAD_DONE = "m-load-done"
INFER_DONE = "m-infer-done"
WARMUP_DONE = "m-warmup-done"


def msg_expecting(n: int) -> str:
    return f"m-[Expecting {n} bytes]"


def msg_boot_mode(mode: str) -> str:
    return f"m-timestamp-mode-{mode}"


def msg_passthrough(cmd: str) -> str:
    return f"m-dut-passthrough({cmd})"


def msg_error(text: str) -> str:
    return f"e-[{text}]"


def command(text: str) -> bytes:
    """A host command as sent: the text and the terminator, nothing else."""
    if TERMINATOR in text or "\r" in text or "\n" in text:
        raise ValueError(f"a Tiny command may not contain %, CR or LF: {text!r}")
    return (text + TERMINATOR).encode("ascii")


def msg_name(vendor: str) -> str:
    return f"m-name-dut-[{vendor}]"


def msg_results(values: list[float]) -> str:
    return "m-results-[" + ",".join(f"{v:.3f}" for v in values) + "]"


def msg_lap_us(us: int) -> str:
    return f"m-lap-us-{int(us) & 0xFFFFFFFF}"


def db_chunks(data: bytes, via_io: bool) -> list[str]:
    """`db <hex>` commands that load `data`, as the MLCommons runner splits them."""
    size = DB_CHUNK_VIA_IO if via_io else DB_CHUNK_DIRECT
    return [f"db {data[i : i + size].hex()}" for i in range(0, len(data), size)]


_NAME = re.compile(r"^m-name-dut-\[([^\]]+)\]$")
_PROFILE = re.compile(r"^m-profile-\[([^\]]*)\]$")
_MODEL = re.compile(r"^m-model-\[([^\]]*)\]$")
_RESULTS = re.compile(r"^m-results-\[([^\]]*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_ERROR = re.compile(r"^e-\[(.*)\]$")


def strip_io(line: str) -> tuple[bool, str]:
    """(from the DUT?, the line without the IO manager's prefix)."""
    if line.startswith(DUT_PREFIX):
        return True, line[len(DUT_PREFIX) :]
    return False, line


def parse_name(line: str) -> str | None:
    m = _NAME.match(line)
    return m.group(1) if m else None


def parse_profile(line: str) -> str | None:
    m = _PROFILE.match(line)
    return m.group(1) if m else None


def parse_model(line: str) -> str | None:
    m = _MODEL.match(line)
    return m.group(1) if m else None


def parse_results(line: str) -> list[float] | None:
    m = _RESULTS.match(line)
    if not m:
        return None
    try:
        return [float(x) for x in m.group(1).split(",") if x.strip()]
    except ValueError:
        return None


def parse_lap_us(line: str) -> int | None:
    m = _LAP.match(line)
    return int(m.group(1)) if m else None


def parse_error(line: str) -> str | None:
    m = _ERROR.match(line)
    return m.group(1) if m else None
