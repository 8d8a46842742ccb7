"""Redfish (DMTF) power telemetry: where a BMC publishes a chassis's power, and how to read it.

Shared by the `redfish` driver (`labconsole.sources.redfish`) and the BMC emulator
(`labconsole.emulators.redfish`); no I/O here. Facts: reference/instruments.md §7.1.

Forms a BMC may offer (the driver tries them in this order with `form: auto`):
    environment    /redfish/v1/Chassis/{id}/EnvironmentMetrics -> PowerWatts.Reading (W) and, where
                   present, EnergyJoules.Reading (J) or EnergykWh.Reading (kWh): the newer model
    power          /redfish/v1/Chassis/{id}/Power -> PowerControl[0].PowerConsumedWatts (legacy,
                   deprecated but what most BMCs in the field still serve)
    powersubsystem /redfish/v1/Chassis/{id}/PowerSubsystem -> PowerSupplies -> each supply's
                   Metrics -> InputPowerWatts.Reading, summed (input side: what the wall sees)
    sensor         /redfish/v1/Chassis/{id}/Sensors/{sensor} -> Reading, with ReadingType Power
Sessions: POST /redfish/v1/SessionService/Sessions {UserName, Password} -> X-Auth-Token header
and a Location to DELETE at logout; or HTTP basic auth on every request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
CHASSIS = f"{ROOT}/Chassis"
MANAGERS = f"{ROOT}/Managers"
FORMS = ("environment", "power", "powersubsystem", "sensor")
KWH_J = 3.6e6


def chassis_path(chassis: str) -> str:
    return f"{CHASSIS}/{chassis}"


def form_path(form: str, chassis: str, sensor: str | None = None) -> str:
    base = chassis_path(chassis)
    if form == "environment":
        return f"{base}/EnvironmentMetrics"
    if form == "power":
        return f"{base}/Power"
    if form == "powersubsystem":
        return f"{base}/PowerSubsystem"
    if form == "sensor":
        return f"{base}/Sensors/{sensor or 'PowerSys'}"
    raise ValueError(f"unknown Redfish power form {form!r} (known: {', '.join(FORMS)})")


class RedfishPayloadError(ValueError):
    """A resource that does not hold a power reading where the form says it should."""


@dataclass
class PowerReading:
    watts: float
    energy_j: float = math.nan  # the BMC's own energy counter, where it keeps one


def _number(value: Any, where: str) -> float:
    # bool is an int in Python: a `true` reading is garbage, not 1 W
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RedfishPayloadError(f"{where}: {value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise RedfishPayloadError(f"{where}: {value!r} is not a power reading")
    return x


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(k, int):
            if not isinstance(d, list) or len(d) <= k:
                return None
            d = d[k]
        else:
            if not isinstance(d, dict):
                return None
            d = d.get(k)
    return d


def parse_environment(payload: Any) -> PowerReading:
    w = _get(payload, "PowerWatts", "Reading")
    if w is None:
        raise RedfishPayloadError("EnvironmentMetrics has no PowerWatts.Reading")
    reading = PowerReading(_number(w, "PowerWatts.Reading"))
    j = _get(payload, "EnergyJoules", "Reading")
    kwh = _get(payload, "EnergykWh", "Reading")
    if j is not None:
        reading.energy_j = _number(j, "EnergyJoules.Reading")
    elif kwh is not None:
        reading.energy_j = _number(kwh, "EnergykWh.Reading") * KWH_J
    return reading


def parse_power(payload: Any, control: int = 0) -> PowerReading:
    ctl = _get(payload, "PowerControl", control)
    if ctl is None:
        raise RedfishPayloadError(f"Power has no PowerControl[{control}]")
    w = _get(ctl, "PowerConsumedWatts")
    if w is None:
        raise RedfishPayloadError(f"Power.PowerControl[{control}] has no PowerConsumedWatts (the BMC does not measure it)")
    return PowerReading(_number(w, f"PowerControl[{control}].PowerConsumedWatts"))


def parse_sensor(payload: Any) -> PowerReading:
    kind = _get(payload, "ReadingType")
    if kind not in (None, "Power"):
        raise RedfishPayloadError(f"sensor {_get(payload, 'Id')!r} reads {kind}, not Power")
    units = _get(payload, "ReadingUnits")
    if units not in (None, "W"):
        raise RedfishPayloadError(f"sensor {_get(payload, 'Id')!r} reads in {units!r}, not W")
    w = _get(payload, "Reading")
    if w is None:
        raise RedfishPayloadError("sensor has no Reading")
    return PowerReading(_number(w, "Sensor.Reading"))


def supply_links(payload: Any) -> list[str]:
    """PowerSubsystem -> the PowerSupplies collection's path."""
    link = _get(payload, "PowerSupplies", "@odata.id")
    if not isinstance(link, str):
        raise RedfishPayloadError("PowerSubsystem has no PowerSupplies link")
    return [link]


