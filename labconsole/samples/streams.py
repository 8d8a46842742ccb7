"""The crash-safe sample stream on disk: append-only, one file per source, CSV or binary."""

from __future__ import annotations

import io
import json
import os
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labconsole import safefile
from labconsole.samples.batch import FLOAT_FIELDS, SAMPLE_DTYPE, ChannelBatch

# ---------------------------------------------------------------------------------------------
# The sample stream on disk: append-only, one file per source, all its channels in it, in one
# of two formats with one reader (`read_sample_stream`) that returns the same DataFrame:
#
# - CSV (`samples-<source>.csv`) for ordinary rates (up to 1 kHz): readable by anything. Costs
#   about 3 us of CPU per sample to write and 100 bytes of disk.
# - binary (`samples-<source>.bin`) for high-rate sources (PowerShield, PPK2: 100 kHz and
#   more), where CSV text would cost a core: column blocks, see `BinarySampleStreamWriter`.
#
# A crash loses at most what was not yet flushed (the recorder flushes about once a second) and
# may leave a torn tail (half a CSV line, half a block), which the reader drops and reports.

CSV_COLUMNS = ("wall_ns", "mono_ns", "channel") + FLOAT_FIELDS + ("status",)
CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"
STREAM_SUFFIXES = {"csv": ".csv", "binary": ".bin"}
STREAM_FORMATS = tuple(STREAM_SUFFIXES)
# Above this rate a source's stream is binary unless its profile says otherwise: CSV text costs
# ~3 us of CPU per sample (0.3 % of a core at 1 kHz, 30 % at 100 kHz) and ~100 bytes of disk.
BINARY_ABOVE_HZ = 1000.0


def stream_format_for(sample_interval_s: float, requested: str = "auto") -> str:
    """The stream format of a source: the profile's choice, or by its rate when 'auto'."""
    if requested in STREAM_SUFFIXES:
        return requested
    if requested != "auto":
        raise ValueError(f"unknown stream format {requested!r} (auto, {', '.join(STREAM_FORMATS)})")
    rate = 1.0 / sample_interval_s if sample_interval_s > 0 else float("inf")
    return "binary" if rate > BINARY_ABOVE_HZ else "csv"


def stream_path(folder: Path, source: str, fmt: str) -> Path:
    return Path(folder) / f"samples-{source}{STREAM_SUFFIXES[fmt]}"


def find_sample_streams(folder: Path) -> list[tuple[str, Path]]:
    """(source name, path) of every sample stream in a phase folder, in name order."""
    out = []
    for path in sorted(Path(folder).glob("samples-*")):
        if path.suffix in STREAM_SUFFIXES.values() and path.is_file():
            out.append((path.name[len("samples-") : -len(path.suffix)], path))
    return out


def _float_texts(values: np.ndarray) -> list[str]:
    """Shortest round-trip text of each float (Python's repr); NaN becomes an empty field."""
    n = len(values)
    bits = values.view(np.int64)
    if n and (bits == bits[0]).all():  # constant column (all NaN, a fixed range, ...): one repr
        v = float(values[0])
        return [""] * n if v != v else [repr(v)] * n
    text = list(map(repr, values.tolist()))
    nan = np.isnan(values)
    if nan.any():
        for i in np.flatnonzero(nan).tolist():
            text[i] = ""
    return text


def format_csv(channel: str, batch: np.ndarray) -> str:
    """CSV rows (no header) for one channel's batch.

    Column-wise `repr` and one join per row: about 6x faster than numpy's string ops, which
    this replaced (20 us a row, the bottleneck of the CSV stream).
    """
    n = len(batch)
    if n == 0:
        return ""
    cols = [list(map(str, batch["wall_ns"].tolist())), list(map(str, batch["mono_ns"].tolist())), [channel] * n]
    cols.extend(_float_texts(np.ascontiguousarray(batch[name])) for name in FLOAT_FIELDS)
    cols.append(list(map(str, batch["status"].tolist())))
    return "\n".join(map(",".join, zip(*cols))) + "\n"


