"""The `fleet` source: many nodes measured as one system, each node's power kept as a channel.

The model (for whoever builds on it, e.g. MLPerf Training's per-node power):
    node     a machine of the system under test, named once (`channel` = node name)
    member   one source reading one node (listed under `nodes:`), or many nodes at once (a
             Prometheus selector under `prometheus:`, whose channels are the nodes it found)
    system   the sum of the nodes: MLPerf's average of a multi-channel source is the sum of its
             channels' averages, so the fleet source's power IS the system power, and each
             channel's average is that node's share
A node with several members (say BMC power and, separately, something not behind the BMC) is
their sum; members of one node must not overlap (two readings of the same wall power).

Each member is read in its own thread (a slow BMC never holds up the rest); samples keep the
time they were taken on our clock: members that stamp samples with a remote clock (Prometheus's
evaluation times) are moved by that host's offset, measured from its HTTP Date headers, and
every member's offset is recorded (identity and each phase's summary). A node that reports
nothing for `max_dropout_s` is flagged as dropped out (when it went, when it came back); with
`on_node_failure: continue` (default) the run goes on with the other nodes, with `stop` the
fleet source fails and the run stops. `labconsole check` fails a run in which any node was
silent for longer than `max_dropout_s` inside the power window.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from labconsole.samples.batch import ChannelBatch
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceError
from labconsole.sources.registry import create_source

RETRY_S = 0.5  # a failed member read is tried again after this


class MemberOptions(DriverOptions):
    driver: str = Field(..., min_length=1, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict)
    sample_interval_s: float | None = Field(None, gt=0, le=3600, description="default: the fleet source's")


class NodeOptions(DriverOptions):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
    sources: list[MemberOptions] = Field(..., min_length=1, max_length=16)


class FleetOptions(DriverOptions):
    nodes: list[NodeOptions] = Field(default_factory=list, max_length=100_000, description="nodes, each with its source(s)")
    prometheus: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                             description="Prometheus selectors that expand to nodes (options of the prometheus driver)")
    max_dropout_s: float = Field(10.0, gt=0, le=86_400, description="a node silent this long has dropped out")
    on_node_failure: Literal["continue", "stop"] = Field("continue", description="a node that drops out or fails to open: go on without it, or fail the source")
    open_timeout_s: float = Field(60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _unique(self) -> "FleetOptions":
        # (a fleet with neither nodes nor selectors is refused at open: an `emulator:` block supplies them)
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"node names listed twice: {', '.join(dup)}")
        return self


@dataclass
class Member:
    label: str
    source: Source
    node: str | None  # None: each channel is a node (a Prometheus selector)
    suffix: str = ""  # "#k" for one of several members of a node; "#prometheusK" for a name a listed node has
    listed: frozenset = frozenset()
    thread: threading.Thread | None = None
    error: str | None = None
    errors: int = 0

    def channel(self, source_channel: str) -> str:
        """The fleet channel a member's samples go to: the node's name, or node#k where one node
        has several members (each its own channel; the node is their sum)."""
        if self.node:
            return self.node + self.suffix
        return source_channel + self.suffix if source_channel in self.listed else source_channel


def _natural(name: str) -> list:
    """node2 before node10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def node_of(channel: str) -> str:
    """The node a fleet channel belongs to."""
    return channel.split("#", 1)[0]


@dataclass
class NodeState:
    name: str
    last_ns: int = 0  # wall time of its newest sample
    samples: int = 0
    dropouts: list[list[float | None]] = field(default_factory=list)  # [[from_s, to_s | None]]
    error: str | None = None

    @property
    def out(self) -> bool:  # silent now, for longer than max_dropout_s
        return bool(self.dropouts) and self.dropouts[-1][1] is None


