"""A loopback Redfish BMC emulator: several systems at once, each a real HTTP(S) server on its own
port with one chassis whose power follows a load model (idle + dynamic x utilisation).

It serves the forms `labconsole.instruments.redfish` describes (EnvironmentMetrics with an
energy counter, legacy Power, PowerSubsystem with two supplies, a power Sensor), sessions
(POST SessionService/Sessions -> X-Auth-Token, DELETE to log out) and basic auth; 401 for
anything else. TLS when given a certificate and key (tests make them with trustme). The
reading refreshes every `update_s` like a BMC's sensor (about once a second on real ones).
NOT a measurement: Manufacturer says `labconsole-emulator`, serials start with EMU.

Test hooks on each system: offline (connections refused), delay_s (replies late), garbage
(bodies that are not JSON), frozen (the reading stops changing).
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labconsole.emulators.registry import serve_until_interrupted, startup_failure, validate_options, warn_if_reachable
from labconsole.instruments import redfish as rf
from labconsole.instruments.load_model import LoadModel, utilisation_arg, utilisation_source

MANUFACTURER = "labconsole-emulator"


class RedfishEmulatorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on (loopback unless told otherwise)")
    port: int = Field(0, ge=0, le=65535, description="first system's port (then port+1, ...); 0: free ports")
    systems: int = Field(1, ge=1, le=256, description="how many BMCs (one server and port each)")
    username: str = Field("admin", min_length=1, max_length=64)
    password: str = Field("labconsole", min_length=1, max_length=128)
    tls_cert: str | None = Field(None, description="PEM certificate chain: serve HTTPS (else plain HTTP)")
    tls_key: str | None = Field(None, description="PEM private key for tls_cert")
    idle_w: float = Field(250.0, ge=0, le=1e6, description="each system's idle W")
    dynamic_w: float = Field(350.0, ge=0, le=1e6, description="each system's extra W at full utilisation")
    noise_w: float = Field(2.0, ge=0, le=1e5)
    utilisation: Literal["workload", "host", "active"] | Annotated[float, Field(ge=0, le=1)] = "workload"
    spread: float = Field(0.1, ge=0, le=1, description="systems differ: system k's idle and dynamic W scaled by 1 + spread x (k/(n-1) - 0.5)")
    update_s: float = Field(1.0, gt=0, le=60, description="how often each BMC's reading refreshes")
    clock_offset_ms: float = Field(0.0, ge=-1e9, le=1e9, description="the BMCs' clock error (Date header, Manager DateTime)")
    seed: int | None = Field(None, ge=0, lt=2**32)


Options = RedfishEmulatorOptions  # checked by the profile loader for a source's `emulator:` block


class _System:
    """One BMC: its load model, its sampled reading and energy counter, its sessions, hooks."""

    def __init__(self, index: int, opts: RedfishEmulatorOptions):
        n = opts.systems
        scale = 1.0 + (opts.spread * (index / (n - 1) - 0.5) if n > 1 else 0.0)
        self.index = index
        self.opts = opts
        self.serial = f"EMU{index + 1:04d}"
        self.uuid = str(uuid.UUID(int=(opts.seed or 0) * 1000 + index + 1))
        self.model = LoadModel(idle_w=opts.idle_w * scale, dynamic_w=opts.dynamic_w * scale, noise_w=opts.noise_w,
                               seed=None if opts.seed is None else opts.seed + index, utilisation=utilisation_source(opts.utilisation))
        self.lock = threading.Lock()
        self.watts = self.model.reading().watts
        self.energy_j = 0.0
        self.updated = time.monotonic()
        self.sessions: dict[str, str] = {}  # token -> session id
        self.requests = 0
        self.offline = False
        self.delay_s = 0.0
        self.garbage = False
        self.frozen = False

    def refresh(self) -> None:
        """Advance the sensor to now, one update period at a time (energy integrated per step)."""
        with self.lock:
            now = time.monotonic()
            step = self.opts.update_s
            while now - self.updated >= step:
                self.energy_j += self.watts * step
                self.updated += step
                if not self.frozen:
                    self.watts = self.model.reading().watts

    def now(self) -> float:
        return time.time() + self.opts.clock_offset_ms / 1000.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "labconsole-redfish-emulator/1"
    protocol_version = "HTTP/1.1"
    system: _System  # set on the per-system subclass

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the CLI print their own
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(self.system.now(), usegmt=True)

    # --- replies ---------------------------------------------------------------------------------
    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        sysm = self.system
        if sysm.delay_s:
            time.sleep(sysm.delay_s)
        raw = b"" if body is None else (b"{not json" if sysm.garbage else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("OData-Version", "4.0")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if raw and self.command != "HEAD":
            self.wfile.write(raw)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"code": "Base.1.0.GeneralError", "message": message,
                                      "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.GeneralError", "Message": message}]}})

    def _authorised(self) -> bool:
        token = self.headers.get("X-Auth-Token")
        if token and token in self.system.sessions:
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            o = self.system.opts
            return secrets.compare_digest(user, o.username) and secrets.compare_digest(pw, o.password)
        return False

    # --- methods ---------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.system.requests += 1
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in (rf.ROOT, "/redfish"):
            self._send(200, rf.service_root(self.system.uuid) if path == rf.ROOT else {"v1": rf.ROOT + "/"})
            return
        if not self._authorised():
            self._error(401, "authentication required")
            return
        body = self._resource(path)
        if body is None:
            self._error(404, f"no resource at {path}")
        else:
            self._send(200, body)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self.system.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != rf.SESSIONS:
            self._error(405, "only sessions are created here")
            return
        try:
            creds = json.loads(data or b"{}")
        except ValueError:
            self._error(400, "malformed JSON")
            return
        o = self.system.opts
        if not (isinstance(creds, dict) and creds.get("UserName") == o.username and creds.get("Password") == o.password):
            self._error(401, "invalid credentials")
            return
        sid, token = secrets.token_hex(4), secrets.token_hex(16)
        self.system.sessions[token] = sid
        loc = f"{rf.SESSIONS}/{sid}"
        self._send(201, rf.odata(loc, "#Session.v1_7_0.Session", Id=sid, UserName=o.username), {"X-Auth-Token": token, "Location": loc})

    def do_DELETE(self) -> None:  # noqa: N802
        self.system.requests += 1
        if not self._authorised():
            self._error(401, "authentication required")
            return
        sid = self.path.rstrip("/").rsplit("/", 1)[-1]
        for token, s in list(self.system.sessions.items()):
            if s == sid:
                del self.system.sessions[token]
                self._send(204)
                return
        self._error(404, "no such session")

    # --- resources -------------------------------------------------------------------------------
    def _resource(self, path: str) -> dict[str, Any] | None:
        s = self.system
        s.refresh()
        cid = "1"
        base = rf.chassis_path(cid)
        if path == rf.CHASSIS:
            return rf.collection(rf.CHASSIS, "#ChassisCollection.ChassisCollection", [base])
        if path == base:
            return rf.chassis_resource(cid, "LC-EMU-1U", s.serial, MANUFACTURER)
        if path == rf.form_path("environment", cid):
            return rf.environment_resource(cid, s.watts, s.energy_j)
        if path == rf.form_path("power", cid):
            return rf.power_resource(cid, s.watts, 2000.0)
        if path == f"{base}/Sensors":
            return rf.collection(path, "#SensorCollection.SensorCollection", [rf.form_path("sensor", cid, "PowerSys")])
        if path == rf.form_path("sensor", cid, "PowerSys"):
            return rf.sensor_resource(cid, "PowerSys", s.watts)
        sub = rf.form_path("powersubsystem", cid)
        if path == sub:
            return rf.odata(sub, "#PowerSubsystem.v1_1_0.PowerSubsystem", Id="PowerSubsystem", Name="Power Subsystem",
                            CapacityWatts=2000.0, PowerSupplies={"@odata.id": f"{sub}/PowerSupplies"})
        if path == f"{sub}/PowerSupplies":
            return rf.collection(path, "#PowerSupplyCollection.PowerSupplyCollection", [f"{sub}/PowerSupplies/{k}" for k in (0, 1)])
        for k in (0, 1):
            psu = f"{sub}/PowerSupplies/{k}"
            if path == psu:
                return rf.odata(psu, "#PowerSupply.v1_5_0.PowerSupply", Id=str(k), Name=f"PSU{k}", Metrics={"@odata.id": f"{psu}/Metrics"})
            if path == f"{psu}/Metrics":
                # two supplies share the load; their input sum is the chassis power
                return rf.odata(path, "#PowerSupplyMetrics.v1_0_1.PowerSupplyMetrics", Id="Metrics", Name=f"PSU{k} Metrics",
                                InputPowerWatts={"Reading": round(s.watts / 2, 3)})
        if path == rf.MANAGERS:
            return rf.collection(path, "#ManagerCollection.ManagerCollection", [f"{rf.MANAGERS}/BMC"])
        if path == f"{rf.MANAGERS}/BMC":
            t = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(s.now()))
            return rf.odata(path, "#Manager.v1_19_0.Manager", Id="BMC", Name="BMC", ManagerType="BMC", FirmwareVersion="emu-1.0",
                            Manufacturer=MANUFACTURER, DateTime=t)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout) before a late reply: not the emulator's error
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ssl.SSLError)):
            super().handle_error(request, client_address)


class RedfishEmulator:
    def __init__(self, opts: RedfishEmulatorOptions):
        self.opts = opts
        self.systems = [_System(i, opts) for i in range(opts.systems)]
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._ssl: ssl.SSLContext | None = None
        if (opts.tls_cert is None) != (opts.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if opts.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
            self._ssl = ctx

    @property
    def scheme(self) -> str:
        return "https" if self._ssl else "http"

    def start(self) -> "RedfishEmulator":
        try:
            for i, system in enumerate(self.systems):
                handler = type(f"Handler{i}", (_Handler,), {"system": system})
                port = self.opts.port + i if self.opts.port else 0
                srv = _Server((self.opts.host, port), handler, bind_and_activate=False)
                try:
                    srv.server_bind()
                    srv.server_activate()
                except OSError as exc:
                    srv.server_close()
                    raise OSError(f"cannot listen on {self.opts.host}:{port}: {exc.strerror}") from None
                if self._ssl is not None:
                    srv.socket = self._ssl.wrap_socket(srv.socket, server_side=True)
                self._servers.append(srv)
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, name=f"redfish-emulator-{i + 1}", daemon=True)
                t.start()
                self._threads.append(t)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def set_offline(self, index: int, offline: bool) -> None:
        """A BMC that goes away: its server stops answering (connections hang up)."""
        self.systems[index].offline = offline
        srv = self._servers[index]
        if offline:
            srv.shutdown()
        else:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def ports(self) -> list[int]:
        return [srv.server_address[1] for srv in self._servers]

    @property
    def urls(self) -> list[str]:
        host = self.opts.host if self.opts.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return [f"{self.scheme}://{host}:{p}" for p in self.ports]


class RedfishEmulatorHandle:
    def __init__(self, emulator: RedfishEmulator):
        self.emulator = emulator

    def source_options(self) -> dict[str, Any]:
        o = self.emulator.opts
        auth = {"username": o.username, "password": o.password}
        if len(self.emulator.systems) == 1:
            return {"url": self.emulator.urls[0], **auth}
        return {"urls": self.emulator.urls, **auth}

    def stop(self) -> None:
        self.emulator.stop()


def start(options: dict[str, Any] | None = None) -> RedfishEmulatorHandle:
    opts = validate_options(RedfishEmulatorOptions, options, "Redfish emulator")
    return RedfishEmulatorHandle(RedfishEmulator(opts).start())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="labconsole emulate redfish", description="Loopback Redfish BMCs whose chassis power follows a load model (NOT a measurement).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=0, help="first system's port (then +1 each); 0: free ports")
    ap.add_argument("--systems", type=int, default=1, help="how many BMCs, one port each")
    ap.add_argument("--username", default="admin")
    ap.add_argument("--password", default="labconsole")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    ap.add_argument("--tls-key", help="PEM private key")
    ap.add_argument("--idle-w", type=float, default=250.0)
    ap.add_argument("--dynamic-w", type=float, default=350.0)
    ap.add_argument("--noise-w", type=float, default=2.0)
    ap.add_argument("--utilisation", type=utilisation_arg, default="host", help="host (default), workload, active, or 0..1")
    ap.add_argument("--update-s", type=float, default=1.0)
    ap.add_argument("--seed", type=int)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        opts = RedfishEmulatorOptions(host=a.host, port=a.port, systems=a.systems, username=a.username, password=a.password,
                                      tls_cert=a.tls_cert, tls_key=a.tls_key, idle_w=a.idle_w, dynamic_w=a.dynamic_w,
                                      noise_w=a.noise_w, utilisation=a.utilisation, update_s=a.update_s, seed=a.seed)
        emu = RedfishEmulator(opts).start()
    except (ValidationError, ValueError, OSError, ssl.SSLError) as exc:
        return startup_failure("redfish", exc)  # the one start-up error path of every emulator
    warn_if_reachable(a.host, "these BMCs")

    def announce() -> None:
        print(f"labconsole Redfish emulator (NOT a measurement): {len(emu.systems)} BMC(s), user {opts.username!r}", flush=True)
        for url, s in zip(emu.urls, emu.systems):
            print(f"{url}{rf.CHASSIS}/1  serial {s.serial}", flush=True)

    return serve_until_interrupted(announce, emu.stop)
