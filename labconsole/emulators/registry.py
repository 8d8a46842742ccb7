"""Emulators a profile can ask the console to start for a source, and the `emulate` command.

A source in a profile may carry `emulator: {...}`: the console then starts the matching
loopback emulator before opening the source (on a free port on 127.0.0.1), merges the
emulator's address into the source's options, and stops it when the run ends.

Each emulator module provides:
    start(options: dict) -> EmulatorHandle      (in-process, for profiles and tests)
    main(argv: list[str]) -> int                (the `labconsole emulate NAME` command)
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import signal
import socket
import sys
import threading
from typing import Any, Callable, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

# emulator name (for `labconsole emulate NAME`) -> module
EMULATORS: dict[str, str] = {
    "wt310": "labconsole.emulators.wt310",
    "lpm01a": "labconsole.emulators.lpm01a",
    "ptd": "labconsole.emulators.ptd",
    "tiny-dut": "labconsole.emulators.tiny_dut",
    "redfish": "labconsole.emulators.redfish",
    "prometheus-fleet": "labconsole.emulators.prometheus",
    "ipmi": "labconsole.emulators.ipmi",
    "fleet": "labconsole.emulators.fleet",
}

# driver name (a profile's `driver:`) -> emulator name used when the source has `emulator:`
FOR_DRIVER: dict[str, str] = {
    "yokogawa": "wt310",
    "lpm01a": "lpm01a",
    "ptd": "ptd",
    "redfish": "redfish",
    "prometheus": "prometheus-fleet",
    "ipmi": "ipmi",
    "fleet": "fleet",
}


class EmulatorHandle(Protocol):
    def source_options(self) -> dict[str, Any]:
        """Options to merge into the source's `options:` so the driver reaches the emulator."""

    def stop(self) -> None: ...


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def validate_options(model: type[OptionsT], options: dict[str, Any] | None, what: str) -> OptionsT:
    """An emulator's options from a profile's `emulator:` block or a test; a ValueError naming
    every bad field ("WHAT options: field: reason; ...") otherwise."""
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{what} options: {problems}") from None


def module_for(name: str):
    try:
        return importlib.import_module(EMULATORS[name])
    except KeyError:
        raise KeyError(f"no emulator named {name!r} (known: {', '.join(sorted(EMULATORS)) or 'none'})") from None


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def listen_tcp(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """An emulator's listening socket (IPv6 when the address is), with a 0.2 s accept timeout
    so its accepting thread notices a stop; a bind failure names the address. The backlog is
    deep: with a short one a burst of connections overflows it, the kernel drops their SYNs
    and every later client waits out TCP's retransmission back-off (1, 3, 7, 15, 31 s)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        err = OSError(f"cannot listen on {host}:{port}: {exc.strerror}")
        err.errno = exc.errno  # the message without "[Errno N]"; the number kept for callers
        raise err from None
    sock.listen(backlog)
    sock.settimeout(0.2)
    return sock


def is_loopback(host: Any) -> bool:
    text = str(host).strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def loopback_problem(options: dict[str, Any]) -> str | None:
    """Why a profile's `emulator:` block may not be used as it is (it widens the listener)."""
    if "host" in options and not is_loopback(options["host"]):
        return (
            f"{options['host']!r}: an emulator a profile starts listens on this machine only (127.0.0.1, ::1); "
            "to serve other machines run `labconsole emulate NAME --host ADDRESS` and name its address in the source's options"
        )
    return None


def start_for_source(driver: str, options: dict[str, Any]) -> EmulatorHandle:
    if driver not in FOR_DRIVER:
        raise KeyError(f"driver {driver!r} has no emulator (emulators exist for: {', '.join(sorted(FOR_DRIVER)) or 'none'})")
    problem = loopback_problem(options)
    if problem:
        raise ValueError(f"emulator.host: {problem}")
    return module_for(FOR_DRIVER[driver]).start(options)


def serve_until_interrupted(announce: Callable[[], None], stop: Callable[[], None]) -> int:
    """`labconsole emulate NAME`'s serve loop: announce, serve until Ctrl-C or SIGTERM, stop; exit 0.

    Ctrl-C is caught from before the announcement on: a client that reads the address and
    interrupts at once still gets a clean stop, not the console's 'interrupted' (130).
    """
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        announce()
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop()
    return 0


def serve_from_key_values(name: str, argv: list[str] | None, start: Callable[[dict[str, Any]], Any]) -> int:
    """`labconsole emulate NAME [KEY=VALUE ...]` for the emulators configured like a profile's
    `emulator:` block (values in YAML): start with those options, print the source options that
    reach it as one JSON line, serve until Ctrl-C. `start(opts)` returns a handle with
    `source_options()` and `stop()`."""
    opts: dict[str, Any] = {}
    for arg in argv or []:
        key, sep, value = arg.partition("=")
        if not sep:
            print(f"labconsole emulate {name}: expected KEY=VALUE, got {arg!r}", file=sys.stderr)
            return 2
        opts[key] = yaml.safe_load(value)
    try:
        handle = start(opts)
    except (ValueError, OSError, RuntimeError) as exc:
        return startup_failure(name, exc, port_flag="port=")
    return serve_until_interrupted(lambda: print(json.dumps(handle.source_options()), flush=True), handle.stop)


def say(line: str, stream: Any = None) -> None:
    """One line in one write. An emulator's threads print its console lines while its main
    thread may warn on stderr, into one terminal or pipe; print() writes a text and its newline
    apart, so another thread's line could land between the two, splitting both."""
    out = sys.stdout if stream is None else stream
    out.write(line + "\n")
    out.flush()


def warn_if_reachable(host: Any, what: str = "this emulator") -> None:
    """The one warning of an emulator listening beyond loopback, on stderr."""
    if not is_loopback(host):
        say(f"warning: listening on {host}: other machines can reach {what}", sys.stderr)


def startup_failure(name: str, exc: BaseException, port_flag: str = "--port") -> int:
    """Every emulator's refusal to start, the same way: one line on stderr, exit status 2.
    A validation error becomes `FIELD: what is wrong` (its first problem), never pydantic's dump;
    a port in use suggests port 0."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "options"
            text = f"{where}: {first.get('msg')}"
        except (TypeError, IndexError, KeyError):
            text = str(exc).splitlines()[0]
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    hint = f" (pass {port_flag} 0 for a free port)" if "in use" in text else ""
    print(f"labconsole emulate {name}: {text}{hint}", file=sys.stderr, flush=True)
    return 2
