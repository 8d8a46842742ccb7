"""Transcript tests of the `ptd` driver: every command it sends and every reply, in order,
against a scripted peer on loopback TCP (labconsole.testing.tcp); anything left over fails."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from labconsole.instruments.ptd import (
    WattsReply,
    format_power_time,
    parse_identify,
    parse_power_time,
    parse_ranges,
    parse_sample_line,
    parse_uncertainty,
    parse_watts,
)
from labconsole.samples.batch import ERROR, NO_DATA, OK
from labconsole.sources.base import SourceError
from labconsole.sources.ptd import PtdOptions, PtdSource, probe
from labconsole.testing.tcp import ScriptedServer
from labconsole.testing.transcript import CLOSE, GARBAGE, TIMEOUT

# A real Identify reply (mlcommons/inference_results_v3.1, gloria_highend server.json), with
# an OS field that holds a comma, as uname strings can.
IDENTIFY = (
    "YokogawaWT310E,1000,1,1,1,1,0,1,1,version=1.10.0-ed9a21d2-20220817,"
    "OS=Linux 5.4.0-136-generic #153-Ubuntu SMP,x86_64,mode=power,1,1,1,0,0,no_cal_date,YOKOGAWA;WT310E;C2YK12023V;F1.04"
)
IDENTIFY_3CH = IDENTIFY.replace("YokogawaWT310E,", "YokogawaWT330_multichannel,").replace("mode=power,1,1,1,", "mode=power,1,1,3,")
RANGES_FIXED = "Ranges,0,0.500000,0,300.000000"
NO_MEAS = "Error: no measurement to stop"
STOPPING = "Stopping untimed measurement"


def started(ms: int = 50) -> str:
    return f"Starting untimed measurement, maximum 500000 samples at {ms}ms with 0 rampup samples"


def open_script(identify: str = IDENTIFY, ranges: str = RANGES_FIXED, mark: str = "t_standby", stop: str = NO_MEAS) -> list:
    return [("Hello", "Hello, PTDaemon here!"), ("Identify", identify), ("RR", ranges), ("Stop", stop), (f"Go,50,0,{mark}", started())]


def close_script(v: str = "300.000000", a: str = "0.500000") -> list:
    return [("Stop", STOPPING), (f"SR,V,{v}", "Range V changed"), (f"SR,A,{a}", "Range A changed")]


def make(peer: ScriptedServer, **opts) -> PtdSource:
    o = {"port": peer.port, "mark_prefix": "t", "timeout_s": 1.0, "connect_timeout_s": 2.0, **opts}
    return PtdSource("wall", PtdOptions(**o), sample_interval_s=0.05)


@pytest.fixture
def peers():
    made: list[ScriptedServer] = []

    def factory(*connections):
        p = ScriptedServer(*connections)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.stop()


def read_until(src: PtdSource, n: int, limit_s: float = 10.0):
    """Read until n samples per channel arrived (or fail after limit_s: a hang detector)."""
    got: dict[str, list] = {}
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for b in src.read(0.2):
            got.setdefault(b.channel, []).append(b.samples)
        if got and all(sum(len(x) for x in v) >= n for v in got.values()):
            return {k: np.concatenate(v) for k, v in got.items()}
    raise AssertionError(f"fewer than {n} samples within {limit_s} s: {got}")


# --- pure parsing -------------------------------------------------------------------------------


def test_parse_identify_real_replies():
    i = parse_identify(IDENTIFY)
    assert (i.model, i.interval_ms, i.version, i.crc, i.build_date) == ("YokogawaWT310E", 1000, "1.10.0", "ed9a21d2", "20220817")
    assert i.os == "Linux 5.4.0-136-generic #153-Ubuntu SMP,x86_64"
    assert (i.mode, i.accuracy_estimation, i.range_setting, i.channels) == ("power", True, True, 1)
    assert i.calibration_date is None
    assert (i.vendor, i.meter_model, i.serial, i.firmware) == ("YOKOGAWA", "WT310E", "C2YK12023V", "F1.04")
    assert i.can == {"watts": True, "volts": True, "amps": True, "pf": True, "energy": False, "frequency": True}
    assert i.accepted_by_spec and not i.emulator
    dummy = parse_identify("Dummy,1000,1,1,1,1,1,1,0,version=9.9.9-1fee1ded-20161226,OS=Linux,mode=power,1,1,1,0,0,no_cal_date,SPECpower's Dummy Analyzer v1.0")
    assert dummy.meter_idn == "SPECpower's Dummy Analyzer v1.0" and dummy.serial == "" and not dummy.accepted_by_spec
    temp = parse_identify("PCsensor USB9097+DS18B20,5000,1,0,0,0,0,0,1,version=1.9.1-a2d19f26-20190717,OS=Windows 8 / Server 2012,mode=temperature,0,0,1,0,0,no_cal_date,na")
    assert temp.mode == "temperature" and temp.interval_ms == 5000
    cal = parse_identify(IDENTIFY.replace("no_cal_date", "2025-03-01"))
    assert cal.calibration_date == "2025-03-01"
    for bad in ("Hello, PTDaemon here!", "YokogawaWT310E,x,1,1,1,1,0,1,1,version=1,OS=a,mode=power,1,1,1,0,0,n,i", IDENTIFY.replace("version=", "v=")):
        with pytest.raises(ValueError):
            parse_identify(bad)


def test_parse_replies_and_lines():
    assert parse_ranges("Ranges,0,0.500000,0,300.000000")[0].state().as_dict() == {"volts": 300.0, "amps": 0.5, "auto_v": False, "auto_a": False}
    auto = parse_ranges("Ranges,-1,-1.000000,1,150.000000")[0].state()
    assert auto.auto_a and auto.auto_v and math.isnan(auto.amps) and auto.volts == 150.0
    assert len(parse_ranges("Ranges,-1,-1.0,-1,-1.0,0,1.0,0,300.0,0,2.0,0,300.0")) == 3
    for bad in ("Ranges,0,0.5,0", "Range,0,0.5,0,300", "Ranges,0,x,0,300"):
        with pytest.raises(ValueError):
            parse_ranges(bad)
    w = parse_watts("Watts,13.668084,9.995000,14.557000,751,14,737")
    assert w == WattsReply(13.668084, 9.995, 14.557, 751, 14, 737)
    assert w.summary_dict() == {"avg_w": 13.668084, "min_w": 9.995, "max_w": 14.557, "samples": 751, "errors": 14, "valid": 737}
    u = parse_uncertainty("Uncertainty,-1.0,10000000.000000,0.000000,751,0,0,751").summary_dict()
    assert u["avg"] == -1.0 and u["unknown"] == 751
    # The log-file form (Mark, ChN labels) from power-dev's unit tests parses too.
    t, groups = parse_sample_line(
        "Time,11-13-2020 22:38:59.240,Watts,272.930000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,notset,"
        "Ch1,Watts,91.060000,Volts,120.950000,Amps,0.832100,PF,0.938900,Ch2,Watts,90.970000,Volts,120.830000,Amps,0.802000,PF,0.938800"
    )
    assert format_power_time(t) == "11-13-2020 22:38:59.240" and len(groups) == 3 and groups[2] == (90.97, 120.83, 0.802, 0.9388)
    assert parse_power_time("07-06-2023 00:24:44.601") == 1688603084601000000  # month first, UTC
    for bad in ("Time,07-06-2023 00:24:44.601,Watts,1.0,Volts,2.0,Amps", "Time,13-06-2023 00:24:44.601,Watts,1,Volts,2,Amps,3,PF,1",
                "Time,07-06-2023 00:24:44.601,Watts,nan,Volts,2,Amps,3,PF,1", "Foo,07-06-2023 00:24:44.601,Watts,1,Volts,2,Amps,3,PF,1"):
        with pytest.raises(ValueError):
            parse_sample_line(bad)


# --- transcripts ----------------------------------------------------------------------------------


def test_open_identify_capabilities_close(peers):
    peer = peers(open_script() + close_script())
    src = make(peer)
    src.open()
    ident = src.identify()
    assert (ident.driver, ident.model, ident.vendor, ident.serial, ident.firmware) == ("ptd", "YokogawaWT310E", "YOKOGAWA", "C2YK12023V", "F1.04")
    assert ident.address == f"ptd://127.0.0.1:{peer.port}"
    assert ident.extra["ptd_version"] == "1.10.0" and ident.extra["calibration_date"] is None and ident.extra["emulator"] is False
    caps = src.capabilities()
    assert caps.channels == ("main",) and caps.ranges_rounded_by_meter and caps.has_ranges and caps.auto_range
    assert caps.voltage_ranges[-1] == 600.0 and caps.accuracy is not None and caps.update_periods_s == (0.05,)
    src.close()
    peer.assert_done()


def test_rl_fallback_to_plain_rl_and_invalid_samples(peers):
    lines = [
        "Last 3 samples",
        "Time,07-06-2023 00:12:00.447,Watts,10.596000,Volts,119.060000,Amps,0.105920,PF,0.840200",
        "Time,07-06-2023 00:12:01.448,Watts,-1.000000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000",
        "Time,07-06-2023 00:12:02.447,Watts,10.322000,Volts,119.430000,Amps,0.103560,PF,0.834600",
    ]
    peer = peers(open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", lines), ("RL", "Last 0 samples")] + close_script())
    src = make(peer)
    src.open()
    s = read_until(src, 3)["main"]
    assert list(s["status"]) == [OK, NO_DATA, OK]
    assert s["watts"][0] == 10.596 and s["volts"][2] == 119.43 and s["amps"][0] == 0.10592 and s["pf"][2] == 0.8346
    assert math.isnan(s["watts"][1])  # -1 is never a reading
    assert int(s["wall_ns"][1] - s["wall_ns"][0]) == 1_001_000_000 and int(s["mono_ns"][2] - s["mono_ns"][1]) == 999_000_000
    # Fixed ranges (RR said 300 V / 0.5 A): each sample carries the WT310E's uncertainty.
    assert s["range_v"][0] == 300.0 and s["range_a"][0] == 0.5
    assert s["uncertainty_w"][0] == pytest.approx(10.596 * 0.001 + 300 * 0.5 * 0.0005)
    # PTD's clock is years behind ours here: the offset says so, the samples are mapped to now.
    off = src.clock_offset_s()
    assert off == pytest.approx((parse_power_time("07-06-2023 00:12:02.447") - time.time_ns()) / 1e9, abs=30)
    assert abs(s["wall_ns"][2] - time.time_ns()) < 30e9
    assert src.read(0.5) == []  # the remembered command is plain RL: "Last 0 samples"
    src.close()
    peer.assert_done()
    assert src.counters["invalid"] == 1


def test_rl_fallback_to_dc_rl(peers):
    line = "Time,07-06-2023 00:12:00.447,Watts,5.000000,Volts,12.000000,Amps,0.416667,PF,1.000000"
    peer = peers(open_script() + [("RL,*,*", "Unknown command"), ("DC-RL", ["Last 1 sample", line])] + close_script())
    src = make(peer)
    src.open()
    assert read_until(src, 1)["main"]["watts"][0] == 5.0
    src.close()
    peer.assert_done()


def test_multichannel_rl_all_channels(peers):
    sum_group = "Watts,272.930000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000"
    ch = ["Watts,91.060000,Volts,120.950000,Amps,0.832100,PF,0.938900", "Watts,90.970000,Volts,120.830000,Amps,0.802000,PF,0.938800",
          "Watts,90.900000,Volts,120.750000,Amps,0.802000,PF,0.938700"]
    line = "Time,11-13-2020 22:38:59.240," + ",".join([sum_group] + ch)
    ranges = "Ranges,-1,-1.000000,-1,-1.000000,0,1.000000,0,150.000000,0,1.000000,0,150.000000,0,1.000000,0,150.000000"
    peer = peers(open_script(IDENTIFY_3CH, ranges) + [("RL,*,*", ["Last 1 sample", line])] + close_script("150.000000", "1.000000"))
    src = make(peer)
    src.open()
    assert src.capabilities().channels == ("ch1", "ch2", "ch3")
    assert src._ranges.amps == 1.0  # from the RR at open: the first real channel's group
    got = read_until(src, 1)
    assert sorted(got) == ["ch1", "ch2", "ch3"] and got["ch2"]["watts"][0] == 90.97 and got["ch3"]["volts"][0] == 120.75
    src.close()
    peer.assert_done()


def test_multichannel_selected_channels(peers):
    line = "Time,11-13-2020 22:38:59.240,Watts,30.000000,Volts,-1.000000,Amps,-1.000000,PF,-1.000000," + ",".join(
        f"Watts,{w:.6f},Volts,120.000000,Amps,0.100000,PF,0.900000" for w in (10, 20)
    )
    ranges = "Ranges,-1,-1.000000,-1,-1.000000,0,1.000000,0,150.000000,0,2.000000,0,300.000000"
    peer = peers(open_script(IDENTIFY_3CH.replace("mode=power,1,1,3,", "mode=power,1,1,2,"), ranges) + [("RL,*,*", ["Last 1 sample", line])] + close_script("300.000000", "2.000000"))
    src = make(peer, channels=[2])
    src.open()
    assert src.capabilities().channels == ("ch2",)
    assert src._ranges.volts == 300.0  # RR's group for channel 2 (the sum comes first)
    got = read_until(src, 1)
    assert list(got) == ["ch2"] and got["ch2"]["watts"][0] == 20.0
    src.close()
    peer.assert_done()


def test_set_ranges_auto_and_mlperf_values_read_back(peers):
    script = open_script() + [
        ("SR,V,Auto", "Range V changed"), ("SR,A,Auto", "Range A changed"), ("RR", "Ranges,1,20.000000,1,300.000000"),
        # MLPerf's raw testing values; PTD rounds up, RR shows what it chose (observed pair).
        ("SR,V,119.470000", "Range V changed"), ("SR,A,0.152658", "Range A changed"), ("RR", "Ranges,0,0.200000,0,150.000000"),
        ("SR,A,99.000000", "Error in parameter"),
    ] + close_script()
    peer = peers(script)
    src = make(peer)
    src.open()
    rs = src.set_ranges(auto=True)
    assert rs.auto_v and rs.auto_a
    rs = src.set_ranges(volts=119.47, amps=0.13878 * 1.1, auto=False)
    assert rs.as_dict() == {"volts": 150.0, "amps": 0.2, "auto_v": False, "auto_a": False}
    with pytest.raises(SourceError, match="refused the current range 99.000000: 'Error in parameter'"):
        src.set_ranges(amps=99)
    src.close()
    peer.assert_done()


def test_phases_go_with_marks_and_summaries(peers):
    tail = "Time,07-06-2023 00:12:00.447,Watts,10.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"
    script = open_script() + [
        ("Stop", STOPPING), ("RL,*,*", "Invalid number of parameters"), ("RL", ["Last 1 sample", tail]), ("Go,50,0,t_testing", started()),
        ("Watts", "Watts,23.491000,8.410000,24.560000,691,0,691"), ("Uncertainty", "Uncertainty,0.006265,0.006105,0.009201,691,0,691,0"),
        ("Stop", STOPPING), ("RL", ["Last 1 sample", tail.replace("00:12:00.447,Watts,10.", "00:12:01.447,Watts,11.")]),
        ("Uncertainty", "Uncertainty,0.006264,0.006105,0.009201,692,0,692,0"), ("Watts", "Watts,23.492803,8.410000,24.560000,692,0,692"),
        ("Go,50,0,t_standby", started()),
    ] + close_script()
    peer = peers(script)
    src = make(peer)
    src.open()
    reader_got = []
    stop = threading.Event()

    def reader():  # the recorder's acquisition thread, in miniature
        while not stop.is_set():
            try:
                reader_got.extend(src.read(0.05))
            except SourceError:
                return

    # No polls while the phase hooks talk: keep the poll time far away.
    src._next_poll = time.monotonic() + 3600
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    src.begin_phase("testing")
    deadline = time.monotonic() + 5
    while not reader_got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [b.samples["watts"][0] for b in reader_got] == [10.0]  # the drained tail was delivered before Go returned
    summary = src.end_phase("testing")
    stop.set()
    t.join(5)
    assert summary["mark"] == "t_testing"
    assert summary["watts"] == {"avg_w": 23.492803, "min_w": 8.41, "max_w": 24.56, "samples": 692, "errors": 0, "valid": 692}
    assert summary["uncertainty"]["avg"] == 0.006264 and summary["uncertainty_reply"].startswith("Uncertainty,0.006264")
    # MLPerf's order: asked while running, then again after Stop; the phase's figures are the latter.
    assert summary["watts_reply_running"].endswith(",691,0,691") and summary["uncertainty_reply_running"].startswith("Uncertainty,0.006265")
    assert [float(b.samples["watts"][0]) for b in reader_got] == [10.0, 11.0]  # the tail drained at Stop reached the phase
    assert "PTD Watts avg 23.493 W" in summary["message"] and "uncertainty avg 0.63 %" in summary["message"]
    src.close()
    peer.assert_done()


# --- refusals, garbage, hangs --------------------------------------------------------------------


def test_not_a_ptdaemon(peers):
    peer = peers([("Hello", "SSH-2.0-OpenSSH_9.6")])
    src = make(peer)
    with pytest.raises(SourceError, match="is not a PTDaemon"):
        src.open()
    peer.assert_done()


def test_temperature_daemon_refused(peers):
    temp = "PCsensor USB9097+DS18B20,5000,1,0,0,0,0,0,1,version=1.9.1-a2d19f26-20190717,OS=Windows,mode=temperature,0,0,1,0,0,no_cal_date,na"
    peer = peers([("Hello", "Hello, PTDaemon here!"), ("Identify", temp)])
    with pytest.raises(SourceError, match="serves a temperature sensor"):
        make(peer).open()
    peer.assert_done()


def test_go_refused(peers):
    peer = peers(open_script()[:-1] + [("Go,50,0,t_standby", "Error: analyzer not ready")])
    with pytest.raises(SourceError, match="refused to start a measurement.*Error: analyzer not ready"):
        make(peer).open()
    peer.assert_done()


def test_identify_garbage(peers):
    peer = peers([("Hello", "Hello, PTDaemon here!"), ("Identify", "Yokogawa,,,")])
    with pytest.raises(SourceError, match="cannot read PTDaemon's identity"):
        make(peer).open()
    peer.assert_done()


def test_garbage_sample_line_is_an_invalid_sample(peers):
    lines = ["Last 3 samples", "Time,07-06-2023 00:12:00.447,Watts,10.0,Volts,230.0,Amps,0.05,PF,0.87", "Time,07-06-2023 00:12:01.4#7,W@tts,zz",
             "Time,07-06-2023 00:12:02.447,Watts,11.0,Volts,230.0,Amps,0.05,PF,0.87"]
    peer = peers(open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", lines)] + close_script())
    src = make(peer)
    src.open()
    s = read_until(src, 3)["main"]
    assert list(s["status"]) == [OK, ERROR, OK] and list(np.diff(s["wall_ns"]) > 0) == [True, True]
    assert src.counters["garbage_lines"] == 1
    src.close()
    peer.assert_done()


def test_garbage_header_breaks_the_connection(peers):
    peer = peers(open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", "xyzzy 42")])
    src = make(peer)
    src.open()
    with pytest.raises(SourceError, match="unexpected reply to RL: 'xyzzy 42'"):
        read_until(src, 1)
    with pytest.raises(SourceError, match="not connected"):
        src.read(0.2)
    src.close()  # nothing is sent on a broken connection
    peer.assert_done()


def test_non_ascii_bytes(peers):
    peer = peers(open_script() + [("RL,*,*", GARBAGE)])
    src = make(peer)
    src.open()
    with pytest.raises(SourceError, match="garbage instead of reply to 'RL,\\*,\\*'"):
        read_until(src, 1)
    src.close()
    peer.assert_done()


def test_truncated_reply_keeps_what_arrived_then_reconnects(peers):
    first = "Time,07-06-2023 00:12:00.447,Watts,10.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"
    half = b"Last 3 samples\r\n" + first.encode() + b"\r\nTime,07-06-2023 00:12:01.447,Watts,11.0"
    drained = "Time,07-06-2023 00:12:01.447,Watts,11.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"
    conn1 = open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", half)]
    # The reconnect: the measurement still runs, its unread samples are ours, our mark stays.
    conn2 = open_script(stop=STOPPING)[:-1] + [("RL", ["Last 1 sample", drained]), ("Go,50,0,t_standby", started())] + close_script()
    peer = peers(conn1, conn2)
    src = make(peer, timeout_s=0.5)
    src.open()
    with pytest.raises(SourceError, match="sample line 2 of 3"):
        read_until(src, 3)
    kept = src.read(0.1)  # the complete line is not lost
    assert [float(b.samples["watts"][0]) for b in kept] == [10.0]
    src.close()
    src.open()  # what the recorder does after a read error
    assert [float(b.samples["watts"][0]) for b in src.read(0.1)] == [11.0]
    assert src.counters["reconnects"] == 1
    src.close()
    peer.assert_done()


def test_unsolicited_line_is_a_protocol_error(peers):
    peer = peers(open_script()[:-1] + [("Go,50,0,t_standby", [started(), "Time,07-06-2023 00:12:00.447,Watts,1,Volts,1,Amps,1,PF,1"])])
    src = make(peer)
    src.open()
    with pytest.raises(SourceError, match="unexpected data before 'RL,\\*,\\*'"):
        src.read(1.0)
    src.close()
    peer.assert_done()


def test_daemon_that_stops_answering_times_out(peers):
    peer = peers(open_script() + [("RL,*,*", TIMEOUT)])
    src = make(peer, timeout_s=0.5)
    src.open()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no reply to 'RL,\\*,\\*' within"):
        read_until(src, 1)
    assert time.monotonic() - t0 < 30  # a hang detector, not a speed target
    src.close()
    peer.assert_done()


def test_daemon_that_drops_the_connection(peers):
    peer = peers(open_script() + [("RL,*,*", CLOSE)])
    src = make(peer)
    src.open()
    with pytest.raises(SourceError, match="closed the connection"):
        read_until(src, 1)
    src.close()
    peer.assert_done()


def test_clock_offset_of_a_remote_host(peers):
    ahead_ns = 2_500_000_000  # the PTD host's clock runs 2.5 s ahead of ours

    def rl():
        t = time.time_ns() + ahead_ns - 20_000_000  # a sample taken 20 ms ago
        return ["Last 1 sample", f"Time,{format_power_time(t)},Watts,10.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"]

    peer = peers(open_script() + [("RL,*,*", "Invalid number of parameters")] + [("RL", rl)] * 5 + close_script())
    src = make(peer)
    src.open()
    got = read_until(src, 5)["main"]
    off = src.clock_offset_s()
    assert 2.2 < off < 2.5  # a lower bound: the sample was 20 ms old, plus the trip (slow on a loaded machine)
    assert abs(int(got["wall_ns"][-1]) - time.time_ns()) < 1e9  # mapped onto our clock
    src.close()
    peer.assert_done()


def test_probe_for_discovery(peers):
    peer = peers([("Hello", "Hello, PTDaemon here!"), ("Identify", IDENTIFY)])
    d = probe(peer.address, timeout_s=2)
    peer.assert_done()
    assert (d.driver, d.address, d.model, d.serial, d.status) == ("ptd", peer.address, "YokogawaWT310E", "C2YK12023V", "available")
    assert d.profile_snippet["driver"] == "ptd" and d.profile_snippet["options"] == {"host": "127.0.0.1", "port": peer.port}
    silent = peers([("Hello", TIMEOUT)])
    d = PtdSource.discover({"ptd": [silent.address], "timeout_s": 0.5})[0]
    assert d.status == "busy" and "one client at a time" in d.detail
    other = peers([("Hello", "220 smtp ready")])
    d = probe(other.address, 2)
    assert d.status == "error" and "not a PTDaemon" in d.detail
    port = other.port
    other.assert_done()
    silent.stop()
    assert probe(f"127.0.0.1:{port}", 1).status == "error"  # nothing listens any more
    assert probe("no-port-here:xx").status == "error"


def test_nothing_unread_is_not_an_error_and_ptd_timestamps_kept_as_they_are(peers):
    line = "Time,07-06-2023 00:12:00.447,Watts,10.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"
    script = open_script() + [
        ("RL,*,*", "Invalid number of parameters"), ("RL", "No unread samples"),
        ("RL", "Error: insufficient unread samples"), ("RL", ["Last 1 sample", line]),
    ] + close_script()
    peer = peers(script)
    src = make(peer, timestamps="ptd")
    src.open()
    assert src.read(0.5) == [] and src.read(0.5) == []
    s = read_until(src, 1)["main"]
    assert int(s["wall_ns"][0]) == parse_power_time("07-06-2023 00:12:00.447")  # MLPerf's way: PTD's clock as is
    assert src.clock_offset_s() < -1e8  # ... while the offset still says how far off it is
    src.close()
    peer.assert_done()


def test_phase_summary_warns_about_a_clock_offset_over_400_ms(peers):
    def rl():
        t = time.time_ns() - 900_000_000  # the PTD host is 0.9 s behind
        return ["Last 1 sample", f"Time,{format_power_time(t)},Watts,10.000000,Volts,230.000000,Amps,0.050000,PF,0.870000"]

    script = open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", rl),
                              ("Watts", "Watts,10.000000,10.000000,10.000000,1,0,1"), ("Uncertainty", "Uncertainty,0.002000,0.002000,0.002000,1,0,1,0"),
                              ("Stop", STOPPING), ("RL", "Last 0 samples"),
                              ("Uncertainty", "Uncertainty,0.002000,0.002000,0.002000,1,0,1,0"), ("Watts", "Watts,10.000000,10.000000,10.000000,1,0,1"),
                              ("Go,50,0,t_standby", started())] + close_script()
    peer = peers(script)
    src = make(peer)
    src.open()
    read_until(src, 1)
    src._next_poll = time.monotonic() + 3600
    summary = src.end_phase("testing")
    assert summary["warning"] and -1.5 < summary["clock_offset_s"] < -0.9
    assert "above the 400 ms MLPerf allows" in summary["message"]
    src.close()
    peer.assert_done()


DUMMY = "Dummy,1000,1,1,1,1,1,1,0,version=9.9.9-1fee1ded-20161226,OS=Linux,mode=power,1,1,1,0,0,no_cal_date,SPECpower's Dummy Analyzer v1.0"


def _procedure_with(src: PtdSource, max_v: float, max_a: float):
    from conftest import ROOT
    from labconsole.events import EventBus
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile
    from labconsole.recorder import SegmentStats

    class Stats:
        def stats_for(self, phase):
            return {("wall", "main"): SegmentStats(samples=10, max_v=max_v, max_a=max_a)} if phase == "ranging" else {}

    plan = InferencePlan()
    engine = RunEngine(load_profile(ROOT / "profiles" / "emu-ptd.yaml"), plan, bus=EventBus())
    engine.recorder = Stats()
    engine.sources = {"wall": src}
    seen = []
    engine.bus.add_sink(seen.append)
    return plan, engine, seen


def test_procedure_sends_mlperf_raw_ranges_to_a_meter_without_a_range_table(peers):
    script = open_script(DUMMY) + [
        ("SR,V,119.470000", "Range V changed"), ("SR,A,0.152658", "Range A changed"), ("RR", "Ranges,0,0.200000,0,150.000000"),
    ] + close_script()
    peer = peers(script)
    src = make(peer)
    src.open()
    caps = src.capabilities()
    assert caps.voltage_ranges == () and caps.ranges_rounded_by_meter and caps.accuracy is None
    plan, engine, seen = _procedure_with(src, 119.47, 0.13878)
    plan.choose_fixed_ranges(engine)
    chosen = plan.ranges_chosen["wall"]
    assert chosen["requested"] == {"volts": 119.47, "amps": pytest.approx(0.152658)}
    assert chosen["read_back"] == {"volts": 150.0, "amps": 0.2, "auto_v": False, "auto_a": False}
    assert any(e.kind == "result" and "fixed ranges 150 V / 0.2 A" in e.message for e in seen)
    src.close()
    peer.assert_done()


def test_procedure_fails_when_ptd_picks_another_range_than_the_table(peers):
    script = open_script() + [
        ("SR,V,231.000000", "Range V changed"), ("SR,A,0.660000", "Range A changed"), ("RR", "Ranges,0,5.000000,0,300.000000"),
    ] + close_script()
    peer = peers(script)
    src = make(peer)
    src.open()
    plan, engine, seen = _procedure_with(src, 231.0, 0.6)
    with pytest.raises(Exception, match="did not accept the fixed ranges"):
        plan.choose_fixed_ranges(engine)
    assert any(e.kind == "error" and "reads back 300 V / 5 A" in e.message for e in seen)
    src.close()
    peer.assert_done()


def test_error_reply_to_rl_drops_the_connection_and_reconnect_changes_no_range(peers):
    conn1 = open_script() + [("RL,*,*", "Invalid number of parameters"), ("RL", "Error: measurement aborted by the analyzer")]
    conn2 = open_script(stop=NO_MEAS) + close_script()
    peer = peers(conn1, conn2)
    src = make(peer)
    src.open()
    with pytest.raises(SourceError, match="refused RL: 'Error: measurement aborted by the analyzer'"):
        read_until(src, 1)
    src.close()  # what the recorder does: nothing may be sent (no Stop, no range restore) ...
    src.open()  # ... and a fresh measurement starts
    src.close()
    peer.assert_done()
