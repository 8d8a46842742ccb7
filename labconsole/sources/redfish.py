"""The `redfish` source: a BMC's chassis power over Redfish, through DMTF's `redfish` library.

What it reads (the forms and paths are `labconsole.instruments.redfish`): EnvironmentMetrics
(PowerWatts and the BMC's energy counter), legacy Power (PowerControl[0].PowerConsumedWatts),
PowerSubsystem (the supplies' input power, summed) or one power Sensor; `form: auto` takes the
first the BMC serves, in that order. One GET per sample at `sample_interval_s` (BMCs refresh
about once a second; asking faster only repeats values).

Security: TLS certificates are verified by default. DMTF's library verifies only when it is
given a CA file, so this driver always gives one (the profile's `ca_file`, else the bundle
`requests` trusts); `verify_tls: false` is the explicit, logged way out for a lab BMC with a
self-signed certificate. Credentials: `password_env` names an environment variable, so a
profile need not hold the password. Sessions (the Redfish default) are deleted at close.

Clock: each reply's HTTP Date header (whole seconds of the BMC's clock) bounds the BMC's offset
against ours: remote in [Date, Date + 1) while the request ran from t1 to t2, so offset in
[Date - t2, Date + 1 - t1]; the bounds of many replies are intersected, the midpoint reported
(`clock_offset_s`), so a fleet run can record each node's offset.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Literal

import redfish
import requests
from pydantic import Field
from redfish.rest.v1 import (
    InvalidCredentialsError,
    JsonDecodingError,
    RetriesExhaustedError,
    ServerDownOrUnreachableError,
    SessionCreationError,
)

from labconsole.instruments import redfish as rf
from labconsole.samples.batch import ChannelBatch, empty_batch, now_ns
from labconsole.sources.base import Capabilities, Identity, PasswordOptions, Source, SourceError
from labconsole.sources.httpclock import ClockBounds

_LIB_ERRORS = (ServerDownOrUnreachableError, RetriesExhaustedError, JsonDecodingError, requests.RequestException, OSError)


class RedfishOptions(PasswordOptions):
    url: str = Field(..., pattern=r"^https?://[^/\s]+/?$", description="the BMC: https://HOST[:PORT] (http:// only for a lab network you trust)")
    username: str = Field("", max_length=128)
    password: str = Field("", max_length=256, description="better: password_env")
    auth: Literal["session", "basic"] = Field("session", description="session: one login, an X-Auth-Token; basic: credentials on every request")
    form: Literal["auto", "environment", "power", "powersubsystem", "sensor"] = "auto"
    chassis: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="chassis id; default: the first the BMC lists")
    sensor: str = Field("PowerSys", pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="form sensor: the sensor id under Chassis/{id}/Sensors")
    verify_tls: bool = Field(True, description="verify the BMC's certificate (off only for a lab BMC with a self-signed one)")
    ca_file: str | None = Field(None, description="PEM file of the CA(s) that signed the BMC's certificate")
    timeout_s: float = Field(5.0, gt=0, le=120)


class RedfishSource(Source):
    driver = "redfish"
    Options = RedfishOptions
    options: RedfishOptions

    def __init__(self, name: str, options: RedfishOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        self._client: Any = None
        self.form: str | None = None
        self.chassis: str | None = None
        self._ident: dict[str, str] = {}
        self.clock = ClockBounds()
        self._next = 0.0
        self._closed = threading.Event()
        self._closed.set()
        self.counters = {"requests": 0, "errors": 0}
        self.last_error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.name}: BMC at {self.options.url}"

    def _password(self) -> str:
        return self.options.resolve_password(self.name)

    # --- I/O -------------------------------------------------------------------------------------
    def _get(self, path: str) -> Any:
        t1 = time.time()
        self.counters["requests"] += 1
        try:
            resp = self._client.get(path, timeout=self.options.timeout_s, max_retry=0)
        except _LIB_ERRORS as exc:
            self.counters["errors"] += 1
            raise SourceError(f"{self.where}: GET {path}: {_why(exc)}") from None
        t2 = time.time()
        self.clock.add(resp.getheader("Date"), t1, t2)
        if resp.status == 401:
            raise SourceError(f"{self.where}: GET {path}: 401 Unauthorized (credentials refused or session expired)")
        if resp.status != 200:
            raise SourceError(f"{self.where}: GET {path}: HTTP {resp.status}")
        try:
            return resp.dict
        except JsonDecodingError:
            self.counters["errors"] += 1
            raise SourceError(f"{self.where}: GET {path}: the reply is not JSON") from None

    # --- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        o = self.options
        if o.url.startswith("https://"):
            cafile = (o.ca_file or requests.certs.where()) if o.verify_tls else None
            if o.ca_file and not os.path.isfile(o.ca_file):
                raise SourceError(f"{self.name}: ca_file {o.ca_file}: no such file")
        else:
            cafile = None
        try:
            client = redfish.redfish_client(base_url=o.url.rstrip("/"), username=o.username, password=self._password(), cafile=cafile,
                                            timeout=o.timeout_s, max_retry=0)
            if o.username:
                client.login(auth=o.auth)
        except InvalidCredentialsError:
            raise SourceError(f"{self.where}: the BMC refused user {o.username!r} (401): check username and password") from None
        except SessionCreationError as exc:
            raise SourceError(f"{self.where}: could not create a session: {str(exc).splitlines()[0]}") from None
        except _LIB_ERRORS as exc:
            raise SourceError(f"{self.where}: {_why(exc)}") from None
        self._client = client
        try:
            self.chassis = o.chassis or self._first_chassis()
            body = self._get(rf.chassis_path(self.chassis))
            self._ident = {k: str(body.get(k) or "") for k in ("Manufacturer", "Model", "SerialNumber", "PartNumber")} if isinstance(body, dict) else {}
            self.form = self._choose_form()
        except Exception:
            self._logout()
            raise
        self._closed.clear()
        self._next = time.monotonic()

    def _first_chassis(self) -> str:
        links = rf.members(self._get(rf.CHASSIS))
        if not links:
            raise SourceError(f"{self.where}: the BMC lists no chassis")
        return links[0].rstrip("/").rsplit("/", 1)[-1]

    def _choose_form(self) -> str:
        forms = rf.FORMS if self.options.form == "auto" else (self.options.form,)
        problems = []
        for form in forms:
            try:
                self._reading(form)
                return form
            except SourceError as exc:
                problems.append(f"{form}: {exc}".replace(f"{self.where}: ", ""))
        raise SourceError(f"{self.where}: chassis {self.chassis} offers no power reading ({'; '.join(problems)})")

    def _reading(self, form: str) -> rf.PowerReading:
        assert self.chassis is not None
        path = rf.form_path(form, self.chassis, self.options.sensor)
        body = self._get(path)
        try:
            if form == "environment":
                return rf.parse_environment(body)
            if form == "power":
                return rf.parse_power(body)
            if form == "sensor":
                return rf.parse_sensor(body)
            total = 0.0
            for coll in rf.supply_links(body):
                for psu in rf.members(self._get(coll)):
                    metrics = self._get(psu).get("Metrics", {}).get("@odata.id") or f"{psu}/Metrics"
                    total += rf.parse_supply_metrics(self._get(metrics))
            return rf.PowerReading(total)
        except (rf.RedfishPayloadError, AttributeError) as exc:
            raise SourceError(f"{self.where}: {path}: {exc}") from None

    def _logout(self) -> None:
        client, self._client = self._client, None
        if client is not None and self.options.auth == "session" and self.options.username:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a BMC gone away keeps its session until it times out
                pass

    def close(self) -> None:
        self._closed.set()
        with self.io_lock:
            self._logout()

    # --- what it is ------------------------------------------------------------------------------
    def identify(self) -> Identity:
        if self.chassis is None:
            raise SourceError(f"{self.name}: identify() before open()")
        return Identity(driver=self.driver, model=self._ident.get("Model", ""), serial=self._ident.get("SerialNumber", ""),
                        vendor=self._ident.get("Manufacturer", ""), address=f"{self.options.url}{rf.chassis_path(self.chassis or '')}",
                        extra={"form": self.form, "chassis": self.chassis, "emulator": self._ident.get("Manufacturer") == "labconsole-emulator"})

    def capabilities(self) -> Capabilities:
        return Capabilities(channels=("main",), quantities=("watts", "energy") if self.form == "environment" else ("watts",),
                            power_kind="instant", has_energy_counter=self.form == "environment",
                            update_periods_s=(self.sample_interval_s,), channel_info={"main": {"scope": "node", "api": self.form}})

    def lock_key(self) -> str | None:
        return None  # a BMC serves many readers

    def clock_offset_s(self) -> float | None:
        return self.clock.estimate()

    # --- data ------------------------------------------------------------------------------------
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
        with self.io_lock:
            if self._client is None:
                raise SourceError(f"{self.name}: not connected")
            try:
                reading = self._reading(self.form or "power")
                self.last_error = None
            except SourceError as exc:  # the recorder decides what next (on_failure)
                self.last_error = str(exc)
                raise
        b = empty_batch(1)
        b["wall_ns"][0], b["mono_ns"][0] = now_ns()
        b["watts"][0] = reading.watts
        b["energy_j"][0] = reading.energy_j
        return [ChannelBatch("main", b)]

    def diagnostics(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "form": self.form, "clock_offset_s": self.clock.estimate(),
                "clock_offset_uncertainty_s": self.clock.uncertainty(), "last_error": self.last_error}


def _why(exc: BaseException) -> str:
    """The root cause of a library error in one line (TLS failure, refused, timeout)."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen) or type(seen).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate not trusted (give ca_file with the BMC's CA, or verify_tls: false for a lab BMC)"
    if isinstance(seen, requests.exceptions.SSLError) or "SSL" in type(seen).__name__:
        return f"TLS failed: {text[:160]}"
    if "timed out" in text.lower() or isinstance(seen, requests.exceptions.Timeout):
        return f"no reply within {text[:160]}" if "Read timed out" in text else f"timed out ({text[:160]})"
    if "Connection refused" in text:
        return "connection refused (BMC down, or wrong port?)"
    return text.splitlines()[0][:200]
