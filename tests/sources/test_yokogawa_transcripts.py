"""The `yokogawa` driver, command by command: every exchange asserted, leftovers fail."""

from __future__ import annotations

import math

import pytest

from labconsole.samples.batch import ERROR, NO_DATA, OK, OVERRANGE
from labconsole.sources.base import SourceError
from labconsole.sources.yokogawa import MeterError, YokogawaSource, parse_reading
from labconsole.testing.transcript import TIMEOUT
from labconsole.testing.visa import ScriptedResource, expected_protocol

OK_ERR = '0,"No error"'
IDN_WT310E = "YOKOGAWA,WT310E,C2PH13047V,F1.04"


def setter(cmd: str, reply: str = OK_ERR) -> tuple[str, str]:
    """A setting travels with its error-queue check as one compound message."""
    return (f"{cmd};:STATus:ERRor?", reply)


def wt300_open(
    idn: str = IDN_WT310E,
    rate: str = "100MS",
    rate_reply: str = "100.0E-03",
    items: tuple[str, ...] = ("U,1", "I,1", "P,1", "LAMBda,1", "URANge,1", "IRANge,1"),
    ranges: tuple[str, str, str, str] = ("600.0E+00", "20.00E+00", "0", "0"),
    integration: list | None = None,
    crest: str = "3",
) -> list:
    """What open() says to a WT300-dialect meter (WT310E, WT33x)."""
    ex = [
        ("*CLS;*IDN?", idn),
        setter(":COMMunicate:REMote ON"),
        setter(":COMMunicate:HEADer OFF"),
        setter(":COMMunicate:VERBose ON"),
        setter(":STATus:QMESsage ON"),
        setter(":NUMeric:FORMat ASCii"),
        (":INPut:CFACtor?", crest),
        setter(f":NUMeric:NORMal:NUMber {len(items)}"),
    ]
    ex += [setter(f":NUMeric:NORMal:ITEM{i} {item}") for i, item in enumerate(items, start=1)]
    ex += [setter(f":RATE {rate}"), (":RATE?", rate_reply), setter(":STATus:FILTer1 FALL")]
    ex += integration or []
    ex += [
        (":INPut:VOLTage:RANGe?", ranges[0]),
        (":INPut:CURRent:RANGe?", ranges[1]),
        (":INPut:VOLTage:AUTO?", ranges[2]),
        (":INPut:CURRent:AUTO?", ranges[3]),
        (":STATus:EESR?", "0"),
    ]
    return ex


