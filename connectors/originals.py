"""Dead letters keep the original record: read again by source position, off the hot path.

Steps work on decoded Arrow rows, so a step that rejects a row only has decoded values; JSON
re-serialised from them is not what arrived (``{}`` looks like a row of nulls, ``1e400`` like
infinity, a Kafka record's key and headers are gone). Carrying every record's raw bytes
through the steps would slow every row down for the few that fail. Every row carries its source
position instead (``_bw_source``, ``_bw_offset``), and :class:`RecoverOriginals`, on the
dead-letter path only (after the dead letters are gathered, before redaction and the
dead-letter sink), reads the record at that position again:

- JSONL: ``payloadBytes`` = the line's bytes (without its line break, byte-order mark
  removed on line 1), ``payloadString`` = the same text.
- CSV: the record's bytes, every line of it (quoted values may hold line breaks), without the
  final line break; ``payloadString`` = the same text. Attributes ``csv.header`` (the header
  record, when the file has one) and ``csv.dialect`` (JSON: delimiter and quote character), so
  the record can be parsed, and redacted field by field, on its own.
- Parquet: no per-record bytes exist, so ``payloadBytes`` is null and ``payloadString`` is the
  row as stored, as strict JSON (non-finite floats as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"``), re-read at its row index.
- Avro: ``payloadBytes`` = the datum's bytes exactly as stored in its block (Avro binary under
  the writer schema, decompressed), ``payloadString`` = the datum as strict JSON; attribute
  ``avro.schema_fingerprint`` = CRC-64-AVRO of the writer schema's canonical form (hex).
- Documents (the ``document`` source: one file, one record at position 1): ``payloadBytes`` =
  the file's bytes, whatever its format; ``payloadString`` keeps the document row as the step
  saw it (JSON: its text, type, fields), so every format's dead letter reads alike.
- Kafka: ``payloadBytes`` = the value, ``payloadString`` = the value when the source reads
  text (``json``, ``string``; Avro and bytes values keep the row's JSON); attributes = topic,
  partition, offset, timestamp, key and headers (:mod:`connectors.kafka.fetch`).

A record that cannot be found again (file changed or gone, broker unreachable, record deleted
by retention) keeps the row's JSON payload, and its dead letter gets the attribute
``original: unavailable (<reason>)``; a recovered one gets no such marker (the attribute costs
the dead-letter writer a nested value per row). Recovery never fails the run and never drops a
dead letter; both outcomes are counted (``dead_letters/originals_recovered``,
``dead_letters/originals_unavailable``).

It looks at the dead letters that have a source position, no ``payloadBytes`` and no
``attributes``: the ones steps make from rows. A source's own rejects already hold the raw
bytes, and a Kafka sink's failed deliveries describe the message that could not be sent; both
are left as they are.

What is guaranteed: positions are exact (each format's reader documents its numbering), and a
file's size and modification time are taken when the pipeline is built; a file that differs
when its dead letters are recovered (rewritten, appended to, deleted) gives ``unavailable (file
changed since the pipeline was built)`` rather than another record's bytes. Not detected: a
file rewritten to the same size with its modification time restored. For Kafka, an offset
names one record for the topic's lifetime; a topic deleted and re-created under the same name
is not detected.

Parquet rows that reach the rejecting step straight from their source (``rows_as_read``) are
not re-read: the step's JSON of the row already is the row as stored, and re-reading would
decode the whole file a second time.

Cost: per worker process, an LRU (:data:`MAX_CACHED_BYTES`) of per-file indexes: line starts
found with numpy over the memory-mapped file (about 0.1 s per 250 MB), Avro block positions,
Parquet files and recently decoded row groups. Each batch of dead letters then costs slices
and seeks, not a rescan. Remote files (``gs://``...) are copied to a local temporary file once
per worker, then memory-mapped.
"""

from __future__ import annotations

import io
import json
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.metrics import NodeCounters
from connectors.records import DEAD_LETTER_SCHEMA

ORIGINAL = "original"
"""The attribute saying why a dead letter's payload is not the record as read."""
COUNTER_NODE = "dead_letters"
MAX_CACHED_BYTES = 512 << 20
"""Bound on the per-process cache of file indexes and decoded Parquet row groups."""
MAX_CACHED_ENTRIES = 32

