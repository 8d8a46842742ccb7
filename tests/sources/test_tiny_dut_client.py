"""The host side of the Tiny DUT protocol (`labconsole.sources.tiny_dut`) against the emulated DUT."""

from __future__ import annotations

import pytest

from labconsole.emulators import tiny_dut
from labconsole.sources.tiny_dut import DutError, TinyDut


@pytest.mark.parametrize("via_io", [False, True], ids=["direct", "io-manager"])
def test_identify_load_infer_and_dut_errors(via_io):
    emu = tiny_dut.start({"mode": "energy" if via_io else "performance", "io_manager": via_io, "speed": 50, "inference_ms": 1, "boot_ms": 1})
    log: list[str] = []
    dut = TinyDut(emu.path, via_io=via_io, timeout_s=5, log=log.append)
    dut.open()
    try:
        dut.drain(0.3)  # the boot lines, if they came after the port opened (opening flushes input)
        assert dut.identify() == {"name": "labconsole emulated DUT", "profile": "ULPMark for tinyML Firmware V0.0.1", "model": "kws01"}
        data = bytes(range(100))
        dut.load(data)
        assert bytes(emu.buffer) == data  # 26- or 31-byte chunks, appended in order
        r = dut.infer(20, 2, timeout_s=10)
        assert "m-infer-done" in r.lines and any(ln.startswith("m-results-[") for ln in r.lines)
        with pytest.raises(DutError, match="exceeds maximum of 27648"):
            dut.load(bytes(30000))
        with pytest.raises(DutError, match="Inference iterations must be >0"):
            dut.infer(0, 1, timeout_s=5)
        assert any(line.startswith("-> ") for line in log) and any(line.startswith("<- ") for line in log)
    finally:
        dut.close()
        emu.stop()
