"""The `yokogawa` source: WT210, WT310/WT310E/WT310EH, WT332E/WT333E and WT500 power meters
over VISA (pyvisa-py by default: USB-TMC, GPIB, VXI-11, raw socket and serial resources).

What it does on `open()`: clear status, identify (*IDN?), select the model's command dialect
(tables in `yokogawa_models`), switch headers off and verbose on, choose the numeric items
(U, I, P, lambda per element, the ranges in use where the meter can report them, WH when
integration is asked for), set the update rate, arm the update-finished status bit, and read
the ranges back. Every setter is followed by an error-queue check, so a refused command is
reported with the meter's own code and text.

Reading: the meter updates its numbers every update period; `read()` polls the extended
event status register (EESR, bit 0 = an update finished, armed with `:STATus:FILTer1 FALL`)
and fetches the values once per update, so a 0.1 s rate gives one sample per update and no
duplicates. Samples are timestamped when the update is seen. NAN (9.91E+37) and INF (9.9E+37)
markers become NO_DATA and OVERRANGE samples: counted, never averaged.

Every I/O has a timeout (`timeout_s`); a meter that stops answering raises SourceError within
it, and the recorder reconnects with back-off and records the gap.
"""

from __future__ import annotations

import math
import re
import threading
import time
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from labconsole.instruments.ranges import AccuracySpec, RangeState, pick_range
from labconsole.samples.batch import ERROR, NO_DATA, OK, OVERRANGE, ChannelBatch, now_ns, one_sample
from labconsole.sources.base import Capabilities, Discovered, DriverOptions, Identity, Source, SourceError, SourceUnavailable
from labconsole.instruments.yokogawa import (
    MODELS,
    SUPPORTED,
    ModelSpec,
    format_quantity,
    format_time,
    lookup_model,
    parse_time,
)
from labconsole.locks import host_key, serial_key, tcp_key

YOKOGAWA_USB_VID = 0x0B21
ZERO_CHECK_TIMEOUT_S = 15.0  # *CAL? takes a few seconds on a real meter
# Commands right after :INTEGrate:STARt can fail while the integrator gets busy (yoko-tool
# waits 0.2 s there).
INTEGRATION_START_PAUSE_S = 0.2
_NAN_MARKER = 9.905e37  # 9.91E+37 (no data) is above, 9.9E+37 (over-range) below
_OVER_MARKER = 9.9e37
_MAX_GARBLED = 3  # consecutive malformed value replies before the link is declared broken


class MeterError(SourceError):
    """The meter refused a command; carries its error-queue entries (code, text)."""

    def __init__(self, message: str, errors: list[tuple[int, str]]):
        super().__init__(message)
        self.errors = errors


class YokogawaOptions(DriverOptions):
    resource: str = Field(
        min_length=1,
        max_length=512,
        description="VISA resource: USB0::0x0B21::0x0025::SERIAL::INSTR, GPIB0::1::INSTR, TCPIP::host::INSTR, TCPIP::host::port::SOCKET, ASRL/dev/ttyUSB0::INSTR",
    )
    visa_library: str = Field("@py", max_length=1024, description="'@py' (pyvisa-py), '' (the system VISA), or 'file.yaml@sim'")
    timeout_s: float = Field(2.0, gt=0, le=60, description="per I/O; a meter silent this long is reported as not answering")
    model: str | None = Field(None, description="force a model instead of trusting *IDN? (" + ", ".join(SUPPORTED) + ")")
    update_s: float | None = Field(None, gt=0, le=60, description="the meter's update period; default: the source's sample_interval_s")
    crest_factor: Literal[3, 6] | None = Field(None, description="set the crest factor (default: leave the meter's)")
    elements: list[int] | None = Field(None, min_length=1, max_length=6, description="which input elements to read (default: all)")
    channels: Literal["elements", "sum"] = Field("elements", description="one channel per element, or one 'sum' channel")
    integration: bool = Field(False, description="also run the meter's energy integration and report its counter (WH)")
    wait_for_update: bool = Field(True, description="poll the update-finished status bit (EESR) so each update is read once")
    voltage_ranges: list[float] | None = Field(None, min_length=1, max_length=32, description="override the model's voltage range table (V)")
    current_ranges: list[float] | None = Field(None, min_length=1, max_length=32, description="override the model's current range table (A)")
    write_termination: str | None = Field(None, description="default: LF; CR LF on serial resources")
    read_termination: str | None = Field(None, description="default: LF")
    baud_rate: int = Field(9600, ge=1200, le=115200, description="serial resources only (the WT310's default is 9600)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if lookup_model(v) is None:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(SUPPORTED)}")
        return v.upper()

    @field_validator("elements")
    @classmethod
    def _elements(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(set(v)) != len(v) or any(e < 1 or e > 6 for e in v)):
            raise ValueError("elements must be distinct numbers from 1 to 6")
        return v

    @field_validator("voltage_ranges", "current_ranges")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not (x > 0) or math.isinf(x) for x in v):
            raise ValueError("ranges must be positive numbers")
        return v


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_reading(text: str) -> tuple[float, int]:
    """One numeric item: (value, status). NAN/9.91E+37 -> NO_DATA, INF/9.9E+37 -> OVERRANGE.

    Only the meter's own number forms (NR1/NR2/NR3) count as readings: Python's float() also
    takes `1_000`, `infinity` or other scripts' digits, which a meter never sends."""
    t = text.strip()
    if t.upper() in ("NAN", "INF", "-INF", "+INF"):
        return math.nan, (NO_DATA if t.upper() == "NAN" else OVERRANGE)
    if not _NUMBER.fullmatch(t):
        return math.nan, ERROR
    v = float(t)
    if math.isnan(v):
        return math.nan, NO_DATA
    if math.isinf(v):
        return math.nan, OVERRANGE
    if abs(v) >= _NAN_MARKER:
        return math.nan, NO_DATA
    if abs(v) >= _OVER_MARKER * 0.99999:
        return math.nan, OVERRANGE
    return v, OK


