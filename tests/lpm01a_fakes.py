"""A scripted serial port for LPM01A transcript tests: every write must be the next expected one."""

from __future__ import annotations

import time
from collections import deque

from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource


def ack(command: str, payload: str = "") -> bytes:
    """The board's acknowledgement, spelled out here (not with the driver's own encoder)."""
    return b"\r\nPowerShield > ack " + command.encode() + (b" " + payload.encode() if payload else b"") + b"\r\n\r\n"


class ScriptedSerial:
    """Expects exactly the scripted writes, in order, and answers each with its reply bytes.

    `stream` (optional) is sent again and again while the board is 'acquiring' (before the
    transcript's stop), to play a board someone left streaming. `assert_done()` fails on
    unsent expected writes and on reply bytes nobody read (whitespace aside).
    """

    def __init__(self, script: list[tuple[bytes, bytes]], stream: bytes = b""):
        self.script = deque(script)
        self.rx = bytearray()
        self.stream = stream
        self.writes: list[bytes] = []
        self.closed = False

    @property
    def in_waiting(self) -> int:
        self._pump()
        return len(self.rx)

    def _pump(self) -> None:
        if self.stream and len(self.rx) < 4096:
            self.rx += self.stream

    def read(self, n: int = 1) -> bytes:
        assert not self.closed, "read after close"
        self._pump()
        if not self.rx:
            time.sleep(0.002)  # a real port would block up to its timeout
            return b""
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def write(self, data: bytes) -> int:
        assert not self.closed, f"write {data!r} after close"
        self.writes.append(data)
        assert self.script, f"unexpected write {data!r}: the transcript is over"
        expected, reply = self.script.popleft()
        assert data == expected, f"wrote {data!r}, the transcript expects {expected!r}"
        if data == b"stop\r\n":
            self.stream = b""
            self.rx.clear()
        self.rx += reply
        return len(data)

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def close(self) -> None:
        self.closed = True

    def assert_done(self, driver: Lpm01aSource | None = None) -> None:
        assert not self.script, f"expected writes never sent: {[w for w, _ in self.script]}"
        left = bytes(self.rx) + (driver._rx if driver is not None else b"")
        assert left.strip(b"\r\n") == b"", f"reply bytes left unread: {left!r}"


class ScriptedLpm01a(Lpm01aSource):
    """The real driver, with the serial port replaced by a ScriptedSerial."""

    def __init__(self, port: ScriptedSerial, **options):
        options.setdefault("port", "/dev/fake-lpm01a")
        super().__init__("dut", Lpm01aOptions(**options))
        self.fake = port

    def _make_port(self):
        return self.fake


def setup_script(freq: str = "1k", output: str = "energy", fmt: str = "ascii_dec", volt: str = "3300m", extra_after_start: bytes = b"") -> list[tuple[bytes, bytes]]:
    """MLPerf Tiny's set-up as the driver sends it with default options, each acknowledged."""
    cmds = ["htc", "powershield", "version", "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "acqmode dyn", f"output {output}", f"format {fmt}", f"freq {freq}", f"volt {volt}", "pwr on nostatus", "start"]
    payload = {"powershield": "PowerShield present 0038003B3436510D31353235", "version": "1.0.6"}
    script = [(c.encode() + b"\r\n", ack(c, payload.get(c, ""))) for c in cmds]
    script[-1] = (script[-1][0], script[-1][1] + extra_after_start)
    return script


COMPLETED = b"end\r\n\r\nPowerShield > Acquisition completed\r\n"


def teardown_script() -> list[tuple[bytes, bytes]]:
    return [(b"stop\r\n", COMPLETED), (b"pwr off\r\n", ack("pwr off")), (b"hrc\r\n", ack("hrc"))]
