"""The emulated MLPerf Tiny DUT (and its IO manager) speaks the benchmark API's protocol, and in
energy mode its timestamp pulses reach the LPM01A emulator's D7 as `event NN` lines."""

from __future__ import annotations

import re
import time

import pytest
import serial

from labconsole.emulators import lpm01a, tiny_bench, tiny_dut
from labconsole.instruments import powershield as ps
from labconsole.instruments import tiny as tp


@pytest.fixture
def direct():
    emu = tiny_dut.start({"mode": "performance", "inference_ms": 2, "speed": 10})
    port = serial.Serial(emu.path, 115200, timeout=0.05)
    yield emu, port
    port.close()
    emu.stop()


def talk(port, text: str, readies: int = 1, timeout: float = 5.0) -> list[str]:
    """Send a command, read lines until `readies` m-ready lines came."""
    port.write(tp.command(text))
    out, buf, deadline = [], "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        buf += port.read(4096).decode("ascii", "replace")
        while "\r\n" in buf:
            line, buf = buf.split("\r\n", 1)
            out.append(line)
        if sum(1 for ln in out if tp.strip_io(ln)[1] == tp.READY) >= readies:
            return out
    raise AssertionError(f"no {readies} m-ready after {text!r}: {out}")


def read_until(port, text: str, timeout: float = 5.0) -> str:
    out, deadline = "", time.monotonic() + timeout
    while text not in out and time.monotonic() < deadline:
        out += port.read(4096).decode("ascii", "replace")
    return out


def test_direct_dut_protocol(direct):
    emu, port = direct
    boot = read_until(port, "m-ready\r\n")
    assert boot.split("\r\n")[:3] == ["m-timestamp-mode-performance", "m-lap-us-" + boot.split("m-lap-us-")[1].split("\r\n")[0], "m-init-done"]
    assert talk(port, "name") == ["m-name-dut-[labconsole emulated DUT]", "m-ready"]
    assert talk(port, "profile") == [f"m-profile-[{tp.API_PROFILE}]", "m-model-[kws01]", "m-ready"]
    assert talk(port, "bogus 1") == ["e-[Unknown command: bogus]", "m-ready"]
    assert talk(port, "db load") == ["e-[Command 'db load' requires the # of bytes]", "m-ready"]
    assert talk(port, "db load 0") == ["e-[Command 'db load' must be >0 bytes]", "m-ready"]
    assert talk(port, "db load 30000") == [f"Supplied buffer size 30000 exceeds maximum of {tp.MAX_DB_INPUT}", "m-ready"]
    assert talk(port, "db load 5") == ["m-[Expecting 5 bytes]", "m-ready"]
    assert talk(port, "db 0a0B0") == ["e-[Insufficent number of hex digits]", "m-ready"]
    assert talk(port, "db 0a0b") == ["m-ready"]
    assert talk(port, "db zz") == ["e-[Invalid hex digit 'zz']", "m-ready"]
    assert talk(port, "db 0c0d0eff") == ["m-load-done", "m-ready"]  # the 6th byte is ignored
    assert talk(port, "db print") == ["m-buffer-0a-0b-0c-0d-0e", "m-ready"]
    lines = talk(port, "infer 100 3")
    assert lines[:3] == ["m-warmup-start-3", "m-warmup-done", "m-infer-start-100"]
    laps = [tp.parse_lap_us(ln) for ln in lines if tp.parse_lap_us(ln) is not None]
    assert len(laps) == 2 and laps[1] - laps[0] == pytest.approx(100 * 2000, rel=0.05)  # 100 x 2 ms
    assert lines[-3] == "m-infer-done" and tp.parse_results(lines[-2]) is not None
    assert talk(port, "infer 0") == ["e-[Inference iterations must be >0]", "m-ready"]
    assert talk(port, "infer 1 -1") == ["e-[Inference warmup must be >=0]", "m-ready"]
    assert talk(port, "results")[0] == lines[-2]
    # commands longer than the DUT's 80-char buffer are cut there
    talk(port, "name " + "x" * 100)
    assert len(emu.commands[-1]) == 105 and emu.commands[-1][: tp.CMD_MAX] == ("name " + "x" * 100)[: tp.CMD_MAX]


