"""`labconsole export BUNDLE --mlperf DIR`: a bundle written in the layout of an MLPerf power
result folder, for tools that read that layout. It is NOT an official submission.

    DIR/README-labconsole.txt        what this is, and what it is not
    DIR/power/client.json            power-dev's summary schema, as far as our data allows
    DIR/power/server.json
    DIR/power/client.log             the console's timeline, one line per event
    DIR/power/ptd_logs.txt           only when the bundle holds a PTD transcript (data/**/ptd*.txt|log)
    DIR/ranging/  mlperf_log_detail.txt  mlperf_log_summary.txt  spl.txt
    DIR/run_1/    (the testing phase, the same files)

`spl.txt` lines are PTD's: `Time,MM-DD-YYYY HH:MM:SS.mmm,Watts,%.6f,Volts,..,Amps,..,PF,..,Mark,<session>_<mode>`,
UTC, invalid readings -1.000000 in every field. LoadGen logs are copied byte for byte.

Two consequences of PTD's format, stated in the README: values carry 6 decimals, so the
average read back agrees with the bundle's to the microwatt (exactly, for meters that report
no more digits); and times carry milliseconds, so a sample recorded less than 1 ms after
power_begin is stamped 1 ms later to keep it inside the window where it was measured.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labconsole import safefile
from labconsole.bundle.reader import RunRecord, open_run
from labconsole.bundle.seal import verify
from labconsole.events import PROGRESS, Event, phase_spans
from labconsole.mlperf.powerdev import SUPPORTED_MODEL, analyzer_file, format_spl_line, merge_power_logs, sha1_file
from labconsole.samples.batch import OK

NOT_OFFICIAL = (
    "This folder was written by labconsole from one of its own run bundles. It is NOT an official MLPerf "
    "submission and NOT the output of MLPerf's power workflow: no power-dev client/server and no SPEC PTDaemon "
    "produced it, it carries no source checksums, and the official compliance checker will reject it."
)
# The same, for a bundle whose samples a SPEC PTDaemon did produce (read by labconsole's PTD source).
NOT_OFFICIAL_PTD = (
    "This folder was written by labconsole from one of its own run bundles. It is NOT an official MLPerf "
    "submission and NOT the output of MLPerf's power workflow: its samples came from a SPEC PTDaemon, read by "
    "labconsole instead of power-dev's client/server, so it carries no source checksums and no power-dev messages, "
    "and the official compliance checker will reject it."
)


def not_official_note(record: RunRecord) -> str:
    """The export's disclaimer, true to how the bundle's primary source was recorded."""
    return NOT_OFFICIAL_PTD if _primary_driver(record) == "ptd" else NOT_OFFICIAL


def _primary_driver(record: RunRecord) -> str | None:
    prim = record.primary_source
    for group in (record.environment.get("sources") or [], record.sources):
        for s in group:
            if isinstance(s, dict) and s.get("name") == prim and s.get("driver"):
                return str(s["driver"])
    return None


def device_type_of(model: str) -> int | None:
    """MLPerf's device number for an analyzer model: PTD names it as SUPPORTED_MODEL does
    ("YokogawaWT310E"), a Yokogawa read directly by its *IDN? model ("WT310E")."""
    key = model.replace(" ", "").lower()
    for name, number in SUPPORTED_MODEL.items():
        if name.lower() in (key, "yokogawa" + key):
            return number
    return None
PHASE_FOLDERS = {"ranging": "ranging", "testing": "run_1"}
MS = 1_000_000


class ExportError(ValueError):
    """The export cannot be done (message says why); nothing was written."""


class ExportTampered(ExportError):
    """The bundle does not verify against its seal: a failed check (exit 1), not bad input."""


@dataclass
class ExportResult:
    out_dir: Path
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    session_name: str = ""
    disclaimer: str = NOT_OFFICIAL  # what produced it, truthfully (not_official_note)


def _inside(path: Path, root: Path) -> bool:
    """The file really lies in the bundle: no link (or linked folder) leads out of it. An
    export copies files out; a hostile bundle must not make it copy anything else."""
    if path.is_symlink():
        return False
    return path.resolve().is_relative_to(root.resolve())


def _session_name(record: RunRecord) -> str:
    start = record.run_info.get("start")
    try:
        t = _dt.datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%d_%H-%M-%S") + "_labconsole"  # power-dev: time + "_" + label


def _phase_spans(events: list[Event]) -> dict[str, list[float]]:
    """[start, end] s of the ranging and testing phases (end = start when none was recorded)."""
    return {ph: [b / 1e9, (e if e is not None else b) / 1e9] for ph, (b, e) in phase_spans(events).items() if ph in PHASE_FOLDERS}


def spl_lines(frame: Any, mark: str, begin_ns: int | None) -> tuple[list[str], int]:
    """PTD sample lines for one source's frame; returns (lines, samples re-stamped at the begin edge).

    One channel: one line per sample. Several channels (a multichannel analyzer): lines merged
    by index like power-dev's merge, the first group the sum, then `Ch<k>` groups.
    """
    channels = list(dict.fromkeys(frame["channel"].tolist()))
    per = [frame[frame["channel"] == ch] for ch in channels]
    n = min(len(p) for p in per) if per else 0
    lines, moved = [], 0
    cols = {ch: {k: p[k].to_numpy() for k in ("wall_ns", "watts", "volts", "amps", "pf", "status")} for ch, p in zip(channels, per)}
    for i in range(n):
        first = cols[channels[0]]
        wall = int(first["wall_ns"][i])
        if begin_ns is not None and begin_ns < wall < begin_ns + MS and wall // MS * MS <= begin_ns:
            wall = begin_ns + MS  # keep it strictly after power_begin once truncated to ms
            moved += 1
        if len(channels) == 1:
            ok = int(first["status"][i]) == OK and np.isfinite(first["watts"][i])
            lines.append(format_spl_line(wall, first["watts"][i], first["volts"][i], first["amps"][i], first["pf"][i], mark, valid=ok))
            continue
        groups, total, all_ok = [], 0.0, True
        for k, ch in enumerate(channels, start=1):
            c = cols[ch]
            ok = int(c["status"][i]) == OK and np.isfinite(c["watts"][i])
            all_ok &= ok
            total += float(c["watts"][i]) if ok else 0.0
            g = format_spl_line(wall, c["watts"][i], c["volts"][i], c["amps"][i], c["pf"][i], "", valid=ok)
            groups.append(f"Ch{k}," + g.split(",", 2)[2].rsplit(",Mark,", 1)[0])
        head = format_spl_line(wall, total, float("nan"), float("nan"), float("nan"), mark, valid=all_ok)
        lines.append(head + "," + ",".join(groups))
    return lines, moved


def _timeline_log(events: list[Event]) -> str:
    out = []
    level = {"warning": "WARNING", "error": "ERROR"}
    for e in events:
        if e.kind == PROGRESS:
            continue
        t = _dt.datetime.fromtimestamp(e.wall_ns / 1e9, tz=_dt.timezone.utc)
        stamp = t.strftime("%Y-%m-%d %H:%M:%S") + f",{t.microsecond // 1000:03d}"
        msg = e.message.replace("\n", " | ")
        out.append(f"labconsole {stamp} [{level.get(e.kind, 'INFO')}] {msg}")
    return "\n".join(out) + ("\n" if out else "")


@dataclass
class _Staging:
    """The folder being written (renamed into place when complete) and the sha1 of each file
    written, listed as power-dev's client.json and server.json list them."""

    root: Path
    client: dict[str, str] = field(default_factory=dict)
    server: dict[str, str] = field(default_factory=dict)

    def write(self, rel: str, text: str, hashes: dict[str, str]) -> None:
        (self.root / rel).write_text(text, encoding="utf-8", newline="\n")
        hashes[rel] = sha1_file(self.root / rel)


