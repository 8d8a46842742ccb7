"""Energy to train, computed the way mlperf-logging's result summarizer computes it.

Per run (times in ms; shared/reference/training-power.md §1.3, rs.py 4.1.68):
  node:   E = eff × Σ W_i·(t_i − t_{i−1}) × TTT / (stop − start) / 1000      [J]
          (right-endpoint rectangles from the start marker; eff = last conversion_eff, default 1)
  switch: E = eff × first interconnect_power_est × TTT / 1000                [J]
          (a switch log of measured power_readings adds 0 J: the official math ignores them)
  run:    Σ nodes + Σ switches
Across runs: runs ordered by time to train; the same positions are dropped for energy as for
time (olympic scoring), then the mean × scaling.json's factor.

Two semantics exist in the official history and change published figures:
  GATED (mlperf-logging ≥ 4.1.0-rc4, commit c401ff0, 2024-09-19): lines sorted by time, readings
      counted only between the start and stop markers; stop = last reading only when the stop
      marker is missing.
  FILE_ORDER (commits 4054425 + a9f4839, May 2024, which scored the v4.0 round): lines in file
      order up to the stop marker, stop = max(stop marker, last reading). Reconstructed from the
      reference's description of those commits, not from their code.
Float operations are done in the official order, so a figure agrees to the last bit where the
file order of node logs agrees (the summarizer sums nodes in glob order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from labconsole.mlperf.training.mllog import LogLine, MllogFile, number

GATED, FILE_ORDER = "gated", "file-order"
SEMANTICS = (GATED, FILE_ORDER)

START, STOP, READING = "power_measurement_start", "power_measurement_stop", "power_reading"
CONVERSION_EFF, INTERCONNECT_EST = "conversion_eff", "interconnect_power_est"


class ScoreError(ValueError):
    """A log the official summarizer could not score (it would crash or divide by zero): the
    message names the file and line and says what the official tool does there."""


@dataclass
class NodeEnergy:
    name: str
    energy_j: float
    eff: float
    start_ms: float
    stop_ms: float
    stop_marker: bool  # False: the stop came from the last reading (the summarizer warns)
    readings: int  # readings counted in the window
    readings_total: int
    avg_watts: float  # mean power over the marker window, before eff (what the energy scales)
    first_reading_ms: float | None
    last_reading_ms: float | None
    max_gap_s: float | None


@dataclass
class SwitchEnergy:
    name: str
    energy_j: float
    eff: float
    estimate_watts: float | None  # None: no interconnect_power_est (a measured log: 0 J officially)
    readings_total: int
    first_reading_ms: float | None = None
    last_reading_ms: float | None = None


@dataclass
class RunEnergy:
    nodes: list[NodeEnergy] = field(default_factory=list)
    switches: list[SwitchEnergy] = field(default_factory=list)

    @property
    def energy_j(self) -> float:
        total = 0.0  # the summarizer adds nodes (glob order), then switches
        for n in self.nodes:
            total += n.energy_j
        for s in self.switches:
            total += s.energy_j
        return float(total)


def _reading_value(line: LogLine, log: MllogFile) -> float:
    v = number(line)
    if v is None:
        raise ScoreError(f"{log.path}:{line.lineno}: power_reading value {line.value!r} is not a number "
                         "(the official summarizer stops with a TypeError here)")
    return v


def _eff_value(line: LogLine, log: MllogFile) -> float:
    v = number(line)
    if v is None:
        raise ScoreError(f"{log.path}:{line.lineno}: conversion_eff value {line.value!r} is not a number")
    return v


def node_energy(log: MllogFile, ttt_ms: float, semantics: str = GATED) -> NodeEnergy:
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics {semantics!r}: one of {', '.join(SEMANTICS)}")
    lines = sorted(log.lines, key=lambda ln: ln.time_ms) if semantics == GATED else list(log.lines)
    prev = last = start = stop = 0.0
    agg = 0.0
    eff = 1.0
    started = stopped = False
    counted = 0
    first_reading: float | None = None
    max_gap = None
    for ln in lines:
        if ln.key == START:
            start = prev = ln.time_ms
            started = True
        if ln.key == READING and started and not stopped:
            w = ln.value
            if type(w) is not float and type(w) is not int:  # the common case costs two type checks
                w = _reading_value(ln, log)
            t = ln.time_ms
            dt = t - prev
            agg += w * dt
            if max_gap is None or dt > max_gap:
                max_gap = dt
            prev = t
            if t > last:
                last = t
            counted += 1
            if first_reading is None:
                first_reading = t
        if ln.key == STOP:
            stop = ln.time_ms
            stopped = True
            if semantics == FILE_ORDER:
                break
        if ln.key == CONVERSION_EFF:
            eff = _eff_value(ln, log)
    if not started:
        raise ScoreError(f"{log.path}: no power_measurement_start line "
                         "(the official summarizer stops with 'Power start timestamp not found')")
    if semantics == FILE_ORDER:
        # a9f4839: conversion_eff lines after the stop marker are never reached; stop covers the readings
        stop = max(stop, last) if stopped else last
    elif not stopped:
        stop = last
    if stop == start:
        raise ScoreError(f"{log.path}: the power window is empty (start and stop both at {start:.0f} ms); "
                         "the official summarizer divides by zero here"
                         + (" — this log needs the v4.0 round's semantics (--rules v4.0)" if semantics == GATED and counted == 0 else ""))
    if not math.isfinite(agg):  # an infinite or NaN reading: invalid, as a meter's NaN is
        bad = next(ln for ln in lines if ln.key == READING and not math.isfinite(float(ln.value)))
        raise ScoreError(f"{log.path}:{bad.lineno}: power_reading value {bad.value!r} is not a finite number")
    energy = eff * agg * ttt_ms / (stop - start) / 1000
    total_readings = sum(1 for ln in log.lines if ln.key == READING)
    return NodeEnergy(
        name=log.path.stem, energy_j=energy, eff=eff, start_ms=start, stop_ms=stop, stop_marker=stopped,
        readings=counted, readings_total=total_readings,
        avg_watts=agg / (stop - start), first_reading_ms=first_reading,
        last_reading_ms=last if counted else None,
        max_gap_s=None if max_gap is None else max_gap / 1000,
    )


def switch_energy(log: MllogFile, ttt_ms: float) -> SwitchEnergy:
    eff = 1.0
    est: float | None = None
    for ln in log.lines:  # file order, as the official loop
        if ln.key == CONVERSION_EFF:
            eff = _eff_value(ln, log)
        if ln.key == INTERCONNECT_EST:
            v = number(ln)
            if v is None:
                raise ScoreError(f"{log.path}:{ln.lineno}: interconnect_power_est value {ln.value!r} is not a number")
            est = v
            break
    energy = eff * (est if est is not None else 0) * ttt_ms / 1000
    times = [ln.time_ms for ln in log.lines if ln.key == READING]
    return SwitchEnergy(name=log.path.stem, energy_j=float(energy), eff=eff, estimate_watts=est, readings_total=len(times),
                        first_reading_ms=min(times) if times else None, last_reading_ms=max(times) if times else None)


def olympic_positions(n: int, dropped: int, max_dropped: int) -> list[int] | None:
    """Which positions (in time-to-train order) count, as _compute_olympic_average slices them:
    `max_dropped` from the fastest end and `max_dropped - dropped` from the slowest. None when
    nothing remains (the summarizer gives no score)."""
    keep = list(range(n))[max_dropped: n - (max_dropped - dropped)]
    return keep or None


def olympic_mean(values_in_order: list[float], positions: list[int]) -> float:
    total = 0.0
    for i in positions:
        total += values_in_order[i]
    return total * 1.0 / len(positions)


def max_dropped_for(benchmark: str) -> int:
    # rs.py: `max_dropped_scores = 4 if benchmark == "unet3d" else 1`
    return 4 if benchmark == "unet3d" else 1
