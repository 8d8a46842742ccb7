"""MLPerf Training's power procedure, as a plan the run engine runs.

    for each of `runs` runs: power on every node from just before the trainer starts to just
    after it ends (`pad_s`), the trainer's MLLOG followed live; then its result log and every
    node's and switch's power log are written in the official layout, inside the bundle:

        data/training/results/<system>/<benchmark>/result_<k>.txt
        data/training/results/<system>/<benchmark>/power/result_<k>/node_<i>.txt, sw_<j>.txt

The analysis reads that folder with the same code that reads a published result
(labconsole.mlperf.training), so a bundle, its export and a published folder are scored alike.
Node i is the i-th node source in the profile (run.json's `training.nodes` says which).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labconsole import events as ev
from labconsole.mlperf.fleet import node_of
from labconsole.mlperf.training.checks import run_training_checks
from labconsole.mlperf.training.folder import read_training_folder
from labconsole.mlperf.training.report import training_report
from labconsole.procedure.engine import RunAborted, RunEngine, RunFailed, Step
from labconsole.profile import TrainingWorkload, training_nodes
from labconsole.samples.batch import OK
from labconsole.samples.streams import find_sample_streams, read_sample_stream
from labconsole.workload.training_run import MAX_RESULT_LOG_BYTES, MllogProgress, TrainingCommandRun

TRAINING_DIR = "training"


def training_folder(data: Path, system: str, benchmark: str) -> Path:
    return Path(data) / TRAINING_DIR / "results" / system / benchmark


def _mllog(time_ms: int, key: str, value: Any, metadata: dict, event_type: str = "POINT_IN_TIME") -> str:
    # The reference writer's shape (mlperf_logging/mllog, power_measurement.py)
    return ":::MLLOG " + json.dumps({"namespace": "", "time_ms": int(time_ms), "event_type": event_type,
                                     "key": key, "value": value, "metadata": metadata}) + "\n"


def node_power_series(stream: Path, start_ns: int, stop_ns: int, node: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(wall_ns, watts) of a source's valid samples inside [start, stop], channels summed at each
    instant (a multi-GPU source reads all channels at once); and how many invalid ones were left out.
    `node`: of a fleet source, only that node's channels (`node`, or `node#k` for its members)."""
    frame = read_sample_stream(stream).frame
    wall = frame["wall_ns"].to_numpy()
    watts = frame["watts"].to_numpy()
    status = frame["status"].to_numpy()
    channels = frame["channel"].astype(str).to_numpy()
    inside = (wall >= start_ns) & (wall <= stop_ns)
    if node is not None and len(channels):
        names, inverse = np.unique(channels, return_inverse=True)  # node_of once per channel, not per sample
        inside &= np.isin(inverse, [i for i, c in enumerate(names) if node_of(c) == node])
    good = inside & (status == OK) & np.isfinite(watts)
    invalid = int(inside.sum() - good.sum())
    names = sorted(set(channels[good]))
    if len(names) <= 1:
        return wall[good], watts[good], invalid
    # several channels: sum those read at the same instant; an instant missing a channel is dropped
    w, p = wall[good], watts[good]
    uniq, inv, counts = np.unique(w, return_inverse=True, return_counts=True)
    sums = np.zeros(len(uniq))
    np.add.at(sums, inv, p)
    full = counts == len(names)
    return uniq[full], sums[full], invalid + int((~full).sum())


