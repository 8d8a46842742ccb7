"""A Yokogawa WT310E on a loopback TCP socket, reachable through PyVISA as
`TCPIP::127.0.0.1::PORT::SOCKET`, for tests and for operators learning the console.

It speaks the WT300E command set (long and short forms, any case, optional nodes, `;`
compound messages; see `scpi.py`) and behaves as the meter does where a driver can tell:

* readings come from `labconsole.instruments.load_model.LoadModel` (idle + dynamic x utilisation + noise):
  the workload tracker when a profile starts it in-process, the whole host when run alone;
* the numbers change once per update period (`:RATE`), and each finished update sets bit 0
  (UPD) of the extended event status register when its transition filter asks for it
  (`:STATus:FILTer1 FALL`); `:STATus:EESR?` reads and clears it; `:COMMunicate:WAIT` blocks;
* ranges follow the WT310E tables per crest factor; auto-range goes up above 130 % and down
  at 30 % (the shared AutoRanger); the update in which a range changes reads NAN; a current or
  voltage above 140 % of a fixed range reads INF (over-range); a fixed mA range that sees too
  much current is forced to the 1 A range with auto-range on; readings at or below 0.5 % of
  the range read zero;
* integration (`:INTEGrate:...`) counts WH, AH and TIME; settings cannot change while it runs
  (error 813), start/stop/reset in the wrong state give 842/844/845;
* the error queue (`:STATus:ERRor?`) holds the standard codes (113 undefined header, 224
  illegal parameter value, ...); `*CAL?` answers 0 after a short busy time.

Its identity says it is an emulator (serial `EMU...`, firmware `F1.04-EMU`) while still
parsing as a WT310E. It binds 127.0.0.1 unless told otherwise.

Not emulated: `:RATE AUTO`, peak over-range and crest-factor clipping, harmonics, storage.
"""

from __future__ import annotations

import argparse
import math
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labconsole.emulators import scpi
from labconsole.emulators.faults import TcpFaults
from labconsole.emulators.registry import listen_tcp, serve_until_interrupted, startup_failure, warn_if_reachable
from labconsole.emulators.scpi import ErrorQueue, ScpiError, ScpiParser, nr3, parse_bool, parse_choice, parse_number
from labconsole.instruments.load_model import LoadModel, follow_any_benchmark, utilisation_arg, utilisation_source
from labconsole.instruments.ranges import AutoRanger
from labconsole.instruments.yokogawa import MODELS, SOCKET_PORT

SPEC = MODELS["WT310E"]
# The same meter for PyVISA-sim (identity and discovery tests): ResourceManager(f"{SIM_YAML}@sim").
SIM_YAML = Path(__file__).with_name("wt310-sim.yaml")
DEFAULT_PORT = SOCKET_PORT  # the usual port of SCPI raw sockets
MAX_LINE = 65536

# Yokogawa device errors (codes as yoko-tool handles them; texts are ours).
INTEGRATION_RUNNING = (813, "Cannot change settings during integration")
INTEG_ALREADY_STARTED = (842, "Integration already started")
INTEG_NOT_STARTED = (844, "Integration not started")
INTEG_RESET_WHILE_RUNNING = (845, "Cannot reset while integration is running")

FUNCTIONS = (
    "U", "I", "P", "S", "Q", "LAMBda", "PHI", "FU", "FI", "UPPeak", "UMPeak", "IPPeak", "IMPeak",
    "PPPeak", "PMPeak", "WH", "WHP", "WHM", "AH", "AHP", "AHM", "TIME", "URANge", "IRANge", "MATH",
)
NO_ELEMENT = ("TIME", "MATH")
PRESET1 = ["U", "I", "P", "S", "Q", "LAMBda", "PHI", "FU", "FI", None]
RATES = SPEC.update_periods_s
FLOAT_NAN = struct.pack(">I", 0x7E951BEE)  # 9.91E+37
FLOAT_INF = struct.pack(">I", 0x7E94F56A)  # 9.9E+37


