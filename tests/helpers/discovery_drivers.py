"""Drivers whose discover() misbehaves in every way discovery must survive (tests only)."""

from __future__ import annotations

import threading

from labconsole.sources.base import Discovered, SourceUnavailable
from labconsole.sources.simulated import SimulatedSource

release = threading.Event()  # the hanging driver waits on this; tests set it when done
seen_hints: list[dict] = []


class Good(SimulatedSource):
    driver = "good"

    @classmethod
    def discover(cls, hints=None):
        seen_hints.append(dict(hints or {}))
        return [Discovered(driver="", address="COM7", model="Meter 9000", serial="42", detail="a meter", profile_snippet={"name": "m", "driver": "good"})]


class Crashes(SimulatedSource):
    driver = "crashes"

    @classmethod
    def discover(cls, hints=None):
        raise RuntimeError("the bus fell over")


class NeedsPackage(SimulatedSource):
    driver = "needs"

    @classmethod
    def discover(cls, hints=None):
        import labconsole_no_such_package  # noqa: F401

        return []


class Hangs(SimulatedSource):
    driver = "hangs"

    @classmethod
    def discover(cls, hints=None):
        release.wait(30)
        return []


class Junk(SimulatedSource):
    driver = "junk"

    @classmethod
    def discover(cls, hints=None):
        return [{"driver": "junk"}]


class Absent(SimulatedSource):
    driver = "absent"

    @classmethod
    def discover(cls, hints=None):
        raise SourceUnavailable("no such bus on this host")
