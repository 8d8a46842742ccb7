"""Paths where a sample that was read could vanish uncounted, or a failure could leave the
bundle unsealed or a process behind: each provoked, each now counted or sealed."""

from __future__ import annotations

import errno
import json
import os
import threading
import time

import numpy as np
import pytest

from labconsole.instruments import powershield as ps
from labconsole.procedure.recover import recover
from labconsole.bundle.seal import verify
from labconsole.bundle.writer import BundleWriter
from labconsole.events import Event, EventBus
from labconsole.locks import recordings_lock
from labconsole.procedure.engine import RunEngine
from labconsole.procedure.plans.inference import InferencePlan
from labconsole.profile import CommandWorkload, load_profile
from labconsole.recorder import Recorder
from labconsole.samples.streams import SampleStreamWriter
from labconsole.samples.batch import empty_batch, now_ns
from labconsole.sources.base import Capabilities, Identity, Source, SourceError
from labconsole.sources.lpm01a import Lpm01aOptions, Lpm01aSource, _StreamClock
from labconsole.workload.runner import CommandRun


def wait_until(test, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the PowerShield port fails right after samples came in ------------------------------------------------


class _DyingPort:
    """Bytes for one read, then the port fails (the cable is pulled)."""

    def __init__(self, data: bytes):
        self.data = data

    @property
    def in_waiting(self) -> int:
        return len(self.data)

    def read(self, n: int = 1) -> bytes:
        if not self.data:
            raise OSError(errno.EIO, "Input/output error")
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self) -> None:
        pass


def test_lpm01a_samples_read_before_the_port_fails_are_delivered_not_dropped():
    src = Lpm01aSource("dut", Lpm01aOptions(port="/dev/null", frequency_hz=1000))
    tokens = ps.encode_ascii_tokens(np.full(7, 1e-6))
    src._port = _DyingPort(("\r\n".join(tokens) + "\r\n").encode())
    src._parser = ps.AsciiStreamParser()
    src._clock = _StreamClock(1000, now_ns())
    src._acquiring = True
    src._last_rx_mono = time.monotonic()
    (cb,) = src.read(1.0)
    assert len(cb.samples) == 7 == src.counters["samples"]  # all it parsed, handed over
    with pytest.raises(SourceError, match="Input/output error"):
        src.read(1.0)  # and the failure on the next call


# --- a driver that hands the recorder something that is not samples ------------------------------------------


class _Source(Source):
    """A minimal source: good batches, then (when told) a malformed one."""

    def __init__(self, name: str, bad=None):
        super().__init__(name, sample_interval_s=0.01)
        self.bad = bad
        self.reads = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def identify(self) -> Identity:
        return Identity(driver="test", model="test")

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def read(self, timeout: float):
        from labconsole.samples.batch import ChannelBatch

        time.sleep(0.01)
        self.reads += 1
        if self.reads == 5 and self.bad is not None:
            return [ChannelBatch("main", self._good(3)), self.bad, ChannelBatch("main", self._good(2))]
        return [ChannelBatch("main", self._good(2))]

    @staticmethod
    def _good(n: int) -> np.ndarray:
        b = empty_batch(n)
        b["wall_ns"] = time.time_ns()
        b["watts"] = 10.0
        return b


@pytest.mark.parametrize("policy", ["continue", "stop"])
@pytest.mark.parametrize("bad", ["dtype", "channel"])
def test_a_malformed_batch_is_counted_lost_and_the_source_reported(tmp_path, policy, bad):
    from labconsole.samples.batch import ChannelBatch

    batch = ChannelBatch("main", np.zeros(4)) if bad == "dtype" else ChannelBatch("a,b\n", _Source._good(4))
    bus = EventBus()
    events: list[Event] = []
    bus.add_sink(events.append)
    good, broken = _Source("good"), _Source("broken", bad=batch)
    rec = Recorder([(good, "stop"), (broken, policy)], bus, fsync=False, between_folder=tmp_path / "between")
    rec.start()
    try:
        wait_until(lambda: rec.states["broken"].failed is not None)
        n = good.reads
        wait_until(lambda: good.reads > n + 3)  # the other source goes on
    finally:
        rec.stop()
    c = rec.counts()["broken"]
    assert c["lost"] == 4 + 2 and c["read"] == c["written"] + c["lost"]  # the bad batch and the one after it
    assert "internal error" in c["failed"] and c["gaps"] == 1
    assert any(e.kind == "error" and "internal error" in e.message for e in events)
    assert (rec.fatal is not None) == (policy == "stop")
    g = rec.counts()["good"]
    assert g["read"] == g["written"] and g["lost"] == 0


# --- the disk refuses what is left at the end ------------------------------------------------------------------


def test_samples_the_disk_refuses_at_close_are_counted_lost(tmp_path, monkeypatch):
    bus = EventBus()
    events: list[Event] = []
    bus.add_sink(events.append)
    src = _Source("wall")
    rec = Recorder([(src, "stop")], bus, fsync=False, between_folder=tmp_path / "between")
    rec.start()
    wait_until(lambda: rec.states["wall"].read_samples > 10)

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SampleStreamWriter, "flush", full)
    wait_until(lambda: rec.fatal is not None, timeout=10)
    rec.stop()
    c = rec.counts()["wall"]
    assert c["lost"] > 0 and c["read"] == c["written"] + c["lost"]
    assert "No space left on device" in rec.fatal
    assert any("read but not written" in e.message and e.data.get("lost") == c["lost"] for e in events)


