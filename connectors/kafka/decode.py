"""Message values to Arrow rows, a whole batch at a time: JSON, Avro, Confluent Avro, bytes, text.

A decoder gets the values of a batch of messages (never null: those are screened out before)
and returns tables of decoded rows, each row tagged with the index of its value, plus a
:class:`Failure` for every value it could not decode. Nothing here knows about Kafka messages,
offsets or Beam; :mod:`connectors.kafka.batch` maps indices back to messages.

- ``json``: one JSON object per value, decoded in bulk by :func:`connectors.files.jsondecode.decode_lines`
  (pyarrow's JSON reader, with its screens and per-line fallback). A raw line break can only
  be whitespace in valid JSON, so values holding one are flattened to a single line first
  (the dead letter keeps the original bytes). An empty or whitespace-only value, which the
  JSON Lines reader skips as a blank line, fails with rule ``empty_value``.
- ``avro``: schemaless Avro (no container, no header) written with one known schema.
- ``confluent_avro``: Confluent's wire format: magic byte ``0``, a 4-byte big-endian schema id,
  then schemaless Avro written with that registry schema. Values are grouped by schema id; an
  optional reader schema gives every row the same columns (Avro schema resolution).
- ``bytes`` / ``string``: the raw value in a ``value`` column (``string`` rejects invalid UTF-8).

fastavro stops reading when the record is complete, so a value with bytes left over does not
match its schema (a wrong schema id, a corrupt length): it is rejected rather than half-read.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import fastavro
import pyarrow as pa

from connectors.files.avro import _converter
from connectors.files.avroschema import InvalidAvroSchema, avro_schema_to_arrow
from connectors.files.base import is_utf8
from connectors.files.jsondecode import decode_lines
from connectors.kafka.schema_registry import (
    SchemaRegistry,
    UnknownSchemaError,
    UnsupportedSchemaError,
)

VALUE_FORMATS = ("json", "avro", "confluent_avro", "bytes", "string")
VALUE_COLUMN = "value"
"""The column holding the value for the ``bytes`` and ``string`` formats."""

WIRE_HEADER_BYTES = 5  # Confluent: magic byte + 4-byte schema id
_MAGIC = 0
_LINE_BREAKS = bytes.maketrans(b"\r\n", b"  ")


@dataclass(frozen=True)
class Failure:
    """A value that could not be decoded: its index in the batch, a rule and a message."""

    index: int
    rule: str
    error: str


@dataclass
class Decoded:
    """Decoded rows in one or more tables (one per schema), with each row's value index."""

    parts: list[tuple[pa.Table, pa.Array]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class ValueDecoder(Protocol):
    def decode(self, values: Sequence[bytes]) -> Decoded: ...


class JsonDecoder:
    """One JSON object per value, parsed in bulk by pyarrow."""

    def decode(self, values: Sequence[bytes]) -> Decoded:
        if not values:
            return Decoded()
        joined = b"\n".join(values)
        if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
            values = [v.translate(_LINE_BREAKS) if b"\n" in v or b"\r" in v else v for v in values]
        lines = [v + b"\n" for v in values]
        result = decode_lines(lines, 0, "")
        failures = [Failure(r.offset, r.rule, r.error) for r in result.rejects]
        indices = result.offsets
        if not isinstance(indices, pa.Array):
            indices = pa.array(indices, pa.int64())
        if len(indices) + len(failures) < len(values):
            failures = _with_empty_values(failures, indices, len(values))
        parts = [(result.table, indices)] if len(indices) else []
        return Decoded(parts, failures)


class AvroDecoder:
    """Schemaless Avro values written with ``writer_schema``, read as ``reader_schema``.

    Raises ``InvalidAvroSchema`` at construction when the rows' schema is not a record.
    """

    def __init__(
        self, writer_schema: dict, reader_schema: dict | None = None, *, skip: int = 0
    ) -> None:
        rows_schema = reader_schema or writer_schema
        self.arrow_schema = avro_schema_to_arrow(rows_schema)
        self._writer = fastavro.parse_schema(writer_schema)
        self._reader = fastavro.parse_schema(reader_schema) if reader_schema else None
        self._convert = _converter(rows_schema, {})
        self._skip = skip

    def decode(self, values: Sequence[bytes]) -> Decoded:
        records: list[dict] = []
        indices: list[int] = []
        failures: list[Failure] = []
        for index, value in enumerate(values):
            stream = io.BytesIO(value)
            stream.seek(self._skip)
            try:
                record = fastavro.schemaless_reader(stream, self._writer, self._reader)
            except Exception as exc:  # fastavro raises many unrelated types on bad input
                failures.append(Failure(index, "avro_decode", _avro_error(exc)))
                continue
            left = len(value) - stream.tell()
            if left:
                failures.append(
                    Failure(
                        index,
                        "avro_decode",
                        f"{left} bytes left over after the record: the value does not match the schema",
                    )
                )
                continue
            records.append(record if self._convert is None else self._convert(record))
            indices.append(index)
        if not records:
            return Decoded([], failures)
        table = pa.Table.from_pylist(records, schema=self.arrow_schema)
        return Decoded([(table, pa.array(indices, pa.int64()))], failures)


class ConfluentAvroDecoder:
    """Confluent wire-format Avro: the schema of each value is looked up by its id."""

    def __init__(self, registry: SchemaRegistry, reader_schema: dict | None = None) -> None:
        self._registry = registry
        self._reader_schema = reader_schema
        self._decoders: dict[int, AvroDecoder] = {}

    def decode(self, values: Sequence[bytes]) -> Decoded:
        groups: dict[int, list[int]] = {}
        result = Decoded()
        for index, value in enumerate(values):
            if len(value) < WIRE_HEADER_BYTES or value[0] != _MAGIC:
                result.failures.append(Failure(index, "wire_format", _wire_error(value)))
                continue
            groups.setdefault(int.from_bytes(value[1:WIRE_HEADER_BYTES], "big"), []).append(index)
        for schema_id, group in groups.items():
            try:
                decoder = self._decoder(schema_id)
            except UnknownSchemaError as exc:
                result.failures.extend(Failure(i, "unknown_schema", str(exc)) for i in group)
                continue
            except (UnsupportedSchemaError, InvalidAvroSchema) as exc:
                error = f"schema id {schema_id}: {exc}"
                result.failures.extend(Failure(i, "unsupported_schema", error) for i in group)
                continue
            decoded = decoder.decode([values[i] for i in group])
            positions = pa.array(group, pa.int64())
            result.parts.extend((table, positions.take(rows)) for table, rows in decoded.parts)
            result.failures.extend(
                Failure(group[f.index], f.rule, f"schema id {schema_id}: {f.error}")
                for f in decoded.failures
            )
        result.parts = merge_parts(result.parts)
        return result

    def _decoder(self, schema_id: int) -> AvroDecoder:
        decoder = self._decoders.get(schema_id)
        if decoder is None:
            writer = self._registry.schema(schema_id)
            decoder = AvroDecoder(writer, self._reader_schema, skip=WIRE_HEADER_BYTES)
            self._decoders[schema_id] = decoder
        return decoder


class BytesDecoder:
    """The raw value, in a binary ``value`` column."""

    def decode(self, values: Sequence[bytes]) -> Decoded:
        table = pa.table({VALUE_COLUMN: pa.array(values, pa.binary())})
        return Decoded([(table, pa.array(range(len(values)), pa.int64()))], [])


class StringDecoder:
    """The value as UTF-8 text, in a string ``value`` column."""

    def decode(self, values: Sequence[bytes]) -> Decoded:
        raw = pa.array(values, pa.binary())
        try:
            text = raw.cast(pa.string())
            indices = pa.array(range(len(values)), pa.int64())
            failures: list[Failure] = []
        except pa.ArrowInvalid:
            good = [i for i, value in enumerate(values) if is_utf8(value)]
            failures = [
                Failure(i, "encoding", "the value is not valid UTF-8")
                for i in sorted(set(range(len(values))) - set(good))
            ]
            indices = pa.array(good, pa.int64())
            text = raw.take(indices).cast(pa.string())
        parts = [(pa.table({VALUE_COLUMN: text}), indices)] if len(indices) else []
        return Decoded(parts, failures)


def make_decoder(
    value_format: str, avro_schema: dict | None, registry: SchemaRegistry | None
) -> ValueDecoder:
    """The decoder for a source's settings (checked when the transform was built)."""
    if value_format == "json":
        return JsonDecoder()
    if value_format == "avro":
        assert avro_schema is not None
        return AvroDecoder(avro_schema)
    if value_format == "confluent_avro":
        assert registry is not None
        return ConfluentAvroDecoder(registry, avro_schema)
    if value_format == "bytes":
        return BytesDecoder()
    if value_format == "string":
        return StringDecoder()
    raise ValueError(f"value_format must be one of {VALUE_FORMATS}, not {value_format!r}")


def merge_parts(parts: list[tuple[pa.Table, pa.Array]]) -> list[tuple[pa.Table, pa.Array]]:
    """Parts joined into one table when their schemas join (evolved schemas usually do)."""
    if len(parts) < 2:
        return parts
    try:
        table = pa.concat_tables([t for t, _ in parts], promote_options="permissive")
    except pa.ArrowException:
        return parts
    return [(table, pa.concat_arrays([i for _, i in parts]))]


def _with_empty_values(failures: list[Failure], decoded: pa.Array, n: int) -> list[Failure]:
    """``failures`` plus an ``empty_value`` failure for each value neither decoded nor failed.

    ``decode_lines`` skips blank lines, the JSON Lines rule; a message is not a line of a file,
    and an empty or whitespace-only value is a message too. Only batches holding one pay this.
    """
    accounted = set(decoded.to_pylist()) | {f.index for f in failures}
    return failures + [
        Failure(i, "empty_value", "the value is empty or only whitespace: no JSON object")
        for i in range(n)
        if i not in accounted
    ]


def _avro_error(exc: Exception) -> str:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (EOFError, IndexError)):  # fastavro's reader ran past the end
        return f"the value ends before the record does (truncated, or another schema): {detail}"
    return f"cannot decode the Avro record: {detail}"


def _wire_error(value: bytes) -> str:
    if len(value) < WIRE_HEADER_BYTES:
        return (
            f"{len(value)} bytes is too short for Confluent's wire format (magic byte + schema id)"
        )
    return f"magic byte is 0x{value[0]:02x}, not 0x00: not Confluent's wire format"
