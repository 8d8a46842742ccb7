"""The `rapl` source: CPU energy counters through Linux powercap (Intel RAPL, and AMD Zen via the same driver).

Each powercap zone (`intel-rapl:0` = package-0, `intel-rapl:0:0` = its core, uncore or dram
sub-zone, `psys` = the platform) is one channel. A zone's `energy_uj` counts microjoules and wraps
to 0 after `max_energy_range_uj` (about a minute at high power on some parts): the counter is read
at least every `poll_s` so no wrap is missed, and `energy_j` is the energy since the source opened.
`watts` are counter differences over time, labelled `counter`. RAPL is a model inside the CPU, not
a meter, and covers only its domains.

A source's channels are summed by the analysis, so the default selection is the domains that do
not overlap: every package and every dram domain. Sub-zones (core, uncore) are inside their
package and psys contains everything: asking for a zone together with one that contains it is
refused (put it in a second source instead).
"""

from __future__ import annotations

import errno
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from labconsole.samples.batch import ERROR, ChannelBatch, one_sample
from labconsole.sources.base import Capabilities, Discovered, DriverOptions, Identity, SourceError, SourceUnavailable
from labconsole.sources.counters import EnergyCounter, PollingSource, UpdatePeriod, infer_update_period

DEFAULT_ROOT = "/sys/class/powercap"
CPUINFO = "/proc/cpuinfo"
ZONE_RE = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+(?::\d+)*)$")
KINDS = ("package", "core", "uncore", "dram", "psys")
FALLBACK_MAX_W = 1000.0  # for telling a wrap from several when a zone declares no power limit

PERMISSION_HELP = (
    "Since Linux 5.10 the RAPL energy counters (energy_uj) are readable by root only, to close the "
    "PLATYPUS power side channel (CVE-2020-8694). To measure: run labconsole as root; or make the "
    "counters readable at boot with a udev rule or sysfsutils (/etc/sysfs.conf: "
    "`mode class/powercap/intel-rapl:0/energy_uj = 0444`, one line per zone), or for this boot only "
    "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj`; "
    "or give this Python the capability to read any file: "
    "`sudo setcap cap_dac_read_search+ep \"$(readlink -f \"$(command -v python3)\")\"`. "
    "Opening the counters to every user re-opens that side channel: do it on a benchmark machine only."
)


class RaplOptions(DriverOptions):
    domains: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="domains by channel name (package-0, package-0.dram), zone (intel-rapl:0:1) or kind "
        "(package, core, uncore, dram, psys); default: every package and dram domain",
    )
    root: str = Field(DEFAULT_ROOT, min_length=1, max_length=4096, description="the powercap folder (a test can point it elsewhere)")
    infer_update_period: bool = Field(True, description="measure the counters' real update period at open (tight polling)")
    inference_s: float = Field(0.25, ge=0.02, le=30)
    poll_s: float = Field(1.0, gt=0, le=10, description="read the counters at least this often between samples, so no wrap is missed")


class _Unreadable(Exception):
    """A sysfs file could not be read or did not hold a number (message says which and why)."""

    def __init__(self, message: str, permission: bool = False, missing: bool = False):
        super().__init__(message)
        self.permission = permission
        self.missing = missing


def read_sysfs_text(path: Path) -> str:
    """One sysfs attribute's text. (Tests running as root wrap this to see permissions as a user would.)"""
    with open(path, "rb") as f:
        return f.read(4096).decode("ascii", "replace")


def _read(path: Path) -> str:
    try:
        return read_sysfs_text(path).strip()
    except PermissionError:
        raise _Unreadable(f"cannot read {path}: permission denied", permission=True) from None
    except FileNotFoundError:
        raise _Unreadable(f"{path} does not exist", missing=True) from None
    except OSError as exc:
        # EIO/ENODATA: the MSR behind the file could not be read (a VM without RAPL, for one).
        raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}", missing=exc.errno in (errno.ENOENT, errno.ENODEV)) from None


