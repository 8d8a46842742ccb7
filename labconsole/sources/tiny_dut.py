"""The host side of an MLPerf Tiny device under test: commands over pyserial, replies parsed.

Not a power source: the DUT is what the LPM01A measures. `TinyDut` talks to it directly
(performance mode) or through an IO manager (energy mode: `dut <cmd>`, replies prefixed
`[dut]: `), waiting for the DUT's `m-ready` after each command. Every line in and out goes to
`log` (the session's log.txt). Protocol: `labconsole.instruments.tiny`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from labconsole.instruments import tiny as tp


class DutError(RuntimeError):
    """The DUT did not answer as the protocol says (message names the command)."""


class DutAborted(DutError):
    """`abort()` was called while waiting for the DUT."""


@dataclass
class Reply:
    command: str
    lines: list[str] = field(default_factory=list)  # the DUT's lines, prefix stripped
    errors: list[str] = field(default_factory=list)  # `e-[...]` texts


class TinyDut:
    def __init__(self, port: str, baud: int = tp.IO_BAUD, via_io: bool = True, timeout_s: float = 5.0, log: Callable[[str], None] | None = None, serial_factory: Any = None):
        self.port, self.baud, self.via_io, self.timeout_s = port, baud, via_io, timeout_s
        self._log = log or (lambda line: None)
        self._factory = serial_factory
        self._ser: Any = None
        self._rx = ""
        self.boot_lines: list[str] = []
        self._abort = threading.Event()
        self.abort_reason = ""

    def abort(self, reason: str = "aborted") -> None:
        """Stop waiting for the DUT (any thread): the wait in progress raises DutAborted."""
        self.abort_reason = reason
        self._abort.set()

    def open(self) -> None:
        if self._factory is not None:
            self._ser = self._factory(self.port, self.baud)
        else:
            import serial  # deferred: `labconsole --help` and runs without a DUT never need pyserial

            try:
                self._ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.02, write_timeout=2)
            except (serial.SerialException, ValueError) as exc:
                raise DutError(f"DUT port {self.port}: {exc}") from None

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    # -- lines ----------------------------------------------------------------------------------
    def _line(self, deadline: float) -> str | None:
        while "\n" not in self._rx:
            if self._abort.is_set():
                raise DutAborted(self.abort_reason)
            if time.monotonic() > deadline:
                return None
            data = self._ser.read(4096)
            if data:
                self._rx += data.decode("ascii", "replace")
        line, self._rx = self._rx.split("\n", 1)
        line = line.strip("\r\x00 ")
        return line

    def drain(self, seconds: float = 0.2) -> list[str]:
        """Lines that came unasked (the DUT's boot messages), for the log."""
        out = []
        deadline = time.monotonic() + seconds
        while (line := self._line(deadline)) is not None:
            if line:
                self._log(f"<- {line}")
                out.append(tp.strip_io(line)[1])
        self.boot_lines += out
        return out

    def wait_for(self, text: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (line := self._line(deadline)) is not None:
            if line:
                self._log(f"<- {line}")
                self.boot_lines.append(tp.strip_io(line)[1])
                if tp.strip_io(line)[1] == text:
                    return True
        return False

    def io(self, text: str, timeout_s: float | None = None) -> list[str]:
        """An IO manager command (not for the DUT): its lines up to `m-ready`."""
        self._send(text)
        return self._until_ready(text, timeout_s, from_dut=False).lines

    def command(self, text: str, timeout_s: float | None = None) -> Reply:
        """A DUT command (through the IO manager when there is one): the DUT's lines up to its m-ready."""
        self._send(f"dut {text}" if self.via_io else text)
        if self.via_io:
            ack = self._until_ready(text, timeout_s, from_dut=False)
            if tp.msg_passthrough(text) not in ack.lines:
                raise DutError(f"IO manager did not pass `{text}` through (said: {ack.lines})")
        return self._until_ready(text, timeout_s, from_dut=True)

    def _send(self, text: str) -> None:
        self._log(f"-> {text}")
        self._ser.write(tp.command(text))
        self._ser.flush()

    def _until_ready(self, text: str, timeout_s: float | None, from_dut: bool) -> Reply:
        reply = Reply(text)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            line = self._line(deadline)
            if line is None:
                raise DutError(f"`{text}`: no m-ready from the {'DUT' if from_dut else 'IO manager'} in {timeout_s or self.timeout_s:g} s (got {reply.lines[-5:]})")
            if not line:
                continue
            self._log(f"<- {line}")
            dut, body = tp.strip_io(line)
            if self.via_io and dut != from_dut:
                continue  # the other party's line (the IO manager's own, or a late DUT line)
            if body == tp.READY:
                return reply
            err = tp.parse_error(body)
            if err is not None:
                reply.errors.append(err)
            reply.lines.append(body)

    # -- the benchmark's commands ------------------------------------------------------------------
    def identify(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ln in self.command("name").lines:
            if (v := tp.parse_name(ln)) is not None:
                out["name"] = v
        for ln in self.command("profile").lines:
            if (v := tp.parse_profile(ln)) is not None:
                out["profile"] = v
            if (v := tp.parse_model(ln)) is not None:
                out["model"] = v
        if "name" not in out:
            raise DutError("`name`: no m-name-dut-[...] line")
        return out

    def load(self, data: bytes) -> None:
        r = self.command(f"db load {len(data)}")
        if r.errors or not tp.msg_expecting(len(data)) in r.lines:
            raise DutError(f"`db load {len(data)}`: {r.errors or r.lines}")
        done = False
        for chunk in tp.db_chunks(data, self.via_io):
            r = self.command(chunk)
            if r.errors:
                raise DutError(f"`db`: {r.errors}")
            done = done or tp.LOAD_DONE in r.lines
        if not done:
            raise DutError(f"`db`: no m-load-done after {len(data)} bytes")

    def infer(self, n: int, warmups: int, timeout_s: float) -> Reply:
        r = self.command(f"infer {n} {warmups}", timeout_s=timeout_s)
        if r.errors:
            raise DutError(f"`infer {n} {warmups}`: {r.errors}")
        if tp.INFER_DONE not in r.lines:
            raise DutError(f"`infer {n} {warmups}`: no m-infer-done ({r.lines[-5:]})")
        return r
