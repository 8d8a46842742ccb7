"""The profile: a YAML file describing a bench (its sources, the workload, the procedure).

Every mistake is reported as `FILE:LINE: field.path: what is wrong`; unknown keys are errors,
so a typo never passes silently. The loader keeps the exact text (it goes into the bundle as
`profile.yaml`) and its SHA-256.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from labconsole import safefile
from labconsole.emulators.registry import FOR_DRIVER, loopback_problem, module_for
from labconsole.workload import issue_cpu
from labconsole.workload.suts import validate_sut_options

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
SCOPES = ("wall", "system", "gpu", "cpu", "dram", "dc-rail", "other")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# LoadGen's official seeds (loadgen/mlperf.conf at 6.0.17), used unless a profile sets its own.
OFFICIAL_SEEDS = {
    "qsl": 2085463073848966840,
    "sample_index": 2747215439041700203,
    "schedule": 16159082839903944936,
}

MAX_YAML_NODES = 50_000  # an anchors-and-aliases "billion laughs" stops here, not in RAM
MAX_PROFILE_BYTES = 1 << 20


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


class ExpectedIdentity(Model):
    """What the operator expects to find; calibration compares it with what `identify()` says."""

    model: str | None = Field(None, max_length=128)
    serial: str | None = Field(None, max_length=128)
    firmware: str | None = Field(None, max_length=128)


class CalibrationCertificate(Model):
    certificate_date: _dt.date = Field(description="date of the meter's last calibration certificate")
    interval_days: int = Field(365, ge=1, le=3650)


class SourceSpec(Model):
    name: str = Field(pattern=NAME_PATTERN)
    driver: str = Field(min_length=1, max_length=64)
    scope: Literal["wall", "system", "gpu", "cpu", "dram", "dc-rail", "other"] = "wall"
    sample_interval_s: float = Field(1.0, gt=0, le=3600)
    # How its samples are stored: auto = CSV up to 1 kHz, binary above (labconsole/samples.py).
    stream: Literal["auto", "csv", "binary"] = "auto"
    primary: bool = False
    on_failure: Literal["stop", "continue"] = "stop"
    identity: ExpectedIdentity | None = None
    calibration: CalibrationCertificate | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Ask the console to start a loopback emulator for this source (options for the emulator,
    # e.g. its load model); its address is merged into `options`. For training and tests.
    emulator: dict[str, Any] | None = None


class Seeds(Model):
    qsl: int = Field(OFFICIAL_SEEDS["qsl"], ge=0, lt=2**64)
    sample_index: int = Field(OFFICIAL_SEEDS["sample_index"], ge=0, lt=2**64)
    schedule: int = Field(OFFICIAL_SEEDS["schedule"], ge=0, lt=2**64)


Auto = Literal["auto"]


class LoadGenWorkload(Model):
    type: Literal["loadgen"] = "loadgen"
    sut: str = Field("matmul", description="null | sleep | matmul | python:MODULE:FUNCTION")
    sut_options: dict[str, Any] = Field(default_factory=dict)
    scenario: Literal["SingleStream", "MultiStream", "Server", "Offline"] = "Offline"
    duration_s: float = Field(10.0, gt=0, le=7 * 86400, description="LoadGen min_duration")
    min_query_count: int | None = Field(None, ge=1, le=10**9)
    max_duration_s: float | None = Field(None, gt=0, le=7 * 86400)
    target_qps: float | Auto = Field("auto", description="Server: Poisson rate; Offline: expected QPS")
    expected_latency_ms: float | Auto = Field("auto", description="SingleStream/MultiStream generation hint")
    latency_bound_ms: float = Field(100.0, gt=0, le=3_600_000, description="Server latency bound at p99")
    samples_per_query: int = Field(8, ge=1, le=1024, description="MultiStream samples per query")
    total_sample_count: int = Field(1024, ge=1, le=10**7)
    performance_sample_count: int = Field(1024, ge=1, le=10**7)
    seeds: Seeds = Field(default_factory=Seeds)
    trace: bool = Field(False, description="write LoadGen's trace (large, slows the harness)")
    timeout_s: float | None = Field(None, gt=0, le=30 * 86400, description="watchdog; default 3 x duration + 120 s")
    official: bool = Field(False, description="run through power-dev's client and director (the official MLPerf Power workflow)")
    stall_s: float | None = Field(None, gt=0, le=86400, description="stop a phase when nothing completes for this long; default max(60 s, duration / 2)")
    issue_cpu: Literal["auto", "none"] | Annotated[int, Field(ge=0, le=65535)] = Field(
        "auto", description="Server: the CPU for LoadGen's issue thread, which the harness's threads keep off (auto: the last one allowed; none: no placement)")

    @field_validator("issue_cpu", mode="before")
    @classmethod
    def _issue_cpu(cls, v: Any) -> Any:
        if isinstance(v, bool):  # YAML's yes/no: not a CPU number
            raise ValueError("must be auto, none or a CPU number")
        if isinstance(v, int):
            issue_cpu.require_allowed(v)
        return v

    @field_validator("target_qps", "expected_latency_ms")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and not (0 < float(v) <= 1e9):
            raise ValueError("must be 'auto' or a number in (0, 1e9]")
        return v

    @field_validator("sut", mode="before")
    @classmethod
    def _sut_null(cls, v: Any) -> Any:
        return "null" if v is None else v  # YAML reads `sut: null` as None; the SUT is named null

    @field_validator("sut")
    @classmethod
    def _sut_name(cls, v: str) -> str:
        if v in ("null", "sleep", "matmul"):
            return v
        if re.fullmatch(r"python:[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            return v
        raise ValueError("must be null, sleep, matmul or python:MODULE:FUNCTION")

    @model_validator(mode="after")
    def _counts(self) -> "LoadGenWorkload":
        if self.performance_sample_count > self.total_sample_count:
            raise ValueError("performance_sample_count must not exceed total_sample_count")
        return self


class CommandWorkload(Model):
    """The user's own harness: run as an argument list (never through a shell)."""

    type: Literal["command"]
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=512)
    loadgen_logs: str = Field(min_length=1, description="folder the harness writes its LoadGen logs into")
    scenario: Literal["SingleStream", "MultiStream", "Server", "Offline"] = "Offline"
    duration_s: float = Field(600.0, gt=0, le=7 * 86400, description="expected run length, for progress")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=30 * 86400)
    official: bool = Field(False, description="run through power-dev's client and director (the official MLPerf Power workflow)")


