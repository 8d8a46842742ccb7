"""Opening a file a person named, or one inside a bundle or an MLPerf folder, without hanging.

`open()` on a FIFO blocks until a writer comes (forever, and SIGTERM waits with it); reading
`/dev/zero` never ends; a link inside a bundle can lead anywhere on the machine. Every reader
opens what it reads through here: only regular files are read (the type is checked on the open
descriptor, opened with O_NONBLOCK so a FIFO cannot block the open itself), no more than a cap
per kind of file is read, and with `root` given a path that leads out of `root` (a link, `..`)
is refused. Refusals are `FileRefused` (a ValueError) whose text is `PATH: reason`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

MiB = 1 << 20

# How much is read from one file, per kind. A real file is far below each (a 600 s run's
# run.json is a few kB, its events.jsonl a few MB, a LoadGen detail log tens of MB).
LIMITS = {
    "profile": 16 * MiB,
    "json": 64 * MiB,
    "events": 512 * MiB,
    "log": 1024 * MiB,  # LoadGen detail/summary logs, PTD logs, power-dev's client/server logs
    "samples": 4096 * MiB,  # CSV sample streams and spl.txt (binary streams are memory-mapped)
    "manifest": 64 * MiB,
    "text": 64 * MiB,
}


class FileRefused(ValueError):
    """A file that is not read: not a regular file, too large, a link out of its folder.
    `errno` is the OSError's where the system refused it (ENOENT: there is no such file)."""

    def __init__(self, message: str, errno: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.reason = reason or message


def kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def describe_oserror(path: str | Path, exc: OSError) -> str:
    """`PATH: reason` for an OSError, one line (ENAMETOOLONG, EACCES, ENOTDIR, ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENAMETOOLONG:
        reason = "file name too long (a path component is longer than this file system allows)"
    elif exc.errno == errno.ENOTDIR:
        reason = "a part of the path is a file, not a folder"
    elif exc.errno == errno.EEXIST:
        reason = "already exists" + (" and is a file, where a folder is needed" if os.path.isfile(path) else "")
    elif exc.errno == errno.ELOOP:
        reason = "too many levels of links"
    return f"{path}: {reason}"


def _refused(path: str | Path, exc: OSError) -> FileRefused:
    msg = describe_oserror(path, exc)
    return FileRefused(msg, exc.errno, msg[len(str(path)) + 2 :])


def inside(root: str | Path, path: str | Path) -> bool:
    """Whether `path`, links resolved, is `root` or below it (links resolved too)."""
    try:
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def check_regular(path: str | Path, root: str | Path | None = None) -> os.stat_result:
    """The file's stat when it is a regular file (inside `root` when given); else FileRefused.
    For paths handed to a library that opens them itself (memory maps)."""
    if root is not None and not inside(root, path):
        raise FileRefused(f"{path}: leads out of {root} (a link or '..'): not read")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _refused(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{path}: {kind_of(st.st_mode)}, not a regular file: not read")
    return st


def open_regular(path: str | Path, root: str | Path | None = None) -> BinaryIO:
    """`path` opened for reading in binary mode, only when it is a regular file (and, with
    `root`, inside it). Never blocks on a FIFO or a device."""
    if root is not None and not inside(root, path):
        raise FileRefused(f"{path}: leads out of {root} (a link or '..'): not read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{path}: {kind_of(st.st_mode)}, not a regular file: not read")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, kind: str = "text", root: str | Path | None = None, limit: int | None = None) -> bytes:
    """The whole of a regular file, refused when larger than the cap for `kind`."""
    cap = LIMITS[kind] if limit is None else limit
    with open_regular(path, root) as fh:
        try:
            data = fh.read(cap + 1)
        except OSError as exc:
            raise _refused(path, exc) from None
    if len(data) > cap:
        raise FileRefused(f"{path}: larger than {cap / MiB:g} MiB, the most read from a {kind} file: not read")
    return data


def read_text(path: str | Path, kind: str = "text", root: str | Path | None = None, errors: str = "strict") -> str:
    """`read_bytes` decoded as UTF-8 (`errors` as for bytes.decode)."""
    data = read_bytes(path, kind, root)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise FileRefused(f"{path}: not UTF-8 text (byte {exc.start})") from None
