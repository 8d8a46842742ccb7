"""Meters that fail mid-run, through the real stacks against the emulators.

Each meter (WT310E over pyvisa-py sockets, PTDaemon over TCP, the PowerShield on a pty) is
broken while a RunEngine records its testing phase: it stops answering, returns garbage,
drops the connection, goes away and comes back, then goes away for good. The console must
time out every I/O, reconnect with bounded back-off, record each gap as an event with its
length, count the invalid samples, and continue on the other source (`on_failure: continue`)
or stop the run (`on_failure: stop`); either way the bundle is sealed and says why, and every
sample read is on disk.

The reconnect back-off is shortened (the schedule's shape and bound are the same) so the suite
stays fast; one test runs `labconsole run` with the real schedule against an emulator process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import ROOT, run_cli
from labconsole import recorder as recorder_mod
from labconsole.bundle.seal import verify
from labconsole.emulators import lpm01a as lpm_emu
from labconsole.emulators import ptd as ptd_emu
from labconsole.emulators import wt310
from labconsole.procedure.engine import RunEngine
from labconsole.procedure.plans.inference import InferencePlan
from labconsole.profile import load_profile
from labconsole.samples.streams import read_sample_stream

FAST_BACKOFF = (0.2, 0.4, 0.8)


@pytest.fixture(autouse=True)
def fast_reconnect(monkeypatch):
    monkeypatch.setattr(recorder_mod, "RECONNECT_BACKOFF_S", FAST_BACKOFF)


# --- the meters and their faults ------------------------------------------------------------------


@dataclass
class Meter:
    """One emulated meter: how a profile names it, and how to break it."""

    name: str
    handle: Any
    source_yaml: str  # the `sources:` entry, without name/on_failure/primary
    silent: Callable[[bool], None]
    garbage: Callable[[], None]  # a burst of garbage replies (then honest again)
    disconnect: Callable[[], None]  # the link breaks once; the meter stays
    offline: Callable[[bool], None]  # the meter goes away / comes back
    stop: Callable[[], None]


def wt310_meter(tmp_path: Path) -> Meter:
    h = wt310.start({"utilisation": 0.5, "seed": 3, "noise_w": 0.5})
    state = {"n": 0}

    def mangle(command: str, reply: str) -> bytes | None:
        # Value replies only (the driver's status polls stay honest): wrong field counts, a
        # truncated line, NaN and overflow markers, then random bytes; then honest again.
        if ":VAL" not in command.upper():
            return reply.encode("latin-1") + b"\n"
        state["n"] += 1
        k = state["n"]
        fields = reply.split(",")
        bad = {
            1: ",".join(fields[:-1]),  # a field short
            2: reply + ",1.0E+00",  # a field too many
            3: ",".join(["NAN", "INF", "9.91E+37", "1e999"][: len(fields)] + fields[4:]),  # markers and overflow
            4: reply[: len(reply) // 2],  # truncated
        }.get(k)
        if bad is None:
            h.set_mangler(None)
            return reply.encode("latin-1") + b"\n"
        return bad.encode("latin-1") + b"\n"

    def garbage() -> None:
        state["n"] = 0
        h.set_mangler(mangle)

    return Meter(
        "wt310", h,
        f'driver: yokogawa\n    sample_interval_s: 0.1\n    options: {{resource: "{h.resource}", timeout_s: 0.5}}',
        h.set_silent, garbage, h.server.drop_connections, h.set_offline, h.stop,
    )


def ptd_meter(tmp_path: Path) -> Meter:
    h = ptd_emu.start({"utilisation": 0.5, "seed": 3, "min_interval_ms": 10})
    state = {"n": 0}

    def mangle(command: str, reply: list[str]) -> bytes | None:
        if not command.startswith("RL") or len(reply) < 2:
            return ("\r\n".join(reply) + "\r\n").encode()
        state["n"] += 1
        lines = list(reply)
        # sample lines: random bytes, a truncated line, NaN and overflow values, a wrong field count
        lines[1] = "\x07\x99garbage" if state["n"] == 1 else lines[1][: len(lines[1]) // 2]
        if len(lines) > 2:
            lines[2] = lines[2].replace("Watts,", "Watts,nan,", 1) if state["n"] == 1 else lines[2].replace("Volts,", "Volts,1e999,Volts,", 1)
        if state["n"] >= 2:
            h.set_mangler(None)
        return "\r\n".join(lines).encode("latin-1") + b"\r\n"

    def garbage() -> None:
        state["n"] = 0
        h.set_mangler(mangle)

    return Meter(
        "ptd", h,
        f"driver: ptd\n    sample_interval_s: 0.1\n    options: {{host: 127.0.0.1, port: {h.port}, timeout_s: 0.5, connect_timeout_s: 0.5}}",
        h.set_silent, garbage, h.drop_client, h.set_offline, h.stop,
    )


def lpm01a_meter(tmp_path: Path) -> Meter:
    link = tmp_path / "ttyPowerShield"
    emu = lpm_emu.start({"utilisation": 0.5, "seed": 3, "link": str(link)})

    def garbage() -> None:
        # random bytes, a damaged reading, a truncated token, a NaN and an overflowing token
        emu.inject(b"\r\n\x13\x99\xfe#garbage\r\n12x4-0\r\n640\r\nnan\r\n9999+99\r\n")

    def offline(off: bool) -> None:
        emu.unplug() if off else emu.plug()

    def disconnect() -> None:
        emu.unplug()
        emu.plug()

    return Meter(
        "lpm01a", emu,
        f"driver: lpm01a\n    sample_interval_s: 0.01\n    options: {{port: \"{link}\", frequency_hz: 100, command_timeout_s: 0.5, stop_timeout_s: 0.5, stall_timeout_s: 0.5}}",
        emu.mute, garbage, disconnect, offline, emu.stop,
    )


METERS = {"wt310": wt310_meter, "ptd": ptd_meter, "lpm01a": lpm01a_meter}

PROFILE = """
name: faults-{meter}
recordings: {rec}
sources:
  - name: sim
    driver: simulated
    sample_interval_s: 0.1
    primary: {sim_primary}
    on_failure: continue
  - name: meter
    {source}
    primary: {meter_primary}
    on_failure: {policy}
