"""Reading a recorded run: our own bundles and MLPerf power result folders, as one record.

`open_run(path)` accepts a bundle folder, or an MLPerf result folder (`performance/` holding
`power/`, `ranging/`, `run_1/`, or a folder above it holding exactly one), and returns a
`RunRecord` that analysis, checks, report and replay use alike. Nothing is ever written into
the folder read: MLPerf's files are hash-checked by the official tools.
"""

from __future__ import annotations

import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labconsole import safefile
from labconsole.bundle.schema import problems as schema_problems
from labconsole.events import Event, read_events
from labconsole.instruments.ptd import parse_power_time
from labconsole.workload.loadgen_log import (
    DetailLog,
    LoadGenLogError,
    SummaryLog,
    decode_lines,
    parse_detail_log,
    parse_summary_log,
)
from labconsole.samples.batch import NO_DATA, OK
from labconsole.samples.streams import StreamFormatError, find_sample_streams, index_sample_stream, read_sample_stream
from labconsole.samples.table import StreamTable

# "between": samples read outside any phase (setting ranges, probing the SUT), kept so that
# every sample read is on disk.
PHASES = ("idle", "ranging", "testing", "between")


class RunOpenError(ValueError):
    """The path is not a bundle or an MLPerf result folder, or a file in it holds what it
    cannot (message says why: `FILE: field: reason`)."""


@dataclass
class PhaseRecord:
    name: str
    folder: Path | None
    detail: DetailLog | None = None
    detail_error: str | None = None
    summary: SummaryLog | None = None
    summary_error: str | None = None
    # pandas DataFrame: source, channel, wall_ns, mono_ns, watts, ..., status; or, opened with
    # stream=True, a StreamTable of the same rows, read chunk by chunk (samples.table)
    samples: Any = None
    sample_files: list[Path] = field(default_factory=list)
    sample_errors: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # streams whose last line was cut by a crash
    progress: Any = None  # pandas DataFrame wall_ns, issued, completed
    notes: list[str] = field(default_factory=list)

    def detail_problem(self, label: str | None = None) -> str | None:
        """Why this phase has no LoadGen power window, in words (None when it has one): the
        detail log is missing, is there but unreadable (and why), or lacks the power markers."""
        what = f"{label or self.name + ' detail log'}"
        if self.detail is None:
            if self.detail_error:
                return f"{what} is unreadable: {self.detail_error}"
            return f"{what} is missing"
        if self.detail.power_begin_ns is None:
            return f"{what} has no power_begin/power_end"
        return None


@dataclass
class RunRecord:
    kind: str  # "bundle" | "mlperf"
    path: Path
    run_info: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, PhaseRecord] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # what a complete record would have had
    power_json: dict[str, Any] = field(default_factory=dict)  # MLPerf: power/client.json, server.json
    primary_source: str | None = None
    sources: list[dict] = field(default_factory=list)
    profile_text: str | None = None
    # MLPerf: the text of power/ptd_logs.txt, client.log, server.log (CR stripped), when present
    power_texts: dict[str, list[str]] = field(default_factory=dict)
    # MLPerf: the scenario the folder is filed under (…/<scenario>/performance), which the
    # submission checker uses for the metric; None when the folder is not in a results tree.
    folder_scenario: str | None = None
    # MLPerf: the name of the folder above performance/ as found (the filed scenario, any case,
    # when it is one); None for bundles.
    folder_name: str | None = None
    # Figures computed from the samples, kept with what they came from (metrics.phase_power):
    # `check` asks for the testing window's average from several checks, each a pass over it.
    computed: dict[tuple, Any] = field(default_factory=dict, repr=False, compare=False)

    def events(self) -> list[Event]:
        """The bundle's timeline (`data/events.jsonl`), in file order; [] where there is none
        (an MLPerf result folder)."""
        path = self.path / "data" / "events.jsonl"
        if self.kind != "bundle":
            return []
        try:
            return read_events(path, root=self.path)
        except safefile.FileRefused as exc:
            raise RunOpenError(str(exc)) from None

    @property
    def scenario(self) -> str | None:
        testing = self.phases.get("testing")
        if testing and testing.detail and testing.detail.scenario:
            return testing.detail.scenario
        if testing and testing.summary and testing.summary.scenario:
            return testing.summary.scenario
        return self.run_info.get("scenario")

    @property
    def exit_status(self) -> str | None:
        return self.run_info.get("exit_status")

    def phase(self, name: str) -> PhaseRecord | None:
        return self.phases.get(name)


