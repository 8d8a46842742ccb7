"""A real PowerShield, when one is attached: `pytest -m hardware --device-address /dev/ttyACM0`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labconsole.samples.batch import OK
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource


@pytest.mark.hardware
@pytest.mark.parametrize("fmt, hz", [("ascii_dec", 1000), ("bin_hexa", 50000)])
def test_real_board_streams_at_its_rate(request, fmt, hz):
    port = request.config.getoption("--device-address")
    output = "energy" if hz <= 10000 else "current"
    src = Lpm01aSource("dut", Lpm01aOptions(port=port, format=fmt, frequency_hz=hz, output=output))
    src.open()
    try:
        ident = src.identify()
        assert ident.serial and ident.firmware
        parts, t0 = [], time.monotonic()
        while time.monotonic() - t0 < 3:
            parts.extend(cb.samples for cb in src.read(0.5))
    finally:
        src.close()
    batch = np.concatenate(parts)
    assert len(batch) >= 2 * hz
    assert np.count_nonzero(batch["status"] == OK) >= 0.99 * len(batch), src.diagnostics()
    assert src.counters["timestamps"] >= 1, "no TimeStamp lines/frames seen: check the stream format"
    assert src.counters["dropped"] == 0, src.diagnostics()