_SCAN_BYTES = 4 << 20  # numpy scans files in blocks of this size (measured fastest)
_BOM = b"\xef\xbb\xbf"
_NEWLINE, _CR = 10, 13
_ATTRIBUTES = DEAD_LETTER_SCHEMA.field("attributes")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOrigin:
    """How to read an input file again, and its size and mtime when the pipeline was built."""

    format_name: str
    options: Mapping[str, Any]
    size: int
    mtime: float


@dataclass(frozen=True)
class KafkaOrigin:
    """Where a Kafka source's topics live (``consumer_config`` keeps secrets as references),
    and how values are encoded: only ``json`` and ``string`` values are text."""

    bootstrap_servers: str
    consumer_config: Mapping[str, Any]
    value_format: str = "json"


@dataclass(frozen=True)
class Origins:
    """What :class:`RecoverOriginals` needs to find a dead letter's record again.

    Args:
        files: input file path (as in ``_bw_source``) -> how to read it.
        topics: Kafka topic -> where it lives (``_bw_source`` is ``topic/partition``).
        rows_as_read: steps whose input rows come straight from sources, unchanged.
    """

    files: Mapping[str, FileOrigin] = field(default_factory=dict)
    topics: Mapping[str, KafkaOrigin] = field(default_factory=dict)
    rows_as_read: frozenset[str] = frozenset()


def file_origins(
    paths: Sequence[str], format_name: str | None, options: Mapping[str, Any]
) -> dict[str, FileOrigin]:
    """The origins of a file source's ``paths`` as they are now (format from the extension
    when ``format_name`` is None)."""
    from connectors.files.registry import infer_format

    origins = {}
    for path in paths:
        try:
            size, mtime = _file_state(path)
        except _Unavailable:
            continue  # gone since it was matched: its rows cannot be read either
        origins[path] = FileOrigin(format_name or infer_format(path), dict(options), size, mtime)
    return origins


class Original(NamedTuple):  # a tuple: thousands are made per batch, cheaply
    """A record as it was read; ``text`` None keeps the dead letter's JSON payload."""

    payload: bytes | None
    text: str | None
    attributes: tuple[tuple[str, str | None], ...] = ()


_AS_STORED = Original(None, None)
"""A Parquet row that reached its step unchanged: the JSON payload is the row as stored."""

Found = dict[int, "Original | str"]
"""Per offset: the record, or why there is none."""


class _Unavailable(Exception):
    """Nothing of one source can be recovered (the reason is the message)."""


# --------------------------------------------------------------------------- the transform


def recover_originals(table: pa.Table, origins: Origins) -> tuple[pa.Table, int, int]:
    """``table`` (dead letters) with originals filled in; and how many were / were not found.

    Columnar but for one small loop over the rows that need an original: only their
    positions become Python values, and the new columns are scattered back with ``take``.
    """
    pending = _pending(table)
    if not len(pending):
        return table, 0, 0
    index = pa.array(pending, pa.int64())
    sources = table.column("source").take(index).to_pylist()
    offsets = table.column("offset").take(index).to_pylist()
    steps = table.column("step").take(index).to_pylist()
    by_source: dict[str, list[int]] = {}
    for row, source in enumerate(sources):
        by_source.setdefault(source, []).append(row)
    payloads: list[bytes | None] = [None] * len(pending)
    texts: list[str | None] = [None] * len(pending)
    pairs: list[tuple[tuple[str, str | None], ...]] = [()] * len(pending)
    recovered = 0
    for source, rows in by_source.items():
        found = _fetch(source, [offsets[r] for r in rows], [steps[r] for r in rows], origins)
        for row in rows:
            original = found.get(offsets[row], f"no record at offset {offsets[row]}")
            if isinstance(original, str):
                pairs[row] = ((ORIGINAL, f"unavailable ({original})"),)
                continue
            recovered += 1
            payloads[row], texts[row], pairs[row] = original
    kept_texts = table.column("payloadString").take(index).combine_chunks()
    columns = {
        "payloadString": pc.coalesce(pa.array(texts, pa.string()), kept_texts),
        "payloadBytes": pa.array(payloads, pa.binary()),
        "attributes": _attributes(pairs),
    }
    for name, values in columns.items():
        position = table.schema.get_field_index(name)
        table = table.set_column(
            position, table.schema.field(position), _scatter(table.column(name), pending, values)
        )
    return table, recovered, len(pending) - recovered