class EmulatorOptions(BaseModel):
    """What a profile's `emulator:` block (or `labconsole emulate wt310`) may set."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    idle_w: float = Field(60.0, ge=0, le=1e5)
    dynamic_w: float = Field(140.0, ge=0, le=1e5)
    noise_w: float = Field(1.0, ge=0, le=1e4)
    volts: float = Field(230.0, gt=0, le=900)
    pf_idle: float = Field(0.85, gt=0, le=1)
    pf_load: float = Field(0.95, gt=0, le=1)
    mains_hz: float = Field(50.0, gt=0, le=1000)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = Field("workload", description="workload | host | active | a constant 0..1")
    seed: int | None = Field(None, ge=0, lt=2**64)
    update_s: float = Field(0.5, gt=0, le=3600, description="update period at power-on: " + ", ".join(f"{r:g}" for r in RATES) + " s")
    serial: str = Field("EMU0000001", pattern=r"^EMU[A-Za-z0-9]{0,13}$", description="must start with EMU")


    @field_validator("update_s")
    @classmethod
    def _rate(cls, v: float) -> float:
        if not any(math.isclose(v, r) for r in RATES):
            raise ValueError("must be one of " + ", ".join(f"{r:g}" for r in RATES) + " s")
        return v


class WT310EMeter:
    """The instrument: state, SCPI command table, update clock. No sockets (see WT310EServer)."""

    def __init__(self, options: EmulatorOptions, model: LoadModel | None = None, clock=time.monotonic):
        self.options = options
        self.model = model or LoadModel(
            idle_w=options.idle_w, dynamic_w=options.dynamic_w, noise_w=options.noise_w, volts=options.volts,
            pf_idle=options.pf_idle, pf_load=options.pf_load, seed=options.seed, utilisation=utilisation_source(options.utilisation),
        )
        self.clock = clock
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors = ErrorQueue()
        self.parser = ScpiParser(self.errors)
        self.parser.on_error = self._on_error
        self.cal_busy_s = 0.5
        self._build_commands()
        self._reset(options.update_s)

    # --- state ----------------------------------------------------------------------------------
    def _reset(self, rate: float = 0.5) -> None:
        """*RST: factory settings (fixed maximum ranges, preset items, 0.5 s updates)."""
        self.cf = 3
        vt, at = SPEC.ranges(3)
        self.v_range, self.a_range = vt[-1], at[-1]
        self.v_auto = self.a_auto = False
        self.mode = "RMS"
        self.line_filter = self.freq_filter = False
        self.rate = rate
        self.hold = False
        self.numeric_hold: list[float] | None = None
        self.items: list[tuple[str, int] | None] = [(f, 1) if f else None for f in PRESET1] + [None] * 245
        self.number = 15
        self.num_format = "ASCii"
        self.filters = {i: "NEVer" for i in range(1, 17)}
        self.eesr = 0
        self.eese = 0
        self.esr = 0
        self.ese = 0
        self.remote = False
        self.integ_state = "RESet"
        self.integ_mode = "NORMal"
        self.integ_timer_s = 0
        self.wh = self.whp = self.whm = self.ah = self.ahp = self.ahm = self.integ_time = 0.0
        self._range_changed = False
        self._t0 = self.clock()
        self._ticks = 0
        self.latched: dict[str, float] = {}
        self._tick()  # the meter has numbers from the start

    def _on_error(self, code: int) -> None:
        self.esr |= 32 if code < 200 else 16 if code < 300 else 4 if 400 <= code < 500 else 8

    def ranges(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return SPEC.ranges(self.cf)

    # --- the update clock -------------------------------------------------------------------------
    def advance(self) -> None:
        """Run every update that has come due since the last call (the meter's own clock)."""
        now = self.clock()
        if self.hold:
            self._t0, self._ticks = now, 0
            return
        due = int((now - self._t0) / self.rate)
        new = due - self._ticks
        if new <= 0:
            return
        self._ticks = due
        if new > 50:  # a long silence: integrate the gap in one go, then the last updates
            self._integrate(self.latched_raw_p, (new - 50) * self.rate)
            new = 50
        for _ in range(new):
            self._tick()

    latched_raw_p = 0.0

    def _tick(self) -> None:
        r = self.model.reading()
        vt, at = self.ranges()
        changed = self._range_changed
        self._range_changed = False
        if self.v_auto:
            ar = AutoRanger(vt, self.v_range)
            changed |= ar.update(r.volts)
            self.v_range = ar.current
        if self.a_auto:
            ar = AutoRanger(at, self.a_range)
            changed |= ar.update(r.amps)
            self.a_range = ar.current
        forced_limit = 0.5 if self.cf == 3 else 0.25
        if not self.a_auto and self.a_range < forced_limit and r.amps > SPEC.overrange_factor * self.a_range:
            # IM WT310E-01EN p. 2-7: a mA range that sees excessive input goes to 1 A and auto.
            self.a_range, self.a_auto, changed = (1.0 if self.cf == 3 else 0.5), True, True
        over_v = r.volts > SPEC.overrange_factor * self.v_range
        over_a = r.amps > SPEC.overrange_factor * self.a_range
        u = r.volts if r.volts > 0.005 * self.v_range else 0.0
        i = r.amps if r.amps > 0.005 * self.a_range else 0.0
        p = r.watts if (u and i) else 0.0
        s_va = u * i
        lam = p / s_va if s_va > 0 else math.nan
        q = math.sqrt(max(s_va * s_va - p * p, 0.0))
        self.latched_raw_p = p
        if self.integ_state == "STARt":
            self._integrate(p, self.rate, i)
        d = {
            "U": u, "I": i, "P": p, "S": s_va, "Q": q, "LAMBDA": lam,
            "PHI": math.degrees(math.acos(max(-1.0, min(1.0, lam)))) if not math.isnan(lam) else math.nan,
            "FU": self.options.mains_hz, "FI": self.options.mains_hz,
            "UPPEAK": u * math.sqrt(2), "UMPEAK": -u * math.sqrt(2), "IPPEAK": i * 2.0, "IMPEAK": -i * 2.0,
            "PPPEAK": p * 2.0, "PMPEAK": -p * 0.1,
        }
        if changed:
            d = {k: math.nan for k in d}  # no valid numbers in the update that switched range
        else:
            if over_v:
                for k in ("U", "P", "S", "Q", "LAMBDA", "PHI", "UPPEAK", "UMPEAK", "PPPEAK", "PMPEAK"):
                    d[k] = math.inf
            if over_a:
                for k in ("I", "P", "S", "Q", "LAMBDA", "PHI", "IPPEAK", "IMPEAK", "PPPEAK", "PMPEAK"):
                    d[k] = math.inf
        d.update(
            WH=self.wh, WHP=self.whp, WHM=self.whm, AH=self.ah, AHP=self.ahp, AHM=self.ahm,
            TIME=float(int(self.integ_time)), URANGE=self.v_range, IRANGE=self.a_range, MATH=math.nan,
        )
        self.latched = d
        # The UPD condition rises while the numbers are computed and falls when they are ready.
        if self.filters[1] in ("RISE", "FALL", "BOTH"):
            self.eesr |= 1

    def _integrate(self, watts: float, seconds: float, amps: float = 0.0) -> None:
        if self.integ_state != "STARt":
            return
        if self.integ_timer_s and self.integ_time + seconds >= self.integ_timer_s:
            seconds = max(0.0, self.integ_timer_s - self.integ_time)
            self.integ_state = "TIMEup"
        self.wh += watts * seconds / 3600.0
        self.whp += max(watts, 0.0) * seconds / 3600.0
        self.whm += min(watts, 0.0) * seconds / 3600.0
        self.ah += amps * seconds / 3600.0
        self.ahp += amps * seconds / 3600.0
        self.integ_time += seconds

    # --- message handling ----------------------------------------------------------------------------
    lines_handled = 0  # messages received (a bench counts the driver's polls with it)

    def handle_line(self, line: str) -> str | None:
        with self.lock:
            self.lines_handled += 1
            self.advance()
            return self.parser.handle_line(line)

    def _settable(self) -> None:
        if self.integ_state == "STARt":
            raise ScpiError(INTEGRATION_RUNNING)

    def _word(self, choice: str) -> str:
        """Character data in a reply: full word when verbose, else the short form."""
        short, long = scpi.mnemonic(choice)
        return long if self.parser.verbose else short

    def _build_commands(self) -> None:
        p = self.parser
        add = p.add

        def one(args: list[str]) -> str:
            if not args:
                raise ScpiError(scpi.MISSING_PARAMETER)
            if len(args) > 1:
                raise ScpiError(scpi.PARAMETER_NOT_ALLOWED)
            return args[0]

        def flag(attr: str, check: bool = False):
            def set_(_s, args):
                if check:
                    self._settable()
                setattr(self, attr, parse_bool(one(args)))

            return set_, (lambda _s, _a: "1" if getattr(self, attr) else "0")

        # Common commands.
        p.common["*IDN?"] = lambda _s, _a: f"YOKOGAWA,WT310E,{self.options.serial},F1.04-EMU"
        p.common["*OPT?"] = lambda _s, _a: "NONE"
        p.common["*RST"] = lambda _s, _a: self._reset()
        p.common["*CLS"] = lambda _s, _a: self._cls()
        p.common["*CAL?"] = lambda _s, _a: self._calibrate()
        p.common["*OPC?"] = lambda _s, _a: "1"
        p.common["*OPC"] = lambda _s, _a: None
        p.common["*WAI"] = lambda _s, _a: None
        p.common["*TST?"] = lambda _s, _a: "0"
        p.common["*ESR?"] = lambda _s, _a: self._take("esr")
        p.common["*ESE"] = lambda _s, a: setattr(self, "ese", int(parse_number(one(a))) & 0xFF)
        p.common["*ESE?"] = lambda _s, _a: str(self.ese)
        p.common["*STB?"] = lambda _s, _a: str(self._stb())

        # Communication and status.
        add(":COMMunicate:HEADer", lambda _s, a: setattr(p, "headers", parse_bool(one(a))), lambda _s, _a: "1" if p.headers else "0")
        add(":COMMunicate:VERBose", lambda _s, a: setattr(p, "verbose", parse_bool(one(a))), lambda _s, _a: "1" if p.verbose else "0")
        add(":COMMunicate:REMote", *flag("remote"))
        add(":COMMunicate:LOCKout", lambda _s, a: parse_bool(one(a)), lambda _s, _a: "0")
        add(":COMMunicate:WAIT", lambda _s, a: self._wait(int(parse_number(one(a)))))
        add(":STATus:EESR", None, lambda _s, _a: self._take("eesr"))
        add(":STATus:EESE", lambda _s, a: setattr(self, "eese", int(parse_number(one(a))) & 0xFFFF), lambda _s, _a: str(self.eese))
        add(":STATus:CONDition", None, lambda _s, _a: "0")
        add(":STATus:FILTer<x>", self._set_filter, lambda s, _a: self._word(self.filters[self._filter_no(s)]))
        add(":STATus:ERRor", None, lambda _s, _a: self.errors.pop(), header=False)
        add(":STATus:QMESsage", lambda _s, a: setattr(self.errors, "messages", parse_bool(one(a))), lambda _s, _a: "1" if self.errors.messages else "0")
        add(":STATus:QENable", lambda _s, a: parse_bool(one(a)), lambda _s, _a: "0")
        add(":STATus:SPOLl", None, lambda _s, _a: str(self._stb()))

        # Input.
        add("[:INPut]:VOLTage:RANGe", lambda _s, a: self._set_range("v", one(a)), lambda _s, _a: nr3(self.v_range, 4))
        add("[:INPut]:CURRent:RANGe", lambda _s, a: self._set_range("a", one(a)), lambda _s, _a: nr3(self.a_range, 4))
        add("[:INPut]:VOLTage:AUTO", lambda _s, a: self._set_auto("v", one(a)), lambda _s, _a: "1" if self.v_auto else "0")
        add("[:INPut]:CURRent:AUTO", lambda _s, a: self._set_auto("a", one(a)), lambda _s, _a: "1" if self.a_auto else "0")
        add("[:INPut]:CFACtor", lambda _s, a: self._set_cf(one(a)), lambda _s, _a: str(self.cf))
        add("[:INPut]:MODE", lambda _s, a: self._set_choice("mode", one(a), ("RMS", "VMEan", "DC")), lambda _s, _a: self._word(self.mode))
        add("[:INPut]:WIRing", None, lambda _s, _a: "P1W2")
        add("[:INPut]:FILTer:LINE", *flag("line_filter", check=True))
        add("[:INPut]:FILTer:FREQuency", *flag("freq_filter", check=True))

        # The command set (a WT300E can answer the WT200's instead; that is not emulated).
        add(":SYSTem:COMMunicate:COMMand", lambda _s, a: self._command_set(one(a)), lambda _s, _a: "WT300")

        # Update rate and hold.
        add(":RATE", lambda _s, a: self._set_rate(one(a)), lambda _s, _a: nr3(self.rate, 4))
        add(":HOLD", lambda _s, a: setattr(self, "hold", parse_bool(one(a))), lambda _s, _a: "1" if self.hold else "0")

        # Numeric data.
        add(":NUMeric:FORMat", lambda _s, a: self._set_choice("num_format", one(a), ("ASCii", "FLOat")), lambda _s, _a: self._word(self.num_format))
        add(":NUMeric[:NORMal]:NUMber", lambda _s, a: self._set_number(one(a)), lambda _s, _a: str(self.number))
        add(":NUMeric[:NORMal]:ITEM<x>", self._set_item, self._get_item)
        add(":NUMeric[:NORMal]:VALue", None, self._values, header=False)
        add(":NUMeric[:NORMal]:PRESet", lambda _s, a: self._preset(one(a)))
        add(":NUMeric:HOLD", lambda _s, a: self._numeric_hold(parse_bool(one(a))), lambda _s, _a: "1" if self.numeric_hold is not None else "0")

        # Integration.
        add(":INTEGrate:MODE", lambda _s, a: self._integ_mode(one(a)), lambda _s, _a: self._word(self.integ_mode))
        add(":INTEGrate:TIMer", lambda _s, a: self._integ_timer(a), lambda _s, _a: self._timer_text())
        add(":INTEGrate:STARt", lambda _s, a: self._integ("start"))
        add(":INTEGrate:STOP", lambda _s, a: self._integ("stop"))
        add(":INTEGrate:RESet", lambda _s, a: self._integ("reset"))
        add(":INTEGrate:STATe", None, lambda _s, _a: self._word(self.integ_state))

    # --- handlers ------------------------------------------------------------------------------------
    def _take(self, attr: str) -> str:
        value = getattr(self, attr)
        setattr(self, attr, 0)
        return str(value)

    def _stb(self) -> int:
        stb = 0
        if self.eesr & self.eese:
            stb |= 1 << 3
        if len(self.errors):
            stb |= 1 << 2
        if self.esr & self.ese:
            stb |= 1 << 5
        return stb

    def _cls(self) -> None:
        self.errors.clear()
        self.eesr = 0
        self.esr = 0

    def _calibrate(self) -> str:
        # Zero-level compensation keeps the meter busy for a moment; it answers 0 on success.
        time.sleep(self.cal_busy_s)
        return "0"

    def _wait(self, mask: int) -> None:
        """:COMMunicate:WAIT: hold this connection until one of the masked events is set.
        The mask is the 16-bit extended event register's: another number is out of range, and an
        empty mask (no event can end the wait) returns at once instead of holding for ever."""
        if not 0 <= mask <= 0xFFFF:
            raise scpi.ScpiError(scpi.DATA_OUT_OF_RANGE, str(mask))
        if mask == 0:
            return
        self.lock.release()
        try:
            while not self.stopping.is_set():
                with self.lock:
                    self.advance()
                    if self.eesr & mask:
                        return
                time.sleep(0.002)
        finally:
            self.lock.acquire()

    def _filter_no(self, suffixes: list) -> int:
        n = suffixes[-1]
        if not n or not 1 <= n <= 16:
            raise ScpiError(scpi.UNDEFINED_HEADER)
        return n

    def _set_filter(self, suffixes: list, args: list[str]) -> None:
        n = self._filter_no(suffixes)
        self.filters[n] = parse_choice(self._one(args), ("RISE", "FALL", "BOTH", "NEVer"))

    @staticmethod
    def _one(args: list[str]) -> str:
        if len(args) != 1:
            raise ScpiError(scpi.MISSING_PARAMETER if not args else scpi.PARAMETER_NOT_ALLOWED)
        return args[0]

    def _set_choice(self, attr: str, text: str, choices: tuple[str, ...]) -> None:
        if attr == "mode":
            self._settable()
        setattr(self, attr, parse_choice(text, choices))

    def _command_set(self, text: str) -> None:
        if parse_choice(text, ("WT200", "WT300")) != "WT300":
            raise ScpiError(scpi.ILLEGAL_PARAMETER, "the WT200 command set is not emulated")

    def _set_range(self, which: str, text: str) -> None:
        self._settable()
        vt, at = self.ranges()
        table, unit = (vt, "V") if which == "v" else (at, "A")
        value = parse_number(text, unit)
        hit = [r for r in table if math.isclose(r, value, rel_tol=1e-6)]
        if not hit:
            raise ScpiError(scpi.ILLEGAL_PARAMETER, text)
        if which == "v":
            self.v_range, self.v_auto = hit[0], False
        else:
            self.a_range, self.a_auto = hit[0], False
        self._range_changed = True

    def _set_auto(self, which: str, text: str) -> None:
        self._settable()
        setattr(self, "v_auto" if which == "v" else "a_auto", parse_bool(text))

    def _set_cf(self, text: str) -> None:
        self._settable()
        t = text.strip().upper()
        if t not in ("3", "6", "A6", "6A"):
            raise ScpiError(scpi.ILLEGAL_PARAMETER, text)
        cf = 3 if t == "3" else 6
        if cf != self.cf:
            self.cf = cf
            vt, at = self.ranges()
            # Changing the crest factor moves the ranges to their maximum (IM WT310E-01EN p. 2-17).
            self.v_range, self.a_range = vt[-1], at[-1]
            self._range_changed = True

    def _set_rate(self, text: str) -> None:
        self._settable()
        if text.strip().upper() == "AUTO":
            raise ScpiError(scpi.ILLEGAL_PARAMETER, "AUTO is not emulated")
        value = parse_number(text, "S")
        hit = [r for r in RATES if math.isclose(r, value, rel_tol=1e-6)]
        if not hit:
            raise ScpiError(scpi.ILLEGAL_PARAMETER, text)
        self.rate = hit[0]
        self._t0, self._ticks = self.clock(), 0

    def _set_number(self, text: str) -> None:
        if text.strip().upper() == "ALL":
            self.number = 255
            return
        n = parse_number(text)
        if n != int(n) or not 1 <= n <= 255:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE, text)
        self.number = int(n)

    def _item_no(self, suffixes: list) -> int:
        n = suffixes[-1]
        if not n or not 1 <= n <= 255:
            raise ScpiError(scpi.UNDEFINED_HEADER)
        return n

    def _set_item(self, suffixes: list, args: list[str]) -> None:
        n = self._item_no(suffixes)
        if not args:
            raise ScpiError(scpi.MISSING_PARAMETER)
        if args[0].strip().upper() == "NONE":
            self.items[n - 1] = None
            return
        fn = parse_choice(args[0], FUNCTIONS)
        element = 1
        if len(args) > 1:
            if fn in NO_ELEMENT:
                raise ScpiError(scpi.PARAMETER_NOT_ALLOWED)
            el = args[1].strip().upper()
            if el in ("SIGM", "SIGMA"):
                raise ScpiError(scpi.ILLEGAL_PARAMETER, "a WT310E has no sigma element")
            try:
                element = int(parse_number(el))
            except ScpiError:
                raise ScpiError(scpi.ILLEGAL_PARAMETER, el) from None
            if element != 1:
                raise ScpiError(scpi.ILLEGAL_PARAMETER, f"element {el}: a WT310E has one")
        if len(args) > 2:
            raise ScpiError(scpi.PARAMETER_NOT_ALLOWED)
        self.items[n - 1] = (fn, element)

    def _get_item(self, suffixes: list, _args: list[str]) -> str:
        item = self.items[self._item_no(suffixes) - 1]
        if item is None:
            return "NONE"
        fn, el = item
        return self._word(fn) if fn in NO_ELEMENT else f"{self._word(fn)},{el}"

    def _preset(self, text: str) -> None:
        if text.strip() != "1":
            raise ScpiError(scpi.ILLEGAL_PARAMETER, "only preset 1 is emulated")
        self.items = [(f, 1) if f else None for f in PRESET1] + [None] * 245

    def _current_values(self) -> list[float]:
        out = []
        for item in self.items[: self.number]:
            if item is None:
                out.append(math.nan)
            else:
                out.append(self.latched.get(item[0].upper(), math.nan))
        return out

    def _numeric_hold(self, on: bool) -> None:
        self.numeric_hold = self._current_values() if on else None

    def _values(self, _suffixes: list, args: list[str]) -> str:
        values = self.numeric_hold if self.numeric_hold is not None else self._current_values()
        if args:
            n = parse_number(self._one(args))
            if n != int(n) or not 1 <= n <= len(values):
                raise ScpiError(scpi.DATA_OUT_OF_RANGE, args[0])
            values = [values[int(n) - 1]]
        if self.num_format == "FLOat":
            raw = b"".join(FLOAT_NAN if math.isnan(v) else FLOAT_INF if math.isinf(v) else struct.pack(">f", v) for v in values)
            length = str(len(raw))
            return f"#{len(length)}{length}" + raw.decode("latin-1")
        texts = []
        for item, v in zip(self.items[: len(values)] if not args else [self.items[int(parse_number(args[0])) - 1]], values):
            if item is not None and item[0] == "TIME" and not math.isnan(v):
                texts.append(str(int(v)))
            else:
                texts.append(nr3(v, 5))
        return ",".join(texts)

    def _integ_mode(self, text: str) -> None:
        self._settable()
        self.integ_mode = parse_choice(text, ("NORMal", "CONTinuous"))

    def _integ_timer(self, args: list[str]) -> None:
        self._settable()
        if len(args) != 3:
            raise ScpiError(scpi.MISSING_PARAMETER if len(args) < 3 else scpi.PARAMETER_NOT_ALLOWED)
        h, m, s = (int(parse_number(a)) for a in args)
        if not (0 <= h <= 10000 and 0 <= m <= 59 and 0 <= s <= 59):
            raise ScpiError(scpi.DATA_OUT_OF_RANGE)
        self.integ_timer_s = h * 3600 + m * 60 + s

    def _timer_text(self) -> str:
        t = self.integ_timer_s
        return f"{t // 3600},{t % 3600 // 60},{t % 60}"

    def _integ(self, action: str) -> None:
        state = self.integ_state
        if action == "start":
            if state in ("STARt", "TIMEup"):
                raise ScpiError(INTEG_ALREADY_STARTED)
            self.integ_state = "STARt"
        elif action == "stop":
            if state != "STARt":
                raise ScpiError(INTEG_NOT_STARTED)
            self.integ_state = "STOP"
        else:
            if state == "STARt":
                raise ScpiError(INTEG_RESET_WHILE_RUNNING)
            self.integ_state = "RESet"
            self.wh = self.whp = self.whm = self.ah = self.ahp = self.ahm = self.integ_time = 0.0


