"""The `redfish` driver (DMTF's library) against the Redfish BMC emulator, a real HTTP(S) server
on loopback: every power form, session and basic auth, refused credentials, TLS verified with
a test CA (trustme) and refused without it, a BMC that answers late, garbage, a BMC going away."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from labconsole.emulators import redfish as emulator
from labconsole.sources.base import SourceError
from labconsole.sources.httpclock import ClockBounds
from labconsole.sources.registry import create_source

trustme = pytest.importorskip("trustme", reason="trustme (the [test] extra) makes the test CA for the TLS tests")


@pytest.fixture
def bmcs():
    h = emulator.start({"systems": 3, "utilisation": 0.5, "update_s": 0.1, "seed": 7, "noise_w": 0.0, "spread": 0.2})
    try:
        yield h.emulator
    finally:
        h.stop()


@pytest.fixture
def tls_bmc(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "bmc.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    h = emulator.start({"tls_cert": str(tmp_path / "bmc.pem"), "tls_key": str(tmp_path / "bmc.pem"), "utilisation": 0.0, "noise_w": 0.0})
    try:
        yield h.emulator, str(tmp_path / "ca.pem")
    finally:
        h.stop()


def source(url, **opts):
    return create_source("node", "redfish", {"url": url, "username": "admin", "password": "labconsole", "timeout_s": 2, **opts}, 0.1)


def one_reading(src):
    src.open()
    try:
        [batch] = src.read(2.0)
        return src, batch.samples
    finally:
        src.close()


@pytest.mark.parametrize("form", ["environment", "power", "powersubsystem", "sensor"])
@pytest.mark.parametrize("auth", ["session", "basic"])
def test_every_form_and_auth_reads_the_chassis_power(bmcs, form, auth):
    system = bmcs.systems[2]
    expected = system.model.expected_watts(0.5)  # no noise: idle + dynamic x 0.5, this system's share of the spread
    src, s = one_reading(source(bmcs.urls[2], form=form, auth=auth))
    assert src.form == form and s["status"][0] == 0
    assert s["watts"][0] == pytest.approx(expected, abs=0.6)  # legacy Power rounds to whole watts
    assert src.identify().serial == "EMU0003"
    assert math.isnan(s["energy_j"][0]) != (form == "environment")  # the energy counter only where the BMC keeps one
    assert system.sessions == {}  # the session was deleted at close


def test_auto_prefers_environment_metrics_and_systems_differ(bmcs):
    watts = [one_reading(source(u))[1]["watts"][0] for u in bmcs.urls]
    assert watts[0] < watts[1] < watts[2]  # spread: each system its own load


@pytest.mark.parametrize("auth", ["session", "basic"])
def test_refused_credentials_are_named(bmcs, auth):
    src = source(bmcs.urls[0], auth=auth, password="wrong")
    with pytest.raises(SourceError, match=r"refused user 'admin' \(401\)"):
        src.open()


def test_password_from_the_environment(bmcs, monkeypatch):
    monkeypatch.setenv("BMC_PW", "labconsole")
    src = create_source("n", "redfish", {"url": bmcs.urls[0], "username": "admin", "password_env": "BMC_PW"}, 0.1)
    assert one_reading(src)[1]["watts"][0] > 0
    monkeypatch.delenv("BMC_PW")
    with pytest.raises(SourceError, match="BMC_PW"):
        create_source("n", "redfish", {"url": bmcs.urls[0], "username": "admin", "password_env": "BMC_PW"}, 0.1).open()


def test_tls_verified_with_the_bmcs_ca(tls_bmc):
    emu, ca = tls_bmc
    assert emu.urls[0].startswith("https://")
    src, s = one_reading(source(emu.urls[0], ca_file=ca))
    assert s["watts"][0] == pytest.approx(250.0, abs=0.01)


def test_tls_untrusted_certificate_is_refused_by_default(tls_bmc):
    emu, _ = tls_bmc
    with pytest.raises(SourceError, match="TLS certificate not trusted"):
        source(emu.urls[0]).open()
    # the explicit way out for a lab BMC with a self-signed certificate
    assert one_reading(source(emu.urls[0], verify_tls=False))[1]["watts"][0] > 0


def test_plain_http_client_against_a_tls_bmc_fails_clearly(tls_bmc):
    emu, _ = tls_bmc
    with pytest.raises(SourceError, match="BMC at http://"):
        source(emu.urls[0].replace("https://", "http://")).open()


def test_a_late_bmc_times_out(bmcs):
    src = source(bmcs.urls[0], timeout_s=0.3)
    src.open()
    try:
        bmcs.systems[0].delay_s = 1.0
        with pytest.raises(SourceError, match="timed out|no reply"):
            src.read(2.0)
        bmcs.systems[0].delay_s = 0.0
        time.sleep(1.0)  # the late reply's thread finishes
        assert src.read(2.0)[0].samples["watts"][0] > 0  # and the next poll works again
    finally:
        src.close()


def test_garbage_replies(bmcs):
    src = source(bmcs.urls[1])
    src.open()
    try:
        bmcs.systems[1].garbage = True
        with pytest.raises(SourceError, match="not JSON|invalid JSON"):
            src.read(2.0)
    finally:
        bmcs.systems[1].garbage = False
        src.close()


def test_nothing_listening(bmcs):
    url = bmcs.urls[0]
    bmcs.stop()
    with pytest.raises(SourceError, match="refused|BMC at"):
        source(url).open()


def test_a_form_the_bmc_lacks_is_named(bmcs):
    with pytest.raises(SourceError, match="offers no power reading.*sensor.*HTTP 404"):
        source(bmcs.urls[0], form="sensor", sensor="NoSuchSensor").open()


def test_clock_bounds_narrow_to_the_bmc_offset():
    c = ClockBounds()
    true_offset = 2.3
    for k in range(40):
        t1 = 1_700_000_000.0 + k * 0.137
        remote = t1 + 0.001 + true_offset
        c.add(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(math.floor(remote))), t1, t1 + 0.002)
    assert abs(c.estimate() - true_offset) < 0.1 and c.uncertainty() < 0.1


def test_bmc_clock_offset_measured(bmcs):
    h = emulator.start({"clock_offset_ms": 3000, "update_s": 0.1})
    try:
        src = source(h.emulator.urls[0])
        src.open()
        try:
            for _ in range(12):
                src.read(1.0)
            assert src.clock_offset_s() == pytest.approx(3.0, abs=0.6)
        finally:
            src.close()
    finally:
        h.stop()


def test_emulate_redfish_command():
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "redfish", "--systems", "2", "--utilisation", "0.2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "NOT a measurement" in lines[0] and "2 BMC(s)" in lines[0]
        urls = [ln.split("/redfish")[0] for ln in lines[1:]]
        assert all(u.startswith("http://127.0.0.1:") for u in urls) and len(set(urls)) == 2
        assert one_reading(source(urls[1]))[1]["watts"][0] > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()
