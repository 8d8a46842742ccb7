"""The `ptd` source: a thin, strict client of SPEC PTDaemon's TCP protocol.

PTDaemon owns the power analyzer; we talk to it over TCP (default port 8888), on loopback or
on another host. The protocol (reconstructed from mlcommons/power-dev and SPEC's harness, see
docs in the reference notes): ASCII lines ending in CR LF, one reply line per command, except
`RL`, which answers a header `Last N samples` followed by N sample lines. Its commands, replies
and parsers are `labconsole.instruments.ptd` (shared with the emulator); this module is the
transport and the source's life cycle.

Commands this driver sends, and when:
    open       Hello, Identify, RR, Stop (a measurement left running; its unread samples are
               drained with RL), [SR,V,.. SR,A,.. to re-apply our ranges after a reconnect],
               Go,<ms>,0,<prefix>_standby
    read       RL,*,*, falling back to RL ("Invalid number of parameters": single-channel AC
               meter) or DC-RL ("Unknown command": DC personality), as power-dev does
    set_ranges SR,V,<volts|Auto>, SR,A,<amps|Auto>, then RR to read back what PTD chose
               (PTD rounds a value up to the analyzer's next range itself)
    phases     begin_phase: Stop, RL (drain), Go,<ms>,0,<prefix>_<phase>
               end_phase:   Watts, Uncertainty (PTD's own summary of the phase), Stop, RL,
                            Go,<ms>,0,<prefix>_standby
    close      Stop, SR,V,<initial>, SR,A,<initial> (the ranges RR showed at the first open)

Why Go on open and per phase: the recorder reads every source continuously (idle baseline
included), so a measurement runs from open to close; each phase gets its own Go with a mark,
as power-dev does (`<session>_ranging`, `<session>_testing`), so PTD's log shows the phases and
its Watts/Uncertainty summaries cover exactly one phase each.

Timestamps: every sample carries PTD's own time (`MM-DD-YYYY HH:MM:SS.mmm`, UTC as power-dev
runs it), converted to our wall clock with an estimate of the PTD host's clock offset: each
RL reply's newest sample time minus our receipt time is a lower bound of the offset (the
sample was taken before the reply left); the largest of the recent bounds is the estimate
(SPEC CPU compares the newest sample with local receipt the same way). `clock_offset_s()`
exposes it so calibration can hold it against MLPerf's 400 ms. Monotonic ns are derived from
the receipt (receipt mono minus the sample's age), so intervals between samples are kept.
"""

from __future__ import annotations

import math
import random
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Literal

import numpy as np
from pydantic import Field

from labconsole.instruments.ptd import (
    DEFAULT_PORT,
    HELLO_REPLY,
    INVALID,
    GO_STARTED,
    NO_MEASUREMENT,
    STOP_STARTED,
    PTD_MODELS,
    READ_ALL,
    READ_ALL_DC,
    READ_ALL_MULTICHANNEL,
    UNKNOWN_COMMAND,
    Group,
    MeterSpec,
    PtdIdentity,
    RangeGroup,
    format_range_value,
    go_command,
    go_interval_ms,
    is_error_reply,
    is_nothing_unread,
    parse_identify,
    parse_ranges,
    parse_sample_line,
    parse_samples_header,
    parse_uncertainty,
    parse_watts,
    range_changed_reply,
    set_range_command,
)
from labconsole.instruments.ranges import AccuracySpec, RangeState
from labconsole.locks import tcp_key
from labconsole.samples.batch import ERROR, NO_DATA, OK, SAMPLE_DTYPE, ChannelBatch, empty_batch, now_ns
from labconsole.sources.base import Capabilities, Discovered, DriverOptions, Identity, Source, SourceError

MAX_LINE_BYTES = 64 * 1024  # a sample line is < 1 KiB even with many channels: more is garbage


# ---------------------------------------------------------------------------------------------
# The line channel: one TCP connection, strict request/reply, a deadline on every read.


