"""An instrument named by its address: asked for its identity and nothing else (never a scan),
against `labconsole emulate wt310` and `labconsole emulate ptd` on loopback (pyvisa-py's
TCPIP SOCKET resource to the meter emulator, TCP to the PTDaemon look-alike)."""

from __future__ import annotations

import json

from conftest import run_cli
from helpers.emulate_cli import emulate

from labconsole.sources.discovery import address_kind, host_addresses, probe_address


def test_address_kinds_and_what_a_host_is_asked():
    assert address_kind("TCPIP::10.0.0.5::INSTR") == "visa"
    assert address_kind("TCPIP0::10.0.0.5::5025::SOCKET") == "visa"
    assert address_kind("GPIB0::7::INSTR") == "visa" and address_kind("ASRL/dev/ttyUSB0::INSTR") == "visa"
    assert address_kind("10.0.0.5:8888") == "hostport" and address_kind("[fe80::1]:8888") == "hostport"
    assert address_kind("simulated") is None and address_kind("emulator:wt310") is None and address_kind("10.0.0.5") is None
    # a host alone: VXI-11, the SCPI socket port, PTDaemon's port; with a port: that port only
    assert host_addresses("10.0.0.5") == ["TCPIP::10.0.0.5::INSTR", "TCPIP::10.0.0.5::5025::SOCKET", "10.0.0.5:8888"]
    assert host_addresses("10.0.0.5:7000") == ["10.0.0.5:7000"]


def test_a_wt310_socket_and_a_ptdaemon_answer_with_their_identity():
    with emulate("wt310") as port:
        d = probe_address(f"TCPIP::127.0.0.1::{port}::SOCKET")
        assert (d.status, d.driver, d.model, d.serial) == ("available", "yokogawa", "WT310E", "EMU0000001"), d
        assert d.profile_snippet["options"] == {"resource": f"TCPIP::127.0.0.1::{port}::SOCKET"}
        # HOST:PORT where no PTDaemon answers, but a meter's SCPI socket does
        d = probe_address(f"127.0.0.1:{port}")
        assert d.status == "available" and d.driver == "yokogawa" and d.address == f"TCPIP::127.0.0.1::{port}::SOCKET"
    with emulate("ptd") as port:
        d = probe_address(f"127.0.0.1:{port}")
        assert (d.status, d.driver) == ("available", "ptd"), d
        assert "EMU" in d.serial and d.profile_snippet["options"] == {"host": "127.0.0.1", "port": port}
    d = probe_address(f"127.0.0.1:{port}")  # gone: says so, in words
    assert d.status == "error" and "refused" in d.detail
    assert probe_address("not an address").status == "error"


def test_discover_host_asks_the_named_host_and_lists_what_answered():
    with emulate("wt310") as port:
        out = run_cli("discover", "--json", "--host", f"127.0.0.1:{port}")
        assert out.returncode == 0, out.stderr
        finds = json.loads(out.stdout)
        meters = [d for d in finds if d["driver"] == "yokogawa"]
        assert meters and meters[0]["status"] == "available" and meters[0]["model"] == "WT310E"
        text = run_cli("discover", "--host", f"127.0.0.1:{port}").stdout
        assert f"TCPIP::127.0.0.1::{port}::SOCKET" in text and "WT310E" in text
    out = run_cli("discover", "--host", "10.0.0.0/24")
    assert out.returncode == 2 and "--host" in out.stderr  # a range is refused: nothing is scanned