class _StreamWriter:
    """Append-only stream of one source's samples (the format is the subclass's).

    `append()` is cheap and is called on the acquisition thread; `flush()` encodes, writes and
    fsyncs, and is called by the recorder's flusher thread about once a second. A write error
    (full or read-only disk) cuts the file back to its last complete flush, keeps the samples
    pending and is re-raised to the flusher, which stops the run: nothing is half-written
    in the middle of a stream, nothing is silently dropped.
    """

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self._fsync = fsync
        self._pending: list[ChannelBatch] = []
        self._pending_n = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._fh = open(self.path, "ab", buffering=0)
        self._size = os.fstat(self._fh.fileno()).st_size  # bytes of complete flushes on disk
        self.written = 0  # samples on disk (flushed)
        self.appended = 0  # samples handed to the writer
        self.flushes = 0  # flushes that wrote samples
        self._flush_no = 0  # the number of the last flush in the file (binary blocks carry it)
        try:
            if self._size == 0:
                self._write_all([self._file_header()])
            else:
                self._check_existing()
        except BaseException:
            self._fh.close()
            raise

    # -- format hooks ----------------------------------------------------------------------------
    def _file_header(self) -> bytes:
        raise NotImplementedError

    def _check_existing(self) -> None:
        """Appending to a stream that exists (a resumed phase): it must be of this format."""

    def _encode(self, todo: list[ChannelBatch]) -> list:
        """The bytes (a list of buffers) that append `todo` to the stream."""
        raise NotImplementedError

    # -- common ------------------------------------------------------------------------------------
    def append(self, channel: str, batch: np.ndarray) -> int:
        """Queue `batch` for the next flush; returns the samples now waiting in memory."""
        if len(batch) == 0:
            return self._pending_n
        with self._lock:
            self._pending.append(ChannelBatch(channel, batch))
            self.appended += len(batch)
            self._pending_n += len(batch)
            return self._pending_n

    @property
    def pending(self) -> int:
        """Samples handed over and not yet on disk (they are in memory)."""
        return self._pending_n

    def _write_all(self, parts: list) -> None:
        """Write and fsync every buffer; on any error cut the file back to the last complete
        flush and re-raise (the samples stay pending, so a retry neither loses nor repeats)."""
        wrote = 0
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while len(view):
                    k = self._fh.write(view)
                    if not k:
                        raise OSError(f"{self.path}: the disk took no bytes")
                    view = view[k:]
                    wrote += k
            if self._fsync:
                os.fsync(self._fh.fileno())
        except BaseException:
            try:  # whatever reached the file of this flush goes (a write may fail part-way)
                if os.stat(self.path).st_size != self._size:
                    os.truncate(self.path, self._size)
            except OSError:
                pass
            raise
        self._size += wrote

    def flush(self) -> int:
        """Write everything pending; returns the number of samples written."""
        with self._flush_lock:
            with self._lock:
                todo, self._pending = self._pending, []
            if self._fh is None:
                if todo:
                    with self._lock:  # put them back: nothing may be silently dropped
                        self._pending[:0] = todo
                    raise ValueError(f"{self.path}: stream already closed")
                return 0
            if not todo:
                return 0
            n = sum(len(cb.samples) for cb in todo)
            try:
                self._write_all(self._encode(todo))
            except BaseException:
                with self._lock:
                    self._pending[:0] = todo
                raise
            self.written += n
            with self._lock:
                self._pending_n -= n
            self.flushes += 1
            self._flush_no += 1
            return n

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._flush_lock:
                if self._fh is not None:
                    self._fh.close()
                    self._fh = None


class SampleStreamWriter(_StreamWriter):
    """The CSV stream (`samples-<source>.csv`): a header line, then one line per sample."""

    def _file_header(self) -> bytes:
        return CSV_HEADER.encode("ascii")

    def _check_existing(self) -> None:
        """Appending to a stream a previous writer left: cut off a half line a crash left (the
        reader drops it anyway), so the next line does not get glued to it."""
        with open(self.path, "rb") as fh:
            fh.seek(max(0, self._size - 65536))
            tail = fh.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = self._size - len(tail) + cut + 1 if cut >= 0 else 0
            if keep > 0:
                os.truncate(self.path, keep)
                self._size = keep

    def _encode(self, todo: list[ChannelBatch]) -> list:
        return ["".join(format_csv(cb.channel, cb.samples) for cb in todo).encode("utf-8")]


# ---------------------------------------------------------------------------------------------
# The binary stream, for high-rate sources.
#
#   file   = file header, then blocks, appended
#   header = MAGIC (8 bytes) | u4 version | u4 length of the JSON | JSON {"columns": [[name,
#            dtype], ...], ...} padded with spaces to a multiple of 8
#   block  = one channel's samples of one flush, column by column:
#            b"LCSB" | u4 n | u4 payload bytes | u4 CRC-32 of the payload | u4 flush number |
#            u2 channel-name bytes | u2 reserved
#            payload: channel name (UTF-8) padded to 8 | one u1 per column: 0 = n values,
#            1 = constant (one value), padded to 8 | each column's values, padded to 8
#            b"LCSE" | u4 n
#
# Why this shape: columns are what analysis reads (a 10 M-sample phase loads in a few copies of
# memory, not 10 M parsed lines); a column that does not change within a block (NaN for what a
# source does not measure, a fixed range, status OK) is stored once, so a PPK2's stream holds
# ~40 bytes a sample instead of 81; a block is written with one write and fsynced, so a crash
# leaves at most one torn block at the end, found by its length, its end marker or, for the
# blocks of the last flush, its CRC (zeros where the disk never got the data), and dropped.
# Little-endian throughout, every value 8-byte aligned in the file.

