"""Arrow rows to Kafka message values, for the sink: JSON, schemaless Avro, Confluent Avro.

JSON is built column-wise with Arrow kernels (:func:`connectors.files.jsonencode.json_objects`).
Avro is written row by row with fastavro's schemaless writer; a row that does not fit the
schema (a null in a non-null field, text in a number field) is a failure of that row only, so
the sink dead-letters it and writes the others. Confluent's wire format prefixes each value
with the magic byte ``0`` and the schema's 4-byte registry id.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Protocol

import fastavro
import pyarrow as pa

from connectors.files.avroschema import avro_compatible
from connectors.files.jsonencode import json_objects

ENCODE_FORMATS = ("json", "avro", "confluent_avro")


@dataclass
class Encoded:
    """One value per row (None where the row failed) and each failed row's error."""

    values: list[bytes | None]
    failures: dict[int, str] = field(default_factory=dict)


class ValueEncoder(Protocol):
    def encode(self, table: pa.Table) -> Encoded: ...


class JsonEncoder:
    """Each row as one JSON object (UTF-8)."""

    def encode(self, table: pa.Table) -> Encoded:
        return Encoded(json_objects(table).cast(pa.binary()).to_pylist())


class AvroEncoder:
    """Each row as schemaless Avro with ``schema``, after ``prefix`` (Confluent's header)."""

    def __init__(self, schema: dict, prefix: bytes = b"") -> None:
        self._schema = fastavro.parse_schema(schema)
        self._prefix = prefix

    def encode(self, table: pa.Table) -> Encoded:
        rows = table.cast(avro_compatible(table.schema)).to_pylist(maps_as_pydicts="lossy")
        result = Encoded([])
        for index, row in enumerate(rows):
            stream = io.BytesIO()
            stream.write(self._prefix)
            try:
                fastavro.schemaless_writer(stream, self._schema, row)
            except Exception as exc:  # fastavro raises several types for values that do not fit
                result.values.append(None)
                result.failures[index] = (
                    f"row does not fit the Avro schema: {type(exc).__name__}: {exc}"
                )
                continue
            result.values.append(stream.getvalue())
        return result


def confluent_prefix(schema_id: int) -> bytes:
    """Confluent's wire-format header: magic byte 0 and the big-endian schema id."""
    return b"\x00" + schema_id.to_bytes(4, "big")
