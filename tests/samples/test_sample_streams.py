"""The two sample-stream formats (CSV for ordinary rates, binary blocks for high rates) and their
one reader: same frame, exact values, torn tails dropped and reported, damage named."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from labconsole.mlperf.metrics import masked_sequential_sum, sequential_sum
from labconsole.events import EventBus
from labconsole.recorder import Recorder
from labconsole.samples.streams import (
    CSV_COLUMNS,
    BinarySampleStreamWriter,
    StreamFormatError,
    find_sample_streams,
    format_csv,
    open_sample_stream,
    read_sample_stream,
    stream_format_for,
    stream_path,
)
from labconsole.samples.batch import ChannelBatch, empty_batch
from labconsole.sources.base import Capabilities, Identity, Source


def batch(start: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + start)
    b = empty_batch(n)
    b["wall_ns"] = 1_700_000_000_000_000_000 + np.arange(start, start + n) * 10_000
    b["mono_ns"] = np.arange(start, start + n) * 10_000
    b["watts"] = rng.random(n) * 300
    b["volts"] = 230.0
    b["amps"] = b["watts"] / 230.0
    b["range_a"] = 5.0
    return b


def write(path, flushes, fsync=False):
    w = open_sample_stream(path, fsync=fsync)
    for chunks in flushes:
        for channel, b in chunks:
            w.append(channel, b)
        w.flush()
    w.close()
    return w


def by_channel(frame, channel):
    return frame[frame["channel"] == channel].reset_index(drop=True)


def test_both_formats_read_back_the_same_frame_exactly(tmp_path):
    special = batch(0, 5)
    special["watts"][:5] = [-0.0, 1e-300, 1.7976931348623157e308, 0.1 + 0.2, np.nan]
    special["status"][4] = 2
    special["energy_j"][2] = 123.456
    flushes = [
        [("main", batch(0, 1000)), ("gpu1", batch(0, 10, seed=9)), ("main", batch(1000, 1))],
        [("main", special), ("gpu1", batch(10, 3, seed=9))],
    ]
    frames = {}
    for fmt in ("csv", "binary"):
        path = stream_path(tmp_path, "meter", fmt)
        write(path, flushes)
        res = read_sample_stream(path)
        assert not res.torn_tail
        frames[fmt] = res.frame
        assert list(res.frame.columns) == list(CSV_COLUMNS)
    csv, bin_ = frames["csv"], frames["binary"]
    assert len(csv) == len(bin_) == 1019
    for col in CSV_COLUMNS:
        assert csv[col].dtype.kind == bin_[col].dtype.kind or col == "channel", col
    for channel in ("main", "gpu1"):
        a, b = by_channel(csv, channel), by_channel(bin_, channel)
        for col in CSV_COLUMNS:
            if col == "channel":
                assert (a[col].astype(str) == b[col].astype(str)).all()
                continue
            va, vb = a[col].to_numpy(), b[col].to_numpy()
            if va.dtype.kind == "f":  # bit for bit: NaN, -0.0 and the last digit included
                assert (va.view(np.int64) == vb.view(np.int64)).all(), (channel, col)
            else:
                assert (va == vb).all(), (channel, col)
    # the binary stream keeps each channel's own order, and the frame types match the CSV's
    assert str(bin_["channel"].dtype) == "category" and str(csv["channel"].dtype) == "category"
    assert bin_["status"].dtype == np.int64 and bin_["wall_ns"].dtype == np.int64


def test_binary_stores_unchanging_columns_once(tmp_path):
    path = stream_path(tmp_path, "ppk2", "binary")
    b = batch(0, 100_000)
    b["volts"] = 3.3
    b["amps"] = b["watts"] / 3.3
    write(path, [[("main", b)]])
    # wall, mono, watts, amps vary (32 bytes a sample); NaNs, ranges and status are stored once
    assert 32 * 100_000 < path.stat().st_size < 32 * 100_000 + 1024
    frame = read_sample_stream(path).frame
    assert (frame["volts"] == 3.3).all() and frame["pf"].isna().all() and (frame["range_a"] == 5.0).all()


def _three_flushes(tmp_path):
    path = stream_path(tmp_path, "s", "binary")
    write(path, [[("main", batch(0, 100))], [("main", batch(100, 100))], [("main", batch(200, 100)), ("aux", batch(0, 7))]])
    return path


@pytest.mark.parametrize("cut_from_end", [1, 8, 9, 500, 2000])
def test_torn_last_block_is_dropped_and_reported(tmp_path, cut_from_end):
    path = _three_flushes(tmp_path)
    size = path.stat().st_size
    os.truncate(path, size - cut_from_end)
    res = read_sample_stream(path)
    assert res.torn_tail
    # the last flush had two blocks (main 100, aux 7): a cut takes the block it lands in
    assert len(res.frame) in (300, 200)
    assert list(res.frame["mono_ns"][:200]) == list(batch(0, 200)["mono_ns"])


def test_zeros_after_the_last_block_are_a_torn_tail(tmp_path):
    path = _three_flushes(tmp_path)
    with open(path, "ab") as fh:
        fh.write(bytes(4096))  # what a disk shows where the data of a crashed write never arrived
    res = read_sample_stream(path)
    assert res.torn_tail and len(res.frame) == 307


def test_a_damaged_last_flush_is_dropped_by_its_crc(tmp_path):
    path = _three_flushes(tmp_path)
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the last flush's payload
    path.write_bytes(bytes(data))
    res = read_sample_stream(path)
    assert res.torn_tail
    assert len(res.frame) >= 200 and len(res.frame) < 307


def test_damage_in_the_middle_is_an_error_naming_the_byte(tmp_path):
    path = _three_flushes(tmp_path)
    data = bytearray(path.read_bytes())
    first_block = data.index(b"LCSB")
    data[first_block] = ord("X")
    path.write_bytes(bytes(data))
    with pytest.raises(StreamFormatError, match=rf"s\.bin: byte {first_block}: no block marker in the middle"):
        read_sample_stream(path)


def test_verify_all_checks_every_block(tmp_path):
    path = _three_flushes(tmp_path)
    data = bytearray(path.read_bytes())
    second_block = data.index(b"LCSB", data.index(b"LCSB") + 4)
    data[second_block - 100] ^= 0x01  # a value in the first flush's block
    path.write_bytes(bytes(data))
    assert len(read_sample_stream(path).frame) == 307  # "tail" checks only what a crash can tear
    with pytest.raises(StreamFormatError, match="CRC mismatch"):
        read_sample_stream(path, verify="all")


def test_a_new_writer_appends_to_an_existing_stream(tmp_path):
    path = stream_path(tmp_path, "s", "binary")
    write(path, [[("main", batch(0, 10))]])
    write(path, [[("main", batch(10, 10))]])
    assert list(read_sample_stream(path).frame["mono_ns"]) == list(batch(0, 20)["mono_ns"])
    other = tmp_path / "samples-x.bin"
    other.write_text("wall_ns,mono_ns\n")
    with pytest.raises(StreamFormatError, match="not a binary sample stream"):
        BinarySampleStreamWriter(other)


def test_a_stream_torn_while_created_holds_nothing(tmp_path):
    for k, content in enumerate((b"", b"\x89LC", b"\x89LCS\r\n\x1a\n\x01\x00")):
        path = tmp_path / f"samples-s{k}.bin"
        path.write_bytes(content)
        res = read_sample_stream(path)
        assert res.torn_tail and len(res.frame) == 0 and list(res.frame.columns) == list(CSV_COLUMNS)


def test_appending_after_a_crash_cuts_the_torn_end_and_keeps_counting_flushes(tmp_path):
    path = stream_path(tmp_path, "between", "binary")
    write(path, [[("main", batch(0, 100))], [("main", batch(100, 100))]])
    os.truncate(path, path.stat().st_size - 50)  # the crash tore the second flush
    write(path, [[("main", batch(200, 100))]])  # the next writer (the next gap between phases)
    res = read_sample_stream(path, verify="all")
    assert not res.torn_tail
    assert list(res.frame["mono_ns"]) == list(batch(0, 100)["mono_ns"]) + list(batch(200, 100)["mono_ns"])
    # flush numbers went on (1, then 2): damage in the first writer's block is not "the last flush"
    data = bytearray(path.read_bytes())
    data[data.index(b"LCSB") + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    assert len(read_sample_stream(path).frame) == 200  # the default check does not drop good blocks
    with pytest.raises(StreamFormatError, match="CRC mismatch"):
        read_sample_stream(path, verify="all")


def test_appending_to_a_csv_stream_after_a_crash_cuts_the_half_line(tmp_path):
    path = stream_path(tmp_path, "between", "csv")
    write(path, [[("main", batch(0, 10))]])
    with open(path, "ab") as fh:
        fh.write(b"1700000000000100000,100000,main,0.5")  # a crash in the middle of a line
    write(path, [[("main", batch(10, 10))]])
    res = read_sample_stream(path)
    assert not res.torn_tail
    assert list(res.frame["mono_ns"]) == list(batch(0, 20)["mono_ns"])


class HalfThenFail:
    """A file that takes part of a write, then reports a full disk (and can be healed)."""

    def __init__(self, real):
        self.real = real
        self.broken = True

    def write(self, data):
        if self.broken:
            self.real.write(bytes(memoryview(data)[: max(1, len(data) // 2)]))
            self.broken = False
            raise OSError(28, "No space left on device")
        return self.real.write(data)

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


@pytest.mark.parametrize("fmt", ["csv", "binary"])
def test_a_failed_flush_leaves_no_half_write_and_loses_nothing(tmp_path, fmt):
    path = stream_path(tmp_path, "s", fmt)
    w = open_sample_stream(path, fsync=False)
    w.append("main", batch(0, 50))
    w.flush()
    size = path.stat().st_size
    w._fh = HalfThenFail(w._fh)
    w.append("main", batch(50, 50))
    with pytest.raises(OSError):
        w.flush()
    assert path.stat().st_size == size  # cut back to the last complete flush
    assert w.pending == 50
    assert w.flush() == 50  # the disk has room again
    w.close()
    frame = read_sample_stream(path).frame
    assert list(frame["mono_ns"]) == list(batch(0, 100)["mono_ns"])  # no gap, no repeat


@pytest.mark.parametrize("fmt", ["csv", "binary"])
def test_reading_only_some_columns(tmp_path, fmt):
    path = stream_path(tmp_path, "s", fmt)
    write(path, [[("main", batch(0, 100))], [("main", batch(100, 100))]])
    res = read_sample_stream(path, columns=("watts", "wall_ns", "status", "pf"), constant_views=True)
    assert list(res.frame.columns) == ["wall_ns", "watts", "pf", "status"]
    assert res.frame["pf"].isna().all() and (res.frame["status"] == 0).all()
    if fmt == "binary":  # unchanging columns are views of one value: no memory, and read-only
        assert not res.frame["status"].to_numpy().flags.writeable
    with pytest.raises(ValueError, match="unknown sample columns"):
        read_sample_stream(path, columns=("nope",))


def test_format_by_rate():
    assert stream_format_for(0.1) == "csv"
    assert stream_format_for(0.001) == "csv"  # 1 kHz is still an ordinary rate
    assert stream_format_for(0.0005) == "binary"
    assert stream_format_for(1e-5, "csv") == "csv"
    assert stream_format_for(1.0, "binary") == "binary"
    with pytest.raises(ValueError):
        stream_format_for(1.0, "parquet")


def test_csv_text_is_shortest_round_trip_with_empty_unknowns():
    b = empty_batch(2)
    b["wall_ns"] = [1, 2]
    b["watts"] = [0.1 + 0.2, -0.0]
    b["range_v"] = 300.0
    b["status"] = [0, 4]
    assert format_csv("main", b) == "1,0,main,0.30000000000000004,,,,,,300.0,,0\n2,0,main,-0.0,,,,,,300.0,,4\n"


def test_masked_sequential_sum_is_the_checkers_left_to_right_sum():
    rng = np.random.default_rng(3)
    values = rng.random(200_003) * 1e3
    mask = rng.random(len(values)) > 0.3
    mask[:40_000] = True  # whole chunks selected, and partial ones
    expected = 0.0
    for x in values[mask].tolist():
        expected += x
    total, n = masked_sequential_sum(values, mask)
    assert n == int(mask.sum())
    assert total == expected == sequential_sum(values[mask])


class FastSource(Source):
    """A 100 kHz source in 1000-sample packets (no I/O), to see which stream the recorder opens."""

    driver = "test-fast"

    def __init__(self, name, interval):
        super().__init__(name, None, interval)
        self.seq = 0
        self._stop = threading.Event()

    def open(self):
        self._stop.clear()

    def close(self):
        self._stop.set()

    def identify(self):
        return Identity(driver=self.driver, model="fast")

    def capabilities(self):
        return Capabilities(channels=("main",))

    def read(self, timeout):
        if self._stop.wait(0.01):
            return []
        b = batch(self.seq, 1000)
        self.seq += 1000
        return [ChannelBatch("main", b)]


def test_recorder_streams_fast_sources_in_binary_and_slow_ones_in_csv(tmp_path):
    fast, slow, forced = FastSource("ppk2", 1e-5), FastSource("wall", 0.1), FastSource("nvml", 1e-5)
    for s in (fast, slow, forced):
        s.open()
    rec = Recorder([(fast, "stop"), (slow, "stop"), (forced, "stop")], EventBus(), fsync=False, stream_formats={"nvml": "csv"})
    rec.begin_segment("testing", tmp_path / "testing")
    rec.start()
    time.sleep(0.3)
    for s in (fast, slow, forced):
        s.close()
    rec.stop()
    found = {name: path.name for name, path in find_sample_streams(tmp_path / "testing")}
    assert found == {"ppk2": "samples-ppk2.bin", "wall": "samples-wall.csv", "nvml": "samples-nvml.csv"}
    frame = read_sample_stream(tmp_path / "testing" / "samples-ppk2.bin").frame
    assert len(frame) == rec.states["ppk2"].read_samples > 0
    assert list(frame["mono_ns"]) == list(batch(0, len(frame))["mono_ns"])


def test_report_is_the_same_from_either_format(tmp_path):
    from mlperf_fakes import write_detail_log

    from labconsole.mlperf.metrics import compute_report
    from labconsole.bundle.reader import open_run

    reports = []
    for fmt in ("csv", "binary"):
        root = tmp_path / fmt
        data = root / "data"
        (data / "testing").mkdir(parents=True)
        (data / "run.json").write_text('{"primary_source": "meter", "exit_status": "completed"}')
        b = batch(0, 5000)
        b["status"][200] = 1  # an over-range reading inside the window: counted, not averaged
        write(stream_path(data / "testing", "meter", fmt), [[("main", b[:2500])], [("main", b[2500:]), ("aux", batch(150, 20, seed=4))]])
        write_detail_log(data / "testing" / "loadgen", "Offline", int(b["wall_ns"][100]), int(b["wall_ns"][4900]), extra={"result_samples_per_second": 10.0})
        for kw in ({}, {"columns": ("wall_ns", "channel", "watts", "status", "uncertainty_w", "energy_j"), "read_only": True}):
            rep = compute_report(open_run(root, **kw))
            rep.pop("path")
            reports.append(rep)
    # main: samples 101..4899 inside the strict window, one of them invalid; aux: 20 inside
    assert reports[0]["power"]["samples_in_window"] == 4798 + 20
    assert reports[0]["power"]["invalid_in_window"] == 1
    assert set(reports[0]["power"]["channels"]) == {"main", "aux"}
    assert all(r == reports[0] for r in reports[1:])


def test_segment_stats_are_those_of_the_valid_known_values():
    from labconsole.recorder import SegmentStats

    rng = np.random.default_rng(5)
    batches = []
    for k in range(20):
        b = batch(k * 500, 500, seed=k)
        b["volts"] = 229 + rng.random(500)
        if k % 3 == 0:
            b["status"][rng.integers(0, 500, 20)] = 1
        if k % 4 == 1:
            b["watts"][rng.integers(0, 500, 7)] = np.nan
            b["volts"][rng.integers(0, 500, 7)] = np.nan
        if k == 7:
            b["amps"] = np.nan
        batches.append(b)
    st = SegmentStats()
    for b in batches:
        st.add(b)
    allb = np.concatenate(batches)
    valid = allb[allb["status"] == 0]
    w = valid["watts"][~np.isnan(valid["watts"])]
    assert st.samples == len(allb) and st.invalid == len(allb) - len(valid)
    assert st.max_w == w.max() and st.min_w == w.min()
    assert st.max_v == np.nanmax(valid["volts"]) and st.max_a == np.nanmax(valid["amps"])
    assert abs(st.sum_w - w.sum()) < 1e-9 * w.sum()
    assert st.first_wall_ns == allb["wall_ns"][0] and st.last_wall_ns == allb["wall_ns"][-1]
