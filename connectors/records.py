"""The record envelope every package shares: source-position columns and the dead-letter table.

Rows travel between steps as Arrow tables. Each row carries where it came from in two hidden
columns, so that any step that rejects it can say so precisely (file and line, or Kafka
topic/partition and offset). Rejected rows become dead-letter rows with the schema of Google's
Dataflow templates' DLQ table (``timestamp, payloadString, payloadBytes, attributes,
errorMessage, stacktrace``) plus ``step``, ``rule``, ``run_id``, ``source`` and ``offset``.

This module lives in ``connectors`` because it is the lowest layer: sources produce dead
letters for rows they cannot decode, and every other package may import connectors.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SOURCE_COLUMN = "_bw_source"
"""Where a row was read from: a file path, or ``topic/partition`` for Kafka."""

OFFSET_COLUMN = "_bw_offset"
"""The row's position in its source: 1-based line (JSONL), data row (CSV), row index (Parquet,
Avro) or Kafka offset."""

POSITION_COLUMNS = (SOURCE_COLUMN, OFFSET_COLUMN)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payloadString", pa.string()),
        pa.field("payloadBytes", pa.binary()),
        pa.field(
            "attributes",
            pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.string())])),
        ),
        pa.field("errorMessage", pa.string(), nullable=False),
        pa.field("stacktrace", pa.string()),
        pa.field("step", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("offset", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Reject:
    """A record a source could not decode: its raw bytes and why."""

    source: str
    offset: int
    payload: bytes
    error: str
    rule: str  # short machine-readable kind: "parse", "encoding", "column_count", ...


def with_positions(table: pa.Table, source: str, offsets: Sequence[int] | pa.Array) -> pa.Table:
    """Append the position columns to ``table`` (one source for all rows).

    The source column is dictionary-encoded (one string, n int32 zeros), so it costs almost
    nothing per row; dead letters decode it.
    """
    n = table.num_rows
    src = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([source], pa.string())
    )
    table = table.append_column(SOURCE_COLUMN, src)
    if not isinstance(offsets, (pa.Array, pa.ChunkedArray)):
        offsets = pa.array(offsets, pa.int64())
    return table.append_column(OFFSET_COLUMN, offsets.cast(pa.int64()))


def strip_positions(table: pa.Table) -> pa.Table:
    """The user-visible columns of ``table``."""
    present = [c for c in POSITION_COLUMNS if c in table.column_names]
    return table.drop_columns(present) if present else table


def plain_positions(table: pa.Table) -> pa.Table:
    """``table`` with its source column as plain strings (every format can store those), for
    sinks that keep the positions in their output."""
    if SOURCE_COLUMN not in table.column_names:
        return table
    i = table.column_names.index(SOURCE_COLUMN)
    return table.set_column(i, SOURCE_COLUMN, table.column(i).cast(pa.string()))


def with_envelope_positions(letters: pa.Table) -> pa.Table:
    """Dead letters with their ``source``/``offset`` also as the position columns, so a sink
    that sends positions (the Kafka sink's headers and keys) sends where each record was read."""
    return letters.append_column(SOURCE_COLUMN, letters.column("source")).append_column(
        OFFSET_COLUMN, letters.column("offset")
    )


def empty_dead_letters() -> pa.Table:
    return DEAD_LETTER_SCHEMA.empty_table()


def _now(n: int) -> pa.Array:
    now = _dt.datetime.now(_dt.timezone.utc)
    return pa.array([now] * n, DEAD_LETTER_SCHEMA.field("timestamp").type)


def rows_to_json(table: pa.Table) -> pa.Array:
    """Each row (position columns excluded) as one strict JSON object, for payloadString.

    Strict because other tools must parse dead letters: a non-finite float (``1e400`` read as
    infinity, ``NaN``) is written as the string ``"Infinity"``/``"NaN"``, never as a bare token
    that RFC 8259 parsers reject. Built column-wise with Arrow kernels (see
    :mod:`connectors.files.jsonencode`), not per row.
    """
    from connectors.files.jsonencode import json_objects

    return json_objects(strip_positions(table), strict=True)


def _strings(values: Sequence[str] | pa.Array) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.cast(pa.string())
    return pa.array(list(values), pa.string())


def dead_letters_for_rows(
    rows: pa.Table,
    *,
    errors: Sequence[str] | pa.Array,
    rules: Sequence[str] | pa.Array,
    step: str,
    run_id: str,
) -> pa.Table:
    """Dead-letter rows for ``rows`` (already selected), one error message and rule per row.

    The payload is the row as it entered the rejecting step, as JSON; its source position is
    kept when the row carries one, so that ``connectors.originals.RecoverOriginals`` can replace
    the payload with the record exactly as it was read (``payloadBytes`` and ``attributes``
    stay null until then: that is how it knows which dead letters still need their original).
    """
    n = rows.num_rows
    if n == 0:
        return empty_dead_letters()
    names = rows.column_names
    sources = (
        rows.column(SOURCE_COLUMN).cast(pa.string())
        if SOURCE_COLUMN in names
        else pa.nulls(n, pa.string())
    )
    offsets = rows.column(OFFSET_COLUMN) if OFFSET_COLUMN in names else pa.nulls(n, pa.int64())
    return pa.table(
        {
            "timestamp": _now(n),
            "payloadString": rows_to_json(rows),
            "payloadBytes": pa.nulls(n, pa.binary()),
            "attributes": pa.nulls(n, DEAD_LETTER_SCHEMA.field("attributes").type),
            "errorMessage": _strings(errors),
            "stacktrace": pa.nulls(n, pa.string()),
            "step": pa.array([step] * n, pa.string()),
            "rule": _strings(rules),
            "run_id": pa.array([run_id] * n, pa.string()),
            "source": sources,
            "offset": offsets,
        },
        schema=DEAD_LETTER_SCHEMA,
    )


def dead_letters_for_rejects(rejects: Sequence[Reject], *, step: str, run_id: str) -> pa.Table:
    """Dead-letter rows for records a source could not decode.

    ``payloadString`` holds the raw record when it is valid UTF-8; ``payloadBytes`` always holds
    the raw bytes, so nothing of the original is lost.
    """
    n = len(rejects)
    if n == 0:
        return empty_dead_letters()
    strings: list[str | None] = []
    for r in rejects:
        try:
            strings.append(r.payload.decode("utf-8"))
        except UnicodeDecodeError:
            strings.append(None)
    return pa.table(
        {
            "timestamp": _now(n),
            "payloadString": pa.array(strings, pa.string()),
            "payloadBytes": pa.array([r.payload for r in rejects], pa.binary()),
            "attributes": pa.nulls(n, DEAD_LETTER_SCHEMA.field("attributes").type),
            "errorMessage": pa.array([r.error for r in rejects], pa.string()),
            "stacktrace": pa.nulls(n, pa.string()),
            "step": pa.array([step] * n, pa.string()),
            "rule": pa.array([r.rule for r in rejects], pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "source": pa.array([r.source for r in rejects], pa.string()),
            "offset": pa.array([r.offset for r in rejects], pa.int64()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )
