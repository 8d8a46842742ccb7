"""An IPMI BMC on loopback: OpenIPMI's real `ipmi_sim` (Debian package `openipmi`) with one power
sensor ("Sys Power", Watts) whose value this module drives, following a load model.

ipmi_sim is configured with a LAN channel on 127.0.0.1 (a free UDP port), one admin user, a
BMC at IPMB 0x20 with a Full Sensor Record for the sensor (`labconsole.instruments.ipmi`), and
the sensor polled from a file we rewrite every `update_s`. It speaks IPMI 1.5 (`lan`) here;
its RMCP+ (lanplus) needs more setup than a test BMC is worth. NOT a measurement.
Test hooks: `set_watts` (a fixed reading), `set_offline` (the BMC stops answering: SIGSTOP).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from labconsole.emulators.registry import serve_from_key_values, validate_options
from labconsole.instruments.ipmi import power_sensor_sdr
from labconsole.instruments.load_model import LoadModel, utilisation_source

SENSOR = "Sys Power"
WATTS_PER_COUNT = 4  # the sensor's M: raw 0..255 reads 0..1020 W


def ipmi_sim_binary() -> str | None:
    return shutil.which("ipmi_sim")


class IpmiEmulatorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field("admin", pattern=r"^[A-Za-z0-9_]{1,16}$")
    password: str = Field("labconsole", pattern=r"^[A-Za-z0-9_]{1,16}$")
    idle_w: float = Field(300.0, ge=0, le=1000)
    dynamic_w: float = Field(300.0, ge=0, le=1000)
    noise_w: float = Field(2.0, ge=0, le=100)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = "workload"
    update_s: float = Field(0.5, gt=0, le=60)
    seed: int | None = Field(None, ge=0, lt=2**32)


Options = IpmiEmulatorOptions


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rmcp_ping(port: int, timeout_s: float = 0.3) -> bool:
    """ASF presence ping (RMCP class 6): a BMC's LAN channel answers with a pong."""
    ping = bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x01, 0x00, 0x00])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        try:
            s.sendto(ping, ("127.0.0.1", port))
            data, _ = s.recvfrom(512)
        except OSError:
            return False
    return len(data) >= 9 and data[8] == 0x40  # presence pong


class IpmiSimulator:
    def __init__(self, opts: IpmiEmulatorOptions):
        self.binary = ipmi_sim_binary()
        if not self.binary:
            raise FileNotFoundError("ipmi_sim is not installed (Debian: apt-get install openipmi)")
        self.opts = opts
        self.port = 0
        self.model = LoadModel(idle_w=opts.idle_w, dynamic_w=opts.dynamic_w, noise_w=opts.noise_w, seed=opts.seed, utilisation=utilisation_source(opts.utilisation))
        self._fixed: float | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.offline = False
        self.watts = 0.0

    @property
    def sensor_file(self) -> Path:
        assert self._dir is not None
        return Path(self._dir.name) / "sys_power"

    def _write(self, watts: float) -> None:
        self.watts = max(0.0, min(255 * WATTS_PER_COUNT, watts))
        tmp = self.sensor_file.with_suffix(".tmp")
        tmp.write_text(f"{int(round(self.watts))}\n")
        os.replace(tmp, self.sensor_file)  # ipmi_sim never reads a half-written number

    def start(self) -> "IpmiSimulator":
        self._dir = tempfile.TemporaryDirectory(prefix="labconsole-ipmi-")
        d = Path(self._dir.name)
        self._write(self.model.reading().watts)
        sdr = " ".join(f"0x{b:02x}" for b in power_sensor_sdr(1, 1, SENSOR, WATTS_PER_COUNT))
        (d / "emu.cmds").write_text(
            "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
            "mc_setbmc 0x20\n"
            f"main_sdr_add 0x20 {sdr}\n"
            f'sensor_add 0x20 0 1 0x0b 0x01 poll {max(50, int(self.opts.update_s * 500))} file "{self.sensor_file}" div={WATTS_PER_COUNT}\n'
            "mc_enable 0x20\n"
        )
        o = self.opts
        for _attempt in range(3):
            self.port = _free_udp_port()
            (d / "lan.conf").write_text(
                'name "labconsole"\nset_working_mc 0x20\n  startlan 1\n'
                f"    addr 127.0.0.1 {self.port}\n    priv_limit admin\n"
                + "".join(f"    allowed_auths_{p} none md2 md5 straight\n" for p in ("callback", "user", "operator", "admin"))
                + "  endlan\n"
                f'  user 2 true "{o.username}" "{o.password}" admin 10 none md2 md5 straight\n'
            )
            (d / "state").mkdir(exist_ok=True)
            self.proc = subprocess.Popen([self.binary, "-c", str(d / "lan.conf"), "-f", str(d / "emu.cmds"), "-s", str(d / "state"), "-n"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
            end = time.monotonic() + 15
            while time.monotonic() < end and self.proc.poll() is None:
                if _rmcp_ping(self.port):
                    self._thread = threading.Thread(target=self._follow, name="ipmi-emulator", daemon=True)
                    self._thread.start()
                    return self
                time.sleep(0.1)
            self._kill()
        self.stop()
        raise RuntimeError("ipmi_sim did not answer on 127.0.0.1 (its errors go to syslog)")

    def _follow(self) -> None:
        while not self._stop.wait(self.opts.update_s):
            self._write(self._fixed if self._fixed is not None else self.model.reading().watts)

    def set_watts(self, watts: float | None) -> None:
        """Hold the sensor at this reading (None: follow the load model again)."""
        self._fixed = watts
        self._write(watts if watts is not None else self.model.reading().watts)

    def set_offline(self, offline: bool) -> None:
        if self.proc is not None and self.proc.poll() is None and offline != self.offline:
            os.kill(self.proc.pid, signal.SIGSTOP if offline else signal.SIGCONT)
        self.offline = offline

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.offline:
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class IpmiEmulatorHandle:
    def __init__(self, sim: IpmiSimulator):
        self.sim = sim

    def source_options(self) -> dict[str, Any]:
        o = self.sim.opts
        return {"host": "127.0.0.1", "port": self.sim.port, "interface": "lan", "username": o.username, "password": o.password,
                "reading": "sensor", "sensor": SENSOR}

    def stop(self) -> None:
        self.sim.stop()


def start(options: dict[str, Any] | None = None) -> IpmiEmulatorHandle:
    opts = validate_options(IpmiEmulatorOptions, options, "IPMI emulator")
    return IpmiEmulatorHandle(IpmiSimulator(opts).start())


def main(argv: list[str] | None = None) -> int:
    """`labconsole emulate NAME [KEY=VALUE ...]`: start with these options (as in a profile's
    `emulator:` block, values in YAML), print the source options that reach it, serve until Ctrl-C."""
    return serve_from_key_values("ipmi", argv, start)