def test_open_identifies_and_configures_a_wt310e():
    transcript = [
        ("*CLS;*IDN?", "YOKOGAWA,WT310E,C2PH13047V,F1.04"),
        (":COMMunicate:REMote ON;:STATus:ERRor?", '0,"No error"'),
        (":COMMunicate:HEADer OFF;:STATus:ERRor?", '0,"No error"'),
        (":COMMunicate:VERBose ON;:STATus:ERRor?", '0,"No error"'),
        (":STATus:QMESsage ON;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:FORMat ASCii;:STATus:ERRor?", '0,"No error"'),
        (":INPut:CFACtor?", "3"),
        (":NUMeric:NORMal:NUMber 6;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM1 U,1;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM2 I,1;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM3 P,1;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM4 LAMBda,1;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM5 URANge,1;:STATus:ERRor?", '0,"No error"'),
        (":NUMeric:NORMal:ITEM6 IRANge,1;:STATus:ERRor?", '0,"No error"'),
        (":RATE 1S;:STATus:ERRor?", '0,"No error"'),
        (":RATE?", "1.000E+00"),
        (":STATus:FILTer1 FALL;:STATus:ERRor?", '0,"No error"'),
        (":INPut:VOLTage:RANGe?", "300.0E+00"),
        (":INPut:CURRent:RANGe?", "1.000E+00"),
        (":INPut:VOLTage:AUTO?", "0"),
        (":INPut:CURRent:AUTO?", "1"),
        (":STATus:EESR?", "1"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=1.0) as src:
        src.open()
        ident = src.identify()
        rs = src._ranges  # what open() read back (the last four queries before the EESR)
    assert (ident.vendor, ident.model, ident.serial, ident.firmware) == ("YOKOGAWA", "WT310E", "C2PH13047V", "F1.04")
    assert ident.extra["ptd_device"] == 49 and ident.extra["emulated"] is False
    assert (rs.volts, rs.amps, rs.auto_v, rs.auto_a) == (300.0, 1.0, False, True)
    caps = src.capabilities()
    assert caps.channels == ("main",)
    assert caps.current_ranges[0] == 0.005 and caps.current_ranges[-1] == 20.0
    assert caps.voltage_ranges == (15.0, 30.0, 60.0, 150.0, 300.0, 600.0)
    assert caps.update_periods_s[0] == 0.1
    assert (caps.accuracy.reading_pct, caps.accuracy.range_pct) == (0.1, 0.05)


def test_read_polls_the_update_bit_and_reads_once_per_update():
    transcript = wt300_open() + [
        (":STATus:EESR?", "0"),
        (":STATus:EESR?", "0"),
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "230.12E+00,412.30E-03,85.210E+00,898.00E-03,300.0E+00,1.000E+00"),
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "229.80E+00,420.10E-03,86.000E+00,0.9000E+00,300.0E+00,1.000E+00"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        first = src.read(5.0)
        second = src.read(5.0)
    (cb,) = first
    s = cb.samples[0]
    assert cb.channel == "main" and s["status"] == OK
    assert (s["volts"], s["amps"], s["watts"], s["pf"]) == (230.12, 0.4123, 85.21, 0.898)
    assert (s["range_v"], s["range_a"]) == (300.0, 1.0)
    # +-(0.1 % of 85.21 W + 0.05 % of 300 W) + 0.1 % x tan(phi) of the reading
    tan_phi = math.sqrt(1 - 0.898**2) / 0.898
    assert s["uncertainty_w"] == pytest.approx(0.08521 + 0.15 + 0.08521 * tan_phi)
    assert second[0].samples[0]["mono_ns"] > s["mono_ns"]
    assert second[0].samples[0]["watts"] == 86.0


def test_nan_and_over_range_markers_become_invalid_samples():
    reads = [
        "NAN,NAN,NAN,NAN,300.0E+00,1.000E+00",  # range switching: no data
        "230.1E+00,INF,INF,INF,300.0E+00,1.000E+00",  # current over-range
        "9.91E+37,9.91E+37,9.91E+37,9.91E+37,300.0E+00,1.000E+00",  # float-style NaN
        "230.1E+00,9.9E+37,9.9E+37,9.9E+37,300.0E+00,1.000E+00",  # float-style over-range
        "230.1E+00,0.1000E+00,20.000E+00,NAN,300.0E+00,1.000E+00",  # pf unknown: watts still good
        "230.1E+00,garbage,20.000E+00,0.9,300.0E+00,1.000E+00",  # a corrupt field
    ]
    transcript = wt300_open()
    for r in reads:
        transcript += [(":STATus:EESR?", "1"), (":NUMeric:NORMal:VALue?", r)]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        got = [src.read(5.0)[0].samples[0] for _ in reads]
    assert [int(s["status"]) for s in got] == [NO_DATA, OVERRANGE, NO_DATA, OVERRANGE, OK, ERROR]
    for s in got[:4] + got[5:]:
        assert math.isnan(s["watts"]) and math.isnan(s["uncertainty_w"])
    assert got[4]["watts"] == 20.0 and math.isnan(got[4]["pf"])


def test_parse_reading_markers():
    assert parse_reading("NAN")[1] == NO_DATA
    assert parse_reading("INF")[1] == OVERRANGE
    assert parse_reading("-INF")[1] == OVERRANGE
    assert parse_reading("9.91E+37")[1] == NO_DATA
    assert parse_reading("9.9E+37")[1] == OVERRANGE
    assert parse_reading("-12.5E+00") == (-12.5, OK)
    assert parse_reading("")[1] == ERROR


def test_fixed_ranges_by_value_and_read_back():
    transcript = wt300_open() + [
        setter(":INPut:VOLTage:AUTO OFF"),
        setter(":INPut:CURRent:AUTO OFF"),
        setter(":INPut:VOLTage:RANGe 300V"),  # 231 V needs the 300 V range
        setter(":INPut:CURRent:RANGe 1A"),  # 1.1 x 0.62 A = 0.68 A needs the 1 A range
        (":INPut:VOLTage:RANGe?", "300.0E+00"),
        (":INPut:CURRent:RANGe?", "1.000E+00"),
        (":INPut:VOLTage:AUTO?", "0"),
        (":INPut:CURRent:AUTO?", "0"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        rs = src.set_ranges(volts=231.0, amps=1.1 * 0.62, auto=False)
    assert (rs.volts, rs.amps, rs.auto_v, rs.auto_a) == (300.0, 1.0, False, False)


def test_auto_range_on_and_read_back():
    transcript = wt300_open() + [
        setter(":INPut:VOLTage:AUTO ON"),
        setter(":INPut:CURRent:AUTO ON"),
        (":INPut:VOLTage:RANGe?", "600.0E+00"),
        (":INPut:CURRent:RANGe?", "500.0E-03"),
        (":INPut:VOLTage:AUTO?", "1"),
        (":INPut:CURRent:AUTO?", "1"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        rs = src.set_ranges(auto=True)
    assert (rs.volts, rs.amps, rs.auto_v, rs.auto_a) == (600.0, 0.5, True, True)


def test_update_rate_outside_the_models_list_is_refused_before_sending():
    transcript = wt300_open()
    transcript = transcript[: transcript.index(setter(":RATE 100MS"))]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.3) as src:
        with pytest.raises(SourceError) as err:
            src.open()
    msg = str(err.value)
    assert "0.3 s" in msg and "WT310E" in msg and "0.1, 0.25, 0.5, 1, 2, 5, 10, 20" in msg


def test_update_rate_option_wins_and_is_read_back():
    transcript = wt300_open(rate="250MS", rate_reply="250.0E-03")
    with expected_protocol(YokogawaSource, transcript, options={"update_s": 0.25}, sample_interval_s=1.0) as src:
        src.open()
    assert src.sample_interval_s == 0.25


def test_rate_the_meter_does_not_take_is_an_error():
    transcript = wt300_open(rate_reply="500.0E-03")
    transcript = transcript[: transcript.index((":RATE?", "500.0E-03")) + 1]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        with pytest.raises(SourceError, match="reports 0.5 s"):
            src.open()


def test_refused_setting_reports_the_meters_error_queue():
    transcript = wt300_open() + [
        setter(":INPut:VOLTage:AUTO OFF"),
        setter(":INPut:CURRent:AUTO OFF"),
        setter(":INPut:VOLTage:RANGe 300V", '813,"Cannot change settings during integration"'),
        (":STATus:ERRor?", '224,"Illegal parameter value"'),
        (":STATus:ERRor?", OK_ERR),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        with pytest.raises(MeterError) as err:
            src.set_ranges(volts=250.0, amps=1.0, auto=False)
    assert err.value.errors == [(813, "Cannot change settings during integration"), (224, "Illegal parameter value")]
    assert "813" in str(err.value) and ":INPut:VOLTage:RANGe 300V" in str(err.value)
    assert src.meter_errors == err.value.errors


def test_undefined_header_hints_at_the_wt200_command_set():
    transcript = wt300_open()
    transcript = transcript[: transcript.index(setter(":STATus:QMESsage ON"))] + [
        setter(":STATus:QMESsage ON", '113,"Undefined header"'),
        (":STATus:ERRor?", OK_ERR),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        with pytest.raises(MeterError, match="WT200 command set, switch it to WT300"):
            src.open()


def test_error_queue_drain():
    transcript = wt300_open() + [
        (":STATus:ERRor?", '113,"Undefined header"'),
        (":STATus:ERRor?", "224"),  # messages off: code only
        (":STATus:ERRor?", "0"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        assert src.read_error_queue() == [(113, "Undefined header"), (224, "")]


INTEG_FRESH = [
    (":INTEGrate:STATe?", "RESET"),
    setter(":INTEGrate:MODE NORMal"),
    setter(":INTEGrate:TIMer 0,0,0"),
    setter(":INTEGrate:STARt"),
]
ITEMS_WH = ("U,1", "I,1", "P,1", "LAMBda,1", "URANge,1", "IRANge,1", "WH,1")


def test_integration_counter_stays_cumulative_across_a_range_change():
    transcript = wt300_open(items=ITEMS_WH, integration=INTEG_FRESH) + [
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "230.0E+00,0.5000E+00,100.00E+00,0.87,300.0E+00,1.000E+00,10.000E-03"),
        # set_ranges must stop and reset integration (settings are locked while it runs)
        setter(":INTEGrate:STOP"),
        setter(":INTEGrate:RESet"),
        setter(":INPut:VOLTage:AUTO OFF"),
        setter(":INPut:CURRent:AUTO OFF"),
        setter(":INPut:CURRent:RANGe 2A"),
        setter(":INTEGrate:MODE NORMal"),
        setter(":INTEGrate:TIMer 0,0,0"),
        setter(":INTEGrate:STARt"),
        (":INPut:VOLTage:RANGe?", "300.0E+00"),
        (":INPut:CURRent:RANGe?", "2.000E+00"),
        (":INPut:VOLTage:AUTO?", "0"),
        (":INPut:CURRent:AUTO?", "0"),
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "230.0E+00,0.5000E+00,100.00E+00,0.87,300.0E+00,2.000E+00,1.0000E-03"),
    ]
    with expected_protocol(YokogawaSource, transcript, options={"integration": True}, sample_interval_s=0.1) as src:
        src.open()
        assert src.capabilities().has_energy_counter
        e1 = src.read(5.0)[0].samples[0]["energy_j"]
        src.set_ranges(amps=1.5, auto=False)
        e2 = src.read(5.0)[0].samples[0]["energy_j"]
    assert e1 == pytest.approx(36.0)  # 10 mWh
    assert e2 == pytest.approx(36.0 + 3.6)  # the meter restarted at 0; the counter did not


def test_integration_already_running_is_kept_on_reconnect():
    transcript = wt300_open(items=ITEMS_WH, integration=[(":INTEGrate:STATe?", "START")])
    with expected_protocol(YokogawaSource, transcript, options={"integration": True}, sample_interval_s=0.1) as src:
        src.open()


def test_stopped_integration_is_reset_before_starting():
    transcript = wt300_open(items=ITEMS_WH, integration=[(":INTEGrate:STATe?", "STOP"), setter(":INTEGrate:RESet")] + INTEG_FRESH[1:])
    with expected_protocol(YokogawaSource, transcript, options={"integration": True}, sample_interval_s=0.1) as src:
        src.open()


def test_multichannel_wt333e_one_channel_per_element_and_sum():
    items = tuple(f"{fn},{el}" for el in (1, 2, 3) for fn in ("U", "I", "P", "LAMBda", "URANge", "IRANge"))
    reply = ",".join(
        [
            "230.0E+00,0.5000E+00,100.00E+00,0.9,300.0E+00,1.000E+00",
            "231.0E+00,0.7000E+00,150.00E+00,0.95,300.0E+00,1.000E+00",
            "229.0E+00,INF,INF,INF,300.0E+00,1.000E+00",
        ]
    )
    for channels, expect in (("elements", ("el1", "el2", "el3")), ("sum", ("sum",))):
        transcript = wt300_open(idn="YOKOGAWA,WT333E,C3VD30030E,F1.04", items=items, ranges=("300.0E+00", "1.000E+00", "0", "0"))
        transcript += [(":STATus:EESR?", "1"), (":NUMeric:NORMal:VALue?", reply)]
        with expected_protocol(YokogawaSource, transcript, options={"channels": channels}, sample_interval_s=0.1) as src:
            src.open()
            assert src.capabilities().channels == expect
            batches = src.read(5.0)
        assert tuple(b.channel for b in batches) == expect
        if channels == "elements":
            assert [int(b.samples[0]["status"]) for b in batches] == [OK, OK, OVERRANGE]
            assert batches[1].samples[0]["watts"] == 150.0
        else:
            assert int(batches[0].samples[0]["status"]) == OVERRANGE  # one element over: the sum is invalid


def test_multichannel_sum_adds_power_and_uncertainty():
    items = tuple(f"{fn},{el}" for el in (1, 2) for fn in ("U", "I", "P", "LAMBda", "URANge", "IRANge"))
    transcript = wt300_open(idn="YOKOGAWA,WT332E,C3VD30031E,F1.04", items=items) + [
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "230.0E+00,0.5,100.0,1.0,300.0E+00,1.000E+00,231.0E+00,0.7,150.0,1.0,300.0E+00,1.000E+00"),
    ]
    with expected_protocol(YokogawaSource, transcript, options={"channels": "sum"}, sample_interval_s=0.1) as src:
        src.open()
        s = src.read(5.0)[0].samples[0]
    assert s["watts"] == 250.0 and s["amps"] == 0.7 and s["volts"] == 231.0
    assert s["uncertainty_w"] == pytest.approx((0.1 + 0.15) + (0.15 + 0.15))


def test_wt210_uses_the_wt200_command_set():
    on = {"V", "A", "W", "PF"}
    order = ("V", "A", "W", "VA", "VAR", "PF", "DEGRee", "VHZ", "AHZ", "WH", "WHP", "WHM", "AH", "AHP", "AHM", "VPK", "APK", "TIME", "MATH")
    transcript = [
        ("*CLS;*IDN?", "YOKOGAWA,760401,91K123456,F3.02"),
        setter(":COMMunicate:REMote ON"),
        setter(":COMMunicate:HEADer OFF"),
        setter(":COMMunicate:VERBose ON"),
        setter(":STATus:QMESsage ON"),
        (":CONFigure:CFACtor?", "3"),
    ]
    transcript += [setter(f":MEASure:ITEM:{fn} {'ON' if fn in on else 'OFF'}") for fn in order]
    transcript += [
        setter(":SAMPle:RATE 500MS"),
        (":SAMPle:RATE?", "0.5"),
        setter(":STATus:FILTer1 FALL"),
        (":CONFigure:VOLTage:RANGe?", "300.0E+00"),
        (":CONFigure:CURRent:RANGe?", "5.000E+00"),
        (":CONFigure:VOLTage:AUTO?", "0"),
        (":CONFigure:CURRent:AUTO?", "1"),
        (":STATus:EESR?", "0"),
        (":STATus:EESR?", "1"),
        (":MEASure:VALue?", "230.0E+00,0.5000E+00,100.00E+00,0.87"),
        # auto-range is on and the WT210 cannot report its ranges per update: it is asked
        (":CONFigure:VOLTage:RANGe?", "300.0E+00"),
        (":CONFigure:CURRent:RANGe?", "1.000E+00"),
        (":CONFigure:VOLTage:AUTO?", "0"),
        (":CONFigure:CURRent:AUTO?", "1"),
    ]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.5) as src:
        src.open()
        assert src.identify().extra["spec"] == "WT210"
        s = src.read(5.0)[0].samples[0]
    assert (s["volts"], s["amps"], s["watts"], s["pf"], s["range_a"]) == (230.0, 0.5, 100.0, 0.87, 1.0)


def test_a_meter_that_stops_answering_raises_source_error():
    transcript = wt300_open() + [(":STATus:EESR?", TIMEOUT)]
    with expected_protocol(YokogawaSource, transcript, options={"timeout_s": 0.5}, sample_interval_s=0.1) as src:
        src.open()
        with pytest.raises(SourceError, match=r"did not answer ':STATus:EESR\?' within 0.5 s"):
            src.read(5.0)


def test_malformed_replies_are_error_samples_then_a_reconnect():
    transcript = wt300_open()
    for _ in range(3):
        transcript += [(":STATus:EESR?", "1"), (":NUMeric:NORMal:VALue?", "230.0E+00,0.5")]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        assert int(src.read(5.0)[0].samples[0]["status"]) == ERROR
        assert int(src.read(5.0)[0].samples[0]["status"]) == ERROR
        with pytest.raises(SourceError, match="3 malformed replies"):
            src.read(5.0)


def test_garbled_status_reply_means_the_link_is_out_of_step():
    transcript = wt300_open() + [(":STATus:EESR?", "230.0E+00,0.5")]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        with pytest.raises(SourceError, match="out of step"):
            src.read(5.0)


def test_zero_check_uses_cal_query():
    transcript = wt300_open() + [("*CAL?", "0")]
    with expected_protocol(YokogawaSource, transcript, sample_interval_s=0.1) as src:
        src.open()
        res = src.zero_check()
    assert res["ok"] and res["command"] == "*CAL?"


def test_close_stops_integration_and_returns_to_local():
    transcript = wt300_open(items=ITEMS_WH, integration=INTEG_FRESH) + [(":INTEGrate:STOP", None), (":COMMunicate:REMote OFF", None)]
    res = ScriptedResource(transcript)
    src = YokogawaSource("meter", YokogawaSource.Options(resource="X", integration=True), 0.1, resource=res)
    src.open()
    src.close()
    res.assert_done()


@pytest.mark.parametrize(
    "idn,message",
    [
        ("KEITHLEY INSTRUMENTS,MODEL 2000,1234,A01", "not a Yokogawa meter"),
        ("YOKOGAWA,GS210,91T123,1.0", "not a supported model"),
        ("garbage", "not a meter identity"),
    ],
)
def test_wrong_instrument_is_refused(idn, message):
    with expected_protocol(YokogawaSource, [("*CLS;*IDN?", idn)], sample_interval_s=0.1) as src:
        with pytest.raises(SourceError, match=message):
            src.open()


def test_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown model"):
        YokogawaSource.Options(resource="X", model="WT9999")
    with pytest.raises(ValidationError):
        YokogawaSource.Options(resource="X", bogus=1)
    with pytest.raises(ValidationError):
        YokogawaSource.Options()
    assert YokogawaSource.Options(resource="X", model="wt333e").model == "WT333E"


def test_wt500_uses_rms_functions_and_all_element_range_commands():
    items = ("URMS,1", "IRMS,1", "P,1", "LAMBda,1")
    transcript = [
        ("*CLS;*IDN?", "YOKOGAWA,WT500,91M000001,F2.01"),
        setter(":COMMunicate:REMote ON"),
        setter(":COMMunicate:HEADer OFF"),
        setter(":COMMunicate:VERBose ON"),
        setter(":STATus:QMESsage ON"),
        setter(":NUMeric:FORMat ASCii"),
        (":INPut:CFACtor?", "3"),
        setter(":NUMeric:NORMal:NUMber 4"),
    ]
    transcript += [setter(f":NUMeric:NORMal:ITEM{i} {item}") for i, item in enumerate(items, start=1)]
    transcript += [
        setter(":RATE 200MS"),
        (":RATE?", "200.0E-03"),
        setter(":STATus:FILTer1 FALL"),
        (":INPut:VOLTage:RANGe:ELEMent1?", "300.0E+00"),
        (":INPut:CURRent:RANGe:ELEMent1?", "2.000E+00"),
        (":INPut:VOLTage:AUTO:ELEMent1?", "0"),
        (":INPut:CURRent:AUTO:ELEMent1?", "0"),
        (":STATus:EESR?", "0"),
        setter(":INPut:VOLTage:AUTO:ALL OFF"),
        setter(":INPut:CURRent:AUTO:ALL OFF"),
        setter(":INPut:VOLTage:RANGe:ALL 300V"),
        setter(":INPut:CURRent:RANGe:ALL 1A"),
        (":INPut:VOLTage:RANGe:ELEMent1?", "300.0E+00"),
        (":INPut:CURRent:RANGe:ELEMent1?", "1.000E+00"),
        (":INPut:VOLTage:AUTO:ELEMent1?", "0"),
        (":INPut:CURRent:AUTO:ELEMent1?", "0"),
        (":STATus:EESR?", "1"),
        (":NUMeric:NORMal:VALue?", "230.0E+00,0.5000E+00,100.00E+00,0.87"),
    ]
    with expected_protocol(YokogawaSource, transcript, options={"elements": [1]}, sample_interval_s=0.2) as src:
        src.open()
        assert src.identify().extra["unverified"]  # the WT500 tables are not checked on hardware
        src.set_ranges(volts=230.0, amps=0.9, auto=False)
        s = src.read(5.0)[0].samples[0]
    # fixed ranges: the sample carries the ranges read back, no query per update
    assert (s["watts"], s["range_v"], s["range_a"]) == (100.0, 300.0, 1.0)
