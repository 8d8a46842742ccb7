"""One MLPerf Training run of the user's trainer: start it, follow its MLLOG result log live
(run_start, run_stop), stop it on abort or timeout, and keep the log's MLLOG lines byte for
byte as the run's result log (`result_<k>.txt`)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from labconsole.workload.runner import WorkloadResult, _ProcessRun  # the process handling all workloads share

if TYPE_CHECKING:  # the profile sits above the workload in the layers; only its shape is used
    from labconsole.profile import TrainingWorkload

TOKEN = b":::MLLOG "
MAX_RESULT_LOG_BYTES = 256 * 1024 * 1024  # a result log is kB to a few MB; beyond this it is not one


@dataclass
class MllogProgress:
    run_start_ms: float | None = None
    run_stop_ms: float | None = None
    status: str | None = None
    lines: int = 0
    last_key: str | None = None
    keys: list[str] = field(default_factory=list)


class TrainingCommandRun(_ProcessRun):
    def __init__(self, workload: "TrainingWorkload", phase_dir: Path, run_index: int,
                 on_line: Callable[[MllogProgress, str], None] | None = None):
        super().__init__(phase_dir, workload.timeout_s, None, None)
        self.workload = workload
        self.run_index = run_index
        self.on_line = on_line
        self.mllog = MllogProgress()
        self._pos = 0
        self._buf = b""
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self.truncated = False

    @property
    def source_log(self) -> Path:
        wl = self.workload
        if wl.log == "stdout":
            return self.log_path
        p = Path(wl.log.replace("{run}", str(self.run_index)))
        return p if p.is_absolute() else Path(wl.cwd or Path.cwd()) / p

    def argv(self) -> list[str]:
        # {run}: the run's index (0-based, result_<run>); {python}: the interpreter running labconsole
        return [a.replace("{run}", str(self.run_index)).replace("{python}", sys.executable) for a in self.workload.command]

    def run(self) -> WorkloadResult:
        wl = self.workload
        env = dict(os.environ)
        env.update(wl.env)
        env["LABCONSOLE_RUN_INDEX"] = str(self.run_index)
        env["PYTHONUNBUFFERED"] = "1"
        cwd = Path(wl.cwd) if wl.cwd else Path.cwd()
        if wl.log != "stdout" and self.source_log.exists():
            self._pos = self.source_log.stat().st_size  # an old log: only what this run appends counts
        try:
            self._spawn(self.argv(), cwd=cwd, env=env)
        except OSError as exc:
            return WorkloadResult("failed", None, f"cannot start {wl.command[0]!r}: {exc.strerror or exc}", [], time.time_ns(), time.time_ns())
        result = self._watch(poll=self._follow)
        self._follow(final=True)
        return result

    def _follow(self, final: bool = False) -> None:
        """Read what the trainer appended to its log; keep and parse the complete MLLOG lines."""
        path = self.source_log
        try:
            with open(path, "rb") as fh:
                fh.seek(self._pos)
                data = fh.read(1 << 20)
                self._pos = fh.tell()
        except OSError:
            return
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        if final and self._buf:
            complete.append(self._buf)
            self._buf = b""
        for raw in complete:
            if TOKEN not in raw:
                continue
            if self._kept_bytes + len(raw) + 1 > MAX_RESULT_LOG_BYTES:
                self.truncated = True
                continue
            self._kept.append(raw + b"\n")
            self._kept_bytes += len(raw) + 1
            self._parse(raw)

    def _parse(self, raw: bytes) -> None:
        text = raw.decode("latin-1")
        try:
            obj = json.loads(text[text.rindex(TOKEN.decode()) + len(TOKEN):])
            key, t = obj["key"], float(obj["time_ms"])
        except (ValueError, KeyError, TypeError):
            return
        m = self.mllog
        m.lines += 1
        m.last_key = key
        if key == "run_start" and m.run_stop_ms is None:
            m.run_start_ms = t
        elif key == "run_stop" and m.run_stop_ms is None:
            m.run_stop_ms = t
            md = obj.get("metadata")
            m.status = md.get("status") if isinstance(md, dict) else None
        if key in ("run_start", "run_stop", "init_start", "init_stop") or (key.startswith("eval_") and key not in m.keys):
            m.keys.append(key)
            if self.on_line is not None:
                self.on_line(m, key)

    def write_result_log(self, dest: Path) -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            for raw in self._kept:
                fh.write(raw)
        return len(self._kept)