BINARY_MAGIC = b"\x89LCS\r\n\x1a\n"  # PNG-style: not text, and text-mode mangling shows
BINARY_VERSION = 1
BLOCK_MAGIC = b"LCSB"
BLOCK_END = b"LCSE"
_BLOCK_HEADER = np.dtype([("magic", "S4"), ("n", "<u4"), ("payload", "<u4"), ("crc", "<u4"), ("flush", "<u4"), ("name_len", "<u2"), ("reserved", "<u2")])
_BLOCK_HEADER_SIZE = _BLOCK_HEADER.itemsize  # 24
_BLOCK_END_SIZE = 8
MAX_BLOCK_SAMPLES = 1 << 22  # keeps a block's payload far below 4 GB
STORED_COLUMNS: tuple[tuple[str, str], ...] = tuple((name, SAMPLE_DTYPE[name].str) for name in SAMPLE_DTYPE.names)


def _pad8(n: int) -> int:
    return (n + 7) & ~7


_ZEROS = bytes(8)


class BinarySampleStreamWriter(_StreamWriter):
    """The binary stream (`samples-<source>.bin`): see the format above."""

    def _file_header(self) -> bytes:
        meta = json.dumps({"format": "labconsole sample stream", "version": BINARY_VERSION, "columns": [list(c) for c in STORED_COLUMNS]})
        body = meta.encode("utf-8")
        body += b" " * (_pad8(len(body)) - len(body))
        return BINARY_MAGIC + np.array([BINARY_VERSION, len(body)], dtype="<u4").tobytes() + body

    def _check_existing(self) -> None:
        """Appending to a stream a previous writer left (the samples read between phases go
        to one stream across several writers): continue its flush numbers, so the reader's
        "last flush" stays one flush, and cut off a torn end a crash left, which the reader
        would drop anyway, so that new blocks never follow a broken one."""
        with open(self.path, "rb") as fh:
            head = fh.read(len(BINARY_MAGIC))
            if head != BINARY_MAGIC:
                raise StreamFormatError(f"{self.path}: exists and is not a binary sample stream; not appending to it")
            scan = _scan_binary(fh.fileno(), self.path)
        if scan is None:
            raise StreamFormatError(f"{self.path}: a binary stream torn while it was created; not appending to it")
        self._flush_no = scan.blocks[-1].flush if scan.blocks else 0
        if scan.end < self._size:
            os.truncate(self.path, scan.end)
            self._size = scan.end

    def _encode(self, todo: list[ChannelBatch]) -> list:
        # One block per channel per flush, channels in the order they first came.
        by_channel: dict[str, list[np.ndarray]] = {}
        for cb in todo:
            by_channel.setdefault(cb.channel, []).append(cb.samples)
        parts: list = []
        flush_no = self._flush_no + 1
        for channel, batches in by_channel.items():
            for group in _groups_of_at_most(batches, MAX_BLOCK_SAMPLES):
                parts.extend(self._block(channel, group, flush_no, zlib.crc32))
        return parts

    @staticmethod
    def _block(channel: str, batches: list[np.ndarray], flush_no: int, crc32) -> list:
        """One block from the batches as they came: each column is checked for a constant on
        the batches' own fields and copied once, straight into its place (no concatenation)."""
        n = sum(len(b) for b in batches)
        name = channel.encode("utf-8")
        payload: list = [name, _ZEROS[: _pad8(len(name)) - len(name)]]
        tags = bytearray(_pad8(len(STORED_COLUMNS)))
        values: list = []
        for i, (col, _) in enumerate(STORED_COLUMNS):
            fields = [b[col] for b in batches]
            dt = fields[0].dtype
            word = f"u{dt.itemsize}"
            first = fields[0][:1].view(word)
            # Bit-exact comparison (NaN and -0.0 stay what they were), on the strided fields.
            if n > 1 and all((f.view(word) == first[0]).all() for f in fields):
                tags[i] = 1
                arr = np.array(fields[0][:1])
            else:
                arr = np.empty(n, dtype=dt)
                at = 0
                for f in fields:
                    arr[at : at + len(f)] = f
                    at += len(f)
            size = arr.nbytes
            values.append(arr)
            if size % 8:
                values.append(_ZEROS[: _pad8(size) - size])
        payload.append(bytes(tags))
        payload.extend(values)
        crc = 0
        total = 0
        for p in payload:
            crc = crc32(p, crc)
            total += memoryview(p).nbytes
        head = np.zeros(1, dtype=_BLOCK_HEADER)
        head[0] = (BLOCK_MAGIC, n, total, crc, flush_no, len(name), 0)
        return [head.tobytes(), *payload, BLOCK_END + np.uint32(n).tobytes()]


def _groups_of_at_most(batches: list[np.ndarray], limit: int) -> list[list[np.ndarray]]:
    """The batches in order, split into groups of at most `limit` samples (slicing if needed)."""
    groups: list[list[np.ndarray]] = [[]]
    size = 0
    for b in batches:
        while len(b):
            take = min(len(b), limit - size)
            groups[-1].append(b[:take])
            b, size = b[take:], size + take
            if size == limit:
                groups.append([])
                size = 0
    return [g for g in groups if g]


def open_sample_stream(path: Path, fsync: bool = True) -> _StreamWriter:
    """A writer for `path`, in the format its suffix names (.csv or .bin)."""
    path = Path(path)
    if path.suffix == STREAM_SUFFIXES["binary"]:
        return BinarySampleStreamWriter(path, fsync=fsync)
    if path.suffix == STREAM_SUFFIXES["csv"]:
        return SampleStreamWriter(path, fsync=fsync)
    raise ValueError(f"{path}: a sample stream is .csv or .bin")


