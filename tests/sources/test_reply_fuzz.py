"""Property-based hostile replies from the three meters, through the drivers' own parsing.

Random bytes, truncated lines, wrong field counts, NaN and overflowing values from the SCPI
meter (the yokogawa driver), the PTD daemon (Identify / RR / Watts / Uncertainty / sample
lines) and the PowerShield stream (the lpm01a driver above its parser). Whatever arrives:

* no exception but the driver's own protocol error (SourceError / ValueError with a message);
* every sample is either valid with exactly the value that was sent, or invalid (counted);
* the average the recorder computes from the parsed samples is the average of exactly the
  valid values that went in (the invalid ones neither count nor move it).

The strategies build each reply from labelled parts (a valid number, a NaN / over-range
marker, an overflow, garbage), so the expected outcome comes from the label, not from a
second copy of the parser.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labconsole.instruments import powershield as ps
from labconsole.instruments.ptd import (
    INVALID,
    parse_identify,
    parse_ranges,
    parse_sample_line,
    parse_uncertainty,
    parse_watts,
)
from labconsole.recorder import SegmentStats
from labconsole.samples.batch import GAP, OK, SAMPLE_DTYPE, now_ns
from labconsole.sources.base import SourceError
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource, _StreamClock
from labconsole.sources.ptd import PtdOptions, PtdSource
from labconsole.sources.yokogawa import YokogawaSource
from labconsole.testing.visa import expected_protocol

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Characters that can make up a number (or a NaN/INF word): garbage must contain something else.
_NUMERIC_CHARS = set("0123456789.+-eE \t")
_WORDS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _is_garbage(text: str) -> bool:
    t = text.strip()
    return bool(t) and not set(t) <= _NUMERIC_CHARS and t.lower() not in _WORDS


garbage_text = st.text(alphabet=st.characters(codec="latin-1", exclude_characters=",\r\n"), min_size=1, max_size=12).filter(_is_garbage)
# Forms Python's float() takes but a meter never sends: they must not become readings.
float_lookalikes = st.sampled_from(["1_000", "١٢٣", "infinity", "  -Infinity ", "0x1p3", "1e", ".", "+", "--1", "1..2", "1e+"])


def mean_of(batches: list[np.ndarray]) -> tuple[int, float]:
    """What the recorder averages: (valid count, mean watts), through its own SegmentStats."""
    stats = SegmentStats()
    for b in batches:
        stats.add(b)
    return stats.valid, stats.mean_w


def assert_same_mean(batches: list[np.ndarray], expected: list[float]) -> None:
    n, mean = mean_of(batches)
    assert n == len(expected)
    if expected:
        assert math.isclose(mean, math.fsum(expected) / len(expected), rel_tol=1e-12, abs_tol=1e-12)
    else:
        assert math.isnan(mean)


# --- the SCPI meter: the yokogawa driver's value replies ----------------------------------------------

LAYOUT = ("volts", "amps", "watts", "pf", "range_v", "range_a")  # the WT310E items, in reply order


@st.composite
def scpi_field(draw):
    """(label, text): ok numbers in the meter's forms, markers, overflow, garbage."""
    kind = draw(st.sampled_from(["ok", "ok", "ok", "nan", "over", "overflow", "garbage", "lookalike", "empty"]))
    if kind == "ok":
        v = draw(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
        form = draw(st.sampled_from(["{:.4E}", "{:.5f}", "{!r}", "{:.3e}"]))
        return "ok", form.format(v)
    if kind == "nan":
        return "invalid", draw(st.sampled_from(["NAN", "9.91E+37", "-9.91E+37", "nan"]))
    if kind == "over":
        return "invalid", draw(st.sampled_from(["INF", "-INF", "9.9E+37", "-9.9E+37"]))
    if kind == "overflow":
        return "invalid", draw(st.sampled_from(["1e999", "-1e999", "1.0E+400", "3.4E+38"]))
    if kind == "lookalike":
        return "invalid", draw(float_lookalikes)
    if kind == "empty":
        return "invalid", ""
    return "invalid", draw(garbage_text)


@st.composite
def scpi_reply(draw):
    fields = draw(st.lists(scpi_field(), min_size=len(LAYOUT), max_size=len(LAYOUT)))
    shape = draw(st.sampled_from(["whole", "whole", "whole", "short", "long", "truncated", "bytes"]))
    text = ",".join(t for _, t in fields)
    if shape == "short":
        return "error", ",".join(t for _, t in fields[: draw(st.integers(0, len(LAYOUT) - 1))])
    if shape == "long":
        return "error", text + "," + ",".join(t for _, t in draw(st.lists(scpi_field(), min_size=1, max_size=3)))
    if shape == "truncated":
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        cut_text = text[:cut]
        # still six fields: the cut one is whatever it became
        return ("error" if cut_text.count(",") != len(LAYOUT) - 1 else "unknown"), cut_text
    if shape == "bytes":
        raw = draw(st.binary(max_size=60)).decode("latin-1").replace("\n", "")
        return ("error" if raw.count(",") != len(LAYOUT) - 1 else "unknown"), raw
    valid = all(fields[k][0] == "ok" for k in (0, 1, 2))  # U, I, P decide; pf may be unknown
    return ("ok" if valid else "invalid"), text


def _plain_number(text: str) -> bool:
    t = text.strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", t, re.ASCII):
        return False
    return abs(float(t)) < 9.9e37 * 0.99999


@pytest.fixture(scope="module")
def wt310e():
    """A yokogawa driver opened on a scripted WT310E (no I/O): replies are fed one at a time."""
    from test_yokogawa_transcripts import wt300_open

    with expected_protocol(YokogawaSource, wt300_open(), sample_interval_s=0.1) as src:
        src.open()
        yield src
        src._res.forget_rest()


def _read_one(src: YokogawaSource, eesr: str, values: str | None):
    src._last_update_mono = None  # no pause for the next update: every call polls once
    src._garbled = 0
    res = src._res
    res.transcript.extend([(":STATus:EESR?", eesr)] + ([(":NUMeric:NORMal:VALue?", values)] if values is not None else []))
    try:
        return src.read(0.0)
    finally:
        res.forget_rest()


tried = {"scpi": 0, "scpi_status": 0, "ptd_lines": 0, "ptd_replies": 0, "powershield": 0}


@FUZZ
@given(replies=st.lists(scpi_reply(), min_size=1, max_size=6))
def test_scpi_value_replies_are_valid_or_counted_never_averaged_in(wt310e, replies):
    tried["scpi"] += 1
    batches, expected = [], []
    before = dict(wt310e.counters)
    for label, text in replies:
        out = _read_one(wt310e, "1", text)
        assert len(out) == 1 and out[0].channel == "main" and len(out[0].samples) == 1
        s = out[0].samples[0]
        batches.append(out[0].samples)
        if label == "ok" or (label == "unknown" and s["status"] == OK):
            fields = text.split(",")
            assert s["status"] == OK, text
            assert all(_plain_number(f) for f in fields[:3]), text  # only the meter's number forms
            assert s["watts"] == float(fields[2]) and s["volts"] == float(fields[0]) and s["amps"] == float(fields[1])
            expected.append(float(fields[2]))
        else:
            assert s["status"] != OK, text
            assert math.isnan(s["watts"]) and math.isnan(s["uncertainty_w"])
    assert_same_mean(batches, expected)
    c = wt310e.counters
    assert c["samples"] - before["samples"] == len(replies)
    assert c["invalid"] - before["invalid"] == len(replies) - len(expected)
    assert c["malformed_replies"] - before["malformed_replies"] == sum(1 for label, t in replies if t.count(",") != len(LAYOUT) - 1)


@FUZZ
@given(eesr=st.one_of(st.sampled_from(["0", "1", "+1", "3", "1.0E+00", "inf", "nan", "", "-1", "9" * 400]), garbage_text, st.binary(max_size=20).map(lambda b: b.decode("latin-1"))))
def test_scpi_status_replies_never_crash(wt310e, eesr):
    tried["scpi_status"] += 1
    try:
        out = _read_one(wt310e, eesr, "230.0E+00,0.5,100.0,0.9,300.0E+00,1.0E+00")
    except SourceError as exc:
        assert "garbled status reply" in str(exc)
        return
    assert out == [] or out[0].samples[0]["watts"] == 100.0


# --- the PTD daemon ---------------------------------------------------------------------------------------

PTD_TIME = "01-02-2026 03:04:05.678"


@st.composite
def ptd_value(draw):
    kind = draw(st.sampled_from(["ok", "ok", "ok", "invalid", "nan", "overflow", "garbage", "lookalike"]))
    if kind == "ok":
        return "ok", f"{draw(st.floats(min_value=0, max_value=1e5, allow_nan=False)):.6f}"
    if kind == "invalid":
        return "no_data", "-1.000000"
    if kind == "nan":
        return "error", draw(st.sampled_from(["nan", "NaN", "-nan"]))
    if kind == "overflow":
        return "error", draw(st.sampled_from(["1e999", "-1e999", "inf"]))
    if kind == "lookalike":
        return "error", draw(float_lookalikes.filter(lambda t: "," not in t))
    return "error", draw(garbage_text)


@st.composite
def ptd_line(draw):
    """(expected, line): expected is ('ok', watts) | ('no_data',) | ('error',)."""
    w, v, a, pf = (draw(ptd_value()) for _ in range(4))
    line = f"Time,{PTD_TIME},Watts,{w[1]},Volts,{v[1]},Amps,{a[1]},PF,{pf[1]}"
    shape = draw(st.sampled_from(["whole", "whole", "whole", "mark", "truncated", "extra", "bytes", "no_time"]))
    labels = [w[0], v[0], a[0], pf[0]]
    if "error" in labels:
        expect: tuple = ("error",)
    elif w[0] == "no_data":
        expect = ("no_data",)
    else:
        expect = ("ok", float(w[1]))
    if shape == "mark":
        line += ",Mark,session_testing"
    elif shape == "truncated":
        line = line[: draw(st.integers(0, len(line) - 1))]
        expect = ("unknown",)  # a cut through the last value may still leave a (shorter) number
    elif shape == "extra":
        line += "," + draw(st.sampled_from(["Watts,1.0", "Volts", "junk", "Watts,1,Volts,2,Amps,3"]))
        expect = ("error",)
    elif shape == "bytes":
        line = draw(st.binary(max_size=80)).decode("latin-1").replace("\n", "").replace("\r", "")
        expect = ("unknown",)
    elif shape == "no_time":
        line = line.replace(f"Time,{PTD_TIME},", "Time,13-45-2026 99:00:00.000,")
        expect = ("error",)
    return expect, line


def _ptd_source() -> PtdSource:
    return PtdSource("wall", PtdOptions(host="127.0.0.1", port=8888), sample_interval_s=1.0)


@FUZZ
@given(lines=st.lists(ptd_line(), min_size=1, max_size=12))
def test_ptd_sample_lines_are_valid_or_counted_never_averaged_in(lines):
    tried["ptd_lines"] += 1
    src = _ptd_source()
    wall, mono = now_ns()
    out = src._to_batches([text for _, text in lines], wall, mono)
    assert all(cb.samples.dtype == SAMPLE_DTYPE for cb in out)
    samples = np.concatenate([cb.samples for cb in out]) if out else np.zeros(0, SAMPLE_DTYPE)
    assert len(samples) == len(lines)  # one sample per line, garbage included: its place is kept
    expected = []
    for (expect, text), s in zip(lines, samples):
        if expect[0] == "unknown":
            try:
                _, groups = parse_sample_line(text)
                expect = ("no_data",) if groups[0][0] == INVALID else ("ok", groups[0][0])
            except ValueError:
                expect = ("error",)
        if expect[0] == "ok":
            assert s["status"] == OK and s["watts"] == expect[1], text
            expected.append(expect[1])
        else:
            assert s["status"] != OK and math.isnan(s["watts"]), text
    assert np.all(np.diff(samples["wall_ns"]) > 0)  # garbage never moves a sample back in time
    assert_same_mean([samples], expected)
    assert src.counters["samples"] == len(lines) and src.counters["invalid"] == len(lines) - len(expected)


ptd_reply_text = st.one_of(
    st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=200),
    st.lists(st.sampled_from(["Ranges", "Watts", "Uncertainty", "1", "-1", "0", "inf", "nan", "1e999", "1_0", "x", "", "300.000000",
                              "version=1.11.1-0-2026", "OS=linux", "mode=power", "YokogawaWT310E", "1000"]), max_size=24).map(",".join),
)