def _read_int(path: Path) -> int:
    text = _read(path)
    try:
        value = int(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise _Unreadable(f"{path} does not hold a number (it says {shown!r})") from None
    if value < 0:
        raise _Unreadable(f"{path} holds a negative number ({value})")
    return value


@dataclass
class _Zone:
    zone_id: str  # intel-rapl:0:1
    path: Path
    name: str  # the zone's own `name`: package-0, core, dram, psys ...
    kind: str  # package | core | uncore | dram | psys | other
    channel: str  # package-0, package-0.dram, mmio-package-0
    parent: str | None  # zone_id of the containing zone
    mmio: bool
    max_range_uj: int | None = None
    max_power_w: float | None = None
    counter: EnergyCounter | None = None
    update: UpdatePeriod | None = None
    read_errors: int = 0
    last_error: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"

    def info(self) -> dict[str, Any]:
        wrap_s = None
        if self.max_range_uj and self.max_power_w:
            wrap_s = self.max_range_uj / 1e6 / self.max_power_w
        return {
            "zone": self.zone_id,
            "path": str(self.path),
            "name": self.name,
            "kind": self.kind,
            "power_kind": "counter",
            "method": "energy_uj",
            "units": "uJ",
            "max_energy_range_uj": self.max_range_uj,
            "power_limit_w": self.max_power_w,
            "wrap_time_at_limit_s": wrap_s,
            "update_period_s": self.update.period_s if self.update else None,
            "update_period": self.update.as_dict() if self.update else None,
            "counter": self.counter.as_dict() if self.counter else None,
            "warnings": list(self.warnings),
        }


def scan_zones(root: Path) -> list[_Zone]:
    """Every RAPL zone under `root`, flat (/sys/class/powercap lists them all) or nested."""
    found: dict[str, Path] = {}

    def visit(folder: Path, depth: int) -> None:
        try:
            # zones before the control-type folders, so the flat /sys/class/powercap/intel-rapl:N
            # paths are the ones shown
            entries = sorted(os.scandir(folder), key=lambda e: (not ZONE_RE.match(e.name), e.name))
        except OSError:
            return
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if not is_dir:
                continue
            if ZONE_RE.match(e.name):
                found.setdefault(e.name, Path(e.path))
                if depth < 4:
                    visit(Path(e.path), depth + 1)
            elif depth == 0 and e.name in ("intel-rapl", "intel-rapl-mmio"):
                visit(Path(e.path), depth + 1)

    visit(root, 0)

    def order(zone_id: str) -> tuple:
        prefix, nums = ZONE_RE.match(zone_id).groups()  # type: ignore[union-attr]
        return (prefix, tuple(int(n) for n in nums.split(":")))

    zones: dict[str, _Zone] = {}
    for zone_id in sorted(found, key=order):
        prefix, nums = ZONE_RE.match(zone_id).groups()  # type: ignore[union-attr]
        parts = nums.split(":")
        parent = f"{prefix}:{':'.join(parts[:-1])}" if len(parts) > 1 else None
        path = found[zone_id]
        try:
            name = _read(path / "name") or zone_id
        except _Unreadable:
            name = zone_id
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48]
        kind = next((k for k in KINDS if name == k or name.startswith(k + "-")), "other")
        mmio = prefix.endswith("-mmio")
        if parent is not None and parent in zones:
            channel = f"{zones[parent].channel}.{name}"
        else:
            channel = ("mmio-" if mmio else "") + name
        zones[zone_id] = _Zone(zone_id, path, name, kind, channel, parent, mmio)
    return list(zones.values())


def _containers(zone: _Zone, zones: list[_Zone]) -> list[_Zone]:
    """The zones whose energy already includes `zone`'s.

    Core and uncore are inside their package; DRAM sits in the package's folder but is not part
    of the package's energy (RAPL reports it beside it); an MMIO package zone is the same package
    read another way; psys (the platform) contains everything.
    """
    by_id = {z.zone_id: z for z in zones}
    out = []
    if zone.kind != "dram":
        p = zone.parent
        while p is not None and p in by_id:
            out.append(by_id[p])
            p = by_id[p].parent
    if zone.mmio:
        out.extend(z for z in zones if not z.mmio and z.name == zone.name and z.parent is None)
    if zone.kind != "psys":
        out.extend(z for z in zones if z.kind == "psys")
    return out


def _cpu_model() -> tuple[str, str]:
    vendor = model = ""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "model name" and not model:
                    model = value.strip()
                if vendor and model:
                    break
    except OSError:
        pass
    return vendor, model


