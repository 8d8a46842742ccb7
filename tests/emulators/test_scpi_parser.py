"""The emulators' SCPI message parser: forms, optional nodes, suffixes, numbers, NR3."""

from __future__ import annotations

import math

import pytest

from labconsole.emulators.scpi import ErrorQueue, ScpiError, ScpiParser, match, nr3, parse_bool, parse_choice, parse_number, pattern


def test_header_forms_optional_nodes_and_suffixes():
    nodes = pattern(":NUMeric[:NORMal]:ITEM<x>")
    assert match(["NUM", "ITEM3"], nodes) == [0, None, 3]
    assert match(["NUMERIC", "NORMAL", "ITEM"], nodes) == [0, 0, 1]
    assert match(["NUM", "NOR", "ITEM"], nodes) is None  # neither short nor long form
    assert match(["NUM"], nodes) is None


@pytest.mark.parametrize(
    "text,unit,value",
    [("150V", "V", 150.0), ("5MA", "A", 0.005), ("100MS", "S", 0.1), ("1.5E+2", "", 150.0), ("2", "A", 2.0), ("5m", "A", 0.005), ("1s", "S", 1.0)],
)
def test_numbers_with_multipliers_and_units(text, unit, value):
    assert parse_number(text, unit) == pytest.approx(value)


def test_bad_values():
    with pytest.raises(ScpiError) as err:
        parse_number("abc", "V")
    assert err.value.code == 104
    with pytest.raises(ScpiError) as err:
        parse_number("5Q", "V")
    assert err.value.code == 138
    assert parse_bool("on") and not parse_bool("0")
    assert parse_choice("cont", ("NORMal", "CONTinuous")) == "CONTinuous"
    with pytest.raises(ScpiError) as err:
        parse_choice("CONTI", ("NORMal", "CONTinuous"))
    assert err.value.code == 141


@pytest.mark.parametrize(
    "value,digits,text",
    [(230.123, 5, "230.12E+00"), (0.2064, 5, "206.40E-03"), (50, 5, "50.000E+00"), (300, 4, "300.0E+00"), (0.5, 4, "500.0E-03"),
     (999.9999, 5, "1.0000E+03"), (9.99999e-8, 5, "100.00E-09"), (0, 5, "0.0000E+00"), (math.nan, 5, "NAN"), (math.inf, 5, "INF")],
)
def test_nr3(value, digits, text):
    assert nr3(value, digits) == text


def test_compound_messages_relative_headers_and_error_queue():
    state = {"v": 300.0}
    p = ScpiParser(ErrorQueue())
    p.headers = False
    p.add("[:INPut]:VOLTage:RANGe", lambda s, a: state.__setitem__("v", float(a[0])), lambda s, a: nr3(state["v"], 4))
    p.add("[:INPut]:VOLTage:AUTO", None, lambda s, a: "0")
    assert p.handle_line(":INP:VOLT:RANG 150;AUTO?;RANG?") == "0;150.0E+00"
    assert p.handle_line(":volt:rang?") == "150.0E+00"
    assert p.handle_line(":NOPE?;:VOLT:RANG?") == "150.0E+00"  # a bad unit does not stop the line
    p.headers = True
    assert p.handle_line(":VOLT:RANG?") == ":INP:VOLT:RANG 150.0E+00"
    assert p.errors.pop() == '113,"Undefined header"'
    assert p.errors.pop() == '0,"No error"'


def test_error_queue_overflow():
    q = ErrorQueue(size=4)
    for _ in range(10):
        q.push(113, "Undefined header")
    assert [q.pop() for _ in range(5)] == ['113,"Undefined header"'] * 3 + ['350,"Queue overflow"', '0,"No error"']
