"""An MLPerf Tiny device under test on a pseudo-terminal, with an IO manager in front of it.

The DUT speaks the benchmark API's protocol (`labconsole.instruments.tiny`): `%`-terminated
commands, `m-ready` after each, `name`, `profile`, `db load N` + `db <hex>`, `infer N W`,
`results`. Each inference takes `inference_ms`; the DUT draws `idle_mw`, `infer_mw` while
inferring (warm-up included), `uart_mw` while its UART receives.

Energy mode (the default): the host talks to an IO manager (the STM32H573I-DK interface board
personality: `dut <cmd>` passthrough, `[dut]: ` prefixes, `setbaud`, `name`), which talks to
the DUT at 9600 baud (each byte takes 10/9600 s of bench time); th_timestamp() pulses the
timestamp line into the LPM01A emulator's D7 through a shared `tiny_bench.Bench`, which also
carries the supply: the DUT boots (with its boot-time pulse) when the LPM01A powers it.
Performance mode: the host talks to the DUT directly and th_timestamp() prints `m-lap-us-<µs>`.

`labconsole emulate tiny-dut` starts the DUT (+ IO manager) and, in energy mode, an LPM01A
emulator wired to it, in one process, and prints both tty paths.
"""

from __future__ import annotations

import argparse
import os
import queue
import select
import sys
import threading
import tty
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from labconsole.emulators import lpm01a, tiny_bench
from labconsole.emulators.registry import serve_until_interrupted, validate_options
from labconsole.instruments import tiny as tp


class DutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bench: str | None = Field(None, max_length=64, pattern=r"^[\w.-]+$", description="the Tiny bench (LPM01A emulator) to wire to; none: powered on its own")
    speed: float = Field(1.0, gt=0, le=1000, description="bench clock speed (x real time)")
    mode: Literal["energy", "performance"] = "energy"
    io_manager: bool | None = Field(None, description="an IO manager in front (default: in energy mode)")
    vendor: str = Field("labconsole emulated DUT", max_length=64, pattern=r"^[^\]\r\n%]+$")
    model: str = Field("kws01", max_length=16, pattern=r"^[\w-]+$")
    classes: int = Field(12, ge=1, le=1000)
    inference_ms: float = Field(40.0, gt=0, le=600_000)
    idle_mw: float = Field(5.0, ge=0, le=1000)
    infer_mw: float = Field(30.0, ge=0, le=1000)
    uart_mw: float = Field(8.0, ge=0, le=1000)
    boot_ms: float = Field(20.0, ge=0, le=10_000)
    dut_baud: int = Field(tp.ENERGY_BAUD, ge=300, le=4_000_000, description="the DUT's UART (energy mode: 9600, fixed)")
    link: str | None = Field(None, max_length=512, description="also make this path a symlink to the tty")


