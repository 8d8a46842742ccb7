"""A loopback SNTP responder with a chosen clock offset, for tests and operator training."""

from __future__ import annotations

import socket
import threading
import time

from labconsole.instruments.sntp import PACKET, to_ntp


class SntpResponder:
    """A loopback SNTP server whose clock runs `offset_s` ahead of ours (tests, training).

    `stratum=0` answers every request with a kiss-o'-death ('RATE'); `leap=3` claims to be
    unsynchronised; `silent=True` never answers.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, offset_s: float = 0.0, stratum: int = 2, leap: int = 0, silent: bool = False):
        self.offset_s = offset_s
        self.stratum = stratum
        self.leap = leap
        self.silent = silent
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.address = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sntp-responder", daemon=True)

    @property
    def server(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def start(self) -> "SntpResponder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> "SntpResponder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _now(self) -> int:
        return to_ntp(time.time_ns() + int(self.offset_s * 1e9))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(512)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            if len(data) < 48:
                continue
            self.requests += 1
            if self.silent:
                continue
            recv = self._now()
            xmit_client = PACKET.unpack(data[:48])[10]
            refid = b"RATE" if self.stratum == 0 else b"LOCL"
            reply = PACKET.pack((self.leap << 6) | (4 << 3) | 4, self.stratum, 4, -20, 0, 0, refid, recv, xmit_client, recv, self._now())
            try:
                self._sock.sendto(reply, peer)
            except OSError:
                return