class SwitchSpec(Model):
    """An interconnect switch of a Training run: measured by one of the profile's sources, or
    given as an estimate (max specified power x provisioning ratio, the rules' alternative)."""

    name: str = Field(pattern=NAME_PATTERN)
    source: str | None = Field(None, description="a source of this profile that measures the switch")
    estimate_w: float | None = Field(None, gt=0, le=1e6, description="estimated power in W (MLPerf's interconnect_power_est)")
    conversion_eff: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _one_way(self) -> "SwitchSpec":
        if (self.source is None) == (self.estimate_w is None):
            raise ValueError("give either source (measured) or estimate_w (estimated), not both or neither")
        return self


class TrainingWorkload(Model):
    """MLPerf Training: the user's trainer, run `runs` times; it writes MLLOG (run_start,
    run_stop, ...) to its output or to `log`, which labconsole reads for the timed window.
    Every source not used for a switch is a node (`nodes` narrows that)."""

    type: Literal["training"]
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=512)
    benchmark: str = Field("stand_in", pattern=NAME_PATTERN, description="the benchmark's MLPerf name (folder name)")
    system: str | None = Field(None, pattern=NAME_PATTERN, description="the system's name (default: the profile's)")
    runs: int = Field(3, ge=1, le=100)
    log: str = Field("stdout", min_length=1, max_length=4096, description="stdout, or the file the trainer writes MLLOG to")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(24 * 3600.0, gt=0, le=30 * 86400, description="the longest one run may take")
    pad_s: float = Field(1.0, ge=0, le=600, description="power measured this long before each run starts and after it ends")
    gap_s: float = Field(0.0, ge=0, le=3600, description="idle pause between runs")
    conversion_eff: float = Field(1.0, gt=0, le=1, description="AC/DC efficiency applied to node energy (1: none)")
    measurement_type: Literal["AC", "DC"] = "AC"
    nodes: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(None, max_length=4096)
    switches: list[SwitchSpec] = Field(default_factory=list, max_length=1024)
    # The engine's common fields: a training run has no LoadGen scenario.
    scenario: Literal["Training"] = "Training"

    @property
    def duration_s(self) -> float:
        return self.timeout_s


