"""A real power-dev session: the unmodified MLCommons client, server and compliance checker
(../shared/vendor/power-dev, see its README) run on loopback against `labconsole emulate ptd`.

What the official tools need around them on one machine (vendor README): an SNTP server on
127.0.0.1:123 (both sides check their clocks against it), and a PTDaemon, which the server starts
from its config's `ptd:` with PTD's own command line: a two-line wrapper runs `labconsole emulate
ptd "$@"`. No MLPP_DEBUG (the checker fails a debug session), so a session takes about a minute:
power-dev's client waits 10 s before and after each of its two runs.

`powerdev_session(tmp)` returns the session folder the client wrote; `official_check(folder)`
runs compliance/check.py on a folder and returns its exit status and the verdict of each check.
Every process started here is terminated and waited for.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from labconsole.emulators.sntp import SntpResponder

ROOT = Path(__file__).resolve().parents[2]
POWER_DEV = (ROOT.parent / "shared" / "vendor" / "power-dev").resolve()
# The eleven checks compliance/check.py runs, by the names it prints: the tests' own list, so
# that a check labconsole dropped or renamed is caught.
OFFICIAL_CHECK_NAMES = (
    "Check client sources checksum",
    "Check server sources checksum",
    "Check PTD commands and replies",
    "Check UUID",
    "Check session name",
    "Check time difference",
    "Check client server messages",
    "Check results checksum",
    "Check errors and warnings from PTD logs",
    "Check PTD configuration",
    "Check debug is disabled on server-side",
)

if not POWER_DEV.is_dir():  # a worktree beside the main checkout: ../shared from the main one
    POWER_DEV = Path("/work/shared/vendor/power-dev")

# The LoadGen stand-in: writes a detail log whose UTC power window lies inside its own run.
WORKLOAD = r'''
import json, sys, time
from datetime import datetime, timezone
out, seconds = sys.argv[1], float(sys.argv[2])
def stamp(t):
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%m-%d-%Y %H:%M:%S.%f")[:-3]
def line(key, value):
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging",
        "event_type": "POINT_IN_TIME", "metadata": {"is_error": False, "is_warning": False, "file": "loadgen.cc", "line_no": 1, "pid": 1, "tid": 1}})
time.sleep(1.0)
begin = time.time()
time.sleep(seconds)
end = time.time()
time.sleep(1.0)
keys = [("loadgen_version", "4.1.0 @ labconsole-test"), ("effective_scenario", "Offline"), ("effective_min_duration_ms", 600000),
        ("power_begin", stamp(begin)), ("power_end", stamp(end)), ("result_validity", "VALID"),
        ("result_samples_per_second", 1000.0), ("result_query_count", 1)]
import os
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "mlperf_log_detail.txt"), "w") as f:
    f.write("\n".join(line(k, v) for k, v in keys) + "\n")
with open(os.path.join(out, "mlperf_log_summary.txt"), "w") as f:
    f.write("Scenario : Offline\nResult is : VALID\n")
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sntp_on_123() -> SntpResponder | None:
    """An SNTP responder on 127.0.0.1:123 (power-dev's ntplib asks port 123 only), or None
    when the port is taken or not ours to bind (then the caller skips)."""
    try:
        return SntpResponder("127.0.0.1", 123).start()
    except OSError:
        return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def powerdev_session(tmp: Path, workload_s: float = 6.0, emulator_args: str = "--utilisation 0.4 --noise-w 0.2 --seed 7") -> Path:
    """Run one full power-dev session (ranging + testing) and return the client's session folder."""
    tmp.mkdir(parents=True, exist_ok=True)
    wrapper = tmp / "ptd-emulator"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m labconsole emulate ptd {emulator_args} "$@"\n')
    wrapper.chmod(0o755)
    work = tmp / "workload.py"
    work.write_text(WORKLOAD)
    listen, ptd_port = _free_port(), _free_port()
    conf = tmp / "server.conf"
    conf.write_text(
        "[server]\nntpServer: 127.0.0.1\n"
        f"listen: 127.0.0.1 {listen}\n"
        f"[ptd]\nptd: {wrapper}\nanalyzerCount: 1\n"
        f"[analyzer1]\ndeviceType: 49\ninterfaceFlag:\ndevicePort: emulated\nnetworkPort: {ptd_port}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(POWER_DEV) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONDONTWRITEBYTECODE="1")
    env.pop("MLPP_DEBUG", None)
    server_log = open(tmp / "server.out", "wb")
    server = subprocess.Popen([sys.executable, str(POWER_DEV / "ptd_client_server" / "server.py"), "-c", str(conf)], cwd=tmp, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server self-tests PTD, then listens
            if server.poll() is not None:
                raise RuntimeError("power-dev server exited: " + (tmp / "server.out").read_text(errors="replace")[-2000:])
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", listen)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("power-dev server did not listen: " + (tmp / "server.out").read_text(errors="replace")[-2000:])
        lg, out = tmp / "loadgen", tmp / "out"
        cmd = f"{sys.executable} {work} {lg}/run {workload_s}"
        client = subprocess.run(
            [sys.executable, str(POWER_DEV / "ptd_client_server" / "client.py"), "-a", "127.0.0.1", "-p", str(listen), "-w", cmd,
             "-L", str(lg), "-o", str(out), "-n", "127.0.0.1", "-l", "lcagree", "-f"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
        )
        sessions = sorted(out.glob("*_lcagree")) if out.is_dir() else []
        if client.returncode != 0 or len(sessions) != 1 or not (sessions[0] / "power" / "server.json").exists():
            raise RuntimeError(f"power-dev client failed ({client.returncode}): {client.stdout[-2000:]}{client.stderr[-3000:]}")
        return sessions[0]
    finally:
        _stop(server)
        server_log.close()


_CHECK_LINE = re.compile(r"^(?:INFO|WARNING|ERROR):main:\[(x| )\] (.+)$")


def official_check(folder: Path) -> tuple[int, dict[str, bool], str]:
    """compliance/check.py on `folder`: (exit status, {check name: passed}, its output)."""
    proc = subprocess.run(
        [sys.executable, str(POWER_DEV / "compliance" / "check.py"), str(folder)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    out = proc.stdout + proc.stderr
    verdicts: dict[str, bool] = {}
    for line in out.splitlines():
        m = _CHECK_LINE.match(line.strip())
        if m:
            verdicts.setdefault(m.group(2).strip(), m.group(1) == "x")
    return proc.returncode, verdicts, out
