"""The catalogue of recordings: the bundles under a recordings folder, and folders opened by path.

Listing reads only each bundle's `run.json`, so it stays fast with many recordings; a
recording's metric and checks (which read every sample and hash every file) are MLPerf's
and come from `labconsole.mlperf.summary.headline`, one recording at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

from labconsole import safefile
from labconsole.bundle.reader import RunOpenError, find_mlperf_performance_dir
from labconsole.bundle.schema import problems as schema_problems


def list_bundles(folder: Path) -> list[dict]:
    """Bundles in `folder`, newest first, from their run.json only."""
    rows = []
    if not folder.is_dir():
        return rows
    for d in folder.iterdir():
        run = d / "data" / "run.json"
        if not d.is_dir() or not run.exists():
            continue
        try:
            # only a regular file of the bundle, bounded: a FIFO must not freeze the list
            info = json.loads(safefile.read_text(run, "json", root=d))
        except (OSError, ValueError, RecursionError):
            info = {}
        if not isinstance(info, dict) or schema_problems(run, info):
            info = {}  # the row shows '?'; opening the recording says what is wrong
        rows.append(
            {
                "path": d,
                "start": str(info.get("start") or d.name[:20]),
                "profile": str((info.get("profile") or {}).get("name") or "?"),
                "scenario": str(info.get("scenario") or "?"),
                "status": str(info.get("exit_status") or "?"),
            }
        )
    rows.sort(key=lambda r: (r["start"], r["path"].name), reverse=True)
    return rows


def opened_row(path: Path) -> dict:
    """The row of a recording opened by path: nothing is known of it until it is summarised."""
    return {"path": Path(path), "start": "", "profile": "(opened by path)", "scenario": "?", "status": "?"}


def not_a_recording(path: Path) -> str | None:
    """Why `path` cannot be opened as a recording (a bundle or an MLPerf power result folder), or None."""
    try:
        ok = path.is_dir() and ((path / "data" / "run.json").exists() or find_mlperf_performance_dir(path) is not None)
        return None if ok else f"{path}: not a bundle or an MLPerf power result folder"
    except (RunOpenError, OSError) as exc:
        return str(exc)
