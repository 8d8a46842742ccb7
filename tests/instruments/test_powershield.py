"""The PowerShield protocol module: number formats and the stream parsers, including hostile input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labconsole.instruments import powershield as ps
from labconsole.samples.batch import OK

currents = st.floats(min_value=1e-9, max_value=0.2, allow_nan=False)


def test_documented_examples_decode():
    assert ps.decode_ascii_token("6409-07") == pytest.approx(640.9e-6)
    assert ps.decode_binary_words(np.array([0x52A0]))[0] == pytest.approx(0x2A0 * 16**-5)
    assert ps.encode_binary(np.array([640.9e-6])) == bytes.fromhex("52A0")
    assert ps.encode_ascii_tokens(np.array([640.9e-6])) == ["6409-07"]


@pytest.mark.parametrize("bad", ["6409-7", "640907", "6409*07", "64090-7", "x409-07", ""])
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(ValueError):
        ps.decode_ascii_token(bad)


def test_numbers_and_frequencies():
    assert ps.parse_number("3300m") == pytest.approx(3.3)
    assert ps.parse_number("2-3") == pytest.approx(0.002)
    assert ps.parse_number("100u") == pytest.approx(1e-4)
    assert ps.parse_number("inf") == math.inf
    with pytest.raises(ValueError):
        ps.parse_number("3.3V")
    assert [ps.freq_arg(f) for f in (100000, 1000, 500, 1)] == ["100k", "1k", "500", "1"]
    with pytest.raises(ValueError):
        ps.freq_arg(3000)


@given(st.lists(currents, max_size=200))
def test_ascii_tokens_round_trip_to_four_digits(values):
    tokens = ps.encode_ascii_tokens(np.array(values))
    for v, tok in zip(values, tokens, strict=True):
        assert ps.decode_ascii_token(tok) == pytest.approx(v, rel=6e-4)


@given(st.lists(currents, max_size=200))
def test_binary_words_round_trip_to_twelve_bits(values):
    words = np.frombuffer(ps.encode_binary(np.array(values)), ">u2")
    assert np.all((words >> 12) < 0xF)  # exponent F is reserved for metadata frames
    back = ps.decode_binary_words(words)
    assert back == pytest.approx(values, rel=2.5e-3)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def _feed_all(parser, pieces: list[bytes]) -> tuple[np.ndarray, np.ndarray, list[ps.Mark]]:
    vals, stats, marks = [], [], []
    for piece in pieces:
        p = parser.feed(piece)
        assert len(p.values) == len(p.status)
        vals.append(p.values)
        stats.append(p.status)
        marks.extend(p.marks)
    return np.concatenate(vals), np.concatenate(stats), marks


garbage_lines = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), min_size=1, max_size=40).map(lambda s: "x" + s)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(currents, min_size=1, max_size=120), garbage=st.lists(st.tuples(st.integers(0, 200), garbage_lines), max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_ascii_garbage_never_becomes_or_moves_a_valid_sample(values, garbage, cuts):
    tokens = ps.encode_ascii_tokens(np.array(values))
    lines = [t.encode() for t in tokens]
    for at, text in sorted(garbage, reverse=True):
        lines.insert(at % (len(lines) + 1), text.encode("latin-1"))
    data = b"\r\n".join(lines) + b"\r\n"
    got, status, marks = _feed_all(ps.AsciiStreamParser(), _chunks(data, cuts))
    ok = got[status == OK]
    expected = np.array([ps.decode_ascii_token(t) for t in tokens])
    assert np.array_equal(ok, expected)  # same values, same order: the average cannot move
    assert np.all(np.isnan(got[status != OK]))
    assert sum(m.kind == "garbage" for m in marks) == len(garbage)


@settings(max_examples=200)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_ascii_parser_survives_any_bytes(data, cuts):
    got, status, _ = _feed_all(ps.AsciiStreamParser(), _chunks(data, cuts))
    ok = got[status == OK]
    assert np.all(np.isfinite(ok)) and np.all(ok >= 0)


@settings(max_examples=200)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_binary_parser_survives_any_bytes(data, cuts):
    parser = ps.BinaryStreamParser()
    got, status, _ = _feed_all(parser, _chunks(data, cuts))
    assert np.all(np.isfinite(got[status == OK]))
    parser.flush()


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(currents, min_size=1, max_size=3000), cuts=st.lists(st.integers(0, 100_000), max_size=12))
def test_binary_stream_with_frames_splits_anywhere(values, cuts):
    data = b"\r\n" + ps.meta_timestamp(0, 0)
    for i in range(0, len(values), 1000):
        data += ps.encode_binary(np.array(values[i : i + 1000]))
        data += ps.meta_timestamp(i + 1000, 7) + ps.meta_text(ps.META_INFO, "hello")
    data += bytes([ps.META, ps.META_END]) + ps.META_TAIL + b"\r\nPowerShield > Acquisition completed\r\n"
    got, status, marks = _feed_all(ps.BinaryStreamParser(), _chunks(data, cuts))
    expected = ps.decode_binary_words(np.frombuffer(ps.encode_binary(np.array(values)), ">u2"))
    assert np.array_equal(got, expected) and np.all(status == OK)
    kinds = [m.kind for m in marks]
    assert kinds.count("timestamp") == 1 + math.ceil(len(values) / 1000)
    assert kinds[-2:] == ["end", "completed"] and "garbage" not in kinds


def test_timestamp_lines_and_their_quirks():
    p = ps.AsciiStreamParser()
    out = p.feed(b"TimeStamp: 012s 345ms, buff 07%\r\n\x001500-08\r\nTimeStamp:>013s 345ms, buff 99%\r\nTimeStamp: garbled\r\n")
    ts = [m for m in out.marks if m.kind == "timestamp"]
    assert [(m.board_ms, m.buffer_pct, m.flag) for m in ts] == [(12345, 7, " "), (13345, 99, ">")]
    assert [m.kind for m in out.marks].count("garbage") == 1
    assert out.values == pytest.approx([1.5e-5])


def test_known_board_messages_are_classified():
    p = ps.AsciiStreamParser()
    out = p.feed(b"\r\nPowerShield > ack start\r\n\r\nPowerShield > error freq 7k\r\nError detail: bad\r\nevent 07 fal\r\nend\r\nsummary begin\r\nPowerShield > Acquisition completed\r\nPowerShield > \r\n")
    assert [m.kind for m in out.marks] == ["ack", "error", "error_detail", "event", "end", "info", "completed"]
    assert len(out.values) == 0


def test_an_endless_line_is_cut_as_garbage():
    p = ps.AsciiStreamParser()
    out = p.feed(b"7" * 5000)
    assert [m.kind for m in out.marks] == ["garbage"]
    assert p.feed(b"1500-08\r\n").values == pytest.approx([1.5e-5])


def test_binary_realigns_after_a_stray_byte():
    good = ps.encode_binary(np.full(10, 1e-3))
    data = ps.meta_timestamp(0, 0) + good[:6] + b"\xf7" + good[6:]
    out = ps.BinaryStreamParser().feed(data)
    assert sum(m.kind == "garbage" for m in out.marks) >= 1
    # the words after the stray byte are read on the right alignment again
    assert out.values[-4:] == pytest.approx([1e-3] * 4, rel=3e-3)


def test_binary_finds_its_step_again_at_a_frame_after_a_lost_byte():
    good = ps.encode_binary(np.full(10, 1e-3))
    data = ps.meta_timestamp(0, 0) + good[:5] + good[6:] + ps.meta_timestamp(1000, 3) + good  # one byte lost
    out = ps.BinaryStreamParser().feed(data)
    assert [m.board_ms for m in out.marks if m.kind == "timestamp"] == [0, 1000]
    assert np.count_nonzero(out.status != OK) >= 1
    assert out.values[-10:] == pytest.approx([1e-3] * 10, rel=3e-3)  # in step after the frame