# --- a disk slower than the sources ---------------------------------------------------------------------------


def test_a_disk_that_cannot_keep_up_stops_the_run_before_memory_runs_out_and_loses_nothing(tmp_path, monkeypatch):
    from labconsole.samples.batch import SAMPLE_DTYPE

    bus = EventBus()
    events: list[Event] = []
    bus.add_sink(events.append)
    write_all = SampleStreamWriter._write_all

    def slow_disk(self, parts):
        time.sleep(1.5)  # each flush takes longer than the flush interval
        return write_all(self, parts)

    monkeypatch.setattr(SampleStreamWriter, "_write_all", slow_disk)
    src = _Source("wall")  # ~200 samples/s
    rec = Recorder([(src, "stop")], bus, fsync=False, between_folder=tmp_path / "between", max_pending_bytes=300 * SAMPLE_DTYPE.itemsize)
    rec.start()
    try:
        wait_until(lambda: rec.fatal is not None, timeout=30)
    finally:
        rec.stop()
    assert rec.fatal.startswith("the disk cannot keep up with wall: ") and "wait in memory for " in rec.fatal and "samples-wall" in rec.fatal
    assert any(e.kind == "error" and e.data.get("pending", 0) > 300 for e in events)
    c = rec.counts()["wall"]
    assert c["read"] == c["written"] > 300 and c["lost"] == 0  # stopping flushed everything that waited


# --- the run cannot write run.json at the end -------------------------------------------------------------------

PROFILE = """
name: late-disk
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.05
workload:
  type: loadgen
  scenario: Server
  sut: sleep
  sut_options: {{latency_ms: 1, concurrency: 4}}
  target_qps: 100
  duration_s: 1
procedure:
  idle_s: 0
  ranging: false
"""


def test_a_disk_that_fills_at_the_end_still_leaves_a_recoverable_bundle_and_a_free_folder(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(rec=tmp_path / "rec"))
    real = BundleWriter.update_run
    full = threading.Event()

    def update_run(self, **fields):
        if "acquisition" in fields:
            full.set()  # from the shutdown on, the disk refuses run.json
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, **fields)

    monkeypatch.setattr(BundleWriter, "update_run", update_run)
    proc = RunEngine(load_profile(path), InferencePlan())
    errors: list[str] = []
    proc.bus.add_sink(lambda e: errors.append(e.message) if e.kind == "error" else None)
    out = proc.run()  # returns: no exception escapes
    assert out.exit_status == "failed" and "No space left on device" in out.reason
    assert any("could not seal the bundle" in m and "labconsole recover" in m for m in errors), errors
    with recordings_lock(tmp_path / "rec"):  # released although the end failed
        pass
    monkeypatch.setattr(BundleWriter, "update_run", real)  # space again
    recover(out.bundle)
    assert verify(out.bundle).ok
    assert json.loads((out.bundle / "data" / "run.json").read_text())["exit_status"] == "recovered"


def test_a_timeline_the_disk_refuses_does_not_stop_whoever_emitted(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(rec=tmp_path / "rec"))
    proc = RunEngine(load_profile(path), InferencePlan())

    class Bundle:
        def events_sink(self, event):
            raise OSError(errno.ENOSPC, "No space left on device")

    proc.bundle = Bundle()
    proc._timeline_sink(Event("warning", "x"))  # no exception for the emitter
    proc._timeline_sink(Event("error", "y"))
    assert proc._events_not_written == 2


# --- a harness that cannot start ---------------------------------------------------------------------------------


def test_a_command_that_cannot_start_fails_clearly_and_leaks_nothing(tmp_path):
    wl = CommandWorkload(type="command", command=[str(tmp_path / "no-such-harness"), "--x"], loadgen_logs="logs", duration_s=1)
    fds = set(os.listdir("/proc/self/fd"))
    runner = CommandRun(wl, tmp_path / "testing")
    result = runner.run()
    assert result.status == "failed" and "cannot start" in result.reason and "no-such-harness" in result.reason
    assert set(os.listdir("/proc/self/fd")) <= fds  # the progress file and the log were closed
    assert runner.proc is None


# --- a write the disk refuses part-way ----------------------------------------------------------------------------


def test_a_write_refused_part_way_leaves_no_half_rows_and_no_repeats(tmp_path, monkeypatch):
    from labconsole.samples.streams import read_sample_stream

    path = tmp_path / "samples-wall.csv"
    w = SampleStreamWriter(path, fsync=False)
    first = _Source._good(3)
    w.append("main", first)
    assert w.flush() == 3
    size = path.stat().st_size
    real = w._fh
    calls = {"n": 0}

    class HalfThenFull:
        """The disk takes half of the first write, then nothing (ENOSPC)."""

        def write(self, data):
            calls["n"] += 1
            if calls["n"] == 1:
                return real.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return real.fileno()

    w.append("main", _Source._good(5))
    w._fh = HalfThenFull()
    with pytest.raises(OSError):
        w.flush()
    assert path.stat().st_size == size and w.pending == 5 and w.written == 3  # cut back, kept pending
    w._fh = real  # space again
    assert w.flush() == 5
    w.close()
    frame = read_sample_stream(path).frame
    assert len(frame) == 8 == w.written == w.appended  # each row once
