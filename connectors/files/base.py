"""What every file format shares: the reader/writer contracts, file opening and small helpers.

A format turns a file into ``ReadChunk``s of at most ``batch_size`` rows, each row carrying its
source position (``records.with_positions``), plus the records it could not decode as
``records.Reject``s. The project's rule is that every record read is accounted for: it comes
back as a row or as a reject with a reason. A file whose container is broken (a truncated
Parquet footer, a corrupt Avro block) cannot be accounted for record by record, so the reader
raises ``CorruptFileError`` naming the file instead of letting a library's raw exception escape.

Local paths are opened with the builtin ``open``; URLs with a scheme (``gs://``, ``s3://``, ...)
go through Beam's ``FileSystems``, imported lazily so that this package does not import Beam.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from connectors import records
from connectors.errors import RunError
from connectors.records import Reject

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_LOCAL_BUFFER_BYTES = 1 << 20  # big reads: the readers are throughput-bound


class CorruptFileError(RunError):
    """A file whose structure is broken, so its records cannot be read one by one."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"cannot read {path}: {detail}")
        self.path = path
        self.detail = detail


@dataclass
class ReadChunk:
    """Up to ``batch_size`` decoded rows (with position columns) and the records that failed."""

    rows: pa.Table
    rejects: list[Reject] = field(default_factory=list)


class FileWriter(Protocol):
    """Writes tables into one file; ``write`` ignores the position columns.

    ``close`` finishes the file (footer, last block) but never closes the sink it was given:
    the caller opened it and closes it.
    """

    rows_written: int

    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class FileFormat(Protocol):
    """A file format: reads a path in chunks and writes tables to a binary sink.

    A format whose rows are independent lines may also offer ``encode_rows(table) -> pa.Array``
    (each row's bytes as text) and ``write_encoded(sink, rows)``, so one table split into many
    files is encoded once (``connectors.panes.PaneFiles.stage``).
    """

    name: str
    extensions: tuple[str, ...]

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]: ...

    def open_writer(self, sink: BinaryIO) -> FileWriter: ...


def is_remote(path: str) -> bool:
    """True for URLs with a scheme, which only Beam's FileSystems can open."""
    return bool(_SCHEME.match(path))


def open_input(path: str) -> BinaryIO:
    """Open ``path`` for binary reading, locally or through Beam's FileSystems."""
    if not is_remote(path):
        return open(path, "rb", buffering=_LOCAL_BUFFER_BYTES)
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_output(path: str) -> BinaryIO:
    """Create ``path`` for binary writing, locally or through Beam's FileSystems."""
    if not is_remote(path):
        return open(path, "wb", buffering=_LOCAL_BUFFER_BYTES)
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def is_empty_file(path: str) -> bool:
    """True for a 0-byte file."""
    if is_remote(path):
        with open_input(path) as stream:
            return not stream.read(1)
    return os.path.getsize(path) == 0


def reject_empty_file(path: str, format_label: str) -> None:
    """Raise ``CorruptFileError`` for a 0-byte file of a container format (Parquet, Avro).

    Every finished Parquet or Avro file holds a footer or header, even with no rows, so a
    0-byte one is a copy or write that never completed. Reading it as no rows would let a run
    end COMPLETE having silently read nothing from it. (A 0-byte CSV or JSONL file is valid:
    text formats have no container, so it is a file of no records.)
    """
    if is_empty_file(path):
        raise CorruptFileError(
            path,
            f"the file is empty (0 bytes); every {format_label} file, even one without rows,"
            " has a header, so this one was never completely written",
        )


def require_unique_columns(path: str, schema: pa.Schema) -> None:
    """Raise ``CorruptFileError`` naming ``path`` and every column name used more than once.

    Parquet, Avro and CSV headers can repeat a name; Arrow keeps both columns, and the first
    lookup by name fails the whole run (``Field "amount" exists 2 times``) without naming the
    file. Names inside structs are checked too (shown dotted: ``customer.id``).
    """
    repeated = _repeated_names(list(schema), "")
    if repeated:
        shown = ", ".join(f"{name!r} ({count} times)" for name, count in repeated)
        raise CorruptFileError(
            path, f"duplicate column names: {shown}; every column needs a name of its own"
        )


def _repeated_names(fields: list[pa.Field], prefix: str) -> list[tuple[str, int]]:
    counts = Counter(f.name for f in fields)
    repeated = [(prefix + name, count) for name, count in counts.items() if count > 1]
    for f in fields:
        if pa.types.is_nested(f.type):
            children = [f.type.field(i) for i in range(f.type.num_fields)]
            repeated += _repeated_names(children, f"{prefix}{f.name}.")
    return repeated


@contextmanager
def corrupt_file_errors(path: str, *errors: type[BaseException]) -> Iterator[None]:
    """Re-raise ``errors`` from a decoding library as ``CorruptFileError`` naming ``path``.

    A missing or unreadable file is not a corrupt one, so those OS errors pass through.
    """
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError, CorruptFileError):
        raise
    except errors as exc:
        raise CorruptFileError(path, f"{type(exc).__name__}: {exc}") from exc


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


@lru_cache(maxsize=8)
def _ramp(count: int) -> pa.Array:
    return pa.array(range(count), pa.int64())


def consecutive(first: int, count: int) -> pa.Array:
    """The offsets ``first, first + 1, ...``, built with one vectorised add (no Python loop)."""
    return pc.add(_ramp(count), pa.scalar(first, pa.int64()))


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (pyarrow would otherwise fail or keep bad bytes)."""
    if data.isascii():  # much cheaper than decoding, and the common case
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``, so later batches land in a file whose schema is fixed.

    Batches decoded from JSON or CSV drift: a column may be missing from one batch, or be
    null-typed in one and string in the next. Missing columns become nulls and types are cast;
    a column the file has no room for, or a value that cannot be cast, raises ``ValueError``
    naming every field that differs.
    """
    if table.schema.equals(schema):
        return table
    problems = []
    extra = [name for name in table.column_names if name not in schema.names]
    if extra:
        problems.append(f"columns not in the file's schema: {', '.join(extra)}")
    columns = []
    for target in schema:
        if target.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, target.type))
            continue
        column = table.column(target.name)
        try:
            columns.append(column.cast(target.type))
        except pa.ArrowException as exc:
            hint = ""
            if pa.types.is_null(target.type):
                hint = (
                    " (it was entirely null in the first batch written, so the file typed it"
                    " as null; give the format an explicit schema)"
                )
            problems.append(
                f"{target.name}: cannot cast {column.type} to {target.type}{hint}: {exc}"
            )
    if problems:
        raise ValueError("batch does not fit the file's schema: " + "; ".join(problems))
    return pa.Table.from_arrays(columns, schema=schema)


class TableWriter(ABC):
    """Base of the format writers: drops position columns, counts rows, finishes once.

    Writers never close the sink they were given: whoever opened it (for example with
    ``open_output``) closes it after ``close()`` has written the format's trailer. A sink that
    keeps positions in its output sets ``keep_positions`` before the first write.
    """

    keep_positions = False

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._closed = False
        self.rows_written = 0

    def write(self, table: pa.Table) -> None:
        if self._closed:
            raise ValueError("write() after close()")
        if not self.keep_positions:
            table = records.strip_positions(table)
        self._write(table)
        self.rows_written += table.num_rows

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finish()

    @abstractmethod
    def _write(self, table: pa.Table) -> None:
        """Encode ``table`` (user columns only) into the sink."""

    @abstractmethod
    def _finish(self) -> None:
        """Write whatever the format needs after the last row (footer, last block)."""