class FleetSource(Source):
    driver = "fleet"
    Options = FleetOptions
    options: FleetOptions

    def __init__(self, name: str, options: FleetOptions | None = None, sample_interval_s: float = 1.0):
        super().__init__(name, options, sample_interval_s)
        o = self.options
        if not o.nodes and not o.prometheus:
            raise SourceError(f"{name}: a fleet needs nodes or prometheus selectors (options.nodes, options.prometheus)")
        self.members: list[Member] = []
        listed = frozenset(n.name for n in o.nodes)
        for n in o.nodes:
            for k, m in enumerate(n.sources):
                suffix = f"#{k + 1}" if len(n.sources) > 1 else ""
                src = create_source(f"{name}/{n.name}{suffix}", m.driver, m.options, m.sample_interval_s or sample_interval_s)
                self.members.append(Member(src.name, src, n.name, suffix))
        for k, p in enumerate(o.prometheus):
            src = create_source(f"{name}/prometheus{k + 1}", "prometheus", p, sample_interval_s)
            self.members.append(Member(src.name, src, None, f"#prometheus{k + 1}", listed))
        self.nodes: dict[str, NodeState] = {}
        self._queue: queue.SimpleQueue[ChannelBatch] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._opened_at = 0.0
        self.offsets: dict[str, float | None] = {}

    # --- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        self._stop.clear()
        errors: dict[str, str] = {}

        def open_one(m: Member) -> None:
            try:
                m.source.open()
            except Exception as exc:  # noqa: BLE001 - reported per member below
                errors[m.label] = str(exc)

        threads = [threading.Thread(target=open_one, args=(m,), daemon=True) for m in self.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.options.open_timeout_s)
        opened = [m for m in self.members if m.label not in errors and not any(t.is_alive() for t in threads)]
        if errors and (self.options.on_node_failure == "stop" or len(errors) == len(self.members)):
            for m in opened:
                self._close_member(m)
            raise SourceError(f"{self.name}: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.nodes = {}
        for m in self.members:
            if m.label in errors:
                m.error = errors[m.label]
                if m.node:
                    self.nodes.setdefault(m.channel(""), NodeState(m.channel(""))).error = m.error
                continue
            for ch in self._channels_of(m):
                self.nodes.setdefault(ch, NodeState(ch))
            self.offsets[m.label] = m.source.clock_offset_s()
        self.nodes = dict(sorted(self.nodes.items(), key=lambda kv: _natural(kv[0])))
        self._opened_at = time.time()
        for m in self.members:
            if m.error is None:
                m.thread = threading.Thread(target=self._pump, args=(m,), name=f"fleet-{m.label}", daemon=True)
                m.thread.start()

    def _channels_of(self, m: Member) -> list[str]:
        return [m.channel("")] if m.node else [m.channel(c) for c in m.source.capabilities().channels]

    def _close_member(self, m: Member) -> None:
        try:
            m.source.close()
        except Exception:  # noqa: BLE001 - closing the rest matters more
            pass

    def close(self) -> None:
        self._stop.set()
        for m in self.members:
            if m.thread is not None:
                m.thread.join(timeout=15)
                m.thread = None
        for m in self.members:
            if m.error is None or m.source is not None:
                self._close_member(m)

    def lock_key(self) -> str | None:
        return None

    # --- reading -------------------------------------------------------------------------------------
    def _pump(self, m: Member) -> None:
        """One member's acquisition loop: its batches, moved onto our clock, renamed to nodes."""
        remote = bool(getattr(m.source, "remote_clock", False))
        while not self._stop.is_set():
            try:
                batches = m.source.read(0.5)
                m.error = None
            except Exception as exc:  # noqa: BLE001 - a node failing must not end the fleet
                m.error, m.errors = str(exc), m.errors + 1
                self._stop.wait(RETRY_S)
                continue
            # Only a clock error the Date bounds prove is corrected (see httpclock.ClockBounds)
            off = m.source.clock.correction() if remote and getattr(m.source, "clock", None) is not None else None
            self.offsets[m.label] = m.source.clock_offset_s()
            for b in batches:
                node = m.channel(b.channel)
                samples = b.samples
                if off:
                    samples = samples.copy()
                    samples["wall_ns"] -= int(off * 1e9)
                self._queue.put(ChannelBatch(node, samples))

    def read(self, timeout: float) -> list[ChannelBatch]:
        end = time.monotonic() + timeout
        out: list[ChannelBatch] = []
        while True:
            try:
                out.append(self._queue.get(timeout=max(0.0, end - time.monotonic()) if not out else 0))
            except queue.Empty:
                break
        self._account(out)
        return out

    def _account(self, batches: list[ChannelBatch]) -> None:
        now = time.time()
        with self._lock:
            for b in batches:
                st = self.nodes.setdefault(b.channel, NodeState(b.channel))
                if len(b.samples):
                    st.last_ns = max(st.last_ns, int(b.samples["wall_ns"].max()))
                    st.samples += len(b.samples)
                    if st.out:
                        st.dropouts[-1][1] = st.last_ns / 1e9
            dead = []
            for st in self.nodes.values():
                last = st.last_ns / 1e9 if st.last_ns else self._opened_at
                if not st.out and now - last > self.options.max_dropout_s:
                    st.dropouts.append([last, None])
                if st.out:
                    dead.append(st.name)
        if dead and self.options.on_node_failure == "stop":
            raise SourceError(f"{self.name}: node(s) {', '.join(sorted(dead))} silent for more than {self.options.max_dropout_s:g} s (on_node_failure: stop)")

    # --- what it is ------------------------------------------------------------------------------------
    def identify(self) -> Identity:
        members = []
        for m in self.members:
            entry: dict[str, Any] = {"member": m.label, "node": m.node, "driver": m.source.driver, "error": m.error, "clock_offset_s": self.offsets.get(m.label)}
            if m.error is None:
                try:
                    entry["identity"] = m.source.identify().as_dict()
                except Exception as exc:  # noqa: BLE001
                    entry["identity_error"] = str(exc)
            members.append(entry)
        return Identity(driver=self.driver, model=f"fleet of {len(self.nodes)} node(s)", address=f"fleet:{self.name}",
                        extra={"nodes": sorted(self.nodes), "members": members, "max_dropout_s": self.options.max_dropout_s,
                               "on_node_failure": self.options.on_node_failure})

    def capabilities(self) -> Capabilities:
        return Capabilities(channels=tuple(self.nodes), quantities=("watts",), power_kind="average",
                            update_periods_s=(self.sample_interval_s,),
                            channel_info={n: {"node": n, "members": [m.label for m in self.members if m.node in (n, None)]} for n in self.nodes})

    def node_status(self) -> dict[str, dict[str, Any]]:
        """Each node: its newest sample's age, samples, drop-outs, error; for the live view."""
        now = time.time()
        with self._lock:
            return {n: {"age_s": (now - st.last_ns / 1e9) if st.last_ns else None, "samples": st.samples, "dropped_out": st.out,
                        "dropouts": [list(d) for d in st.dropouts], "error": st.error} for n, st in self.nodes.items()}

    def begin_phase(self, label: str) -> None:
        for m in self.members:
            if m.error is None:
                m.source.begin_phase(label)

    def end_phase(self, label: str) -> dict[str, Any] | None:
        status = self.node_status()
        out = {n: s for n, s in status.items() if s["dropouts"]}
        offsets = {k: v for k, v in self.offsets.items()}
        msg = f"{len(status)} node(s)"
        if out:
            msg += "; dropped out: " + ", ".join(
                f"{n} ({sum(((d[1] or time.time()) - d[0]) for d in s['dropouts']):.1f} s)" for n, s in sorted(out.items()))
        known = [abs(v) for v in offsets.values() if v is not None]
        if known:
            msg += f"; clock offsets up to {max(known) * 1000:.0f} ms"
        return {"source": self.name, "driver": self.driver, "nodes": status, "clock_offsets_s": offsets, "warning": bool(out), "message": msg}

    def diagnostics(self) -> dict[str, Any]:
        return {"members": {m.label: {"error": m.error, "errors": m.errors} for m in self.members}, "nodes": self.node_status()}
