"""A phase's samples read chunk by chunk: the frame `report`, `check` and the Results screen
never build whole.

`StreamTable` stands where a phase's whole DataFrame would (`PhaseRecord.samples`): it knows
its length, its columns, its sources and channels, and yields the same rows, in the same order,
as pandas DataFrames of at most CHUNK_ROWS rows (`source` and `channel` categorical with the
phase's categories, so codes mean the same in every chunk). `sample_chunks(x)` is the one loop
analysis writes: over a StreamTable's chunks, or over a whole DataFrame as a single chunk, so
the small-data path (MLPerf's spl.txt, tests) and the streamed one are the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from labconsole.samples.streams import CHUNK_ROWS, CSV_COLUMNS, StreamIndex, iter_sample_chunks

TABLE_COLUMNS = ("source",) + CSV_COLUMNS


@dataclass
class StreamTable:
    """One phase's streams (one per source, in the order a whole read concatenates them)."""

    streams: list[tuple[str, StreamIndex]]
    sources: list[str]  # categories of `source`
    channels: list[str]  # categories of `channel` (every stream's, first appearance order)
    chunk_rows: int = CHUNK_ROWS

    @classmethod
    def of(cls, streams: list[tuple[str, StreamIndex]], chunk_rows: int = CHUNK_ROWS) -> "StreamTable":
        sources = list(dict.fromkeys(s for s, _ in streams))
        channels = list(dict.fromkeys(c for _, ix in streams for c in ix.channels))
        return cls(list(streams), sources, channels, chunk_rows)

    def __len__(self) -> int:
        return sum(ix.rows for _, ix in self.streams)

    @property
    def columns(self) -> tuple[str, ...]:
        return TABLE_COLUMNS

    def for_source(self, source: str) -> "StreamTable":
        """The rows of one source (its streams only: nothing else is read)."""
        return StreamTable([(s, ix) for s, ix in self.streams if s == source], self.sources, self.channels, self.chunk_rows)

    def chunks(self, columns: tuple[str, ...] | None = None) -> Iterator[Any]:
        """DataFrames of at most `chunk_rows` rows (the columns asked for, in TABLE_COLUMNS
        order; all by default). Read-only: a constant column may be a view of one value."""
        import pandas as pd

        wanted = set(TABLE_COLUMNS if columns is None else columns)
        stream_cols = tuple(c for c in CSV_COLUMNS if c in wanted)
        src_dt = np.int8 if len(self.sources) < 128 else np.int16
        ch_dt = np.int8 if len(self.channels) < 128 else np.int16
        for source, ix in self.streams:
            if ix.rows == 0:
                continue
            remap = np.array([self.channels.index(c) for c in ix.channels], dtype=ch_dt)
            src_code = self.sources.index(source)
            for arrays, codes in iter_sample_chunks(ix, stream_cols or ("status",), self.chunk_rows):
                n = len(codes) if codes is not None else len(next(iter(arrays.values())))
                cols: dict[str, Any] = {}
                if "source" in wanted:
                    cols["source"] = pd.Categorical.from_codes(np.full(n, src_code, dtype=src_dt), self.sources, validate=False)
                for c in stream_cols:
                    if c == "channel":
                        cc = remap[codes] if codes.strides != (0,) else np.full(n, remap[int(codes[0])], dtype=ch_dt)
                        cols[c] = pd.Categorical.from_codes(cc, self.channels, validate=False)
                    else:
                        cols[c] = arrays[c]
                yield pd.DataFrame(cols, copy=False)


def sample_chunks(samples: Any, columns: tuple[str, ...] | None = None) -> Iterator[Any]:
    """The samples as a sequence of frames: a StreamTable's chunks, a DataFrame as itself (one
    chunk, no copy), nothing for None or an empty frame."""
    if samples is None:
        return
    if isinstance(samples, StreamTable):
        yield from samples.chunks(columns)
    elif len(samples):
        yield samples


def sample_groups(samples: Any, columns: tuple[str, ...] | None = None) -> list[tuple[tuple[str, str], Any]]:
    """((source, channel), chunks) per channel, in order of first appearance, where chunks()
    yields that channel's rows (each call reads them again): `groupby(["source", "channel"],
    sort=False)` of a whole frame, without holding the whole frame."""
    if samples is None or len(samples) == 0:
        return []
    if not isinstance(samples, StreamTable):
        return [((str(src), str(ch)), (lambda f=frame: iter([f]))) for (src, ch), frame in samples.groupby(["source", "channel"], sort=False, observed=True)]
    cols = None if columns is None else tuple(dict.fromkeys(("channel",) + tuple(columns)))
    out = []
    for source, ix in samples.streams:
        if ix.rows == 0:
            continue
        one = samples.for_source(source)
        one.streams = [(s, i) for s, i in one.streams if i is ix]
        for ch in ix.channels:
            code = samples.channels.index(ch)

            def chunks(t=one, code=code, single=len(ix.channels) == 1):
                for chunk in t.chunks(cols):
                    yield chunk if single else chunk[chunk["channel"].cat.codes.to_numpy() == code]

            out.append(((source, ch), chunks))
    return out
