"""An X-NUCLEO-LPM01A (PowerShield) on a pseudo-terminal, for tests and for learning the console.

The emulator owns a pty pair: the slave end is a real tty path (/dev/pts/N) that pyserial opens
like the board's /dev/ttyACM0; the emulator answers on the master end with the PowerShield's
prompt, acknowledgements and errors (`labconsole/powershield.py`), and streams ASCII or binary
samples at the chosen frequency with TimeStamp lines every 1000 samples and optional D7 events.
Readings come from the console's load model (idle + dynamic x utilisation + noise) scaled to a
small DC device: by default 5 mW idle + 20 mW at full load at 3.3 V (1.5-7.6 mA).

Beyond the real board, for tests: `inject(bytes)` puts anything on the line, `mute()` makes the
board go silent (hung firmware, pulled cable), `line_bytes_per_s` slows the link so the board's
transmit buffer overflows (samples are then lost and the TimeStamp lines show it).

Emulator choices where the real board's behaviour is not known (see powershield.py): commands
other than queries need `htc` first; during an acquisition only stop, pwr, targrst and queries are
accepted; `trigsrc d7` triggers 10 ms after `start`; a full transmit buffer drops samples.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import sys
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labconsole.emulators import tiny_bench
from labconsole.emulators.registry import serve_until_interrupted, startup_failure, validate_options
from labconsole.instruments import powershield as ps
from labconsole.instruments.load_model import LoadModel, follow_any_benchmark, utilisation_arg, utilisation_source

HELP_TEXT = (
    "help echo powershield version range status htc hrc lcd psrst volt freq acqtime acqmode funcmode "
    "output format trigsrc trigdelay currthres eventsrc pwr pwrend start stop targrst temp autotest calib"
)
QUERIES = {"help", "echo", "powershield", "version", "range", "status", "temp", "htc", "hrc"}
DURING_ACQUISITION = {"stop", "pwr", "targrst", "help", "echo", "powershield", "version", "status", "temp"}


class EmulatorOptions(BaseModel):
    """What a profile's `emulator:` block (or `labconsole emulate lpm01a`) may set."""

    model_config = ConfigDict(extra="forbid")

    idle_mw: float = Field(5.0, ge=0, le=600, description="device power with the SUT idle (mW)")
    dynamic_mw: float = Field(20.0, ge=0, le=600, description="extra power at full utilisation (mW)")
    noise_mw: float = Field(0.2, ge=0, le=100, description="standard deviation of the noise (mW)")
    utilisation: Literal["active", "workload", "host"] | Annotated[float, Field(ge=0, le=1)] = Field(
        "workload",
        description="active: the device runs flat out while the benchmark computes, idles otherwise (an MCU's inference loop); "
        "workload: the benchmark's CPU share; host: the machine's; a number fixes it",
    )
    seed: int | None = Field(None, ge=0, lt=2**64)
    board_id: str = Field("EMULATOR-LABCONSOLE-0001", max_length=64, pattern=r"^[\x21-\x7e]+$")
    firmware: str = Field("1.0.6-emulator", max_length=32, pattern=r"^[\x21-\x7e]+$")
    events_every_s: float | None = Field(None, gt=0, le=3600, description="a D7 edge this often (when the host enabled eventsrc)")
    relaxed_limits: bool = Field(False, description="allow ascii_dec above 5 kHz for as long as asked (the real firmware refuses)")
    buffer_bytes: int = Field(16384, ge=256, le=1 << 24, description="the board's transmit buffer")
    line_bytes_per_s: float | None = Field(None, gt=0, le=1e10, description="limit the link's throughput (to provoke buffer overflow)")
    link: str | None = Field(None, max_length=512, description="also make this path a symlink to the tty")
    bench: str | None = Field(None, max_length=64, pattern=r"^[\w.-]+$", description="wire to this MLPerf Tiny bench (labconsole.emulators.tiny_bench): power the emulated DUT, measure its draw, hear its timestamp pulses on D7")
    speed: float = Field(1.0, gt=0, le=1000, description="with `bench`: the bench clock runs this many times faster than real time")


@dataclass
class _Config:
    volt_mv: int = 3300
    freq_hz: int = 100
    acqtime_s: float = 10.0
    acqmode: str = "dyn"
    funcmode: str = "optim"
    output: str = "current"
    fmt: str = "ascii_dec"
    trigsrc: str = "sw"
    trigdelay_s: float = 0.001
    currthres_a: float = 1e-3
    pwr: str = "auto"
    pwrend: str = "on"
    eventsrc: str | None = None  # "ris" | "fal"
    lcd: list[str] = field(default_factory=lambda: ["", ""])