# ---------------------------------------------------------------------------------------------


def find_mlperf_performance_dir(path: Path) -> Path | None:
    """The `performance/` folder of an MLPerf power result, at `path` or exactly one below it."""

    def looks_like(p: Path) -> bool:
        return p.is_dir() and (p / "power").is_dir() and ((p / "run_1").is_dir() or (p / "ranging").is_dir())

    if looks_like(path):
        return path
    if looks_like(path / "performance"):
        return path / "performance"
    found = [p for p in path.rglob("performance") if looks_like(p)] if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise RunOpenError(f"{path}: holds {len(found)} MLPerf result folders; name one of them")
    return None


def open_run(path: str | Path, load_samples: bool = True, columns: tuple[str, ...] | None = None, read_only: bool = False, stream: bool = False) -> RunRecord:
    """`columns`: load only these sample columns of a bundle's streams (`report` needs six of
    twelve; at 10 M samples a phase that halves the memory to fill). None loads all.
    `read_only`: the caller never modifies the frames, so a column that is constant through a
    binary stream may be a read-only view instead of filled memory (see read_sample_stream).
    `stream`: a bundle's phases hold StreamTables (validated and indexed, read chunk by chunk
    when analysed) instead of whole frames: memory stays bounded whatever the phase's length
    (`report`, `check`, the Results screen); `columns` and `read_only` do not apply."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise RunOpenError(f"{path}: no such file or folder") from None
        raise RunOpenError(safefile.describe_oserror(path, exc)) from None
    except ValueError as exc:  # a NUL in the path
        raise RunOpenError(f"{path!r}: not a path ({exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RunOpenError(f"{path}: not a folder (a bundle or an MLPerf result folder)")
    try:
        if (path / "data" / "run.json").exists() or (path / "bagit.txt").exists():
            _refuse_special_files(path)
            return read_bundle(path, load_samples, columns, read_only, stream)
        perf = find_mlperf_performance_dir(path)
        if perf is not None:
            _refuse_special_files(perf)
            return read_mlperf(perf, load_samples)
        if (path / "data").is_dir():
            _refuse_special_files(path)
            return read_bundle(path, load_samples, columns, read_only, stream)
    except OSError as exc:  # a folder we may not list, a file we may not open
        raise RunOpenError(safefile.describe_oserror(getattr(exc, "filename", None) or path, exc)) from None
    raise RunOpenError(f"{path}: neither a labconsole bundle (data/run.json) nor an MLPerf power result folder (performance/power, ranging, run_1)")


def _link_out(path: Path, root: Path) -> str | None:
    """Why a file of a record is not read when it leads out of the record (a link), else None."""
    if not safefile.inside(root, path):
        return f"{path}: a link leading out of {root}: not read (a record holds its own files only)"
    return None


def _refuse_links(path: Path, root: Path) -> None:
    why = _link_out(path, root)
    if why:
        raise RunOpenError(why)


MAX_RECORD_ENTRIES = 200_000


def _refuse_special_files(root: Path) -> None:
    """A record holds files and folders only. A FIFO, a device or a socket in it (or a link to
    one) is refused before anything reads it: reading a FIFO blocks for ever, a device never
    ends. Links are not followed into folders."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            seen += 1
            if seen > MAX_RECORD_ENTRIES:
                raise RunOpenError(f"{root}: more than {MAX_RECORD_ENTRIES} entries: not a bundle or a result folder")
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
                if stat.S_ISLNK(mode):
                    try:
                        mode = os.stat(full).st_mode
                    except OSError:
                        continue  # a dangling link: nothing to read, the readers say so
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise RunOpenError(f"{full}: {safefile.kind_of(mode)}, not a regular file: not read (a bundle or a result folder holds files and folders only)")