class WT310EServer(TcpFaults):
    """The meter on a TCP socket: one thread accepting, one per connection. Stop() ends all."""

    def __init__(self, meter: WT310EMeter, host: str = "127.0.0.1", port: int = 0):
        self.meter = meter
        self._sock = listen_tcp(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = meter.stopping
        self._init_faults()
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"wt310-emulator-{self.port}", daemon=True)
        self.connections = 0

    @property
    def resource(self) -> str:
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def start(self) -> "WT310EServer":
        self._thread.start()
        return self

    # TcpFaults: what going offline means here
    def _close_listener(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def _listen_again(self) -> None:
        self._sock = listen_tcp(self.host, self.port)

    def _drop_clients(self) -> None:
        self.drop_connections()

    def drop_connections(self) -> None:
        with self._lock:
            socks = list(self._clients.values())
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            if not self._online.is_set():
                self._online.wait(0.2)
                continue
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set() or self._online.is_set():
                    break
                continue  # switched off by set_offline: wait to come back
            conn.settimeout(0.2)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(conn,), name=f"wt310-client-{self.port}", daemon=True)
            with self._lock:
                self._clients[t] = conn
                self.connections += 1
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                if len(buf) > MAX_LINE and b"\n" not in buf:
                    buf = b""  # a runaway line: drop it, as an input buffer overflow would
                    with self.meter.lock:
                        self.meter.parser.push_error(*scpi.SYNTAX_ERROR)
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    if self._silent.is_set():
                        continue
                    line = raw.rstrip(b"\r").decode("latin-1")
                    reply = self.meter.handle_line(line)
                    if reply is not None and not self._silent.is_set():
                        mangle = self._mangle
                        out = reply.encode("latin-1") + b"\n" if mangle is None else mangle(line, reply)
                        if out:
                            conn.sendall(out)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                self._clients.pop(threading.current_thread(), None)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        self.drop_connections()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            threads = list(self._clients)
        for t in threads:
            t.join(timeout)