# ---------------------------------------------------------------------------------------------
# Reading


class StreamFormatError(ValueError):
    """A sample stream that cannot be read; the message names the file and line (or byte)."""


@dataclass
class StreamReadResult:
    frame: "object"  # pandas.DataFrame with CSV_COLUMNS (channel categorical)
    torn_tail: bool  # the end was cut off by a crash (a half line, a half block) and was dropped
    path: Path


def read_sample_stream(path: Path, verify: str = "tail", columns: tuple[str, ...] | None = None, constant_views: bool = False) -> StreamReadResult:
    """Read a sample stream (CSV or binary, told by its first bytes) into a pandas DataFrame.

    The frame has the columns of CSV_COLUMNS, in that order: wall_ns, mono_ns (int64), channel
    (categorical), the float fields (float64, NaN where unknown) and status (int64), whichever
    the format. A torn tail (a crash mid-write) is dropped and reported; anything else that
    does not parse is an error naming the file and the line (CSV) or byte offset (binary).
    `verify` (binary only): "tail" checks the CRC of the last flush's blocks (the only ones a
    crash can leave half on disk), "all" checks every block. `columns`: load only these (in
    CSV_COLUMNS order); None loads all. `constant_views` (binary only): a column with one value
    through the whole stream (NaN for what the source does not measure, status OK) comes back
    as a read-only view of that value instead of filled memory: for callers that only read,
    like `report` on a 10 M-sample phase.
    """
    path = Path(path)
    try:
        with safefile.open_regular(path) as fh:  # a FIFO or a device in a bundle never blocks
            head = fh.read(len(BINARY_MAGIC))
    except safefile.FileRefused as exc:
        raise StreamFormatError(str(exc)) from None
    wanted = None
    if columns is not None:
        wanted = set(columns)
        unknown = wanted - set(CSV_COLUMNS)
        if unknown:
            raise ValueError(f"unknown sample columns: {', '.join(sorted(unknown))}")
    if head == BINARY_MAGIC:
        return _read_binary(path, verify, wanted, constant_views)
    if path.suffix == STREAM_SUFFIXES["binary"] and BINARY_MAGIC.startswith(head):
        return _empty_result(path, wanted)  # torn while being created: no samples
    return _read_csv(path, wanted)


def _read_csv(path: Path, wanted: set[str] | None = None) -> StreamReadResult:
    import pandas as pd

    try:
        raw = safefile.read_bytes(path, "samples")
    except safefile.FileRefused as exc:
        raise StreamFormatError(str(exc)) from None
    torn = False
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n")
        raw = raw[: cut + 1] if cut >= 0 else b""
        torn = True
    first_end = raw.find(b"\n")
    first_line = (raw if first_end < 0 else raw[:first_end]).decode("utf-8", "replace").strip()
    if not first_line:
        raise StreamFormatError(f"{path}:1: empty sample stream (no header)")
    if first_line != CSV_HEADER.strip():
        raise StreamFormatError(f"{path}:1: unexpected header {first_line[:80]!r}; expected {CSV_HEADER.strip()!r}")
    dtypes = {"wall_ns": "int64", "mono_ns": "int64", "channel": "category", "status": "int64"}
    dtypes.update({name: "float64" for name in FLOAT_FIELDS})
    # Exact float parsing (the averages must agree bit for bit with what was written): pandas 3
    # parses exactly by default and deprecates the option; pandas 2 needs "round_trip".
    extra = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    if wanted is not None:
        extra["usecols"] = [c for c in CSV_COLUMNS if c in wanted]
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in FLOAT_FIELDS}, engine="c", **extra)
    except (ValueError, pd.errors.ParserError) as exc:
        line = _first_bad_line(raw)
        where = f"{path}:{line}" if line else str(path)
        raise StreamFormatError(f"{where}: malformed sample line ({exc})") from None
    return StreamReadResult(frame=frame, torn_tail=torn, path=path)


def _first_bad_line(raw: bytes) -> int | None:
    """The 1-based line number of the first line that does not parse (for error messages)."""
    ncols = len(CSV_COLUMNS)
    for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines()[1:], start=2):
        parts = line.split(",")
        if len(parts) != ncols:
            return lineno
        try:
            int(parts[0]), int(parts[1]), int(parts[-1])
            for p in parts[3:-1]:
                if p:
                    float(p)
        except ValueError:
            return lineno
    return None


@dataclass
class _Block:
    offset: int  # of the block header
    n: int
    payload: int
    crc: int
    flush: int
    name_len: int


@dataclass
class _Scan:
    columns: list[tuple[str, np.dtype]]
    blocks: list[_Block]
    torn: bool  # something after the last good block was dropped
    end: int  # byte offset just after the last good block (where a writer may append)