def _load_json(path: Path, record: RunRecord, label: str) -> dict:
    if not path.exists() and not path.is_symlink():
        record.missing.append(f"{label} ({path.name})")
        return {}
    _refuse_links(path, record.path)
    try:
        raw = safefile.read_bytes(path, "json", root=record.path)
    except safefile.FileRefused as exc:
        raise RunOpenError(str(exc)) from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        record.missing.append(f"{label}: {path} is not valid JSON ({exc})")
        return {}
    except RecursionError:
        raise RunOpenError(f"{path}: nested too deeply to be read") from None
    wrong = schema_problems(path, obj)
    if wrong:
        # The file is there and parses, but holds what it cannot: say which field, refuse.
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise RunOpenError(wrong[0] + more)
    return obj


def _read_logs(phase: PhaseRecord, folder: Path, record: RunRecord, label: str) -> None:
    # A log that is missing is named in `record.missing`; one that does not parse keeps its error.
    for kind, parse in (("detail", parse_detail_log), ("summary", parse_summary_log)):
        path = folder / f"mlperf_log_{kind}.txt"
        if not path.exists() and not path.is_symlink():
            record.missing.append(f"{label}/{path.name}")
            continue
        why = _link_out(path, record.path)
        if why:
            setattr(phase, f"{kind}_error", why)
            continue
        try:
            setattr(phase, kind, parse(path))
        except LoadGenLogError as exc:
            setattr(phase, f"{kind}_error", str(exc))


def read_bundle(root: Path, load_samples: bool = True, columns: tuple[str, ...] | None = None, read_only: bool = False, stream: bool = False) -> RunRecord:
    record = RunRecord(kind="bundle", path=root)
    data = root / "data"
    record.run_info = _load_json(data / "run.json", record, "run.json")
    record.environment = _load_json(data / "environment.json", record, "environment.json")
    record.calibration = _load_json(data / "calibration.json", record, "calibration.json") if (data / "calibration.json").exists() else {}
    record.summary = _load_json(data / "summary.json", record, "summary.json") if (data / "summary.json").exists() else {}
    prof = data / "profile.yaml"
    record.profile_text = None
    if (prof.exists() or prof.is_symlink()) and not _link_out(prof, root):
        try:
            record.profile_text = safefile.read_text(prof, "profile", root=root, errors="replace")
        except safefile.FileRefused as exc:
            raise RunOpenError(str(exc)) from None
    events = data / "events.jsonl"
    if os.path.lexists(events):  # read later (replay, checks, export): refused now, not then
        _refuse_links(events, root)
    record.sources = list(record.run_info.get("sources") or [])
    record.primary_source = record.run_info.get("primary_source")
    # A Training session's runs are phases of their own (result_0, result_1, ...)
    runs = sorted((p.name for p in data.glob("result_*") if p.name[7:].isdigit() and p.is_dir() and not p.is_symlink()), key=lambda n: int(n[7:]))
    for name in (*PHASES, *runs):
        folder = data / name
        if not folder.is_dir():
            continue
        phase = PhaseRecord(name=name, folder=folder)
        if name in ("ranging", "testing"):
            lg = folder / "loadgen"
            if lg.is_dir():
                _read_logs(phase, lg, record, f"{name}/loadgen")
            else:
                record.missing.append(f"{name}/loadgen/")
        if load_samples and stream:
            _index_bundle_samples(phase, folder)
        elif load_samples:
            _read_bundle_samples(phase, folder, columns, read_only)
        prog = folder / "progress.csv"
        if load_samples and prog.exists():
            phase.progress = _read_progress(prog, phase)
        record.phases[name] = phase
    return record


