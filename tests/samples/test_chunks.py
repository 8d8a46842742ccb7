"""Reading a stream chunk by chunk gives the rows a whole read gives, and the reductions fed in
chunks give the bits a whole-array pass gives, wherever the chunks are cut (one sample, empty
pieces, a window edge inside a piece)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labconsole.samples import reduce as rd
from labconsole.samples import streams
from labconsole.samples.batch import NO_DATA, empty_batch
from labconsole.samples.streams import (
    CSV_COLUMNS,
    BinarySampleStreamWriter,
    SampleStreamWriter,
    StreamFormatError,
    index_sample_stream,
    iter_sample_chunks,
    read_sample_stream,
)
from labconsole.samples.table import StreamTable, sample_chunks, sample_groups


def _batch(start: int, n: int, rng) -> np.ndarray:
    b = empty_batch(n)
    b["wall_ns"] = 1_700_000_000_000_000_000 + (start + np.arange(n)) * 1000
    b["mono_ns"] = (start + np.arange(n)) * 1000
    b["watts"] = rng.random(n) * 50
    b["volts"] = 230.0  # constant: stored once per block
    if start % 3 == 0:
        b["status"][rng.random(n) < 0.1] = NO_DATA
        b["uncertainty_w"] = rng.random(n)
    return b


def write_stream(path, flushes=5, per=(1, 37, 0, 400, 3), channels=("main",), seed=1):
    rng = np.random.default_rng(seed)
    w = (BinarySampleStreamWriter if path.suffix == ".bin" else SampleStreamWriter)(path, fsync=False)
    at = 0
    for f in range(flushes):
        for ch in channels:
            n = per[f % len(per)]
            if n:
                w.append(ch, _batch(at, n, rng))
            at += n
        w.flush()
    w.close()


def _joined(index, columns=None, rows=streams.CHUNK_ROWS):
    parts = list(iter_sample_chunks(index, columns, rows))
    cols = {}
    for c in CSV_COLUMNS if columns is None else columns:
        if c == "channel":
            cols[c] = [index.channels[int(k)] for p in parts for k in p[1]]
        else:
            cols[c] = np.concatenate([np.asarray(p[0][c]) for p in parts]) if parts else np.empty(0)
    return parts, cols


@pytest.mark.parametrize("suffix", [".bin", ".csv"])
@pytest.mark.parametrize("rows", [1, 2, 7, 400, 1 << 20])
def test_chunks_are_the_whole_read_cut_into_pieces(tmp_path, suffix, rows, monkeypatch):
    monkeypatch.setattr(streams, "CSV_PIECE_BYTES", 700)  # CSV pieces of a few lines
    path = tmp_path / f"samples-m{suffix}"
    write_stream(path, channels=("a", "b"))
    whole = read_sample_stream(path).frame
    ix = index_sample_stream(path)
    assert ix.rows == len(whole) and not ix.torn
    assert ix.channels == list(dict.fromkeys(whole["channel"].astype(str)))
    parts, cols = _joined(ix, rows=rows)
    if suffix == ".bin":
        assert all(len(p[1]) <= rows for p in parts)
    for c in CSV_COLUMNS:
        if c == "channel":
            assert cols[c] == whole[c].astype(str).tolist()
        else:  # bit for bit (NaN where NaN)
            assert np.array_equal(np.asarray(cols[c]).view(np.int64) if cols[c].dtype.kind == "f" else cols[c], whole[c].to_numpy().view(np.int64) if whole[c].dtype.kind == "f" else whole[c].to_numpy()), c


def test_constant_columns_come_as_read_only_views(tmp_path):
    path = tmp_path / "samples-m.bin"
    write_stream(path, flushes=2, per=(50, 50))
    (arrays, codes), = list(iter_sample_chunks(index_sample_stream(path), ("volts", "watts", "channel")))
    assert arrays["volts"].strides == (0,) and not arrays["volts"].flags.writeable
    assert arrays["watts"].strides != (0,)


def test_torn_tail_and_damage_are_found_when_indexing(tmp_path):
    path = tmp_path / "samples-m.bin"
    write_stream(path)
    n = index_sample_stream(path).rows
    with open(path, "ab") as fh:
        fh.write(streams.BLOCK_MAGIC + b"\x05\x00")  # a crash mid-block
    ix = index_sample_stream(path)
    assert ix.torn and ix.rows == n == len(read_sample_stream(path).frame)
    csv = tmp_path / "samples-c.csv"
    write_stream(csv)
    text = csv.read_text().splitlines()
    text[5] = text[5].replace(",", ";", 1)
    csv.write_text("\n".join(text) + "\n")
    with pytest.raises(StreamFormatError) as whole:
        read_sample_stream(csv)
    with pytest.raises(StreamFormatError) as piece:
        index_sample_stream(csv)
    assert ":6:" in str(whole.value) and ":6:" in str(piece.value)


def test_a_table_yields_each_source_and_channel_with_the_phase_categories(tmp_path):
    write_stream(tmp_path / "samples-x.bin", channels=("a", "b"))
    write_stream(tmp_path / "samples-y.csv", channels=("c",), seed=2)
    empty = tmp_path / "samples-z.bin"
    BinarySampleStreamWriter(empty, fsync=False).close()  # a stream with no samples
    table = StreamTable.of([(p.name[8:-4], index_sample_stream(p)) for p in sorted(tmp_path.glob("samples-*"))], chunk_rows=7)
    assert table.sources == ["x", "y", "z"] and table.channels == ["a", "b", "c"]
    frames = list(sample_chunks(table))
    assert all(len(f) <= 7 for f in frames if table.sources[f["source"][0]] == "x")
    assert all(f.categories["channel"] == table.channels for f in frames)  # one code means one channel in every chunk
    joined = pd.concat([pd.DataFrame({c: (np.asarray(f.categories[c])[f[c]] if c in f.categories else f[c]) for c in f.columns}) for f in frames], ignore_index=True)
    assert len(joined) == len(table)
    groups = sample_groups(table, ("wall_ns",))
    assert [k for k, _ in groups] == [("x", "a"), ("x", "b"), ("y", "c")]
    for (src, ch), chunks in groups:
        got = np.concatenate([c["wall_ns"] for c in chunks()])
        want = joined[(joined["source"] == src) & (joined["channel"] == ch)]["wall_ns"].to_numpy()
        assert np.array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# reductions


def _pieces(values, cuts):
    edges = [0, *sorted(cuts), len(values)]
    return [values[a:b] for a, b in zip(edges, edges[1:])]


def _left_to_right(values) -> float:
    total = 0.0
    for v in values:  # Python's own float adds, one by one (3.12's sum() compensates: not used)
        total += float(v)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_sequential_sum_in_pieces_is_the_sum_in_order(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=int(rng.integers(1, 100_000))) * 10.0 ** rng.integers(-3, 9)
    mask = rng.random(len(x)) < 0.7
    cuts = list(rng.integers(0, len(x), 12)) + [0, 0, len(x)]  # empty pieces too
    acc, macc = rd.SequentialSum(), rd.SequentialSum()
    for piece, m in zip(_pieces(x, cuts), _pieces(mask, cuts)):
        acc.add(piece)
        macc.add(piece, m)
    assert acc.total == _left_to_right(x) and acc.count == len(x)
    assert macc.total == _left_to_right(x[mask]) and macc.count == int(mask.sum())


def test_sequential_sum_of_one_value_and_of_none():
    acc = rd.SequentialSum()
    acc.add(np.array([]))
    assert acc.count == 0 and acc.total == 0.0
    acc.add(np.array([2.5]), np.array([True]))
    assert acc.total == 2.5 and acc.mean() == 2.5


@pytest.mark.parametrize(("gather", "distinct"), [(0, 0), (0, 1 << 30), (1 << 30, 0)])  # radix selection, counting distinct values, gathering
@pytest.mark.parametrize("seed", range(8))
def test_median_and_percentile_are_numpys_exactly(seed, gather, distinct):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    x = rng.normal(size=n) * 10.0 ** rng.integers(-6, 9)
    if seed % 2:
        x = np.round(x, 1)  # many equal values
    if seed == 3:
        x[::7] = -x[::7]
    cuts = list(rng.integers(0, n, 9))
    stream = lambda: iter(_pieces(x, cuts))  # noqa: E731
    med, p99 = rd.median_and_percentile(stream, n, 99, gather_limit=gather, distinct_limit=distinct)
    assert med == float(np.median(x)) and p99 == float(np.percentile(x, 99))
    for q in (0, 12.5, 50, 100):
        assert rd.percentile_of(stream, n, q, gather_limit=gather, distinct_limit=distinct) == float(np.percentile(x, q))


def test_a_fixed_period_is_counted_in_one_pass_and_many_distinct_values_fall_back():
    rng = np.random.default_rng(7)
    t = (1.7e9 + np.cumsum(np.full(300_000, 1e-5) + rng.normal(0, 1e-9, 300_000).round(9))).astype(np.float64)
    dt = np.diff(t)  # float64 intervals of a 100 kHz clock: a handful of distinct values
    calls = []

    def stream():
        calls.append(1)
        return iter(_pieces(dt, [50_000, 120_000, 250_000]))

    med, p99 = rd.median_and_percentile(stream, len(dt), 99, gather_limit=0)
    assert (med, p99) == (float(np.median(dt)), float(np.percentile(dt, 99)))
    assert len(np.unique(dt)) <= rd.DISTINCT_LIMIT and len(calls) == 1  # one pass, not four
    calls.clear()
    noise = rng.normal(size=20_000)  # all distinct: the counting pass gives up, the radix passes select
    med, p99 = rd.median_and_percentile(lambda: (calls.append(1), iter(_pieces(noise, [7000])))[1], len(noise), 99, gather_limit=0)
    assert (med, p99) == (float(np.median(noise)), float(np.percentile(noise, 99))) and len(calls) == 5
    with pytest.raises(ValueError, match="not 10"):
        rd.median_and_percentile(lambda: iter([dt[:9]]), 10, 99, gather_limit=0)


def test_min_max_buckets_keep_spikes_and_gaps():
    t = np.arange(1000, dtype=float)
    y = np.ones(1000)
    y[500] = 700.0  # one spike
    y[900:] = np.nan  # invalid at the end
    env = rd.MinMaxBuckets(0.0, 999.0, 10)
    for a in range(0, 1000, 333):  # pieces across bucket edges
        env.add(t[a : a + 333], y[a : a + 333])
    ts, ys = env.series()
    assert len(ts) == 20 and np.nanmax(ys) == 700.0
    assert np.isnan(ys[-2:]).all() and np.all(np.diff(ts) >= 0)
