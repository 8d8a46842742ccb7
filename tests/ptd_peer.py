"""A scripted PTDaemon peer on loopback TCP for transcript tests.

Each connection has a script of (expected command, reply) steps, checked in order: a
different command, a missing one, or any command after the script is over is recorded and
fails `assert_complete()`. Replies: a str (one line), a list of lines, raw bytes (sent as
is, for garbage and truncated lines), a callable returning any of those, CLOSE (drop the
connection instead of answering) or SILENT (never answer, like a hung daemon).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

CLOSE = object()
SILENT = object()


class ScriptedPeer:
    def __init__(self, *connections: list[tuple[str, Any]], line_timeout_s: float = 20.0):
        self.connections = [list(c) for c in connections]
        self.line_timeout_s = line_timeout_s
        self.received: list[str] = []  # every command line, in order, over all connections
        self.problems: list[str] = []
        self.consumed = 0
        self.total = sum(len(c) for c in self.connections)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- the peer's side -----------------------------------------------------------------------
    def _accept(self) -> socket.socket | None:
        waited = 0.0
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                conn.settimeout(0.1)
                return conn
            except socket.timeout:
                waited += 0.1
                if waited > self.line_timeout_s:
                    self.problems.append("the client never connected")
                    return None
        return None

    def _readline(self, conn: socket.socket, buf: bytearray, limit_s: float | None) -> str | None:
        waited = 0.0
        while b"\n" not in buf:
            if self._stop.is_set():
                return None
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                waited += 0.1
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
        if not raw.endswith(b"\r"):
            self.problems.append(f"command not terminated by CR LF: {raw!r}")
        return raw.rstrip(b"\r").decode("ascii", "replace")

    def _run(self) -> None:
        for n, script in enumerate(self.connections, start=1):
            conn = self._accept()
            if conn is None:
                return
            self._conn = conn
            buf = bytearray()
            hung = False
            for expected, reply in script:
                line = self._readline(conn, buf, self.line_timeout_s)
                if line is None:
                    self.problems.append(f"connection {n}: expected {expected!r}, the client sent nothing more")
                    break
                self.received.append(line)
                if line != expected:
                    self.problems.append(f"connection {n}: expected {expected!r}, got {line!r}")
                    break
                self.consumed += 1
                if callable(reply):
                    reply = reply()
                if reply is CLOSE:
                    break
                if reply is SILENT:
                    hung = True
                    break
                if isinstance(reply, str):
                    reply = [reply]
                data = reply if isinstance(reply, bytes) else ("\r\n".join(reply) + "\r\n").encode("ascii")
                try:
                    conn.sendall(data)
                except OSError:
                    break
            else:
                # The script is over: anything more the client sends on this connection is a leftover.
                while True:
                    line = self._readline(conn, buf, None)
                    if line is None:
                        break
                    self.received.append(line)
                    self.problems.append(f"connection {n}: unexpected command after the script: {line!r}")
            if hung:
                while self._readline(conn, buf, None) is not None:
                    pass  # swallow until the client gives up
            try:
                conn.close()
            except OSError:
                pass
            self._conn = None

    # --- the test's side -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in (self._conn, self._sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def assert_complete(self) -> None:
        """Call after the client closed: waits for the peer to see the end, then checks."""
        self._thread.join(timeout=5)
        self.stop()
        assert not self.problems, "\n".join(self.problems)
        assert self.consumed == self.total, f"only {self.consumed} of {self.total} scripted exchanges happened; received {self.received}"
