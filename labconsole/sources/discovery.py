"""Ask every registered driver what is attached (the `labconsole discover` command and the setup
wizard print it: `labconsole.wizard.discover_command`).

Each driver's `discover(hints)` classmethod returns what it found (`Discovered`: driver, address,
model, serial, status, detail, and a profile snippet). It returns [] when there is nothing of its
kind, or raises `SourceUnavailable` to say why not (no NVIDIA driver, no powercap): that becomes a
note, not an entry. Any other exception, a missing package, or no answer within the time limit
becomes an entry with status `error`; discovery itself never crashes and never hangs.

The hints every driver receives (all keys optional; a driver uses those it understands):
  ptd             ["HOST:PORT", ...]  PTDaemon addresses (from --ptd and the profile)
  visa_resources  ["TCPIP::127.0.0.1::5025::SOCKET", "USB0::...", ...]  VISA resources the profile names
  serial_ports    ["/dev/ttyACM0", "COM3", ...]  serial ports the profile names
  pyvisa_sim      ["/path/meter.yaml", ...]  PyVISA-sim definitions (a profile's "PATH@sim")
  sources         [{"name", "driver", "options"}, ...]  the profile's sources as written
  rapl_root       the powercap folder when the profile sets one
  timeout_s       the limit for each single I/O exchange (seconds)
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labconsole.sources.base import Discovered, SourceUnavailable
from labconsole.sources.registry import driver_names, get_driver

DRIVER_TIME_LIMIT_S = 20.0  # each driver's discover() as a whole
IO_TIMEOUT_S = 2.0  # suggested to drivers for each exchange

# import name -> the package a person installs
PACKAGES = {"pynvml": "nvidia-ml-py", "pyvisa": "pyvisa", "pyvisa_py": "pyvisa-py", "pyvisa_sim": "pyvisa-sim", "serial": "pyserial"}

_VISA_RE = re.compile(r"^(TCPIP|USB|GPIB|ASRL|VXI|VICP|PRLGX-TCPIP|PRLGX-ASRL)\d*::", re.IGNORECASE)
_SERIAL_RE = re.compile(r"^(/dev/(tty|cu)[\w.-]+|/dev/serial/by-(id|path)/\S+|/dev/pts/\d+|COM\d+)$")


@dataclass
class DiscoveryResult:
    found: list[Discovered] = field(default_factory=list)  # finds, and drivers that failed (status error)
    notes: dict[str, str] = field(default_factory=dict)  # driver -> why it found nothing
    seconds: dict[str, float] = field(default_factory=dict)  # driver -> time its discover took


# ---------------------------------------------------------------------------------------------
# Hints


def add_hint(hints: dict[str, Any], key: str, value: str) -> None:
    items = hints.setdefault(key, [])
    if value not in items:
        items.append(value)


def hints_from_profile(profile: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """What a profile names that discovery should look at (addresses, ports, simulation files)."""
    hints: dict[str, Any] = {"sources": []}
    for src in profile.sources:
        options = dict(src.options or {})
        hints["sources"].append({"name": src.name, "driver": src.driver, "options": options})
        if src.driver == "ptd":
            host, port = options.get("host"), options.get("port")
            if isinstance(host, str) and isinstance(port, int):
                add_hint(hints, "ptd", f"{host}:{port}")
            addr = options.get("address")
            if isinstance(addr, str) and parse_hostport(addr):
                add_hint(hints, "ptd", addr)
        if src.driver == "rapl" and isinstance(options.get("root"), str):
            hints["rapl_root"] = options["root"]
        for value in _strings(options):
            if _VISA_RE.match(value):
                add_hint(hints, "visa_resources", value)
            elif _SERIAL_RE.match(value):
                add_hint(hints, "serial_ports", value)
            elif value.endswith("@sim") and value != "@sim":
                path = Path(value[: -len("@sim")])
                if base_dir is not None and not path.is_absolute():
                    path = base_dir / path
                add_hint(hints, "pyvisa_sim", str(path))
    return hints


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def parse_hostport(text: str) -> tuple[str, int] | None:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not 0 < int(port) < 65536:
        return None
    return host, int(port)


# ---------------------------------------------------------------------------------------------
# An instrument named by its address (never a scan: only what the operator typed is asked)

PTD_PORT = 8888  # PTDaemon's default -p (instruments.md §2.1)
YOKOGAWA_SOCKET_PORT = 5025  # labconsole.instruments.yokogawa.SOCKET_PORT (not imported: discovery stays light)


_VISA_TYPED_RE = re.compile(r"^(TCPIP|USB|GPIB|ASRL|VXI|VICP|PRLGX-TCPIP|PRLGX-ASRL)[^:\s]*::\S+$", re.IGNORECASE)  # ASRL/dev/ttyUSB0::INSTR too


def address_kind(text: str) -> str | None:
    """'visa' for a VISA resource (TCPIP::, GPIB, ASRL, USB...), 'hostport' for HOST:PORT, else None."""
    t = text.strip()
    if _VISA_TYPED_RE.match(t):
        return "visa"
    if parse_hostport(t):
        return "hostport"
    return None


def probe_address(address: str, timeout_s: float = IO_TIMEOUT_S) -> Discovered:
    """Ask one address for its identity: a VISA resource as a Yokogawa meter; a HOST:PORT as a
    PTDaemon, then (if no PTDaemon answers there) as a meter's raw SCPI socket. The answer is a
    `Discovered` with status `available` and the identity, or `error` and why."""
    address = address.strip()
    kind = address_kind(address)
    if kind is None:
        return Discovered("", address, status="error",
                          detail="not an address: give a VISA resource (TCPIP::HOST::INSTR, TCPIP::HOST::PORT::SOCKET, GPIB0::N::INSTR, ASRL/dev/ttyUSB0::INSTR) or a PTDaemon HOST:PORT")
    try:
        if kind == "visa":
            return get_driver("yokogawa").probe_address(address, timeout_s)
        ptd = get_driver("ptd").probe_address(address, timeout_s)
        if ptd.status == "available" or "connection refused" in ptd.detail:
            return ptd
        host, port = parse_hostport(address)  # type: ignore[misc]
        meter = get_driver("yokogawa").probe_address(f"TCPIP::{host}::{port}::SOCKET", timeout_s)
        if meter.status == "available":
            return meter
        return Discovered(ptd.driver, address, status=ptd.status, detail=f"{ptd.detail}; as a meter's SCPI socket: {meter.detail}")
    except ImportError as exc:
        return Discovered("", address, status="error", detail=_missing_package(exc))
    except Exception as exc:  # noqa: BLE001 - a probe never crashes the caller
        return Discovered("", address, status="error", detail=f"{type(exc).__name__}: {exc}")


def host_addresses(host: str) -> list[str]:
    """What `discover --host HOST[:PORT]` asks: with a port, that port (PTDaemon, then a meter's
    socket); without, VXI-11, the Yokogawa socket port and PTDaemon's default port."""
    hp = parse_hostport(host)
    if hp is not None:
        return [f"{hp[0]}:{hp[1]}"]
    h = host.strip().strip("[]")
    hh = f"[{h}]" if ":" in h else h
    return [f"TCPIP::{h}::INSTR", f"TCPIP::{h}::{YOKOGAWA_SOCKET_PORT}::SOCKET", f"{hh}:{PTD_PORT}"]