class TinyDutSpec(Model):
    """How the host reaches the MLPerf Tiny device under test."""

    port: str | None = Field(None, min_length=1, max_length=512, description="the IO manager's (energy mode) or the DUT's serial port; from the emulator when it has one")
    baud: int = Field(115200, ge=300, le=4_000_000, description="host <-> IO manager: 115200")
    io_manager: bool = Field(True, description="energy mode: the DUT sits behind an IO manager (`dut <cmd>`)")
    dut_baud: int = Field(9600, ge=300, le=4_000_000, description="IO manager <-> DUT (energy mode: 9600, sent as `setbaud`)")
    timeout_s: float = Field(10.0, gt=0, le=600, description="wait this long for each m-ready (an infer: its expected time plus this)")
    emulator: dict[str, Any] | None = Field(None, description="start the emulated DUT (labconsole.emulators.tiny_dut) with these options")

    @model_validator(mode="after")
    def _where(self) -> "TinyDutSpec":
        if self.port is None and self.emulator is None:
            raise ValueError("give the DUT's `port` (or an `emulator:`)")
        return self


class TinyWorkload(Model):
    """MLPerf Tiny's energy mode: 5 inputs, `infer N W` each, windows cut at the DUT's timestamps."""

    type: Literal["tiny"]
    dut: TinyDutSpec
    energy_source: str | None = Field(None, description="the lpm01a source that powers the DUT (default: the primary source)")
    inputs: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(default_factory=list, max_length=64, description="input files (one per window, cycled); none: seeded random bytes")
    input_bytes: int = Field(490, ge=1, le=96 * 96 * 3, description="size of each generated input")
    seed: int = Field(0, ge=0, lt=2**32)
    windows: int = Field(5, ge=1, le=64, description="MLPerf Tiny: 5")
    inferences: int | Auto = Field("auto", description="N of `infer N W`; auto: enough for min_window_s, from a short timed probe")
    warmups: int = Field(1, ge=0, le=10**6)
    min_window_s: float = Field(10.0, gt=0, le=86400, description="the rules' minimum window (auto N aims 5 % above it)")
    scenario: Literal["SingleStream"] = Field("SingleStream", description="for the run's name: energy per inference is a single-stream figure")
    duration_s: float = Field(60.0, gt=0, le=7 * 86400, description="expected session length, for progress")

    @field_validator("inferences")
    @classmethod
    def _n(cls, v: Any) -> Any:
        if v != "auto" and not (1 <= int(v) <= 10**9):
            raise ValueError("must be 'auto' or a count in [1, 1e9]")
        return v


def _workload_kind(value: Any) -> str | None:
    # `type` may be left out: a workload is LoadGen's unless it says `type: command`.
    if isinstance(value, dict):
        kind = value.get("type", "loadgen")
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