def test_io_manager_passthrough_prefix_and_setbaud():
    emu = tiny_dut.start({"io_manager": True, "speed": 50})
    port = serial.Serial(emu.path, 115200, timeout=0.05)
    try:
        assert read_until(port, "[dut]: m-ready\r\n").split("\r\n")[:3] == ["[dut]: m-timestamp-mode-energy", "[dut]: m-init-done", "[dut]: m-ready"]
        assert talk(port, "name") == [f"m-name-[{tp.IO_NAME}]", "m-ready"]
        assert talk(port, "dut name", readies=2) == ["m-dut-passthrough(name)", "m-ready", "[dut]: m-name-dut-[labconsole emulated DUT]", "[dut]: m-ready"]
        assert talk(port, "frob") == ["e-[Unknown command: frob]", "m-ready"]
        assert talk(port, "setbaud 115200") == ["m-baud-[115200]", "m-ready"]
        garbled = talk(port, "dut name", readies=1, timeout=1)
        time.sleep(0.3)
        garbled += port.read(4096).decode().split("\r\n")
        assert "[dut]: m-name-dut-[labconsole emulated DUT]" not in garbled  # the DUT runs at 9600
        talk(port, "setbaud 9600")
        assert talk(port, "dut profile", readies=2)[-2] == "[dut]: m-model-[kws01]"
        # 26-byte chunks through the interface board: `dut db <52 hex>` stays within 80 characters
        chunks = tp.db_chunks(bytes(range(60)), via_io=True)
        assert [len(c) for c in chunks] == [3 + 52, 3 + 52, 3 + 16] and all(len("dut " + c) <= tp.CMD_MAX for c in chunks)
    finally:
        port.close()
        emu.stop()


def _lpm(port, cmd: str) -> str:
    port.write(cmd.encode() + b"\n")
    time.sleep(0.03)
    return port.read(1 << 16).decode(errors="replace")


def test_energy_mode_pulses_reach_the_lpm01a_d7_with_the_boot_edge():
    name = "test-wire"
    meter = lpm01a.start({"bench": name, "speed": 20, "noise_mw": 0.0, "buffer_bytes": 1 << 22})
    dut = tiny_dut.start({"bench": name, "inference_ms": 10, "idle_mw": 4, "infer_mw": 20, "boot_ms": 300})
    ps_port = serial.Serial(meter.path, ps.DEFAULT_BAUD, timeout=0.02)
    io = serial.Serial(dut.path, 115200, timeout=0.05)
    try:
        for cmd in ("htc", "acqtime inf", "eventsrc d7 fal", "output energy", "format ascii_dec", "freq 1k", "volt 3000m", "start"):
            assert "ack" in _lpm(ps_port, cmd) or cmd == "start"
        text = _lpm(ps_port, "pwr on nostatus")  # the supply comes on: the DUT boots during the acquisition
        assert dut.bench.powered
        deadline = time.monotonic() + 5
        boot = ""
        while "[dut]: m-ready" not in boot and time.monotonic() < deadline:
            boot += io.read(4096).decode()
        assert "[dut]: m-init-done\r\n[dut]: m-ready" in boot
        lines = talk(io, "dut infer 500 2", readies=2, timeout=10)  # 5 s of inference at 20 mW
        assert "[dut]: m-infer-done" in lines
        time.sleep(0.3)
        ps_port.write(b"stop\n")
        deadline = time.monotonic() + 3
        while "Acquisition completed" not in text and time.monotonic() < deadline:
            text += ps_port.read(1 << 16).decode(errors="replace")
    finally:
        io.close()
        ps_port.close()
        dut.stop()
        meter.stop()
        tiny_bench.forget(name)
    samples: list[float] = []
    events: list[tuple[str, int]] = []
    for ln in text.split("\r\n"):
        ln = ln.strip("\x00")
        if re.fullmatch(r"\d{4}[+-]\d{2}", ln):
            samples.append(ps.decode_ascii_token(ln))
        elif ln.startswith("event"):
            events.append((ln, len(samples)))
    # the boot-time edge, then the two around the 500 inferences; counted from 00, `ris` as real boards print
    assert [e for e, _ in events] == ["event 00 ris", "event 01 ris", "event 02 ris"], events
    a, b = events[1][1], events[2][1]
    assert b - a == pytest.approx(5000, abs=5)  # 500 x 10 ms at 1 kHz
    window_j = sum(samples[a:b])
    assert window_j == pytest.approx(0.020 * 5.0, rel=0.002)  # 20 mW for 5 s
    assert sum(samples[b + 20 : b + 120]) == pytest.approx(0.004 * 0.100, rel=0.01)  # idle after (4 mW)


def test_emulate_tiny_dut_command_starts_both_boards_wired(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "tiny-dut", "--speed", "20", "--port", str(tmp_path / "io"), "--lpm01a-port", str(tmp_path / "lpm")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert "energy-mode IO manager" in first and "LPM01A" in second, (first, second, proc.stderr.read() if proc.poll() is not None else "")
        ps_port = serial.Serial(str(tmp_path / "lpm"), ps.DEFAULT_BAUD, timeout=0.05)
        io = serial.Serial(str(tmp_path / "io"), 115200, timeout=0.05)
        try:
            for cmd in ("htc", "pwr off", "eventsrc d7 fal", "output energy", "freq 1k", "start"):
                _lpm(ps_port, cmd)
            assert talk(io, "dut name", readies=1, timeout=2) == ["m-dut-passthrough(name)", "m-ready"]  # not powered yet: no DUT
            _lpm(ps_port, "pwr on nostatus")
            time.sleep(0.3)
            assert talk(io, "dut profile", readies=2)[-2] == "[dut]: m-model-[kws01]"
        finally:
            io.close()
            ps_port.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "stopped after" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