class TinyDutEmulator:
    def __init__(self, options: DutOptions | None = None):
        self.options = o = options or DutOptions()
        self.via_io = o.io_manager if o.io_manager is not None else o.mode == "energy"
        standalone = o.bench is None
        self.bench = tiny_bench.bench(o.bench or f"tiny-dut-{id(self)}", o.speed)
        self.io_dut_baud = o.dut_baud  # what the IO manager was told (`setbaud`)
        self._master = self._slave = -1
        self.path = ""
        self._stop = threading.Event()
        self._wlock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.buffer = bytearray()
        self.expected = 0
        self.results: list[float] = [0.0] * o.classes
        self.booted = False
        self.commands: list[str] = []  # what the DUT received, for tests
        self.pulses = 0
        self.bench.on_power(self._power_changed)
        self._standalone = standalone

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> "TinyDutEmulator":
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        if self.options.link:
            if os.path.islink(self.options.link) and os.readlink(self.options.link).startswith("/dev/pts/"):
                os.unlink(self.options.link)
            os.symlink(self.path, self.options.link)
        for target in (self._read_loop, self._dut_loop):
            t = threading.Thread(target=target, name=f"tiny-dut {target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        if self._standalone:
            self.bench.set_powered(True)
        elif self.bench.powered:  # the LPM01A switched the supply on before the DUT was wired
            self._queue.put("\x00boot")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        link = self.options.link
        if link and os.path.islink(link) and os.readlink(link) == self.path:
            os.unlink(link)
        if self._standalone:
            tiny_bench.forget(self.bench.name)

    def source_options(self) -> dict[str, Any]:
        return {"port": self.options.link or self.path}

    # -- the host side (IO manager, or the DUT itself) ------------------------------------------------
    def _write_line(self, text: str) -> None:
        data = (text + "\r\n").encode("ascii", "replace")
        with self._wlock:
            if self._master < 0:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    if self._stop.wait(0.005):
                        return
                    continue
                except OSError:
                    return
                view = view[n:]

    def _read_loop(self) -> None:
        buf = ""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                if self._stop.wait(0.05):
                    return
                continue
            buf += data.decode("ascii", "replace")
            while tp.TERMINATOR in buf:
                cmd, buf = buf.split(tp.TERMINATOR, 1)
                self._host_command(cmd)
            if len(buf) > 4096:
                buf = buf[-tp.CMD_MAX :]

    def _host_command(self, cmd: str) -> None:
        if not self.via_io:
            self._queue.put(cmd)
            return
        # The IO manager (STM32 interface board): its own commands, or a passthrough.
        cmd = cmd.lstrip("\r\n")
        word, _, rest = cmd.partition(" ")
        if word == "dut":
            self._write_line(tp.msg_passthrough(rest))
            self._write_line(tp.READY)
            if self.bench.powered and self.booted:
                self._queue.put(rest)
            return
        if word == "name":
            self._write_line(f"m-name-[{tp.IO_NAME}]")
        elif word == "setbaud" and rest.strip().isdigit():
            self.io_dut_baud = int(rest.strip())
            self._write_line(f"m-baud-[{self.io_dut_baud}]")
        elif word == "checkbaud":
            self._write_line(f"m-baud-[{self.io_dut_baud}]")
        elif word == "help":
            self._write_line("dut name ls setbaud checkbaud help")
        else:
            self._write_line(tp.msg_error(f"Unknown command: {word}"))
        self._write_line(tp.READY)

    # -- the DUT ---------------------------------------------------------------------------------------
    def _uart(self, nbytes: int) -> None:
        """Bytes crossing the DUT's UART take their time (bench time)."""
        self.bench.sleep_until(self.bench.now() + nbytes * 10.0 / self.options.dut_baud, self._stop)

    def _say(self, line: str) -> None:
        if self.via_io:
            if self.io_dut_baud != self.options.dut_baud:
                line = "".join(chr(0x3F if ch.isalnum() else ord(ch)) for ch in line)  # wrong baud: garbage
            self._uart(len(line) + 2)
            self._write_line(tp.DUT_PREFIX + line)
        else:
            self._write_line(line)

    def _draw(self, mw: float, t: float | None = None) -> None:
        self.bench.draw(self.bench.now() if t is None else t, mw / 1000.0)

    def _timestamp(self, t: float | None = None) -> None:
        """th_timestamp() at bench time t (the schedule's, so a late thread does not stretch a window)."""
        t = self.bench.now() if t is None else t
        if self.options.mode == "energy":
            self.bench.pulse(t)
            self.pulses += 1
        else:
            self._say(tp.msg_lap_us(int(round(t * 1e6))))

    def _power_changed(self, on: bool) -> None:
        self.booted = False
        if on:
            self._queue.put("\x00boot")  # the worker boots the DUT, in order with commands

    def _dut_loop(self) -> None:
        while not self._stop.is_set():
            cmd = self._queue.get()
            if cmd is None:
                return
            if cmd == "\x00boot":
                self._boot()
                continue
            if not self.bench.powered:
                continue
            if self.via_io:
                self._draw(self.options.uart_mw)
                self._uart(len(cmd) + 1)
                self._draw(self.options.idle_mw)
            self.commands.append(cmd)
            try:
                self._execute(cmd[: tp.CMD_MAX])
            finally:
                self._say(tp.READY)

    def _boot(self) -> None:
        self.bench.sleep_until(self.bench.now() + self.options.boot_ms / 1000.0, self._stop)
        if not self.bench.powered:
            return
        self._draw(self.options.idle_mw)
        self._say(tp.msg_boot_mode(self.options.mode))
        self._timestamp()  # th_timestamp_initialize(): the line idles high after one edge
        self._say(tp.INIT_DONE)
        self._say(tp.READY)
        self.booted = True

    def _execute(self, cmd: str) -> None:
        toks = cmd.split(" ")
        word = toks[0]
        if word == "name":
            self._say(tp.msg_name(self.options.vendor))
        elif word == "profile":
            self._say(f"m-profile-[{tp.API_PROFILE}]")
            self._say(f"m-model-[{self.options.model}]")
        elif word == "help":
            self._say("name profile timestamp db infer results help")
        elif word == "timestamp":
            self._timestamp()
        elif word == "db":
            self._db(toks[1:])
        elif word == "infer":
            self._infer(toks[1:])
        elif word == "results":
            self._say(tp.msg_results(self.results))
        else:
            self._say(tp.msg_error(f"Unknown command: {word}"))

    def _db(self, args: list[str]) -> None:
        if args and args[0] == "load":
            if len(args) < 2 or not args[1].lstrip("-").isdigit():
                return self._say("e-[Command 'db load' requires the # of bytes]")
            n = int(args[1])
            if n <= 0:
                return self._say("e-[Command 'db load' must be >0 bytes]")
            if n > tp.MAX_DB_INPUT:
                return self._say(f"Supplied buffer size {n} exceeds maximum of {tp.MAX_DB_INPUT}")
            self.expected, self.buffer = n, bytearray()
            return self._say(tp.msg_expecting(n))
        if args and args[0] == "print":
            n = int(args[1]) if len(args) > 1 and args[1].isdigit() else len(self.buffer)
            off = int(args[2]) if len(args) > 2 and args[2].isdigit() else 0
            chunk = self.buffer[off : off + n]
            for i in range(0, len(chunk), 8):
                self._say("m-buffer-" + "-".join(f"{b:02x}" for b in chunk[i : i + 8]))
            return None
        hexd = "".join(args)
        if len(hexd) % 2:
            return self._say("e-[Insufficent number of hex digits]")
        for i in range(0, len(hexd), 2):
            if len(self.buffer) >= self.expected:
                break
            pair = hexd[i : i + 2]
            try:
                self.buffer.append(int(pair, 16))
            except ValueError:
                return self._say(f"e-[Invalid hex digit '{pair}']")
            if len(self.buffer) == self.expected:
                self._say(tp.LOAD_DONE)
        return None

    def _infer(self, args: list[str]) -> None:
        try:
            n = int(args[0]) if args else 1
            w = int(args[1]) if len(args) > 1 else tp.DEFAULT_WARMUPS
        except ValueError:
            return self._say("e-[Inference iterations must be >0]")
        if n <= 0:
            return self._say("e-[Inference iterations must be >0]")
        if w < 0:
            return self._say("e-[Inference warmup must be >=0]")
        o = self.options
        b = self.bench
        dt = o.inference_ms / 1000.0
        self._say(f"m-warmup-start-{w}")
        # What the DUT will draw and when it pulses is known ahead: registered before waiting, so
        # the LPM01A, sampling on its own thread, never passes a moment the DUT has not told yet.
        t = b.now()
        self._draw(o.infer_mw, t)
        self._draw(o.idle_mw, t + w * dt)
        if not b.sleep_until(t + w * dt, self._stop):
            return None
        self._say(tp.WARMUP_DONE)
        self._say(f"m-infer-start-{n}")
        t = b.now()
        self._timestamp(t)
        self._draw(o.infer_mw, t)  # th_pre(), N x th_infer(), th_post()
        self._draw(o.idle_mw, t + n * dt)
        if o.mode == "energy":
            self._timestamp(t + n * dt)
        if not b.sleep_until(t + n * dt, self._stop):
            return None
        if o.mode != "energy":
            self._timestamp(t + n * dt)
        self._say(tp.INFER_DONE)
        self.results = self._scores()
        self._say(tp.msg_results(self.results))
        return None

    def _scores(self) -> list[float]:
        # A deterministic "classifier": the class the input's byte sum points at.
        k = self.options.classes
        top = sum(self.buffer) % k if self.buffer else 0
        return [0.996 if i == top else 0.0 for i in range(k)]


def start(options: dict[str, Any] | None = None) -> TinyDutEmulator:
    opts = validate_options(DutOptions, options, "tiny-dut emulator")
    return TinyDutEmulator(opts).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="labconsole emulate tiny-dut",
        description="An MLPerf Tiny device under test on a pseudo-terminal (behind an IO manager in energy mode), "
        "and in energy mode an LPM01A emulator that powers it and hears its timestamp pulses on D7. Ctrl-C stops them.",
    )
    ap.add_argument("--mode", choices=("energy", "performance"), default="energy")
    ap.add_argument("--speed", type=float, default=1.0, help="bench clock speed (x real time; default 1)")
    ap.add_argument("--inference-ms", type=float, default=40.0)
    ap.add_argument("--idle-mw", type=float, default=5.0)
    ap.add_argument("--infer-mw", type=float, default=30.0)
    ap.add_argument("--model", default="kws01")
    ap.add_argument("--port", metavar="PATH", help="also create PATH as a symlink to the DUT's (IO manager's) tty")
    ap.add_argument("--lpm01a-port", metavar="PATH", help="also create PATH as a symlink to the LPM01A's tty")
    args = ap.parse_args(argv)
    name = f"cli-{os.getpid()}"
    energy = args.mode == "energy"
    try:
        meter = lpm01a.start({"bench": name, "speed": args.speed, "noise_mw": 0.0, "buffer_bytes": 1 << 22, "link": args.lpm01a_port}) if energy else None
        dut = start({"bench": name if energy else None, "speed": args.speed, "mode": args.mode, "inference_ms": args.inference_ms, "idle_mw": args.idle_mw, "infer_mw": args.infer_mw, "model": args.model, "link": args.port})
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        who = "IO manager (DUT behind it at 9600 baud)" if dut.via_io else "DUT"
        print(f"MLPerf Tiny {args.mode}-mode {who} on {dut.path}" + (f" (also {args.port})" if args.port else ""), flush=True)
        if meter is not None:
            print(f"LPM01A (PowerShield) supplying it on {meter.path}" + (f" (also {args.lpm01a_port})" if args.lpm01a_port else "") + "; the DUT boots when it is powered (pwr on)", flush=True)

    def stop() -> None:
        dut.stop()
        if meter is not None:
            meter.stop()
        tiny_bench.forget(name)
        print(f"stopped after {len(dut.commands)} DUT command(s), {dut.pulses} timestamp pulse(s)", flush=True)

    return serve_until_interrupted(announce, stop)