class PtdConnection:
    def __init__(self, host: str, port: int, timeout_s: float, connect_timeout_s: float):
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self.broken: str | None = None  # set once the stream cannot be trusted any more

    @property
    def where(self) -> str:
        return f"PTDaemon at {self.host}:{self.port}"

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except socket.timeout:
            raise SourceError(f"{self.where}: no connection within {self.connect_timeout_s:g} s (host down, firewall, or wrong address?)") from None
        except ConnectionRefusedError:
            raise SourceError(f"{self.where}: connection refused (is PTDaemon running with -p {self.port}?)") from None
        except OSError as exc:
            raise SourceError(f"{self.where}: cannot connect: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock
        self._buf.clear()
        self.broken = None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    @property
    def connected(self) -> bool:
        return self._sock is not None and self.broken is None

    def _fail(self, why: str) -> SourceError:
        """Mark the stream unusable (we no longer know which reply belongs to which command)."""
        self.broken = why
        self.close()
        return SourceError(f"{self.where}: {why}")

    def send(self, command: str) -> None:
        if self._sock is None:
            raise SourceError(f"{self.where}: not connected" + (f" ({self.broken})" if self.broken else ""))
        # One reply per command: anything already waiting was not asked for.
        stray = bytes(self._buf)
        try:
            while select.select([self._sock], [], [], 0)[0]:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise self._fail("the daemon closed the connection")
                stray += chunk
                if len(stray) > MAX_LINE_BYTES:
                    break
        except OSError as exc:
            raise self._fail(f"connection lost: {exc.strerror or exc}") from None
        if stray:
            raise self._fail(f"unexpected data before {command!r}: {stray[:80]!r}")
        try:
            self._sock.sendall(command.encode("ascii") + b"\r\n")
        except OSError as exc:
            raise self._fail(f"cannot send {command!r}: {exc.strerror or exc}") from None

    def readline(self, timeout_s: float | None = None, what: str = "reply") -> str:
        if self._sock is None:
            raise SourceError(f"{self.where}: not connected" + (f" ({self.broken})" if self.broken else ""))
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                try:
                    text = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise self._fail(f"garbage instead of {what}: {raw[:80]!r}") from None
                if any(ord(c) < 32 and c != "\t" for c in text):
                    raise self._fail(f"garbage instead of {what}: {raw[:80]!r}")
                return text
            if len(self._buf) > MAX_LINE_BYTES:
                raise self._fail(f"garbage instead of {what}: {len(self._buf)} bytes without a line end")
            left = deadline - time.monotonic()
            if left <= 0:
                partial = f" (got {bytes(self._buf[:80])!r} so far)" if self._buf else ""
                raise self._fail(f"no {what} within {self.timeout_s if timeout_s is None else timeout_s:g} s{partial}")
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise self._fail(f"connection lost while waiting for {what}: {exc.strerror or exc}") from None
            if not chunk:
                raise self._fail(f"the daemon closed the connection while we waited for {what}")
            self._buf += chunk

    def command(self, command: str, timeout_s: float | None = None) -> str:
        self.send(command)
        return self.readline(timeout_s, what=f"reply to {command!r}")


# ---------------------------------------------------------------------------------------------
# Clock offset of the PTD host


class ClockOffsetEstimator:
    """Offset of the PTD host's clock against ours (s, + = PTD ahead).

    Each RL reply gives `newest sample time - local receipt time`, a lower bound of the offset
    (the sample is older than the reply, the reply took time to arrive); the largest bound over
    the recent replies is the estimate. Polls land at random phases of the sampling grid, so the
    best of them saw a sample only a small fraction of an interval old.
    """

    def __init__(self, window: int = 64):
        self._bounds: deque[int] = deque(maxlen=window)
        self.observations = 0

    def add(self, remote_ns: int, local_recv_ns: int) -> None:
        self._bounds.append(remote_ns - local_recv_ns)
        self.observations += 1

    def offset_ns(self) -> int | None:
        return max(self._bounds) if self._bounds else None


# ---------------------------------------------------------------------------------------------
# The driver


class PtdAnalyzer(DriverOptions):
    """One of several analyzers measuring one SUT: power-dev's `[analyzerN]`, one PTDaemon each."""

    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="host running this analyzer's PTDaemon")
    port: int = Field(..., ge=1, le=65535, description="this analyzer's PTDaemon port (power-dev's networkPort; one per analyzer)")
    channels: list[int] | None = Field(None, min_length=1, max_length=64, description="multichannel analyzer: channels to record")


class PtdOptions(DriverOptions):
    analyzers: list[PtdAnalyzer] | None = Field(
        None, min_length=1, max_length=16,
        description="several analyzers for one SUT (MLPerf Inference), one PTDaemon each, as power-dev's [analyzerN]: "
        "one channel per analyzer (analyzer1, analyzer2, ...), summed; host/port/channels above are then unused",
    )
    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="host running PTDaemon (name or address)")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="PTDaemon's -p port")
    interval_ms: int | None = Field(
        None, ge=0, le=3_600_000,
        description="Go sampling interval in ms; default: the source's sample_interval_s. MLPerf uses 1000; 0 lets PTD pick the analyzer's default",
    )
    channels: list[int] | None = Field(None, min_length=1, max_length=64, description="multichannel analyzers: the channels (1-based) to record; default all")
    read_command: Literal["auto", "RL,*,*", "RL", "DC-RL"] = Field("auto", description="auto: RL,*,* then RL then DC-RL, as power-dev does")
    timeout_s: float = Field(5.0, gt=0, le=120, description="seconds to wait for any reply")
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    mark_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="marks are <prefix>_<phase>; default: the UTC time of the first open")
    restore_ranges: bool = Field(True, description="on close, put back the ranges PTD had when we first connected")
    timestamps: Literal["corrected", "ptd"] = Field(
        "corrected",
        description="corrected: PTD's sample times moved onto our clock by the estimated offset; ptd: PTD's times as they are (what MLPerf does, right only when both hosts follow NTP)",
    )
    max_clock_offset_s: float = Field(0.4, gt=0, le=3600, description="warn in the phase summary above this PTD clock offset (MLPerf: 400 ms)")


