"""Two recordings' testing-run power on one time axis, for the Compare screen's overlay.

Each side's primary source over its testing phase, with time counted from LoadGen's power
window start (`power_begin`), so the window lines up whatever the wall clock was; a record
without a detail log is counted from its testing samples' first one. Invalid samples are NaN
(a gap in the trace, never a value).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labconsole.bundle.reader import open_run
from labconsole.sources.replay import frame_to_samples


@dataclass
class Trace:
    label: str  # source name
    t: np.ndarray  # seconds from the power window's start
    watts: np.ndarray
    window_s: float | None  # the power window's length


def testing_trace(path: str | Path) -> Trace | None:
    """The testing run's primary power of the recording at `path` (None when it has none)."""
    record = open_run(path)
    phase = record.phases.get("testing")
    if phase is None or phase.samples is None or len(phase.samples) == 0:
        return None
    frame = phase.samples
    if "source" in frame.columns and record.primary_source is not None:
        picked = frame[frame["source"] == record.primary_source]
        frame = picked if len(picked) else frame
    channels = frame["channel"].astype(str)
    first = channels.iloc[0]
    arr = frame_to_samples(frame[channels == first])
    arr = arr[np.argsort(arr["wall_ns"], kind="stable")]
    detail = phase.detail
    begin_ns = detail.power_begin_ns if detail is not None and detail.power_begin_ns is not None else int(arr["wall_ns"][0])
    window = (detail.power_end_ns - detail.power_begin_ns) / 1e9 if detail is not None and detail.power_begin_ns is not None and detail.power_end_ns is not None else None
    watts = np.where(arr["status"] == 0, arr["watts"], np.nan)
    label = record.primary_source or "power"
    return Trace(label if first == "main" else f"{label}/{first}", (arr["wall_ns"] - begin_ns) / 1e9, watts, window)
