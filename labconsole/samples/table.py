"""A phase's samples read chunk by chunk: the frame `report`, `check` and the Results screen
never build whole.

`StreamTable` stands where a phase's whole DataFrame would (`PhaseRecord.samples`): it knows
its length, its columns, its sources and channels, and yields the same rows, in the same order,
as `SampleChunk`s of at most CHUNK_ROWS rows: numpy columns, `source` and `channel` as codes
into the phase's categories (so codes mean the same in every chunk). `sample_chunks(x)` is the
one loop analysis writes: over a StreamTable's chunks, or over a whole DataFrame as a single
chunk, so the small-data path (MLPerf's spl.txt, tests) and the streamed one are the same code.
A chunk is plain numpy, not a DataFrame: `report` and `check` on a binary-stream bundle never
import pandas (a third of their start in a fresh process).
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

    def chunks(self, columns: tuple[str, ...] | None = None) -> Iterator[SampleChunk]:
        """SampleChunks of at most `chunk_rows` rows (the columns asked for; all by default).
        Read-only: a constant column may be a view of one value (strides (0,))."""
        wanted = set(TABLE_COLUMNS if columns is None else columns)
        stream_cols = tuple(c for c in CSV_COLUMNS if c in wanted)
        src_dt = np.int8 if len(self.sources) < 128 else np.int16
        ch_dt = np.int8 if len(self.channels) < 128 else np.int16
        categories = {"source": self.sources, "channel": self.channels}
        for source, ix in self.streams:
            if ix.rows == 0:
                continue
            remap = np.array([self.channels.index(c) for c in ix.channels], dtype=ch_dt)
            src_code = self.sources.index(source)
            for arrays, codes in iter_sample_chunks(ix, stream_cols or ("status",), self.chunk_rows):
                n = len(codes) if codes is not None else len(next(iter(arrays.values())))
                cols: dict[str, np.ndarray] = {}
                if "source" in wanted:
                    cols["source"] = np.broadcast_to(np.array(src_code, dtype=src_dt), (n,))
                for c in stream_cols:
                    if c == "channel":
                        cols[c] = remap[codes] if codes.strides != (0,) else np.broadcast_to(remap[int(codes[0])], (n,))
                    else:
                        cols[c] = arrays[c]
                yield SampleChunk(cols, categories, n)


CODED_COLUMNS = ("source", "channel")  # held as integer codes into the phase's categories


class SampleChunk:
    """Some consecutive rows of a phase's samples: one numpy array per column, `source` and
    `channel` as integer codes into `categories[name]` (chunk["channel"] is the codes)."""

    __slots__ = ("arrays", "categories", "rows")

    def __init__(self, arrays: dict[str, np.ndarray], categories: dict[str, list[str]], rows: int):
        self.arrays = arrays
        self.categories = categories
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def codes(self, name: str = "channel") -> tuple[np.ndarray, list[str]]:
        """(integer code per row, the names the codes index) of a coded column."""
        return self.arrays[name], self.categories[name]

    def take(self, mask: np.ndarray) -> SampleChunk:
        """The rows where `mask` is true (a copy of each column)."""
        return SampleChunk({k: v[mask] for k, v in self.arrays.items()}, self.categories, int(np.count_nonzero(mask)))

    @classmethod
    def of_frame(cls, frame: Any, columns: tuple[str, ...] | None = None) -> SampleChunk:
        """A whole DataFrame as one chunk (the columns asked for that it has): categorical
        columns keep their categories; a text `source`/`channel` is coded by its sorted names."""
        arrays: dict[str, np.ndarray] = {}
        categories: dict[str, list[str]] = {}
        for c in frame.columns if columns is None else [c for c in columns if c in frame.columns]:
            col = frame[c]
            if hasattr(col, "cat"):
                arrays[c] = col.cat.codes.to_numpy()
                categories[c] = [str(x) for x in col.cat.categories]
            elif c in CODED_COLUMNS:
                names, codes = np.unique(col.to_numpy().astype(str), return_inverse=True)
                arrays[c] = codes.reshape(-1)
                categories[c] = [str(x) for x in names]
            else:
                arrays[c] = col.to_numpy()
        return cls(arrays, categories, len(frame))


def sample_chunks(samples: Any, columns: tuple[str, ...] | None = None) -> Iterator[SampleChunk]:
    """The samples as a sequence of SampleChunks: a StreamTable's chunks, a DataFrame as one
    chunk (its columns, no copy), a chunk as itself; nothing for None or no rows."""
    if samples is None:
        return
    if isinstance(samples, StreamTable):
        yield from samples.chunks(columns)
    elif isinstance(samples, SampleChunk):
        if len(samples):
            yield samples
    elif len(samples):
        yield SampleChunk.of_frame(samples, columns)


def sample_groups(samples: Any, columns: tuple[str, ...] | None = None) -> list[tuple[tuple[str, str], Any]]:
    """((source, channel), chunks) per channel, in order of first appearance, where chunks()
    yields that channel's rows as SampleChunks (each call reads them again): `groupby(["source",
    "channel"], sort=False)` of a whole frame, without holding the whole frame."""
    if samples is None or len(samples) == 0:
        return []
    if not isinstance(samples, StreamTable):
        return [((str(src), str(ch)), (lambda f=frame: sample_chunks(f, columns)))
                for (src, ch), frame in samples.groupby(["source", "channel"], sort=False, observed=True)]
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
                    yield chunk if single else chunk.take(chunk["channel"] == code)

            out.append(((source, ch), chunks))
    return out