@FUZZ
@given(reply=ptd_reply_text)
def test_ptd_replies_parse_or_raise_a_clear_value_error(reply):
    tried["ptd_replies"] += 1
    for parse in (parse_identify, parse_ranges, parse_watts, parse_uncertainty, parse_sample_line):
        try:
            got = parse(reply)
        except ValueError as exc:
            assert str(exc)
            continue
        if parse is parse_ranges:
            assert all(math.isfinite(g.amps) and math.isfinite(g.volts) for g in got)
        elif parse in (parse_watts, parse_uncertainty):
            assert all(math.isfinite(v) for v in dataclasses.astuple(got))


# --- the PowerShield stream, above the parser (already fuzzed in test_powershield.py) ---------------------

FREQ = 1000


@st.composite
def powershield_stream(draw):
    """Lines of an ascii_dec energy stream: tokens, garbage, TimeStamps (plausible, backwards,
    far ahead), board messages; returns (bytes, the valid joules in order, the token count)."""
    items, joules, n = [], [], 0
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["token"] * 6 + ["garbage", "lookalike", "timestamp", "message", "nul"]))
        if kind == "token":
            v = draw(st.floats(min_value=1e-12, max_value=1e-3, allow_nan=False))
            tok = ps.encode_ascii_tokens(np.array([v]))[0]
            items.append(tok.encode())
            joules.append(ps.decode_ascii_token(tok))
            n += 1
        elif kind == "garbage":
            items.append(b"x" + draw(st.binary(max_size=30)).replace(b"\n", b""))
        elif kind == "lookalike":
            items.append(draw(st.sampled_from([b"nan", b"inf", b"1e999", b"9999+99", b"12x4-0", b"640", b"-001-03"])))
        elif kind == "timestamp":
            ms = draw(st.sampled_from([0, n, n + 5, n + 50_000_000, max(0, n - 500)]))
            items.append(ps.timestamp_line(ms, draw(st.integers(0, 120))).encode())
        elif kind == "message":
            items.append(draw(st.sampled_from([b"PowerShield > ack start", b"event 01", b"summary: x", b"Warning: y"])))
        else:
            items.append(b"\x00")
    return b"\r\n".join(items) + b"\r\n", joules, n