def _check_exportable(record: RunRecord, bundle: str | Path, out: Path) -> bool:
    """Raise ExportError before anything is written if the export cannot be done; whether the
    bundle is sealed (and unchanged since)."""
    if record.kind != "bundle":
        raise ExportError(f"{bundle}: already an MLPerf result folder; export reads labconsole bundles")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty folder; choose a new folder (nothing is ever overwritten)")
    if out.resolve().is_relative_to(record.path.resolve()):
        raise ExportError(f"{out}: inside the bundle; a sealed bundle must not change")
    testing = record.phases.get("testing")
    if testing is None or testing.samples is None or testing.detail is None:
        raise ExportError(f"{bundle}: no testing phase with samples and LoadGen logs to export")
    sealed = verify(record.path)
    if sealed.sealed and sealed.problems:
        # The export would carry changed data under the bundle's name: refuse, saying what changed.
        shown = "; ".join(sealed.problems[:5]) + (f"; ... {len(sealed.problems) - 5} more" if len(sealed.problems) > 5 else "")
        raise ExportTampered(f"{bundle}: changed after sealing, not exported: {shown}")
    return sealed.sealed


def _write_phase(stage: _Staging, record: RunRecord, phase: str, sub: str, session: str, notes: list[str]) -> None:
    """`ranging/` or `run_1/`: LoadGen's logs byte for byte, and the primary source's spl.txt."""
    ph = record.phases.get(phase)
    if ph is None:
        notes.append(f"{sub}/: the bundle has no {phase} phase")
        return
    (stage.root / sub).mkdir()
    lg = record.path / "data" / phase / "loadgen"
    for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
        src = lg / name
        if src.is_file() and not _inside(src, record.path):
            notes.append(f"{sub}/{name}: not copied, {src} leads out of the bundle (a link)")
        elif src.is_file():
            shutil.copyfile(src, stage.root / sub / name)
            stage.client[f"{sub}/{name}"] = sha1_file(stage.root / sub / name)
        else:
            notes.append(f"{sub}/{name}: not in the bundle")
    prim = record.primary_source
    frame = ph.samples[ph.samples["source"] == prim] if ph.samples is not None else None
    if frame is None or len(frame) == 0:
        notes.append(f"{sub}/spl.txt: no samples of the primary source {prim} in {phase}")
        return
    begin = ph.detail.power_begin_ns if ph.detail is not None else None
    mark = f"{session}_{'testing' if phase == 'testing' else 'ranging'}"
    analyzers = analyzer_frames(frame)
    if analyzers:
        _write_analyzers(stage, sub, analyzers, mark, begin, notes)
        return
    if frame["channel"].nunique() > 1:
        notes.append(
            f"{sub}/spl.txt: {prim} has {frame['channel'].nunique()} channels, merged by index as power-dev merges analyzers;"
            " read back, the average of the sums may differ from labconsole's sum of channel averages"
        )
    lines, moved = spl_lines(frame, mark, begin)
    if moved:
        notes.append(f"{sub}/spl.txt: {moved} sample(s) recorded less than 1 ms after power_begin stamped 1 ms later, to stay inside the window")
    # PTD's files end with an empty line (power-dev reference §2.4)
    stage.write(f"{sub}/spl.txt", "\n".join(lines) + "\n\n", stage.server)