def members(payload: Any) -> list[str]:
    out = []
    for m in _get(payload, "Members") or []:
        link = _get(m, "@odata.id")
        if isinstance(link, str):
            out.append(link)
    return out


def parse_supply_metrics(payload: Any) -> float:
    w = _get(payload, "InputPowerWatts", "Reading")
    if w is None:
        raise RedfishPayloadError("PowerSupplyMetrics has no InputPowerWatts.Reading")
    return _number(w, "InputPowerWatts.Reading")


# --- what an emulated BMC serves (the same shapes the parsers above read) -------------------------
def odata(path: str, type_: str, **fields: Any) -> dict[str, Any]:
    return {"@odata.id": path, "@odata.type": type_, **fields}


def service_root(uuid: str) -> dict[str, Any]:
    return odata(ROOT, "#ServiceRoot.v1_15_0.ServiceRoot", Id="RootService", Name="Root Service", RedfishVersion="1.17.0", UUID=uuid,
                 Chassis={"@odata.id": CHASSIS}, Managers={"@odata.id": MANAGERS},
                 SessionService={"@odata.id": f"{ROOT}/SessionService"}, Links={"Sessions": {"@odata.id": SESSIONS}})


def collection(path: str, type_: str, links: list[str]) -> dict[str, Any]:
    return odata(path, type_, Name=path.rsplit("/", 1)[-1], Members=[{"@odata.id": p} for p in links], **{"Members@odata.count": len(links)})


def chassis_resource(chassis: str, model: str, serial: str, manufacturer: str) -> dict[str, Any]:
    base = chassis_path(chassis)
    return odata(base, "#Chassis.v1_23_0.Chassis", Id=chassis, Name="Computer System Chassis", ChassisType="RackMount",
                 Manufacturer=manufacturer, Model=model, SerialNumber=serial, PowerState="On",
                 Power={"@odata.id": f"{base}/Power"}, PowerSubsystem={"@odata.id": f"{base}/PowerSubsystem"},
                 EnvironmentMetrics={"@odata.id": f"{base}/EnvironmentMetrics"}, Sensors={"@odata.id": f"{base}/Sensors"})


def environment_resource(chassis: str, watts: float, energy_j: float) -> dict[str, Any]:
    return odata(form_path("environment", chassis), "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics", Id="EnvironmentMetrics", Name="Chassis Environment Metrics",
                 PowerWatts={"Reading": round(watts, 3), "DataSourceUri": f"{chassis_path(chassis)}/Sensors/PowerSys"},
                 EnergyJoules={"Reading": round(energy_j, 3)}, EnergykWh={"Reading": energy_j / KWH_J})


def power_resource(chassis: str, watts: float, capacity_w: float) -> dict[str, Any]:
    path = form_path("power", chassis)
    return odata(path, "#Power.v1_7_1.Power", Id="Power", Name="Power",
                 PowerControl=[{"@odata.id": f"{path}#/PowerControl/0", "MemberId": "0", "Name": "System Power Control",
                                "PowerConsumedWatts": round(watts), "PowerCapacityWatts": capacity_w,
                                "PowerMetrics": {"IntervalInMin": 1, "AverageConsumedWatts": round(watts), "MinConsumedWatts": round(watts), "MaxConsumedWatts": round(watts)}}])


def sensor_resource(chassis: str, sensor: str, watts: float) -> dict[str, Any]:
    return odata(form_path("sensor", chassis, sensor), "#Sensor.v1_7_0.Sensor", Id=sensor, Name="System Power", ReadingType="Power",
                 ReadingUnits="W", Reading=round(watts, 3), Status={"State": "Enabled", "Health": "OK"})
