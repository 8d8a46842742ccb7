"""The `ipmi` driver: through the real `ipmitool` against OpenIPMI's real `ipmi_sim` (a power
sensor the test drives), refused credentials, a BMC that stops answering, a sensor that does
not exist; DCMI readings as ipmitool prints them (verbatim formats), through a stand-in
ipmitool where no simulator offers DCMI; garbage output."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from labconsole.emulators.ipmi import IpmiEmulatorOptions, IpmiSimulator, ipmi_sim_binary
from labconsole.instruments import ipmi
from labconsole.sources.base import SourceError
from labconsole.sources.registry import create_source

needs_sim = pytest.mark.skipif(ipmi_sim_binary() is None or shutil.which("ipmitool") is None,
                               reason="needs ipmi_sim and ipmitool (apt-get install openipmi ipmitool; .ci/run installs them)")

DCMI = """
    Instantaneous power reading:                   254 Watts
    Minimum during sampling period:                 95 Watts
    Maximum during sampling period:                520 Watts
    Average power reading over sample period:      250 Watts
    IPMI timestamp:                           Thu Dec  4 20:10:11 2025
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated

"""


@pytest.fixture(scope="module")
def bmc():
    if ipmi_sim_binary() is None or shutil.which("ipmitool") is None:
        pytest.skip("needs ipmi_sim and ipmitool (apt-get install openipmi ipmitool; .ci/run installs them)")
    sim = IpmiSimulator(IpmiEmulatorOptions(utilisation=0.0, noise_w=0.0, update_s=0.2)).start()
    try:
        yield sim
    finally:
        sim.stop()


def source(sim, **opts):
    base = {"host": "127.0.0.1", "port": sim.port, "interface": "lan", "username": "admin", "password": "labconsole",
            "reading": "sensor", "sensor": "Sys Power", "timeout_s": 2}
    return create_source("node4", "ipmi", dict(base, **opts), 0.2)


@needs_sim
def test_sensor_reading_follows_what_the_test_drives(bmc):
    src = source(bmc)
    src.open()
    try:
        ident = src.identify()
        assert ident.vendor == "MontaVista Software, Inc." and ident.extra["ipmi_version"] == "2.0"
        for watts in (200, 480, 312):
            bmc.set_watts(watts)
            time.sleep(0.4)  # ipmi_sim polls the sensor file
            [batch] = src.read(2.0)
            assert batch.samples["watts"][0] == pytest.approx(watts, abs=4)  # the sensor's resolution: 4 W per count
    finally:
        bmc.set_watts(None)
        src.close()


@needs_sim
def test_password_from_the_environment_never_on_the_command_line(bmc, monkeypatch):
    monkeypatch.setenv("BMC_PASSWORD", "labconsole")
    src = source(bmc, password="", password_env="BMC_PASSWORD")
    src.open()
    assert "labconsole" not in " ".join(src._argv("mc", "info"))
    src.close()


@needs_sim
def test_refused_credentials_are_named(bmc):
    with pytest.raises(SourceError, match="refused the session"):
        source(bmc, password="wrong").open()


@needs_sim
def test_missing_sensor_is_named(bmc):
    with pytest.raises(SourceError, match="NoSuch"):
        source(bmc, sensor="NoSuch").open()


@needs_sim
def test_a_bmc_that_stops_answering_times_out(bmc):
    src = source(bmc, timeout_s=1)
    src.open()
    try:
        bmc.set_offline(True)
        t = time.monotonic()
        with pytest.raises(SourceError, match="BMC at 127.0.0.1"):
            src.read(1.0)
        assert time.monotonic() - t < 10
        bmc.set_offline(False)
        assert src.read(3.0)[0].samples["watts"][0] > 0
    finally:
        bmc.set_offline(False)
        src.close()


def test_dcmi_lines_as_ipmitool_prints_them():
    assert ipmi.parse_dcmi_power(DCMI) == 254.0
    assert ipmi.parse_dcmi_power(DCMI, "average") == 250.0
    with pytest.raises(ipmi.IpmiParseError, match="deactivated"):
        ipmi.parse_dcmi_power(DCMI.replace("activated", "deactivated"))
    with pytest.raises(ipmi.IpmiParseError, match="0 W"):
        ipmi.parse_dcmi_power(DCMI.replace(" 254 Watts", " 0 Watts"))
    with pytest.raises(ipmi.IpmiParseError, match="no 'Instantaneous power reading'"):
        ipmi.parse_dcmi_power("Error: DCMI is not supported\n")


@pytest.mark.parametrize("text, message", [("Sys Power,\n", "no reading"), ("Sys Power,abc\n", "not a number"), ("Other,12\n", "no reading of sensor"), ("Sys Power,-5\n", "not a power reading")])
def test_sensor_garbage(text, message):
    with pytest.raises(ipmi.IpmiParseError, match=message):
        ipmi.parse_sensor_csv(text, "Sys Power")


def fake_ipmitool(tmp_path: Path, output: str, rc: int = 0, sleep_s: float = 0.0) -> str:
    """A stand-in ipmitool that prints what a DCMI BMC's would (and records its arguments)."""
    script = tmp_path / "ipmitool"
    (tmp_path / "out.txt").write_text(output)
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/args.txt"\n'
        f'echo "pw=$IPMI_PASSWORD" >> "{tmp_path}/args.txt"\n'
        + (f"exec sleep {sleep_s}\n" if sleep_s else "")  # exec: the timeout's kill ends the sleep too
        + 'case "$*" in *"mc info"*) printf "Manufacturer Name : ACME\\nProduct Name : R760\\nFirmware Revision : 7.10\\n"; exit 0;; esac\n'
        f'cat "{tmp_path}/out.txt"\nexit {rc}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_dcmi_through_the_driver(tmp_path):
    tool = fake_ipmitool(tmp_path, DCMI)
    src = create_source("n", "ipmi", {"host": "10.0.0.7", "username": "root", "password": "calvin", "ipmitool": tool}, 0.1)
    src.open()
    try:
        assert src.read(1.0)[0].samples["watts"][0] == 254.0
        assert src.identify().model == "R760"
    finally:
        src.close()
    args = (tmp_path / "args.txt").read_text()
    assert "-I lanplus -H 10.0.0.7 -p 623 -E" in args and "dcmi power reading" in args
    assert "calvin" not in args.replace("pw=calvin", "")  # the password only in the environment


def test_ipmitool_failure_and_timeout(tmp_path):
    tool = fake_ipmitool(tmp_path, "Error: Unable to establish IPMI v2 / RMCP+ session\n", rc=1)
    with pytest.raises(SourceError, match="refused the session"):
        create_source("n", "ipmi", {"host": "10.0.0.7", "ipmitool": tool}, 0.1).open()
    d = tmp_path / "slow"
    d.mkdir()
    tool = fake_ipmitool(d, DCMI, sleep_s=10)
    t = time.monotonic()
    with pytest.raises(SourceError, match="no answer within"):
        create_source("n", "ipmi", {"host": "10.0.0.7", "ipmitool": tool, "timeout_s": 0.5}, 0.1).open()
    assert time.monotonic() - t < 8


def test_no_ipmitool(tmp_path):
    with pytest.raises(SourceError, match="ipmitool is not installed"):
        create_source("n", "ipmi", {"host": "10.0.0.7", "ipmitool": str(tmp_path / "nope")}, 0.1).open()
    assert os.environ.get("IPMI_PASSWORD") is None