def _scan_binary(fd: int, path: Path, verify: str = "tail") -> _Scan | None:
    """Walk a binary stream's blocks (small reads of their headers and end markers) and check
    the CRCs of the last flush (or of all blocks); None when the stream was torn while it was
    being created (no complete header). A crash's torn end is cut off and reported; damage
    with an intact block after it is an error naming the byte."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, 16, 0)
    if len(head) < 16:
        return None
    version, meta_len = (int(x) for x in np.frombuffer(head, dtype="<u4", count=2, offset=8))
    if version != BINARY_VERSION:
        raise StreamFormatError(f"{path}: byte 8: binary stream version {version}; this labconsole reads version {BINARY_VERSION}")
    if size < 16 + meta_len:
        return None
    meta_raw = os.pread(fd, meta_len, 16)
    try:
        columns = [(str(c), np.dtype(str(t))) for c, t in json.loads(meta_raw.decode("utf-8"))["columns"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamFormatError(f"{path}: byte 16: unreadable stream header ({exc})") from None
    blocks: list[_Block] = []
    torn = False
    pos = 16 + meta_len
    while pos < size:
        hb = os.pread(fd, _BLOCK_HEADER_SIZE, pos)
        bad = None
        if len(hb) < _BLOCK_HEADER_SIZE:
            bad = "a block header cut short"
        else:
            h = np.frombuffer(hb, dtype=_BLOCK_HEADER)[0]
            end = pos + _BLOCK_HEADER_SIZE + int(h["payload"]) + _BLOCK_END_SIZE
            if bytes(h["magic"]) != BLOCK_MAGIC:
                bad = "no block marker"
            elif end > size:
                bad = "a block cut short"
            elif os.pread(fd, _BLOCK_END_SIZE, end - _BLOCK_END_SIZE) != BLOCK_END + np.uint32(h["n"]).tobytes():
                bad = "no block end marker"
        if bad is not None:
            # A crash can only tear the end. Damage with an intact block after it is not a
            # crash's torn end but a damaged file: say so rather than drop good samples.
            if _valid_block_after(fd, pos, size):
                raise StreamFormatError(f"{path}: byte {pos}: {bad} in the middle of the stream (the file is damaged)")
            torn = True
            break
        blocks.append(_Block(pos, int(h["n"]), int(h["payload"]), int(h["crc"]), int(h["flush"]), int(h["name_len"])))
        pos = end
    # CRCs: of the last flush's blocks (the only ones a crash can leave half on disk), or all.
    tail = len(blocks)  # the last flush: the run of blocks at the end with the last flush number
    while tail > 0 and blocks[tail - 1].flush == blocks[-1].flush:
        tail -= 1
    for i, b in enumerate(blocks if verify == "all" else blocks[tail:], start=0 if verify == "all" else tail):
        if zlib.crc32(os.pread(fd, b.payload, b.offset + _BLOCK_HEADER_SIZE)) != b.crc:
            if i < tail:
                raise StreamFormatError(f"{path}: byte {b.offset}: block CRC mismatch (damaged file)")
            torn = True  # the last flush did not fully reach the disk: drop it from here
            blocks = blocks[:i]
            break
    end = blocks[-1].offset + _BLOCK_HEADER_SIZE + blocks[-1].payload + _BLOCK_END_SIZE if blocks else 16 + meta_len
    return _Scan(columns, blocks, torn, end)


def _binary_layout(fd: int, path: Path, scan: _Scan) -> list[tuple[str, list[tuple[bool, int]]]]:
    """Where each block keeps each column: per block, its channel and, per column, (constant?,
    byte offset of its values). Reads only the blocks' names and tags."""
    col_dtypes = [dt for _, dt in scan.columns]
    ntags = _pad8(len(col_dtypes))
    layout: list[tuple[str, list[tuple[bool, int]]]] = []
    for b in scan.blocks:
        p = b.offset + _BLOCK_HEADER_SIZE
        name = os.pread(fd, b.name_len, p).decode("utf-8", "replace")
        p += _pad8(b.name_len)
        tags = os.pread(fd, ntags, p)
        p += ntags
        where = []
        for i, dt in enumerate(col_dtypes):
            const = tags[i] == 1
            where.append((const, p))
            p += _pad8(dt.itemsize if const else b.n * dt.itemsize)
        if p != b.offset + _BLOCK_HEADER_SIZE + b.payload:
            raise StreamFormatError(f"{path}: byte {b.offset}: block layout does not match its length")
        layout.append((name, where))
    return layout