def analyzer_frames(frame: Any) -> list[Any]:
    """A multi-analyzer source's samples per analyzer (channels `analyzer<i>` or
    `analyzer<i>.ch<k>`), in analyzer order; [] for any other source."""
    names = list(dict.fromkeys(frame["channel"].astype(str).tolist()))
    index: dict[int, list[str]] = {}
    for name in names:
        head = name.split(".", 1)[0]
        if not (head.startswith("analyzer") and head[8:].isdigit()):
            return []
        index.setdefault(int(head[8:]), []).append(name)
    if sorted(index) != list(range(1, len(index) + 1)):
        return []
    col = frame["channel"].astype(str)
    return [frame[col.isin(index[i])] for i in sorted(index)]


def _write_analyzers(stage: _Staging, sub: str, analyzers: list[Any], mark: str, begin: int | None, notes: list[str]) -> None:
    """Several analyzers, as power-dev's server leaves them: each analyzer's samples in
    `spl_analyzer_<i>` and spl.txt merged from those files by power-dev's own rule (one
    analyzer: a copy)."""
    texts = []
    for i, af in enumerate(analyzers, start=1):
        lines, moved = spl_lines(af, mark, begin)
        if moved:
            notes.append(f"{analyzer_file(sub, i)}: {moved} sample(s) recorded less than 1 ms after power_begin stamped 1 ms later, to stay inside the window")
        texts.append("\n".join(lines) + "\n\n")
        stage.write(analyzer_file(sub, i), texts[-1], stage.server)
    merged = merge_power_logs(texts) if len(texts) > 1 else texts[0]
    stage.write(f"{sub}/spl.txt", merged, stage.server)
    counts = [t.count("\n") - 1 for t in texts]
    if len(texts) > 1:
        notes.append(
            f"{sub}/spl.txt: {len(texts)} analyzers merged as power-dev merges them (line k of each, not by time; Watts summed;"
            f" Volts/Amps/PF -1), {min(counts)} lines" + (f"; lines per analyzer {counts}: the longer files' extra lines are not in spl.txt" if len(set(counts)) > 1 else "")
        )


