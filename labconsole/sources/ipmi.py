"""The `ipmi` source: a node's power from its BMC over IPMI, through `ipmitool`.

Two ways a BMC gives power (`labconsole.instruments.ipmi` parses both):
    dcmi     `ipmitool dcmi power reading`: DCMI's system power (instantaneous, or the BMC's
             own average over its sampling period)
    sensor   `ipmitool -c sensor reading NAME`: one power sensor (a PSU input, "Sys Power")
ipmitool runs as an argument list (never a shell), one process per reading, with a timeout and
one retry of its own; the password goes through the environment (`-E`, IPMI_PASSWORD), never on
the command line where `ps` would show it. IPMI 2.0 (`lanplus`) by default; `lan` (IPMI 1.5) for
old BMCs and for OpenIPMI's simulator. BMC sensors refresh about once a second: asking faster
repeats values.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import Any, Literal

from pydantic import Field

from labconsole.instruments import ipmi
from labconsole.samples.batch import ChannelBatch, empty_batch, now_ns
from labconsole.sources.base import Capabilities, Identity, PasswordOptions, Source, SourceError, SourceUnavailable


class IpmiOptions(PasswordOptions):
    host: str = Field(..., min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\[\]-]+$", description="the BMC's address")
    port: int = Field(623, ge=1, le=65535)
    interface: Literal["lanplus", "lan"] = Field("lanplus", description="lanplus: IPMI 2.0 RMCP+; lan: IPMI 1.5")
    username: str = Field("", max_length=16, pattern=r"^[A-Za-z0-9_.@-]*$")
    password: str = Field("", max_length=20, description="better: password_env")
    cipher_suite: int | None = Field(None, ge=0, le=17, description="lanplus cipher suite (-C)")
    reading: Literal["dcmi", "dcmi-average", "sensor"] = Field("dcmi", description="DCMI power reading (instant or the BMC's average), or one power sensor")
    sensor: str = Field("Sys Power", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9 _.+/-]+$", description="reading sensor: the sensor's name")
    timeout_s: float = Field(5.0, gt=0, le=60)
    ipmitool: str = Field("ipmitool", description="the ipmitool binary")


class IpmiSource(Source):
    driver = "ipmi"
    Options = IpmiOptions
    options: IpmiOptions

    def __init__(self, name: str, options: IpmiOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        self._binary: str | None = None
        self._ident: dict[str, str] = {}
        self._closed = threading.Event()
        self._closed.set()
        self._next = 0.0
        self.counters = {"calls": 0, "errors": 0}

    @property
    def where(self) -> str:
        return f"{self.name}: BMC at {self.options.host}:{self.options.port}"

    def _env(self) -> dict[str, str]:
        o = self.options
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")}
        env["IPMI_PASSWORD"] = o.resolve_password(self.name)
        return env

    def _argv(self, *command: str) -> list[str]:
        o = self.options
        argv = [self._binary or o.ipmitool, "-I", o.interface, "-H", o.host, "-p", str(o.port), "-E", "-N", str(max(1, int(o.timeout_s / 2))), "-R", "1"]
        if o.username:
            argv += ["-U", o.username]
        if o.interface == "lanplus" and o.cipher_suite is not None:
            argv += ["-C", str(o.cipher_suite)]
        return argv + list(command)

    def _run(self, *command: str) -> str:
        self.counters["calls"] += 1
        try:
            res = subprocess.run(self._argv(*command), capture_output=True, text=True, timeout=self.options.timeout_s + 2, env=self._env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.counters["errors"] += 1
            raise SourceError(f"{self.where}: ipmitool {' '.join(command)}: no answer within {self.options.timeout_s + 2:g} s") from None
        except OSError as exc:
            raise SourceUnavailable(f"{self.name}: cannot run ipmitool: {exc.strerror}") from None
        if res.returncode != 0:
            self.counters["errors"] += 1
            err = " ".join((res.stderr or res.stdout).split())[:200]
            if "Unable to establish" in err or "Activate Session" in err or "RAKP" in err:
                raise SourceError(f"{self.where}: the BMC refused the session (user {self.options.username!r}, wrong password or privilege?): {err}")
            raise SourceError(f"{self.where}: ipmitool {' '.join(command)} failed: {err or f'exit {res.returncode}'}")
        return res.stdout

    def _read_watts(self) -> float:
        o = self.options
        try:
            if o.reading == "sensor":
                return ipmi.parse_sensor_csv(self._run("-c", "sensor", "reading", o.sensor), o.sensor)
            return ipmi.parse_dcmi_power(self._run("dcmi", "power", "reading"), "average" if o.reading == "dcmi-average" else "instant")
        except ipmi.IpmiParseError as exc:
            self.counters["errors"] += 1
            raise SourceError(f"{self.where}: {exc}") from None

    def open(self) -> None:
        self._binary = shutil.which(self.options.ipmitool)
        if not self._binary:
            raise SourceUnavailable(f"{self.name}: ipmitool is not installed (Debian/Ubuntu: apt-get install ipmitool)")
        info = self._run("mc", "info")
        self._ident = {}
        for line in info.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                self._ident[key.strip()] = value.strip()
        self._read_watts()  # the reading this source is for works, or open fails saying why
        self._closed.clear()
        self._next = time.monotonic()

    def close(self) -> None:
        self._closed.set()

    def identify(self) -> Identity:
        i = self._ident
        return Identity(driver=self.driver, model=i.get("Product Name", ""), firmware=i.get("Firmware Revision", ""),
                        vendor=i.get("Manufacturer Name", ""), address=f"ipmi://{self.options.host}:{self.options.port}",
                        extra={"reading": self.options.reading, "sensor": self.options.sensor if self.options.reading == "sensor" else None,
                               "ipmi_version": i.get("IPMI Version", ""), "product_id": i.get("Product ID", "")})

    def capabilities(self) -> Capabilities:
        kind = "average" if self.options.reading == "dcmi-average" else "instant"
        return Capabilities(channels=("main",), quantities=("watts",), power_kind=kind, update_periods_s=(self.sample_interval_s,),
                            channel_info={"main": {"scope": "node", "api": self.options.reading}})

    def read(self, timeout: float) -> list[ChannelBatch]:
        if self._closed.is_set():
            raise SourceError(f"{self.name}: read() on a closed source")
        wait = self._next - time.monotonic()
        if wait > timeout:
            self._closed.wait(timeout)
            return []
        if wait > 0:
            self._closed.wait(wait)
        self._next = max(self._next + self.sample_interval_s, time.monotonic())
        t0_wall, t0_mono = now_ns()
        with self.io_lock:
            watts = self._read_watts()
        t1_wall, t1_mono = now_ns()
        b = empty_batch(1)
        # the BMC answered somewhere between asking and the reply: stamp the middle
        b["wall_ns"][0], b["mono_ns"][0] = (t0_wall + t1_wall) // 2, (t0_mono + t1_mono) // 2
        b["watts"][0] = watts
        return [ChannelBatch("main", b)]

    def diagnostics(self) -> dict[str, Any]:
        return {"counters": dict(self.counters)}
