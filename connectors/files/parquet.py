"""Parquet files, readable by row group so that one file can be split across workers.

Offsets are the 1-based row index within the whole file, also when only some row groups are
read: row group ``g`` starts after the rows of groups ``0 .. g-1`` (from the footer metadata).
Local files are memory-mapped. Any file pyarrow cannot decode (0 bytes, bad magic, truncated
footer, corrupt page), at open or mid-read, raises ``CorruptFileError``; a 0-byte file is not
an empty table, since even a file without rows has a footer. So does a page that decodes into
invalid data (pyarrow does not check that strings are UTF-8, and a corrupt page often yields
bytes that are not): every batch is validated before it is handed on. And so does a schema
that repeats a column name (Arrow would keep both, and the first lookup by name would fail).

Writing: the file's schema is the ``schema`` option or else the first table's schema. Later
tables are cast to it (missing columns become nulls); a table that cannot be cast raises
``ValueError`` naming the fields. A column that is entirely null in the first table is typed
``null`` and cannot take values later, so pass ``schema`` whenever the declared schema is known.
Closing a writer that got no rows writes a valid empty file if ``schema`` is set, else nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import records
from connectors.files.base import (
    ReadChunk,
    TableWriter,
    check_batch_size,
    conform,
    consecutive,
    corrupt_file_errors,
    is_remote,
    open_input,
    require_unique_columns,
)

# What pyarrow raises on a broken file (ValueError: a message holding undecodable bytes).
_DECODE_ERRORS = (pa.ArrowException, OSError, EOFError, ValueError)


@dataclass(frozen=True)
class ParquetFormat:
    """Parquet; ``schema`` fixes the written file's schema (see the module docstring)."""

    compression: str | None = "zstd"
    compression_level: int | None = None
    row_group_size: int | None = None
    schema: pa.Schema | None = None

    name: ClassVar[str] = "parquet"
    extensions: ClassVar[tuple[str, ...]] = (".parquet", ".pq")

    def row_group_count(self, path: str) -> int:
        """How many row groups ``path`` has: the units ``read`` can be split into."""
        with _parquet_file(path) as parquet:
            return parquet.metadata.num_row_groups

    def read(
        self, path: str, batch_size: int, row_groups: Sequence[int] | None = None
    ) -> Iterator[ReadChunk]:
        """Chunks of at most ``batch_size`` rows from ``row_groups`` (default: all), in order."""
        check_batch_size(batch_size)
        with _parquet_file(path) as parquet:
            sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
            starts = list(accumulate(sizes, initial=1))  # offset of each group's first row
            for group in _checked(row_groups, len(sizes)):
                offset = starts[group]
                with corrupt_file_errors(path, *_DECODE_ERRORS):
                    batches = parquet.iter_batches(batch_size=batch_size, row_groups=[group])
                    for batch in batches:
                        rows = pa.Table.from_batches([batch])
                        rows.validate(full=True)  # corrupt pages can decode into invalid UTF-8
                        offsets = consecutive(offset, rows.num_rows)
                        yield ReadChunk(records.with_positions(rows, path, offsets))
                        offset += rows.num_rows

    def open_writer(self, sink: BinaryIO) -> ParquetFileWriter:
        return ParquetFileWriter(sink, self)


@contextmanager
def _parquet_file(path: str) -> Iterator[pq.ParquetFile]:
    """The open file (memory-mapped when local); errors reading its footer, or a footer
    whose schema repeats a column name, raise ``CorruptFileError`` naming the file."""
    with ExitStack() as stack:
        source = stack.enter_context(open_input(path)) if is_remote(path) else path
        with corrupt_file_errors(path, *_DECODE_ERRORS):
            parquet = pq.ParquetFile(source, memory_map=not is_remote(path))
        stack.callback(parquet.close)
        require_unique_columns(path, parquet.schema_arrow)
        yield parquet


def _checked(row_groups: Sequence[int] | None, count: int) -> Sequence[int]:
    if row_groups is None:
        return range(count)
    wrong = [g for g in row_groups if not 0 <= g < count]
    if wrong:
        raise ValueError(f"row groups {wrong} out of range: the file has {count}")
    return row_groups


class ParquetFileWriter(TableWriter):
    """Writes row groups with pq.ParquetWriter; see the module docstring for the schema."""

    def __init__(self, sink: BinaryIO, fmt: ParquetFormat) -> None:
        super().__init__(sink)
        self._format = fmt
        self._writer: pq.ParquetWriter | None = None

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._start(table.schema if self._format.schema is None else self._format.schema)
        table = conform(table, self._writer.schema)
        self._writer.write_table(table, row_group_size=self._format.row_group_size)

    def _start(self, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(
            self._sink,
            schema,
            compression=self._format.compression,
            compression_level=self._format.compression_level,
        )

    def _finish(self) -> None:
        if self._writer is None and self._format.schema is not None:
            self._start(self._format.schema)
        if self._writer is not None:
            self._writer.close()