class PtdSource(Source):
    driver = "ptd"
    Options = PtdOptions
    options: PtdOptions

    @classmethod
    def implementation(cls, options: DriverOptions) -> type[Source]:
        return PtdAnalyzersSource if getattr(options, "analyzers", None) else cls

    def __init__(self, name: str, options: PtdOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        o = self.options
        self.interval_ms = o.interval_ms if o.interval_ms is not None else max(1, int(round(self.sample_interval_s * 1000)))
        self.interval_s = (self.interval_ms or 1000) / 1000.0  # corrected by Go's reply
        self._conn: PtdConnection | None = None
        self.ptd: PtdIdentity | None = None
        self.spec: MeterSpec | None = None
        self._initial_ranges: RangeGroup | None = None
        self._wanted: dict[str, str] = {}  # "V"/"A" -> value sent, re-applied after a reconnect
        self._ranges = RangeState()
        self._read_cmd: str | None = None if o.read_command == "auto" else o.read_command
        self._mark_prefix = o.mark_prefix
        self._mark: str | None = None
        self._measuring = False
        self._opened_once = False
        self._pending: list[ChannelBatch] = []
        self._delivered = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        # Samples drained at a phase edge are handed to the reader; the hand-off is complete when
        # the reader comes back for more (it has filed them in the phase they belong to).
        self._handoff = False
        self._handoff_taken = False
        self._closed = threading.Event()
        self._closed.set()
        self._next_poll = 0.0
        self._rng = random.Random()
        self.clock = ClockOffsetEstimator()
        self._last_wall_ns = 0
        self.counters = {"polls": 0, "samples": 0, "invalid": 0, "garbage_lines": 0, "reconnects": 0}

    # --- I/O helpers (callers hold io_lock) ----------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    def _cmd(self, command: str, timeout_s: float | None = None) -> str:
        if self._conn is None or not self._conn.connected:
            raise SourceError(f"{self.name}: PTDaemon at {self.address} is not connected")
        return self._conn.command(command, timeout_s)

    def _expect(self, command: str, ok: str | tuple[str, ...], what: str) -> str:
        reply = self._cmd(command)
        if not reply.startswith(ok):
            raise SourceError(f"{self.name}: PTDaemon refused {what} ({command!r} -> {reply!r})")
        return reply

    # --- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        o = self.options
        with self.io_lock:
            conn = PtdConnection(o.host, o.port, o.timeout_s, o.connect_timeout_s)
            conn.connect()
            self._conn = conn
            try:
                hello = self._cmd("Hello")
                if hello != HELLO_REPLY:
                    raise SourceError(f"{self.name}: {self.address} is not a PTDaemon (it answered {hello[:80]!r} to Hello)")
                reply = self._cmd("Identify")
                if is_error_reply(reply):
                    raise SourceError(f"{self.name}: PTDaemon refused Identify: {reply!r}")
                try:
                    ident = parse_identify(reply)
                except ValueError as exc:
                    raise SourceError(f"{self.name}: cannot read PTDaemon's identity: {exc}") from None
                if ident.mode != "power":
                    raise SourceError(f"{self.name}: the PTDaemon at {self.address} serves a {ident.mode} sensor ({ident.model}), not a power analyzer")
                self.ptd = ident
                self.spec = PTD_MODELS.get(ident.model)
                groups = self._read_ranges()
                if not self._opened_once:
                    self._initial_ranges = groups
                    self._mark_prefix = self._mark_prefix or time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime())
                # A measurement may still run (ours before a reconnect, or a crashed client's):
                # stop it; after a reconnect its unread samples are ours and are kept.
                self._stop_and_drain(deliver=self._opened_once, missing_ok=True)
                for q in ("V", "A"):
                    if q in self._wanted:
                        self._set_one(q, self._wanted[q])
                if self._wanted:
                    self._read_ranges()
                self._go(self._mark or f"{self._mark_prefix}_standby")
            except Exception:
                conn.close()
                self._conn = None
                raise
            if self._opened_once:
                self.counters["reconnects"] += 1
            self._opened_once = True
            self._closed.clear()
            self._next_poll = time.monotonic() + self._poll_period()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        with self.io_lock:
            conn, problems = self._conn, []
            if conn is not None and conn.connected:
                try:
                    if self._measuring:
                        self._expect("Stop", STOP_STARTED, "to stop the measurement")
                except SourceError as exc:
                    problems.append(str(exc))
                self._measuring = False
                init = self._initial_ranges
                if self.options.restore_ranges and init is not None and conn.connected:
                    try:
                        self._set_one("V", init.setting("V"))
                        self._set_one("A", init.setting("A"))
                    except SourceError as exc:
                        problems.append(f"restoring the initial ranges: {exc}")
            if conn is not None:
                conn.close()
            self._conn = None
            self._measuring = False
        if problems:
            raise SourceError("; ".join(problems))

    def lock_key(self) -> str | None:
        """PTDaemon serves one client: its host:port is the instrument."""
        return tcp_key(self.options.host, self.options.port)

    # --- identity ----------------------------------------------------------------------------
    def identify(self) -> Identity:
        ident = self.ptd
        if ident is None:
            raise SourceError(f"{self.name}: identify() before open()")
        return Identity(
            driver=self.driver,
            model=ident.model,
            serial=ident.serial,
            firmware=ident.firmware,
            vendor=ident.vendor,
            address=f"ptd://{self.address}",
            extra={
                "ptd_version": ident.version,
                "ptd_crc": ident.crc,
                "ptd_build_date": ident.build_date,
                "ptd_os": ident.os,
                "meter_idn": ident.meter_idn,
                "meter_model": ident.meter_model,
                "calibration_date": ident.calibration_date,
                "accepted_by_spec": ident.accepted_by_spec,
                "channels": ident.channels,
                "default_interval_ms": ident.interval_ms,
                "go_interval_ms": int(round(self.interval_s * 1000)),
                "emulator": ident.emulator,
                "identify": ident.raw,
            },
        )

    def _channel_names(self) -> tuple[str, ...]:
        n = self.ptd.channels if self.ptd else 1
        if n <= 1 and not self.options.channels:
            return ("main",)
        chosen = self.options.channels or list(range(1, n + 1))
        return tuple(f"ch{k}" for k in chosen)

    def capabilities(self) -> Capabilities:
        spec = self.spec
        ranges_ok = bool(self.ptd.range_setting) if self.ptd and self.ptd.range_setting is not None else True
        return Capabilities(
            channels=self._channel_names(),
            quantities=("watts", "volts", "amps", "pf"),
            power_kind="meter",
            voltage_ranges=spec.voltage_ranges if spec and ranges_ok else (),
            current_ranges=spec.current_ranges if spec and ranges_ok else (),
            auto_range=ranges_ok,
            ranges_rounded_by_meter=ranges_ok,
            update_periods_s=(self.interval_s,),
            accuracy=spec.accuracy if spec else None,
        )

    # --- ranges ----------------------------------------------------------------------------------
    def _read_ranges(self) -> RangeGroup:
        reply = self._cmd("RR")
        try:
            groups = parse_ranges(reply)
        except ValueError as exc:
            raise SourceError(f"{self.name}: {exc}") from None
        # Multichannel PTD (>= 1.4.3) puts the sum channel first; we set all channels alike
        # (SR without a channel), so the first real channel speaks for them.
        idx = 0
        if len(groups) > 1:
            idx = min(len(groups) - 1, (self.options.channels or [1])[0])
        group = groups[idx]
        self._ranges = group.state()
        return group

    def _set_one(self, quantity: str, value: str) -> None:
        reply = self._cmd(set_range_command(quantity, value))
        if reply != range_changed_reply(quantity):
            raise SourceError(f"{self.name}: PTDaemon refused the {'voltage' if quantity == 'V' else 'current'} range {value}: {reply!r}")

    def set_ranges(self, volts: float | None = None, amps: float | None = None, auto: bool | None = None) -> RangeState:
        with self.io_lock:
            if auto:
                wanted = {"V": "Auto", "A": "Auto"}
            else:
                wanted = {}
                if volts is not None:
                    wanted["V"] = format_range_value(volts)
                if amps is not None:
                    wanted["A"] = format_range_value(amps)
                if auto is False:  # "fixed, as they are now": PTD needs a value to leave auto
                    for q, cur in (("V", self._ranges.volts), ("A", self._ranges.amps)):
                        if q not in wanted and not math.isnan(cur):
                            wanted[q] = format_range_value(cur)
            for q in ("V", "A"):
                if q in wanted:
                    self._set_one(q, wanted[q])
                    self._wanted[q] = wanted[q]
            self._read_ranges()
            return self._ranges

    def get_ranges(self) -> RangeState:
        with self.io_lock:
            if self._conn is not None and self._conn.connected:
                self._read_ranges()
            return self._ranges

    # --- measurement control -------------------------------------------------------------------
    def _go(self, mark: str) -> None:
        reply = self._expect(go_command(self.interval_ms, mark), GO_STARTED, "to start a measurement")
        ms = go_interval_ms(reply)
        if ms:
            self.interval_s = ms / 1000.0
        self._mark = mark
        self._measuring = True

    def _stop_and_drain(self, deliver: bool, missing_ok: bool = False) -> None:
        reply = self._cmd("Stop")
        self._measuring = False
        if reply.startswith(STOP_STARTED):
            batches = self._poll_locked()
            if deliver and batches:
                with self._delivered:
                    self._pending.extend(batches)
                    self._handoff, self._handoff_taken = True, False
                self._wake.set()
        elif not (missing_ok and reply.startswith(NO_MEASUREMENT)):
            raise SourceError(f"{self.name}: PTDaemon refused to stop the measurement: {reply!r}")

    def _await_delivery(self) -> None:
        """Give the acquisition thread a moment to collect samples drained at a phase edge, so
        they land in the phase they were measured in (bounded: a source nobody reads goes on)."""
        deadline = time.monotonic() + min(2.0, self.interval_s + 0.5)
        with self._delivered:
            while self._handoff and not self._closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._delivered.wait(left)

    def begin_phase(self, label: str) -> None:
        with self.io_lock:
            self._mark = f"{self._mark_prefix}_{label}"  # a reconnect re-starts with this mark
            self._stop_and_drain(deliver=True, missing_ok=True)
            self._go(self._mark)
        self._await_delivery()

    def end_phase(self, label: str) -> dict[str, Any] | None:
        with self.io_lock:
            mark = self._mark
            summary: dict[str, Any] = {"source": self.name, "mark": mark, "driver": self.driver}
            # MLPerf's server asks Watts; Uncertainty; Stop; RL; Uncertainty; Watts. The figures
            # asked after Stop cover exactly the samples drained into this phase, so they are
            # the phase's; those asked while it ran are kept beside them.
            running = {"watts": self._cmd("Watts"), "uncertainty": self._cmd("Uncertainty")}
            self._mark = f"{self._mark_prefix}_standby"
            self._stop_and_drain(deliver=True)
            final = {"uncertainty": self._cmd("Uncertainty"), "watts": self._cmd("Watts")}
            for key, parser in (("watts", parse_watts), ("uncertainty", parse_uncertainty)):
                summary[f"{key}_reply_running"] = running[key]
                summary[f"{key}_reply"] = final[key]
                try:
                    summary[key] = parser(final[key]).summary_dict()
                except ValueError as exc:
                    summary[key] = None
                    summary[f"{key}_problem"] = str(exc)
            self._go(self._mark)
        offset = self.clock_offset_s()
        summary["clock_offset_s"] = offset
        summary["timestamps"] = self.options.timestamps
        summary["warning"] = offset is not None and abs(offset) > self.options.max_clock_offset_s
        summary["message"] = _describe_summary(summary)
        if summary["warning"]:
            summary["message"] += (
                f": above the {self.options.max_clock_offset_s * 1000:.0f} ms MLPerf allows; does the PTD host follow the same NTP server"
                " and run PTDaemon with TZ=UTC?"
            )
        self._await_delivery()
        return summary

    # --- data ----------------------------------------------------------------------------------
    def _poll_period(self) -> float:
        # Random phase against the sampling grid (see ClockOffsetEstimator); 2-3 polls per sample.
        return max(0.005, self.interval_s * self._rng.uniform(0.3, 0.5))

    def read(self, timeout: float) -> list[ChannelBatch]:
        end = time.monotonic() + timeout
        with self._delivered:
            if self._handoff_taken:  # the caller has filed what it took last time
                self._handoff = self._handoff_taken = False
                self._delivered.notify_all()
        while True:
            with self._delivered:
                if self._pending:
                    out, self._pending = self._pending, []
                    self._handoff_taken = self._handoff
                    return out
            if self._closed.is_set():
                raise SourceError(f"{self.name}: read() on a closed source")
            now = time.monotonic()
            wait = self._next_poll - now
            if wait > 0:
                if now >= end:
                    return []
                if self._wake.wait(min(wait, end - now)):
                    self._wake.clear()
                continue
            with self.io_lock:
                self._next_poll = time.monotonic() + self._poll_period()
                batches = self._poll_locked()
            with self._delivered:
                if self._pending:  # drained at a phase edge meanwhile: those are older
                    batches, self._pending = self._pending + batches, []
                    self._handoff_taken = self._handoff
            return batches

    def _read_reply_header(self) -> tuple[str, str]:
        cmd = self._read_cmd or READ_ALL_MULTICHANNEL
        header = self._cmd(cmd, self.options.timeout_s + self.interval_s)
        if self._read_cmd is None:
            # power-dev's fallbacks: a single-channel AC meter answers RL,*,* with
            # "Invalid number of parameters"; a DC personality does not know RL at all.
            if cmd == READ_ALL_MULTICHANNEL and header.startswith("Invalid"):
                cmd = READ_ALL
                header = self._cmd(cmd, self.options.timeout_s + self.interval_s)
            if cmd in (READ_ALL_MULTICHANNEL, READ_ALL) and header.startswith(UNKNOWN_COMMAND):
                cmd = READ_ALL_DC
                header = self._cmd(cmd, self.options.timeout_s + self.interval_s)
            if header.startswith("Last ") or is_nothing_unread(header):
                self._read_cmd = cmd
        return cmd, header

    def _poll_locked(self) -> list[ChannelBatch]:
        """One RL exchange; returns the samples as batches per channel."""
        if self._conn is None or not self._conn.connected:
            raise SourceError(f"{self.name}: PTDaemon at {self.address} is not connected")
        cmd, header = self._read_reply_header()
        self.counters["polls"] += 1
        if is_nothing_unread(header):
            return []
        n = parse_samples_header(header)
        if n is None:
            # Either way the measurement is not what we think: drop the connection, so that the
            # recorder's reconnect (close + open) starts a clean one and close() sends nothing
            # (no range restore in the middle of a phase).
            if is_error_reply(header):
                raise self._conn._fail(f"refused {cmd}: {header[:80]!r}")
            raise self._conn._fail(f"unexpected reply to {cmd}: {header[:80]!r}")
        lines: list[str] = []
        try:
            for _ in range(n):
                lines.append(self._conn.readline(self.options.timeout_s, what=f"sample line {len(lines) + 1} of {n}"))
        finally:
            # Whatever arrived is kept even when the rest did not: it was measured.
            recv_wall, recv_mono = now_ns()
            batches = self._to_batches(lines, recv_wall, recv_mono)
            if len(lines) < n and batches:
                self._pending.extend(batches)
        return batches

    def _to_batches(self, lines: list[str], recv_wall: int, recv_mono: int) -> list[ChannelBatch]:
        """An RL reply's sample lines, received at (recv_wall, recv_mono), as batches per channel."""
        if not lines:
            return []
        parsed = self._parse_lines(lines)
        newest = max((p[0] for p in parsed if p is not None), default=None)
        if newest is not None:
            self.clock.add(newest, recv_wall)
        fixed = not (self._ranges.auto_v or self._ranges.auto_a)
        rv = self._ranges.volts if fixed else math.nan
        ra = self._ranges.amps if fixed else math.nan
        acc = self.spec.accuracy if (self.spec and fixed) else None
        out = []
        for ch, rows in self._rows_per_channel(parsed, recv_wall, recv_mono).items():
            batch = _sample_batch(rows, rv, ra, acc)
            self.counters["samples"] += len(batch)
            self.counters["invalid"] += int(np.count_nonzero(batch["status"]))
            out.append(ChannelBatch(ch, batch))
        return out

    def _parse_lines(self, lines: list[str]) -> list[tuple[int, list[Group]] | None]:
        """Each line's (PTD time, groups); None for a garbage line (counted)."""
        parsed: list[tuple[int, list[Group]] | None] = []
        for line in lines:
            try:
                parsed.append(parse_sample_line(line))
            except ValueError:
                self.counters["garbage_lines"] += 1
                parsed.append(None)
        return parsed

    def _rows_per_channel(self, parsed: list[tuple[int, list[Group]] | None], recv_wall: int, recv_mono: int) -> dict[str, list[_Row]]:
        """Each sample on our clocks (wall: PTD's time less the offset estimate; monotonic: the
        receipt less the sample's age), with its group per channel (None for garbage)."""
        offset = (self.clock.offset_ns() or 0) if self.options.timestamps == "corrected" else 0
        names = self._channel_names()
        step = int(self.interval_s * 1e9)
        per_channel: dict[str, list[_Row]] = {}
        for sample in parsed:
            if sample is None:
                # Garbage: an invalid sample one interval after the previous one.
                wall = self._last_wall_ns + step if self._last_wall_ns else recv_wall
                by_channel: list[tuple[str, Group | None]] = [(c, None) for c in names]
            else:
                t, groups = sample
                wall = t - offset
                by_channel = self._channel_groups(groups, names)
            wall = max(wall, self._last_wall_ns + 1)  # never step back (offset estimate moved)
            self._last_wall_ns = wall
            mono = recv_mono - (recv_wall - wall)
            for ch, g in by_channel:
                per_channel.setdefault(ch, []).append((wall, mono, g))
        return per_channel

    def _channel_groups(self, groups: list[Group], names: tuple[str, ...]) -> list[tuple[str, Group | None]]:
        """Which channel each group of a sample line is; a wanted channel the line lacks gets None."""
        if len(groups) == 1:
            return [(names[0] if len(names) == 1 else "main", groups[0])]
        chans = groups[1:]  # groups[0] is PTD's sum of the channels
        wanted = self.options.channels or list(range(1, len(chans) + 1))
        return [(f"ch{k}", chans[k - 1] if k <= len(chans) else None) for k in wanted]

    def next_poll_in(self) -> float:
        """Seconds until read() would ask PTD again (0: now)."""
        return max(0.0, self._next_poll - time.monotonic())

    def diagnostics(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "read_command": self._read_cmd}

    def clock_offset_s(self) -> float | None:
        off = self.clock.offset_ns()
        return None if off is None else off / 1e9

    # --- discovery -------------------------------------------------------------------------------
    @classmethod
    def probe_address(cls, address: str, timeout_s: float = 2.0) -> Discovered:
        """One PTDaemon `host:port` typed by the operator: Hello and Identify (`probe`)."""
        return probe(address, timeout_s)

    @classmethod
    def discover(cls, hints: dict[str, Any] | None = None) -> list[Discovered]:
        """Ask each PTDaemon address in `hints` (keys `ptd`, `ptd_addresses` or `addresses`: a
        "host:port" string or a list of them) for Hello and Identify. Nothing is probed unasked."""
        hints = hints or {}
        addresses: list[str] = []
        for key in ("ptd", "ptd_addresses", "addresses"):
            value = hints.get(key)
            if isinstance(value, str):
                addresses.append(value)
            elif isinstance(value, (list, tuple)):
                addresses.extend(str(v) for v in value)
        timeout = float(hints.get("timeout_s", 2.0))
        out = []
        for addr in dict.fromkeys(addresses):
            out.append(probe(addr, timeout))
        return out