def _read_bundle_samples(phase: PhaseRecord, folder: Path, columns: tuple[str, ...] | None = None, read_only: bool = False) -> None:
    """The phase's streams (CSV or binary, one per source) as one frame with a `source` column
    (categorical, so selecting a source compares codes, not 10 M strings)."""
    import pandas as pd

    read: list[tuple[str, object]] = []
    for source, path in find_sample_streams(folder):
        if path.is_symlink() or not safefile.inside(folder.parent.parent, path):  # a bundle holds files only: a link may lead anywhere
            phase.sample_errors.append(f"{path}: a link, not read (a bundle holds files only)")
            continue
        try:
            safefile.check_regular(path)
        except safefile.FileRefused as exc:
            phase.sample_errors.append(str(exc))
            continue
        phase.sample_files.append(path)
        try:
            res = read_sample_stream(path, columns=columns, constant_views=read_only)
        except StreamFormatError as exc:
            phase.sample_errors.append(str(exc))
            continue
        if res.torn_tail:
            phase.torn.append(str(path))
        read.append((source, res.frame))
    names = list(dict.fromkeys(source for source, _ in read))
    channels = list(dict.fromkeys(c for _, f in read if "channel" in f.columns for c in f["channel"].cat.categories))
    frames = []
    for source, frame in read:
        index = names.index(source)
        codes = np.zeros(len(frame), dtype=np.int8) if index == 0 else np.full(len(frame), index, dtype=np.int8 if len(names) < 128 else np.int16)
        frame.insert(0, "source", pd.Categorical.from_codes(codes, names, validate=False))
        if len(read) > 1 and "channel" in frame.columns:  # one set of categories: concat keeps them
            frame["channel"] = frame["channel"].cat.set_categories(channels)
        frames.append(frame)
    if frames:
        phase.samples = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _index_bundle_samples(phase: PhaseRecord, folder: Path) -> None:
    """The phase's streams as one StreamTable: each validated and indexed (where its blocks or
    lines are), none of their values kept. The same errors and torn ends as a whole read."""
    indexed = []
    for source, path in find_sample_streams(folder):
        if path.is_symlink():  # a bundle holds files only: a link may lead anywhere
            phase.sample_errors.append(f"{path}: a link, not read (a bundle holds files only)")
            continue
        phase.sample_files.append(path)
        try:
            ix = index_sample_stream(path)
        except StreamFormatError as exc:
            phase.sample_errors.append(str(exc))
            continue
        if ix.torn:
            phase.torn.append(str(path))
        indexed.append((source, ix))
    if indexed:
        phase.samples = StreamTable.of(indexed)


def _read_progress(path: Path, phase: PhaseRecord):
    import pandas as pd

    try:
        raw = safefile.read_bytes(path, "samples", root=path.parent.parent.parent)
        if raw and not raw.endswith(b"\n"):
            raw = raw[: raw.rfind(b"\n") + 1]

        return pd.read_csv(io.BytesIO(raw), dtype={"wall_ns": "int64", "issued": "int64", "completed": "int64"})
    except (ValueError, OSError) as exc:
        phase.notes.append(f"{path}: unreadable progress series ({exc})")
        return None


# ---------------------------------------------------------------------------------------------
# MLPerf result folders

MLPERF_PHASES = {"ranging": "ranging", "testing": "run_1"}
FOLDER_SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline", "Interactive")


def scenario_name(text: str | None) -> str | None:
    """LoadGen's spelling of a scenario named in any case (`offline` -> `Offline`), or None
    when `text` is not a scenario (the submission checker compares the folder name lowercased)."""
    low = str(text or "").lower()
    return next((s for s in FOLDER_SCENARIOS if s.lower() == low), None)


