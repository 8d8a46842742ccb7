"""The one interface every power source implements.

open -> identify -> capabilities -> (set_ranges / get_ranges) -> read ... read -> close.
`read()` blocks until the next sample(s) are available (or its timeout passes) and returns
them with their timestamps already taken: at acquisition, wall ns and monotonic ns.
Drivers are small; they declare their options as a pydantic model so a profile's mistakes
are reported with the file, line and field.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labconsole.instruments.ranges import AccuracySpec, RangeState

if TYPE_CHECKING:
    from labconsole.samples.batch import ChannelBatch


class SourceError(RuntimeError):
    """A source failed in a way the operator must hear about (message says what to do)."""


class SourceUnavailable(SourceError):
    """The source is absent: no driver, no device, no permission. Not a crash."""


class DriverOptions(BaseModel):
    """Base for each driver's `options:` block in a profile. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class PasswordOptions(DriverOptions):
    """A driver that logs in (a BMC): the password in the profile or, better, the name of an
    environment variable holding it, never both. Each driver declares `password` itself (its
    protocol's length limit) and `password_env` comes from here."""

    password: str = ""
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable holding the password")

    @model_validator(mode="after")
    def _one_password(self) -> "PasswordOptions":
        if self.password and self.password_env:
            raise ValueError("give password or password_env, not both")
        return self

    def resolve_password(self, source: str) -> str:
        """The password itself; a `password_env` that is not set is the source's error."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SourceError(f"{source}: environment variable {self.password_env} (password_env) is not set")
            return value
        return self.password


@dataclass
class Identity:
    driver: str
    model: str
    serial: str = ""
    firmware: str = ""
    vendor: str = ""
    address: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = [self.vendor, self.model]
        text = " ".join(p for p in parts if p) or self.driver
        if self.serial:
            text += f" s/n {self.serial}"
        if self.firmware:
            text += f" fw {self.firmware}"
        return text


@dataclass
class Capabilities:
    """What a source can measure and how; every number it yields is labelled by this."""

    channels: tuple[str, ...] = ("main",)
    quantities: tuple[str, ...] = ("watts",)  # of watts, volts, amps, pf, energy
    # How `watts` is obtained: "meter" (a power analyzer's reading), "instant" or "average"
    # (a sensor's own), "counter" (derived from an energy counter).
    power_kind: str = "meter"
    has_energy_counter: bool = False
    voltage_ranges: tuple[float, ...] = ()
    current_ranges: tuple[float, ...] = ()
    auto_range: bool = False
    update_periods_s: tuple[float, ...] = ()  # the periods the source can be set to
    accuracy: AccuracySpec | None = None
    # A sensor whose update period the hardware fixes (GPU, RAPL): the slowest channel's period
    # as measured at open (Zeus's method), for calibration to compare with the sample interval.
    measured_update_period_s: float | None = None
    # Per-channel labels where channels differ: power_kind, scope, the API read, update period.
    channel_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    # set_ranges() takes any value and the meter picks the smallest range that holds it (PTD
    # does): the procedure then sends MLPerf's raw values (max V, 1.1 x max A), as power-dev does.
    ranges_rounded_by_meter: bool = False

    @property
    def has_ranges(self) -> bool:
        return bool(self.voltage_ranges or self.current_ranges or self.ranges_rounded_by_meter)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["has_ranges"] = self.has_ranges
        return d


@dataclass
class Discovered:
    """Something `discover()` found attached, and how to put it in a profile."""

    driver: str
    address: str
    model: str = ""
    serial: str = ""
    status: str = "available"  # available | busy | no-permission | error
    detail: str = ""
    profile_snippet: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Source(ABC):
    """A power source. Subclasses set `driver` and `Options`, and implement the I/O."""

    driver: ClassVar[str] = ""
    Options: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, name: str, options: DriverOptions | None = None, sample_interval_s: float = 1.0):
        self.name = name
        self.options = options if options is not None else self.Options()
        self.sample_interval_s = float(sample_interval_s)
        # Drivers hold this around each I/O exchange: the acquisition thread reads while the
        # procedure sets ranges or asks for identity.
        self.io_lock = threading.RLock()

    @classmethod
    def implementation(cls, options: DriverOptions) -> type["Source"]:
        """The class that serves these options: a driver whose options choose a variant (PTD with
        several analyzers) returns it here; the registry builds that class."""
        return cls

    # -- lifecycle -----------------------------------------------------------------------------
    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it is ----------------------------------------------------------------------------
    @abstractmethod
    def identify(self) -> Identity: ...

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    # -- ranges (only meaningful where capabilities().has_ranges) ------------------------------
    def set_ranges(self, volts: float | None = None, amps: float | None = None, auto: bool | None = None) -> RangeState:
        """Set fixed ranges (None leaves one as it is) or auto-ranging; returns the read-back."""
        return self.get_ranges()

    def get_ranges(self) -> RangeState:
        return RangeState()

    # -- data ------------------------------------------------------------------------------------
    @abstractmethod
    def read(self, timeout: float) -> list[ChannelBatch]:
        """Block until the next sample(s) arrive or `timeout` seconds pass (then return [])."""

    # -- phases (optional) ---------------------------------------------------------------------------
    def begin_phase(self, label: str) -> None:
        """A measured phase (ranging, testing) starts. Meters with per-measurement state start
        one here (PTDaemon: Go with a mark per phase)."""

    def end_phase(self, label: str) -> dict[str, Any] | None:
        """The phase's workload ended: the meter's own summary of the phase (kept in the phase's
        phase.json), with an optional one-line `message`; None when the meter keeps none."""
        return None

    # -- optional ----------------------------------------------------------------------------------
    def zero_check(self) -> dict[str, Any] | None:
        """Run the meter's zero-level compensation if it has one; None when unsupported."""
        return None

    def lock_key(self) -> str | None:
        """The physical instrument's address, for the one-console-per-instrument lock.

        None for sources many readers may share (simulated, replay, NVML, RAPL).
        """
        return None

    def expects_samples(self) -> bool:
        """False while the source has, by its nature, nothing to report (a director between
        PTD measurements): the recorder then does not count the silence as a gap."""
        return True

    def clock_offset_s(self) -> float | None:
        """Offset of the source host's clock against ours (seconds, + = ahead) where known."""
        return None

    @classmethod
    def discover(cls, hints: dict[str, Any] | None = None) -> list[Discovered]:
        return []