def _attributes(pairs: list[tuple[tuple[str, str | None], ...]]) -> pa.Array:
    """An ``attributes`` column from each row's ``(key, value)`` pairs; null where there are
    none (writers encode nested values one by one, so an empty list is not free)."""
    lengths = np.fromiter(map(len, pairs), np.int32, len(pairs))
    if not lengths.any():
        return pa.nulls(len(pairs), _ATTRIBUTES.type)
    ends = np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)])
    entries = pa.StructArray.from_arrays(
        [
            pa.array([key for row in pairs for key, _ in row], pa.string()),
            pa.array([value for row in pairs for _, value in row], pa.string()),
        ],
        fields=list(_ATTRIBUTES.type.value_type),
    )
    return pa.ListArray.from_arrays(
        pa.array(ends, pa.int32()), entries, type=_ATTRIBUTES.type, mask=pa.array(lengths == 0)
    )


def _scatter(column: pa.ChunkedArray, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """``column`` with ``rows`` replaced by ``values`` (all rows: just ``values``)."""
    if len(rows) == len(column):
        return values
    size = len(column)
    order = np.arange(size)
    order[rows] = size + np.arange(len(rows))
    return pa.concat_arrays([column.combine_chunks(), values]).take(pa.array(order))


def _pending(table: pa.Table) -> np.ndarray:
    """Rows made by a step from a row with a position: no bytes, no attributes yet."""
    mask = pc.and_(
        pc.and_(pc.is_null(table.column("payloadBytes")), pc.is_null(table.column("attributes"))),
        pc.and_(pc.is_valid(table.column("source")), pc.is_valid(table.column("offset"))),
    )
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _fetch(source: str, offsets: list[int], steps: list[str], origins: Origins) -> Found:
    """The originals at ``offsets`` of ``source`` (read by ``steps``)."""
    origin = origins.files.get(source)
    if origin is not None and origin.format_name == "parquet":
        # rows straight from the source already are the stored rows (module doc)
        pairs = zip(offsets, steps, strict=True)
        as_read: Found = {o: _AS_STORED for o, s in pairs if s in origins.rows_as_read}
        offsets = [o for o in offsets if o not in as_read]
        if not offsets:
            return as_read
        return {**as_read, **_guarded(partial(_file_originals, source, origin, offsets), offsets)}
    return _guarded(partial(_read, source, offsets, origins), offsets)


def _read(source: str, offsets: list[int], origins: Origins) -> Found:
    if source in origins.files:
        return _file_originals(source, origins.files[source], offsets)
    topic, _, partition = source.rpartition("/")
    if topic in origins.topics and partition.isdigit():
        return _kafka_originals(origins.topics[topic], topic, int(partition), offsets)
    raise _Unavailable(f"{source} is not an input of this pipeline")


def _guarded(read: Callable[[], Found], offsets: list[int]) -> Found:
    """``read()``, or, if it fails, every offset unavailable with the reason."""
    try:
        return read()
    except Exception as exc:  # recovery must never fail the run: the dead letter says why
        reason = str(exc) if isinstance(exc, _Unavailable) else f"{type(exc).__name__}: {exc}"
        return dict.fromkeys(offsets, reason[:300])


class _RecoverFn(beam.DoFn):
    def __init__(self, origins: Origins) -> None:
        self._origins = origins
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(COUNTER_NODE)

    def process(self, table: pa.Table) -> Iterable[pa.Table]:
        try:
            recovered_table, recovered, unavailable = recover_originals(table, self._origins)
        except Exception:  # a bug here must not cost the run or its dead letters
            log.warning("dead letters kept without their originals", exc_info=True)
            recovered_table, recovered, unavailable = table, 0, len(_pending(table))
        self._counters.inc("originals_recovered", recovered)
        self._counters.inc("originals_unavailable", unavailable)
        yield recovered_table


class RecoverOriginals(beam.PTransform):
    """Fill dead letters' ``payloadBytes``, ``payloadString`` and ``attributes`` with the record
    as it was read, found by its source position (see the module docstring)."""

    def __init__(self, origins: Origins) -> None:
        super().__init__()
        self._origins = origins

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | "Recover" >> beam.ParDo(_RecoverFn(self._origins)).with_output_types(
            pa.Table
        )


# --------------------------------------------------------------------------- files


def _file_originals(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    if _file_state(path) != (origin.size, origin.mtime):
        raise _Unavailable("file changed since the pipeline was built")
    return _FILE_READERS[origin.format_name](path, origin, offsets)


def _file_state(path: str) -> tuple[int, float]:
    """``path``'s size and modification time (local ``stat``, or Beam's FileSystems)."""
    from connectors.files.base import is_remote

    try:
        if not is_remote(path):
            stat = os.stat(path)
            return stat.st_size, stat.st_mtime
        from apache_beam.io.filesystems import FileSystems

        [result] = FileSystems.match([path])
        meta = result.metadata_list[0]
        return meta.size_in_bytes, meta.last_updated_in_seconds
    except (OSError, IndexError) as exc:
        raise _Unavailable(f"file no longer readable: {exc}") from exc


class _Cache:
    """Per-process LRU of what re-reading needs, bounded by entries and by bytes (``nbytes``).

    Building happens under the lock, so two worker threads never index the same file twice.
    """

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = self._entries[key] = build()
            while len(self._entries) > 1 and (
                len(self._entries) > self._max_entries
                or sum(getattr(v, "nbytes", 0) for v in self._entries.values()) > self._max_bytes
            ):
                self._entries.popitem(last=False)
            return value


_CACHE = _Cache(MAX_CACHED_BYTES, MAX_CACHED_ENTRIES)


def _cached(kind: str, path: str, origin: FileOrigin, build: Callable[[], Any]) -> Any:
    return _CACHE.get((kind, path, origin.size, origin.mtime), build)


def _map(path: str) -> mmap.mmap | bytes:
    """``path``'s bytes, memory-mapped. A remote file is first copied to a local temporary
    file, removed at once: the mapping keeps its data until the mapping is dropped."""
    from connectors.files.base import is_remote, open_input

    if not is_remote(path):
        return _map_local(path)
    with tempfile.NamedTemporaryFile(prefix="beamwright-original-") as copy:
        with open_input(path) as stream:
            shutil.copyfileobj(stream, copy, _SCAN_BYTES)
        copy.flush()
        return _map_local(copy.name)


def _map_local(path: str) -> mmap.mmap | bytes:
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""  # mmap refuses empty files
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def _text(raw: bytes | None) -> str | None:
    """``raw`` as text when it is UTF-8; None (keep the JSON payload) when it is not."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _in_range(offsets: Iterable[int], count: int) -> tuple[list[int], Found]:
    """The distinct wanted 1-based ``offsets`` within ``count`` records, sorted, and why the
    others have no record."""
    wanted = sorted(set(offsets))
    past = {o: f"offset {o} is past the end of the file ({count})" for o in wanted}
    valid = [o for o in wanted if 1 <= o <= count]
    for o in valid:
        del past[o]
    return valid, past


def _by_unit(firsts: np.ndarray, count: int, offsets: Iterable[int]) -> tuple[dict, Found]:
    """Wanted 1-based ``offsets`` grouped by the unit (Avro block, row group) that ``firsts``
    says holds them, and why the offsets out of range have no record."""
    valid, found = _in_range(offsets, count)
    units: dict[int, list[int]] = {}
    for unit, offset in zip(np.searchsorted(firsts, valid, side="right") - 1, valid, strict=True):
        units.setdefault(int(unit), []).append(offset)
    return units, found


# --------------------------------------------------------------------------- JSONL and CSV


class _Lines:
    """A text file's lines: line ``n`` (1-based) is ``data[starts[n - 1]:starts[n]]``, its line
    break included. Breaks are ``\\n`` (``\\r\\n`` is one), and bare ``\\r`` for CSV."""

    def __init__(self, path: str, bare_cr: bool) -> None:
        self.data = _map(path)
        self.starts = _line_starts(self.data, bare_cr)
        self.nbytes = self.starts.nbytes
        self.count = len(self.starts) - 1

    def get(self, first: int, last: int | None = None) -> bytes:
        """Lines ``first`` to ``last`` (default: ``first``), line breaks included."""
        return self.data[self.starts[first - 1] : self.starts[last or first]]


def _line_starts(data: mmap.mmap | bytes, bare_cr: bool) -> np.ndarray:
    """Where each line starts, then the size: one vectorised scan per block of the file."""
    view = np.frombuffer(data, np.uint8)
    size = len(view)
    parts = [np.zeros(1, np.int64)]
    for start in range(0, size, _SCAN_BYTES):
        block = view[start : start + _SCAN_BYTES]
        ends = np.flatnonzero(block == _NEWLINE) + start
        if bare_cr and data.find(b"\r", start, start + _SCAN_BYTES) >= 0:
            returns = np.flatnonzero(block == _CR) + start
            after = np.minimum(returns + 1, size - 1)
            bare = returns[(returns + 1 == size) | (view[after] != _NEWLINE)]
            ends = np.union1d(ends, bare)
        parts.append(ends.astype(np.int64) + 1)
    starts = np.concatenate(parts)
    return starts if starts[-1] == size else np.append(starts, size)


def _jsonl(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    """Lines as the JSONL reader cut them: without ``\\n``/``\\r\\n``, BOM removed on line 1."""
    lines = _cached("lines", path, origin, lambda: _Lines(path, bare_cr=False))
    valid, found = _in_range(offsets, lines.count)
    wanted = np.array(valid, np.int64)
    bounds = zip(lines.starts[wanted - 1].tolist(), lines.starts[wanted].tolist(), strict=True)
    for line, (start, end) in zip(valid, bounds, strict=True):
        raw = lines.data[start:end]
        if raw.endswith(b"\n"):
            raw = raw[:-1].removesuffix(b"\r")
        if line == 1:
            raw = raw.removeprefix(_BOM)
        found[line] = Original(raw, _text(raw))
    return found


def _csv(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    """Records starting on the wanted lines, whole, as the CSV reader's rejects carry them."""
    from connectors.files.registry import make_format

    fmt = make_format("csv", **origin.options)
    lines = _cached("csv-lines", path, origin, lambda: _Lines(path, bare_cr=True))
    dialect = json.dumps({"delimiter": fmt.delimiter, "quote_char": fmt.quote_char})
    attributes: tuple[tuple[str, str | None], ...] = (("csv.dialect", dialect),)
    if fmt.header and lines.count:
        header = _csv_record(lines, 1, fmt.delimiter, fmt.quote_char)
        attributes = (("csv.header", header.decode("utf-8", "replace")), *attributes)
    valid, found = _in_range(offsets, lines.count)
    for line in valid:
        raw = _csv_record(lines, line, fmt.delimiter, fmt.quote_char)
        found[line] = Original(raw, _text(raw), attributes)
    return found


def _csv_record(lines: _Lines, line: int, delimiter: str, quote_char: str) -> bytes:
    """The record starting on ``line``, every line of it, without its final line break."""
    from connectors.files.csvheader import record_length
    from connectors.files.csvinput import LINE_BREAKS

    data, last = lines.get(line), line
    if line == 1:
        data = data.removeprefix(_BOM)
    if quote_char.encode("ascii") in data:  # else the record is this line
        while (
            length := record_length(data, delimiter, quote_char, at_end=last == lines.count)
        ) is None and last < lines.count:
            last += 1
            data += lines.get(last)
        data = data if length is None else data[:length]
    for line_break in LINE_BREAKS:
        if data.endswith(line_break):
            return data[: -len(line_break)]
    return data


# --------------------------------------------------------------------------- Avro and Parquet


class _AvroBlocks:
    """An Avro file's header and blocks: block ``i`` holds records from ``firsts[i]`` (1-based)
    and is ``data[starts[i]:ends[i]]`` (record count, size, compressed data, sync marker)."""

    def __init__(self, path: str) -> None:
        import fastavro
        from fastavro.read import SYNC_SIZE
        from fastavro.schema import fingerprint, to_parsing_canonical_form

        self.data = _map(path)
        if not self.data:
            raise _Unavailable("the file is empty")
        self.data.seek(0)
        reader = fastavro.block_reader(self.data)  # reads the header only
        self.header = self.data[: self.data.tell()]
        self.schema = fastavro.parse_schema(reader.writer_schema)
        canonical = to_parsing_canonical_form(reader.writer_schema)
        self.fingerprint = fingerprint(canonical, "CRC-64-AVRO")
        firsts, starts, ends = [], [], []
        record, position = 1, len(self.header)
        while position < len(self.data):
            count, at = _avro_long(self.data, position)
            size, at = _avro_long(self.data, at)
            firsts.append(record)
            starts.append(position)
            position = at + size + SYNC_SIZE
            ends.append(position)
            record += count
        self.firsts = np.array(firsts, np.int64)
        self.starts, self.ends = starts, ends
        self.count = record - 1
        self.nbytes = self.firsts.nbytes * 3

    def records(self, block: int) -> Iterable[tuple[bytes, Any]]:
        """Each datum of ``block``: its bytes as stored (decompressed) and its value."""
        import fastavro

        blob = self.header + self.data[self.starts[block] : self.ends[block]]
        [decoded] = fastavro.block_reader(io.BytesIO(blob))
        body = decoded.bytes_
        raw = body.getvalue()
        for _ in range(decoded.num_records):
            start = body.tell()
            datum = fastavro.schemaless_reader(body, self.schema, None)
            yield raw[start : body.tell()], datum


def _avro_long(data: mmap.mmap | bytes, position: int) -> tuple[int, int]:
    """The zig-zag varint at ``position`` (Avro's long) and the position after it."""
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), position


def _avro(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    from connectors.files.jsonencode import strict_json

    blocks = _cached("avro", path, origin, lambda: _AvroBlocks(path))
    attributes = (("avro.schema_fingerprint", blocks.fingerprint),)
    units, found = _by_unit(blocks.firsts, blocks.count, offsets)
    for block, wanted in units.items():
        first = int(blocks.firsts[block])
        keep = set(wanted)
        for index, (raw, datum) in enumerate(blocks.records(block)):
            if first + index in keep:
                found[first + index] = Original(raw, strict_json(datum), attributes)
    return found


class _ParquetRows:
    """A Parquet file opened for reading rows by index: row group ``g`` starts at ``firsts[g]``."""

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(pa.BufferReader(pa.py_buffer(_map(path))))
        metadata = self.file.metadata
        sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        self.firsts = np.cumsum([1, *sizes])[:-1]
        self.count = sum(sizes)


def _parquet(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    """Rows as stored, as strict JSON; decoded row groups are cached (dead letters of one
    group usually come in several batches)."""
    from connectors.files.jsonencode import json_objects

    rows = _cached("parquet", path, origin, lambda: _ParquetRows(path))
    units, found = _by_unit(rows.firsts, rows.count, offsets)
    for group, wanted in units.items():
        table = _cached(f"parquet-{group}", path, origin, partial(rows.file.read_row_group, group))
        local = pa.array([o - int(rows.firsts[group]) for o in wanted], pa.int64())
        texts = json_objects(table.take(local), strict=True).to_pylist()
        found.update({o: Original(None, text) for o, text in zip(wanted, texts, strict=True)})
    return found


def _alpha_vantage(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    """Data points by their ordinal in the series, as ``{timestamp: point}`` JSON."""
    from connectors.files.alphavantage import parse_response
    from connectors.files.base import open_input

    with open_input(path) as stream:
        _, series, _ = parse_response(stream.read(), path)
    points = list(series.items())
    valid, found = _in_range(offsets, len(points))
    for ordinal in valid:
        raw = json.dumps(dict([points[ordinal - 1]])).encode("utf-8")
        found[ordinal] = Original(raw, _text(raw))
    return found


def _document(path: str, origin: FileOrigin, offsets: list[int]) -> Found:
    """A ``document`` source's file is one record (position 1): its bytes, whatever the
    format (PDF, DOCX, an image, text); the payload string stays the document row the step
    saw (its text, type, fields), the same for every format."""
    valid, found = _in_range(offsets, 1)
    if valid:
        data = bytes(_map(path))
        found.update({o: Original(data, None) for o in valid})
    return found


_FILE_READERS: dict[str, Callable[[str, FileOrigin, list[int]], Found]] = {
    "document": _document,
    "jsonl": _jsonl,
    "csv": _csv,
    "avro": _avro,
    "parquet": _parquet,
    "yahoo_csv": lambda path, origin, offsets: _csv(path, replace(origin, options={}), offsets),
    "alpha_vantage_json": _alpha_vantage,
    "bloomberg_dl": _jsonl,  # one record per physical line
}


# --------------------------------------------------------------------------- Kafka

_BROKER_RETRY_S = 60.0
_unreachable: dict[str, tuple[float, str]] = {}
"""Brokers that just failed a fetch, so later batches do not wait out the timeout again."""


def _kafka_originals(origin: KafkaOrigin, topic: str, partition: int, offsets: list[int]) -> Found:
    import time

    from connectors.kafka.fetch import attributes_of, fetch_records

    servers = origin.bootstrap_servers
    failed = _unreachable.get(servers)
    if failed and time.monotonic() - failed[0] < _BROKER_RETRY_S:
        raise _Unavailable(failed[1])
    try:
        records = fetch_records(servers, origin.consumer_config, topic, partition, offsets)
    except Exception as exc:
        _unreachable[servers] = (time.monotonic(), f"{type(exc).__name__}: {exc}"[:300])
        raise
    textual = origin.value_format in ("json", "string")  # Avro bytes may happen to be UTF-8
    return {
        offset: Original(
            record.value,
            _text(record.value) if textual else None,
            tuple((a["key"], a["value"]) for a in attributes_of(record)),
        )
        for offset, record in records.items()
    }
