"""The transcript harness itself (labconsole.testing): what it lets through and what it fails on."""

from __future__ import annotations

import socket

import pytest
import serial
from pyvisa import constants, errors

from labconsole.testing.serial_port import ScriptedSerial
from labconsole.testing.tcp import ScriptedServer
from labconsole.testing.transcript import CLOSE, GARBAGE, TIMEOUT, Transcript, TranscriptError
from labconsole.testing.visa import ScriptedResource


def test_a_wrong_command_names_the_exchange_and_is_kept_even_if_swallowed():
    t = Transcript([("A", "1"), ("B", "2"), ("C", "3")])
    assert t.expect("A") == "1"
    with pytest.raises(TranscriptError, match=r"exchange 2 of 3: expected 'B', got 'X'"):
        t.expect("X")
    # A driver that turns every link error into its own swallowed the raise: the end still fails.
    with pytest.raises(TranscriptError, match=r"expected 'B', got 'X'(.|\n)*exchange 2 of 3: never happened"):
        t.assert_done()


def test_leftovers_and_commands_after_the_end_fail():
    t = Transcript([("A", "1"), ("B", "2")], label="connection 2")
    t.expect("A")
    with pytest.raises(TranscriptError, match=r"connection 2, exchange 2 of 2: never happened .*first 'B' -> '2'"):
        t.assert_done()
    t.expect("B")
    t.assert_done()
    with pytest.raises(TranscriptError, match=r"exchange 3 of 2: got 'C' after the end of the transcript"):
        t.expect("C")
    with pytest.raises(TranscriptError, match="after the end"):
        t.assert_done()


def test_a_callable_reply_is_made_when_the_command_arrives():
    made = []
    t = Transcript([("A", lambda: made.append(1) or "late")])
    assert made == []
    assert t.expect("A") == "late" and made == [1]


def test_visa_replies_faults_and_unread_replies():
    res = ScriptedResource([("*IDN?", "ACME,1"), ("SET 1", None), ("RAW?", b"12.5\n"), ("V?", TIMEOUT), ("V?", CLOSE), ("V?", "1")])
    assert res.query("*IDN?") == "ACME,1"
    res.write("SET 1")
    assert res.query("RAW?") == "12.5"
    with pytest.raises(errors.VisaIOError) as err:
        res.query("V?")
    assert err.value.error_code == constants.StatusCode.error_timeout
    with pytest.raises(errors.VisaIOError) as err:
        res.query("V?")
    assert err.value.error_code == constants.StatusCode.error_connection_lost
    res.write("V?")
    with pytest.raises(TranscriptError, match=r"reply '1' to 'V\?' was never read"):
        res.assert_done()
    garbage = ScriptedResource([("V?", GARBAGE)])
    with pytest.raises(UnicodeDecodeError):  # what PyVISA's ASCII decoding does with it
        garbage.query("V?")
    silent = ScriptedResource([("SET 1", None)])
    silent.write("SET 1")
    with pytest.raises(TranscriptError, match="which has none"):
        silent.read()


def _client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def test_tcp_lines_bytes_close_and_reconnect():
    peer = ScriptedServer([("Hello", ["Hi", "there"]), ("Raw", GARBAGE), ("Bye", CLOSE)], [("Hello", "again"), ("Quiet", TIMEOUT)])
    try:
        c = _client(peer.port)
        c.sendall(b"Hello\r\n")
        got = b""
        while got.count(b"\r\n") < 2:
            got += c.recv(100)
        assert got == b"Hi\r\nthere\r\n"
        c.sendall(b"Raw\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            got += c.recv(100)
        assert got == GARBAGE
        c.sendall(b"Bye\r\n")
        assert c.recv(100) == b""  # closed instead of answering
        c.close()
        c = _client(peer.port)
        c.sendall(b"Hello\r\n")
        assert c.recv(100) == b"again\r\n"
        c.sendall(b"Quiet\r\n")
        c.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.recv(100)
        c.close()
        peer.assert_done()
    finally:
        peer.stop()


def test_tcp_problems_in_the_peers_thread_fail_assert_done():
    peer = ScriptedServer([("Hello", "Hi")], [("Hello", "Hi")])
    try:
        c = _client(peer.port)
        c.sendall(b"Hello\n")  # no CR
        assert c.recv(100) == b"Hi\r\n"
        c.sendall(b"More\r\n")
        c.close()
        c = _client(peer.port)
        c.sendall(b"Goodbye\r\n")
        assert c.recv(100) == b""  # a wrong command: the peer hangs up
        c.close()
        with pytest.raises(TranscriptError) as err:
            peer.assert_done()
        msg = str(err.value)
        assert "connection 1, exchange 1 of 1: command not terminated by b'\\r\\n'" in msg
        assert "connection 1, exchange 2 of 1: got 'More' after the end of the transcript" in msg
        assert "connection 2, exchange 1 of 1: expected 'Hello', got 'Goodbye'" in msg
    finally:
        peer.stop()


def test_serial_stream_silence_unplug_and_unread_bytes():
    port = ScriptedSerial([(b"stop\r\n", b"ok\r\n"), (b"ping\r\n", TIMEOUT), (b"read\r\n", b"1\r\n2\r\n"), (b"go\r\n", CLOSE)], stream=b"7\r\n")
    assert port.in_waiting >= 3 and port.read(3) == b"7\r\n"  # streaming before any command
    port.reset_input_buffer()
    port.write(b"stop\r\n")  # ends the stream
    assert port.read(100) == b"ok\r\n" and port.read(1) == b""
    port.write(b"ping\r\n")
    assert port.in_waiting == 0 and port.read(1) == b""
    port.write(b"read\r\n")
    assert port.read(3) == b"1\r\n"
    with pytest.raises(TranscriptError, match=r"reply bytes left unread: b'2\\r\\n'"):
        ScriptedSerial([]).assert_done(buffered=b"2\r\n")
    port.write(b"go\r\n")
    with pytest.raises(serial.SerialException):
        port.read(1)
    with pytest.raises(TranscriptError, match=r"reply bytes left unread: b'2\\r\\n'"):
        port.assert_done()
    closed = ScriptedSerial([])
    closed.close()
    with pytest.raises(TranscriptError, match="read after close"):
        closed.read(1)