Workload = Annotated[
    Union[
        Annotated[LoadGenWorkload, Tag("loadgen")],
        Annotated[CommandWorkload, Tag("command")],
        Annotated[TrainingWorkload, Tag("training")],
        Annotated[TinyWorkload, Tag("tiny")],
    ],
    Discriminator(_workload_kind, custom_error_type="workload_type", custom_error_message="must be loadgen, command, training or tiny"),
]


class ProcedureSpec(Model):
    idle_s: float = Field(3.0, ge=0, le=3600, description="idle baseline before ranging")
    ranging: bool = Field(True, description="run a ranging pass with auto-range before testing")
    settle_s: float = Field(0.0, ge=0, le=600, description="pause after setting ranges, before a phase")
    ntp_server: str | None = Field(None, max_length=255)
    max_clock_offset_ms: float = Field(400.0, gt=0, le=60_000)
    submission_min_duration_s: float = Field(600.0, gt=0, le=86400)
    max_uncertainty_pct: float = Field(1.0, gt=0, le=100)
    ranging_delta_limit_pct: float = Field(-5.0, ge=-100, le=0)


class AnalyzerSpec(Model):
    """One power analyzer on the director, as power-dev's `[analyzerN]` section says it."""

    device_type: int = Field(ge=0, le=100000, description="PTDaemon's device type (49 = WT310/WT310E)")
    device_port: str = Field(min_length=1, max_length=255, description="COM1, /dev/ttyUSB0, an IP, a serial number")
    interface_flag: Literal["", "-n", "-g", "-y", "-U"] = Field("", description="'' = RS232, -n TCP/IP, -g GPIB, -y Yokogawa TMCTL, -U USB")
    network_port: int = Field(8888, ge=0, le=65535, description="PTDaemon's -p port; one per analyzer (0: a free one, rehearsal)")
    channel: list[int] | None = Field(None, min_length=1, max_length=2)
    dc_flag: bool = False
    gpib_board: int | None = Field(None, ge=0, le=32)


class DirectorSpec(Model):
    """The official workflow's director: power-dev's server on the machine wired to the meter."""

    address: str = Field("127.0.0.1", min_length=1, max_length=255, description="where power-dev's server listens (the client connects here)")
    port: int = Field(4950, ge=0, le=65535, description="power-dev's server port (0: a free one, rehearsal)")
    live_port: int = Field(4951, ge=0, le=65535, description="the director's labconsole live view (0: a free one, rehearsal)")
    ntp_server: str = Field(min_length=1, max_length=255, description="the NTP server both machines check against")
    ptd: str = Field("emulate", min_length=1, max_length=4096, description="path to SPEC PTDaemon, or `emulate` (labconsole's emulator: rehearsal only)")
    ptd_args: list[str] = Field(default_factory=list, max_length=64, description="extra arguments for `labconsole emulate ptd` (with ptd: emulate)")
    analyzers: list[AnalyzerSpec] = Field(default_factory=list, max_length=16)
    ranging_mode: Literal["AUTO", "MAX"] = "AUTO"
    start: bool = Field(False, description="SUT side: start the director (and an SNTP responder) on this machine: a one-machine rehearsal")
    label: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_-]*$", description="power-dev's session label")
    powerdev: str | None = Field(None, max_length=4096, description="a power-dev checkout (else $LABCONSOLE_POWERDEV, else installed)")
    dry_run: bool = Field(False, description="MLPP_DEBUG: short waits, marked debug: NOT for submission")
    min_free_mb: float = Field(500.0, ge=0, le=10**7, description="preflight: free disk needed for the record")

    @model_validator(mode="after")
    def _analyzers(self) -> "DirectorSpec":
        if self.start and not self.analyzers:
            raise ValueError("start: true needs at least one analyzer (director.analyzers)")
        if self.start and self.address not in ("127.0.0.1", "::1", "localhost"):
            # like a profile's emulator: a director this console starts for a rehearsal stays on this machine
            raise ValueError(f"address {self.address!r}: a director started here (start: true) listens on this machine only (127.0.0.1); run `labconsole director` on the meter's machine for a bench")
        return self