@FUZZ
@given(stream=powershield_stream(), cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_powershield_stream_through_the_driver_keeps_exactly_the_valid_samples(stream, cuts):
    tried["powershield"] += 1
    data, joules, _ = stream
    src = Lpm01aSource("dut", Lpm01aOptions(port="/dev/null", frequency_hz=FREQ, output="energy"))
    src._parser = ps.AsciiStreamParser()
    src._clock = _StreamClock(FREQ, now_ns())
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points + [len(data)]:
        pieces.append(data[prev:p])
        prev = p
    out = [src._consume(piece, now_ns()) for piece in pieces]
    samples = np.concatenate(out)
    ok = samples[samples["status"] == OK]
    limit = ps.MAX_CURRENT_A * src._volts * 1.05
    valid = [j * FREQ for j in joules if j * FREQ <= limit]
    assert list(ok["watts"]) == valid  # same values, same order
    assert np.all(np.isnan(samples["watts"][samples["status"] != OK]))
    assert set(np.unique(samples["status"])) <= {OK, 1, 3, GAP}
    assert_same_mean(out, valid)
    c = src.counters
    assert c["samples"] == len(samples) and c["invalid"] == len(samples) - len(valid)
    # the energy counter only counts valid samples, and never goes backwards
    assert np.all(np.diff(samples["energy_j"]) >= 0)


def test_zz_fuzz_inputs_tried():
    """Not a check: prints how many inputs each fuzzer tried (for the closing figures)."""
    print("FUZZ-FIGURES", tried)
