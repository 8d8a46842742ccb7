"""Ring buffers and the crash-safe sample stream."""

from __future__ import annotations

import numpy as np
import pytest

from labconsole.samples.streams import CSV_HEADER, SampleStreamWriter, StreamFormatError, read_sample_stream
from labconsole.samples.ring import ChannelRing
from labconsole.samples.batch import empty_batch


def batch(start, n):
    b = empty_batch(n)
    b["wall_ns"] = np.arange(start, start + n)
    b["watts"] = np.arange(start, start + n) * 0.1
    return b


def test_ring_keeps_the_newest_in_order():
    ring = ChannelRing(capacity=10)
    ring.append(batch(0, 7))
    ring.append(batch(7, 7))
    snap = ring.snapshot()
    assert list(snap["wall_ns"]) == list(range(4, 14))
    assert ring.total == 14
    ring.append(batch(100, 25))
    assert list(ring.snapshot()["wall_ns"]) == list(range(115, 125))
    assert list(ring.snapshot(last_n=3)["wall_ns"]) == [122, 123, 124]
    assert list(ring.snapshot(since_wall_ns=120)["wall_ns"]) == [120, 121, 122, 123, 124]


def test_ring_snapshot_and_tail_on_a_wrapped_ring_agree_with_a_plain_list():
    ring, seen = ChannelRing(capacity=10), []
    for start, n in ((0, 3), (3, 4), (7, 6), (13, 1), (14, 9)):  # wraps at several offsets
        ring.append(batch(start, n))
        seen.extend(range(start, start + n))
        kept = seen[-10:]
        assert list(ring.snapshot()["wall_ns"]) == kept
        for since in (-1, kept[0], kept[len(kept) // 2], kept[-1], kept[-1] + 1):
            for last_n in (None, 0, 1, 4, 100):
                want = [t for t in kept if t >= since]
                want = want if last_n is None else want[len(want) - min(last_n, len(want)):]
                assert list(ring.snapshot(since_wall_ns=since, last_n=last_n)["wall_ns"]) == want, (start, since, last_n)
        got, total = ring.tail(4)
        assert list(got["wall_ns"]) == kept[-4:] and total == len(seen)


def test_stream_round_trip_is_exact(tmp_path):
    p = tmp_path / "s.csv"
    w = SampleStreamWriter(p, fsync=False)
    b = batch(1_700_000_000_000_000_000, 1000)
    b["watts"] = np.random.default_rng(1).random(1000) * 300
    b["volts"][::2] = 230.123456789
    b["status"][5] = 2
    w.append("main", b)
    w.append("gpu1", b[:10])
    w.close()
    frame = read_sample_stream(p).frame
    assert len(frame) == 1010
    assert (frame["watts"].to_numpy()[:1000] == b["watts"]).all()  # bit-exact
    assert np.isnan(frame["volts"].to_numpy()[1])
    assert frame["status"].to_numpy()[5] == 2
    assert list(frame["channel"].unique()) == ["main", "gpu1"]


def test_torn_tail_is_dropped_and_reported(tmp_path):
    p = tmp_path / "s.csv"
    w = SampleStreamWriter(p, fsync=False)
    w.append("main", batch(0, 5))
    w.close()
    with open(p, "a") as fh:
        fh.write("123,45,main,1.5")  # a crash mid-line
    res = read_sample_stream(p)
    assert res.torn_tail
    assert len(res.frame) == 5


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(CSV_HEADER + "1,2,main,3,,,,,,,,0\n" + "1,2,main,garbage,,,,,,,,0\n")
    with pytest.raises(StreamFormatError, match=r"s\.csv:3: malformed"):
        read_sample_stream(p)


def test_wrong_header(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(StreamFormatError, match=r"s\.csv:1: unexpected header"):
        read_sample_stream(p)


def test_flush_error_keeps_pending_samples(tmp_path):
    p = tmp_path / "s.csv"
    w = SampleStreamWriter(p, fsync=False)
    w.append("main", batch(0, 5))

    class Broken:
        def write(self, _):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    real = w._fh
    w._fh = Broken()
    with pytest.raises(OSError):
        w.flush()
    assert w.pending == 5  # nothing silently dropped
    w._fh = real
    assert w.flush() == 5
    w.close()
    assert len(read_sample_stream(p).frame) == 5


def test_now_ns_pair_survives_a_thread_switch_between_its_clock_reads(monkeypatch):
    """A switch to another thread right after the wall clock is read (Python may switch between
    any two calls) must not skew the pair: every block a driver dates with it would move by as
    long as the other thread ran, leaving a hole at the block's edge."""
    import time as real_time

    from labconsole.samples import batch

    offset = real_time.time_ns() - real_time.monotonic_ns()  # wall - monotonic, as the clocks stand
    switched = []

    class SwitchAfterWallRead:
        monotonic_ns = staticmethod(real_time.monotonic_ns)

        @staticmethod
        def time_ns() -> int:
            wall = real_time.time_ns()
            if not switched:  # the first read only: another thread then runs for 5 ms
                switched.append(wall)
                real_time.sleep(0.005)
            return wall

    monkeypatch.setattr(batch, "time", SwitchAfterWallRead)
    wall, mono = batch.now_ns()
    assert switched, "the pair was not read through the clocks given"
    assert abs((wall - mono) - offset) < 1_000_000, (wall - mono - offset) / 1e6  # within 1 ms, not 5
