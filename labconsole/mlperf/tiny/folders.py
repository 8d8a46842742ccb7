"""Reading MLPerf Tiny energy results: EnergyRunner folders, MLCommons-runner folders, our runs.

- EnergyRunner (EEMBC, v3.0.x): `trace1-energy.bin` (0xF1, float32 LE sample rate, float32 LE
  µJ per sample period), `trace1-timestamps.json` (seconds, 3 decimals), `results.txt`, `log.txt`.
- MLCommons runner (`mlcommons/tiny:benchmark/runner`): `results.json` (a list of trials, each
  with `power.samples` in J per sample period and `power.timestamps` = [counter, sample index]
  pairs from the LPM01A's `event NN ris` lines), `results.txt`, `log.txt`.
- A labconsole Tiny bundle keeps the MLCommons-runner layout in `data/tiny/` (plus
  `data/tiny/run.json`: what the bench knew that the runner's files do not say).

`find_tiny(path)` says whether a path is one of these (also one folder above: `…/ad/` holding
`energy/`), `read_tiny(path)` reads and scores it. Nothing is written into the folder read.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labconsole.mlperf.tiny.scoring import (
    ENERGYRUNNER,
    MLCOMMONS,
    Window,
    as_printed,
    consecutive,
    last_two,
    median_throughput,
    median_uj_per_inf,
    pair_edges,
    window_at_indices,
    window_at_times,
)

ER_TRACE, ER_TIMES = "trace1-energy.bin", "trace1-timestamps.json"
ER_MAGIC = 0xF1
MLC_RESULTS = "results.json"
BUNDLE_TINY = Path("data") / "tiny"

_MEDIAN_RE = re.compile(r"Median energy cost is\s+([\d.]+)\s*uJ/inf")
_THROUGHPUT_RE = re.compile(r"Median throughput is\s+([\d.]+)\s*inf\./sec")
_INFER_START_RE = re.compile(r"m-infer-start-(\d+)")
_INFER_CMD_RE = re.compile(r"\binfer (\d+)(?: (\d+))?")
_ITER_RE = re.compile(r"key\[iterInfer\]-val\[(\d+)\]")
_NAME_RE = re.compile(r"m-name-dut-\[([^\]]*)\]|Device name retrieved: (.*)")
_PROFILE_RE = re.compile(r"m-profile-\[([^\]]*)\]|Device profile retrieved: (.*)")
_MODEL_RE = re.compile(r"m-model-\[([^\]]*)\]|key\[model\]-val\[([^\]]*)\]|Device model retrieved: (.*)")
_VOLT_MV_RE = re.compile(r"m-voltage-mv\[(\d+)\]|emon voltage (\d+)")
# What a DUT or a runner reports as an error: the DUT API's `e-[...]`, the runners' ERROR lines.
_ERROR_RE = re.compile(r"(?:^|[\s:])e-\[|\bERROR\b|\bTraceback\b|Timestamps are not consecutive")
_RUNNER_ERROR_RE = re.compile(r"\bERROR\b|\bTraceback\b|Timestamps are not consecutive")
_LOSS_RE = re.compile(r"overrun|overflow|lost|buffer full|buff 100%", re.IGNORECASE)


class TinyError(ValueError):
    """A Tiny result folder that cannot be read (message names the file and why)."""


@dataclass
class TinyRun:
    path: Path
    runner: str  # ENERGYRUNNER | MLCOMMONS (our own runs use the MLCommons-runner layout)
    source: str  # "energyrunner" | "mlcommons" | "labconsole"
    sample_rate_hz: float
    windows: list[Window]
    total_samples: int
    traces: list[np.ndarray] = field(default_factory=list)  # one (EnergyRunner) or one per trial
    edges: list[list[int]] = field(default_factory=list)  # event sample indices, per trace
    published: dict = field(default_factory=dict)  # figures read from results.txt
    log_lines: list[str] = field(default_factory=list)
    dut: dict = field(default_factory=dict)  # name, profile, model
    voltage_v: float | None = None
    supplies: int | None = None  # energy monitors seen powering the DUT
    lost_samples: int | None = None  # None: the format keeps no count
    problems: list[str] = field(default_factory=list)  # what could not be read or matched
    non_consecutive: list[int] = field(default_factory=list)  # trials whose event counters skip
    extra: dict = field(default_factory=dict)  # labconsole run: data/tiny/run.json

    @property
    def median_uj_per_inf(self) -> float:
        return median_uj_per_inf(self.windows)

    @property
    def metric_value(self) -> float:
        return as_printed(self.median_uj_per_inf, self.runner)

    @property
    def median_throughput(self) -> float | None:
        # The MLCommons runner prints no throughput in energy mode; ours and EnergyRunner do.
        return median_throughput(self.windows) if self.windows else None

    @property
    def dut_errors(self) -> list[str]:
        if self.extra.get("io_manager"):  # our log: the DUT's own lines carry the IO manager's prefix
            return [ln for ln in self.log_lines if "[dut]: e-[" in ln or _RUNNER_ERROR_RE.search(ln)]
        return [ln for ln in self.log_lines if _ERROR_RE.search(ln)]

    def trace_time_s(self) -> float:
        return self.total_samples / self.sample_rate_hz if self.sample_rate_hz else math.nan


def find_tiny(path: str | Path) -> Path | None:
    """The Tiny energy folder at `path` (or `path/energy`, or a bundle's data/tiny), else None."""
    p = Path(path)
    if not p.is_dir():
        return None
    for cand in (p, p / "energy", p / BUNDLE_TINY):
        if (cand / ER_TRACE).is_file() and (cand / ER_TIMES).is_file():
            return cand
        if (cand / MLC_RESULTS).is_file() and _looks_like_mlc(cand / MLC_RESULTS):
            return cand
    return None


def _looks_like_mlc(path: Path) -> bool:
    # Cheap sniff (results.json may be MBs): a JSON list whose first trial has "power" or "infer".
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace").lstrip()
    except OSError:
        return False
    return head.startswith("[") and ('"infer"' in head or '"power"' in head or head.startswith("[]"))


def _read_text_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").replace("\r", "").splitlines()


def parse_results_txt(lines: list[str]) -> dict:
    """The figures a runner printed: the median, the median throughput, per-window energies."""
    out: dict = {}
    per_inf: list[float] = []
    for ln in lines:
        if (m := _MEDIAN_RE.search(ln)) is not None:
            out["median_uj_per_inf"] = float(m.group(1))
            out["median_text"] = m.group(1)
            out["line"] = ln.strip()
        elif (m := _THROUGHPUT_RE.search(ln)) is not None:
            out["median_throughput_inf_s"] = float(m.group(1))
        elif (m := re.search(r"Energy/Inf\.?\s*:\s*([\d.]+)", ln)) is not None:
            per_inf.append(float(m.group(1)))
    if per_inf:
        out["uj_per_inf"] = per_inf
    return out


def _dut_info(lines: list[str]) -> dict:
    dut: dict = {}
    for key, rx in (("name", _NAME_RE), ("profile", _PROFILE_RE), ("model", _MODEL_RE)):
        for ln in lines:
            m = rx.search(ln)
            if m:
                # Text from a log goes on to terminals and reports: printable characters only.
                dut[key] = "".join(ch for ch in next(g for g in m.groups() if g is not None).strip() if ch.isprintable())[:128]
                break
    return dut


def _voltage(lines: list[str]) -> float | None:
    for ln in reversed(lines):  # the last one the monitor confirmed
        m = _VOLT_MV_RE.search(ln)
        if m:
            return int(next(g for g in m.groups() if g is not None)) / 1000.0
    return None


def read_tiny(path: str | Path) -> TinyRun:
    folder = find_tiny(path)
    if folder is None:
        raise TinyError(f"{path}: not an MLPerf Tiny energy folder ({ER_TRACE} + {ER_TIMES}, or {MLC_RESULTS} with trials)")
    if (folder / ER_TRACE).is_file():
        return read_energyrunner(folder)
    return read_mlcommons(folder)


# ---------------------------------------------------------------------------------------------
# EnergyRunner


def read_trace_bin(path: Path) -> tuple[float, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) < 5 or raw[0] != ER_MAGIC:
        raise TinyError(f"{path}: not an EnergyRunner trace (first byte {raw[:1].hex() or 'none'}, expected f1)")
    (fs,) = struct.unpack("<f", raw[1:5])
    body = raw[5:]
    if len(body) % 4:
        body = body[: len(body) - len(body) % 4]  # a torn last sample is not a sample
    if not (fs > 0 and math.isfinite(fs)):
        raise TinyError(f"{path}: sample rate {fs!r} in the header is not a rate")
    return float(fs), np.frombuffer(body, dtype="<f4")


def read_energyrunner(folder: Path) -> TinyRun:
    fs, trace = read_trace_bin(folder / ER_TRACE)
    try:
        times = json.loads((folder / ER_TIMES).read_text(encoding="utf-8"))
        times = [float(t) for t in times]
    except (ValueError, TypeError) as exc:
        raise TinyError(f"{folder / ER_TIMES}: not a JSON list of seconds ({exc})") from None
    log = _read_text_lines(folder / "log.txt")
    res = _read_text_lines(folder / "results.txt")
    run = TinyRun(folder, ENERGYRUNNER, "energyrunner", fs, [], len(trace), [trace], published=parse_results_txt(res), log_lines=log)
    run.dut = _dut_info(log)
    run.voltage_v = _voltage(log) or _voltage(_read_text_lines(folder / "script.async"))
    run.supplies = len({ln.split("mountc", 1)[1].split()[0] for ln in log + _read_text_lines(folder / "script.async") if "mountc emon" in ln}) or (1 if trace.size else 0)
    counts = [int(m.group(1)) for ln in log if (m := _INFER_START_RE.search(ln))]
    if not counts:
        counts = [int(m.group(1)) for ln in res if (m := re.search(r"# Inferences\s*:\s*(\d+)", ln))]
    if not counts:
        counts = [int(m.group(1)) for ln in log if (m := _ITER_RE.search(ln))]
    pairs = pair_edges(times)
    run.edges = [[min(len(trace), max(0, round(t * fs))) for t in times]]
    for k, (t0, t1) in enumerate(pairs):
        n = counts[k] if k < len(counts) else (counts[-1] if counts else 0)
        if not n:
            run.problems.append(f"window {k + 1}: no inference count in log.txt or results.txt")
        run.windows.append(window_at_times(trace, fs, t0, t1, n, k, 1.0))
    if times and times[-1] * fs > len(trace):
        run.lost_samples = int(math.ceil(times[-1] * fs)) - len(trace)
        run.problems.append(f"{ER_TRACE}: ends at {len(trace) / fs:.3f} s, before the last timestamp ({times[-1]:.3f} s)")
    return run


# ---------------------------------------------------------------------------------------------
# MLCommons runner (and our runs, which write its layout)


def read_mlcommons(folder: Path) -> TinyRun:
    path = folder / MLC_RESULTS
    try:
        trials = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TinyError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(trials, list):
        raise TinyError(f"{path}: expected a list of trials, found {type(trials).__name__}")
    extra: dict = {}
    ours = folder / "run.json"
    if ours.is_file():
        try:
            extra = json.loads(ours.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TinyError(f"{ours}: not valid JSON ({exc})") from None
    fs = float(extra.get("sample_rate_hz") or 1000.0)  # the runner sets `freq 1k` and assumes it
    log = _read_text_lines(folder / "log.txt")
    run = TinyRun(folder, MLCOMMONS, "labconsole" if extra else "mlcommons", fs, [], 0, published=parse_results_txt(_read_text_lines(folder / "results.txt")), log_lines=log, extra=extra)
    run.dut = _dut_info(log) or dict(extra.get("dut") or {})
    volts = set()
    for k, trial in enumerate(trials):
        where = f"{path}: trial {k}"
        if not isinstance(trial, dict):
            raise TinyError(f"{where}: not an object")
        power, infer = trial.get("power"), trial.get("infer")
        if not isinstance(power, dict) or not isinstance(infer, dict):
            raise TinyError(f"{where}: no `power` or `infer` (not an energy-mode result)")
        try:
            samples = np.array(power.get("samples") or [], dtype=np.float64)
            events = [(int(c) if c is not None else None, int(i)) for c, i in (power.get("timestamps") or [])]
            n = int(infer.get("iterations") or 0)
        except (TypeError, ValueError) as exc:
            raise TinyError(f"{where}: power.samples / power.timestamps / infer.iterations unreadable ({exc})") from None
        if power.get("voltage") is not None:
            volts.add(float(power["voltage"]))
        run.traces.append(samples)
        run.edges.append([i for _, i in events])
        run.total_samples += len(samples)
        if not consecutive([c for c, _ in events]):
            run.non_consecutive.append(k)
        pair = last_two(events)
        if pair is None:
            run.problems.append(f"trial {k}: {len(events)} timestamp(s), 2 needed")
            continue
        if pair[1] > len(samples):
            run.problems.append(f"trial {k}: timestamp at sample {pair[1]} but only {len(samples)} samples")
        run.windows.append(window_at_indices(samples, fs, pair[0], pair[1], n, len(run.windows), 1e6))
    if len(volts) == 1:
        run.voltage_v = volts.pop()
    elif len(volts) > 1:
        run.problems.append(f"trials report different voltages: {sorted(volts)}")
    if extra.get("voltage_v") is not None:
        run.voltage_v = float(extra["voltage_v"])
    run.supplies = int(extra.get("supplies", 1))
    if "lost_samples" in extra:
        run.lost_samples = int(extra["lost_samples"])
    else:
        lost = [ln for ln in log if _LOSS_RE.search(ln)]
        run.lost_samples = len(lost) if lost else None
    return run