def parse_error_reply(reply: str) -> tuple[int, str]:
    """`113,"Undefined header"` (or a bare code when messages are off) -> (113, 'Undefined header')."""
    code_text, _, msg = reply.partition(",")
    try:
        code = int(float(code_text.strip()))
    except (ValueError, OverflowError):
        raise SourceError(f"unreadable error-queue reply {reply!r}") from None
    return code, msg.strip().strip('"')


def _worst(statuses: list[int]) -> int:
    for s in (ERROR, OVERRANGE, NO_DATA):
        if s in statuses:
            return s
    return OK


def _is_serial(resource: str) -> bool:
    return resource.strip().upper().startswith("ASRL")


class YokogawaSource(Source):
    driver = "yokogawa"
    Options = YokogawaOptions
    options: YokogawaOptions

    # The quantities read per element, in item order (ranges and WH added where they apply).
    BASE_QUANTITIES = ("volts", "amps", "watts", "pf")

    def __init__(self, name: str, options: YokogawaOptions | None = None, sample_interval_s: float = 1.0, resource: Any = None):
        """`resource`: an already-open VISA-like resource (tests pass a scripted one)."""
        super().__init__(name, options, sample_interval_s)
        self._given_resource = resource
        self._res: Any = None
        self.spec: ModelSpec | None = lookup_model(self.options.model) if self.options.model else None
        self._identity: Identity | None = None
        self.crest_factor = 3
        self._elements: list[int] = []
        self._layout: list[tuple[int, str]] = []  # (element, quantity) in reply order
        self._ranges = RangeState()
        self._period = 0.0
        self._last_update_mono: float | None = None
        self._closed = threading.Event()
        self._garbled = 0
        self._integrating = False
        # Per element: what the counter had reached before the meter's integration was last
        # reset (range changes need a reset), so the reported counter never goes backwards.
        self._energy_offset_j: dict[int, float] = {}
        self._last_energy_j: dict[int, float] = {}
        self.meter_errors: list[tuple[int, str]] = []  # everything the error queue reported
        # Protocol errors (replies that are not what was asked) and the samples they became.
        self.counters = {"samples": 0, "invalid": 0, "malformed_replies": 0, "garbled_status": 0}

    # --- I/O primitives -----------------------------------------------------------------------
    def _label(self) -> str:
        return f"{self.name} ({self.options.resource})"

    def _io_failure(self, what: str, exc: Exception) -> SourceError:
        text = str(exc)
        if "VI_ERROR_TMO" in text or "Timeout" in type(exc).__name__ or "timed out" in text.lower():
            return SourceError(f"{self._label()}: the meter did not answer {what!r} within {self.options.timeout_s:g} s")
        return SourceError(f"{self._label()}: I/O error during {what!r}: {text or type(exc).__name__}")

    def _write(self, cmd: str) -> None:
        if self._res is None:
            raise SourceError(f"{self._label()}: not open")
        try:
            self._res.write(cmd)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyvisa raises many kinds; all mean the link failed
            raise self._io_failure(cmd, exc) from None

    def _query(self, cmd: str) -> str:
        if self._res is None:
            raise SourceError(f"{self._label()}: not open")
        try:
            return str(self._res.query(cmd)).strip()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._io_failure(cmd, exc) from None

    def read_error_queue(self, limit: int = 16) -> list[tuple[int, str]]:
        """Drain the meter's error queue: [(code, text)], empty when it says 0 / No error."""
        assert self.spec is not None
        out = []
        with self.io_lock:
            for _ in range(limit):
                code, msg = parse_error_reply(self._query(self.spec.dialect.error_q))
                if code == 0:
                    break
                out.append((code, msg))
        self.meter_errors.extend(out)
        return out

    def _set(self, cmd: str) -> None:
        """Send a setting and make sure the meter accepted it (its error queue stays empty).

        The setting and the error query travel as one compound message: one exchange per
        setting, and no write-after-write (which a TCP link delays by its ACK timer).
        """
        assert self.spec is not None
        code, msg = parse_error_reply(self._query(f"{cmd};{self.spec.dialect.error_q}"))
        errors = [] if code == 0 else [(code, msg)]
        if errors:
            self.meter_errors.extend(errors)
            errors += self.read_error_queue()
            shown = "; ".join(f'{c} "{m}"' for c, m in errors)
            hint = ""
            if errors[0][0] == 113 and self.spec.dialect.name == "WT300":
                # A WT300 can be set to answer the WT200 command set instead (front panel, or
                # :SYSTem:COMMunicate:COMMand WT300).
                hint = "; if the meter is set to the WT200 command set, switch it to WT300"
            raise MeterError(f"{self._label()}: the {self.spec.name} refused {cmd!r}: {shown}{hint}", errors)

    # --- lifecycle ----------------------------------------------------------------------------
    def _open_resource(self) -> Any:
        import pyvisa

        o = self.options
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pyvisa-py warns about optional discovery packages
                rm = pyvisa.ResourceManager(o.visa_library)
        except Exception as exc:  # noqa: BLE001
            raise SourceUnavailable(f"{self._label()}: cannot load the VISA library {o.visa_library!r}: {exc}") from None
        ms = int(o.timeout_s * 1000)
        try:
            res = rm.open_resource(o.resource, open_timeout=ms)
        except Exception as exc:  # noqa: BLE001
            hint = ""
            if o.resource.upper().startswith("USB"):
                hint = " (is the meter connected and switched on, and may this user open it? On Linux a udev rule for 0b21:0025 gives access)"
            raise SourceUnavailable(f"{self._label()}: cannot open the resource: {exc}".rstrip() + hint) from None
        res.timeout = ms
        serial = _is_serial(o.resource)
        res.write_termination = o.write_termination if o.write_termination is not None else ("\r\n" if serial else "\n")
        res.read_termination = o.read_termination if o.read_termination is not None else "\n"
        if serial:
            res.baud_rate = o.baud_rate
        return res

    def open(self) -> None:
        with self.io_lock:
            self._closed.clear()
            self._res = self._given_resource if self._given_resource is not None else self._open_resource()
            try:
                self._configure()
            except Exception:
                self._drop_resource()
                raise

    def _drop_resource(self) -> None:
        res, self._res = self._res, None
        if res is not None and res is not self._given_resource:
            try:
                res.close()
            except Exception:  # noqa: BLE001 - closing a dead link must not hide the real error
                pass

    def close(self) -> None:
        self._closed.set()
        with self.io_lock:
            if self._res is None:
                return
            if self.spec is not None:
                try:
                    self._res.timeout = 500  # a dead meter must not hold up the shutdown
                except Exception:  # noqa: BLE001
                    pass
                for cmd in ((self.spec.dialect.integ_stop,) if self._integrating else ()) + (self.spec.dialect.local,):
                    try:
                        self._write(cmd)
                    except SourceError:
                        break
            self._integrating = False
            self._drop_resource()

    def lock_key(self) -> str | None:
        """The meter's VISA resource in one spelling (None for a PyVISA-sim file: no hardware)."""
        if self._given_resource is not None or self.options.visa_library.endswith("@sim"):
            return None
        return visa_key(self.options.resource)

    # --- configuration --------------------------------------------------------------------------
    def _configure(self) -> None:
        o = self.options
        try:
            self._res.clear()  # device clear: drops a half-sent command or an unread reply
        except Exception:  # noqa: BLE001 - not every interface supports it (raw sockets do not)
            pass
        idn = self._query("*CLS;*IDN?")
        self._identity = self._parse_idn(idn)
        d = self.spec.dialect
        for cmd in d.setup:
            self._set(cmd)
        if o.crest_factor is not None:
            self._set(d.crest_factor.format(value=o.crest_factor))
        cf_reply = self._query(d.crest_factor_q)
        digits = re.sub(r"\D", "", cf_reply)
        self.crest_factor = int(digits) if digits in ("3", "6") else 3
        self._elements = list(o.elements) if o.elements else list(range(1, self.spec.elements + 1))
        bad = [e for e in self._elements if e > self.spec.elements]
        if bad:
            raise SourceError(f"{self._label()}: the {self.spec.name} has {self.spec.elements} element(s); element {bad[0]} does not exist")
        self._configure_items()
        self._configure_rate()
        if o.wait_for_update:
            self._set(d.update_filter)
        if o.integration:
            self._start_integration()
        self._ranges = self._read_ranges()
        if o.wait_for_update:
            self._query(d.eesr_q)  # clears a stale update event: the first sample is a fresh one
        self._last_update_mono = None
        self._garbled = 0
        self._identity.extra.update(
            crest_factor=self.crest_factor, elements=self._elements, update_s=self._period, integration=o.integration,
        )

    def _parse_idn(self, idn: str) -> Identity:
        parts = [p.strip() for p in idn.split(",")]
        if len(parts) < 2 or not parts[1]:
            raise SourceError(f"{self._label()}: *IDN? gave {idn!r}, which is not a meter identity (is this the right resource?)")
        vendor, model = parts[0], parts[1]
        serial = parts[2] if len(parts) > 2 else ""
        firmware = parts[3] if len(parts) > 3 else ""
        if self.options.model is None:
            if vendor.upper() != "YOKOGAWA":
                raise SourceError(f"{self._label()}: *IDN? says {idn!r}: not a Yokogawa meter")
            self.spec = lookup_model(model)
            if self.spec is None:
                raise SourceError(
                    f"{self._label()}: the Yokogawa {model} is not a supported model ({', '.join(SUPPORTED)}); "
                    "set options.model to the closest one to try it anyway"
                )
        assert self.spec is not None
        emulated = serial.upper().startswith(("EMU", "SIM"))  # our emulator and PyVISA-sim file say so
        return Identity(
            driver=self.driver,
            model=model,
            serial=serial,
            firmware=firmware,
            vendor=vendor,
            address=self.options.resource,
            extra={
                "idn": idn,
                "spec": self.spec.name,
                "dialect": self.spec.dialect.name,
                "ptd_device": self.spec.ptd_device,
                "emulated": emulated,
                "unverified": list(self.spec.unverified),
            },
        )

    def _configure_items(self) -> None:
        assert self.spec is not None
        d = self.spec.dialect
        wanted = list(self.BASE_QUANTITIES)
        if d.range_items:
            wanted += ["range_v", "range_a"]
        if self.options.integration:
            wanted.append("wh")
        self._layout = []
        if d.item_style == "list":
            for el in self._elements:
                self._layout.extend((el, q) for q in wanted)
            self._set(d.item_count.format(n=len(self._layout)))
            for i, (el, q) in enumerate(self._layout, start=1):
                self._set(d.item.format(index=i, function=d.functions[q], element=el))
        else:  # toggle: one element, the meter returns the ON items in its own order
            by_function = {d.functions[q]: q for q in wanted}
            for fn in d.toggle_order:
                on = fn in by_function
                self._set(d.item.format(function=fn, state="ON" if on else "OFF"))
                if on:
                    self._layout.append((self._elements[0], by_function[fn]))

    def allowed_update_periods(self) -> tuple[float, ...]:
        return self.spec.update_periods_s if self.spec else MODELS["WT310E"].update_periods_s

    def _configure_rate(self) -> None:
        assert self.spec is not None
        period = float(self.options.update_s or self.sample_interval_s)
        self.set_update_period(period)

    def set_update_period(self, seconds: float) -> float:
        """Set the meter's update period; only the model's own values are accepted."""
        assert self.spec is not None
        allowed = self.allowed_update_periods()
        match = [p for p in allowed if abs(p - seconds) < 1e-9]
        if not match:
            shown = ", ".join(f"{p:g}" for p in allowed)
            raise SourceError(
                f"{self._label()}: an update period of {seconds:g} s is not one the {self.spec.name} offers ({shown} s); "
                "set the source's sample_interval_s (or options.update_s) to one of them"
            )
        d = self.spec.dialect
        with self.io_lock:
            self._set(d.rate.format(value=format_time(match[0])))
            got = parse_time(self._query(d.rate_q))
        if abs(got - match[0]) > 1e-6:
            raise SourceError(f"{self._label()}: asked for an update period of {match[0]:g} s but the meter reports {got:g} s")
        self._period = got
        self.sample_interval_s = got
        return got

    # --- integration (energy counter) -------------------------------------------------------------
    def _start_integration(self) -> None:
        assert self.spec is not None
        d = self.spec.dialect
        state = ""
        if d.integ_state_q:
            state = self._query(d.integ_state_q).upper()
        if state.startswith("STAR"):
            self._integrating = True  # already counting (a reconnect): keep the counter going
            return
        if state and not state.startswith("RES"):
            self._set(d.integ_reset)
        elif not state:  # no state query (WT210): reset, stopping first if it runs
            try:
                self._set(d.integ_reset)
            except MeterError:
                self._set(d.integ_stop)
                self._set(d.integ_reset)
        self._restart_integration()

    def _restart_integration(self) -> None:
        assert self.spec is not None
        d = self.spec.dialect
        for cmd in d.integ_setup:
            self._set(cmd)
        self._set(d.integ_start)
        time.sleep(INTEGRATION_START_PAUSE_S)
        self._energy_offset_j = dict(self._last_energy_j)
        self._integrating = True

    def _stop_integration_for_settings(self) -> bool:
        """Meters refuse setting changes while integrating; stop and reset, to restart after."""
        if not self._integrating:
            return False
        assert self.spec is not None
        self._set(self.spec.dialect.integ_stop)
        self._set(self.spec.dialect.integ_reset)
        self._integrating = False
        return True

    # --- what it is ---------------------------------------------------------------------------------
    def identify(self) -> Identity:
        if self._identity is None:
            raise SourceError(f"{self._label()}: identify() before open()")
        return self._identity

    def range_tables(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        spec = self.spec or MODELS["WT310E"]
        volts, amps = spec.ranges(self.crest_factor)
        if self.options.voltage_ranges:
            volts = tuple(sorted(self.options.voltage_ranges))
        if self.options.current_ranges:
            amps = tuple(sorted(self.options.current_ranges))
        return volts, amps

    def accuracy(self) -> AccuracySpec:
        return (self.spec or MODELS["WT310E"]).accuracy_at(self.crest_factor)

    def channel_names(self) -> tuple[str, ...]:
        elements = self._elements or list(self.options.elements or range(1, (self.spec or MODELS["WT310E"]).elements + 1))
        if self.options.channels == "sum":
            return ("sum",)
        if len(elements) == 1:
            return ("main",)
        return tuple(f"el{e}" for e in elements)

    def capabilities(self) -> Capabilities:
        volts, amps = self.range_tables()
        return Capabilities(
            channels=self.channel_names(),
            quantities=("watts", "volts", "amps", "pf") + (("energy",) if self.options.integration else ()),
            power_kind="meter",
            has_energy_counter=self.options.integration,
            voltage_ranges=volts,
            current_ranges=amps,
            auto_range=True,
            update_periods_s=self.allowed_update_periods(),
            accuracy=self.accuracy(),
        )

    # --- ranges -------------------------------------------------------------------------------------
    def _read_ranges(self) -> RangeState:
        assert self.spec is not None
        d = self.spec.dialect

        def first(reply: str) -> float:
            value, status = parse_reading(reply.split(",")[0])
            return value if status == OK else math.nan

        def on(reply: str) -> bool:
            return reply.strip().upper() in ("1", "ON")

        return RangeState(
            volts=first(self._query(d.volt_range_q)),
            amps=first(self._query(d.curr_range_q)),
            auto_v=on(self._query(d.volt_auto_q)),
            auto_a=on(self._query(d.curr_auto_q)),
        )

    def get_ranges(self) -> RangeState:
        with self.io_lock:
            self._ranges = self._read_ranges()
            return self._ranges

    def set_ranges(self, volts: float | None = None, amps: float | None = None, auto: bool | None = None) -> RangeState:
        """Auto-range (auto=True) or fixed ranges: the smallest range of the table that holds
        each value (so MLPerf's 1.1 x max amps lands on a real range); returns the read-back."""
        assert self.spec is not None
        d = self.spec.dialect
        vtable, atable = self.range_tables()
        with self.io_lock:
            restart = self._stop_integration_for_settings()
            try:
                if auto:
                    self._set(d.volt_auto.format(state="ON"))
                    self._set(d.curr_auto.format(state="ON"))
                else:
                    if auto is False:
                        self._set(d.volt_auto.format(state="OFF"))
                        self._set(d.curr_auto.format(state="OFF"))
                    if volts is not None:
                        self._set(d.volt_range.format(value=format_quantity(pick_range(volts, vtable), "V")))
                    if amps is not None:
                        self._set(d.curr_range.format(value=format_quantity(pick_range(amps, atable), "A")))
            finally:
                if restart:
                    self._restart_integration()
            self._ranges = self._read_ranges()
            return self._ranges

    # --- data ---------------------------------------------------------------------------------------
    def read(self, timeout: float) -> list[ChannelBatch]:
        if self._res is None:
            raise SourceError(f"{self._label()}: read() on a closed source")
        assert self.spec is not None
        d = self.spec.dialect
        deadline = time.monotonic() + timeout
        if self._last_update_mono is not None:
            # Nothing new can come before the next update: sleep through most of the period.
            due = self._last_update_mono + 0.8 * self._period
            pause = min(due, deadline) - time.monotonic()
            if pause > 0 and self._closed.wait(pause):
                return []
        poll = max(0.005, self._period / 25.0)
        while True:
            with self.io_lock:
                if self._res is None:
                    raise SourceError(f"{self._label()}: closed while reading")
                if self.options.wait_for_update:
                    reply = self._query(d.eesr_q)
                    try:
                        fresh = bool(int(float(reply)) & 1)
                    except (ValueError, OverflowError):
                        self.counters["garbled_status"] += 1
                        raise SourceError(f"{self._label()}: garbled status reply {reply!r} (the link is out of step)") from None
                else:
                    fresh = self._last_update_mono is None or time.monotonic() >= self._last_update_mono + self._period
                if fresh:
                    wall, mono = now_ns()
                    values = self._query(d.values_q)
                    ranges = self._ranges
                    if not d.range_items and (ranges.auto_v or ranges.auto_a):
                        ranges = self._ranges = self._read_ranges()
            if fresh:
                self._last_update_mono = mono / 1e9
                return self._to_batches(values, wall, mono, ranges)
            if time.monotonic() + poll >= deadline:
                return []
            if self._closed.wait(poll):
                return []

    def _to_batches(self, reply: str, wall: int, mono: int, ranges: RangeState) -> list[ChannelBatch]:
        out = self._parse_values(reply, wall, mono, ranges)
        for cb in out:
            self.counters["samples"] += len(cb.samples)
            self.counters["invalid"] += int(np.count_nonzero(cb.samples["status"]))
        return out

    def _parse_values(self, reply: str, wall: int, mono: int, ranges: RangeState) -> list[ChannelBatch]:
        fields = reply.split(",")
        if len(fields) != len(self._layout):
            self._garbled += 1
            self.counters["malformed_replies"] += 1
            if self._garbled >= _MAX_GARBLED:
                raise SourceError(f"{self._label()}: {self._garbled} malformed replies in a row (last {reply[:80]!r}); reconnecting")
            bad = one_sample(wall, mono, math.nan, status=ERROR)
            return [ChannelBatch(ch, bad.copy()) for ch in self.channel_names()]
        self._garbled = 0
        per: dict[int, dict[str, tuple[float, int]]] = {}
        for (el, q), text in zip(self._layout, fields):
            per.setdefault(el, {})[q] = parse_reading(text)
        acc = self.accuracy()
        samples = []
        for el in self._elements:
            vals = per[el]
            status = _worst([vals[q][1] for q in ("volts", "amps", "watts")])
            rv = vals["range_v"][0] if "range_v" in vals else ranges.volts
            ra = vals["range_a"][0] if "range_a" in vals else ranges.amps
            energy = math.nan
            if "wh" in vals and vals["wh"][1] == OK:
                energy = self._energy_offset_j.get(el, 0.0) + vals["wh"][0] * 3600.0
                self._last_energy_j[el] = energy
            if status == OK:
                w, v, a = vals["watts"][0], vals["volts"][0], vals["amps"][0]
                pf = vals["pf"][0] if vals["pf"][1] == OK else math.nan
                s = one_sample(wall, mono, w, volts=v, amps=a, pf=pf, energy_j=energy, uncertainty_w=acc.uncertainty_w(w, rv, ra, pf), range_v=rv, range_a=ra)
            else:
                s = one_sample(wall, mono, math.nan, energy_j=energy, range_v=rv, range_a=ra, status=status)
            samples.append(s)
        if self.options.channels == "sum":
            return [ChannelBatch("sum", self._sum(samples, wall, mono))]
        return [ChannelBatch(ch, s) for ch, s in zip(self.channel_names(), samples)]

    @staticmethod
    def _sum(samples: list, wall: int, mono: int):
        """One channel for a multi-element meter: total power, worst status, summed uncertainty.

        Volts and amps are the largest element's: those are what a range must hold.
        """
        status = _worst([int(s["status"][0]) for s in samples])
        energy = sum(float(s["energy_j"][0]) for s in samples)
        rv = max(float(s["range_v"][0]) for s in samples)
        ra = max(float(s["range_a"][0]) for s in samples)
        if status != OK:
            return one_sample(wall, mono, math.nan, energy_j=energy, range_v=rv, range_a=ra, status=status)
        return one_sample(
            wall,
            mono,
            sum(float(s["watts"][0]) for s in samples),
            volts=max(float(s["volts"][0]) for s in samples),
            amps=max(float(s["amps"][0]) for s in samples),
            energy_j=energy,
            uncertainty_w=sum(float(s["uncertainty_w"][0]) for s in samples),
            range_v=rv,
            range_a=ra,
        )

    def diagnostics(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "meter_errors": [list(e) for e in self.meter_errors[-20:]]}

    # --- optional -----------------------------------------------------------------------------------
    def zero_check(self) -> dict[str, Any] | None:
        """Zero-level compensation (*CAL?): 0 means it succeeded."""
        if self.spec is None or not self.spec.dialect.zero_q:
            return None
        with self.io_lock:
            old = getattr(self._res, "timeout", None)
            try:
                self._res.timeout = int(max(ZERO_CHECK_TIMEOUT_S, self.options.timeout_s) * 1000)
            except Exception:  # noqa: BLE001
                pass
            try:
                reply = self._query(self.spec.dialect.zero_q)
            finally:
                if old is not None:
                    self._res.timeout = old
        ok = reply.strip() == "0"
        message = "zero-level compensation done" if ok else f"the meter reports a failure ({self.spec.dialect.zero_q} -> {reply.strip()!r})"
        return {"command": self.spec.dialect.zero_q, "reply": reply, "ok": ok, "message": message}

    # --- discovery ------------------------------------------------------------------------------------
    @classmethod
    def probe_address(cls, address: str, timeout_s: float = 2.0) -> Discovered:
        """One VISA resource typed by the operator, asked for its identity (`probe_resource`)."""
        return probe_resource(address, timeout_s)

    @classmethod
    def discover(cls, hints: dict[str, Any] | None = None) -> list[Discovered]:
        """Yokogawa meters among the VISA resources, identified by *IDN?.

        hints (the keys `labconsole.sources.discovery` passes): visa_resources (addresses to
        try, e.g. TCPIP::host::port::SOCKET, which no VISA library can list), pyvisa_sim
        (PyVISA-sim YAML paths, listed as extra VISA libraries), timeout_s (per exchange,
        default 1); and, for direct use, visa_library (str or list; default '@py'),
        resources (an alias of visa_resources), probe_serial (also ask serial ports).
        """
        import pyvisa

        hints = dict(hints or {})
        libs = hints.get("visa_library") or ["@py"]
        if isinstance(libs, str):
            libs = [libs]
        libs = list(libs) + [p if str(p).endswith("@sim") else f"{p}@sim" for p in hints.get("pyvisa_sim") or []]
        timeout_s = float(hints.get("timeout_s", 1.0))
        extra = list(hints.get("visa_resources") or []) + list(hints.get("resources") or [])
        found: list[Discovered] = []
        for lib in libs:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rm = pyvisa.ResourceManager(lib)
                    names = list(rm.list_resources("?*::INSTR"))
            except Exception as exc:  # noqa: BLE001
                found.append(Discovered(cls.driver, str(lib), status="error", detail=f"cannot list VISA resources with {lib!r}: {exc}"))
                continue
            simulated = str(lib).endswith("@sim")
            candidates = [n for n in names if simulated or _worth_probing(n, bool(hints.get("probe_serial")))]
            for name in candidates + [r for r in extra if r not in candidates]:
                entry = _probe(rm, str(lib), name, timeout_s, explicit=name in extra or _is_yokogawa_usb(name))
                if entry is not None:
                    found.append(entry)
            extra = []  # explicit addresses are tried once, with the first library
        return found


def probe_resource(resource: str, timeout_s: float = 2.0, visa_library: str = "@py") -> Discovered:
    """Ask one VISA resource the operator typed (`TCPIP::host::INSTR`, `TCPIP::host::port::SOCKET`,
    `GPIB0::n::INSTR`, `ASRL...`) for *IDN?, without listing anything else: identity, or why not."""
    import pyvisa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rm = pyvisa.ResourceManager(visa_library)
    except Exception as exc:  # noqa: BLE001
        return Discovered(YokogawaSource.driver, resource, status="error", detail=f"no VISA library {visa_library!r}: {exc}")
    # The ResourceManager is shared per library (PyVISA keeps one): closing it would close other
    # threads' sessions, so only the resource is closed (by _probe).
    entry = _probe(rm, visa_library, resource.strip(), timeout_s, explicit=True)
    return entry if entry is not None else Discovered(YokogawaSource.driver, resource, status="error", detail="no answer")


def visa_key(resource: str) -> str:
    """A VISA resource name in one spelling, for the one-console-per-instrument lock.

    `tcpip::127.0.0.1::5025::socket` and `TCPIP0::localhost::5025::SOCKET` are one meter;
    `TCPIP::host::INSTR` is `TCPIP0::host::inst0::INSTR`; USB ids compare as numbers; a serial
    resource (`ASRL/dev/ttyUSB0::INSTR`) is its port, as other serial drivers name it.
    """
    parts = [p.strip() for p in resource.strip().split("::")]
    m = re.match(r"(?i)^(TCPIP|GPIB|USB|ASRL|VXI|PXI)(\d*)(.*)$", parts[0])
    if m is None:
        return resource.strip()
    iface, board, rest = m.group(1).upper(), m.group(2) or "0", m.group(3)
    tail = parts[1:]
    if tail and tail[-1].upper() in ("INSTR", "SOCKET", "INTFC", "BACKPLANE", "RAW"):
        tail[-1] = tail[-1].upper()
    if iface == "ASRL" and rest:
        return serial_key(rest)
    if iface == "TCPIP" and len(tail) == 3 and tail[2] == "SOCKET":
        return tcp_key(tail[0], int(tail[1])) if tail[1].isdigit() else f"TCPIP::{host_key(tail[0])}::{tail[1]}::SOCKET"
    if iface == "TCPIP" and tail:
        tail[0] = host_key(tail[0])
        if len(tail) == 2 and tail[1] == "INSTR":
            tail.insert(1, "inst0")
        if len(tail) == 3:
            tail[1] = tail[1].lower()
    if iface == "USB":
        for i in (0, 1):
            if i < len(tail):
                try:
                    tail[i] = f"0x{int(tail[i], 0):04X}"
                except ValueError:
                    pass
    return "::".join([f"{iface}{board}{rest}"] + tail)


def _is_yokogawa_usb(name: str) -> bool:
    parts = name.upper().split("::")
    if not parts[0].startswith("USB") or len(parts) < 3:
        return False
    try:
        return int(parts[1], 0) == YOKOGAWA_USB_VID
    except ValueError:
        return False


def _worth_probing(name: str, probe_serial: bool) -> bool:
    head = name.upper().split("::")[0]
    if head.startswith("USB"):
        return _is_yokogawa_usb(name)  # other vendors' USB devices are not ours to poke
    if head.startswith("ASRL"):
        return probe_serial  # serial ports may belong to other meters (LPM01A): only on request
    return head.startswith(("GPIB", "TCPIP", "VXI"))


def _probe(rm: Any, lib: str, name: str, timeout_s: float, explicit: bool) -> Discovered | None:
    """Ask one resource *IDN?; a Yokogawa meter becomes an entry, silence only if we asked for it."""
    ms = int(timeout_s * 1000)
    res = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = rm.open_resource(name, open_timeout=ms)
            res.timeout = ms
            res.read_termination = "\n"
            res.write_termination = "\r\n" if _is_serial(name) else "\n"
            idn = str(res.query("*IDN?")).strip()
    except Exception as exc:  # noqa: BLE001 - a resource that does not answer is not an error of ours
        if not explicit:
            return None
        return Discovered(YokogawaSource.driver, name, status="error", detail=f"no answer to *IDN? within {timeout_s:g} s ({exc})")
    finally:
        if res is not None:
            try:
                res.close()
            except Exception:  # noqa: BLE001
                pass
    parts = [p.strip() for p in idn.split(",")]
    if len(parts) < 2 or parts[0].upper() != "YOKOGAWA":
        return None if not explicit else Discovered(YokogawaSource.driver, name, status="error", detail=f"not a Yokogawa meter: {idn!r}")
    spec = lookup_model(parts[1])
    options: dict[str, Any] = {"resource": name}
    if lib != "@py":
        options["visa_library"] = lib
    return Discovered(
        driver=YokogawaSource.driver,
        address=name,
        model=parts[1],
        serial=parts[2] if len(parts) > 2 else "",
        status="available" if spec else "unsupported",
        detail=idn if spec else f"{idn} (not a supported model: {', '.join(SUPPORTED)})",
        profile_snippet={"name": "wall", "driver": YokogawaSource.driver, "scope": "wall", "sample_interval_s": 1.0, "primary": True, "options": options},
    )
