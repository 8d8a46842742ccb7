"""Exclusive locks: one console per recordings folder and per meter, with a clear refusal.

Two consoles writing into one recordings folder, or polling one meter, would interleave data
and commands. A run takes an advisory `flock` on a lock file named after the recordings folder and, for
each physical instrument, one named after its address, both in a per-user runtime folder. The
kernel drops the locks when the process dies (even by SIGKILL), so a crash never leaves a
stale lock behind; the file only keeps who held it last, for the message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: locking is best effort there
    fcntl = None  # type: ignore[assignment]


class LockBusy(RuntimeError):
    """Another console holds the lock; the message names it and says what to do."""


class FileLock:
    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        self.what = what
        self._fh = None

    def acquire(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip()
                fh.close()
                who = ""
                try:
                    info = json.loads(holder)
                    who = f" (pid {info.get('pid')}, since {info.get('since')}, {info.get('command', '')})"
                except ValueError:
                    pass
                raise LockBusy(f"{self.what} is in use by another labconsole{who}; wait for it to finish or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(os.sys.argv[:3])}))
        fh.flush()
        self._fh = fh
        return self

    def is_held(self) -> bool:
        """True when a run (of any labconsole, this one included) holds the lock now; asks
        without taking it, and without creating the lock file."""
        if fcntl is None or not self.path.exists():
            return False
        try:
            with open(self.path, "r", encoding="utf-8") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return True
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        except OSError:
            return False
        return False

    def release(self) -> None:
        if self._fh is not None:
            try:
                if fcntl is not None:
                    fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "labconsole"
    return Path(tempfile.gettempdir()) / f"labconsole-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def recordings_lock(recordings: Path) -> FileLock:
    """Kept in the runtime folder, keyed by the folder's real path, so `recordings/` holds bundles only."""
    real = str(Path(recordings).resolve())
    digest = hashlib.sha1(real.encode("utf-8")).hexdigest()[:16]
    return FileLock(runtime_dir() / f"recordings-{digest}.lock", f"the recordings folder {recordings}")


def instrument_lock(key: str) -> FileLock:
    """A lock for one physical instrument, named by a hash of its address (any characters)."""
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    return FileLock(runtime_dir() / f"instrument-{digest}.lock", f"the instrument at {key}")


# ---------------------------------------------------------------------------------------------
# Instrument keys: one spelling per physical instrument, whatever the profile wrote, so that two
# profiles naming one meter differently still meet on the same lock. No DNS lookups (a lock
# must not wait on the network): host names are compared as written, lower-cased, with
# `localhost` taken as the loopback address.


def host_key(host: str) -> str:
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return "127.0.0.1"
    try:
        return ipaddress.ip_address(h).compressed
    except ValueError:
        return h.rstrip(".")


def tcp_key(host: str, port: int) -> str:
    return f"tcp:{host_key(host)}:{int(port)}"


def serial_key(device: str) -> str:
    """A serial port by its real device path (a /dev/serial/by-id link and the tty it names
    are one port), shared by every driver that can open serial ports."""
    return "serial:" + os.path.realpath(device)
