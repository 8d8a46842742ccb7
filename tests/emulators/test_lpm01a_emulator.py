"""The lpm01a driver end to end: pyserial on the tty of the pty emulator, the real protocol."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT

from labconsole import events as ev
from labconsole.emulators import lpm01a as emulator
from labconsole.events import EventBus
from labconsole.recorder import Recorder
from labconsole.samples.batch import ERROR, GAP, OK
from labconsole.sources.base import SourceError
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def clean():
    """No emulator thread and no file descriptor may outlive a test."""
    before_fds = _fds()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name.startswith("lpm01a-emulator") for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("lpm01a-emulator", "acquire-"))]
    assert _fds() - before_fds == set(), f"file descriptors left open: {_fds() - before_fds}"


@pytest.fixture
def emu(clean):
    started = []

    def make(**options):
        options.setdefault("utilisation", 0.5)  # 5 + 0.5 x 20 = 15 mW, whatever the host does
        options.setdefault("seed", 1)
        e = emulator.start(options)
        started.append(e)
        return e

    yield make
    for e in started:
        e.stop()


def source(e, **options) -> Lpm01aSource:
    options.setdefault("stall_timeout_s", 1.0)
    return Lpm01aSource("dut", Lpm01aOptions(port=e.path, **options))


def collect(src: Lpm01aSource, seconds: float) -> np.ndarray:
    parts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        parts.extend(cb.samples for cb in src.read(0.5))
    return np.concatenate(parts)


def test_mlperf_tiny_setup_energy_at_1khz(emu):
    e = emu()
    src = source(e)
    src.open()
    try:
        ident = src.identify()
        assert ident.serial == "EMULATOR-LABCONSOLE-0001" and "emulator" in ident.firmware
        batch = collect(src, 1.5)
    finally:
        src.close()
    assert e.commands == [
        "htc", "powershield", "version", "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "acqmode dyn",
        "output energy", "format ascii_dec", "freq 1k", "volt 3300m", "pwr on nostatus", "start", "stop", "pwr off", "hrc",
    ]
    assert 1000 <= len(batch) <= 2000
    assert np.all(batch["status"] == OK)
    assert_regular(batch["mono_ns"], 1_000_000)
    assert batch["watts"].mean() == pytest.approx(0.015, abs=0.0005)
    assert batch["energy_j"][-1] == pytest.approx(np.sum(batch["watts"]) / 1000)
    # timestamps are anchored at the acquisition: the newest sample is recent, not in the future
    lag_ms = (time.monotonic_ns() - int(batch["mono_ns"][-1])) / 1e6
    assert lag_ms > 0
    assert src.counters["timestamps"] >= 1 and src.counters["dropped"] == 0
    assert not e.host_control and not e.powered


def test_current_mode_binary_at_50khz(emu):
    e = emu()
    src = source(e, frequency_hz=50000, output="current", format="bin_hexa", voltage_mv=1800)
    src.open()
    try:
        batch = collect(src, 1.0)
    finally:
        src.close()
    assert len(batch) > 20000
    assert np.all(batch["status"] == OK)
    assert_regular(batch["mono_ns"], 20_000)
    assert batch["watts"].mean() == pytest.approx(0.015, abs=0.0005)
    assert batch["amps"].mean() == pytest.approx(0.015 / 1.8, rel=0.03)
    assert src.counters["protocol_errors"] == 0 and src.counters["dropped"] == 0


def test_garbage_on_the_line_is_counted_never_averaged(emu):
    e = emu(noise_mw=0.0)
    src = source(e)
    src.open()
    try:
        collect(src, 0.3)
        e.inject(b"\x07\xff\xfe garbage\r\n12x4-07\r\n64\r\nTimeStamp: bogus\r\n")
        batch = collect(src, 0.5)
    finally:
        src.close()
    ok = batch[batch["status"] == OK]
    assert np.all(ok["watts"] == pytest.approx(0.015, rel=1e-3))
    assert np.count_nonzero(batch["status"] == ERROR) == 2  # '12x4-07' and '64' kept their places
    assert src.counters["protocol_errors"] == 4


def test_a_board_that_goes_silent_times_out_and_comes_back(emu):
    e = emu()
    src = source(e, stall_timeout_s=0.5, stop_timeout_s=1.0, command_timeout_s=0.5)
    src.open()
    collect(src, 0.3)
    e.mute()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="sent nothing for"):
        while time.monotonic() - t0 < 10:
            src.read(0.2)
    assert time.monotonic() - t0 < 3
    with pytest.raises(SourceError):  # stop, pwr off and hrc go unanswered, quickly
        src.close()
    assert time.monotonic() - t0 < 8
    e.mute(False)  # the board answers again (still acquiring): a new open stops it and starts over
    src.open()
    try:
        batch = collect(src, 0.5)
    finally:
        src.close()
    assert len(batch) > 300 and np.all(batch["status"] == OK)
    assert e.acquisitions == 2


def test_the_recorder_reports_the_gap_and_reconnects(emu):
    e = emu()
    src = source(e, stall_timeout_s=0.5, stop_timeout_s=0.5, command_timeout_s=0.5)
    src.open()
    bus = EventBus()
    seen: list[ev.Event] = []
    bus.add_sink(seen.append)
    rec = Recorder([(src, "continue")], bus, fsync=False)
    rec.start()
    try:
        time.sleep(0.5)
        e.mute()
        time.sleep(1.5)
        e.mute(False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not rec.states["dut"].gaps:
            time.sleep(0.1)
    finally:
        rec.stop()
        src.close()
    texts = [x.message for x in seen]
    assert any("read failed" in t and "sent nothing" in t for t in texts), texts
    assert any("reconnected" in t for t in texts), texts
    assert rec.states["dut"].gaps, texts
    assert rec.states["dut"].failed is None


def test_a_slow_link_overflows_the_board_buffer_and_the_timestamps_show_it(emu):
    e = emu(line_bytes_per_s=5000, buffer_bytes=2048)  # 1 kHz ASCII needs ~9000 B/s
    src = source(e)
    src.open()
    try:
        batch = collect(src, 3.0)
    finally:
        src.close()
    assert e.samples_dropped > 0
    gaps = np.count_nonzero(batch["status"] == GAP)
    assert gaps > 0 and src.counters["dropped"] == gaps
    assert src.counters["max_buffer_pct"] >= 50
    # every sample, received or not, sits on the 1 ms grid: no hole, no longer step (the anchor
    # may move earlier at the start on a busy host, which only shortens one step)
    assert_regular(batch["mono_ns"], 1_000_000)
    assert np.diff(batch["mono_ns"]).max() <= 1_000_000
    assert any(x.kind == "drop" for x in src.take_events())


def test_d7_events_come_through_the_side_channel(emu):
    e = emu(events_every_s=0.2)
    src = source(e, events="d7_falling")
    src.open()
    try:
        collect(src, 1.2)
    finally:
        src.close()
    events = [x for x in src.take_events() if x.kind == "event"]
    assert len(events) >= 4
    assert [x.text.split()[1] for x in events[:3]] == ["01", "02", "03"]
    gaps = np.diff([x.sample_index for x in events])
    assert np.all(np.abs(gaps - 200) <= 1)


def assert_regular(mono_ns, step_ns: int) -> None:
    """Samples `step_ns` apart. The driver's clock anchor may move earlier a few times when
    data arrives sooner than its first estimate allowed (a busy host); never backwards."""
    steps = np.diff(mono_ns)
    assert np.all(steps > 0)
    assert np.mean(steps == step_ns) > 0.99


def test_the_emulator_refuses_what_the_firmware_refuses(emu):
    e = emu()
    src = source(e, frequency_hz=10000, enforce_board_limits=False)
    with pytest.raises(SourceError, match=r"refused 'start'.*ascii_dec"):
        src.open()
    e.commands.clear()
    relaxed = emu(relaxed_limits=True)
    fast = source(relaxed, frequency_hz=10000, output="current", enforce_board_limits=False)
    fast.open()
    try:
        batch = collect(fast, 0.5)
    finally:
        fast.close()
    assert len(batch) > 3000
    assert_regular(batch["mono_ns"], 100_000)


def test_discover_identifies_named_ports_and_rejects_silent_ones(emu, tmp_path):
    import pty

    e = emu()
    found = Lpm01aSource.discover({"serial_ports": [e.path]})
    mine = [d for d in found if d.address == e.path]
    assert len(mine) == 1 and mine[0].status == "available"
    assert mine[0].serial == "EMULATOR-LABCONSOLE-0001" and "1.0.6-emulator" in mine[0].detail
    assert mine[0].profile_snippet["driver"] == "lpm01a" and mine[0].profile_snippet["options"]["port"] == e.path
    master, slave = pty.openpty()
    try:
        silent = Lpm01aSource.discover({"serial_ports": [os.ttyname(slave)], "timeout_s": 0.3})
        entry = [d for d in silent if d.address == os.ttyname(slave)][0]
        assert entry.status == "error" and "not a PowerShield" in entry.detail
    finally:
        os.close(master)
        os.close(slave)
    missing = Lpm01aSource.discover({"serial_ports": [str(tmp_path / "nope")]})
    assert [d.status for d in missing if d.address.endswith("nope")] == ["error"]


def test_open_errors_are_clear(clean, tmp_path):
    src = Lpm01aSource("dut", Lpm01aOptions(port=str(tmp_path / "ttyACM9")))
    with pytest.raises(SourceError, match="does not exist"):
        src.open()


def test_emulate_command_prints_the_tty_and_stops_on_ctrl_c(clean, tmp_path):
    link = tmp_path / "lpm01a"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "lpm01a", "--port", str(link), "--utilisation", "0.25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        first = proc.stdout.readline()
        assert first.startswith("LPM01A (PowerShield) emulator on /dev/pts/"), first + proc.stderr.read()
        assert link.is_symlink()
        src = Lpm01aSource("dut", Lpm01aOptions(port=str(link)))
        src.open()
        try:
            batch = collect(src, 0.5)
        finally:
            src.close()
        assert batch["watts"].mean() == pytest.approx(0.010, abs=0.0005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped after 1 acquisition(s)" in out
    assert not link.exists()


def test_the_emulator_speaks_the_boards_framing_byte_for_byte(emu):
    import serial

    e = emu()
    port = serial.Serial(e.path, 3686400, timeout=0.05)

    def exchange(command: bytes, expect: bytes) -> None:
        port.write(command + b"\r\n")
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < len(expect) and time.monotonic() < deadline:
            got += port.read(len(expect) - len(got))
        assert got == expect
        time.sleep(0.05)
        assert port.read(256) == b""  # nothing more

    try:
        exchange(b"freq 1k", b"\r\nPowerShield > error freq 1k\r\n\r\nError detail: host control required (send htc first)\r\n")
        exchange(b"htc", b"\r\nPowerShield > ack htc\r\n\r\n")
        exchange(b"freq 3k", b"\r\nPowerShield > error freq 3k\r\n\r\nError detail: value not in list {100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1}\r\n")
        exchange(b"volt 3600m", b"\r\nPowerShield > error volt 3600m\r\n\r\nError detail: value out of range [1800m; 3300m]\r\n")
        exchange(b"volt", b"\r\nPowerShield > error volt\r\n\r\nError detail: missing argument\r\n")
        exchange(b"volt 1800m", b"\r\nPowerShield > ack volt 1800m\r\n\r\n")
        exchange(b"frobnicate", b"\r\nPowerShield > error frobnicate\r\n\r\nError detail: unknown command (type help)\r\n")
        exchange(b"echo ABC", b"\r\nPowerShield > echo ABC\r\n")
        exchange(b"hrc", b"\r\nPowerShield > ack hrc\r\n\r\n")
    finally:
        port.close()


def test_an_active_device_idles_while_no_benchmark_runs(emu):
    e = emu(utilisation="active")
    src = source(e)
    src.open()
    try:
        batch = collect(src, 0.5)
    finally:
        src.close()
    assert batch["watts"].mean() == pytest.approx(0.005, abs=0.0005)


def test_bad_emulator_options_are_named():
    with pytest.raises(ValueError, match=r"lpm01a emulator options: idle_mw"):
        emulator.start({"idle_mw": -1})
    with pytest.raises(ValueError, match=r"frobnicate"):
        emulator.start({"frobnicate": 1})
