"""End to end: the `yokogawa` driver through PyVISA + pyvisa-py over a loopback TCP socket,
against the WT310E emulator. No timing assertions: the machine is shared and slow."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import pyvisa

from conftest import ROOT, run_cli
from labconsole.emulators import wt310
from labconsole.events import EventBus
from labconsole.recorder import Recorder
from labconsole.samples.batch import NO_DATA, OK, OVERRANGE
from labconsole.sources.base import SourceError
from labconsole.sources.yokogawa import YokogawaSource


def _emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wt310-")]


@pytest.fixture
def emulator():
    """Factory for WT310E emulators at a constant utilisation; all stopped at teardown."""
    handles = []

    def make(**options):
        h = wt310.start({"utilisation": 0.5, "seed": 7, "noise_w": 0.5, **options})
        handles.append(h)
        return h

    yield make
    for h in handles:
        h.stop()
    assert not _emulator_threads(), "an emulator thread outlived its test"


@pytest.fixture
def source(emulator):
    """Factory for driver instances on an emulator; all closed at teardown."""
    opened = []

    def make(handle, sample_interval_s=0.1, **options):
        src = YokogawaSource("wall", YokogawaSource.Options.model_validate({"resource": handle.resource, "timeout_s": 1.0, **options}), sample_interval_s)
        src.open()
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


@pytest.fixture
def raw(emulator):
    """A plain PyVISA (pyvisa-py) session on an emulator, for speaking SCPI by hand."""
    sessions = []

    def make(handle):
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(handle.resource, read_termination="\n", write_termination="\n", timeout=1000)
        sessions.append(res)
        return res

    yield make
    for res in sessions:
        res.close()


def read_n(src, n, timeout=5.0):
    out = []
    while len(out) < n:
        batches = src.read(timeout)
        assert batches, "no sample within the timeout"
        out.append(batches[0].samples)
    return np.concatenate(out)


# --- the SCPI dialect, by hand ------------------------------------------------------------------


def test_scpi_forms_headers_and_error_queue(emulator, raw):
    res = raw(emulator())
    assert res.query("*IDN?").startswith("YOKOGAWA,WT310E,EMU")
    # Headers are on after power-up; short and long forms, any case, optional [:INPut] node.
    assert res.query(":INPut:VOLTage:RANGe?") == ":INP:VOLT:RANG 600.0E+00"
    res.write(":COMM:HEAD OFF")
    assert res.query(":inp:volt:rang?") == "600.0E+00"
    assert res.query(":VOLTAGE:RANGE?") == "600.0E+00"
    # A compound message with a relative header: one reply per query, joined by ';'.
    assert res.query(":INPut:CURRent:RANGe 1A;AUTO?;RANGe?") == "0;1.000E+00"
    assert res.query(":curr:rang 5MA;rang?") == "5.000E-03"  # "MA" is milliampere for a current
    assert res.query(":STATus:ERRor?") == '0,"No error"'
    # Unknown header, illegal value, value for a query-only node: the meter's own codes, in order.
    res.write(":INPut:VOLTage:RANGe 100V")
    res.write(":BOGUS:NODE 1")
    res.write(":NUMeric:NORMal:ITEM1 U,2")
    assert res.query(":STAT:ERR?") == '224,"Illegal parameter value"'
    assert res.query(":STAT:ERR?") == '113,"Undefined header"'
    assert res.query(":STAT:ERR?") == '224,"Illegal parameter value"'
    assert res.query(":STAT:ERR?") == '0,"No error"'
    res.write(":COMM:VERB ON")
    assert res.query(":INTEG:STAT?") == "RESET"
    assert res.query(":NUM:NORM:ITEM6?") == "LAMBDA,1"


def test_update_bit_rises_once_per_update(emulator, raw):
    res = raw(emulator(update_s=0.1))
    res.write(":COMM:HEAD OFF;:STAT:FILT1 FALL")
    res.query(":STAT:EESR?")  # clear
    assert res.query(":STAT:EESR?") == "0"  # read-and-clear: nothing new right after
    deadline = time.monotonic() + 5
    while int(res.query(":STAT:EESR?")) & 1 == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # :COMMunicate:WAIT blocks until the next update; the query after it then answers.
    res.write(":COMM:WAIT 1")
    assert int(res.query(":STAT:EESR?")) & 1 == 1


def test_integration_state_machine_and_settings_lock(emulator, raw):
    res = raw(emulator(update_s=0.1))
    res.write(":COMM:HEAD OFF;:COMM:VERB ON")
    res.write(":INTEG:STOP")
    assert res.query(":STAT:ERR?").startswith("844,")
    res.write(":INTEG:STAR")
    assert res.query(":INTEG:STAT?") == "START"
    res.write(":INTEG:STAR")
    assert res.query(":STAT:ERR?").startswith("842,")
    res.write(":INP:CURR:RANG 2A")
    assert res.query(":STAT:ERR?").startswith("813,")
    res.write(":INTEG:RES")
    assert res.query(":STAT:ERR?").startswith("845,")
    res.write(":NUM:NORM:NUM 2;ITEM1 WH,1;ITEM2 TIME")
    time.sleep(0.35)
    wh, secs = res.query(":NUM:NORM:VAL?").split(",")
    assert float(wh) > 0 and int(secs) >= 0
    res.write(":INTEG:STOP;:INTEG:RES")
    assert res.query(":INTEG:STAT?") == "RESET"
    assert res.query(":STAT:ERR?") == '0,"No error"'


def test_float_format_carries_the_ieee_markers(emulator, raw):
    res = raw(emulator())
    res.write(":COMM:HEAD OFF;:NUM:FORM FLOAT;:NUM:NORM:NUM 10")
    res.write(":NUM:NORM:VAL?")
    raw_bytes = res.read_raw()
    assert raw_bytes.startswith(b"#240") and len(raw_bytes) == 4 + 40 + 1
    assert raw_bytes[4 + 36 : 4 + 40] == bytes.fromhex("7E951BEE")  # item 10 is NONE: 9.91E+37


# --- the driver over pyvisa-py --------------------------------------------------------------------


def test_driver_reads_one_sample_per_update_at_the_fastest_rate(emulator, source):
    h = emulator()
    src = source(h, sample_interval_s=0.1)
    ident = src.identify()
    assert ident.model == "WT310E" and ident.serial.startswith("EMU") and ident.extra["emulated"]
    samples = read_n(src, 12)
    assert (samples["status"] == OK).all()
    gaps = np.diff(samples["mono_ns"]) / 1e9
    assert (gaps > 0.05).all(), f"two samples within half an update period: duplicates {gaps}"
    assert 50 < samples["watts"].mean() < 200
    assert np.isfinite(samples["uncertainty_w"]).all()
    assert (samples["range_v"] == 600.0).all() and (samples["range_a"] == 20.0).all()


def test_auto_range_switches_down_with_nan_updates_between(emulator, source):
    src = source(emulator(), sample_interval_s=0.1)
    rs = src.set_ranges(auto=True)
    assert rs.auto_v and rs.auto_a
    samples = read_n(src, 12)
    assert (samples["status"] == NO_DATA).any(), "a range switch must give NAN updates"
    assert samples["status"][-1] == OK
    assert samples["range_a"][-1] < 20.0  # 0.6 A does not stay on the 20 A range
    assert (samples["range_v"] == 600.0).all()  # 230 V is 38 % of 600 V: no step down


def test_fixed_range_over_140_percent_reads_over_range(emulator, source):
    h = emulator(pf_idle=1.0, pf_load=1.0)
    src = source(h, sample_interval_s=0.1)
    h.meter.model.idle_w = h.meter.model.dynamic_w = 0.0
    h.meter.model.idle_w = 2.6 * 230.0  # 2.6 A: 130 % of a 2 A range
    rs = src.set_ranges(volts=230.0, amps=2.0, auto=False)
    assert (rs.volts, rs.amps, rs.auto_v, rs.auto_a) == (300.0, 2.0, False, False)
    read_n(src, 2)  # the switch
    assert (read_n(src, 3)["status"] == OK).all()
    h.meter.model.idle_w = 3.0 * 230.0  # 3.0 A: 150 %
    samples = read_n(src, 4)
    assert samples["status"][-1] == OVERRANGE
    assert math.isnan(samples["watts"][-1])
    rs = src.set_ranges(amps=5.0, auto=False)
    read_n(src, 2)
    assert (read_n(src, 3)["status"] == OK).all()


def test_a_milliamp_range_that_sees_too_much_is_forced_to_1a_and_auto(emulator, source):
    src = source(emulator(), sample_interval_s=0.1)
    src.set_ranges(volts=230.0, amps=0.2, auto=False)
    read_n(src, 3)
    rs = src.get_ranges()
    assert rs.auto_a and rs.amps >= 1.0


def test_integration_energy_counter(emulator, source):
    src = source(emulator(), sample_interval_s=0.1, integration=True)
    assert src.capabilities().has_energy_counter
    samples = read_n(src, 8)
    e = samples["energy_j"]
    assert np.isfinite(e).all() and (np.diff(e) >= 0).all() and e[-1] > e[0]
    # energy between the first and last sample ~ mean power x the updates between them
    updates = round((samples["mono_ns"][-1] - samples["mono_ns"][0]) / 1e9 / 0.1)
    assert (e[-1] - e[0]) == pytest.approx(samples["watts"].mean() * updates * 0.1, rel=0.3)
    src.set_ranges(volts=230, amps=1.0, auto=False)  # stops and restarts the meter's integration
    after = read_n(src, 3)["energy_j"]
    assert np.nanmin(after) >= e[-1]


def test_refused_rate_is_a_clear_error(emulator):
    h = emulator()
    src = YokogawaSource("wall", YokogawaSource.Options(resource=h.resource, timeout_s=1.0), 0.3)
    with pytest.raises(SourceError, match="not one the WT310E offers"):
        src.open()
    src.close()


def test_a_meter_that_stops_answering_mid_read_raises_quickly(emulator, source):
    h = emulator()
    src = source(h, sample_interval_s=0.1, timeout_s=0.5)
    read_n(src, 2)
    h.set_silent(True)
    with pytest.raises(SourceError, match="did not answer"):
        for _ in range(3):
            src.read(5.0)
    h.set_silent(False)
    src.close()
    src.open()  # a fresh connection works again
    assert read_n(src, 2)["status"][-1] == OK


def test_recorder_records_the_gap_and_reconnects(emulator, source):
    h = emulator()
    src = source(h, sample_interval_s=0.1, timeout_s=0.5)
    bus = EventBus()
    events = []
    bus.add_sink(events.append)
    rec = Recorder([(src, "continue")], bus, fsync=False)
    rec.start()
    try:
        deadline = time.monotonic() + 10
        while rec.states["wall"].read_samples < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        h.set_silent(True)
        deadline = time.monotonic() + 10
        while rec.states["wall"].errors < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        h.set_silent(False)
        deadline = time.monotonic() + 20
        while not any("resumed" in e.message for e in events) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        rec.stop()
    text = [e.message for e in events]
    assert any("did not answer" in m and "reconnecting" in m for m in text), text
    assert any("reconnected" in m for m in text), text
    assert any("resumed after" in m for m in text), text
    counts = rec.counts()["wall"]
    assert counts["errors"] >= 1 and counts["gaps"] >= 1 and counts["failed"] is None


def test_discover_asks_explicit_socket_resources(emulator):
    h = emulator()
    silent = emulator()
    silent.set_silent(True)
    found = YokogawaSource.discover({"resources": [h.resource, silent.resource], "timeout_s": 0.5})
    by_addr = {d.address: d for d in found}
    ok = by_addr[h.resource]
    assert (ok.status, ok.model) == ("available", "WT310E") and ok.serial.startswith("EMU")
    assert ok.profile_snippet["options"] == {"resource": h.resource}
    assert by_addr[silent.resource].status == "error"


def test_emulator_options_are_checked():
    with pytest.raises(ValueError, match="update_s"):
        wt310.start({"update_s": 0.3})
    with pytest.raises(ValueError, match="bogus"):
        wt310.start({"bogus": 1})


# --- the command line --------------------------------------------------------------------------------


def test_labconsole_emulate_wt310_serves_until_interrupted():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labconsole", "emulate", "wt310", "--port", "0", "--utilisation", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
    )
    try:
        resource = None
        deadline = time.monotonic() + 60
        while resource is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("VISA resource:"):
                resource = line.split(":", 1)[1].strip()
        assert resource and resource.startswith("TCPIP::127.0.0.1::"), proc.stderr.read() if proc.poll() is not None else ""
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
        try:
            assert res.query("*IDN?").startswith("YOKOGAWA,WT310E,EMU")
        finally:
            res.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- a whole run ------------------------------------------------------------------------------------------


def test_short_run_on_the_emu_wt310_profile(tmp_path):
    text = (ROOT / "profiles" / "emu-wt310.yaml").read_text()
    # A constant load keeps ranging and testing comparable on a shared, busy machine.
    text = text.replace("utilisation: workload", "utilisation: 0.5").replace("recordings: recordings", f"recordings: {tmp_path / 'rec'}")
    text = text.replace("idle_s: 3", "idle_s: 1").replace("settle_s: 1 ", "settle_s: 0.5 ")
    profile = tmp_path / "emu-wt310.yaml"
    profile.write_text(text)
    out = run_cli("run", "--profile", str(profile), "--duration", "2", "--quiet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    bundle = Path(out.stdout.strip().splitlines()[-1])
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 0, chk.stdout
    run = json.loads((bundle / "data" / "run.json").read_text())
    chosen = run["ranges"]["wall"]
    assert chosen["requested"] == {"volts": 300.0, "amps": 1.0}
    assert chosen["read_back"] == {"volts": 300.0, "amps": 1.0, "auto_v": False, "auto_a": False}
    env = json.loads((bundle / "data" / "environment.json").read_text())
    assert "EMU" in json.dumps(env)
    testing = json.loads((bundle / "data" / "testing" / "phase.json").read_text())
    assert testing["ranges"]["wall"]["auto_a"] is False
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert rep["power"]["samples_in_window"] > 3
