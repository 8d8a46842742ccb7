"""MLCommons power-dev, the official MLPerf Power workflow: finding it and running its client.

power-dev is used unmodified (it pins the SHA-1 of its own sources): installed with pip
(`power_server`, `power_client`, `power_check` on PATH) or a checkout named by the profile's
`director.powerdev` or `$LABCONSOLE_POWERDEV`. `OfficialClient` runs power-dev's client with a
workload command, follows what it says (its log lines on stderr: the NTP check, ranging,
testing, downloads) and, when the workload is labconsole's LoadGen worker, LoadGen's progress
(the worker's JSON lines on stdout, which the client passes through). It never touches what
the client writes: that folder is the record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ENV_VAR = "LABCONSOLE_POWERDEV"


class PowerDevMissing(RuntimeError):
    """power-dev is neither installed nor at the path given (message says how to get it)."""


@dataclass(frozen=True)
class PowerDev:
    """Where power-dev's three tools are: argv prefixes to run each with."""

    where: str  # the checkout's folder, or "installed"
    server: tuple[str, ...]
    client: tuple[str, ...]
    check: tuple[str, ...]
    pythonpath: str | None = None  # a checkout's root, for its `ptd_client_server` package

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into the checkout
        env["PYTHONUNBUFFERED"] = "1"  # its log lines as they happen
        return env


def from_checkout(path: str | Path) -> PowerDev:
    root = Path(path).expanduser().resolve()
    need = [root / "ptd_client_server" / "server.py", root / "ptd_client_server" / "client.py", root / "compliance" / "check.py"]
    missing = [str(p.relative_to(root)) for p in need if not p.is_file()]
    if missing:
        raise PowerDevMissing(f"{root} is not a power-dev checkout (no {', '.join(missing)})")
    py = sys.executable
    return PowerDev(str(root), (py, str(need[0])), (py, str(need[1])), (py, str(need[2])), str(root))


def find_powerdev(configured: str | None = None) -> PowerDev:
    """power-dev from, in order: `configured` (the profile), `$LABCONSOLE_POWERDEV`, the
    `power_server`/`power_client`/`power_check` scripts of a pip install."""
    for path in (configured, os.environ.get(ENV_VAR)):
        if path:
            return from_checkout(path)
    tools = [shutil.which(n) for n in ("power_server", "power_client", "power_check")]
    if all(tools):
        return PowerDev("installed", (tools[0],), (tools[1],), (tools[2],))  # type: ignore[arg-type]
    raise PowerDevMissing(
        "power-dev not found: `pip install git+https://github.com/mlcommons/power-dev` (power_server, power_client, "
        f"power_check), or point {ENV_VAR} (or the profile's director.powerdev) at a checkout"
    )


# --- what the client says ---------------------------------------------------------------------------

# power-dev's log line: "<name> YYYY-MM-DD HH:MM:SS,mmm [LEVEL] message"
LOG_LINE = re.compile(r"^(?P<who>client|ptd-server) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[(?P<level>[A-Z]+)\] (?P<msg>.*)$")

# The client's steps, from its own messages (ptd_client_server/lib/client.py), in order.
PHASES = (
    ("connect", re.compile(r"^Sending command to the server: 'mlcommons/power client")),
    ("ntp", re.compile(r"^Synchronizing with the server and with ")),
    ("session", re.compile(r"^Session id is '(?P<session>[^']+)'")),
    ("ranging", re.compile(r"^Running workload in ranging mode")),
    ("testing", re.compile(r"^Running workload in testing mode")),
    ("downloads", re.compile(r"^Done runs")),
    ("done", re.compile(r"^Successful exit")),
)
# Within a mode: the client checks the clocks, asks the server to start measuring, runs the
# workload, asks it to stop.
STEPS = (
    ("clock check", re.compile(r"^Synchronizing with the server and with ")),
    ("measurement starting", re.compile(r"^Sending command to the server: 'session,[^,]+,start,")),
    ("workload", re.compile(r"^Running the workload ")),
    ("measurement stopping", re.compile(r"^Sending command to the server: 'session,[^,]+,stop,")),
    ("copying LoadGen logs", re.compile(r"^Copying loadgen logs ")),
)
_ORDER = [n for n, _ in PHASES]