def read_mlperf(perf: Path, load_samples: bool = True) -> RunRecord:
    record = RunRecord(kind="mlperf", path=perf)
    power = perf / "power"
    for name in ("client.json", "server.json"):
        p = power / name
        if p.exists():
            record.power_json[name] = _load_json(p, record, f"power/{name}")
        else:
            record.missing.append(f"power/{name}")
    for name in ("client.log", "server.log", "ptd_logs.txt"):
        if not (power / name).exists():
            record.missing.append(f"power/{name}")
            continue
        try:
            # Logs, not data: a stray non-UTF-8 byte (Windows PTD hosts) must not hide the rest.
            raw = safefile.read_bytes(power / name, "log", root=perf).decode("utf-8", errors="replace")
        except safefile.FileRefused as exc:
            raise RunOpenError(str(exc)) from None
        record.power_texts[name] = [ln.rstrip("\r") for ln in raw.split("\n")]
    folder = perf.parent.name
    record.folder_name = folder
    record.folder_scenario = scenario_name(folder)
    record.primary_source = "ptd"
    # power-dev always samples at 1 Hz (`Go,1000,0,<mark>`)
    record.sources = [{"name": "ptd", "driver": "ptd", "scope": "wall", "sample_interval_s": 1.0}]
    server = record.power_json.get("server.json") or {}
    record.run_info = {
        "id": server.get("session_name"),
        "profile": {"name": "mlperf"},
        "exit_status": "completed",
        "scenario": None,
    }
    for name, sub in MLPERF_PHASES.items():
        folder = perf / sub
        if not folder.is_dir():
            record.missing.append(f"{sub}/")
            continue
        phase = PhaseRecord(name=name, folder=folder)
        _read_logs(phase, folder, record, sub)
        spl = folder / "spl.txt"
        if (spl.exists() or spl.is_symlink()) and _link_out(spl, perf):
            phase.sample_errors.append(_link_out(spl, perf) or "")
        elif spl.exists():
            if load_samples:
                try:
                    phase.samples = read_spl(spl, phase)
                except StreamFormatError as exc:
                    phase.sample_errors.append(str(exc))
            phase.sample_files.append(spl)
        else:
            record.missing.append(f"{sub}/spl.txt")
        record.phases[name] = phase
    return record


def read_spl(path: Path, phase: PhaseRecord | None = None):
    """PTD samples (`spl.txt`) as a sample frame, parsed the way MLPerf's checker does.

    `Time,<MM-DD-YYYY HH:MM:SS.mmm>,Watts,<w>,Volts,<v>,Amps,<a>,PF,<pf>,Mark,<mark>`; only lines
    starting with `Time` count; `-1` readings are invalid. Values are parsed with float(), like
    the checker, so averages agree to the last bit.
    """
    import pandas as pd

    rows_t, rows_w, rows_v, rows_a, rows_pf = [], [], [], [], []
    try:
        lines = decode_lines(path)
    except LoadGenLogError as exc:
        raise StreamFormatError(str(exc)) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.startswith("Time"):
            if line.strip() and phase is not None and len(phase.notes) < 20:
                phase.notes.append(f"{path}:{lineno}: ignored line {line[:40]!r}")
            continue
        parts = line.split(",")
        try:
            t = parse_power_time(parts[1])
            w = float(parts[3])
        except (IndexError, ValueError) as exc:
            raise StreamFormatError(f"{path}:{lineno}: malformed PTD sample line ({exc})") from None

        def opt(key: str) -> float:
            try:
                return float(parts[parts.index(key) + 1])
            except (ValueError, IndexError):
                return float("nan")

        rows_t.append(t)
        rows_w.append(w)
        rows_v.append(opt("Volts"))
        rows_a.append(opt("Amps"))
        rows_pf.append(opt("PF"))
    n = len(rows_t)
    watts = np.array(rows_w, dtype=np.float64)
    status = np.where(watts == -1.0, NO_DATA, OK).astype(np.int64)
    frame = pd.DataFrame(
        {
            "source": "ptd",
            "wall_ns": np.array(rows_t, dtype=np.int64),
            "mono_ns": np.zeros(n, dtype=np.int64),
            "channel": "main",
            "watts": watts,
            "volts": np.array(rows_v, dtype=np.float64),
            "amps": np.array(rows_a, dtype=np.float64),
            "pf": np.array(rows_pf, dtype=np.float64),
            "energy_j": np.full(n, np.nan),
            "uncertainty_w": np.full(n, np.nan),
            "range_v": np.full(n, np.nan),
            "range_a": np.full(n, np.nan),
            "status": status,
        }
    )
    return frame
