"""What the JSON files of a bundle and of an MLPerf result folder must look like to be read.

A file that parses as JSON can still hold a number where a list belongs; analysis, checks,
compare and replay read these files as dicts, so each is validated here first, the way the
profile loader validates a profile, and a wrong type is refused as `FILE: field.path: reason`
instead of a traceback somewhere downstream. Keys we do not read are allowed (newer writers
add some); every key we do read has its type checked. Numbers are strict (a string is not a
number), an int passes where a float is expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Num = Optional[float]
Str = Optional[str]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# --- run.json ---------------------------------------------------------------------------------


class _ProfileRef(_Open):
    name: Str = None
    path: Str = None
    sha256: Str = None


class _SourceEntry(_Open):
    name: str = Field(min_length=1)
    driver: Str = None
    scope: Str = None
    sample_interval_s: Num = None
    primary: Optional[bool] = None


class _SourceCounts(_Open):
    read: Optional[int] = None
    written: Optional[int] = None
    lost: Optional[int] = None
    invalid: Optional[int] = None
    errors: Optional[int] = None
    reconnects: Optional[int] = None
    gaps: Optional[int] = None
    gap_s: Optional[list[float]] = None
    failed: Str = None
    unrecorded: Optional[int] = None


class _Acquisition(_Open):
    sources: Optional[dict[str, _SourceCounts]] = None
    samples_read: Optional[int] = None


class _RerunOf(_Open):
    id: Str = None
    bundle: Str = None
    start: Str = None
    exit_status: Str = None
    profile_sha256: Str = None
    differences: Optional[list[dict[str, Any]]] = None


class RunJson(_Open):
    id: Str = None
    profile: Optional[_ProfileRef] = None
    scenario: Str = None
    duration_s: Num = None
    workload: Optional[dict[str, Any]] = None
    procedure: Optional[dict[str, float | bool | str | None]] = None
    primary_source: Str = None
    sources: Optional[list[_SourceEntry]] = None
    versions: Optional[dict[str, Any]] = None
    operator: Str = None
    start: Str = None
    stop: Str = None
    exit_status: Str = None
    reason: Str = None
    cwd: Str = None
    workload_resolved: Optional[dict[str, float | str | bool | None]] = None
    ranges: Optional[dict[str, dict[str, Any]]] = None
    acquisition: Optional[_Acquisition] = None
    rerun_of: Optional[_RerunOf] = None
    overrides: Optional[dict[str, Any]] = None
    diagnostics: Optional[dict[str, Any]] = None


# --- environment.json, calibration.json, summary.json -----------------------------------------


class _Identity(_Open):
    driver: Str = None
    model: Str = None
    serial: Str = None
    firmware: Str = None
    vendor: Str = None
    address: Str = None
    extra: Optional[dict[str, Any]] = None


class _EnvSource(_Open):
    name: Str = None
    driver: Str = None
    scope: Str = None
    status: Str = None
    identity: Optional[_Identity] = None
    calibration: Optional[dict[str, Any]] = None


class EnvironmentJson(_Open):
    host: Str = None
    os: Optional[dict[str, Str]] = None
    cpu: Optional[dict[str, Any]] = None
    memory_bytes: Optional[int] = None
    python: Optional[dict[str, Str]] = None
    packages: Optional[dict[str, Str]] = None
    labconsole_git_commit: Str = None
    gpu_driver: Str = None
    timezone: Str = None
    sources: Optional[list[_EnvSource]] = None


class _Step(_Open):
    key: Str = None
    title: Str = None
    status: Str = None
    reason: Str = None
    measured: Optional[dict[str, Any]] = None
    applicable: Optional[bool] = None
    attempts: Optional[int] = None
    history: Optional[list[Any]] = None


class _IdleBaseline(_Open):
    avg_watts: Num = None
    std_watts: Num = None
    samples: Optional[int] = None


class CalibrationJson(_Open):
    steps: Optional[list[_Step]] = None
    idle_baseline: Optional[_IdleBaseline] = None


class SummaryJson(_Open):
    report: Optional[dict[str, Any]] = None
    checks: Optional[list[dict[str, Any]]] = None


# --- MLPerf power-dev: power/client.json and power/server.json -------------------------------


class _Message(_Open):
    cmd: Str = None
    reply: Str = None
    cmd_time: Num = None
    reply_time: Num = None


class _Uuid(_Open):
    client: Str = None
    server: Str = None


class _PtdConfig(_Open):
    # what the PTD-configuration check reads: the device type is compared (a scalar), the
    # command searched, the channels counted; their values are the check's to judge
    command: Optional[list[Any] | str] = None
    device_type: Optional[int | float | str | bool] = None
    interface_flag: Any = None
    dc_flag: Any = None
    device_port: Any = None
    channel: Optional[list[Any] | str] = None


# An analyzer entry that is not an object is the check's to fail; an object must read as one.
_PtdEntry = Union[_PtdConfig, str, int, float, bool, None, list[Any]]


class PowerDevJson(_Open):
    version: Str = None
    timezone: Optional[int] = None
    modules: Optional[dict[str, str]] = None
    sources: Optional[dict[str, str]] = None
    messages: Optional[list[_Message]] = None
    uuid: Optional[_Uuid] = None
    session_name: Str = None
    results: Optional[dict[str, str]] = None
    phases: Optional[dict[str, list[list[float]]]] = None
    ptd_messages: Optional[list[_Message]] = None
    ptd_config: Optional[_PtdConfig | list[_PtdEntry]] = None
    debug: Any = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "run.json": RunJson,
    "environment.json": EnvironmentJson,
    "calibration.json": CalibrationJson,
    "summary.json": SummaryJson,
    "client.json": PowerDevJson,
    "server.json": PowerDevJson,
}


_TAGS = {"float", "int", "str", "bool", "none", "nullable", "list", "dict"}


def _loc(loc: tuple) -> tuple:
    """Pydantic's location without the union members' tags (`list[...]`, `_PtdConfig`, `int`)."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p in _TAGS or "[" in p or p.startswith("_"))))


def _shown(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def problems(path: Path | str, obj: Any) -> list[str]:
    """`FILE: field.path: reason` for each thing wrong in `obj`, the parsed content of the file
    `path` (its name picks the schema; a name without one only has to be an object). Where a
    field may take several shapes, the problem deepest inside it is the one named."""
    name = Path(path).name
    if not isinstance(obj, dict):
        return [f"{path}: (top level): a JSON object expected, found {type(obj).__name__}"]
    schema = SCHEMAS.get(name)
    if schema is None:
        return []
    try:
        schema.model_validate(obj)
    except ValidationError as exc:
        found: dict[tuple, str] = {}
        for err in exc.errors(include_url=False):
            loc = _loc(tuple(err["loc"]))
            found.setdefault(loc, re.sub(r" or instance of \w+", "", err["msg"]))
        # a field that may be an object or a list: name what is wrong inside, not each shape
        deepest = [loc for loc in found if not any(other != loc and other[: len(loc)] == loc for other in found)]
        return [f"{path}: {_shown(loc)}: {found[loc]}" for loc in deepest]
    return []
