"""LPM01A driver transcripts: each command the driver writes and each reply, nothing left over
(a scripted serial port: labconsole.testing.serial_port)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labconsole.samples.batch import ERROR, GAP, OK
from labconsole.sources.base import SourceError
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource
from labconsole.testing.serial_port import ScriptedSerial
from labconsole.testing.transcript import TIMEOUT


def ack(command: str, payload: str = "") -> bytes:
    """The board's acknowledgement, spelled out here (not with the driver's own encoder)."""
    return b"\r\nPowerShield > ack " + command.encode() + (b" " + payload.encode() if payload else b"") + b"\r\n\r\n"


class ScriptedLpm01a(Lpm01aSource):
    """The real driver, with the serial port replaced by a ScriptedSerial."""

    def __init__(self, port: ScriptedSerial, **options):
        options.setdefault("port", "/dev/fake-lpm01a")
        super().__init__("dut", Lpm01aOptions(**options))
        self.fake = port

    def _make_port(self):
        return self.fake

    def assert_done(self) -> None:
        """Every exchange happened; no reply bytes left unread, on the port or in the driver's buffer."""
        self.fake.assert_done(buffered=self._rx)


def setup_script(freq: str = "1k", output: str = "energy", fmt: str = "ascii_dec", volt: str = "3300m", extra_after_start: bytes = b"") -> list[tuple[bytes, bytes]]:
    """MLPerf Tiny's set-up as the driver sends it with default options, each acknowledged."""
    cmds = ["htc", "powershield", "version", "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "acqmode dyn", f"output {output}", f"format {fmt}", f"freq {freq}", f"volt {volt}", "pwr on nostatus", "start"]
    payload = {"powershield": "PowerShield present 0038003B3436510D31353235", "version": "1.0.6"}
    script = [(c.encode() + b"\r\n", ack(c, payload.get(c, ""))) for c in cmds]
    script[-1] = (script[-1][0], script[-1][1] + extra_after_start)
    return script


COMPLETED = b"end\r\n\r\nPowerShield > Acquisition completed\r\n"


def teardown_script() -> list[tuple[bytes, bytes]]:
    return [(b"stop\r\n", COMPLETED), (b"pwr off\r\n", ack("pwr off")), (b"hrc\r\n", ack("hrc"))]


def opened(script, **options) -> ScriptedLpm01a:
    src = ScriptedLpm01a(ScriptedSerial(script), **options)
    src.open()
    return src


def read_all(src: ScriptedLpm01a, seconds: float = 0.2) -> np.ndarray:
    parts = []
    for cb in src.read(seconds):
        assert cb.channel == "main"
        parts.append(cb.samples)
    return np.concatenate(parts) if parts else np.empty(0)


def test_setup_identify_read_and_teardown_exchange_exactly_these_lines():
    stream = b"1500-08\r\n1501-08\r\n1499-08\r\n"
    src = opened(setup_script(extra_after_start=stream) + teardown_script())
    ident = src.identify()
    assert (ident.vendor, ident.model) == ("STMicroelectronics", "X-NUCLEO-LPM01A PowerShield")
    assert ident.serial == "0038003B3436510D31353235"
    assert ident.firmware == "1.0.6"
    batch = read_all(src)
    assert len(batch) == 3
    # energy mode, 1 kHz: 15.00 uJ per ms = 15.00 mW, and the energy counter adds the joules up
    assert batch["watts"] == pytest.approx([0.015, 0.01501, 0.01499])
    assert batch["energy_j"][-1] == pytest.approx(1.5e-5 + 1.501e-5 + 1.499e-5)
    assert np.all(np.diff(batch["mono_ns"]) == 1_000_000)  # interpolated from the frequency
    assert np.all(batch["volts"] == 3.3)
    assert batch["uncertainty_w"] == pytest.approx(0.02 * batch["watts"])
    src.close()
    assert src.fake.closed
    src.assert_done()


def test_current_mode_watts_are_amps_times_supply_volts():
    script = setup_script(output="current", volt="1800m", extra_after_start=b"6409-07\r\n") + teardown_script()
    src = opened(script, output="current", voltage_mv=1800)
    batch = read_all(src)
    assert batch["amps"][0] == pytest.approx(640.9e-6)
    assert batch["watts"][0] == pytest.approx(640.9e-6 * 1.8)
    assert math.isnan(batch["energy_j"][0])
    caps = src.capabilities()
    assert caps.power_kind == "instant" and not caps.has_energy_counter and not caps.has_ranges
    src.close()
    src.assert_done()


def test_capabilities_label_energy_mode_and_the_allowed_periods():
    src = ScriptedLpm01a(ScriptedSerial([]))
    caps = src.capabilities()
    assert caps.power_kind == "average" and caps.has_energy_counter
    assert caps.auto_range and not caps.has_ranges
    assert min(caps.update_periods_s) == pytest.approx(1 / 5000)  # ascii_dec: 5 kHz continuous at most
    assert caps.accuracy is not None and caps.accuracy.reading_pct == 2.0
    assert src.sample_interval_s == pytest.approx(0.001)


def test_optional_commands_are_sent_where_asked():
    script = setup_script(freq="50k", output="current", fmt="bin_hexa")
    script.insert(7, (b"eventsrc d7 fal\r\n", ack("eventsrc d7 fal")))
    script.insert(9, (b"funcmode high\r\n", ack("funcmode high")))
    script[5] = (b"trigdelay 250m\r\n", ack("trigdelay 250m"))
    script[6] = (b"trigsrc d7\r\n", ack("trigsrc d7"))
    src = opened(script + teardown_script(), frequency_hz=50000, output="current", format="bin_hexa", events="d7_falling", function_mode="high", trigger="d7", trigger_delay_ms=250)
    src.close()
    src.assert_done()


def test_an_error_reply_names_the_command_and_the_boards_words():
    script = setup_script()[:10]
    script.append((b"freq 1k\r\n", b"\r\nPowerShield > error freq 1k\r\n\r\nError detail: argument out of list\r\n"))
    src = ScriptedLpm01a(ScriptedSerial(script))
    with pytest.raises(SourceError) as err:
        src.open()
    assert "'freq 1k'" in str(err.value) and "argument out of list" in str(err.value)
    assert src.fake.closed  # nothing more is sent after the refusal
    src.assert_done()


def test_a_single_line_error_is_enough():
    script = setup_script()[:2] + [(b"version\r\n", b"\r\nPowerShield > Error: board busy\r\n")]
    src = ScriptedLpm01a(ScriptedSerial(script), command_timeout_s=0.3)
    with pytest.raises(SourceError, match=r"refused 'version': Error: board busy"):
        src.open()
    src.assert_done()


def test_silence_is_a_timeout_naming_the_command():
    src = ScriptedLpm01a(ScriptedSerial([(b"htc\r\n", TIMEOUT)]), command_timeout_s=0.2)
    with pytest.raises(SourceError, match=r"no acknowledgement for 'htc' within 0.2 s"):
        src.open()
    src.assert_done()


def test_an_ack_for_another_command_is_refused():
    src = ScriptedLpm01a(ScriptedSerial([(b"htc\r\n", ack("hrc"))]))
    with pytest.raises(SourceError, match=r"sent 'htc' but the board acknowledged 'hrc'"):
        src.open()
    src.assert_done()


def test_identify_before_open_is_an_error():
    with pytest.raises(SourceError, match="before open"):
        ScriptedLpm01a(ScriptedSerial([])).identify()


def test_a_board_left_streaming_is_stopped_before_the_setup():
    port = ScriptedSerial([(b"stop\r\n", COMPLETED)] + setup_script() + teardown_script(), stream=b"1500-08\r\n" * 20)
    src = ScriptedLpm01a(port)
    src.open()
    assert port.transcript.received[:2] == [b"stop\r\n", b"htc\r\n"]
    src.close()
    src.assert_done()


def test_teardown_without_completion_still_powers_off_and_releases():
    script = setup_script() + [(b"stop\r\n", TIMEOUT), (b"pwr off\r\n", ack("pwr off")), (b"hrc\r\n", ack("hrc"))]
    src = opened(script, stop_timeout_s=0.2)
    with pytest.raises(SourceError, match="Acquisition completed"):
        src.close()
    assert src.fake.closed
    src.assert_done()


def test_damaged_lines_are_counted_and_never_averaged():
    stream = (
        b"1500-08\r\n"
        b"15x0-08\r\n"  # a damaged reading keeps its place as an ERROR sample
        b"1500-0\r\n"  # truncated
        b"\xff\xfe\x01\r\n"  # binary noise: not a reading, only a protocol error
        b"hello there, not a sample\r\n"
        b"1500-08 1500-08\r\n"  # two on one line
        b"1500-081500-08\r\n"  # a lost line end
        b"1500-08\r\n"
    )
    src = opened(setup_script(extra_after_start=stream) + teardown_script())
    batch = read_all(src)
    ok = batch[batch["status"] == OK]
    assert len(ok) == 6 and np.all(ok["watts"] == pytest.approx(0.015))
    assert np.count_nonzero(batch["status"] == ERROR) == 2
    assert np.isnan(batch["watts"][batch["status"] != OK]).all()
    assert src.counters["protocol_errors"] == 4
    assert "hello there, not a sample" in src.unexpected_lines
    src.close()
    src.assert_done()


def test_timestamp_lines_reveal_dropped_samples_as_gaps():
    # 1000 samples should precede the 1 s TimeStamp; 900 arrive: 100 GAP rows keep the timing.
    stream = b"1500-08\r\n" * 900 + b"TimeStamp: 001s 000ms, buff 42%\r\n\x00" + b"1500-08\r\n" * 10
    src = opened(setup_script(extra_after_start=stream) + teardown_script())
    batch = read_all(src, 0.5)
    assert len(batch) == 1010
    gap = batch["status"] == GAP
    assert np.count_nonzero(gap) == 100 and np.flatnonzero(gap)[0] == 900
    assert src.counters["dropped"] == 100 and src.counters["max_buffer_pct"] == 42
    # the sample after the TimeStamp is sample 1000: read at 1.001 s
    assert batch["mono_ns"][1000] - batch["mono_ns"][0] == 1000 * 1_000_000
    assert [e.kind for e in src.take_events()] == ["drop"]
    src.close()
    src.assert_done()


def test_events_and_board_errors_become_a_side_channel():
    stream = b"1500-08\r\nevent 01 fal\r\n1500-08\r\nevent 02 ris\r\n1500-08\r\n"
    src = opened(setup_script(extra_after_start=stream) + teardown_script())
    batch = read_all(src)
    assert len(batch) == 3
    events = src.take_events()
    assert [(e.kind, e.text, e.sample_index) for e in events] == [("event", "event 01 fal", 1), ("event", "event 02 ris", 2)]
    assert events[0].mono_ns == batch["mono_ns"][0]  # at the sample it followed
    src.close()
    src.assert_done()


def test_a_board_that_ends_the_acquisition_delivers_its_samples_then_fails():
    stream = b"1500-08\r\n1500-08\r\nPowerShield > Error: buffer overflow\r\n" + COMPLETED
    script = setup_script(extra_after_start=stream) + [(b"pwr off\r\n", ack("pwr off")), (b"hrc\r\n", ack("hrc"))]
    src = opened(script)
    assert len(read_all(src)) == 2
    with pytest.raises(SourceError, match=r"ended the acquisition.*buffer overflow"):
        src.read(0.2)
    src.close()  # no stop: the board already stopped
    src.assert_done()


def test_binary_stream_with_timestamps():
    words = bytes.fromhex("52A0") * 5  # 640.9 uA each ("52A0 <=> (2A0)16 x 16^-5")
    frame0 = bytes.fromhex("F0F3") + (0).to_bytes(4, "big") + b"\x00\xff\xff"
    stream = frame0 + words
    script = setup_script(freq="50k", output="current", fmt="bin_hexa", extra_after_start=stream)
    script += [(b"stop\r\n", bytes.fromhex("F0F4FFFF") + b"\r\nPowerShield > Acquisition completed\r\n"), (b"pwr off\r\n", ack("pwr off")), (b"hrc\r\n", ack("hrc"))]
    src = opened(script, frequency_hz=50000, output="current", format="bin_hexa")
    batch = read_all(src)
    assert len(batch) == 5
    assert batch["amps"] == pytest.approx([0x2A0 / 16**5] * 5)
    assert np.all(np.diff(batch["mono_ns"]) == 20_000)
    src.close()
    src.assert_done()


def test_silence_while_acquiring_raises_instead_of_hanging():
    src = opened(setup_script() + [(b"stop\r\n", TIMEOUT), (b"pwr off\r\n", TIMEOUT), (b"hrc\r\n", TIMEOUT)], stall_timeout_s=0.3, command_timeout_s=0.3)
    assert src.read(0.1) == []
    with pytest.raises(SourceError, match="sent nothing for"):
        for _ in range(20):
            src.read(0.1)
    with pytest.raises(SourceError):
        src.close()
    src.assert_done()


def test_a_version_on_the_line_after_its_ack_is_taken_too():
    script = setup_script()
    script[2] = (b"version\r\n", ack("version") + b"PowerShield > 1.0.6\r\n")
    src = opened(script + teardown_script())
    assert src.identify().firmware == "1.0.6"
    src.close()
    src.assert_done()
