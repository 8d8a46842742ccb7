"""The serial transport: a scripted pyserial port, for drivers that talk to a board over a tty.

`ScriptedSerial(transcript)` has the part of pyserial's `Serial` a driver uses (`write`,
`read`, `in_waiting`, `reset_input_buffer`, `close`). Each `write` must be the transcript's
next command, as bytes and whole (a driver that writes one command in pieces needs its
transcript to list the pieces); its reply joins the bytes waiting to be read. What a reply does:

* bytes (or str, encoded as ASCII): appended to what the port has to read, exactly as given:
  the protocol's framing is part of the transcript;
* None or TIMEOUT: nothing arrives; `read` returns b"" as a real port does at its timeout;
* CLOSE: the board is unplugged: every later call raises serial.SerialException.

`stream` plays a board that is already sending when the driver opens the port (one left
acquiring): those bytes arrive again and again until the driver's first write.

`assert_done()` fails on an exchange that never happened and on reply bytes nobody read
(line ends aside: `idle_bytes`). A driver whose port is made by a method can be given the
fake by overriding it:

    from labconsole.testing.serial_port import ScriptedSerial

    class ScriptedBoard(MyBoardSource):
        def __init__(self, port: ScriptedSerial):
            super().__init__("dut", MyBoardSource.Options(port="/dev/fake"))
            self.fake = port

        def _make_port(self):
            return self.fake

    def test_setup():
        src = ScriptedBoard(ScriptedSerial([(b"hello\\r\\n", b"ok\\r\\n"), (b"bye\\r\\n", b"ok\\r\\n")]))
        src.open()
        src.close()
        src.fake.assert_done()
"""

from __future__ import annotations

import time
from typing import Iterable

import serial

from labconsole.testing.transcript import CLOSE, TIMEOUT, Exchange, Transcript, as_transcript

_READ_WAIT_S = 0.002  # an empty read waits this long, as a real port blocks up to its timeout
_STREAM_AHEAD = 4096  # bytes of `stream` kept waiting to be read


class ScriptedSerial:
    def __init__(self, exchanges: Transcript | Iterable[Exchange], stream: bytes = b"", idle_bytes: bytes = b"\r\n"):
        self.transcript = as_transcript(exchanges)
        self.stream = stream
        self.idle_bytes = idle_bytes
        self.rx = bytearray()  # sent by the board, not yet read by the driver
        self.closed = False
        self.unplugged = False

    def _check(self, what: str) -> None:
        if self.closed:
            self.transcript.fail(f"{what} after close")
        if self.unplugged:
            raise serial.SerialException("device reports readiness to read but returned no data (device disconnected or multiple access on port?)")

    def _pump(self) -> None:
        if self.stream and len(self.rx) < _STREAM_AHEAD:
            self.rx += self.stream

    @property
    def in_waiting(self) -> int:
        self._check("in_waiting")
        self._pump()
        return len(self.rx)

    def read(self, n: int = 1) -> bytes:
        self._check("read")
        self._pump()
        if not self.rx:
            time.sleep(_READ_WAIT_S)
            return b""
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def write(self, data: bytes) -> int:
        self._check(f"write {data!r}")
        self.stream = b""  # a command ends whatever the board was streaming on its own
        reply = self.transcript.expect(bytes(data))
        if reply is CLOSE:
            self.unplugged = True
        elif reply is not None and reply is not TIMEOUT:
            self.rx += reply.encode("ascii") if isinstance(reply, str) else reply
        return len(data)

    def reset_input_buffer(self) -> None:
        self._check("reset_input_buffer")
        self.rx.clear()

    def close(self) -> None:
        self.closed = True

    def assert_done(self, buffered: bytes = b"") -> None:
        """`buffered`: bytes the driver read from the port but did not use; they count as unread."""
        left = bytes(self.rx) + bytes(buffered)
        if left.strip(self.idle_bytes):
            self.transcript.note(f"reply bytes left unread: {left!r}", self.transcript.position)
            self.rx.clear()
        self.transcript.assert_done()
