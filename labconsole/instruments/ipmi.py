"""IPMI power readings as `ipmitool` prints them, and the power sensor record an emulated BMC
(OpenIPMI's `ipmi_sim`) is given. No I/O: shared by the `ipmi` driver and the emulator.
Facts: reference/instruments.md §7.2.

DCMI (`ipmitool dcmi power reading`):
    Instantaneous power reading:                   254 Watts
    Minimum during sampling period:                 95 Watts
    Maximum during sampling period:                520 Watts
    Average power reading over sample period:      250 Watts
    IPMI timestamp:                           Thu Dec  4 20:10:11 2025
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated
A power sensor (`ipmitool -c sensor reading NAME`): `NAME,VALUE` (no value: `NAME,`).
Some BMCs advertise DCMI but always report 0 W, or a deactivated reading: both are refused.
"""

from __future__ import annotations

import math
import re

_DCMI = {
    "instant": re.compile(r"^\s*Instantaneous power reading\s*:\s*([0-9.]+)\s*Watts", re.M),
    "average": re.compile(r"^\s*Average power reading over sample period\s*:\s*([0-9.]+)\s*Watts", re.M),
}
_STATE = re.compile(r"^\s*Power reading state is\s*:\s*(\S+)", re.M)


class IpmiParseError(ValueError):
    pass


def parse_dcmi_power(text: str, which: str = "instant") -> float:
    m = _DCMI[which].search(text)
    if m is None:
        raise IpmiParseError(f"no '{'Instantaneous power reading' if which == 'instant' else 'Average power reading'}' line in ipmitool's output ({text.strip()[:80]!r})")
    state = _STATE.search(text)
    if state and state.group(1).lower() != "activated":
        raise IpmiParseError(f"the BMC's power reading is {state.group(1)} (not activated)")
    watts = float(m.group(1))
    if watts == 0:
        raise IpmiParseError("the BMC reports 0 W (some BMCs advertise DCMI but never measure)")
    return watts


def parse_sensor_csv(text: str, name: str) -> float:
    """`ipmitool -c sensor reading NAME` -> its value (W)."""
    for line in text.splitlines():
        head, sep, value = line.strip().rpartition(",")
        if sep and head == name:
            if not value.strip():
                raise IpmiParseError(f"sensor {name!r} has no reading (na)")
            try:
                watts = float(value)
            except ValueError:
                raise IpmiParseError(f"sensor {name!r}: {value!r} is not a number") from None
            if not math.isfinite(watts) or watts < 0:
                raise IpmiParseError(f"sensor {name!r}: {value!r} is not a power reading")
            return watts
    raise IpmiParseError(f"no reading of sensor {name!r} in ipmitool's output ({text.strip()[:80]!r})")


def power_sensor_sdr(record_id: int, sensor_number: int, name: str, watts_per_count: int = 4) -> list[int]:
    """A Full Sensor Record (IPMI 2.0 table 43-1) for an analog power sensor in Watts:
    reading = M x raw with M = `watts_per_count` (raw 0..255), owner 0x20 LUN 0."""
    ident = name.encode("ascii")
    if not 1 <= len(ident) <= 16:
        raise ValueError("sensor name: 1..16 ASCII characters")
    body = [
        0x20, 0x00, sensor_number,  # owner (BMC), LUN, sensor number
        0x15, 0x01,                 # entity: power unit, instance 1
        0x7F, 0x43,                 # initialisation (scanning, events...), capabilities (auto re-arm, no event messages)
        0x0B, 0x01,                 # sensor type: other units-based; reading type: threshold
        0, 0, 0, 0, 0, 0,           # event masks
        0x00, 0x06, 0x00, 0x00,     # unsigned; base unit 6 = Watts; no modifier; linear
        watts_per_count, 0, 0, 0, 0, 0,  # M, M/tolerance, B, B/accuracy, accuracy, R/B exponents
        0,                          # analog characteristics
        100, 200, 50, 0xFF, 0x00,   # nominal, normal max, normal min, sensor max, sensor min (raw)
        0, 0, 0, 0, 0, 0, 0, 0,     # thresholds, hysteresis
        0, 0, 0,                    # reserved, OEM
        0xC0 | len(ident), *ident,  # ID string: 8-bit ASCII
    ]
    return [record_id & 0xFF, record_id >> 8, 0x51, 0x01, len(body), *body]