class EmulatorHandle:
    """What `start()` returns: the address for the driver, and stop()."""

    def __init__(self, server: WT310EServer):
        self.server = server
        self.meter = server.meter

    @property
    def resource(self) -> str:
        return self.server.resource

    def source_options(self) -> dict[str, Any]:
        return {"resource": self.resource}

    def set_silent(self, silent: bool) -> None:
        self.server.set_silent(silent)

    def set_mangler(self, mangle) -> None:
        self.server.set_mangler(mangle)

    def set_offline(self, offline: bool) -> None:
        self.server.set_offline(offline)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "EmulatorHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(options: dict[str, Any] | None = None) -> EmulatorHandle:
    """Start a WT310E emulator in this process (for a profile's `emulator:` or a test)."""
    try:
        opts = EmulatorOptions.model_validate(options or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise ValueError(f"wt310 emulator: {where}: {first['msg']}") from None
    meter = WT310EMeter(opts)
    try:
        server = WT310EServer(meter, opts.host, opts.port)
    except OSError as exc:
        raise ValueError(f"wt310 emulator: {exc.strerror or exc}") from None
    return EmulatorHandle(server.start())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labconsole emulate wt310", description="A Yokogawa WT310E emulator on a TCP socket, for PyVISA (pyvisa-py).")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--utilisation", type=utilisation_arg, default="workload", help="workload (default: the benchmark's CPU use, its LoadGen workers' process trees, whatever else runs here), host (the whole machine's), active, or a constant 0..1")
    ap.add_argument("--idle-w", type=float, default=60.0, help="watts at idle")
    ap.add_argument("--dynamic-w", type=float, default=140.0, help="extra watts at full utilisation")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    util = args.utilisation
    follow_any_benchmark()  # run on its own: 'workload' is any labconsole benchmark here
    try:
        handle = start({"host": args.host, "port": args.port, "utilisation": util, "idle_w": args.idle_w, "dynamic_w": args.dynamic_w, "seed": args.seed})
    except (ValueError, OSError) as exc:
        return startup_failure("wt310", exc)
    warn_if_reachable(args.host)

    def announce() -> None:
        print(f"Yokogawa WT310E emulator listening on {handle.server.host}:{handle.server.port}")
        print(f"VISA resource: {handle.resource}")
        print("in a profile:  driver: yokogawa")
        print(f"               options: {{resource: \"{handle.resource}\"}}")
        print("Ctrl-C stops it.", flush=True)

    def stop() -> None:
        handle.stop()
        print("stopped.")

    return serve_until_interrupted(announce, stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
