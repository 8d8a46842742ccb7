"""power-dev's `server.conf`, written from a profile and checked against what the official
checker accepts before the director starts.

The format is HEAD power-dev's (`ptd_client_server/lib/server.py` `ServerConfig`; see
reference/training-power.md §4): `[server]` ntpServer, listen, rangingMode; `[ptd]` ptd,
analyzerCount; one `[analyzerN]` per analyzer with deviceType, interfaceFlag, devicePort,
networkPort and the optional channel, dcFlag, gpibBoard. The shipped server.template.conf
still puts the analyzer keys under `[ptd]`, which HEAD refuses.

What compliance/check.py later fails a session for, said here before a run is spent on it:
a device type outside its list, a multichannel WT330 (77) without two channel numbers, and
(from the server's own PTD self-test, before the first session) a PTD version other than the
supported one or a meter model it does not know. power-dev itself needs one PTDaemon port per
analyzer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from labconsole.mlperf.powerdev import SUPPORTED_DEVICE_TYPES, SUPPORTED_MODEL, SUPPORTED_VERSION

MULTICHANNEL_DEVICES = (48, 59, 61, 77)  # power-dev server.py: these need `channel`
INTERFACE_FLAGS = ("", "-n", "-g", "-y", "-U")


@dataclass(frozen=True)
class Analyzer:
    device_type: int
    device_port: str
    network_port: int
    interface_flag: str = ""
    channel: tuple[int, ...] | None = None
    dc_flag: bool = False
    gpib_board: int | None = None


def analyzers_from(specs: Iterable[Any]) -> list[Analyzer]:
    """The profile's `director.analyzers` entries as `Analyzer`s."""
    return [
        Analyzer(
            int(a.device_type), str(a.device_port), int(a.network_port), a.interface_flag or "",
            tuple(a.channel) if a.channel else None, bool(a.dc_flag), a.gpib_board,
        )
        for a in specs
    ]


def render(ntp_server: str, listen_host: str, listen_port: int, ptd: str, analyzers: list[Analyzer], ranging_mode: str = "AUTO") -> str:
    lines = [
        "# Written by labconsole from the profile; power-dev's server.conf (HEAD format: [analyzerN]).",
        "[server]",
        f"ntpServer: {ntp_server}",
        f"listen: {listen_host} {listen_port}",
        f"rangingMode: {ranging_mode}",
        "",
        "[ptd]",
        f"ptd: {ptd}",
        f"analyzerCount: {len(analyzers)}",
    ]
    for i, a in enumerate(analyzers, start=1):
        lines += ["", f"[analyzer{i}]", f"deviceType: {a.device_type}", f"interfaceFlag: {a.interface_flag}", f"devicePort: {a.device_port}", f"networkPort: {a.network_port}"]
        if a.channel:
            lines.append("channel: " + ",".join(str(c) for c in a.channel))
        if a.dc_flag:
            lines.append("dcFlag: -D")
        if a.gpib_board is not None:
            lines.append(f"gpibBoard: {a.gpib_board}")
    return "\n".join(lines) + "\n"


def problems(analyzers: list[Analyzer], listen_port: int | None = None) -> list[str]:
    """What the official checker (or power-dev's server) would refuse in this configuration."""
    out: list[str] = []
    if not analyzers:
        out.append("no analyzer: the director needs at least one (director.analyzers)")
    supported = ", ".join(str(n) for n in sorted(SUPPORTED_DEVICE_TYPES))
    ports: dict[int, int] = {}
    for i, a in enumerate(analyzers, start=1):
        if a.device_type not in SUPPORTED_DEVICE_TYPES:
            out.append(f"analyzer {i}: device type {a.device_type} is not one the official checker accepts ('Device number {a.device_type} is not supported. Supported numbers are {supported}')")
        if a.device_type in MULTICHANNEL_DEVICES and not a.channel:
            out.append(f"analyzer {i}: device type {a.device_type} is multichannel: power-dev's server needs `channel`")
        if a.device_type == 77 and (not a.channel or len(a.channel) != 2):
            out.append(f"analyzer {i}: a multichannel WT330 (77) needs two channel numbers, or the checker fails it ('Expected multichannel mode ..., but got 1-channel')")
        if a.interface_flag not in INTERFACE_FLAGS:
            out.append(f"analyzer {i}: interface flag {a.interface_flag!r} is none of {', '.join(repr(f) for f in INTERFACE_FLAGS)}")
        if a.network_port and a.network_port in ports:
            out.append(f"analyzers {ports[a.network_port]} and {i} share PTDaemon port {a.network_port}: one PTDaemon, so one port, per analyzer")
        ports.setdefault(a.network_port, i)
        if listen_port and a.network_port == listen_port:
            out.append(f"analyzer {i}: PTDaemon port {a.network_port} is the server's own listen port")
    return out


# The server's PTD self-test, as its log says it: "Analyzer [1] recieved reply from ptd: 'Identify' ..."
_IDENTIFY_RE = re.compile(r"Analyzer \[(\d+)\] recieved reply from ptd: '(.*)'$")


def identify_problems(reply: str) -> list[str]:
    """A PTD Identify reply the checker would refuse: the version and the meter model, in the
    checker's own words."""
    out = []
    model = reply.split(",")[0]
    m = re.search(r"(?<=version=)(.+?)-", reply)
    version = "" if m is None else m.group(1)
    if version not in SUPPORTED_VERSION:
        out.append(f"PTD version {version!r} is not supported. Supported versions are {list(SUPPORTED_VERSION)}")
    if model not in SUPPORTED_MODEL:
        out.append(f"Power meter {model!r} is not supported. Only {', '.join(SUPPORTED_MODEL)} are supported.")
    return out


def identify_reply(server_log_message: str) -> tuple[int, str] | None:
    """(analyzer, reply) when a server log message is PTD's reply to Identify."""
    m = _IDENTIFY_RE.search(server_log_message)
    if m and "version=" in m.group(2):
        return int(m.group(1)), m.group(2)
    return None
