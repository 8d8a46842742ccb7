"""The `prometheus` source: node power from a Prometheus server, one channel per node.

Datacenters already scrape their nodes' power into Prometheus (dcgm-exporter's GPU power and
energy, node_exporter's RAPL counters, ipmi_exporter's and redfish_exporter's chassis power;
`labconsole.instruments.promql` names them). This driver asks Prometheus's HTTP API, with
`requests`, for one value per node: the series summed by its node label, as PromQL evaluates
it, so all nodes come on one time grid (Prometheus aligns them).

Modes:
    range  (default) every poll asks `query_range` for the stretch since the last one, at
           `step = sample_interval_s`, `lag_s` behind now so that the last scrapes have landed:
           every grid point Prometheus holds, none repeated, none skipped
    live   an instant query each `sample_interval_s` (what a dashboard shows now)
A gauge's value is watts; a counter (energy) is kept as `energy_j` and its watts are the
increase over the previous point (a counter that went backwards was reset: no sample).
Only samples scraped within `stale_after_s` count (`last_over_time`), so a node that stops
reporting drops out at once rather than repeating its last value for Prometheus's 5 minutes.

POST with form encoding (no URL length limit); TLS verified by default (`ca_file`); bearer
token or basic auth from environment variables. The server's clock offset comes from its Date
headers (`labconsole.sources.httpclock`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Literal

import numpy as np
import requests
from pydantic import Field, model_validator

from labconsole.instruments import promql
from labconsole.samples.batch import ChannelBatch, empty_batch, now_ns
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError
from labconsole.sources.httpclock import ClockBounds

MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series


class PrometheusOptions(DriverOptions):
    url: str = Field(..., pattern=r"^https?://[^\s]+$", description="the Prometheus server, e.g. https://prometheus.example:9090")
    series: Literal["dcgm_power", "dcgm_energy", "node_rapl", "ipmi", "redfish", "labconsole", "custom"] = Field(
        "custom", description="a preset (metric, gauge/counter, node label) or custom (give metric and kind)")
    metric: str | None = Field(None, pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$", description="custom: the metric name")
    kind: Literal["gauge", "counter"] = Field("gauge", description="custom: gauge in W, or cumulative energy counter")
    to_joules: float = Field(1.0, gt=0, le=1e9, description="custom counter: factor from its unit to J (mJ: 0.001)")
    selector: str = Field("", max_length=2000, description='PromQL label matchers in braces, e.g. {job="bmc",rack="r12"}')
    node_label: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the label naming the node (default: the preset's)")
    strip_port: bool = Field(True, description="instance='host:9100' names node 'host'")
    nodes: list[str] | None = Field(None, max_length=100_000, description="the nodes expected (others are ignored; a missing one is reported)")
    mode: Literal["range", "live"] = "range"
    lag_s: float = Field(2.0, ge=0, le=600, description="range mode: stay this far behind now, for the last scrapes to land")
    stale_after_s: float = Field(5.0, gt=0, le=3600, description="a node whose newest sample is older than this has dropped out")
    timeout_s: float = Field(10.0, gt=0, le=300)
    verify_tls: bool = True
    ca_file: str | None = None
    bearer_token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    username: str | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _series(self) -> "PrometheusOptions":
        if self.series == "custom" and not self.metric:
            raise ValueError("series custom needs metric (or choose a preset: dcgm_power, dcgm_energy, node_rapl, ipmi, redfish, labconsole)")
        if self.series != "custom" and self.metric:
            raise ValueError(f"metric is given by series {self.series!r}; use series: custom to name another")
        return self

    def resolved(self) -> promql.Series:
        if self.series == "custom":
            assert self.metric is not None
            return promql.Series(self.metric, self.kind, self.to_joules, self.node_label or "instance")
        return promql.PRESETS[self.series]


class PrometheusError(SourceError):
    pass


class PrometheusClient:
    """Prometheus's HTTP API: instant and range queries, errors named, Date headers kept."""

    def __init__(self, url: str, timeout_s: float, verify: bool | str, auth: Any = None, headers: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.trust_env = False  # a lab's HTTP proxy must not stand between us and Prometheus
        self.session.verify = verify
        self.session.auth = auth
        self.session.headers.update(headers or {})
        self.clock = ClockBounds()

    def close(self) -> None:
        self.session.close()

    def api(self, endpoint: str, form: dict[str, str]) -> Any:
        t1 = time.time()
        try:
            r = self.session.post(f"{self.url}/api/v1/{endpoint}", data=form, timeout=self.timeout_s)
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            why = "TLS certificate not trusted (give ca_file, or verify_tls: false)" if "CERTIFICATE_VERIFY_FAILED" in text else f"TLS failed: {text[:160]}"
            raise PrometheusError(f"Prometheus at {self.url}: {why}") from None
        except requests.exceptions.Timeout:
            raise PrometheusError(f"Prometheus at {self.url}: no reply within {self.timeout_s:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise PrometheusError(f"Prometheus at {self.url}: cannot connect ({'refused' if 'refused' in str(exc) else str(exc)[:160]})") from None
        self.clock.add(r.headers.get("Date"), t1, time.time())
        if r.status_code in (401, 403):
            raise PrometheusError(f"Prometheus at {self.url}: HTTP {r.status_code} (credentials refused)")
        try:
            body = r.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url}: HTTP {r.status_code}, the reply is not JSON ({r.text[:60]!r})") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            raise PrometheusError(f"Prometheus at {self.url}: {kind or 'error'}: {err or 'unexpected reply'} (HTTP {r.status_code})")
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise PrometheusError(f"Prometheus at {self.url}: reply without data.result")
        return data

    def query(self, q: str, at: float | None = None) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
        form = {"query": q}
        if at is not None:
            form["time"] = f"{at:.3f}"
        data = self.api("query", form)
        return _series_of(data, self.url)

    def query_range(self, q: str, start: float, end: float, step: float) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
        data = self.api("query_range", {"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        return _series_of(data, self.url)


def _series_of(data: dict, where: str) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
    kind = data.get("resultType")
    out = []
    for item in data["result"]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise PrometheusError(f"Prometheus at {where}: a result without labels")
        if kind == "vector":
            points = [item.get("value")]
        elif kind == "matrix":
            points = item.get("values") or []
        else:
            raise PrometheusError(f"Prometheus at {where}: result type {kind!r}, expected vector or matrix (is the query a scalar?)")
        try:
            out.append((item["metric"], [(float(p[0]), p[1]) for p in points]))
        except (TypeError, ValueError, IndexError):
            raise PrometheusError(f"Prometheus at {where}: malformed sample in {str(item)[:80]}") from None
    return out


class PrometheusSource(Source):
    driver = "prometheus"
    Options = PrometheusOptions
    options: PrometheusOptions
    remote_clock = True  # samples carry the Prometheus server's evaluation times

    def __init__(self, name: str, options: PrometheusOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        o = self.options
        self.series = o.resolved()
        self.node_label = o.node_label or self.series.node_label
        self.query = promql.node_query(self.series, o.selector, self.node_label, o.stale_after_s)
        self.client: PrometheusClient | None = None
        self.nodes: list[str] = []
        self._cursor = 0.0
        self._next = 0.0
        self._last: dict[str, tuple[float, float]] = {}  # node -> (t, energy J) of the counter's previous point
        self._closed = threading.Event()
        self._closed.set()
        self.version = ""

    def _client(self) -> PrometheusClient:
        o = self.options
        verify: bool | str = (o.ca_file or True) if o.verify_tls else False
        headers, auth = {}, None
        if o.bearer_token_env:
            token = os.environ.get(o.bearer_token_env)
            if token is None:
                raise SourceError(f"{self.name}: environment variable {o.bearer_token_env} (bearer_token_env) is not set")
            headers["Authorization"] = f"Bearer {token}"
        if o.username:
            pw = os.environ.get(o.password_env or "", "") if o.password_env else ""
            auth = (o.username, pw)
        return PrometheusClient(o.url, o.timeout_s, verify, auth, headers)

    def open(self) -> None:
        self.client = self._client()
        try:
            try:
                r = self.client.session.get(f"{self.client.url}/api/v1/status/buildinfo", timeout=self.options.timeout_s)
                self.version = str((r.json().get("data") or {}).get("version", "")) if r.ok else ""
            except (requests.RequestException, ValueError, AttributeError):
                self.version = ""
            now = time.time()
            found = self._values(self.client.query(self.query, now))
            self.nodes = sorted(found) if self.options.nodes is None else list(self.options.nodes)
            if not self.nodes:
                raise SourceError(f"{self.name}: Prometheus at {self.options.url} has no {self.series.metric}{self.options.selector} series (query: {self.query})")
        except Exception:
            self.client.close()
            self.client = None
            raise
        self._cursor = now - self.options.lag_s
        self._next = time.monotonic()
        self._closed.clear()

    def close(self) -> None:
        self._closed.set()
        if self.client is not None:
            self.client.close()
            self.client = None

    def identify(self) -> Identity:
        return Identity(driver=self.driver, model=f"Prometheus {self.version}".strip(), address=self.options.url,
                        extra={"query": self.query, "series": self.series.metric, "kind": self.series.kind, "node_label": self.node_label,
                               "nodes": list(self.nodes), "mode": self.options.mode})

    def capabilities(self) -> Capabilities:
        counter = self.series.kind == "counter"
        return Capabilities(channels=tuple(self.nodes), quantities=("watts", "energy") if counter else ("watts",),
                            power_kind="counter" if counter else "average", has_energy_counter=counter,
                            update_periods_s=(self.sample_interval_s,),
                            channel_info={n: {"node": n, "series": self.series.metric} for n in self.nodes})

    @property
    def clock(self) -> ClockBounds | None:
        return self.client.clock if self.client else None

    def clock_offset_s(self) -> float | None:
        return self.client.clock.estimate() if self.client else None

    def _values(self, result) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        raw = [labels.get(self.node_label, "") for labels, _ in result]
        # host:port -> host only where that names each node once (two exporters on one host do not merge)
        stripped = [promql.node_name(lab, self.node_label, self.options.strip_port) for lab, _ in result]
        strip = len(set(stripped)) == len(set(raw))
        for (labels, points), short in zip(result, stripped):
            node = short if strip else promql.node_name(labels, self.node_label, False)
            try:
                vals = promql.parse_points(points)
            except ValueError as exc:
                raise PrometheusError(f"{self.name}: node {node}: {exc}") from None
            out.setdefault(node, []).append(vals)
        return {n: (parts[0] if len(parts) == 1 else np.concatenate(parts)) for n, parts in out.items()}

    def read(self, timeout: float) -> list[ChannelBatch]:
        if self._closed.is_set() or self.client is None:
            raise SourceError(f"{self.name}: read() on a closed source")
        wait = self._next - time.monotonic()
        if wait > timeout:
            self._closed.wait(timeout)
            return []
        if wait > 0:
            self._closed.wait(wait)
        self._next = max(self._next + self.sample_interval_s, time.monotonic())
        with self.io_lock:
            now = time.time()
            if self.options.mode == "live":
                values = self._values(self.client.query(self.query, now))
            else:
                step = self.sample_interval_s
                end = now - self.options.lag_s
                start = self._cursor + step
                if end < start:
                    return []
                end = min(end, start + step * (MAX_POINTS - 1))
                values = self._values(self.client.query_range(self.query, start, end, step))
                # the grid's last point asked for; the next poll starts one step after it
                self._cursor = start + math.floor((end - start) / step) * step
        return self._batches(values)

    def _batches(self, values: dict[str, np.ndarray]) -> list[ChannelBatch]:
        """{node: (n, 2) array of (t, value)} -> a batch per node (a counter's power taken from
        the increase over the previous point; the first point and a reset give none)."""
        wanted = set(self.nodes)
        out = []
        _, recv_mono = now_ns()
        recv_wall = time.time_ns()
        for node, pts in values.items():
            if node not in wanted or len(pts) == 0:
                continue
            pts = pts[np.argsort(pts[:, 0], kind="stable")]
            t, v = pts[:, 0], pts[:, 1]
            if self.series.kind == "counter":
                j = v * self.series.to_joules
                prev = self._last.get(node)
                self._last[node] = (float(t[-1]), float(j[-1]))
                t0 = np.concatenate([[prev[0] if prev else np.nan], t[:-1]])
                j0 = np.concatenate([[prev[1] if prev else np.nan], j[:-1]])
                keep = (t > t0) & (j >= j0)  # NaN (no previous point) compares False: dropped
                watts, energy, t = ((j - j0) / (t - t0))[keep], j[keep], t[keep]
            else:
                watts, energy = v, np.full(len(v), np.nan)
            if len(t) == 0:
                continue
            b = empty_batch(len(t))
            b["wall_ns"] = np.round(t * 1e9).astype(np.int64)
            b["mono_ns"] = recv_mono - (recv_wall - b["wall_ns"])
            b["watts"] = watts
            b["energy_j"] = energy
            b["status"] = np.where(np.isfinite(watts), 0, 2)
            out.append(ChannelBatch(node, b))
        return out

    def diagnostics(self) -> dict[str, Any]:
        return {"query": self.query, "nodes": len(self.nodes), "clock_offset_s": self.clock_offset_s()}
