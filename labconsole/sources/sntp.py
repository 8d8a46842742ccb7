"""Clock offset of this host against an NTP server: a small SNTP client (RFC 4330). The loopback
responder for tests and operator training is `labconsole.emulators.sntp`.

MLPerf Power requires the SUT and the meter host to be within 400 ms of the configured NTP
server (mlcommons/power-dev: ptd_client_server/lib/time_sync.py, CRITICAL_DIFFERENCE_TIME_MS),
because LoadGen's UTC power window is matched against the meter's UTC timestamps. power-dev
bundles ntplib for this; one request/response of 48 bytes does not need a dependency.

The client sends several requests and keeps the one with the smallest round-trip delay (the
sample least disturbed by queueing, NTP's own clock-filter idea), and rejects replies that do
not answer our request (originate timestamp), kiss-o'-death replies and unsynchronised servers.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass

from labconsole.instruments.sntp import NTP_PORT, PACKET, from_ntp, to_ntp


class NtpError(RuntimeError):
    """The server did not give a usable time (message says why)."""


@dataclass
class SntpResult:
    server: str
    offset_s: float  # server clock minus ours: + means our clock is behind
    delay_s: float  # round trip minus the server's processing time
    stratum: int
    leap: int
    samples: int  # replies used to pick the best one

    def as_dict(self) -> dict:
        return asdict(self)


def parse_server(text: str, default_port: int = NTP_PORT) -> tuple[str, int]:
    """'host', 'host:port', '[v6addr]:port' or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if not text:
        raise ValueError("empty NTP server name")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            return host, _port(rest[1:], text)
        return host, default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, default_port


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{whole!r}: the port must be a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{whole!r}: port out of range")
    return port


def query_once(sock: socket.socket, addr: tuple, timeout: float) -> tuple[float, float, int, int]:
    """One exchange: returns (offset s, delay s, stratum, leap)."""
    t1_ns = time.time_ns()
    request = PACKET.pack(0x23, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, to_ntp(t1_ns))  # LI 0, VN 4, mode 3
    sock.settimeout(timeout)
    sock.sendto(request, addr)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no reply")
        sock.settimeout(left)
        data, _ = sock.recvfrom(512)
        t4_ns = time.time_ns()
        if len(data) < 48:
            continue  # not an NTP reply; keep waiting for ours
        first, stratum, _poll, _prec, _rd, _rdisp, refid, _ref, orig, recv, xmit = PACKET.unpack(data[:48])
        if orig != to_ntp(t1_ns):
            continue  # an answer to some other request (late or forged): not ours
        break
    leap, mode = first >> 6, first & 0x7
    if mode != 4:
        raise NtpError(f"reply has mode {mode}, not 4 (server)")
    if stratum == 0:
        code = refid.decode("ascii", "replace").strip("\0")
        raise NtpError(f"kiss-o'-death from the server ({code or 'no code'}): it refuses to serve time now")
    if leap == 3 or stratum >= 16:
        raise NtpError("the server says its own clock is not synchronised")
    if xmit == 0:
        raise NtpError("reply without a transmit timestamp")
    t1, t4 = t1_ns / 1e9, t4_ns / 1e9
    t2, t3 = from_ntp(recv), from_ntp(xmit)
    offset = ((t2 - t1) + (t3 - t4)) / 2.0
    delay = (t4 - t1) - (t3 - t2)
    return offset, delay, stratum, leap


def sntp_offset(server: str, samples: int = 4, timeout_s: float = 1.0) -> SntpResult:
    """Offset of our clock against `server` ('host[:port]'); raises NtpError when unusable."""
    try:
        host, port = parse_server(server)
    except ValueError as exc:
        raise NtpError(str(exc)) from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise NtpError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    family, _, _, _, addr = infos[0]
    best: tuple[float, float, int, int] | None = None
    got = 0
    problems: list[str] = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for _ in range(max(1, samples)):
            try:
                res = query_once(sock, addr, timeout_s)
            except (socket.timeout, TimeoutError):
                problems.append(f"no reply within {timeout_s:g} s")
                continue
            except NtpError as exc:
                problems.append(str(exc))
                continue
            except OSError as exc:
                problems.append(exc.strerror or str(exc))
                continue
            got += 1
            if best is None or res[1] < best[1]:
                best = res
    if best is None:
        detail = problems[-1] if problems else "no reply"
        raise NtpError(f"NTP server {server}: {detail}")
    return SntpResult(server=server, offset_s=best[0], delay_s=best[1], stratum=best[2], leap=best[3], samples=got)
