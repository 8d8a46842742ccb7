"""A SPEC PTDaemon look-alike on loopback TCP, for tests and for people learning the console.

It takes SPEC's command line (`-l LOGFILE -p PORT [-c CHANNELS] [-D] [-b BOARD] [-B BAUD]
[-n|-g|-y|-U] DEVICE_TYPE DEVICE_PORT`), so anything that launches PTDaemon (power-dev's
server included) can launch it; it answers Hello, Identify, RR, SR, Go, Stop, RL / RL,*,* /
DC-RL, Watts and Uncertainty with PTD's reply strings (`labconsole.instruments.ptd`, which the
`ptd` driver reads them with), prints PTD-style console lines and writes a PTD-style `-l` log,
so MLPerf-style folders built from it look right. It is NOT a
measurement: the readings come from `labconsole.instruments.load_model.LoadModel`, and the Identify reply
says so (OS field `labconsole-emulator ...`, analyzer serial `EMU...`) while keeping PTD's field
layout.

The analyzer behaves like a WT310E (device type 49; 77 = a three-element WT333E summed, as
PTD's multichannel personality): WT310E range tables, auto-range by the manual's rule (a
reading taken while the range switches is invalid: -1.000000), over-range above 140 % of a
fixed range (invalid), per-sample uncertainty from the accuracy spec, unknown in auto-range.

Where PTD's behaviour is not documented, this emulator makes a choice and says so in a
comment marked "[unverified]".
"""

from __future__ import annotations

import argparse
import platform
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labconsole.emulators.faults import TcpFaults
from labconsole.emulators.registry import listen_tcp, say, startup_failure, validate_options, warn_if_reachable
from labconsole.instruments.load_model import LoadModel, follow_any_benchmark, utilisation_arg, utilisation_source
from labconsole.instruments.ptd import (
    GO_MAX_SAMPLES,
    parse_powerdev_analyzers,
    HELLO_REPLY,
    INVALID_GROUP,
    INVALID_PARAMETER_COUNT,
    NO_MEASUREMENT_REPLY,
    PTD_MODELS,
    READ_ALL,
    READ_ALL_DC,
    READ_ALL_MULTICHANNEL,
    STOP_REPLY,
    UNKNOWN_COMMAND,
    UNKNOWN_RANGES,
    UNKNOWN_UNCERTAINTY_MIN,
    Group,
    MeterSpec,
    RangeGroup,
    UncertaintyReply,
    WattsReply,
    console_line,
    format_identify,
    format_ranges,
    format_sample_line,
    go_reply,
    log_message_line,
    range_changed_reply,
    samples_header,
)
from labconsole.instruments.ranges import OVERRANGE_FACTOR, AutoRanger, pick_range

PTD_VERSION = "1.11.1"
PTD_CRC = "00000000"  # no SPEC build: a CRC of zeros
PTD_BUILD_DATE = "20260101"
MAX_COMMAND_BYTES = 64 * 1024
# The most a Go may ask for: an hour between samples (the -i interval's bound), and a ramp-up
# of a million samples. A bigger number is a parameter error, as PTD answers one, never a
# sampling thread that dies on a wait too long to represent.
MAX_GO_INTERVAL_MS = 3_600_000
MAX_RAMPUP_SAMPLES = 1_000_000
MAX_CLIENTS = 64  # each client has its own thread: one holding half a command blocks no one


@dataclass(frozen=True)
class EmulatedDevice:
    model: str  # PTD's name for it (Identify field 1)
    idn_model: str  # the analyzer's own *IDN? model
    elements: int
    shares: tuple[float, ...]  # how the load splits over the elements

    @property
    def multichannel(self) -> bool:
        return self.elements > 1

    @property
    def spec(self) -> MeterSpec:
        return PTD_MODELS[self.model]


DEVICES: dict[int, EmulatedDevice] = {
    49: EmulatedDevice("YokogawaWT310E", "WT310E", 1, (1.0,)),
    77: EmulatedDevice("YokogawaWT330_multichannel", "WT333E", 3, (0.5, 0.3, 0.2)),
}


