"""power-dev's server (the "director") run by labconsole: config, start, state, PTD log tail.

The server keeps its PTD logs in a `tempfile.TemporaryDirectory()` (`ptd_logfile_{i}.log`);
started with `TMPDIR` set to a folder of ours, that directory is where we can find it, without
touching power-dev's code. Its state comes from its own log lines (`ptd-server ... [LEVEL]
message`), kept verbatim in `server.out`: a fault is reported in the server's own words.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from labconsole.instruments.ptd import parse_sample_line
from labconsole.mlperf import powerdev_conf
from labconsole.workload.powerdev import LOG_LINE, PowerDev

EMULATE = "emulate"  # `ptd: emulate`: `labconsole emulate ptd` stands in for PTDaemon (rehearsal only)


class DirectorError(RuntimeError):
    """The director cannot start (message says why, in power-dev's words where it said any)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _listening(host: str, port: int) -> bool:
    """Whether something listens on `port`: from /proc/net/tcp on Linux, so the check is not
    a connection to power-dev's server (which it would log as a client); else by connecting."""
    proc_net = Path("/proc/net/tcp")
    if proc_net.exists():
        try:
            rows = proc_net.read_text().splitlines()[1:] + (Path("/proc/net/tcp6").read_text().splitlines()[1:] if Path("/proc/net/tcp6").exists() else [])
        except OSError:
            rows = []
        for row in rows:
            parts = row.split()
            if len(parts) > 3 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
        if rows:
            return False
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


@dataclass
class PtdLine:
    seq: int
    analyzer: int
    line: str


@dataclass
class DirectorState:
    state: str = "not started"  # not started | self-test | listening | session | ranging | testing | stopped | failed
    session: str | None = None
    identify: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the server's ERROR/CRITICAL lines, verbatim
    exit_code: int | None = None


class Director:
    def __init__(
        self,
        powerdev: PowerDev,
        workdir: Path,
        ntp_server: str,
        listen_host: str,
        listen_port: int,
        ptd: str,
        analyzers: list[powerdev_conf.Analyzer],
        ranging_mode: str = "AUTO",
        ptd_args: list[str] | None = None,
        dry_run: bool = False,
        on_line: Callable[[str, str], None] | None = None,
        tmp: Path | None = None,
    ):
        self.powerdev = powerdev
        self.workdir = Path(workdir).resolve()
        self.ntp_server = ntp_server
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.ptd = ptd
        self.analyzers = analyzers
        self.ranging_mode = ranging_mode
        self.ptd_args = list(ptd_args or [])
        self.dry_run = dry_run
        self.on_line = on_line  # (level, message) for each server log line
        self.status = DirectorState()
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "server.conf"
        self.out_path = self.workdir / "server.out"
        self.tmp = Path(tmp) if tmp is not None else self.workdir / "tmp"  # TMPDIR: the server's PTD logs
        self.lines: collections.deque[PtdLine] = collections.deque(maxlen=20000)
        self.server_lines: collections.deque[str] = collections.deque(maxlen=200)
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- configuration -------------------------------------------------------------------------
    def ptd_command(self) -> str:
        if self.ptd != EMULATE:
            return self.ptd
        wrapper = self.workdir / "ptd-emulator"
        args = " ".join(shlex.quote(a) for a in self.ptd_args)
        # power-dev starts `ptd:` with PTD's own command line (-l LOG -p PORT ... TYPE PORT).
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m labconsole emulate ptd {args} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)

    def write_conf(self) -> Path:
        problems = powerdev_conf.problems(self.analyzers, self.listen_port)
        if problems:
            raise DirectorError("the director's configuration would not pass the official checker:\n  " + "\n  ".join(problems))
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = powerdev_conf.render(self.ntp_server, self.listen_host, self.listen_port, self.ptd_command(), self.analyzers, self.ranging_mode)
        self.conf_path.write_text(text, encoding="utf-8")
        return self.conf_path

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 90.0) -> None:
        """Write the config, start power-dev's server, wait until it listens (after its PTD
        self-test). Raises DirectorError with the server's own last words when it does not."""
        self.write_conf()
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = self.powerdev.env()
        env["TMPDIR"] = str(self.tmp)  # where the server's TemporaryDirectory (its PTD logs) goes
        if self.dry_run:
            env["MLPP_DEBUG"] = "1"  # shorter waits; the session is marked debug (not for submission)
        else:
            env.pop("MLPP_DEBUG", None)
        self.status.state = "self-test"
        self.proc = subprocess.Popen(
            [*self.powerdev.server, "-c", str(self.conf_path)], cwd=str(self.workdir), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
        for target in (self._follow_server, self._tail_ptd_logs):
            t = threading.Thread(target=target, name=f"director-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.3)  # let the follower read its last lines
                raise DirectorError(f"power-dev's server exited ({self.proc.returncode}) before listening: {self.last_words()}")
            if self.status.problems:
                self.stop()
                raise DirectorError("the PTDaemon would not pass the official checker: " + "; ".join(self.status.problems))
            if _listening(self.listen_host, self.listen_port) and self.status.identify:
                self.status.state = "listening"
                return
            time.sleep(0.2)
        self.stop()
        raise DirectorError(f"power-dev's server did not listen on {self.listen_host}:{self.listen_port} within {timeout_s:.0f} s: {self.last_words()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def last_words(self, n: int = 4) -> str:
        said = self.status.errors[-n:] or list(self.server_lines)[-n:]
        return " | ".join(said) if said else "(it said nothing)"

    def stop(self) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # SIGINT first: power-dev's server catches KeyboardInterrupt and stops its PTDaemons.
            for sig, grace in ((signal.SIGINT, 8.0), (signal.SIGTERM, 4.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            self.status.exit_code = proc.poll()
        for t in self._threads:
            t.join(timeout=5)
        if self.status.state not in ("failed",):
            self.status.state = "stopped"

    # --- following the server ----------------------------------------------------------------------
    def _follow_server(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.out_path, "ab") as out:
            for raw in iter(self.proc.stdout.readline, b""):
                out.write(raw)
                out.flush()
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                self._server_line(text)
        code = self.proc.wait()
        self.status.exit_code = code
        if not self._stop.is_set():
            self.status.state = "failed"
            self.status.errors.append(f"power-dev's server exited ({code})")

    def _server_line(self, text: str) -> None:
        self.server_lines.append(text)
        m = LOG_LINE.match(text)
        level, msg = (m.group("level"), m.group("msg")) if m else ("OUT", text)
        if level in ("ERROR", "CRITICAL"):
            self.status.errors.append(msg)
        got = powerdev_conf.identify_reply(msg)
        if got is not None:
            self.status.identify[got[0]] = got[1]
            self.status.problems += [f"analyzer {got[0]}: {p}" for p in powerdev_conf.identify_problems(got[1])]
        if msg.startswith("Got command from the client 'new,"):
            self.status.state = "session"
        elif msg == "Starting ranging mode":
            self.status.state = "ranging"
        elif msg == "Starting testing mode":
            self.status.state = "testing"
        elif msg.startswith("Got command from the client 'session,") and ",stop," in msg:
            self.status.state = "session"
        elif msg == "Connection closed" and self.status.state not in ("self-test", "failed"):
            self.status.state = "listening"
        if self.on_line is not None:
            self.on_line(level, msg)

    def ptd_logs(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.tmp.glob("*/ptd_logfile_*.log"):
            try:
                out.append((int(p.stem.rsplit("_", 1)[1]), p))
            except ValueError:
                continue
        return sorted(out)

    def _tail_ptd_logs(self) -> None:
        """Follow each analyzer's PTD log as PTDaemon appends to it (it is read, never written)."""
        pos: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
        partial: dict[Path, bytes] = {}
        while not self._stop.is_set():
            for analyzer, path in self.ptd_logs():
                try:
                    st = path.stat()
                    ino, off = pos.get(path, (st.st_ino, 0))
                    if ino != st.st_ino or st.st_size < off:  # a new PTDaemon started a new log
                        ino, off, partial[path] = st.st_ino, 0, b""
                    if st.st_size == off:
                        continue
                    with open(path, "rb") as fh:
                        fh.seek(off)
                        data = partial.get(path, b"") + fh.read()
                        off = fh.tell()
                    pos[path] = (ino, off)
                except OSError:
                    continue
                *complete, partial[path] = data.split(b"\n")
                with self._lock:
                    for raw in complete:
                        line = raw.decode("ascii", "replace").rstrip("\r")
                        if line:
                            self._seq += 1
                            self.lines.append(PtdLine(self._seq, analyzer, line))
            self._stop.wait(0.25)

    def lines_after(self, seq: int, limit: int = 5000) -> list[PtdLine]:
        with self._lock:
            return [ln for ln in self.lines if ln.seq > seq][:limit]

    def latest_watts(self) -> dict[int, float]:
        """The newest sample's watts per analyzer, for the director's own screen."""
        out: dict[int, float] = {}
        with self._lock:
            for ln in reversed(self.lines):
                if ln.analyzer in out or not ln.line.startswith("Time,") or ",Watts," not in ln.line:
                    continue
                try:
                    out[ln.analyzer] = parse_sample_line(ln.line)[1][0][0]
                except ValueError:
                    continue
                if len(out) == len(self.analyzers):
                    break
        return out

    def as_dict(self) -> dict:
        st = self.status
        return {
            "state": st.state,
            "alive": self.alive(),
            "exit_code": st.exit_code,
            "listen": f"{self.listen_host}:{self.listen_port}",
            "ntp_server": self.ntp_server,
            "identify": {str(k): v for k, v in st.identify.items()},
            "problems": list(st.problems),
            "errors": list(st.errors[-20:]),
            "server_tail": list(self.server_lines)[-20:],
            "analyzers": len(self.analyzers),
            "ptd_logs": [str(p) for _, p in self.ptd_logs()],
            "dry_run": self.dry_run,
            "time": time.time(),
        }
