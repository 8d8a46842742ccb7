"""The driver through PyVISA-sim, with the WT310E YAML shipped in the package."""

from __future__ import annotations

import pyvisa

from labconsole.emulators.wt310 import SIM_YAML
from labconsole.sources.yokogawa import YokogawaSource

LIB = f"{SIM_YAML}@sim"


def test_sim_yaml_ships_in_the_package_and_parses():
    assert SIM_YAML.is_file()
    rm = pyvisa.ResourceManager(LIB)
    res = rm.open_resource("GPIB0::7::INSTR", read_termination="\n", write_termination="\n", timeout=500)
    try:
        assert res.query("*IDN?") == "YOKOGAWA,WT310E,SIM0000001,F1.04-SIM"
    finally:
        res.close()


def test_discover_identifies_each_resource_and_offers_a_profile_snippet():
    found = YokogawaSource.discover({"visa_library": LIB, "timeout_s": 0.5})
    assert len(found) == 3
    assert {d.model for d in found} == {"WT310E"}
    assert all(d.status == "available" and d.serial == "SIM0000001" for d in found)
    usb = [d for d in found if d.address.startswith("USB")][0]
    assert "0x0B21" in usb.address
    snippet = usb.profile_snippet
    assert snippet["driver"] == "yokogawa"
    assert snippet["options"] == {"resource": usb.address, "visa_library": LIB}
    # the snippet is a valid source for a profile
    YokogawaSource.Options.model_validate(snippet["options"])


def test_open_identify_read_and_range_through_pyvisa_sim():
    opts = YokogawaSource.Options(resource="USB0::0x0B21::0x0025::SIM0000001::INSTR", visa_library=LIB, timeout_s=0.5)
    src = YokogawaSource("wall", opts, sample_interval_s=1.0)
    src.open()
    try:
        ident = src.identify()
        assert (ident.model, ident.serial, ident.extra["emulated"]) == ("WT310E", "SIM0000001", True)
        (cb,) = src.read(2.0)
        s = cb.samples[0]
        assert (s["watts"], s["volts"], s["range_v"], s["range_a"]) == (85.21, 230.12, 300.0, 1.0)
        rs = src.set_ranges(volts=120.0, amps=0.3, auto=False)
        assert (rs.volts, rs.amps, rs.auto_v, rs.auto_a) == (150.0, 0.5, False, False)
        assert src.zero_check()["ok"]
    finally:
        src.close()


def test_discover_tolerates_a_library_that_does_not_load(tmp_path):
    bad = tmp_path / "missing.yaml"
    found = YokogawaSource.discover({"visa_library": f"{bad}@sim", "timeout_s": 0.2})
    assert len(found) == 1 and found[0].status == "error"
