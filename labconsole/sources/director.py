"""`driver: director`: live power from an official run's director, read through its labconsole.

The SUT's console polls the director's live view (`labconsole.director.live`: the PTD log lines
the server's PTDaemon writes, tailed on the director) over HTTP. It sends nothing to PTDaemon or
power-dev's server. Sample times are PTD's (the director's NTP-synced clock: the time base
MLPerf matches LoadGen's power window against). With one analyzer the channel is `main`, with
several one channel per analyzer (`analyzer1`, ...), whose sum is what power-dev's spl.txt holds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from pydantic import Field

from labconsole.instruments.ptd import INVALID, parse_sample_line
from labconsole.samples.batch import NO_DATA, ChannelBatch, empty_batch
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError, SourceUnavailable


class DirectorOptions(DriverOptions):
    host: str | None = Field(None, description="the director's address (default: the profile's director.address)")
    port: int | None = Field(None, ge=1, le=65535, description="its labconsole live view (default: director.live_port)")
    timeout_s: float = Field(5.0, gt=0, le=120)


class DirectorSource(Source):
    driver = "director"
    Options = DirectorOptions

    def __init__(self, name, options=None, sample_interval_s=1.0):
        super().__init__(name, options, sample_interval_s)
        self._after = 0
        self._status: dict = {}
        self._analyzers = 1
        self._state = ""  # the director's state at the last poll
        self.counters = {"lines": 0, "samples": 0, "garbage_lines": 0, "polls": 0}

    def _url(self, path: str) -> str:
        o = self.options
        if not o.host or not o.port:
            raise SourceError("director source: no host/port (set options, or the profile's director section)")
        host = f"[{o.host}]" if ":" in o.host else o.host
        return f"http://{host}:{o.port}{path}"

    def _get(self, path: str) -> dict:
        try:
            with urllib.request.urlopen(self._url(path), timeout=self.options.timeout_s) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceError(f"the director's live view at {self._url('')} does not answer: {getattr(exc, 'reason', exc)}") from None

    def status(self) -> dict:
        self._status = self._get("/status")
        return self._status

    def open(self) -> None:
        try:
            st = self.status()
        except SourceError as exc:
            raise SourceUnavailable(str(exc)) from None
        self._analyzers = int(st.get("analyzers") or 1)
        # Start from what the director has now: older lines belong to earlier sessions.
        self._after = self._latest_seq()

    def _latest_seq(self) -> int:
        last = 0
        while True:
            got = self._get(f"/lines?after={last}")
            if not got.get("lines"):
                return last
            last = int(got["last"])

    def close(self) -> None:
        pass

    def identify(self) -> Identity:
        st = self._status or self.status()
        reply = (st.get("identify") or {}).get("1", "")
        fields = reply.split(",")
        version = next((f.split("=", 1)[1] for f in fields if f.startswith("version=")), "")
        return Identity(
            driver="director", model=fields[0] if reply else "PTDaemon (not yet identified)", firmware=version,
            vendor="power-dev director", address=self._url(""), extra={"identify": st.get("identify"), "director_state": st.get("state")},
        )

    def capabilities(self) -> Capabilities:
        chans = ("main",) if self._analyzers == 1 else tuple(f"analyzer{i}" for i in range(1, self._analyzers + 1))
        return Capabilities(channels=chans, quantities=("watts", "volts", "amps", "pf"), power_kind="meter")

    def lock_key(self) -> str | None:
        return None  # a read-only view: many consoles may watch one director

    def read(self, timeout: float) -> list[ChannelBatch]:
        deadline = time.monotonic() + timeout
        while True:
            self.counters["polls"] += 1
            got = self._get(f"/lines?after={self._after}")
            lines = got.get("lines") or []
            self._state = str(got.get("state") or "")
            if lines:
                self._after = int(got["last"])
                return self._batches(lines)
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(0.25, left))

    def expects_samples(self) -> bool:
        # PTDaemon logs samples only during a measurement (between power-dev's Go and Stop).
        return self._state in ("ranging", "testing", "")

    def _batches(self, lines: list[dict]) -> list[ChannelBatch]:
        rows: dict[str, list[tuple]] = {}
        mono = time.monotonic_ns()
        for item in lines:
            text = str(item.get("line", ""))
            self.counters["lines"] += 1
            if not text.startswith("Time,") or ",Watts," not in text:
                continue  # PTD's NOTICE/WARNING/ERROR message lines
            try:
                t_ns, groups = parse_sample_line(text)
            except ValueError:
                self.counters["garbage_lines"] += 1
                continue
            ch = "main" if self._analyzers == 1 else f"analyzer{int(item.get('analyzer', 1))}"
            rows.setdefault(ch, []).append((t_ns, mono, groups[0]))
        out = []
        for ch, rr in rows.items():
            batch = empty_batch(len(rr))
            for i, (t_ns, m, (w, v, a, pf)) in enumerate(rr):
                batch[i]["wall_ns"], batch[i]["mono_ns"] = t_ns, m
                if w == INVALID:
                    batch[i]["status"] = NO_DATA
                    continue
                batch[i]["watts"], batch[i]["volts"], batch[i]["amps"], batch[i]["pf"] = w, v, a, pf
            self.counters["samples"] += len(batch)
            out.append(ChannelBatch(ch, batch))
        return out

    def diagnostics(self) -> dict:
        return dict(self.counters)