class PowerShieldEmulator:
    def __init__(self, options: EmulatorOptions | None = None):
        self.options = options or EmulatorOptions()
        o = self.options
        util = utilisation_source(o.utilisation)
        self.model = LoadModel(idle_w=o.idle_mw / 1000, dynamic_w=o.dynamic_mw / 1000, noise_w=o.noise_mw / 1000, volts=3.3, pf_idle=1.0, pf_load=1.0, seed=o.seed, utilisation=util)
        self._rng = np.random.default_rng(o.seed)
        # A Tiny bench: its clock, the DUT's draw and its D7 pulses replace the load model.
        self._bench = tiny_bench.bench(o.bench, o.speed) if o.bench else None
        self.cfg = _Config()
        self.host_control = False
        self.powered = False
        self.acquiring = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self.path = ""
        self._rxbuf = b""
        self._tx = bytearray()
        self._muted = False
        self._unplugged = False
        self._bucket = 0.0
        self._bucket_t = 0.0
        self._u = 0.0
        self._u_t = 0.0
        # acquisition state
        self._t0 = 0.0
        self._produced = 0
        self._event_no = 0
        self._next_event_t = math.inf
        self._last_edge_t = -math.inf
        # what happened, for tests and the operator
        self.commands: list[str] = []
        self.samples_sent = 0
        self.samples_dropped = 0
        self.acquisitions = 0

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> "PowerShieldEmulator":
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"lpm01a-emulator {self.path}", daemon=True)
        self._thread.start()
        return self

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        try:
            tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation
            os.set_blocking(self._master, False)
            self.path = os.ttyname(self._slave)
            if self.options.link:
                link = self.options.link
                try:
                    if os.path.islink(link):
                        # Only a link to a pseudo-terminal (ours from before) or a dangling one is
                        # replaced: a profile must not be able to repoint the user's other links.
                        target = os.readlink(link)
                        if os.path.exists(link) and not target.startswith("/dev/pts/"):
                            raise OSError(f"{link} is a link to {target}, not to a pseudo-terminal; not replacing it")
                        os.unlink(link)
                    os.symlink(self.path, link)
                except OSError as exc:
                    raise OSError(f"cannot make {link} a link to {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self._close_fds()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_fds()
        link = self.options.link
        if link and os.path.islink(link) and os.readlink(link) == self.path:
            try:
                os.unlink(link)
            except OSError:
                pass

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    @property
    def acquisition_start(self) -> float:
        """When sample 0 of the current acquisition began, on the emulator's clock (the bench's when wired)."""
        return self._t0

    def _now(self) -> float:
        return self._bench.now() if self._bench is not None else time.monotonic()

    def _set_powered(self, on: bool) -> None:
        self.powered = on
        if self._bench is not None:
            self._bench.set_powered(on)

    def source_options(self) -> dict[str, Any]:
        return {"port": self.options.link or self.path}

    # -- fault injection -------------------------------------------------------------------------
    def inject(self, data: bytes) -> None:
        """Put these bytes on the line now, between whatever the board was sending."""
        with self._lock:
            self._tx += data

    def unplug(self) -> None:
        """The USB cable is pulled: the tty disappears (the host's reads fail) and the board,
        powered by the cable, forgets its state."""
        with self._lock:
            self._close_fds()
            self._unplugged = True
            self.acquiring = False
            self.host_control = False
            self.powered = False
            self._tx.clear()
            self._rxbuf = b""

    def plug(self) -> None:
        """Plugged back: a new tty (a new /dev/pts/N; the `link` path follows it, as a
        /dev/serial/by-id link would)."""
        with self._lock:
            self._open_pty()
            self._unplugged = False

    def mute(self, on: bool = True) -> None:
        """Go silent and deaf (hung firmware); unmuting resumes the acquisition, minus what was lost."""
        with self._lock:
            self._muted = on
            if not on and self.acquiring:
                due = self._due(self._now())
                self.samples_dropped += max(0, due - self._produced)
                self._skip_to(due)

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd = self._master
                want_write = bool(self._tx) and not self._muted and self._budget() > 0
                timeout = 0.005 if self.acquiring and not self._muted else 0.05
            if fd < 0:  # unplugged
                self._stop.wait(0.05)
                continue
            try:
                readable, writable, _ = select.select([fd], [fd] if want_write else [], [], timeout)
            except (OSError, ValueError):
                if self._unplugged or fd != self._master:
                    continue  # unplugged (or re-plugged) while we waited
                return
            with self._lock:
                if readable:
                    self._receive()
                if self.acquiring and not self._muted:
                    self._produce(self._now())
                if self._tx and not self._muted:
                    self._send()

    def _receive(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: nobody has the tty open right now
        if self._muted:
            return
        self._rxbuf += data
        while True:
            cut = min((i for i in (self._rxbuf.find(b"\n"), self._rxbuf.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                if len(self._rxbuf) > 1024:
                    self._rxbuf = b""
                return
            line, self._rxbuf = self._rxbuf[:cut], self._rxbuf[cut + 1 :]
            text = line.decode("ascii", "replace").strip()
            if text:
                self.commands.append(text)
                self._command(text)

    def _budget(self) -> float:
        rate = self.options.line_bytes_per_s
        if rate is None:
            return math.inf
        now = time.monotonic()
        self._bucket = min(rate * 0.05 + 64, self._bucket + (now - self._bucket_t) * rate)
        self._bucket_t = now
        return self._bucket

    def _send(self) -> None:
        n = min(len(self._tx), 65536, int(min(self._budget(), 1 << 30)))
        if n <= 0:
            return
        try:
            written = os.write(self._master, bytes(self._tx[:n]))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        del self._tx[:written]
        if self.options.line_bytes_per_s is not None:
            self._bucket -= written

    # -- commands ----------------------------------------------------------------------------------
    def _ack(self, line: str, payload: str = "") -> None:
        self._tx += ps.reply_ack(line, payload)

    def _error(self, line: str, detail: str) -> None:
        self._tx += ps.reply_error(line, detail)

    def _command(self, line: str) -> None:
        words = line.split()
        cmd, args = words[0].lower(), words[1:]
        if self.acquiring and cmd not in DURING_ACQUISITION:
            return self._error(line, "command not allowed during acquisition (stop it first)")
        if cmd not in QUERIES and not self.host_control and cmd != "psrst":
            return self._error(line, "host control required (send htc first)")
        handler = getattr(self, f"_cmd_{cmd}", None)
        if handler is None:
            return self._error(line, "unknown command (type help)")
        try:
            handler(line, args)
        except IndexError:
            self._error(line, "missing argument")
        except ValueError as exc:
            self._error(line, str(exc) or "invalid argument")
        except ArithmeticError:  # 'volt inf': a number no setting can hold; the board says so and goes on
            self._error(line, "value out of range")

    def _cmd_help(self, line: str, args: list[str]) -> None:
        self._ack(line)
        self._tx += HELP_TEXT.encode() + b"\r\n"

    def _cmd_echo(self, line: str, args: list[str]) -> None:
        self._tx += b"\r\n" + (ps.PROMPT + line).encode("ascii", "replace") + b"\r\n"

    def _cmd_powershield(self, line: str, args: list[str]) -> None:
        self._ack(line, f"PowerShield present {self.options.board_id}")

    def _cmd_version(self, line: str, args: list[str]) -> None:
        self._ack(line, self.options.firmware)

    def _cmd_range(self, line: str, args: list[str]) -> None:
        self._ack(line, "100n 10m" if self.cfg.acqmode == "dyn" else "2n 200m")

    def _cmd_status(self, line: str, args: list[str]) -> None:
        self._ack(line, "ok")

    def _cmd_temp(self, line: str, args: list[str]) -> None:
        unit = (args or ["degc"])[0]
        if unit not in ("degc", "degf"):
            raise ValueError("argument must be degc or degf")
        self._ack(line, "28.0" if unit == "degc" else "82.4")

    def _cmd_htc(self, line: str, args: list[str]) -> None:
        self.host_control = True
        self._ack(line)

    def _cmd_hrc(self, line: str, args: list[str]) -> None:
        self.host_control = False
        self._ack(line)

    def _cmd_psrst(self, line: str, args: list[str]) -> None:
        self._ack(line)
        self.cfg = _Config()
        self.host_control = self.acquiring = False
        self._set_powered(False)

    def _cmd_lcd(self, line: str, args: list[str]) -> None:
        if len(args) < 2 or args[0] not in ("1", "2"):
            raise ValueError("usage: lcd <1|2> \"text\"")
        text = line.split(None, 2)[2].strip()
        if not (text.startswith('"') and text.endswith('"')) or len(text) - 2 > 16:
            raise ValueError("text must be in double quotes, 16 characters at most")
        self.cfg.lcd[int(args[0]) - 1] = text[1:-1]
        self._ack(line)

    def _cmd_volt(self, line: str, args: list[str]) -> None:
        if args[0] == "get":
            v = self.cfg.volt_mv / 1000 + float(self._rng.normal(0, 0.002))
            return self._ack(line, ps.encode_ascii_tokens(np.array([v]))[0])
        mv = round(ps.parse_number(args[0]) * 1000)
        if not ps.VOLT_MIN_MV <= mv <= ps.VOLT_MAX_MV:
            raise ValueError("value out of range [1800m; 3300m]")
        self.cfg.volt_mv = mv
        self._ack(line)

    def _cmd_freq(self, line: str, args: list[str]) -> None:
        hz = ps.parse_number(args[0])
        if hz not in ps.FREQUENCIES_HZ:
            raise ValueError("value not in list {100k, 50k, 20k, 10k, 5k, 2k, 1k, 500, 200, 100, 50, 20, 10, 5, 2, 1}")
        self.cfg.freq_hz = int(hz)
        self._ack(line)

    def _cmd_acqtime(self, line: str, args: list[str]) -> None:
        t = ps.parse_number(args[0])
        if t == 0:
            t = math.inf
        if not (t == math.inf or 100e-6 <= t <= 100):
            raise ValueError("value out of range [100u; 100] (0 or inf: infinite)")
        self.cfg.acqtime_s = t
        self._ack(line)

    def _choice(self, line: str, args: list[str], attr: str, allowed: tuple[str, ...]) -> None:
        if not args or args[0] not in allowed:
            raise ValueError("argument must be one of " + ", ".join(allowed))
        setattr(self.cfg, attr, args[0])
        self._ack(line)

    def _cmd_acqmode(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "acqmode", ("dyn", "stat"))

    def _cmd_funcmode(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "funcmode", ("optim", "high"))

    def _cmd_output(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "output", ("current", "energy"))

    def _cmd_format(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "fmt", ("ascii_dec", "bin_hexa"))

    def _cmd_trigsrc(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "trigsrc", ("sw", "d7"))

    def _cmd_pwrend(self, line: str, args: list[str]) -> None:
        self._choice(line, args, "pwrend", ("on", "off"))

    def _cmd_trigdelay(self, line: str, args: list[str]) -> None:
        t = ps.parse_number(args[0])
        if not 0 <= t <= 30:
            raise ValueError("value out of range [0; 30]")
        self.cfg.trigdelay_s = t
        self._ack(line)

    def _cmd_currthres(self, line: str, args: list[str]) -> None:
        a = ps.parse_number(args[0])
        if not (a == 0 or 100e-9 <= a <= 50e-3):
            raise ValueError("value out of range [100n; 50m] or 0")
        self.cfg.currthres_a = a
        self._ack(line)

    def _cmd_eventsrc(self, line: str, args: list[str]) -> None:
        if len(args) != 2 or args[0] != "d7" or args[1] not in ("ris", "fal"):
            raise ValueError("usage: eventsrc d7 <ris|fal>")
        self.cfg.eventsrc = args[1]
        self._ack(line)

    def _cmd_pwr(self, line: str, args: list[str]) -> None:
        if args[0] == "get":
            return self._ack(line, "on" if self.powered else "off")
        if args[0] not in ("auto", "on", "off") or (len(args) > 1 and args[1] not in ("nostatus", "status")):
            raise ValueError("usage: pwr <auto|on|off|get> [nostatus|status]")
        self.cfg.pwr = args[0]
        if args[0] != "auto":
            self._set_powered(args[0] == "on")
        self._ack(line)

    def _cmd_targrst(self, line: str, args: list[str]) -> None:
        t = ps.parse_number(args[0])
        if not (t == 0 or 10e-3 <= t <= 1):
            raise ValueError("value out of range [10m; 1] or 0")
        self._ack(line)

    def _cmd_calib(self, line: str, args: list[str]) -> None:
        self._ack(line)

    def _cmd_autotest(self, line: str, args: list[str]) -> None:
        self._ack(line, "ok")

    def _cmd_start(self, line: str, args: list[str]) -> None:
        c = self.cfg
        if c.acqmode != "dyn":
            raise ValueError("the emulator streams in dynamic mode only (acqmode dyn)")
        if c.output == "energy" and c.freq_hz > ps.ENERGY_MAX_HZ:
            raise ValueError("output energy is limited to 10k sampling frequency")
        if c.fmt == "ascii_dec" and c.freq_hz > ps.ASCII_CONTINUOUS_MAX_HZ and not self.options.relaxed_limits:
            limit = ps.ASCII_TIMED_LIMITS_S.get(c.freq_hz)
            if limit is None or c.acqtime_s > limit:
                raise ValueError(f"acquisition time too long for format ascii_dec at {ps.freq_arg(c.freq_hz)} (max {limit or 0:g} s); use bin_hexa")
        self._ack(line)
        if c.pwr == "auto":
            self._set_powered(True)
        self.acquiring = True
        self.acquisitions += 1
        delay = c.trigdelay_s + (0.01 if c.trigsrc == "d7" else 0.0)
        self._t0 = self._now() + delay
        self._produced = 0
        self._event_no = -1 if self._bench is not None else 0  # a real board counts its events from 00
        self._last_edge_t = -math.inf
        every = self.options.events_every_s
        self._next_event_t = every if (every and c.eventsrc) else math.inf
        if c.fmt == "bin_hexa":
            self._tx += ps.meta_timestamp(0, 0)

    def _cmd_stop(self, line: str, args: list[str]) -> None:
        if not self.acquiring:
            raise ValueError("no acquisition running")
        self._end_acquisition()

    def _end_acquisition(self) -> None:
        # Samples due up to now go out first, then the end marker and the completion line.
        self._produce(self._now())
        self.acquiring = False
        if self.cfg.fmt == "bin_hexa":
            self._tx += bytes([ps.META, ps.META_END]) + ps.META_TAIL
        else:
            self._tx += b"end\r\n"
        self._tx += ps.REPLY_COMPLETED
        if self.cfg.pwrend == "off" and self.cfg.pwr == "auto":
            self._set_powered(False)

    # -- the stream ----------------------------------------------------------------------------------
    def _due(self, now: float) -> int:
        if now < self._t0:
            return 0
        due = int((now - self._t0) * self.cfg.freq_hz)
        if self.cfg.acqtime_s != math.inf:
            due = min(due, int(round(self.cfg.acqtime_s * self.cfg.freq_hz)))
        return due

    def _skip_to(self, due: int) -> None:
        self._produced = due

    def _utilisation(self, now: float) -> float:
        if now - self._u_t > 0.02:  # the load model's utilisation is a slope over ~0.5 s anyway
            self._u = max(0.0, min(1.0, self.model.utilisation()))
            self._u_t = now
        return self._u

    def _produce(self, now: float) -> None:
        c = self.cfg
        due = self._due(now)
        limit_reached = c.acqtime_s != math.inf and due >= int(round(c.acqtime_s * c.freq_hz))
        while self._produced < due:
            # Up to the next TimeStamp line (every 1000 samples), at most 1000 at a time.
            first = self._produced
            last = min(due, (first // ps.TIMESTAMP_EVERY + 1) * ps.TIMESTAMP_EVERY)
            self._emit(first, last - first, now)
            self._produced = last
            if last % ps.TIMESTAMP_EVERY == 0:
                ms = last * 1000 // c.freq_hz
                pct = min(99, len(self._tx) * 100 // self.options.buffer_bytes)
                if c.fmt == "bin_hexa":
                    self._tx += ps.meta_timestamp(ms, pct)
                else:
                    self._tx += (ps.timestamp_line(ms, pct) + "\r\n").encode() + b"\x00"
        if limit_reached and self.acquiring:
            self._end_acquisition()

    def _emit(self, first: int, n: int, now: float) -> None:
        c = self.cfg
        if n <= 0:
            return
        volts = c.volt_mv / 1000.0
        if self._bench is not None:  # the emulated DUT's draw at each sample's middle
            mids = self._t0 + (first + np.arange(n) + 0.5) / c.freq_hz
            watts = self._bench.power_at(mids) + self._rng.normal(0.0, self.model.noise_w, n)
        else:
            watts = self.model.expected_watts(self._utilisation(now)) + self._rng.normal(0.0, self.model.noise_w, n)
        watts = np.maximum(watts, 1e-7)
        values = watts / c.freq_hz if c.output == "energy" else watts / volts
        if c.fmt == "bin_hexa":
            data = ps.encode_binary(values)
        else:
            lines = [t + "\r\n" for t in ps.encode_ascii_tokens(values)]
            # A D7 edge becomes an event line right after the sample during which it happened.
            while self._next_event_t < (first + n) / c.freq_hz:
                k = max(0, min(n - 1, int(self._next_event_t * c.freq_hz) - first))
                self._event_no += 1
                lines[k] += f"event {self._event_no:02d} {c.eventsrc}\r\n"
                self._next_event_t += self.options.events_every_s or math.inf
            if self._bench is not None and c.eventsrc:
                # The DUT's pulses on D7; real boards print `ris` whatever edge was asked for
                # (the MLCommons runner matches `event (\d+) ris`; reference/tiny.md 2.2).
                # From the last edge reported on: one told late lands on the first sample not yet sent.
                t_first = self._t0 + first / c.freq_hz
                t_from = max(self._t0, self._last_edge_t)
                for t in self._bench.edges_between(t_from, t_first + n / c.freq_hz):
                    if t == self._last_edge_t:
                        continue
                    self._last_edge_t = t
                    k = max(0, min(n - 1, int((t - self._t0) * c.freq_hz) - first))
                    self._event_no += 1
                    lines[k] += f"event {self._event_no % 100:02d} ris\r\n"
            data = "".join(lines).encode()
        if len(self._tx) + len(data) > self.options.buffer_bytes:
            self.samples_dropped += n  # the board's buffer is full: these never leave it
        else:
            self._tx += data
            self.samples_sent += n


def start(options: dict[str, Any] | None = None) -> PowerShieldEmulator:
    """Start an emulator (in this process) for a profile's `emulator:` block or a test."""
    opts = validate_options(EmulatorOptions, options, "lpm01a emulator")
    return PowerShieldEmulator(opts).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="labconsole emulate lpm01a",
        description="An STM32 X-NUCLEO-LPM01A (PowerShield) on a pseudo-terminal: prints the tty path to put in a "
        "profile's `port:` and runs until Ctrl-C. Its load follows the benchmark's CPU use (--utilisation).",
    )
    ap.add_argument("--port", metavar="PATH", help="also create PATH as a symlink to the tty (a pty has no port number)")
    ap.add_argument("--idle-mw", type=float, default=5.0, help="device power at idle (mW, default 5)")
    ap.add_argument("--dynamic-mw", type=float, default=20.0, help="extra power at full load (mW, default 20)")
    ap.add_argument("--noise-mw", type=float, default=0.2, help="noise standard deviation (mW, default 0.2)")
    ap.add_argument("--utilisation", type=utilisation_arg, default="workload", help="workload (default: the benchmark's CPU use, its LoadGen workers' process trees, whatever else runs here), host (the whole machine's), active, or a constant 0..1")
    ap.add_argument("--events-every", type=float, default=None, metavar="S", help="a D7 edge every S seconds (when the host enabled eventsrc)")
    ap.add_argument("--relaxed-limits", action="store_true", help="allow ascii_dec above 5 kHz continuously (the real firmware refuses)")
    ap.add_argument("--board-id", default="EMULATOR-LABCONSOLE-0001")
    args = ap.parse_args(argv)
    link = args.port
    if link is not None and link.isdigit():
        print(f"note: a pseudo-terminal has no port number; ignoring --port {link} (give a path to get a symlink)", file=sys.stderr)
        link = None
    util = args.utilisation
    follow_any_benchmark()  # run on its own: 'workload' is any labconsole benchmark here
    try:
        emu = start(
            {
                "idle_mw": args.idle_mw, "dynamic_mw": args.dynamic_mw, "noise_mw": args.noise_mw, "utilisation": util,
                "events_every_s": args.events_every, "relaxed_limits": args.relaxed_limits, "board_id": args.board_id, "link": link,
            }
        )
    except (ValueError, OSError) as exc:
        return startup_failure("lpm01a", exc)

    def announce() -> None:
        where = emu.path + (f" (also {link})" if link else "")
        print(f"LPM01A (PowerShield) emulator on {where}", flush=True)
        print(f"profile: driver: lpm01a, options: {{port: {link or emu.path}}}; Ctrl-C stops it", flush=True)

    def stop() -> None:
        emu.stop()
        print(f"stopped after {emu.acquisitions} acquisition(s), {emu.samples_sent} samples sent, {emu.samples_dropped} dropped", flush=True)

    return serve_until_interrupted(announce, stop)
