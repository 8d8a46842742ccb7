"""The catalogue of recordings: the bundles under a recordings folder, and folders opened by path.

Listing reads only each bundle's `run.json`, so it stays fast with many recordings; a
recording's metric and checks (which read every sample and hash every file) are MLPerf's
and come from `labconsole.mlperf.summary.headline`, one recording at a time.

A bundle whose run.json still says `running` is being recorded while a labconsole holds the
recordings folder's lock, and was left unsealed by a crash otherwise (`labconsole recover`).

Notes: an operator's note on a recording is a sidecar file next to the bundle,
`<bundle>.note.txt`. Not inside it: a sealed bundle's files are checksummed, and a note added
or edited there would make `check` fail the manifest (and a note is about the recording, not
part of what was measured). Not one shared catalogue file: two consoles on one folder would
race on it, and a bundle copied with its sidecar keeps its note. Deleting a recording deletes
its note.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from labconsole import safefile
from labconsole.bundle.reader import RunOpenError, find_mlperf_performance_dir
from labconsole.bundle.schema import problems as schema_problems
from labconsole.locks import recordings_lock

NOTE_SUFFIX = ".note.txt"
NOTE_MAX = 2000


class CatalogueError(RuntimeError):
    """A catalogue change refused (delete while running, a note on a folder that is not ours)."""


def list_bundles(folder: Path) -> list[dict]:
    """Bundles in `folder`, newest first, from their run.json only (and their notes)."""
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
                "note": read_note(d),
            }
        )
    rows.sort(key=lambda r: (r["start"], r["path"].name), reverse=True)
    unsealed = [r for r in rows if r["status"] == "running"]
    if unsealed:
        # The folder's lock says whether a run is going; only the newest unsealed one can be it.
        live = recordings_lock(folder).is_held()
        for i, r in enumerate(unsealed):
            r["status"] = "running" if live and i == 0 else "unsealed"
    return rows


def opened_row(path: Path) -> dict:
    """The row of a recording opened by path: nothing is known of it until it is summarised."""
    return {"path": Path(path), "start": "", "profile": "(opened by path)", "scenario": "?", "status": "?", "note": read_note(Path(path))}


def not_a_recording(path: Path) -> str | None:
    """Why `path` cannot be opened as a recording (a bundle or an MLPerf power result folder), or None."""
    try:
        ok = path.is_dir() and ((path / "data" / "run.json").exists() or find_mlperf_performance_dir(path) is not None)
        return None if ok else f"{path}: not a bundle or an MLPerf power result folder"
    except (RunOpenError, OSError) as exc:
        return str(exc)



def is_running(path: Path) -> bool:
    """True while a labconsole records into this bundle (unsealed, and its folder's lock held)."""
    path = Path(path)
    try:
        info = json.loads((path / "data" / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("exit_status") == "running" and recordings_lock(path.parent).is_held()


# --- notes -------------------------------------------------------------------------------------


def note_path(bundle: Path) -> Path:
    bundle = Path(bundle)
    return bundle.parent / (bundle.name + NOTE_SUFFIX)


def read_note(bundle: Path) -> str:
    try:
        return note_path(bundle).read_text(encoding="utf-8").strip()[:NOTE_MAX]
    except (OSError, UnicodeDecodeError):
        return ""


def write_note(bundle: Path, text: str) -> str:
    """Keep `text` as the bundle's note (empty removes it); returns what was kept."""
    bundle = Path(bundle)
    if not (bundle / "data" / "run.json").is_file():
        raise CatalogueError(f"{bundle}: notes are kept for labconsole bundles only (an MLPerf result folder is never written to)")
    text = " ".join(text.split())[:NOTE_MAX]  # one line: it is shown in a table cell
    path = note_path(bundle)
    try:
        if not text:
            path.unlink(missing_ok=True)
            return ""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise CatalogueError(f"cannot write the note {path}: {exc.strerror or exc}") from None
    return text


# --- delete ------------------------------------------------------------------------------------


def delete_recording(bundle: Path) -> None:
    """Delete a bundle and its note. Refused for a run being recorded and for anything that is
    not a labconsole bundle (an MLPerf folder opened by path is someone else's)."""
    bundle = Path(bundle)
    if bundle.is_symlink() or not (bundle / "data" / "run.json").is_file():
        raise CatalogueError(f"{bundle}: not a labconsole bundle; only recordings labconsole made are deleted here")
    if is_running(bundle):
        raise CatalogueError(f"{bundle.name} is being recorded: stop the run first (x on the Run screen)")
    try:
        shutil.rmtree(bundle)
        note_path(bundle).unlink(missing_ok=True)
    except OSError as exc:
        raise CatalogueError(f"cannot delete {bundle}: {exc.strerror or exc}") from None
