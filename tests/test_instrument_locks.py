"""Two consoles on one meter: the second is refused before it writes anything or sends the
meter a single command, whatever spelling of the address it uses; the first records on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli
from labconsole.emulators import lpm01a as lpm_emu
from labconsole.emulators import ptd as ptd_emu
from labconsole.emulators import wt310
from labconsole.locks import serial_key, tcp_key
from labconsole.procedure.engine import RunEngine
from labconsole.procedure.plans.inference import InferencePlan
from labconsole.profile import load_profile
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource
from labconsole.sources.ptd import PtdOptions, PtdSource
from labconsole.sources.yokogawa import YokogawaOptions, YokogawaSource, visa_key

PROFILE = """
name: {name}
recordings: {rec}
sources:
  - name: meter
    {source}
workload:
  type: loadgen
  scenario: Server
  sut: sleep
  sut_options: {{latency_ms: 1, concurrency: 4}}
  target_qps: 100
  duration_s: 60
procedure:
  idle_s: 0
  ranging: false
"""


def test_lock_keys_name_one_instrument_one_way():
    assert visa_key("TCPIP::127.0.0.1::5025::SOCKET") == visa_key("tcpip0::localhost::5025::socket") == tcp_key("127.0.0.1", 5025)
    assert visa_key("TCPIP::meter.lab::INSTR") == visa_key("TCPIP0::Meter.Lab::inst0::instr") == "TCPIP0::meter.lab::inst0::INSTR"
    assert visa_key("USB0::0x0B21::0x0025::C2::INSTR") == visa_key("usb::2849::37::C2::INSTR")
    assert visa_key("ASRL/dev/ttyUSB0::INSTR") == serial_key("/dev/ttyUSB0")
    yoko = YokogawaSource("w", YokogawaOptions(resource="TCPIP::LOCALHOST::5025::SOCKET"))
    assert yoko.lock_key() == tcp_key("127.0.0.1", 5025)
    assert YokogawaSource("w", YokogawaOptions(resource="USB::1::2::3::INSTR", visa_library="x.yaml@sim")).lock_key() is None
    assert PtdSource("p", PtdOptions(host="::1", port=8888)).lock_key() == PtdSource("p", PtdOptions(host="[0:0::1]", port=8888)).lock_key()
    assert Lpm01aSource("d", Lpm01aOptions(port="loop://")).lock_key() is None


def _wt310(tmp_path: Path):
    h = wt310.start({"utilisation": 0.5, "seed": 1})
    first = f'driver: yokogawa\n    sample_interval_s: 0.1\n    options: {{resource: "{h.resource}", timeout_s: 1}}'
    second = first.replace(h.resource, f"tcpip0::localhost::{h.server.port}::socket")  # same meter, other spelling
    return h, first, second, lambda: h.server.connections


def _ptd(tmp_path: Path):
    h = ptd_emu.start({"utilisation": 0.5, "seed": 1, "min_interval_ms": 10})
    first = f"driver: ptd\n    sample_interval_s: 0.1\n    options: {{host: 127.0.0.1, port: {h.port}, timeout_s: 1}}"
    second = first.replace("127.0.0.1", "localhost")
    return h, first, second, lambda: sum("Accepted connection" in line for line in h.emulator.console_lines)


def _lpm01a(tmp_path: Path):
    link = tmp_path / "ttyBoard"
    emu = lpm_emu.start({"utilisation": 0.5, "seed": 1, "link": str(link)})
    first = f'driver: lpm01a\n    sample_interval_s: 0.01\n    options: {{port: "{link}", frequency_hz: 100}}'
    second = first.replace(str(link), emu.path)  # the link and the tty it names are one board
    return emu, first, second, lambda: emu.commands.count("htc")


@pytest.mark.parametrize("make", [_wt310, _ptd, _lpm01a], ids=["wt310", "ptd", "lpm01a"])
def test_a_second_console_on_the_same_meter_is_refused(tmp_path, make):
    handle, first_src, second_src, sessions = make(tmp_path)
    try:
        p1 = tmp_path / "first.yaml"
        p1.write_text(PROFILE.format(name="first", rec=tmp_path / "rec1", source=first_src))
        p2 = tmp_path / "second.yaml"  # its own recordings folder: only the meter is shared
        p2.write_text(PROFILE.format(name="second", rec=tmp_path / "rec2", source=second_src))
        proc = RunEngine(load_profile(p1), InferencePlan())
        started = threading.Event()
        proc.bus.add_sink(lambda e: started.set() if e.kind == "phase_start" and e.phase == "testing" else None)
        outcome = []
        t = threading.Thread(target=lambda: outcome.append(proc.run()), daemon=True)
        t.start()
        assert started.wait(120), "the first console never started testing"
        before = sessions()
        read_before = proc.recorder.states["meter"].read_samples
        second = run_cli("run", "--profile", str(p2), "--quiet", timeout=120)
        time.sleep(0.5)
        read_after = proc.recorder.states["meter"].read_samples
        proc.abort("test over")
        t.join(60)
    finally:
        handle.stop()
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.startswith("refused: the instrument at "), second.stderr
    assert "is in use by another labconsole (pid " in second.stderr and "Traceback" not in second.stderr
    assert not (tmp_path / "rec2").exists() or not any((tmp_path / "rec2").iterdir())  # nothing written
    assert sessions() == before == 1  # the meter never heard from the second console
    assert read_after > read_before  # the first kept recording meanwhile
    out = outcome[0]
    run = json.loads((out.bundle / "data" / "run.json").read_text())
    c = run["acquisition"]["sources"]["meter"]
    assert c["errors"] == 0 and c["gaps"] == 0 and c["read"] == c["written"]


def test_one_profile_naming_a_meter_twice_is_refused(tmp_path):
    h = wt310.start({"utilisation": 0.5})
    try:
        src = f'driver: yokogawa\n    sample_interval_s: 0.1\n    options: {{resource: "{h.resource}"}}'
        text = PROFILE.format(name="twice", rec=tmp_path / "rec", source=src)
        text = text.replace("workload:", f"  - name: again\n    {src.replace(h.resource, h.resource.lower())}\nworkload:")
        prof = tmp_path / "twice.yaml"
        prof.write_text(text)
        out = run_cli("run", "--profile", str(prof), timeout=120)
    finally:
        h.stop()
    assert out.returncode == 1
    assert "refused: sources meter and again name the same instrument (tcp:127.0.0.1:" in out.stderr, out.stderr
    assert h.server.connections == 0