class Profile(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=4096)
    operator: str = Field("", max_length=128)
    recordings: str = Field("recordings", min_length=1, max_length=4096)
    sources: list[SourceSpec] = Field(min_length=1, max_length=64)
    workload: Workload = Field(default_factory=LoadGenWorkload)
    procedure: ProcedureSpec = Field(default_factory=ProcedureSpec)
    director: DirectorSpec | None = None

    @model_validator(mode="after")
    def _official(self) -> "Profile":
        if getattr(self.workload, "official", False) and self.director is None:
            raise ValueError("workload.official: true needs a `director:` section (where power-dev's server runs)")
        return self

    @model_validator(mode="after")
    def _unique_and_primary(self) -> "Profile":
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        if sum(s.primary for s in self.sources) > 1:
            raise ValueError("at most one source may be primary")
        wl = self.workload
        if isinstance(wl, TrainingWorkload):
            known = set(names)
            for sw in wl.switches:
                if sw.source is not None and sw.source not in known:
                    raise ValueError(f"workload.switches: {sw.name}: no source named {sw.source!r} (sources: {', '.join(names)})")
            for n in wl.nodes or []:
                if n not in known:
                    raise ValueError(f"workload.nodes: no source named {n!r} (sources: {', '.join(names)})")
            if not training_nodes(self):
                raise ValueError("workload: a training run needs at least one node (a source not used for a switch)")
        return self

    @property
    def primary_source(self) -> SourceSpec:
        for s in self.sources:
            if s.primary:
                return s
        return self.sources[0]


def training_nodes(profile: "Profile") -> list[str]:
    """The sources that are nodes of a Training run, in the profile's order (node_0, node_1, ...)."""
    wl = profile.workload
    if not isinstance(wl, TrainingWorkload):
        return []
    switch_sources = {sw.source for sw in wl.switches if sw.source}
    names = [s.name for s in profile.sources if s.name not in switch_sources]
    return [n for n in names if wl.nodes is None or n in wl.nodes]


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass
class ProfileIssue:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ProfileError(Exception):
    """One or more mistakes in a profile; `str()` lists them one per line."""

    def __init__(self, issues: list[ProfileIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass
class LoadedProfile:
    profile: Profile
    path: Path
    text: str
    sha256: str
    lines: dict[tuple, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Tracker:
    def __init__(self) -> None:
        self.count = 0


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict, tracker: _Tracker, file: str) -> Any:
    tracker.count += 1
    if tracker.count > MAX_YAML_NODES:
        raise ProfileError(
            [ProfileIssue(file, node.start_mark.line + 1, _fmt_path(path), f"too large: more than {MAX_YAML_NODES} YAML nodes (anchor/alias expansion?)")]
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ProfileError([ProfileIssue(file, key_node.start_mark.line + 1, _fmt_path(path), "mapping keys must be plain names")])
            key = loader.construct_scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                raise ProfileError([ProfileIssue(file, key_node.start_mark.line + 1, _fmt_path(path + (key,)), "duplicate key")])
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, path + (key,), lines, tracker, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), lines, tracker, file) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError) as exc:
        # e.g. 2026-13-45 looks like a date to YAML and then fails to be one
        raise ProfileError([ProfileIssue(file, node.start_mark.line + 1, _fmt_path(path), f"not a valid value {node.value!r} ({exc})")]) from None


def _fmt_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_for(lines: dict[tuple, int], path: tuple) -> int:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), 1)


def _loc_to_path(loc: tuple) -> tuple:
    """Pydantic's error location, without the union/discriminator tags it inserts."""
    out = []
    for i, part in enumerate(loc):
        if part in ("loadgen", "command") and i == 1 and loc[0] == "workload":  # the tag, not workload.command
            continue
        if isinstance(part, str) and ("[" in part or part.startswith(("function-", "constrained-"))):
            continue
        out.append(part)
    return tuple(out)


