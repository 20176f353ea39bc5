"""Event time of decoded rows, as epoch milliseconds: from a field, whatever its decoded type.

The source needs one event time per row to stamp its output (the earliest of the batch) and to
drive its watermark. A field decodes differently by format: Avro ``timestamp-millis`` and
ISO-8601 strings that pyarrow's JSON reader recognises arrive as timestamps, other strings as
text, epoch values as integers. All of them are accepted here: timestamps (naive ones are UTC),
dates, integers and floats (epoch milliseconds, Kafka's unit), and ISO-8601 text (with or
without a zone offset). A row whose field is null or unreadable gets null, and the source
dead-letters it with the reason returned alongside.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

KAFKA_TIMESTAMP = "kafka_timestamp"
"""``event_time`` value meaning: use each message's Kafka timestamp."""

_MS_UTC = pa.timestamp("ms", tz="UTC")


def field_millis(table: pa.Table, name: str) -> tuple[pa.Array, str]:
    """Each row's event time from column ``name`` (int64 ms, null when unusable), and why
    null values are unusable (for the dead letters)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.int64()), f"event time field {name!r} is missing"
    column = table.column(name).combine_chunks()
    kind = column.type
    why = f"event time field {name!r} is null or not a timestamp"
    if pa.types.is_dictionary(kind):
        column, kind = column.dictionary_decode(), kind.value_type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pc.cast(column, pa.timestamp("ms", tz=getattr(kind, "tz", None)), safe=False).cast(
            pa.int64()
        ), why
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pc.cast(column, pa.int64(), safe=False), why
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text_millis(column), why
    return pa.nulls(
        len(column), pa.int64()
    ), f"event time field {name!r} has type {kind}, not a timestamp"


def _text_millis(column: pa.Array) -> pa.Array:
    for target in (_MS_UTC, pa.timestamp("ms")):
        try:
            return column.cast(target).cast(pa.int64())
        except pa.ArrowInvalid:
            continue
    return pa.array([_parse_iso(text) for text in column.to_pylist()], pa.int64())


def _parse_iso(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return round(moment.timestamp() * 1000)