def _write_ptd_logs(stage: _Staging, record: RunRecord, notes: list[str]) -> None:
    """power/ptd_logs.txt: the bundle's PTD transcripts, one `Analyzer <n>` section each."""
    transcripts = sorted(p for p in (record.path / "data").rglob("ptd*") if p.is_file() and p.suffix in (".txt", ".log") and _inside(p, record.path))
    if not transcripts:
        notes.append("power/ptd_logs.txt: not written, the bundle holds no PTD transcript")
        return
    parts = [f"Analyzer {i}\n" + safefile.read_text(p, "log", root=record.path, errors="replace") for i, p in enumerate(transcripts, start=1)]
    stage.write("power/ptd_logs.txt", "".join(parts), stage.server)


def _summaries(stage: _Staging, record: RunRecord, events: list[Event], session: str) -> tuple[dict, dict]:
    """client.json and server.json in power-dev's schema, as far as the bundle's data allows."""
    prim = record.primary_source
    spans = _phase_spans(events)
    phases = {ph: [[spans[ph][0]] * 2, [spans[ph][0]] * 2, [spans[ph][1]] * 2, [spans[ph][1]] * 2] for ph in PHASE_FOLDERS if ph in spans}
    found = next((s for s in (record.environment.get("sources") or []) if isinstance(s, dict) and s.get("name") == prim), {})
    ident = found.get("identity") or {}
    each = (ident.get("extra") or {}).get("analyzers") or [ident]  # several analyzers: one ptd_config entry each
    run_id = str(record.run_info.get("id") or "")
    base = {
        "version": "1.0",
        "timezone": 0,
        "modules": {},
        "sources": {},
        "messages": [],
        "uuid": {"client": run_id, "server": run_id},
        "session_name": session,
        "phases": phases,
        "labconsole": {
            "official": False,
            "note": not_official_note(record),
            "bundle": str(record.path),
            "run_id": run_id,
            "primary_source": prim,
            "phases_note": "phase stamps are the console's phase start/end (wall clock, seconds); the monotonic column repeats the wall clock",
        },
    }
    client = dict(base, results=dict(sorted(stage.client.items())))
    server = dict(
        base,
        results=dict(sorted(stage.server.items())),
        ptd_messages=[],
        ptd_config=[
            {"command": [], "device_type": device_type_of(str(a.get("model", ""))) if a.get("model") else None, "interface_flag": None, "dc_flag": None,
             "device_port": a.get("address"), "channel": None, "identity": a, "driver": found.get("driver")}
            for a in each
        ],
    )
    return client, server


def _readme(record: RunRecord, session: str, notes: list[str]) -> str:
    run_id = str(record.run_info.get("id") or "")
    readme = [not_official_note(record), "", f"bundle: {record.path}", f"run id: {run_id}", f"session name: {session}", f"primary source: {record.primary_source}", "", "notes:"]
    readme += [f"- {n}" for n in notes]
    return "\n".join(readme) + "\n"


def export_mlperf(bundle: str | Path, out_dir: str | Path) -> ExportResult:
    record = open_run(bundle)
    out = Path(out_dir)
    sealed = _check_exportable(record, bundle, out)
    session = _session_name(record)
    res = ExportResult(out, session_name=session, disclaimer=not_official_note(record))
    if not sealed:
        res.notes.append("the bundle is not sealed (no BagIt manifests): nothing vouches that its files are as recorded")
    events = record.events()
    # Everything is written to a sibling folder and renamed into place at the end: a failed
    # export leaves nothing behind.
    stage = _Staging(out.with_name(out.name + ".partial"))
    if stage.root.exists():
        shutil.rmtree(stage.root)
    try:
        (stage.root / "power").mkdir(parents=True)
        for phase, sub in PHASE_FOLDERS.items():
            _write_phase(stage, record, phase, sub, session, res.notes)
        stage.write("power/client.log", _timeline_log(events), stage.client)
        _write_ptd_logs(stage, record, res.notes)
        res.notes.append("power/server.log: not written, there was no power-dev server")
        client, server = _summaries(stage, record, events, session)
        # As power-dev's summary.py writes them (indent 4), not labconsole.events.to_json: MLPerf's tools read these.
        for name, obj in (("client.json", client), ("server.json", server)):
            (stage.root / "power" / name).write_text(json.dumps(obj, indent=4) + "\n", encoding="utf-8")
        res.notes.append("client.json/server.json: no power-dev messages, source checksums or PTD messages (none exist for this run)")
        res.notes.append("spl.txt: values with 6 decimals and times with milliseconds, as PTD writes them")
        (stage.root / "README-labconsole.txt").write_text(_readme(record, session, res.notes), encoding="utf-8")
        if out.exists():
            out.rmdir()
        stage.root.rename(out)
    except BaseException:
        shutil.rmtree(stage.root, ignore_errors=True)
        raise
    res.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return res