class TrainingPlan:
    def __init__(self) -> None:
        self.nodes: list[str] = []  # the node sources, in the profile's order
        # node_<i> -> (source, node within it or None): a fleet source's nodes are nodes each
        self.node_map: list[tuple[str, str | None]] = []
        self.folder: Path | None = None

    def steps(self, engine: RunEngine) -> list[Step]:
        wl = engine.profile.workload
        assert isinstance(wl, TrainingWorkload)
        self.nodes = training_nodes(engine.profile)
        steps: list[Step] = [self.prepare]
        for k in range(wl.runs):
            steps.append(self._run_step(k))
        return steps

    def _run_step(self, k: int) -> Callable[[RunEngine], None]:
        def step(engine: RunEngine) -> None:
            self.one_run(engine, k)
        step.__name__ = f"run_{k}"
        return step

    def analyse(self, engine: RunEngine) -> tuple[dict, list[dict]]:
        assert self.folder is not None
        result = read_training_folder(self.folder, rules="current")
        report = training_report(result)
        report["path"] = str(Path(TRAINING_DIR) / self.folder.relative_to(engine.bundle.data / TRAINING_DIR))
        return report, [c.as_dict() for c in run_training_checks(result)]

    # --- the steps ---------------------------------------------------------------------------------
    def prepare(self, engine: RunEngine) -> None:
        wl = engine.profile.workload
        assert isinstance(wl, TrainingWorkload) and engine.bundle is not None
        system = wl.system or engine.profile.name
        self.folder = training_folder(engine.bundle.data, system, wl.benchmark)
        (self.folder / "power").mkdir(parents=True, exist_ok=True)
        self.node_map = []
        for name in self.nodes:
            fleet = self._fleet_nodes(engine, name)
            self.node_map += [(name, n) for n in fleet] if fleet else [(name, None)]
        nodes = {f"node_{i}": (src if n is None else f"{src}/{n}") for i, (src, n) in enumerate(self.node_map)}
        switches = {f"sw_{j}": (sw.source or f"estimate {sw.estimate_w:g} W") for j, sw in enumerate(wl.switches)}
        engine.bundle.update_run(training={"system": system, "benchmark": wl.benchmark, "runs": wl.runs,
                                           "nodes": nodes, "switches": switches,
                                           "folder": str(self.folder.relative_to(engine.bundle.data))})
        shown = ", ".join(nodes.values()) if len(nodes) <= 8 else f"{', '.join(list(nodes.values())[:8])}, ..."
        engine.bus.emit(ev.INFO, f"training {wl.benchmark} on {system}: {wl.runs} runs, {len(nodes)} nodes "
                        f"({shown}), {len(switches)} switches", phase="prepare")

    @staticmethod
    def _fleet_nodes(engine: RunEngine, source: str) -> list[str]:
        """The nodes of a fleet source (each its own node_<i>, in the fleet's order), or []."""
        src = engine.sources.get(source)
        if src is None or engine.spec(source).driver != "fleet":
            return []
        try:
            extra = src.identify().extra or {}
        except Exception:  # noqa: BLE001 - the fleet is then one node, summed; the run goes on
            return []
        return [str(n) for n in extra.get("nodes") or []]

    def one_run(self, engine: RunEngine, k: int) -> None:
        wl = engine.profile.workload
        assert isinstance(wl, TrainingWorkload) and engine.bundle is not None and engine.recorder is not None
        assert self.folder is not None
        name = f"result_{k}"
        phase = name
        if k and wl.gap_s:
            engine.set_phase("gap")
            engine.bus.emit(ev.INFO, f"idle {wl.gap_s:g} s before run {k + 1}", phase="gap")
            if not engine.wait(wl.gap_s):
                engine.check_abort()
        seg = engine.bundle.phase_dir(phase)
        engine.set_phase(phase)
        engine.recorder.begin_segment(phase, seg)
        engine.bus.emit(ev.PHASE_START, f"run {k + 1} of {wl.runs}: {' '.join(wl.command)}", phase=phase, run=k)
        power_start_ns = time.time_ns()
        engine.wait(wl.pad_s)

        def on_line(m: MllogProgress, key: str, phase: str = phase) -> None:
            engine.bus.emit(ev.PROGRESS if key not in ("run_start", "run_stop") else ev.INFO,
                            f"run {k + 1}: {key}" + (f" ({m.status})" if key == "run_stop" and m.status else ""),
                            phase=phase, mllog_key=key)

        runner = TrainingCommandRun(wl, seg, k, on_line)
        try:
            with engine.attached(runner):
                result = runner.run()
                if result.status == "completed" or result.status == "failed":
                    engine.wait(wl.pad_s)
        finally:
            power_stop_ns = time.time_ns()
            engine.recorder.end_segment()
        n_lines = runner.write_result_log(self.folder / f"{name}.txt")
        if runner.truncated:
            engine.bus.emit(ev.WARNING, f"run {k + 1}: the result log passed {MAX_RESULT_LOG_BYTES >> 20} MB; the rest was not kept", phase=phase)
        self._write_power_logs(engine, seg, name, power_start_ns, power_stop_ns)
        engine.bundle.write_json(f"{phase}/phase.json", {"workload": result.as_dict(), "mllog_lines": n_lines,
                                                         "power_start_ns": power_start_ns, "power_stop_ns": power_stop_ns,
                                                         "run_start_ms": runner.mllog.run_start_ms, "run_stop_ms": runner.mllog.run_stop_ms,
                                                         "status": runner.mllog.status})
        if result.status == "aborted":
            engine.bus.emit(ev.PHASE_END, f"run {k + 1} aborted: {result.reason}", phase=phase)
            raise RunAborted(result.reason)
        if result.status == "timeout":
            engine.bus.emit(ev.ERROR, f"run {k + 1}: {result.reason}", phase=phase)
            raise RunFailed(f"run {k + 1}: {result.reason}")
        if result.exit_code is None:  # never started
            engine.bus.emit(ev.ERROR, f"run {k + 1}: {result.reason}", phase=phase)
            raise RunFailed(f"run {k + 1}: {result.reason}")
        m = runner.mllog
        if result.status != "completed" or m.run_stop_ms is None or m.status != "success":
            # MLPerf drops a run that fails to converge; the session goes on (olympic scoring)
            why = result.reason or ("no run_stop in its log" if m.run_stop_ms is None else f"run_stop status {m.status!r}")
            engine.bus.emit(ev.WARNING, f"run {k + 1} will not count: {why}", phase=phase, workload=result.as_dict())
        ttt = None if m.run_start_ms is None or m.run_stop_ms is None else (m.run_stop_ms - m.run_start_ms) / 1000
        engine.bus.emit(ev.PHASE_END, f"run {k + 1} done" + (f": time to train {ttt:.3f} s" if ttt is not None else ""),
                        phase=phase, workload=result.as_dict(), ttt_s=ttt)
        self._tell_score(engine, k, phase)

    def _tell_score(self, engine: RunEngine, k: int, phase: str) -> None:
        """This run's energy and the score so far (the olympic average of the runs done), as the
        summarizer would give it if the session ended now."""
        try:
            so_far = read_training_folder(self.folder, rules="current")
        except ValueError as exc:
            engine.bus.emit(ev.WARNING, f"run {k + 1}: cannot score the runs so far: {exc}", phase=phase)
            return
        run = next((r for r in so_far.runs if r.name == f"result_{k}"), None)
        if run is not None and run.energy is not None:
            nodes = ", ".join(f"{n.name} {n.avg_watts:.4g} W" for n in run.energy.nodes[:8])
            more = f" (+{len(run.energy.nodes) - 8} nodes)" if len(run.energy.nodes) > 8 else ""
            engine.bus.emit(ev.RESULT, f"run {k + 1}: {run.energy.energy_j / 1000:.6g} kJ; mean power {nodes}{more}",
                            phase=phase, run=k, energy_j=run.energy.energy_j)
        elif run is not None:
            engine.bus.emit(ev.WARNING, f"run {k + 1}: no energy: {run.dropped or run.energy_error}", phase=phase)
        if so_far.energy_score_j is not None:
            engine.bus.emit(ev.INFO, f"score so far: {so_far.energy_score_j / 1000:.6g} kJ over {len(so_far.counted)} of "
                            f"{len(so_far.runs)} runs (olympic)", phase=phase, score_j=so_far.energy_score_j)

    def _write_power_logs(self, engine: RunEngine, seg: Path, name: str, start_ns: int, stop_ns: int) -> None:
        wl = engine.profile.workload
        assert isinstance(wl, TrainingWorkload) and self.folder is not None
        out = self.folder / "power" / name
        out.mkdir(parents=True, exist_ok=True)
        streams = dict(find_sample_streams(seg))
        start_ms, stop_ms = start_ns // 1_000_000, stop_ns // 1_000_000
        eff_md = {"measurement_type": wl.measurement_type}

        def measured(path: Path, host: str, source: str, eff: float, node: str | None = None) -> None:
            lines = [_mllog(start_ms, "power_measurement_start", None, {}, "INTERVAL_START"),
                     _mllog(start_ms, "conversion_eff", eff, eff_md)]
            stream = streams.get(source)
            count = invalid = 0
            if stream is not None:
                wall, watts, invalid = node_power_series(stream, start_ns, stop_ns, node)
                count = len(wall)
                lines += [_mllog(t // 1_000_000, "power_reading", float(w), {"host": host}) for t, w in zip(wall.tolist(), watts.tolist())]
            lines.append(_mllog(stop_ms, "power_measurement_stop", None, {}, "INTERVAL_END"))
            path.write_text("".join(lines), encoding="utf-8")
            what = source if node is None else f"{source}/{node}"
            if count == 0:
                engine.bus.emit(ev.WARNING, f"{name}: {what} recorded no valid sample in the power window", phase=name, source=source)
            elif invalid:
                engine.bus.emit(ev.WARNING, f"{name}: {what}: {invalid} invalid samples left out", phase=name, source=source)

        for i, (source, node) in enumerate(self.node_map):
            measured(out / f"node_{i}.txt", node or f"node_{i}", source, wl.conversion_eff, node)
        for j, sw in enumerate(wl.switches):
            if sw.source is not None:
                measured(out / f"sw_{j}.txt", f"sw_{j}", sw.source, sw.conversion_eff)
            else:
                (out / f"sw_{j}.txt").write_text(
                    _mllog(start_ms, "conversion_eff", sw.conversion_eff, eff_md)
                    + _mllog(start_ms, "interconnect_power_est", sw.estimate_w, {"host": f"sw_{j}", "switch_id": sw.name}),
                    encoding="utf-8")