def _read_binary(path: Path, verify: str = "tail", wanted: set[str] | None = None, constant_views: bool = False) -> StreamReadResult:
    """Walk the blocks, then read each column's values straight into its final array: one copy
    from the page cache, whatever the number of blocks."""
    import pandas as pd

    if verify not in ("tail", "all"):
        raise ValueError(f"verify must be 'tail' or 'all', not {verify!r}")
    try:
        fh = safefile.open_regular(path)
    except safefile.FileRefused as exc:
        raise StreamFormatError(str(exc)) from None
    with fh:
        fd = fh.fileno()
        scan = _scan_binary(fd, path, verify)
        if scan is None:  # a crash while the stream was created: it holds no samples
            return _empty_result(path, wanted)
        columns = [(name, dt.str) for name, dt in scan.columns]
        col_dtypes = [dt for _, dt in scan.columns]
        blocks, torn = scan.blocks, scan.torn
        total = sum(b.n for b in blocks)
        layout = _binary_layout(fd, path, scan)
        # Pass 3: each wanted column's values straight into its final array (one copy from the
        # page cache); a column constant in every block is filled, or left to the OS when zero.
        arrays: dict[str, np.ndarray] = {}
        for i, ((col, _), dt) in enumerate(zip(columns, col_dtypes)):
            if wanted is not None and col not in wanted:
                continue
            consts = [os.pread(fd, dt.itemsize, where[i][1]) for _, where in layout if where[i][0]] if all(w[i][0] for _, w in layout) else None
            if consts is not None and len(set(consts)) <= 1:
                value = np.frombuffer(consts[0], dtype=dt)[0] if consts else dt.type(0)
                out_dt = np.dtype(np.int64) if col == "status" else dt
                if constant_views:  # no memory at all: one value, read-only, seen total times
                    arrays[col] = np.broadcast_to(np.asarray(value, dtype=out_dt), (total,))
                elif not np.asarray(value).view(f"u{dt.itemsize}"):
                    arrays[col] = np.zeros(total, dtype=out_dt)  # untouched pages cost nothing
                else:
                    arrays[col] = np.full(total, value, dtype=out_dt)
                continue
            arr = np.empty(total, dtype=dt)
            at = 0
            for b, (_, where) in zip(blocks, layout):
                const, p = where[i]
                dest = arr[at : at + b.n]
                if const:
                    dest[:] = np.frombuffer(os.pread(fd, dt.itemsize, p), dtype=dt)[0]
                elif _pread_into(fd, memoryview(dest).cast("B"), p) != b.n * dt.itemsize:
                    raise StreamFormatError(f"{path}: byte {p}: the file ended inside a block")
                at += b.n
            arrays[col] = arr.astype(np.int64) if col == "status" else arr
    frame_cols: dict[str, object] = {}
    for col in CSV_COLUMNS:
        if wanted is not None and col not in wanted:
            continue
        if col == "channel":
            categories = list(dict.fromkeys(name for name, _ in layout))
            code_dt = np.int8 if len(categories) < 128 else np.int16  # pandas' own choice: no recast
            if len(categories) <= 1:
                codes = np.zeros(total, dtype=code_dt)  # one channel: pages nobody may ever touch
            else:
                codes = np.empty(total, dtype=code_dt)
                at = 0
                for b, (name, _) in zip(blocks, layout):
                    codes[at : at + b.n] = categories.index(name)
                    at += b.n
            frame_cols[col] = pd.Categorical.from_codes(codes, categories, validate=False)  # built right above
        elif col in arrays:
            frame_cols[col] = arrays[col]
        else:  # a column this file predates: unknown
            frame_cols[col] = np.full(total, np.nan)
    return StreamReadResult(frame=pd.DataFrame(frame_cols, copy=False), torn_tail=torn, path=path)


def _empty_result(path: Path, wanted: set[str] | None) -> StreamReadResult:
    """What a binary stream torn while it was being created holds: nothing, reported as torn."""
    import pandas as pd

    cols: dict[str, object] = {}
    for col in CSV_COLUMNS:
        if wanted is not None and col not in wanted:
            continue
        if col == "channel":
            cols[col] = pd.Categorical([])
        elif col in ("wall_ns", "mono_ns", "status"):
            cols[col] = np.empty(0, dtype=np.int64)
        else:
            cols[col] = np.empty(0, dtype=np.float64)
    return StreamReadResult(frame=pd.DataFrame(cols), torn_tail=True, path=path)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill `view` from the file at `offset` (straight into the array where os.preadv exists)."""
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            k = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - not Linux
            data = os.pread(fd, len(view) - done, offset + done)
            view[done : done + len(data)] = data
            k = len(data)
        if k <= 0:
            break
        done += k
    return done


def _valid_block_after(fd: int, pos: int, size: int) -> bool:
    """Whether a complete, CRC-correct block starts anywhere after byte `pos`."""
    rest = os.pread(fd, size - pos, pos)
    if not rest.rstrip(b"\x00"):
        return False  # zeros where the disk never got the data: a crash's torn end
    i = rest.find(BLOCK_MAGIC, 1)
    while i >= 0:
        if len(rest) - i >= _BLOCK_HEADER_SIZE:
            h = np.frombuffer(rest, dtype=_BLOCK_HEADER, count=1, offset=i)[0]
            end = i + _BLOCK_HEADER_SIZE + int(h["payload"]) + _BLOCK_END_SIZE
            if end <= len(rest) and rest[end - _BLOCK_END_SIZE : end] == BLOCK_END + np.uint32(h["n"]).tobytes():
                if zlib.crc32(rest[i + _BLOCK_HEADER_SIZE : end - _BLOCK_END_SIZE]) == int(h["crc"]):
                    return True
        i = rest.find(BLOCK_MAGIC, i + 1)
    return False


# ---------------------------------------------------------------------------------------------
# Reading chunk by chunk: what `report`, `check` and the Results screen use, so that a phase of
# a 100 kHz source over 600 s (60 M samples, 2.4 GB of binary stream) never has to fit in
# memory. `index_sample_stream` validates the stream and finds where everything is without
# keeping any values; `iter_sample_chunks` then reads the columns asked for, a bounded number
# of rows at a time, in the stream's order: the rows, their order and their values are those
# `read_sample_stream` gives, cut into pieces (tests/samples/test_chunks.py).

CHUNK_ROWS = 1 << 19  # rows per chunk: ~4 MB per column read
CSV_PIECE_BYTES = 1 << 23  # CSV is indexed and parsed in pieces of about this many bytes


@dataclass
class StreamIndex:
    """Where a stream's samples are, found without keeping any of them."""

    path: Path
    kind: str  # "binary" or "csv"
    rows: int
    channels: list[str]  # in order of first appearance
    torn: bool  # the end was cut off by a crash and is not read
    columns: list[tuple[str, np.dtype]] = field(default_factory=list)  # binary: stored columns
    blocks: list[tuple[int, int, list[tuple[bool, int]]]] = field(default_factory=list)  # binary: (rows, channel code, per column (constant?, offset))
    pieces: list[tuple[int, int, int]] = field(default_factory=list)  # csv: (byte start, byte end, rows), whole lines