class PhaseTracker:
    """Where power-dev's client is, from its log messages: `phase` (connect, ntp, session,
    ranging, testing, downloads, done; forward only: the clock check inside each mode is one
    of its `step`s) and the session name it was given."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.step = ""
        self.session: str | None = None

    def feed(self, message: str) -> bool:
        """Take one log message; True when the phase changed."""
        for name, rx in PHASES:
            m = rx.match(message)
            if m and (self.phase not in _ORDER or _ORDER.index(name) > _ORDER.index(self.phase)):
                self.phase, self.step = name, ""
                if name == "session":
                    self.session = m.group("session")
                return True
        for name, rx in STEPS:
            if rx.match(message):
                self.step = name
        return False


@dataclass
class ClientLine:
    level: str  # INFO, WARNING, ERROR, CRITICAL (the client's logging.fatal), or OUT (not a log line)
    message: str


def parse_client_line(text: str) -> ClientLine:
    m = LOG_LINE.match(text.rstrip("\r\n"))
    if m is None:
        return ClientLine("OUT", text.rstrip("\r\n"))
    return ClientLine(m.group("level"), m.group("msg"))


@dataclass
class ClientResult:
    exit_code: int | None
    status: str  # completed | failed | aborted
    reason: str
    session: str | None  # the session name power-dev chose
    session_dir: Path | None  # <out>/<session>: power/, ranging/, run_1/
    errors: list[str] = field(default_factory=list)  # the client's own ERROR/CRITICAL lines, verbatim
    last_words: list[str] = field(default_factory=list)  # its last lines on stderr (a traceback's end)


class OfficialClient:
    """power-dev's client, run with `workload_cmd` (the shell command power-dev runs twice)."""

    def __init__(
        self,
        powerdev: PowerDev,
        server: str,
        port: int,
        ntp: str,
        workload_cmd: str,
        loadgen_dir: Path,
        out_dir: Path,
        label: str,
        log_path: Path,
        on_line: Callable[[ClientLine], None] | None = None,
        on_progress: Callable[[dict], None] | None = None,
        env: dict | None = None,
    ):
        self.powerdev = powerdev
        self.argv = [
            *powerdev.client, "-a", server, "-p", str(port), "-n", ntp, "-w", workload_cmd,
            "-L", str(loadgen_dir), "-o", str(out_dir), "-f",
        ] + (["-l", label] if label else [])
        self.out_dir = Path(out_dir)
        self.log_path = Path(log_path)
        self.on_line = on_line
        self.on_progress = on_progress
        self.env = powerdev.env(env)
        self.proc: subprocess.Popen | None = None
        self.tracker = PhaseTracker()
        self.errors: list[str] = []
        self.last_words: list[str] = []
        self._abort = threading.Event()
        self._abort_reason = ""
        self._log_lock = threading.Lock()

    @property
    def phase(self) -> str:
        return self.tracker.phase

    @property
    def session(self) -> str | None:
        return self.tracker.session

    def abort(self, reason: str = "aborted by the operator") -> None:
        self._abort_reason = reason
        self._abort.set()

    def _follow(self, stream, is_stderr: bool, log) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._log_lock:
                log.write(raw)
                log.flush()
            if not is_stderr:
                try:  # the LoadGen worker's progress lines, passed through by the client
                    msg = json.loads(text)
                except ValueError:
                    msg = None
                if isinstance(msg, dict):
                    if self.on_progress is not None:
                        self.on_progress(msg)
                    continue
            line = parse_client_line(text)
            if is_stderr and text.strip():
                self.last_words = (self.last_words + [text.strip()])[-5:]
            if line.level in ("ERROR", "CRITICAL"):
                self.errors.append(line.message)
            self.tracker.feed(line.message)
            if self.on_line is not None:
                self.on_line(line)

    def run(self, timeout_s: float) -> ClientResult:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, start_new_session=True, close_fds=True,
            )
            readers = [
                threading.Thread(target=self._follow, args=(self.proc.stdout, False, log), daemon=True),
                threading.Thread(target=self._follow, args=(self.proc.stderr, True, log), daemon=True),
            ]
            for t in readers:
                t.start()
            status, reason = "completed", ""
            t0 = time.monotonic()
            while self.proc.poll() is None:
                if self._abort.wait(0.2):
                    status, reason = "aborted", self._abort_reason
                    self._terminate()
                    break
                if time.monotonic() - t0 > timeout_s:
                    status, reason = "failed", f"power-dev's client ran past {timeout_s:.0f} s and was stopped"
                    self._terminate()
                    break
            code = self.proc.wait()
            for t in readers:
                t.join(timeout=5)
        finally:
            log.close()
        if status == "completed" and code != 0:
            status = "failed"
            said = "; ".join(self.errors[-3:]) if self.errors else (self.last_words[-1] if self.last_words else "no error message")
            reason = f"power-dev's client failed (exit status {code}) during {self.phase}: {said}"
        session_dir = self.out_dir / self.session if self.session and (self.out_dir / self.session).is_dir() else None
        return ClientResult(code, status, reason, self.session, session_dir, list(self.errors), list(self.last_words))

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # its workload runs in its process group too
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
