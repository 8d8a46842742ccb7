"""Writing a run bundle: the folder layout of DESIGN.md, created as the run goes.

    recordings/<UTC time>_<profile>_<scenario>/
      bagit.txt bag-info.txt manifest-sha256.txt tagmanifest-sha256.txt   (at seal)
      data/ run.json profile.yaml environment.json calibration.json events.jsonl summary.json
            idle/ ranging/ testing/  samples-<source>.csv progress.csv worker.log [stalls.jsonl] loadgen/...

`run.json` exists from the first moment with exit_status "running", so a run killed
part-way leaves a readable, unsealed bundle that `check` recognises and `recover` seals.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from pathlib import Path
from typing import Any

from labconsole.bundle.seal import seal
from labconsole.events import JsonlSink, to_json

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")

EXIT_STATUSES = ("running", "completed", "failed", "aborted", "recovered")


def safe_name(text: str, limit: int = 64) -> str:
    """A file-name-safe rendering: no separators, no dots at the start, never empty."""
    name = re.sub(r"\.{2,}", "-", _SAFE.sub("-", text))
    name = re.sub(r"-{2,}", "-", name).strip(".-")[:limit]
    return name or "run"


def utc_stamp(wall_ns: int | None = None) -> str:
    t = _dt.datetime.fromtimestamp((wall_ns or time.time_ns()) / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H-%M-%SZ")


def iso_utc(wall_ns: int | None = None) -> str:
    t = _dt.datetime.fromtimestamp((wall_ns or time.time_ns()) / 1e9, tz=_dt.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    text = to_json(obj, indent=2) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class BundleWriter:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.data = self.root / "data"
        self.run_info: dict[str, Any] = {}
        self.events_sink: JsonlSink | None = None

    @classmethod
    def create(cls, recordings_dir: Path, profile_name: str, scenario: str, wall_ns: int | None = None) -> "BundleWriter":
        recordings_dir = Path(recordings_dir)
        recordings_dir.mkdir(parents=True, exist_ok=True)
        base = f"{utc_stamp(wall_ns)}_{safe_name(profile_name)}_{safe_name(scenario)}"
        root = recordings_dir / base
        n = 1
        while True:
            try:
                root.mkdir()
                break
            except FileExistsError:
                n += 1
                root = recordings_dir / f"{base}-{n}"
        # The name is built from sanitised parts; make sure nothing escaped the folder anyway.
        if root.resolve().parent != recordings_dir.resolve():
            raise ValueError(f"bundle path {root} escapes {recordings_dir}")
        writer = cls(root)
        writer.data.mkdir()
        writer.events_sink = JsonlSink(writer.data / "events.jsonl")
        return writer

    def phase_dir(self, phase: str) -> Path:
        d = self.data / safe_name(phase)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.data / name
        write_json(path, obj)
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.data / name
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return path

    def update_run(self, **fields: Any) -> None:
        self.run_info.update(fields)
        self.write_json("run.json", self.run_info)

    def close_events(self) -> None:
        if self.events_sink is not None:
            self.events_sink.close()

    def seal(self, exit_status: str, reason: str = "") -> None:
        if exit_status not in EXIT_STATUSES:
            raise ValueError(f"unknown exit status {exit_status!r}")
        self.update_run(exit_status=exit_status, reason=reason, stop=self.run_info.get("stop") or iso_utc())
        self.close_events()
        seal(
            self.root,
            {
                "External-Identifier": str(self.run_info.get("id", "")),
                "Labconsole-Exit-Status": exit_status,
                "Labconsole-Profile": str((self.run_info.get("profile") or {}).get("name", "")),
            },
        )