def index_sample_stream(path: Path, verify: str = "tail") -> StreamIndex:
    """Validate a stream (CSV or binary, told by its first bytes) and index it for chunked
    reading. Errors are those of `read_sample_stream` (StreamFormatError naming file and line or
    byte). Binary: the blocks' headers only; CSV: one parsing pass, a piece at a time."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(BINARY_MAGIC))
        if head == BINARY_MAGIC:
            if verify not in ("tail", "all"):
                raise ValueError(f"verify must be 'tail' or 'all', not {verify!r}")
            scan = _scan_binary(fh.fileno(), path, verify)
            if scan is None:
                return StreamIndex(path, "binary", 0, [], True)
            layout = _binary_layout(fh.fileno(), path, scan)
            channels = list(dict.fromkeys(name for name, _ in layout))
            blocks = [(b.n, channels.index(name), where) for b, (name, where) in zip(scan.blocks, layout)]
            return StreamIndex(path, "binary", sum(b.n for b in scan.blocks), channels, scan.torn, list(scan.columns), blocks)
    if path.suffix == STREAM_SUFFIXES["binary"] and BINARY_MAGIC.startswith(head):
        return StreamIndex(path, "binary", 0, [], True)  # torn while being created: no samples
    return _index_csv(path)


def _csv_pieces(path: Path):
    """(byte start, bytes) of the CSV's data in pieces of whole lines, after the checked header;
    then, last, (None, torn?)."""
    with open(path, "rb") as fh:
        first = fh.readline()
        line = first.rstrip(b"\r\n").decode("utf-8", "replace").strip()
        if not line:
            raise StreamFormatError(f"{path}:1: empty sample stream (no header)")
        if not first.endswith(b"\n"):  # a header a crash cut short: no samples
            yield None, True
            return
        if line != CSV_HEADER.strip():
            raise StreamFormatError(f"{path}:1: unexpected header {line[:80]!r}; expected {CSV_HEADER.strip()!r}")
        pos, rest = len(first), b""
        while True:
            data = fh.read(CSV_PIECE_BYTES)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield pos, data[: cut + 1]
            pos += cut + 1
            rest = data[cut + 1 :]
        yield None, bool(rest)


def _parse_csv_piece(path: Path, raw: bytes, line0: int, wanted: set[str] | None):
    """One piece of whole lines as a frame, parsed exactly as `_read_csv` parses the file."""
    import pandas as pd

    dtypes = {"wall_ns": "int64", "mono_ns": "int64", "channel": "category", "status": "int64"}
    dtypes.update({name: "float64" for name in FLOAT_FIELDS})
    extra = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    if wanted is not None:
        extra["usecols"] = [c for c in CSV_COLUMNS if c in wanted]
    try:
        return pd.read_csv(io.BytesIO(raw), header=None, names=list(CSV_COLUMNS), dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in FLOAT_FIELDS}, engine="c", **extra)
    except (ValueError, pd.errors.ParserError) as exc:
        line = _first_bad_line(CSV_HEADER.encode("ascii") + raw)
        where = f"{path}:{line0 + line - 1}" if line else str(path)
        raise StreamFormatError(f"{where}: malformed sample line ({exc})") from None


def _index_csv(path: Path) -> StreamIndex:
    channels: dict[str, None] = {}
    pieces: list[tuple[int, int, int]] = []
    rows, line0, torn = 0, 1, False
    for start, raw in _csv_pieces(path):
        if start is None:
            torn = bool(raw)
            break
        frame = _parse_csv_piece(path, raw, line0, None)  # every column: the errors a whole read finds
        for c in _unique_in_order(frame["channel"]):
            channels.setdefault(c, None)
        pieces.append((start, start + len(raw), len(frame)))
        rows += len(frame)
        line0 += raw.count(b"\n")
    return StreamIndex(path, "csv", rows, list(channels), torn, pieces=pieces)


def _unique_in_order(col) -> list[str]:
    """The distinct values of a (categorical) column in order of first appearance."""
    if hasattr(col, "cat"):
        codes = col.cat.codes.to_numpy()
        cats = [str(c) for c in col.cat.categories]
        present = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(cats))) if len(codes) else []
        first = {int(c): int(np.argmax(codes == c)) for c in present}
        return [cats[c] for c in sorted(first, key=first.get)]
    return [str(c) for c in dict.fromkeys(col.tolist())]


def iter_sample_chunks(index: StreamIndex, columns: tuple[str, ...] | None = None, rows: int = CHUNK_ROWS):
    """The stream's samples, at most `rows` at a time (a CSV piece may hold more), as
    (arrays by column name, channel code per row or None). Columns as `read_sample_stream`
    gives them (status int64; a column this file predates is NaN), `channel` as codes into
    `index.channels`; a column constant through a chunk of a binary stream is a read-only view."""
    wanted = set(CSV_COLUMNS) if columns is None else set(columns)
    unknown = wanted - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(f"unknown sample columns: {', '.join(sorted(unknown))}")
    if index.kind == "csv":
        yield from _iter_csv_chunks(index, wanted)
    else:
        yield from _iter_binary_chunks(index, wanted, max(1, int(rows)))


def _iter_csv_chunks(index: StreamIndex, wanted: set[str]):
    with open(index.path, "rb") as fh:
        for start, end, n in index.pieces:
            fh.seek(start)
            raw = fh.read(end - start)
            frame = _parse_csv_piece(index.path, raw, 0, wanted | {"channel"})
            if len(frame) != n:
                raise StreamFormatError(f"{index.path}: changed while it was read")
            codes = None
            if "channel" in wanted:
                cats = [str(c) for c in frame["channel"].cat.categories]
                remap = np.array([index.channels.index(c) for c in cats], dtype=np.int16)
                raw_codes = frame["channel"].cat.codes.to_numpy()
                codes = remap[raw_codes] if len(cats) else np.zeros(len(frame), dtype=np.int16)
            yield {c: frame[c].to_numpy() for c in CSV_COLUMNS if c in wanted and c != "channel"}, codes


def _iter_binary_chunks(index: StreamIndex, wanted: set[str], rows: int):
    # Cut the blocks into pieces of at most `rows` rows, then group consecutive pieces into
    # chunks of at most `rows` rows: (block number, first row, row count).
    col_dtypes = dict(index.columns)
    with open(index.path, "rb") as fh:
        fd = fh.fileno()
        group: list[tuple[int, int, int]] = []
        size = 0
        for bi, (n, _, _) in enumerate(index.blocks):
            at = 0
            while at < n:
                take = min(n - at, rows - size)
                group.append((bi, at, take))
                at += take
                size += take
                if size == rows:
                    yield _binary_chunk(fd, index, group, size, wanted, col_dtypes)
                    group, size = [], 0
        if group:
            yield _binary_chunk(fd, index, group, size, wanted, col_dtypes)


def _binary_chunk(fd: int, index: StreamIndex, group: list[tuple[int, int, int]], size: int, wanted: set[str], col_dtypes: dict):
    out: dict[str, np.ndarray] = {}
    names = [name for name, _ in index.columns]
    for col in CSV_COLUMNS:
        if col == "channel" or col not in wanted:
            continue
        out_dt = np.dtype(np.int64) if col == "status" else col_dtypes.get(col)
        if col not in col_dtypes:  # a column this file predates: unknown
            out[col] = np.broadcast_to(np.float64(np.nan), (size,))
            continue
        i = names.index(col)
        dt = col_dtypes[col]
        wheres = [index.blocks[bi][2][i] for bi, _, _ in group]
        if all(const for const, _ in wheres):
            values = {os.pread(fd, dt.itemsize, p) for _, p in wheres}
            if len(values) == 1:
                out[col] = np.broadcast_to(np.frombuffer(values.pop(), dtype=dt).astype(out_dt)[0], (size,))
                continue
        arr = np.empty(size, dtype=dt)
        at = 0
        for (bi, first, k), (const, p) in zip(group, wheres):
            dest = arr[at : at + k]
            if const:
                dest[:] = np.frombuffer(os.pread(fd, dt.itemsize, p), dtype=dt)[0]
            elif _pread_into(fd, memoryview(dest).cast("B"), p + first * dt.itemsize) != k * dt.itemsize:
                raise StreamFormatError(f"{index.path}: byte {p}: the file ended inside a block")
            at += k
        out[col] = arr.astype(np.int64) if col == "status" else arr
    codes = None
    if "channel" in wanted:
        chans = [index.blocks[bi][1] for bi, _, _ in group]
        if len(set(chans)) == 1:
            codes = np.broadcast_to(np.int16(chans[0]), (size,))
        else:
            codes = np.repeat(np.array(chans, dtype=np.int16), [k for _, _, k in group])
    return out, codes
