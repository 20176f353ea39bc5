"""Avro container files, read and written with fastavro.

Offsets are the 1-based record index within the file. Records are decoded by fastavro and
converted to Arrow with the schema ``avro_schema_to_arrow`` derives from the file's writer
schema (see ``avroschema`` for the type mapping). A 0-byte file raises ``CorruptFileError`` (a
file without records still has a header), as does a writer schema that repeats a field name
(the Avro spec forbids it; fastavro would silently keep the last value); anything
fastavro cannot decode (not an Avro file, truncated header or block, bad sync marker, corrupt
compressed block) raises ``CorruptFileError``, at open or mid-read. Avro has no footer, so a
file cut exactly at a block boundary is indistinguishable from a shorter file.

Writing uses the ``schema`` option (an Avro record schema) or else derives one from the first
table with ``arrow_schema_to_avro``; tables are cast to the matching Arrow schema first, so a
table that does not fit raises ``ValueError`` naming the fields. Blocks are compressed with
``codec``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO, ClassVar

import fastavro
import fastavro.read
import fastavro.write
import pyarrow as pa

from connectors import records
from connectors.files.avroschema import (
    AvroType,
    InvalidAvroSchema,
    arrow_schema_to_avro,
    avro_compatible,
    avro_schema_to_arrow,
    is_multi_union,
    load_avsc,
    short_name,
)
from connectors.files.base import (
    CorruptFileError,
    ReadChunk,
    TableWriter,
    check_batch_size,
    conform,
    consecutive,
    corrupt_file_errors,
    open_input,
    reject_empty_file,
    require_unique_columns,
)
from connectors.files.jsonencode import value_text

__all__ = ["AvroFormat", "arrow_schema_to_avro", "avro_schema_to_arrow", "load_avsc"]

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class AvroFormat:
    """Avro; ``schema`` (an Avro record schema) fixes what is written, ``codec`` compresses."""

    schema: dict | None = None
    codec: str = "deflate"

    name: ClassVar[str] = "avro"
    extensions: ClassVar[tuple[str, ...]] = (".avro",)

    def __post_init__(self) -> None:
        if self.codec not in fastavro.read.BLOCK_READERS:  # the codecs fastavro knows
            known = ", ".join(sorted(fastavro.read.BLOCK_READERS))
            raise ValueError(f"unknown Avro codec {self.codec!r}; valid codecs: {known}")
        if self.schema is not None:
            fastavro.parse_schema(self.schema)  # fail at configuration, not at the first write

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        """Chunks of at most ``batch_size`` records of ``path``."""
        check_batch_size(batch_size)
        reject_empty_file(path, "Avro")
        with open_input(path) as stream:
            with corrupt_file_errors(path, Exception):  # fastavro raises all sorts on bad input
                reader = fastavro.reader(stream)
            writer_schema = reader.writer_schema
            try:
                schema = avro_schema_to_arrow(writer_schema)
            except InvalidAvroSchema as exc:
                raise CorruptFileError(path, f"its records cannot be read as rows: {exc}") from exc
            require_unique_columns(path, schema)
            convert = _converter(writer_schema, {})
            offset = 1
            while True:
                with corrupt_file_errors(path, Exception):
                    batch = list(islice(reader, batch_size))
                if not batch:
                    return
                if convert is not None:
                    batch = [convert(record) for record in batch]
                rows = pa.Table.from_pylist(batch, schema=schema)
                yield ReadChunk(records.with_positions(rows, path, consecutive(offset, len(batch))))
                offset += len(batch)

    def open_writer(self, sink: BinaryIO) -> AvroWriter:
        return AvroWriter(sink, self)


def _converter(avro_type: AvroType, named: dict[str, Converter | None]) -> Converter | None:
    """What turns fastavro's value into one Arrow accepts (None: nothing to do).

    Only values Arrow cannot take as they come need it: a UUID, and a union of several
    non-null types, which becomes JSON text.
    """
    if is_multi_union(avro_type):
        return value_text
    if isinstance(avro_type, list):  # ["null", T]
        inner = _converter(next(t for t in avro_type if t != "null"), named)
        return None if inner is None else lambda value: None if value is None else inner(value)
    if isinstance(avro_type, str):
        return named.get(short_name(avro_type))
    kind = avro_type.get("type")
    if kind == "string" and avro_type.get("logicalType") == "uuid":
        return str  # fastavro reads a uuid.UUID
    if kind == "record":
        fields = {f["name"]: _converter(f["type"], named) for f in avro_type["fields"]}
        fields = {name: convert for name, convert in fields.items() if convert is not None}
        convert = _record_converter(fields) if fields else None
        named[short_name(avro_type["name"])] = convert
        return convert
    if kind == "array":
        item = _converter(avro_type["items"], named)
        return None if item is None else lambda values: [item(v) for v in values]
    if kind == "map":
        value = _converter(avro_type["values"], named)
        return None if value is None else lambda values: {k: value(v) for k, v in values.items()}
    if isinstance(kind, (dict, list)):
        return _converter(kind, named)
    return None


def _record_converter(fields: dict[str, Converter]) -> Converter:
    def convert(record: dict) -> dict:
        for name, field_converter in fields.items():
            record[name] = field_converter(record[name])
        return record

    return convert


class AvroWriter(TableWriter):
    """Appends records with fastavro's Writer; the container is finished by ``close``."""

    def __init__(self, sink: BinaryIO, fmt: AvroFormat) -> None:
        super().__init__(sink)
        self._format = fmt
        self._writer: fastavro.write.Writer | None = None
        self._arrow_schema: pa.Schema | None = None

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._start(table.schema)
        table = conform(table, self._arrow_schema)
        for record in table.to_pylist(maps_as_pydicts="lossy"):
            self._writer.write(record)

    def _start(self, first_schema: pa.Schema | None) -> None:
        """Write the header, with the configured schema or one derived from ``first_schema``."""
        if self._format.schema is not None:
            avsc, arrow_schema = self._format.schema, avro_schema_to_arrow(self._format.schema)
        else:
            avsc, arrow_schema = arrow_schema_to_avro(first_schema), first_schema
        self._arrow_schema = avro_compatible(arrow_schema)
        self._writer = fastavro.write.Writer(
            self._sink, fastavro.parse_schema(avsc), codec=self._format.codec
        )

    def _finish(self) -> None:
        if self._writer is None and self._format.schema is not None:
            self._start(None)  # no rows, but a valid file with the configured schema
        if self._writer is not None:
            self._writer.flush()
