"""Driver name (the profile's `driver:`) -> source class, imported only when used.

Lazy on purpose: `labconsole --help` must not import PyVISA or NVML.
"""

from __future__ import annotations

import importlib

from labconsole.sources.base import Source

# name -> "module:Class". New drivers register here (one line each).
DRIVERS: dict[str, str] = {
    "simulated": "labconsole.sources.simulated:SimulatedSource",
    "yokogawa": "labconsole.sources.yokogawa:YokogawaSource",
    "lpm01a": "labconsole.sources.lpm01a:Lpm01aSource",
    "nvml": "labconsole.sources.nvml:NvmlSource",
    "rapl": "labconsole.sources.rapl:RaplSource",
    "ptd": "labconsole.sources.ptd:PtdSource",
    "redfish": "labconsole.sources.redfish:RedfishSource",
    "prometheus": "labconsole.sources.prometheus:PrometheusSource",
    "ipmi": "labconsole.sources.ipmi:IpmiSource",
    "fleet": "labconsole.sources.fleet:FleetSource",
    "director": "labconsole.sources.director:DirectorSource",
    "replay": "labconsole.sources.replay:ReplaySource",
}


class UnknownDriver(KeyError):
    pass


def driver_names() -> list[str]:
    return sorted(DRIVERS)


def get_driver(name: str) -> type[Source]:
    try:
        target = DRIVERS[name]
    except KeyError:
        raise UnknownDriver(name) from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def create_source(name: str, driver: str, options: dict | None, sample_interval_s: float) -> Source:
    """Build a source from a profile entry (options already validated by the profile loader)."""
    cls = get_driver(driver)
    opts = cls.Options.model_validate(options or {})
    return cls.implementation(opts)(name=name, options=opts, sample_interval_s=sample_interval_s)