def probe_addresses(addresses: list[str], timeout_s: float = IO_TIMEOUT_S, time_limit_s: float | None = None) -> list[Discovered]:
    """`probe_address` for each, at once (threads), each answer in the order asked."""
    limit = time_limit_s if time_limit_s is not None else 3 * timeout_s + 2
    boxes: list[dict[str, Any]] = [{} for _ in addresses]

    def one(addr: str, box: dict[str, Any]) -> None:
        box["d"] = probe_address(addr, timeout_s)

    threads = [threading.Thread(target=one, args=(a, b), name=f"probe-{a}", daemon=True) for a, b in zip(addresses, boxes)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit
    out = []
    for addr, t, box in zip(addresses, threads, boxes):
        t.join(max(0.0, deadline - time.monotonic()))
        out.append(box.get("d") or Discovered("", addr, status="error", detail=f"no answer within {limit:g} s"))
    return out


# ---------------------------------------------------------------------------------------------
# Running the drivers


def _missing_package(exc: ImportError) -> str:
    name = (exc.name or "").split(".")[0]
    package = PACKAGES.get(name, name or "?")
    return f"a package it needs is missing ({name or exc}): pip install {package}"


def _run_driver(name: str, hints: dict[str, Any], box: dict[str, Any]) -> None:
    started = time.monotonic()
    try:
        cls = get_driver(name)
        result = cls.discover(hints)
        entries = []
        for item in result or []:
            if not isinstance(item, Discovered):
                raise TypeError(f"discover() returned {type(item).__name__}, not Discovered")
            if not item.driver:
                item.driver = name
            entries.append(item)
        box["found"] = entries
    except ImportError as exc:
        box["error"] = _missing_package(exc)
    except SourceUnavailable as exc:
        box["absent"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - one driver's failure must not stop the others
        box["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        box["seconds"] = time.monotonic() - started


def discover_everything(hints: dict[str, Any] | None = None, drivers: list[str] | None = None, time_limit_s: float | None = None) -> DiscoveryResult:
    """Every driver's discover(), concurrently, each given `time_limit_s` (threads are daemons:
    a driver stuck in I/O is reported and left behind, never waited for at exit)."""
    if time_limit_s is None:
        time_limit_s = DRIVER_TIME_LIMIT_S
    hints = dict(hints or {})
    hints.setdefault("timeout_s", IO_TIMEOUT_S)
    names = drivers if drivers is not None else driver_names()
    boxes: dict[str, dict[str, Any]] = {n: {} for n in names}
    threads = {}
    for n in names:
        t = threading.Thread(target=_run_driver, args=(n, hints, boxes[n]), name=f"discover-{n}", daemon=True)
        t.start()
        threads[n] = t
    deadline = time.monotonic() + time_limit_s
    out = DiscoveryResult()
    for n in names:
        threads[n].join(max(0.0, deadline - time.monotonic()))
        box = boxes[n]
        if threads[n].is_alive():
            out.found.append(Discovered(driver=n, address="", status="error", detail=f"no answer within {time_limit_s:g} s; skipped"))
            out.seconds[n] = time_limit_s
            continue
        out.seconds[n] = box.get("seconds", 0.0)
        if "error" in box:
            out.found.append(Discovered(driver=n, address="", status="error", detail=box["error"]))
        elif "absent" in box:
            out.notes[n] = box["absent"]
        else:
            out.found.extend(box.get("found", []))
    return out


def discover_all(hints: dict[str, Any] | None = None) -> list[Discovered]:
    """What every registered driver found (errors included as entries with status `error`)."""
    return discover_everything(hints).found


# ---------------------------------------------------------------------------------------------
# The command
