"""CSV files (TSV with ``delimiter="\\t"``). Named ``csvfile`` so it never shadows stdlib ``csv``.

Reading: every column is a nullable string (values in ``null_values`` become null, quoted or
not), so that type coercion happens in one place, the validation step. Quoted values may hold
delimiters, quotes (doubled) and line breaks. With ``header=False`` the columns are named
``f0, f1, ...``. A leading UTF-8 byte-order mark is ignored.

Offsets are the exact 1-based physical line on which the record starts, counting the header
(so the first data row is line 2), also when quoted values hold line breaks or the file has
empty lines. Lines end where pyarrow ends records: at ``\\n``, ``\\r\\n`` or a bare ``\\r``.
Empty lines are skipped (neither rows nor rejects); a line of only spaces is a record.

Rejects (payload = the record's raw bytes without its final line break):

- ``column_count``: ``expected 6 columns, got 8``;
- ``encoding``: the record holds invalid UTF-8 (the error names the line and byte); this wins
  over ``column_count`` when both apply;
- ``parse``: a quote that is never closed, so the record runs to the end of the file.

A record larger than ``csvread.BLOCK_BYTES`` (16 MiB), in practice a quote never closed in a
big file, cannot be parsed at all: ``CorruptFileError``. So does a first line that is not valid
UTF-8, empty, or ends inside a quoted field, since the columns cannot be known, and a header
that names a column twice, since its values could not be told apart.

A 0-byte file and a file holding only its header are files of no records: they read as no
rows (valid data, unlike a 0-byte Parquet or Avro file, whose container is missing).

Writing: a header (if ``header``) then one line per row through pyarrow's CSV writer. Strings
are quoted, nulls are empty fields (so with the default ``null_values`` an empty string reads
back as null), temporal values are ISO-8601, binary is base64 and nested values are JSON text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.files.base import ReadChunk, TableWriter, check_batch_size, conform
from connectors.files.csvread import CsvDialect, read_csv
from connectors.files.jsonencode import as_text_if_scalar, json_text


@dataclass(frozen=True)
class CsvFormat:
    """CSV with the given delimiter, header presence, quote character and null spellings."""

    delimiter: str = ","
    header: bool = True
    quote_char: str = '"'
    null_values: tuple[str, ...] = ("",)

    name: ClassVar[str] = "csv"
    extensions: ClassVar[tuple[str, ...]] = (".csv", ".tsv")

    def __post_init__(self) -> None:
        for option in ("delimiter", "quote_char"):
            value = getattr(self, option)
            if len(value) != 1 or not value.isascii() or value in "\r\n":
                raise ValueError(
                    f"CSV {option} must be one ASCII character other than a line break,"
                    f" got {value!r}"
                )
        if self.delimiter == self.quote_char:
            raise ValueError("CSV delimiter and quote_char must differ")
        object.__setattr__(self, "null_values", tuple(self.null_values))

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        """Chunks of at most ``batch_size`` rows of ``path``; see the module docstring."""
        check_batch_size(batch_size)
        dialect = CsvDialect(self.delimiter, self.quote_char, self.header, self.null_values)
        return read_csv(path, dialect, batch_size)

    def open_writer(self, sink: BinaryIO) -> CsvWriter:
        if self.quote_char != '"':
            raise ValueError("the CSV writer quotes with '\"' only (pyarrow's CSV writer)")
        return CsvWriter(sink, self)


class CsvWriter(TableWriter):
    """CSV lines via pyarrow; the first table fixes the columns, later ones are fitted to it."""

    def __init__(self, sink: BinaryIO, fmt: CsvFormat) -> None:
        super().__init__(sink)
        self._options = pacsv.WriteOptions(include_header=fmt.header, delimiter=fmt.delimiter)
        self._writer: pacsv.CSVWriter | None = None
        self._schema: pa.Schema | None = None

    def _write(self, table: pa.Table) -> None:
        text = _as_text(table)
        if self._schema is None:
            self._schema = text.schema
            self._writer = pacsv.CSVWriter(self._sink, self._schema, write_options=self._options)
        self._writer.write_table(conform(text, self._schema))

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._sink.flush()


def _as_text(table: pa.Table) -> pa.Table:
    """Every column as strings, so that all values are written the way this module documents."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            columns.append(json_text(column))
        else:
            columns.append(as_text_if_scalar(column).cast(pa.string()))
    return pa.Table.from_arrays(columns, names=table.column_names)
