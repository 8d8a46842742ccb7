"""The profile the console had open last, so `labconsole` reopens the operator's own bench.

One line, the profile's absolute path, in `$LABCONSOLE_STATE_DIR` or
`$XDG_STATE_HOME/labconsole` (default `~/.local/state/labconsole`). Only the console reads it:
`labconsole run` without `--profile` stays on the built-in bench, so scripts never depend on
what someone last opened. Failing to read or write it never stops the console.
"""

from __future__ import annotations

import os
from pathlib import Path

from labconsole import safefile

FILE_NAME = "last-profile"


def state_dir() -> Path:
    explicit = os.environ.get("LABCONSOLE_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "labconsole"


def remember_profile(path: str | Path) -> None:
    """Record `path` as the last profile opened (atomically; silently skipped when not writable)."""
    try:
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / FILE_NAME
        tmp = folder / f".{FILE_NAME}.{os.getpid()}"
        tmp.write_text(str(Path(path).expanduser().resolve()) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        pass


def last_profile() -> Path | None:
    """The profile last opened, if it still exists as a file; None otherwise."""
    try:
        # a regular file only, and a bounded size: a FIFO planted there must not hang the start
        text = safefile.read_text(state_dir() / FILE_NAME, "text").strip()
    except (OSError, ValueError):
        return None
    if not text or "\n" in text:
        return None
    path = Path(text)
    return path if path.is_file() else None
