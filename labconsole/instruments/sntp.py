"""SNTP (RFC 4330) on the wire: the 48-byte packet and NTP's 64-bit timestamps, shared by the
client (`labconsole.sources.sntp`) and the loopback responder (`labconsole.emulators.sntp`)."""

from __future__ import annotations

import struct

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
NTP_PORT = 123
PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes


def to_ntp(ns: int) -> int:
    secs, rem = divmod(ns, 1_000_000_000)
    return ((secs + NTP_EPOCH_OFFSET) << 32) | ((rem << 32) // 1_000_000_000)


def from_ntp(value: int) -> float:
    """NTP 64-bit timestamp -> Unix seconds (float)."""
    return (value >> 32) - NTP_EPOCH_OFFSET + (value & 0xFFFFFFFF) / 2**32
