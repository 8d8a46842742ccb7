"""`labconsole discover`: what every driver found, and how to use it (or, with nothing
attached, the simulated bench and the emulators).

It sits above both the drivers and the emulators: drivers never import emulators."""

from __future__ import annotations

import sys
from typing import Any

from labconsole.emulators.registry import EMULATORS
from labconsole.events import to_json
from labconsole.sources.discovery import (
    DiscoveryResult,
    add_hint,
    address_kind,
    discover_everything,
    host_addresses,
    hints_from_profile,
    parse_hostport,
    probe_addresses,
)

EXIT_OK, EXIT_USAGE = 0, 2


def _snippet_yaml(snippet: dict[str, Any], indent: str) -> str:
    import yaml

    text = yaml.safe_dump([snippet], sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "".join(indent + line + "\n" for line in text.rstrip("\n").splitlines())


def format_human(result: DiscoveryResult) -> str:
    lines: list[str] = []
    finds = [d for d in result.found if d.status != "error" or d.address]
    failures = [d for d in result.found if d.status == "error" and not d.address]
    for d in finds:
        title = " ".join(p for p in (d.model or "?", f"s/n {d.serial}" if d.serial else "") if p)
        lines.append(f"[{d.status}] {d.driver}: {title}")
        if d.address:
            lines.append(f"    address: {d.address}")
        if d.detail:
            lines.append(f"    {d.detail}")
        if d.profile_snippet and d.status in ("available", "busy", "no-permission"):
            lines.append("    in a profile, under `sources:`")
            lines.append(_snippet_yaml(d.profile_snippet, "      ").rstrip("\n"))
        lines.append("")
    if failures:
        lines.append("Drivers that failed to look:")
        lines.extend(f"  {d.driver}: {d.detail}" for d in failures)
        lines.append("")
    if result.notes:
        lines.append("Not found:")
        lines.extend(f"  {drv}: {why}" for drv, why in sorted(result.notes.items()))
        lines.append("")
    if not finds:
        lines.append("Nothing attached was found.")
        if EMULATORS:
            names = ", ".join(sorted(EMULATORS))
            emu = f"or start a loopback meter emulator with `labconsole emulate NAME` ({names}) and point a profile at it"
        else:
            emu = "or start a loopback meter emulator with `labconsole emulate NAME` where this build has one"
        lines.append(f"To use the console without hardware: `labconsole run` measures the built-in simulated bench, {emu}.")
    return "\n".join(lines).rstrip("\n") + "\n"


def add_host_finds(result: DiscoveryResult, answers: list) -> None:
    """What `--host` asked: an instrument that answered is a find; an address where nothing
    listens is a note (one line each), so a host's silent ports do not look like failures."""
    for d in answers:
        if d.status == "available" or ("refused" not in d.detail and "no answer" not in d.detail and "timed out" not in d.detail):
            result.found.append(d)
        else:
            result.notes[d.address] = d.detail


def main(args: Any) -> int:
    """`labconsole discover [--json] [--ptd HOST:PORT ...] [--host HOST[:PORT] ...] [--profile PATH]`."""
    hints: dict[str, Any] = {}
    if getattr(args, "profile", None):
        from labconsole.profile import ProfileError, load_profile

        try:
            loaded = load_profile(args.profile)
        except ProfileError as exc:
            print(str(exc), file=sys.stderr, flush=True)
            return EXIT_USAGE
        hints = hints_from_profile(loaded.profile, base_dir=loaded.path.parent)
    for addr in getattr(args, "ptd", None) or []:
        if parse_hostport(addr) is None:
            print(f"--ptd: {addr!r} is not HOST:PORT (for example 192.168.1.20:8888)", file=sys.stderr, flush=True)
            return EXIT_USAGE
        add_hint(hints, "ptd", addr)
    asked: list[str] = []
    for host in getattr(args, "host", None) or []:
        host = host.strip()
        if not host or "/" in host or address_kind(host) == "visa" or any(c.isspace() for c in host):
            print(f"--host: {host!r} is not HOST or HOST:PORT (for example 192.168.1.20, or 192.168.1.20:8888)", file=sys.stderr, flush=True)
            return EXIT_USAGE
        asked += [a for a in host_addresses(host) if a not in asked]
    result = discover_everything(hints)
    add_host_finds(result, probe_addresses(asked) if asked else [])
    if getattr(args, "json", False):
        print(to_json([d.as_dict() for d in result.found], indent=2))
    else:
        print(format_human(result), end="", flush=True)
    return EXIT_OK
