"""Emulators under hostile clients: huge numbers, stalled clients, connection floods, bad ports.

A real PTDaemon answers a bad Go with an error and goes on sampling; a real meter's network
stack does not take half a minute to answer after a burst of connections. The emulators must
do the same, and every emulator refuses a bad start-up argument the same way: one line, exit 2.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import run_cli
from labconsole.emulators import ptd as ptd_emu
from labconsole.emulators import wt310


@pytest.fixture
def ptd():
    handles = []

    def start(**options):
        h = ptd_emu.start({"utilisation": 0.4, "seed": 5, **options})
        handles.append(h)
        return h

    yield start
    for h in handles:
        h.stop()


@pytest.fixture
def meter():
    handles = []

    def start():
        h = wt310.start({"utilisation": 0.5, "seed": 7})
        handles.append(h)
        return h

    yield start
    for h in handles:
        h.stop()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def exchange(sock: socket.socket, command: str, end: bytes = b"\r\n") -> str:
    sock.sendall(command.encode() + b"\r\n")
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, "the emulator closed the connection"
        data += chunk
    return data.decode()


def _port(handle) -> int:
    return int(handle.source_options()["port"])


@pytest.mark.parametrize("go", ["Go,99999999999999999999999,0", "Go,1000,99999999999999999999", "Go,3600001,0"])
def test_a_go_with_a_huge_number_is_an_error_and_sampling_goes_on(ptd, go):
    h = ptd()
    with connect(_port(h)) as s:
        assert exchange(s, "Hello").startswith("Hello")
        assert exchange(s, go).startswith("Error in parameter")
        assert exchange(s, "Go,100,0,ok").startswith("Starting")
        time.sleep(0.8)
        assert exchange(s, "Identify")
        reply = exchange(s, "RL")
        assert "Watts" in reply or "," in reply, reply
        assert sum(1 for t in threading.enumerate() if t.name == "ptd-emulator-sample" and t.is_alive()) >= 1
        assert exchange(s, "Stop").startswith("Stopping")


def test_a_client_holding_half_a_command_blocks_no_one(ptd):
    h = ptd()
    staller = connect(_port(h))
    staller.sendall(b"Iden")  # half a command, never finished
    try:
        t0 = time.monotonic()
        with connect(_port(h), timeout=3) as s:
            assert exchange(s, "Hello").startswith("Hello")
        assert time.monotonic() - t0 < 3
    finally:
        staller.close()


def test_after_300_simultaneous_connections_the_wt310_answers_promptly(meter):
    h = meter()
    port = int(h.resource.split("::")[2])
    socks = []
    try:
        # 300 connections at once, non-blocking (none waits for the previous one), all held open
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        t0 = time.monotonic()
        with connect(port, timeout=60) as c:
            reply = exchange(c, "*IDN?", end=b"\n")
        took = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    assert "WT310" in reply
    # A dropped SYN is retried after 1 s at the soonest: under that, nothing was dropped.
    assert took < 0.9, f"answered after {took:.2f} s (the listen backlog overflowed)"


@pytest.mark.parametrize("argv", [
    ("wt310", "--port", "99999"),
    ("ptd", "-p", "99999"),
    ("wt310", "--port", "-1"),
    ("ptd", "-p", "-5"),
])
def test_port_errors_exit_2_with_one_clear_line_from_every_emulator(argv):
    res = run_cli("emulate", *argv, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"labconsole emulate {argv[0]}: "), res.stderr
    assert "port" in lines[0] and "errors.pydantic.dev" not in lines[0] and "type=" not in lines[0], lines[0]


def test_a_port_in_use_is_the_same_refusal_from_every_emulator():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = str(busy.getsockname()[1])
    try:
        for argv in (("wt310", "--port", port), ("ptd", "-p", port)):
            res = run_cli("emulate", *argv, timeout=60)
            assert res.returncode == 2, (argv, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"labconsole emulate {argv[0]}: ") and "in use" in lines[0], (argv, res.stderr)
    finally:
        busy.close()


HOSTILE_NUMBERS = ["1e999", "-1e999", "nan", "inf", "-1", "99999999999999999999999999", "1e-999", "0", "x"]


def test_the_wt310_answers_every_command_with_a_hostile_number_and_keeps_serving(meter):
    h = meter()
    port = int(h.resource.split("::")[2])
    commands = [":COMMunicate:WAIT {n}", "*ESE {n}", ":STATus:EESE {n}", ":NUMeric:NORMal:NUMber {n}", ":NUMeric:NORMal:VALue? {n}",
                ":SYSTem:TIME {n},1,1", ":RATE {n}", ":INTEGrate:TIMer {n},0,0", ":VOLTage:RANGe {n}", ":CURRent:RANGe {n}",
                ":NUMeric:NORMal:ITEM1 U,{n}", ":NUMeric:NORMal:ITEM{n} U,1"]
    with connect(port) as s:
        for c in commands:
            for n in HOSTILE_NUMBERS:
                # one line, two units: the reply ends with the identity whatever the first did
                assert "WT310" in exchange(s, c.format(n=n) + ";*IDN?", end=b"\n"), c.format(n=n)
        assert not exchange(s, ":STATus:ERRor?", end=b"\n").startswith("0,")  # the errors were queued, as a meter queues them
    # keeps serving: a new client is answered (the old client's thread may already be gone, so
    # asking which threads exist would race with the close above)
    with connect(port) as s:
        assert "WT310" in exchange(s, "*IDN?", end=b"\n")


def test_the_ptd_emulator_answers_every_command_with_a_hostile_number(ptd):
    h = ptd()
    commands = ["Go,{n},0", "Go,1000,{n}", "Go,{n},{n},m", "SR,V,{n}", "SR,A,{n}", "RL,{n}", "RL,*,{n}", "Stop,{n}"]
    with connect(_port(h)) as s:
        for c in commands:
            for n in HOSTILE_NUMBERS:
                reply = exchange(s, c.format(n=n))
                if reply.startswith("Starting"):
                    exchange(s, "Stop")
        assert exchange(s, "Go,100,0,after").startswith("Starting")
        time.sleep(0.5)
        assert "Time," in exchange(s, "RL")  # still sampling
        exchange(s, "Stop")


def test_the_lpm01a_emulator_answers_a_number_no_setting_can_hold_and_goes_on():
    import os
    import tty

    from labconsole.emulators import lpm01a

    e = lpm01a.start({"utilisation": 0.5, "seed": 1})
    fd = os.open(e.path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        os.set_blocking(fd, False)

        def talk(cmd: str, expect: bytes) -> bytes:
            os.write(fd, cmd.encode() + b"\n")
            out, deadline = b"", time.monotonic() + 5
            while expect not in out and time.monotonic() < deadline:
                try:
                    out += os.read(fd, 65536)
                except BlockingIOError:
                    time.sleep(0.02)
            return out

        assert b"ack htc" in talk("htc", b"ack htc")
        for cmd in ("volt inf", "volt 1-99999999", "freq inf", "trigdelay inf", "acqtime -1"):
            assert b"Error detail" in talk(cmd, b"Error detail"), cmd
        assert b"ack powershield" in talk("powershield", b"ack powershield")
    finally:
        os.close(fd)
        e.stop()