# What each pattern a model uses allows, in words: a regular expression is no answer to a person.
PATTERN_WORDS = {
    NAME_PATTERN: "letters, digits, _ . - only (no spaces), starting with a letter or digit, at most 64 characters",
    r"^[\x21-\x7e]+$": "printable ASCII characters without spaces",
    r"^EMU[A-Za-z0-9]{0,13}$": "EMU followed by at most 13 letters or digits",
    r"^EMU[A-Za-z0-9]{0,16}$": "EMU followed by at most 16 letters or digits",
    r"^\d+(,\d+)?$": "a channel number, or two separated by a comma",
    r"^[A-Za-z0-9_./-]{1,32}$": "1 to 32 letters, digits, _ . / -",
    r"^[A-Za-z0-9_.-]{1,64}$": "1 to 64 letters, digits, _ . - (no spaces)",
    r"^GPU-[0-9A-Za-z-]{8,80}$": "a GPU UUID (GPU- followed by its hexadecimal identifier)",
}


def pattern_words(pattern: str) -> str:
    """A pattern's rule in words (the table above; a generic sentence for one not in it)."""
    return PATTERN_WORDS.get(pattern, "characters or a form not allowed here")


def _pydantic_issues(exc: ValidationError, file: str, lines: dict, prefix: tuple = ()) -> list[ProfileIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = prefix + _loc_to_path(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "workload_type":
            got = err.get("input")
            if isinstance(got, dict):
                path, msg = path + ("type",), f"must be loadgen, command or tiny (got {got.get('type')!r})"
            else:
                msg = f"must be a mapping of workload settings (got {got!r})"[:120]
            issues.append(ProfileIssue(file, _line_for(lines, path), _fmt_path(path), msg))
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        elif err["type"] == "missing":
            msg = "required but missing"
        elif err["type"] == "string_pattern_mismatch":
            msg = "must be " + pattern_words(str((err.get("ctx") or {}).get("pattern", "")))
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not isinstance(err["input"], (dict, list)):
            shown = repr(err["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg += f" (got {shown})"
        issues.append(ProfileIssue(file, _line_for(lines, path), _fmt_path(path), msg))
    return issues


def parse_profile_text(text_bytes: bytes, file: str = "<profile>") -> tuple[Profile, dict[tuple, int], str]:
    """Validate profile bytes; returns (profile, line map, decoded text) or raises ProfileError."""
    if len(text_bytes) > MAX_PROFILE_BYTES:
        raise ProfileError([ProfileIssue(file, 1, "", f"file too large ({len(text_bytes)} bytes; limit {MAX_PROFILE_BYTES})")])
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text_bytes[: exc.start].count(b"\n") + 1
        raise ProfileError([ProfileIssue(file, line, "", f"not UTF-8 text (byte 0x{text_bytes[exc.start]:02x} at offset {exc.start})")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ProfileError([ProfileIssue(file, line, "", "contains a NUL byte; this is not a text profile")])
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise ProfileError([ProfileIssue(file, 1, "", "the profile is empty")])
    lines: dict[tuple, int] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ProfileError([ProfileIssue(file, 1, "", "the profile is empty")])
            data = _build(loader, node, (), lines, _Tracker(), file)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProfileError([ProfileIssue(file, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ProfileError([ProfileIssue(file, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ProfileError([ProfileIssue(file, 1, "", "nesting too deep")]) from None
    if not isinstance(data, dict):
        raise ProfileError([ProfileIssue(file, lines.get((), 1), "", f"the top level must be a mapping of keys, not {type(data).__name__}")])
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_pydantic_issues(exc, file, lines)) from None
    except RecursionError:
        raise ProfileError([ProfileIssue(file, 1, "", "nesting too deep")]) from None
    issues = _check_plugins(profile, file, lines)
    if issues:
        raise ProfileError(issues)
    return profile, lines, text


def _check_plugins(profile: Profile, file: str, lines: dict) -> list[ProfileIssue]:
    """Validate each source's driver options and the SUT's options with their own schemas."""
    from labconsole.sources.registry import UnknownDriver, driver_names, get_driver

    issues: list[ProfileIssue] = []
    for i, src in enumerate(profile.sources):
        try:
            cls = get_driver(src.driver)
        except UnknownDriver:
            path = ("sources", i, "driver")
            issues.append(ProfileIssue(file, _line_for(lines, path), _fmt_path(path), f"unknown driver {src.driver!r} (known: {', '.join(driver_names())})"))
            continue
        if src.emulator is not None:
            if src.driver not in FOR_DRIVER:
                path = ("sources", i, "emulator")
                known = ", ".join(sorted(FOR_DRIVER)) or "none"
                issues.append(ProfileIssue(file, _line_for(lines, path), _fmt_path(path), f"driver {src.driver!r} has no emulator (emulators exist for: {known})"))
                continue

            # An emulator module may declare `Options` (a pydantic model) for its `emulator:` block.
            emulator_options = getattr(module_for(FOR_DRIVER[src.driver]), "Options", None)
            if emulator_options is not None:
                try:
                    emulator_options.model_validate(src.emulator)
                except ValidationError as exc:
                    issues.extend(_pydantic_issues(exc, file, lines, prefix=("sources", i, "emulator")))

            problem = loopback_problem(src.emulator)
            if problem:
                path = ("sources", i, "emulator", "host")
                issues.append(ProfileIssue(file, _line_for(lines, path), _fmt_path(path), problem))
        try:
            cls.Options.model_validate(src.options)
        except ValidationError as exc:
            if src.emulator is None:
                issues.extend(_pydantic_issues(exc, file, lines, prefix=("sources", i, "options")))
            else:
                # The emulator supplies the address; only complain about what the profile wrote.
                issues.extend(
                    i2 for i2 in _pydantic_issues(exc, file, lines, prefix=("sources", i, "options")) if not i2.message.startswith("required but missing")
                )
    wl = profile.workload
    if isinstance(wl, LoadGenWorkload):
        try:
            validate_sut_options(wl.sut, wl.sut_options)
        except ValidationError as exc:
            issues.extend(_pydantic_issues(exc, file, lines, prefix=("workload", "sut_options")))
    return issues


def load_profile(path: str | Path) -> LoadedProfile:
    """Load and validate a profile file. Raises ProfileError (with file:line) on any mistake."""
    path = Path(path)
    shown = str(path)
    try:
        # Only a regular file, and a bounded size: a FIFO or /dev/zero must not hang the console.
        raw = safefile.read_bytes(path, "profile", limit=MAX_PROFILE_BYTES + 1)
    except safefile.FileRefused as exc:
        if exc.errno == errno.ENOENT:
            raise ProfileError([ProfileIssue(shown, 1, "", "no such file")]) from None
        if exc.errno == errno.EISDIR or os.path.isdir(path):
            raise ProfileError([ProfileIssue(shown, 1, "", "is a folder, not a profile file")]) from None
        reason = str(exc)[len(shown) + 2 :] if str(exc).startswith(shown + ": ") else str(exc)
        raise ProfileError([ProfileIssue(shown, 1, "", f"cannot read: {reason}")]) from None
    profile, lines, text = parse_profile_text(raw, shown)
    return LoadedProfile(profile=profile, path=path, text=text, sha256=hashlib.sha256(raw).hexdigest(), lines=lines)


def default_profile_path() -> Path:
    """The built-in simulated bench: `profiles/sim-bench.yaml` next to the package or inside it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "profiles" / "sim-bench.yaml", here.parent / "profiles" / "sim-bench.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("the built-in profile sim-bench.yaml is not installed")