class PtdEmulatorOptions(BaseModel):
    """Options of `start()` (a profile's `emulator:` block) and of the command line."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on (loopback unless told otherwise)")
    port: int = Field(0, ge=0, le=65535, description="0: any free port")
    device_type: int = Field(49, ge=0, le=1000, description="PTD device type: 49 (WT310E) or 77 (WT333E, multichannel)")
    device_port: str = Field("emulated", max_length=256)
    channels: str | None = Field(None, pattern=r"^\d+(,\d+)?$", description="PTD's -c (accepted, reported)")
    interface: Literal["", "-n", "-g", "-y", "-U"] = ""
    dc: bool = Field(False, description="PTD's -D: DC personality (samples read with DC-RL)")
    gpib_board: int | None = Field(None, ge=0, le=31)
    baud: int | None = Field(None, ge=1, le=10_000_000)
    log_file: str | None = Field(None, description="PTD's -l: sample and message log")
    console_file: str | None = Field(None, description="where the console lines go besides memory")
    idle_w: float = Field(60.0, ge=0, le=1e6)
    dynamic_w: float = Field(140.0, ge=0, le=1e6)
    noise_w: float = Field(1.0, ge=0, le=1e5)
    volts: float = Field(230.0, gt=0, le=1000)
    pf_idle: float = Field(0.85, gt=0, le=1)
    pf_load: float = Field(0.95, gt=0, le=1)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = "workload"
    seed: int | None = Field(None, ge=0, lt=2**64)
    clock_offset_ms: float = Field(0.0, ge=-1e9, le=1e9, description="the emulated PTD host's clock error")
    serial: str = Field("EMU0001", pattern=r"^EMU[A-Za-z0-9]{0,16}$")
    calibration_date: str = Field("no_cal_date", pattern=r"^[A-Za-z0-9_./-]{1,32}$")
    default_interval_ms: int = Field(1000, ge=10, le=3_600_000)
    min_interval_ms: int = Field(10, ge=1, le=3_600_000, description="Go intervals below this are refused")
    uncertainty_limit_pct: float = Field(1.0, gt=0, le=100)
    max_samples: int = Field(GO_MAX_SAMPLES, ge=1, le=10_000_000)
    analyzers: int = Field(
        1, ge=1, le=16,
        description="several analyzers for one SUT (power-dev's [analyzerN]): one PTDaemon each, on its own port "
        "(port, port+1, ... or free ports), each seeing 1/N of idle_w and dynamic_w",
    )


Options = PtdEmulatorOptions  # checked by the profile loader for a source's `emulator:` block


def _nr3(x: float) -> str:
    """A Yokogawa-style NR3 number for the 'Buffer was' line: 500.0E-03, 150.0E+00."""
    if x == 0:
        return "0.000E+00"
    exp = 0
    while abs(x) >= 1000:
        x, exp = x / 1000, exp + 3
    while abs(x) < 1:
        x, exp = x * 1000, exp - 3
    return f"{x:.1f}E{exp:+03d}"


@dataclass
class Sample:
    t_ns: int  # the emulated PTD host's clock
    groups: list[Group]  # multichannel: the sum first, then each element
    valid: bool
    uncertainty: float | None  # fraction of the reading; None = unknown
    rampup: bool = False


@dataclass
class Measurement:
    interval_s: float
    mark: str
    rampup: int
    next_mono: float
    samples: list[Sample] = field(default_factory=list)
    unread: int = 0
    running: bool = True


class PtdEmulator(TcpFaults):
    def __init__(self, options: PtdEmulatorOptions, console: Callable[[str], None] | None = None):
        self.opts = o = options
        if o.device_type not in DEVICES:
            known = ", ".join(f"{k} ({d.model})" for k, d in DEVICES.items())
            raise ValueError(f"device type {o.device_type} is not emulated (emulated: {known})")
        self.device = DEVICES[o.device_type]
        self.spec = self.device.spec
        util = utilisation_source(o.utilisation)
        self.model = LoadModel(
            idle_w=o.idle_w, dynamic_w=o.dynamic_w, noise_w=o.noise_w, volts=o.volts,
            pf_idle=o.pf_idle, pf_load=o.pf_load, seed=o.seed, utilisation=util,
        )
        # The analyzer starts in auto-range, like a WT310E after yoko-tool's reset.
        self.auto_v = True
        self.auto_a = True
        self.v_rangers = [AutoRanger(self.spec.voltage_ranges, pick_range(o.volts, self.spec.voltage_ranges)) for _ in range(self.device.elements)]
        self.a_rangers = [AutoRanger(self.spec.current_ranges) for _ in range(self.device.elements)]
        self._console_sink = console
        self._console_lock = threading.Lock()
        self.console_lines: deque[str] = deque(maxlen=20000)
        self._console_fh = open(o.console_file, "a", encoding="utf-8", buffering=1) if o.console_file else None
        self._log_fh = open(o.log_file, "a", encoding="ascii", errors="replace", buffering=1) if o.log_file else None
        self._lock = threading.Condition(threading.Lock())
        self._meas: Measurement | None = None
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.port = 0
        self.commands_seen = 0
        # Test hooks (a daemon that hangs, answers garbage, or goes away): see TcpFaults.
        self._init_faults()

    # --- clock, console, log ---------------------------------------------------------------------
    def now_ns(self) -> int:
        return time.time_ns() + int(self.opts.clock_offset_ms * 1e6)

    def console(self, message: str, level: str | None = None, log: bool = False) -> None:
        now = self.now_ns()
        text = f"{level}: {message}" if level else message
        line = console_line(now, text)
        # The client thread and the sampling thread both report: one line at a time, or a
        # print() from each can interleave mid-line (and the checker reads these lines).
        with self._console_lock:
            self.console_lines.append(line)
            if self._console_fh is not None:
                self._console_fh.write(line + "\n")
            if self._console_sink is not None:
                self._console_sink(line)
        if log or level in ("ERROR", "WARNING"):
            self._log(log_message_line(now, level or "NOTICE", message))

    def _log(self, line: str) -> None:
        if self._log_fh is not None:
            try:
                self._log_fh.write(line + "\n")
            except ValueError:  # closed by stop()
                pass

    # --- identity --------------------------------------------------------------------------------
    @property
    def idn(self) -> str:
        return f"YOKOGAWA,{self.device.idn_model},{self.opts.serial},F1.04"

    def identify_reply(self) -> str:
        os_text = re.sub(r"[,\r\n]", " ", f"labconsole-emulator ({platform.system()} {platform.release()})")
        return format_identify(
            self.device.model, self.opts.default_interval_ms, PTD_VERSION, PTD_CRC, PTD_BUILD_DATE, os_text,
            self.device.elements, self.opts.calibration_date, self.idn.replace(",", ";"),
        )

    # --- life cycle --------------------------------------------------------------------------------
    def start(self) -> "PtdEmulator":
        o = self.opts
        self.console("labconsole PTDaemon emulator: readings come from a load model, not from a power analyzer")
        self.console(f"SPEC PTDaemon Tool Version {PTD_VERSION}-{PTD_CRC}-{PTD_BUILD_DATE} (labconsole emulator)")
        if o.log_file:
            self.console(f"Redirecting data output to file {o.log_file}")
        self.console(f"Attempting to connect to measurement device type {o.device_type}...")
        self.console(f"Analyzer identity response of {len(self.idn)} bytes: {self.idn}", log=True)
        self.console("WT3XX enhanced model detected.")
        self.console(f"Connected to {self.device.model} successfully")
        self.console(f"Uncertainty checking for {self.device.model} is activated")
        try:
            self._listener = listen_tcp(o.host, o.port, backlog=1024)
        except OSError:
            self._close_files()
            raise
        self.port = self._listener.getsockname()[1]
        self.console(f"Establishing the listener on port {self.port}...")
        for target, name in ((self._serve, "ptd-emulator-serve"), (self._sample_loop, "ptd-emulator-sample")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for sock in (self._listener, *list(self._clients)):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self._close_files()

    def _close_files(self) -> None:
        for fh in (self._log_fh, self._console_fh):
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass

    # --- test hooks ------------------------------------------------------------------------------------
    def drop_client(self) -> None:
        """The connections break (a network fault); the daemon keeps listening."""
        for client in list(self._clients):
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # TcpFaults: what going offline means here (the PTD host goes away)
    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except OSError:
                pass

    def _listen_again(self) -> None:
        self._listener = listen_tcp(self.opts.host, self.port, backlog=1024)

    def _drop_clients(self) -> None:
        self.drop_client()

    # --- sampling ------------------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                m = self._meas
                if m is None or not m.running:
                    self._lock.wait(0.2)
                    continue
                delay = m.next_mono - time.monotonic()
                if delay > 0:
                    self._lock.wait(min(delay, 0.5))  # bounded: a stop or a new Go is seen within 0.5 s
                    continue
                m.next_mono += m.interval_s
                missed = 0
                while m.next_mono < time.monotonic():  # the machine stalled: a real meter's samples would be lost too
                    m.next_mono += m.interval_s
                    missed += 1
                sample, messages = self._take_sample()
                sample.rampup = len(m.samples) < m.rampup
                m.samples.append(sample)
                mark = m.mark
                if len(m.samples) >= self.opts.max_samples:
                    m.running = False
                    messages.append((None, "Completed test"))
            if missed:
                self.console(f"Missed {missed} samples", "WARNING")
            self._log(self._log_line(sample, mark))
            for level, text in messages:
                self.console(text, level)

    def _take_sample(self) -> tuple[Sample, list[tuple[str | None, str]]]:
        r = self.model.reading()
        t = self.now_ns()
        messages: list[tuple[str | None, str]] = []
        elements = []
        switched = over_a = over_v = False
        for k, share in enumerate(self.device.shares):
            w = r.watts * share
            v = r.volts
            pf = 1.0 if self.opts.dc else r.pf
            a = w / (v * pf) if v > 0 and pf > 0 else 0.0
            vr, ar = self.v_rangers[k], self.a_rangers[k]
            if self.auto_v:
                switched |= vr.update(v)
            if self.auto_a:
                switched |= ar.update(a)
            over_v |= not self.auto_v and v > OVERRANGE_FACTOR * vr.current
            over_a |= not self.auto_a and a > OVERRANGE_FACTOR * ar.current
            elements.append((w, v, a, pf))
        invalid = switched or over_a or over_v
        if switched:
            messages.append(("ERROR", f"Bad watts reading nan from {self.device.idn_model}"))
            a0, v0 = self.a_rangers[0], self.v_rangers[0]
            messages.append((None, f"Buffer was {_nr3(a0.current)};{int(self.auto_a)};{_nr3(v0.current)};{int(self.auto_v)}"))
        if over_a:
            messages.append(("ERROR", "Current appears to be too high for set range"))
        if over_v:
            messages.append(("ERROR", "Voltage appears to be too high for set range"))  # [unverified] wording
        uncertainty: float | None = None
        total_w = sum(e[0] for e in elements)
        if not invalid:
            if self.auto_v or self.auto_a:
                messages.append(("ERROR", "Can't evaluate uncertainty of this sample!"))
                messages.append(("WARNING", "Uncertainty unknown for the last measurement sample!"))
            elif total_w > 0:
                u_w = sum(self.spec.accuracy.uncertainty_w(e[0], self.v_rangers[k].current, self.a_rangers[k].current) for k, e in enumerate(elements))
                uncertainty = u_w / total_w
                if uncertainty * 100 > self.opts.uncertainty_limit_pct:
                    # [unverified] wording: power-dev's checker looks for exactly this form.
                    messages.append(("WARNING", f"Uncertainty {uncertainty * 100:.2f}%, which is above {self.opts.uncertainty_limit_pct:.2f}% limit for the last sample!"))
        if invalid:
            groups = [INVALID_GROUP] * (len(elements) + (1 if self.device.multichannel else 0))
        elif self.device.multichannel:
            groups = [(total_w, -1.0, -1.0, -1.0)] + elements
        else:
            groups = elements
        return Sample(t, groups, not invalid, uncertainty), messages

    def _log_line(self, s: Sample, mark: str) -> str:
        return format_sample_line(s.t_ns, s.groups, mark)

    # --- the protocol ------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            self.console("Waiting for a connection...")
            conn = None
            while not self._stop.is_set():
                listener = self._listener
                if listener is None or not self._online.is_set():
                    self._online.wait(0.2)  # switched off by set_offline
                    continue
                try:
                    conn, addr = listener.accept()
                    break
                except socket.timeout:
                    continue
                except OSError:
                    if self._online.is_set() and not self._stop.is_set():
                        return
                    continue
            if conn is None:
                return
            if len(self._clients) >= MAX_CLIENTS:
                self.console(f"Refused connection from {addr[0]}:{addr[1]}: {MAX_CLIENTS} clients already", "WARNING")
                conn.close()
                continue
            self.console(f"Accepted connection from {addr[0]}:{addr[1]}")
            self._clients.add(conn)
            threading.Thread(target=self._client_thread, args=(conn,), name="ptd-emulator-client", daemon=True).start()

    def _client_thread(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        finally:
            self._clients.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
        self.console("Shutting connection down...")
        self.console("Connection is down.")

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                self.console("No data returned by socket read.")
                return
            buf += chunk
            if len(buf) > MAX_COMMAND_BYTES and b"\n" not in buf:
                self.console("Command too long; dropping the connection", "ERROR")
                return
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                command = raw.rstrip(b"\r").decode("ascii", "replace").strip()
                if not command or self._silent.is_set():
                    continue
                reply = self.execute(command)
                mangle = self._mangle
                out = ("\r\n".join(reply) + "\r\n").encode("ascii", "replace") if mangle is None else mangle(command, reply)
                try:
                    if out:
                        conn.sendall(out)
                except OSError:
                    return
                self.console(f"Response to client sent: {reply[0]}")
                for line in reply[1:]:
                    self.console(line)

    def execute(self, command: str) -> list[str]:
        """One command -> the reply lines."""
        self.commands_seen += 1
        parts = command.split(",")
        head = parts[0]
        try:
            if command == "Hello":
                return [HELLO_REPLY]
            if command == "Identify":
                return [self.identify_reply()]
            if head == "RR":
                return [self._rr(parts)]
            if head == "SR":
                return [self._sr(parts)]
            if head == "Go":
                return [self._go(parts)]
            if command == "Stop":
                return [self._stop_measurement()]
            if head in (READ_ALL, READ_ALL_DC):
                return self._rl(command, parts)
            if command == "Watts":
                return [self._watts()]
            if command == "Uncertainty":
                return [self._uncertainty()]
        except _Reply as r:
            return [str(r)]
        return [UNKNOWN_COMMAND]

    def _rr(self, parts: list[str]) -> str:
        def group(k: int) -> RangeGroup:
            return RangeGroup(int(self.auto_a), self.a_rangers[k].current, int(self.auto_v), self.v_rangers[k].current)

        if len(parts) > 2:
            raise _Reply(INVALID_PARAMETER_COUNT)
        with self._lock:
            if len(parts) == 2 and parts[1] != "*":
                return format_ranges([group(self._channel(parts[1]))])
            groups = [group(k) for k in range(self.device.elements)]
            if self.device.multichannel:  # PTD >= 1.4.3 puts the sum channel first [unverified values]
                groups.insert(0, UNKNOWN_RANGES)
            return format_ranges(groups)

    def _channel(self, text: str) -> int:
        try:
            ch = int(text)
        except ValueError:
            raise _Reply("Invalid channel number") from None
        if ch == 0:
            raise _Reply("Null channel number is not allowed")  # [unverified] wording
        if not 1 <= ch <= self.device.elements:
            raise _Reply("Channel number out of range")  # [unverified] wording
        return ch - 1

    def _sr(self, parts: list[str]) -> str:
        if len(parts) not in (3, 4):
            raise _Reply(INVALID_PARAMETER_COUNT)
        quantity, value = parts[1], parts[2].strip()
        if quantity not in ("V", "A"):
            raise _Reply(f"Error in parameter: {quantity!r} is neither V nor A")
        chans = [self._channel(parts[3])] if len(parts) == 4 else list(range(self.device.elements))
        rangers = self.v_rangers if quantity == "V" else self.a_rangers
        table = self.spec.voltage_ranges if quantity == "V" else self.spec.current_ranges
        word = "Volt" if quantity == "V" else "Amp"
        with self._lock:
            if value.lower() == "auto":
                if quantity == "V":
                    self.auto_v = True
                else:
                    self.auto_a = True
                msg = f"{'Volt' if quantity == 'V' else 'Ampere'} range set to Auto"
            else:
                try:
                    x = float(value)
                except ValueError:
                    raise _Reply(f"Error in parameter: {value!r} is not a number") from None
                if not x > 0 or x != x:
                    raise _Reply(f"Error in parameter: range {value} must be positive")  # [unverified]
                if x > max(table):
                    raise _Reply(f"Error in parameter: {value} is above the largest range {max(table):g}")  # [unverified]
                chosen = pick_range(x, table)  # PTD rounds up to the analyzer's range
                for k in chans:
                    rangers[k].current = chosen
                if quantity == "V":
                    self.auto_v = False
                else:
                    self.auto_a = False
                msg = f"{word} range set to {chosen:.6f}{quantity}"
        self.console(msg)
        return range_changed_reply(quantity)

    def _go(self, parts: list[str]) -> str:
        if len(parts) not in (3, 4):
            raise _Reply(INVALID_PARAMETER_COUNT)
        try:
            ms, rampup = int(parts[1]), int(parts[2])
        except ValueError:
            raise _Reply("Error in parameter: Go,<interval ms>,<rampup samples>[,<mark>]") from None
        if ms == 0:
            ms = self.opts.default_interval_ms  # SPEC CPU's Go,0,0: the analyzer's default
        if ms < self.opts.min_interval_ms or rampup < 0:
            raise _Reply(f"Error in parameter: interval must be at least {self.opts.min_interval_ms} ms")  # [unverified]
        if ms > MAX_GO_INTERVAL_MS or rampup > MAX_RAMPUP_SAMPLES:
            raise _Reply(f"Error in parameter: interval at most {MAX_GO_INTERVAL_MS} ms, ramp-up at most {MAX_RAMPUP_SAMPLES} samples")  # [unverified]
        mark = parts[3] if len(parts) == 4 and parts[3] else "notset"
        with self._lock:
            if self._meas is not None and self._meas.running:
                raise _Reply("Error: measurement already running")  # [unverified] wording
            self._meas = Measurement(ms / 1000.0, mark, rampup, time.monotonic() + ms / 1000.0)
            self._lock.notify_all()
        self.console(f"Go with mark '{mark}'")
        return go_reply(ms, rampup, self.opts.max_samples)

    def _stop_measurement(self) -> str:
        with self._lock:
            m = self._meas
            if m is None or not m.running:
                raise _Reply(NO_MEASUREMENT_REPLY)
            m.running = False
        self.console("Completed test")
        return STOP_REPLY

    def _rl(self, command: str, parts: list[str]) -> list[str]:
        if (command == READ_ALL_DC) != self.opts.dc:
            return [UNKNOWN_COMMAND]
        if command == READ_ALL_MULTICHANNEL and not self.device.multichannel:
            return [INVALID_PARAMETER_COUNT]
        if len(parts) > 3 or (len(parts) == 3 and command != READ_ALL_MULTICHANNEL):
            return [INVALID_PARAMETER_COUNT]
        newest: int | None = None
        if len(parts) == 2 and parts[1] != "*":
            try:
                newest = int(parts[1])
            except ValueError:
                return ["Error in parameter: RL,<count>"]
        all_channels = command == READ_ALL_MULTICHANNEL
        with self._lock:
            m = self._meas
            if m is None:
                return [samples_header(0)]  # [unverified]: PTD's reply before any Go
            if newest is not None:
                chosen = m.samples[max(0, len(m.samples) - newest) :]
            else:
                chosen = m.samples[m.unread :]
            m.unread = len(m.samples)
        lines = [format_sample_line(s.t_ns, s.groups if all_channels else s.groups[:1]) for s in chosen]
        return [samples_header(len(lines))] + lines

    def _counted(self) -> list[Sample]:
        m = self._meas
        return [s for s in m.samples if not s.rampup] if m else []

    def _watts(self) -> str:
        with self._lock:
            samples = self._counted()
        watts = [s.groups[0][0] for s in samples if s.valid]
        errors = len(samples) - len(watts)
        if not watts:  # [unverified]: PTD's reply with no valid sample
            return WattsReply(-1.0, -1.0, -1.0, len(samples), errors, 0).reply()
        return WattsReply(sum(watts) / len(watts), min(watts), max(watts), len(samples), errors, len(watts)).reply()

    def _uncertainty(self) -> str:
        with self._lock:
            samples = self._counted()
        known = [s.uncertainty for s in samples if s.uncertainty is not None]
        limit = self.opts.uncertainty_limit_pct / 100.0
        over = sum(1 for u in known if u > limit)
        unknown = len(samples) - len(known)
        if not known:  # observed in a real ranging log: avg -1.0, min 1e7, max 0
            return UncertaintyReply(-1.0, UNKNOWN_UNCERTAINTY_MIN, 0.0, len(samples), 0, 0, unknown).reply()
        return UncertaintyReply(sum(known) / len(known), min(known), max(known), len(samples), over, len(known) - over, unknown).reply()


class _Reply(Exception):
    """An error reply: its text goes back to the client as is."""


# ---------------------------------------------------------------------------------------------
# The emulator registry's interface


class PtdEmulatorHandle:
    def __init__(self, emulator: PtdEmulator):
        self.emulator = emulator

    @property
    def port(self) -> int:
        return self.emulator.port

    def source_options(self) -> dict[str, Any]:
        host = self.emulator.opts.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return {"host": host, "port": self.emulator.port}

    def stop(self) -> None:
        self.emulator.stop()

    # test hooks
    def set_silent(self, silent: bool) -> None:
        self.emulator.set_silent(silent)

    def set_mangler(self, mangle) -> None:
        self.emulator.set_mangler(mangle)

    def drop_client(self) -> None:
        self.emulator.drop_client()

    def set_offline(self, offline: bool) -> None:
        self.emulator.set_offline(offline)


class PtdAnalyzersHandle:
    """Several emulated analyzers for one SUT, one PTDaemon (and port) each, as power-dev's
    director starts them; the source options name them all (`analyzers:`)."""

    def __init__(self, handles: list[PtdEmulatorHandle]):
        self.handles = handles

    def source_options(self) -> dict[str, Any]:
        return {"analyzers": [h.source_options() for h in self.handles]}

    def stop(self) -> None:
        for h in self.handles:
            h.stop()


def analyzer_options(opts: PtdEmulatorOptions, index: int, count: int) -> PtdEmulatorOptions:
    """Analyzer `index` (1-based) of `count` measuring one SUT: its share of the load, its own
    port, serial, seed and log file."""
    log = opts.log_file
    if log and count > 1:
        stem, dot, ext = log.rpartition(".")
        log = f"{stem}_{index}.{ext}" if dot else f"{log}_{index}"
    return opts.model_copy(update={
        "analyzers": 1,
        "port": opts.port + index - 1 if opts.port else 0,
        "idle_w": opts.idle_w / count,
        "dynamic_w": opts.dynamic_w / count,
        "noise_w": opts.noise_w / count,
        "serial": f"{opts.serial[:-1] if len(opts.serial) > 4 else opts.serial}{index}" if count > 1 else opts.serial,
        "seed": None if opts.seed is None else opts.seed + index - 1,
        "log_file": log,
    })


def start(options: dict[str, Any] | None = None) -> PtdEmulatorHandle | PtdAnalyzersHandle:
    """Start an emulator in this process (for a profile's `emulator:` and for tests)."""
    opts = validate_options(PtdEmulatorOptions, options, "PTD emulator")
    if opts.analyzers == 1:
        return PtdEmulatorHandle(PtdEmulator(opts).start())
    handles: list[PtdEmulatorHandle] = []
    try:
        for i in range(1, opts.analyzers + 1):
            handles.append(PtdEmulatorHandle(PtdEmulator(analyzer_options(opts, i, opts.analyzers)).start()))
    except BaseException:
        for h in handles:
            h.stop()
        raise
    return PtdAnalyzersHandle(handles)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="labconsole emulate ptd",
        description="A SPEC PTDaemon look-alike on loopback TCP (NOT a measurement: readings come from a load model). "
        "Takes PTDaemon's own arguments: -l LOGFILE -p PORT [-c CHANNELS] [-D] [-b BOARD] [-B BAUD] [-n|-g|-y|-U] DEVICE_TYPE DEVICE_PORT.",
    )
    ap.add_argument("-l", "--log-file", dest="log_file", metavar="LOGFILE", help="PTD's sample/message log")
    ap.add_argument("-p", "--port", type=int, default=8888, help="TCP port (default 8888; 0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("-c", dest="channels", metavar="CHANNELS", help="channel(s), as PTD's -c (a or a,b)")
    ap.add_argument("-D", dest="dc", action="store_true", help="DC personality (samples via DC-RL)")
    ap.add_argument("-b", dest="gpib_board", type=int, metavar="BOARD", help="GPIB board (accepted, ignored)")
    ap.add_argument("-B", dest="baud", type=int, metavar="BAUD", help="baud rate (accepted, ignored)")
    flags = ap.add_mutually_exclusive_group()
    for flag, what in (("-n", "TCP/IP"), ("-g", "GPIB"), ("-y", "Yokogawa TMCTL"), ("-U", "USB")):
        flags.add_argument(flag, dest="interface", action="store_const", const=flag, help=f"{what} analyzer interface (accepted, ignored)")
    ap.add_argument("device_type", nargs="?", type=int, default=49, help="49 = WT310E (default), 77 = WT333E multichannel")
    ap.add_argument("device_port", nargs="?", default="emulated", help="the analyzer's port (accepted, ignored)")
    ap.add_argument("--idle-w", type=float, default=60.0)
    ap.add_argument("--dynamic-w", type=float, default=140.0)
    ap.add_argument("--noise-w", type=float, default=1.0)
    ap.add_argument("--volts", type=float, default=230.0)
    ap.add_argument("--utilisation", type=utilisation_arg, default="workload", help="workload (default: the benchmark's CPU use, its LoadGen workers' process trees, whatever else runs here), host (the whole machine's), active, or a constant 0..1")
    ap.add_argument("--clock-offset-ms", type=float, default=0.0, help="make the emulated PTD host's clock wrong by this much")
    ap.add_argument("--serial", default="EMU0001")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--analyzers", type=int, default=1, metavar="N", help="several analyzers for one SUT: N daemons on PORT, PORT+1, ... each seeing 1/N of the load")
    ap.add_argument("--config", metavar="SERVER_CONF", help="power-dev's server.conf: one daemon per [analyzerN] on its networkPort, with its deviceType and channel")
    return ap


def _config_analyzers(path: str, base: PtdEmulatorOptions) -> list[PtdEmulatorOptions]:
    """One emulator's options per `[analyzerN]` of a power-dev server config."""
    text = Path(path).read_text(encoding="utf-8")
    found = parse_powerdev_analyzers(text, path)
    out = []
    for a in found:
        one = analyzer_options(base, a.index, len(found))
        out.append(one.model_copy(update={
            "port": a.network_port, "device_type": a.device_type, "device_port": a.device_port,
            "channels": ",".join(str(c) for c in a.channel) if a.channel else None,
            "interface": a.interface_flag if a.interface_flag in ("", "-n", "-g", "-y", "-U") else "",
            "dc": bool(a.dc_flag), "gpib_board": a.gpib_board,
        }))
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    util = args.utilisation
    follow_any_benchmark()  # run on its own: 'workload' is any labconsole benchmark here
    try:
        opts = PtdEmulatorOptions(
            host=args.host, port=args.port, device_type=args.device_type, device_port=args.device_port,
            channels=args.channels, interface=args.interface or "", dc=args.dc, gpib_board=args.gpib_board, baud=args.baud,
            log_file=args.log_file, idle_w=args.idle_w, dynamic_w=args.dynamic_w, noise_w=args.noise_w, volts=args.volts,
            utilisation=util, clock_offset_ms=args.clock_offset_ms, serial=args.serial, seed=args.seed,
        )
        if args.log_file:
            Path(args.log_file).parent.mkdir(parents=True, exist_ok=True)
        if args.config:
            each = _config_analyzers(args.config, opts)
        else:
            if not 1 <= args.analyzers <= 16:
                raise ValueError(f"--analyzers {args.analyzers}: 1..16")
            each = [analyzer_options(opts, i, args.analyzers) for i in range(1, args.analyzers + 1)] if args.analyzers > 1 else [opts]
        emulators: list[PtdEmulator] = []
        try:
            for i, one in enumerate(each, start=1):
                prefix = f"[analyzer{i}] " if len(each) > 1 else ""
                emulators.append(PtdEmulator(one, console=lambda line, p=prefix: say(p + line)).start())
        except BaseException:
            for e in emulators:
                e.stop()
            raise
    except (ValidationError, ValueError, OSError) as exc:
        return startup_failure("ptd", exc, port_flag="-p")

    warn_if_reachable(args.host)
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        while not done.wait(0.5):
            pass
    finally:
        for e in emulators:
            e.stop()
    return 0


if __name__ == "__main__":  # `python -m labconsole.emulators.ptd ...`, e.g. as power-dev's `ptd:`
    sys.exit(main(sys.argv[1:]))
