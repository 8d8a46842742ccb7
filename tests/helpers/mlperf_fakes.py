"""Hand-made LoadGen logs and sample streams, for exact arithmetic tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from labconsole.instruments.ptd import format_power_time
from labconsole.samples.streams import SampleStreamWriter
from labconsole.samples.batch import empty_batch


def mllog(key, value, error=False, warning=False):
    entry = {
        "key": key,
        "value": value,
        "time_ms": 1.0,
        "namespace": "mlperf::logging",
        "event_type": "POINT_IN_TIME",
        "metadata": {"is_error": error, "is_warning": warning, "file": "x.cc", "line_no": 1, "pid": 1, "tid": 1},
    }
    return ":::MLLOG " + json.dumps(entry)


def write_detail_log(folder: Path, scenario: str, begin_ns: int, end_ns: int, validity="VALID", queries=1, extra: dict | None = None, errors=()):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        mllog("loadgen_version", "6.0.17 @ test"),
        mllog("effective_scenario", scenario),
        mllog("power_begin", format_power_time(begin_ns)),
        mllog("power_end", format_power_time(end_ns)),
        mllog("result_validity", validity),
        mllog("result_query_count", queries),
    ]
    for k, v in (extra or {}).items():
        lines.append(mllog(k, v))
    for e in errors:
        lines.append(mllog("error_runtime", e, error=True))
    (folder / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "mlperf_log_summary.txt").write_text(f"Scenario : {scenario}\nResult is : {validity}\n", encoding="utf-8")


def write_samples(path: Path, wall_ns, watts, status=None, channel="main"):
    n = len(wall_ns)
    b = empty_batch(n)
    b["wall_ns"] = np.asarray(wall_ns, dtype=np.int64)
    b["mono_ns"] = np.arange(n, dtype=np.int64)
    b["watts"] = np.asarray(watts, dtype=np.float64)
    if status is not None:
        b["status"] = np.asarray(status)
    w = SampleStreamWriter(path, fsync=False)
    w.append(channel, b)
    w.close()
