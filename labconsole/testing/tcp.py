"""The TCP transport: a scripted peer on loopback TCP, for drivers that dial a line protocol.

`ScriptedServer(*transcripts)` listens on 127.0.0.1 (a free port: `.port`, `.address`) and
plays one transcript per connection, in order: the driver's first connection gets the first,
a reconnect the second. Commands are lines; each must end with `eol` (CR LF by default). What
a reply does:

* str: sent as one line (`eol` appended); a list of str: several lines;
* bytes: sent exactly as they are (garbage, a truncated line);
* None: nothing is sent;
* TIMEOUT: the peer goes silent: it swallows whatever comes until the driver hangs up;
* CLOSE: the peer closes the connection instead of answering.

The peer runs in its own thread, so what goes wrong there (a wrong command, a command after
the transcript, a driver that never connects or stops sending) is recorded, not raised; it
fails `assert_done()`, which waits for the driver to hang up first:

    from labconsole.testing.tcp import ScriptedServer
    from labconsole.testing.transcript import CLOSE

    def test_reconnects_after_a_drop():
        peer = ScriptedServer([("Hello", "Hi"), ("Read", CLOSE)], [("Hello", "Hi"), ("Read", "1.5")])
        try:
            client = MyClient(port=peer.port)
            ...
            client.close()
            peer.assert_done()
        finally:
            peer.stop()
"""

from __future__ import annotations

import socket
import threading
from typing import Iterable

from labconsole.testing.transcript import CLOSE, TIMEOUT, Exchange, Transcript, TranscriptError, as_transcript

_POLL_S = 0.1


class ScriptedServer:
    def __init__(self, *connections: Transcript | Iterable[Exchange], eol: str = "\r\n", line_timeout_s: float = 20.0, encoding: str = "ascii"):
        """`line_timeout_s`: how long the peer waits for the driver to connect or send its next command."""
        several = len(connections) > 1
        self.transcripts = [as_transcript(c, f"connection {n}" if several else "") for n, c in enumerate(connections, start=1)]
        self.eol = eol.encode(encoding)
        self.encoding = encoding
        self.line_timeout_s = line_timeout_s
        self.received: list[str] = []  # every command line, in order, over all connections
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(_POLL_S)
        self.port: int = self._sock.getsockname()[1]
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"scripted-tcp-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- the peer's side -----------------------------------------------------------------------
    def _accept(self, transcript: Transcript) -> socket.socket | None:
        waited = 0.0
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                conn.settimeout(_POLL_S)
                return conn
            except socket.timeout:
                waited += _POLL_S
                if waited > self.line_timeout_s:
                    transcript.note("the driver never connected")
                    return None
        return None

    def _readline(self, conn: socket.socket, buf: bytearray, transcript: Transcript, limit_s: float | None) -> str | None:
        """The next command line (None: the driver hung up, went quiet for limit_s, or stop())."""
        waited = 0.0
        while b"\n" not in buf:
            if self._stop.is_set():
                return None
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                waited += _POLL_S
                if limit_s is not None and waited > limit_s:
                    return None
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        raw, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        raw += b"\n"
        if not raw.endswith(self.eol):
            transcript.note(f"command not terminated by {self.eol!r}: {raw!r}")
        line = raw[: -len(self.eol)] if raw.endswith(self.eol) else raw.rstrip(b"\n")
        return line.decode(self.encoding, "replace")

    def _encode(self, reply: str | list[str] | bytes) -> bytes:
        if isinstance(reply, bytes):
            return reply
        lines = [reply] if isinstance(reply, str) else list(reply)
        return b"".join(line.encode(self.encoding) + self.eol for line in lines)

    def _serve(self, conn: socket.socket, transcript: Transcript) -> None:
        buf = bytearray()
        while transcript.left:
            line = self._readline(conn, buf, transcript, self.line_timeout_s)
            if line is None:
                transcript.note(f"expected {transcript.left[0][0]!r}, the driver sent nothing more")
                return
            self.received.append(line)
            try:
                reply = transcript.expect(line)
            except TranscriptError:
                return  # recorded; the driver sees the connection close
            if reply is CLOSE:
                return
            if reply is TIMEOUT:
                while self._readline(conn, buf, transcript, None) is not None:
                    pass  # a hung peer: swallow until the driver gives up
                return
            if reply is None:
                continue
            try:
                conn.sendall(self._encode(reply))
            except OSError:
                return
        # The transcript is over: anything more the driver sends on this connection is a leftover.
        while (line := self._readline(conn, buf, transcript, None)) is not None:
            self.received.append(line)
            try:
                transcript.expect(line)
            except TranscriptError:
                pass  # recorded

    def _run(self) -> None:
        for transcript in self.transcripts:
            conn = self._accept(transcript)
            if conn is None:
                return
            self._conn = conn
            try:
                self._serve(conn, transcript)
            finally:
                try:
                    conn.close()
                except OSError:
                    pass
                self._conn = None

    # --- the test's side -----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop listening and drop any connection (safe to call twice; a fixture's teardown)."""
        self._stop.set()
        self._thread.join(timeout=10)
        for s in (self._conn, self._sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def assert_done(self) -> None:
        """Call after the driver hung up: waits for the peer to see the end, then checks every
        connection's transcript."""
        self._thread.join(timeout=5)
        self.stop()
        problems = []
        for transcript in self.transcripts:
            try:
                transcript.assert_done()
            except TranscriptError as exc:
                problems.append(str(exc))
        if problems:
            raise TranscriptError("\n".join(problems))
