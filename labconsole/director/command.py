"""`labconsole director`: the console's side of the machine wired to the meter.

Writes power-dev's server.conf from the profile's `director:` section, checks it against what
the official checker accepts, starts power-dev's server (which starts PTDaemon), and serves the
live view the SUT's console reads (`driver: director`), printing the server's state and the
meter's latest watts until Ctrl-C. `--check` only writes and checks the config.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from labconsole.director.live import LiveView
from labconsole.director.server import Director, DirectorError
from labconsole.mlperf import powerdev_conf
from labconsole.profile import ProfileError, load_profile
from labconsole.sources.sntp import NtpError, sntp_offset
from labconsole.workload.powerdev import PowerDevMissing, find_powerdev

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _clean(text: str) -> str:
    """Text from power-dev's and PTDaemon's logs, safe for a terminal (no control characters)."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def run_director(args: argparse.Namespace) -> int:
    try:
        loaded = load_profile(Path(args.profile))
    except ProfileError as exc:
        print(str(exc), flush=True)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{args.profile}: {exc.strerror or exc}", flush=True)
        return EXIT_USAGE
    d = loaded.profile.director
    if d is None or not d.analyzers:
        print(f"{args.profile}: director: needs a `director:` section with at least one analyzer", flush=True)
        return EXIT_USAGE
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(args.workdir) if args.workdir else Path(loaded.profile.recordings) / "director" / stamp
    analyzers = powerdev_conf.analyzers_from(d.analyzers)
    problems = powerdev_conf.problems(analyzers, d.port)
    try:
        pd = find_powerdev(d.powerdev)
    except PowerDevMissing as exc:
        if args.check:
            pd = None
            problems.append(str(exc))
        else:
            print(f"director: {exc}", flush=True)
            return EXIT_FAIL
    director = Director(pd, workdir, d.ntp_server, d.address, d.port, d.ptd, analyzers, d.ranging_mode, d.ptd_args, d.dry_run) if pd else None
    if args.check:
        if director is not None and not problems:
            conf = director.write_conf()
            print(conf.read_text(), end="", flush=True)
            print(f"written: {conf}", flush=True)
        for p in problems:
            print(f"FAIL: {p}", flush=True)
        print("config OK: what the official checker accepts (the PTD version is checked when the server's self-test runs)" if not problems else "config FAILED", flush=True)
        return EXIT_OK if not problems else EXIT_FAIL
    assert director is not None
    ntp: dict = {"ntp_offset_s": None, "ntp_error": None}

    def measure_ntp() -> None:
        try:
            ntp["ntp_offset_s"], ntp["ntp_error"] = sntp_offset(d.ntp_server).offset_s, None
        except NtpError as exc:
            ntp["ntp_offset_s"], ntp["ntp_error"] = None, str(exc)

    measure_ntp()
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        director.on_line = lambda level, msg: print(f"server [{level}] {_clean(msg)}", flush=True) if level in ("WARNING", "ERROR", "CRITICAL") else None
        print(f"starting power-dev's server ({pd.where}) on {d.address}:{d.port}; config {director.conf_path}", flush=True)
        try:
            director.start()
        except DirectorError as exc:
            print(f"director: {_clean(str(exc))}", flush=True)
            return EXIT_FAIL
        live = LiveView(director, d.address, d.live_port, extra_status=lambda: dict(ntp)).start()
        print(f"listening; PTDaemon: {_clean('; '.join(director.status.identify.values()))}", flush=True)
        print(f"live view for the SUT's console: http://{d.address}:{live.port}/status (Ctrl-C stops the director)", flush=True)
        if d.address not in ("127.0.0.1", "::1", "localhost"):
            print(f"warning: listening on {d.address}: other machines can reach power-dev's server and the (read-only) live view", flush=True)
        last_state, last_ntp = "", time.monotonic()
        try:
            while not stop.wait(1.0):
                if time.monotonic() - last_ntp > 30:
                    measure_ntp()
                    last_ntp = time.monotonic()
                st = director.status.state
                watts = director.latest_watts()
                shown = "  ".join(f"analyzer {k}: {w:.2f} W" for k, w in sorted(watts.items()))
                off = f"  NTP {ntp['ntp_offset_s'] * 1000:+.1f} ms" if ntp["ntp_offset_s"] is not None else f"  NTP: {ntp['ntp_error']}"
                if st != last_state or st in ("ranging", "testing"):
                    print(f"{st}{'  ' + shown if shown else ''}{off}", flush=True)
                    last_state = st
                if not director.alive():
                    print(f"power-dev's server stopped: {_clean(director.last_words())}", flush=True)
                    return EXIT_FAIL
        finally:
            live.stop()
    finally:
        director.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return EXIT_OK