def _absent_message(root: Path, who: str) -> str:
    if not root.exists():
        return (
            f"{who}: {root} does not exist: no Linux powercap here (not Linux, or a kernel without CONFIG_POWERCAP)"
            if str(root) == DEFAULT_ROOT
            else f"{who}: {root} does not exist (options.root)"
        )
    return (
        f"{who}: no RAPL zones (intel-rapl:N) under {root}: the CPU's energy counters are not exposed. "
        "On bare metal load the driver (`sudo modprobe intel_rapl_msr`; it serves Intel and AMD Zen); "
        "virtual machines usually hide RAPL"
    )


class RaplSource(PollingSource):
    driver = "rapl"
    Options = RaplOptions
    options: RaplOptions

    def __init__(self, name: str, options: RaplOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        self.root = Path(self.options.root)
        self._zones: list[_Zone] = []
        self._counters: dict[str, EnergyCounter] = {}  # by zone, kept across a reconnect
        self._periods: dict[str, UpdatePeriod] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        self._begin()
        try:
            self._zones = self._select(scan_zones(self.root))
            for z in self._zones:
                self._open_zone(z)
            self._measure()
            self.poll_s = min(self.options.poll_s, self.sample_interval_s)
            self._start_ticks()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stop_sampling()

    def _select(self, zones: list[_Zone]) -> list[_Zone]:
        if not zones:
            raise SourceUnavailable(_absent_message(self.root, self.name))
        listing = ", ".join(f"{z.channel} ({z.zone_id})" for z in zones)
        wanted = self.options.domains
        if not wanted:
            chosen = [z for z in zones if not z.mmio and z.kind in ("package", "dram")]
            return chosen or [z for z in zones if z.kind == "psys"][:1] or [zones[0]]
        chosen = []
        for ref in wanted:
            hits = [z for z in zones if ref in (z.channel, z.zone_id, z.kind)]
            if not hits:
                raise SourceUnavailable(f"{self.name}: options.domains: no RAPL domain {ref!r} here (domains: {listing})")
            chosen.extend(z for z in hits if z not in chosen)
        for z in chosen:
            for c in _containers(z, zones):
                if c in chosen:
                    raise SourceError(
                        f"{self.name}: options.domains: {z.channel} is part of {c.channel}; a source's channels are added up, "
                        "so list only one of them (or measure the other in a second source)"
                    )
        return chosen

    def _open_zone(self, z: _Zone) -> None:
        try:
            z.max_range_uj = _read_int(z.path / "max_energy_range_uj")
            _read_int(z.energy_file)
        except _Unreadable as exc:
            if exc.permission:
                raise SourceUnavailable(f"{self.name}: {exc}. {PERMISSION_HELP}") from None
            if exc.missing:
                raise SourceUnavailable(f"{self.name}: RAPL domain {z.channel}: {exc}") from None
            raise SourceError(f"{self.name}: RAPL domain {z.channel}: {exc}") from None
        if not z.max_range_uj:
            raise SourceError(f"{self.name}: RAPL domain {z.channel}: max_energy_range_uj is 0; the counter cannot be used")
        z.max_power_w = self._power_limit_w(z)
        plausible = 2 * z.max_power_w if z.max_power_w else FALLBACK_MAX_W
        z.counter = self._counters.setdefault(z.zone_id, EnergyCounter(1e-6, wrap_units=z.max_range_uj, max_plausible_w=plausible))
        if z.kind in ("core", "uncore") or z.mmio:
            z.warnings.append("part of its package's energy (not additional to it)")

    @staticmethod
    def _power_limit_w(z: _Zone) -> float | None:
        """The highest power limit the zone declares (its constraints), for the wrap-time bound."""
        best = None
        for i in range(8):
            for attr in (f"constraint_{i}_max_power_uw", f"constraint_{i}_power_limit_uw"):
                p = z.path / attr
                if not p.exists():
                    continue
                try:
                    v = _read_int(p) / 1e6
                except _Unreadable:
                    continue
                if v > 0:
                    best = v if best is None else max(best, v)
        return best

    def _raw(self, z: _Zone) -> int | None:
        try:
            return _read_int(z.energy_file)
        except _Unreadable as exc:
            z.read_errors += 1
            z.last_error = str(exc)
            return None

    def _measure(self) -> None:
        todo = [z for z in self._zones if z.zone_id not in self._periods]
        if self.options.infer_update_period and todo:
            record = self.tight_poll(self.options.inference_s, lambda: [self._raw(z) for z in todo])
            for k, z in enumerate(todo):
                pairs = [(t, vals[k]) for t, vals in record if vals[k] is not None]
                self._periods[z.zone_id] = infer_update_period([t for t, _ in pairs], [v for _, v in pairs])
                for t, v in pairs:
                    z.counter.observe(v, t)  # type: ignore[union-attr]
        for z in self._zones:
            z.update = self._periods.get(z.zone_id)
            raw = self._raw(z)
            if raw is not None:
                z.counter.observe(raw, self._now()[1])  # type: ignore[union-attr]
            z.counter.prime()  # type: ignore[union-attr]

    # -- what it is ------------------------------------------------------------------------------------
    def identify(self) -> Identity:
        vendor, model = _cpu_model()
        return Identity(
            driver=self.driver,
            vendor=vendor,
            model=f"RAPL {model}".strip() if model else "RAPL",
            firmware=f"Linux {platform.release()}",
            address=str(self.root),
            extra={"cpu": model, "domains": [z.info() for z in self._zones]},
        )

    def capabilities(self) -> Capabilities:
        periods = [z.update.period_s for z in self._zones if z.update and z.update.period_s]
        info = {z.channel: z.info() for z in self._zones}
        for d in info.values():
            d["poll_s"] = self.poll_s
        return Capabilities(
            channels=tuple(z.channel for z in self._zones),
            quantities=("watts", "energy"),
            power_kind="counter",
            has_energy_counter=True,
            measured_update_period_s=max(periods) if periods else None,
            channel_info=info,
        )

    # -- data -------------------------------------------------------------------------------------------
    def _poll(self, mono_ns: int) -> None:
        for z in self._zones:
            raw = self._raw(z)
            if raw is not None:
                z.counter.observe(raw, mono_ns)  # type: ignore[union-attr]

    def _emit(self, wall_ns: int, mono_ns: int) -> list[ChannelBatch]:
        out = []
        failed = []
        for z in self._zones:
            raw = self._raw(z)
            if raw is None:
                failed.append(z.last_error)
                out.append(ChannelBatch(z.channel, one_sample(wall_ns, mono_ns, math.nan, status=ERROR)))
                continue
            z.counter.observe(raw, mono_ns)  # type: ignore[union-attr]
            watts, energy, status = z.counter.take_sample()  # type: ignore[union-attr]
            out.append(ChannelBatch(z.channel, one_sample(wall_ns, mono_ns, watts, energy_j=energy, status=status)))
        if failed and len(failed) == len(self._zones):
            raise SourceError(f"{self.name}: no RAPL domain could be read ({'; '.join(failed)})")
        return out

    # -- discovery ------------------------------------------------------------------------------------------
    @classmethod
    def discover(cls, hints: dict[str, Any] | None = None) -> list[Discovered]:
        root = Path((hints or {}).get("rapl_root") or DEFAULT_ROOT)
        zones = scan_zones(root)
        if not zones:
            raise SourceUnavailable(_absent_message(root, "RAPL"))
        _, cpu = _cpu_model()
        found = []
        for z in zones:
            status, detail = "available", ""
            try:
                rng = _read_int(z.path / "max_energy_range_uj")
                _read_int(z.energy_file)
                detail = f"{z.kind} energy counter {z.zone_id}, wraps at {rng / 1e6:.0f} J"
            except _Unreadable as exc:
                status = "no-permission" if exc.permission else "error"
                detail = f"{exc}." + (f" {PERMISSION_HELP}" if exc.permission else "")
            if z.kind in ("core", "uncore") or z.mmio:
                detail += "; part of its package's energy"
            snippet: dict[str, Any] = {
                "name": "cpu" if z.kind in ("package", "psys") else z.channel.replace(".", "-"),
                "driver": cls.driver,
                "scope": "dram" if z.kind == "dram" else "cpu",
                "sample_interval_s": 0.5,
                "options": {"domains": [z.channel]},
            }
            if str(root) != DEFAULT_ROOT:
                snippet["options"]["root"] = str(root)
            found.append(
                Discovered(driver=cls.driver, address=str(z.path), model=f"RAPL {z.channel}" + (f" ({cpu})" if cpu else ""), status=status, detail=detail, profile_snippet=snippet)
            )
        return found