workload:
  type: loadgen
  scenario: Server
  sut: sleep
  sut_options: {{latency_ms: 1, concurrency: 4}}
  target_qps: 100
  duration_s: {duration}
procedure:
  idle_s: 0.5
  ranging: false
"""


class Timeline:
    """The run's events as they happen, with a wait for the next one that matches."""

    def __init__(self, bus):
        self.events: list[tuple[float, Any]] = []
        self._cond = threading.Condition()
        bus.add_sink(self._add)

    def _add(self, e) -> None:
        with self._cond:
            self.events.append((time.monotonic(), e))
            self._cond.notify_all()

    def wait_for(self, test: Callable[[Any], bool], timeout: float, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, e in self.events:
                    if t >= after and test(e):
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = "\n".join(f"{e.kind}: {e.message}" for _, e in self.events if e.kind != "progress")
                    raise AssertionError(f"no such event within {timeout} s; the timeline:\n{shown}")
                self._cond.wait(left)

    def meter(self, *words: str) -> Callable[[Any], bool]:
        return lambda e: e.data.get("source") == "meter" and all(w in e.message for w in words)


@dataclass
class Outcome:
    exit_status: str
    reason: str
    bundle: Path
    run: dict
    timeline: Timeline
    fault_at: dict[str, float] = field(default_factory=dict)
    ended: float = 0.0


def run_with_faults(tmp_path: Path, meter: Meter, policy: str, meter_primary: bool, duration: float, script) -> Outcome:
    text = PROFILE.format(
        meter=meter.name, rec=tmp_path / "rec", source=meter.source_yaml, policy=policy,
        meter_primary=str(meter_primary).lower(), sim_primary=str(not meter_primary).lower(), duration=duration,
    )
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    proc = RunEngine(load_profile(path), InferencePlan())
    tl = Timeline(proc.bus)
    marks: dict[str, float] = {}
    problems: list[BaseException] = []

    def drive() -> None:
        try:
            tl.wait_for(lambda e: e.kind == "phase_start" and e.phase == "testing", 120)
            script(meter, tl, marks)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            problems.append(exc)
            proc.abort("the fault script failed")

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        out = proc.run()
        ended = time.monotonic()
        driver.join(timeout=60)
    finally:
        meter.stop()
    if problems:
        raise problems[0]
    run = json.loads((out.bundle / "data" / "run.json").read_text())
    return Outcome(out.exit_status, out.reason, out.bundle, run, tl, marks, ended)


def rows_on_disk(bundle: Path, source: str) -> int:
    return sum(len(read_sample_stream(p).frame) for p in (bundle / "data").rglob(f"samples-{source}.csv"))


def assert_nothing_lost(o: Outcome) -> dict:
    """Every sample read is in the bundle (phase folders and between/), nothing counted lost."""
    acq = o.run["acquisition"]
    for name, c in acq["sources"].items():
        on_disk = rows_on_disk(o.bundle, name)
        assert c["read"] == c["written"] == on_disk, (name, c, on_disk)
        assert c["lost"] == 0 and c["unrecorded"] == 0, (name, c)
    assert acq["samples_read"] == acq["samples_written"] and acq["samples_lost"] == 0
    assert verify(o.bundle).ok, verify(o.bundle).problems
    return acq["sources"]["meter"]


def report(meter: str, case: str, o: Outcome, c: dict, **extra: Any) -> None:
    figures = {"meter": meter, "case": case, "exit_status": o.exit_status, "read": c["read"], "written": c["written"], "lost": c["lost"],
               "invalid": c["invalid"], "errors": c["errors"], "reconnects": c["reconnects"], "gap_s": c["gap_s"], **extra}
    print("FAULT-FIGURES " + json.dumps(figures))


# --- a meter that fails in every way, on_failure: continue ------------------------------------------


def script_every_fault(meter: Meter, tl: Timeline, marks: dict[str, float]) -> None:
    marks["testing"] = time.monotonic()
    # 1. stops answering, then answers again: a gap with its length
    time.sleep(0.5)
    marks["silent"] = time.monotonic()
    meter.silent(True)
    tl.wait_for(tl.meter("reconnect failed"), 20, after=marks["silent"])
    meter.silent(False)
    tl.wait_for(tl.meter("resumed after"), 20, after=marks["silent"])
    # 2. garbage: invalid samples or protocol errors, counted
    marks["garbage"] = time.monotonic()
    meter.garbage()
    time.sleep(1.0)
    # 3. the link drops once: reconnected
    marks["disconnect"] = time.monotonic()
    meter.disconnect()
    tl.wait_for(tl.meter("reconnected"), 20, after=marks["disconnect"])
    tl.wait_for(tl.meter("resumed after"), 20, after=marks["disconnect"])
    # 4. goes away, comes back while the console retries
    marks["away"] = time.monotonic()
    meter.offline(True)
    tl.wait_for(tl.meter("reconnect failed"), 20, after=marks["away"])
    meter.offline(False)
    tl.wait_for(tl.meter("resumed after"), 20, after=marks["away"])
    # 5. goes away for good: given up, the run goes on with the simulated meter
    marks["gone"] = time.monotonic()
    meter.offline(True)
    tl.wait_for(tl.meter("gave up"), 20, after=marks["gone"])
    marks["gave_up"] = time.monotonic()


@pytest.mark.parametrize("kind", sorted(METERS))
def test_a_meter_failing_every_way_mid_run_continues_on_the_other_source(tmp_path, kind):
    meter = METERS[kind](tmp_path)
    o = run_with_faults(tmp_path, meter, "continue", meter_primary=False, duration=12, script=script_every_fault)
    assert o.exit_status == "completed", o.reason
    assert o.reason.startswith("completed without meter: gave up after 3 reconnect attempts"), o.reason
    c = assert_nothing_lost(o)
    assert c["failed"] and "gave up" in c["failed"]
    # three gaps that ended (silent, disconnect, away) and the last one, up to the end
    assert len(c["gap_s"]) >= 4 and all(g > 0 for g in c["gap_s"]), c
    assert c["reconnects"] >= 3 and c["errors"] >= 4, c
    diag = o.run["acquisition"]["diagnostics"].get("meter", {})
    counted = c["invalid"] + sum(int(v) for k, v in (diag.get("counters") or {}).items() if k in ("protocol_errors", "garbage_lines"))
    assert c["invalid"] >= 1 and counted >= 2, (c, diag)  # the garbage burst was counted, not averaged
    # each gap is an event with its length, and the give-up says how long the meter was silent
    gaps = [e for _, e in o.timeline.events if e.data.get("source") == "meter" and "gap_s" in e.data]
    assert len(gaps) >= 4 and all(e.data["gap_s"] > 0 for e in gaps)
    gave_up = [e for e in gaps if "gave up" in e.message]
    assert gave_up and gave_up[0].kind == "error" and "on_failure: continue" in gave_up[0].message
    # the other source kept recording after the meter was given up on, to the end of testing
    sim = json.loads((o.bundle / "data" / "testing" / "phase.json").read_text())["samples"]["sim/main"]
    frame = read_sample_stream(o.bundle / "data" / "testing" / "samples-sim.csv").frame
    assert sim["samples"] == len(frame) and int(frame["wall_ns"].max()) > time.time_ns() - (time.monotonic() - o.fault_at["gave_up"]) * 1e9
    # the invalid samples are on disk and were never averaged
    meter_frame = read_sample_stream(o.bundle / "data" / "testing" / "samples-meter.csv").frame
    ok = meter_frame[meter_frame["status"] == 0]
    stats = json.loads((o.bundle / "data" / "testing" / "phase.json").read_text())["samples"]
    mean = sum(v["mean_w"] * (v["samples"] - v["invalid"]) for k, v in stats.items() if k.startswith("meter/")) / max(1, len(ok))
    assert abs(mean - ok["watts"].mean()) <= 1e-9 * abs(mean)
    # `check` says what happened
    chk = json.loads(run_cli("check", str(o.bundle), "--json").stdout)
    acq = [x for x in chk["checks"] if x["name"] == "acquisition"][0]
    assert acq["status"] == "warn" and "meter was given up on" in acq["message"], acq
    report(kind, "every fault, on_failure: continue", o, c, testing_invalid=int((meter_frame["status"] != 0).sum()),
           script_s=round(o.fault_at["gave_up"] - o.fault_at["testing"], 2),
           diagnostics=(diag.get("counters") or {}))


# --- a primary meter that dies, on_failure: stop ---------------------------------------------------------


def script_die(meter: Meter, tl: Timeline, marks: dict[str, float]) -> None:
    time.sleep(1.0)
    marks["dead"] = time.monotonic()
    meter.offline(True)


@pytest.mark.parametrize("kind", sorted(METERS))
def test_a_primary_meter_that_dies_stops_the_run_and_the_bundle_says_why(tmp_path, kind):
    meter = METERS[kind](tmp_path)
    o = run_with_faults(tmp_path, meter, "stop", meter_primary=True, duration=60, script=script_die)
    assert o.exit_status == "failed"
    assert o.reason.startswith("meter: gave up after 3 reconnect attempts") and "on_failure: stop" in o.reason, o.reason
    stop_s = o.ended - o.fault_at["dead"]
    assert stop_s < 40  # bounded: I/O timeouts + the back-off, the workload stopped, the seal
    c = assert_nothing_lost(o)
    assert c["failed"] and c["gap_s"] and c["gap_s"][-1] > 0
    events = [json.loads(line) for line in (o.bundle / "data" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "error" and "gave up" in e["message"] and e["data"].get("gap_s", 0) > 0 for e in events)
    testing = json.loads((o.bundle / "data" / "testing" / "phase.json").read_text())
    assert testing["workload"]["status"] == "aborted"
    report(kind, "dies for good, on_failure: stop", o, c, stop_s=round(stop_s, 2))


# --- the real command line, the real back-off, a meter process killed -------------------------------------


def test_labconsole_run_survives_a_killed_ptd_process_and_its_return(tmp_path, monkeypatch):
    """`labconsole emulate ptd` in its own process is SIGKILLed mid-run and started again on the
    same port; `labconsole run` (the default back-off: 0.5, 1, 2, 4 s) reconnects and the gap
    is recorded. Then it is killed for good: the run stops, sealed, saying why."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def daemon() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "ptd", "-p", str(port), "--utilisation", "0.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if "Waiting for a connection" in line:
                return p
            if not line and p.poll() is not None:
                break
        p.kill()
        raise AssertionError("the PTD emulator did not start")

    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(
        meter="cli", rec=tmp_path / "rec", policy="stop", meter_primary="true", sim_primary="false", duration=60,
        source=f"driver: ptd\n    sample_interval_s: 0.1\n    options: {{host: 127.0.0.1, port: {port}, timeout_s: 1, connect_timeout_s: 1}}",
    ))
    ptd = daemon()
    run = subprocess.Popen([sys.executable, "-m", "labconsole", "run", "--profile", str(prof)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(env, PYTHONUNBUFFERED="1"), cwd=str(tmp_path))
    seen: list[str] = []

    def until(needle: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            if not line and run.poll() is not None:
                break
            seen.append(line)
            if needle in line:
                return
        raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)}")

    try:
        until(">> [testing]")
        time.sleep(1.0)
        ptd.kill()  # SIGKILL: the connection dies with the process
        ptd.wait(10)
        until("reconnect failed")
        ptd = daemon()  # back on the same port
        until("resumed after")
        killed = time.monotonic()
        ptd.kill()
        ptd.wait(10)
        out, err = run.communicate(timeout=90)
        stop_s = time.monotonic() - killed
    finally:
        for p in (run, ptd):
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=10)
    text = "".join(seen) + out
    assert run.returncode == 1, text + err
    assert "Traceback" not in err
    bundle = Path(out.strip().splitlines()[-1])
    info = json.loads((bundle / "data" / "run.json").read_text())
    assert info["exit_status"] == "failed" and "gave up after 4 reconnect attempts" in info["reason"], info["reason"]
    c = info["acquisition"]["sources"]["meter"]
    assert c["read"] == c["written"] == rows_on_disk(bundle, "meter") and c["lost"] == 0
    assert c["reconnects"] >= 1 and len(c["gap_s"]) >= 2
    assert verify(bundle).ok
    print("FAULT-FIGURES " + json.dumps({"meter": "ptd (process)", "case": "SIGKILL, restart, SIGKILL; labconsole run, default back-off",
                                         "read": c["read"], "written": c["written"], "invalid": c["invalid"], "gap_s": c["gap_s"], "stop_s": round(stop_s, 2)}))