_Row = tuple[int, int, Group | None]  # wall ns, monotonic ns, the channel's group (None: garbage)


# ---------------------------------------------------------------------------------------------
# Several analyzers for one SUT


class PtdAnalyzersSource(Source):
    """Several power analyzers measuring one SUT (MLPerf Inference's multi-analyzer setup), each
    behind its own PTDaemon, as power-dev's director runs them (`[analyzerN]`, one `networkPort`
    each). One `PtdSource` per analyzer does the talking; this source gives them one name, one
    mark prefix, phases started on all analyzers at once (power-dev sends Go in parallel
    threads), and one channel per analyzer (`analyzer1`, `analyzer2`, ... or `analyzerN.chK` for
    a multichannel analyzer), so the bundle keeps each analyzer's samples and the source's
    power is their sum (a multi-channel source reports the sum of its channels).

    Fixed ranges are set per analyzer from that analyzer's own ranging maxima (volts, 1.1 x
    amps), as power-dev does; the caller's request (the maxima over all analyzers) is used for
    an analyzer that saw no valid volts/amps.
    """

    driver = "ptd"
    Options = PtdOptions
    options: PtdOptions

    def __init__(self, name: str, options: PtdOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        o = self.options
        if not o.analyzers:
            raise SourceError(f"{name}: PtdAnalyzersSource needs options.analyzers")
        prefix = o.mark_prefix or time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime())
        shared = o.model_dump(exclude={"analyzers", "host", "port", "channels", "mark_prefix"})
        self.analyzers: list[PtdSource] = [
            PtdSource(
                f"{name}[analyzer{i}]",
                PtdOptions(**shared, host=a.host, port=a.port, channels=a.channels, mark_prefix=prefix),
                sample_interval_s,
            )
            for i, a in enumerate(o.analyzers, start=1)
        ]
        # Per analyzer: max volts and amps seen since auto-range was switched on (its ranging).
        self._max_va: list[list[float]] = [[math.nan, math.nan] for _ in self.analyzers]

    def _each(self, fn, what: str) -> list[Any]:
        """fn(analyzer) on all analyzers at once (power-dev's parallel Go); the first error raised."""
        results: list[Any] = [None] * len(self.analyzers)
        errors: list[BaseException | None] = [None] * len(self.analyzers)

        def run(i: int, a: PtdSource) -> None:
            try:
                results[i] = fn(a)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
                errors[i] = exc

        threads = [threading.Thread(target=run, args=(i, a), name=f"ptd-{what}-{i + 1}", daemon=True) for i, a in enumerate(self.analyzers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for exc in errors:
            if exc is not None:
                raise exc
        return results

    # --- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        opened: list[PtdSource] = []
        try:
            for a in self.analyzers:
                a.open()
                opened.append(a)
        except Exception:
            for a in opened:
                try:
                    a.close()
                except SourceError:
                    pass
            raise

    def close(self) -> None:
        problems = []
        for a in self.analyzers:
            try:
                a.close()
            except SourceError as exc:
                problems.append(str(exc))
        if problems:
            raise SourceError("; ".join(problems))

    def lock_key(self) -> str | None:
        # One key per source: the first analyzer's daemon stands for the set.
        return self.analyzers[0].lock_key()

    # --- what it is -------------------------------------------------------------------------------
    def identify(self) -> Identity:
        idents = [a.identify() for a in self.analyzers]
        return Identity(
            driver=self.driver,
            model=" + ".join(i.model for i in idents),
            serial=" + ".join(i.serial for i in idents),
            firmware=idents[0].firmware,
            vendor=idents[0].vendor,
            address=" ".join(i.address for i in idents),
            extra={"analyzer_count": len(idents), "analyzers": [i.as_dict() for i in idents]},
        )

    def _prefix(self, i: int, channel: str) -> str:
        return f"analyzer{i + 1}" if channel == "main" else f"analyzer{i + 1}.{channel}"

    def capabilities(self) -> Capabilities:
        caps = [a.capabilities() for a in self.analyzers]
        first = caps[0]
        return Capabilities(
            channels=tuple(self._prefix(i, ch) for i, c in enumerate(caps) for ch in c.channels),
            quantities=first.quantities,
            power_kind="meter",
            # Each analyzer rounds the request up to its own ranges; no one table holds for all.
            auto_range=all(c.auto_range for c in caps),
            ranges_rounded_by_meter=all(c.ranges_rounded_by_meter for c in caps),
            update_periods_s=first.update_periods_s,
            accuracy=first.accuracy,
            channel_info={
                self._prefix(i, ch): {"analyzer": i + 1, "address": a.address, "model": a.ptd.model if a.ptd else ""}
                for i, (a, c) in enumerate(zip(self.analyzers, caps))
                for ch in c.channels
            },
        )

    # --- ranges -----------------------------------------------------------------------------------
    def set_ranges(self, volts: float | None = None, amps: float | None = None, auto: bool | None = None) -> RangeState:
        if auto:
            states = self._each(lambda a: a.set_ranges(auto=True), "range")
            self._max_va = [[math.nan, math.nan] for _ in self.analyzers]
        else:
            def one(i: int) -> RangeState:
                mv, ma = self._max_va[i]
                own = not (math.isnan(mv) or math.isnan(ma)) and volts is not None and amps is not None
                # power-dev: SR,V,<this analyzer's max V>; SR,A,<its max A x 1.1>
                return self.analyzers[i].set_ranges(volts=mv if own else volts, amps=ma * 1.1 if own else amps, auto=auto)

            idx = {id(a): i for i, a in enumerate(self.analyzers)}
            states = self._each(lambda a: one(idx[id(a)]), "range")
        return self._combined(states)

    @staticmethod
    def _combined(states: list[RangeState]) -> RangeState:
        """The widest of the analyzers' ranges: each holds its own maxima, so the widest holds the
        overall request the procedure checks the read-back against."""
        return RangeState(
            volts=max((s.volts for s in states), default=math.nan),
            amps=max((s.amps for s in states), default=math.nan),
            auto_v=any(s.auto_v for s in states),
            auto_a=any(s.auto_a for s in states),
        )

    def get_ranges(self) -> RangeState:
        return self._combined([a.get_ranges() for a in self.analyzers])

    def analyzer_ranges(self) -> list[dict[str, Any]]:
        return [a.get_ranges().as_dict() for a in self.analyzers]

    # --- phases -----------------------------------------------------------------------------------
    def begin_phase(self, label: str) -> None:
        self._each(lambda a: a.begin_phase(label), "begin")

    def end_phase(self, label: str) -> dict[str, Any] | None:
        parts = self._each(lambda a: a.end_phase(label), "end")
        summary: dict[str, Any] = {"source": self.name, "driver": self.driver, "analyzers": parts}
        summary["warning"] = any(bool(p and p.get("warning")) for p in parts)
        summary["message"] = "; ".join(f"analyzer{i}: {p.get('message', '')}" for i, p in enumerate(parts, start=1) if p)
        summary["clock_offset_s"] = self.clock_offset_s()
        return summary

    # --- data -------------------------------------------------------------------------------------
    def read(self, timeout: float) -> list[ChannelBatch]:
        end = time.monotonic() + timeout
        while True:
            out: list[ChannelBatch] = []
            for i, a in enumerate(self.analyzers):
                for b in a.read(0):
                    out.append(ChannelBatch(self._prefix(i, b.channel), b.samples))
                    self._track_max(i, b.samples)
            if out:
                return out
            now = time.monotonic()
            if now >= end:
                return []
            time.sleep(max(0.001, min(end - now, min(a.next_poll_in() for a in self.analyzers))))

    def _track_max(self, i: int, samples: np.ndarray) -> None:
        ok = samples["status"] == OK
        if not np.any(ok):
            return
        for k, field_name in enumerate(("volts", "amps")):
            vals = samples[field_name][ok]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                cur = self._max_va[i][k]
                self._max_va[i][k] = float(vals.max()) if math.isnan(cur) else max(cur, float(vals.max()))

    def diagnostics(self) -> dict[str, Any]:
        return {"analyzers": [a.diagnostics() for a in self.analyzers]}

    def clock_offset_s(self) -> float | None:
        offs = [o for o in (a.clock_offset_s() for a in self.analyzers) if o is not None]
        return max(offs, key=abs) if offs else None


def _sample_batch(rows: list[_Row], range_v: float, range_a: float, accuracy: AccuracySpec | None) -> np.ndarray:
    """One channel's samples: a garbage line is an error, a -1 reading no data, any other -1
    field unknown (NaN); uncertainty only at fixed ranges with a known accuracy spec."""
    batch = empty_batch(len(rows))
    for i, (wall, mono, g) in enumerate(rows):
        batch["wall_ns"][i] = wall
        batch["mono_ns"][i] = mono
        batch["range_v"][i] = range_v
        batch["range_a"][i] = range_a
        if g is None:
            batch["status"][i] = ERROR
            continue
        w, v, a, pf = g
        if w == INVALID:
            batch["status"][i] = NO_DATA
            continue
        batch["watts"][i] = w
        batch["volts"][i] = v if v != INVALID else math.nan
        batch["amps"][i] = a if a != INVALID else math.nan
        batch["pf"][i] = pf if pf != INVALID else math.nan
        if accuracy is not None:
            batch["uncertainty_w"][i] = accuracy.uncertainty_w(w, range_v, range_a)
    return batch.astype(SAMPLE_DTYPE, copy=False)


def parse_address(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` (port 8888)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    try:
        p = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 1 <= p <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, p


def probe(address: str, timeout_s: float = 2.0) -> Discovered:
    """Hello + Identify at one address, nothing else (no Go, no range change)."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        return Discovered("ptd", address, status="error", detail=str(exc))
    where = f"{host}:{port}"
    conn = PtdConnection(host, port, timeout_s, timeout_s)
    try:
        conn.connect()
        hello = conn.command("Hello")
        if hello != HELLO_REPLY:
            return Discovered("ptd", where, status="error", detail=f"not a PTDaemon (answered {hello[:60]!r} to Hello)")
        ident = parse_identify(conn.command("Identify"))
    except SourceError as exc:
        text = str(exc)
        status = "busy" if "no reply to" in text else "error"
        if status == "busy":
            text += " (a PTDaemon serves one client at a time: is another one connected?)"
        return Discovered("ptd", where, status=status, detail=text)
    except ValueError as exc:
        return Discovered("ptd", where, status="error", detail=f"PTDaemon answered, but: {exc}")
    finally:
        conn.close()
    detail = f"PTDaemon {ident.version} ({ident.build_date}) serving {ident.meter_idn.replace(';', ' ')}"
    if ident.emulator:
        detail += "; this is the labconsole emulator, not a measurement"
    if ident.mode != "power":
        detail += f"; mode={ident.mode}: not a power analyzer"
    return Discovered(
        "ptd",
        where,
        model=ident.model,
        serial=ident.serial,
        status="available" if ident.mode == "power" else "error",
        detail=detail,
        profile_snippet={
            "name": "wall",
            "driver": "ptd",
            "scope": "wall",
            "sample_interval_s": 1.0,
            "options": {"host": host, "port": port},
        },
    )


def _describe_summary(s: dict[str, Any]) -> str:
    parts = []
    w = s.get("watts")
    if w:
        parts.append(f"PTD Watts avg {w['avg_w']:.3f} W (min {w['min_w']:.3f}, max {w['max_w']:.3f}; {w['samples']} samples, {w['errors']} errors)")
    elif s.get("watts_reply"):
        parts.append(f"PTD Watts reply {s['watts_reply']!r}")
    u = s.get("uncertainty")
    if u:
        if u["avg"] < 0:
            parts.append(f"uncertainty unknown for all {u['total']} samples (auto-range)")
        else:
            parts.append(f"uncertainty avg {u['avg'] * 100:.2f} % (max {u['max'] * 100:.2f} %; {u['invalid']} over the limit, {u['unknown']} unknown)")
    off = s.get("clock_offset_s")
    if off is not None:
        parts.append(f"PTD clock offset {off * 1000:+.1f} ms")
    return "; ".join(parts) or "no summary"
