"""Redact classified fields from dead letters.

Dead letters keep the rejected record as it was read so it can be fixed and replayed
(:mod:`connectors.originals`), which also means they keep its personal data. Under GDPR-style
rules a pipeline may instead redact the classified fields (``dead_letter.redact: true``). Every
place a dead letter can hold a value is covered:

- ``payloadString``: a JSON object (a JSONL line, a Parquet or Avro row, a Kafka JSON value, a
  row a step re-serialised) stays a JSON object with every other field and the classified
  values replaced by ``"[REDACTED]"``; a CSV record (it has a ``csv.dialect`` attribute) stays a
  CSV record, its fields named by ``csv.header`` (``f0, f1, ...`` without one); anything that
  cannot be parsed into fields (a line that is not JSON, a binary value) is replaced whole.
- ``payloadBytes`` is dropped: raw bytes cannot be redacted field by field. A dead letter that
  had only bytes (a PDF or an image a document source could not read) gets the same
  replacement text in ``payloadString``, so every format says alike why its payload is gone.
- ``errorMessage``: reasons quote the failing value (``email: 'x' does not match ...``), so a
  reason about a classified field that holds a value keeps only the field's name, and any
  classified value quoted elsewhere is replaced.
- ``attributes``: a Kafka key and header values are replaced (free-form, so they cannot be
  classified); positions, ``csv.header`` and the like stay.

The record is still counted and its rule and position are kept.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa

REDACTED = "[REDACTED]"
UNPARSEABLE = "[REDACTED: record could not be parsed into fields]"
_KAFKA_KEY, _KAFKA_HEADER = "key", "header."  # see connectors.kafka.deadletters
_REASONS = "; "  # how steps join the reasons a row failed


@dataclass
class _Fields:
    """A payload parsed into fields, already redacted: its new text, its field names, and the
    classified values it held (field -> value as text)."""

    text: str
    names: Collection[str]
    values: dict[str, str]


def _json_fields(text: str, fields: Collection[str]) -> _Fields | None:
    from connectors.files.jsonencode import strict_json

    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    values = {}
    for name in fields:
        if record.get(name) is not None:
            value = record[name]
            values[name] = value if isinstance(value, str) else json.dumps(value)
            record[name] = REDACTED
    return _Fields(strict_json(record), list(record), values)


def _csv_fields(
    text: str, attributes: Mapping[str, str | None], fields: Collection[str]
) -> _Fields | None:
    dialect = json.loads(attributes["csv.dialect"] or "{}")
    options = {
        "delimiter": dialect.get("delimiter", ","),
        "quotechar": dialect.get("quote_char", '"'),
    }
    try:
        row = next(csv.reader(io.StringIO(text, newline=""), **options))
        header = attributes.get("csv.header")
        names = (
            next(csv.reader(io.StringIO(header, newline=""), **options))
            if header is not None
            else [f"f{i}" for i in range(len(row))]
        )
    except (csv.Error, StopIteration):
        return None
    if len(names) != len(row):
        return None
    values = {}
    for index, name in enumerate(names):
        if name in fields and row[index]:
            values[name] = row[index]
            row[index] = REDACTED
    out = io.StringIO()
    csv.writer(out, lineterminator="", **options).writerow(row)
    return _Fields(out.getvalue(), names, values)


def _redact_message(message: str, parsed: _Fields, fields: Collection[str]) -> str:
    """``message`` without classified values: see the module docstring."""
    kept: list[str] = []
    hiding = False
    for reason in message.split(_REASONS):
        name, colon, _ = reason.partition(": ")
        if colon and name in parsed.names:
            hiding = name in parsed.values
            kept.append(f"{name}: {REDACTED}" if hiding else reason)
        elif not hiding:  # a reason of its own; else the rest of a value that held "; "
            kept.append(reason)
    text = _REASONS.join(kept)
    for value in parsed.values.values():
        text = text.replace(value, REDACTED) if value else text
    return text


def _redact_attributes(attributes: list[dict] | None) -> list[dict] | None:
    if attributes is None:
        return None
    return [
        {**a, "value": REDACTED}
        if (a["key"] == _KAFKA_KEY or a["key"].startswith(_KAFKA_HEADER)) and a["value"] is not None
        else a
        for a in attributes
    ]


def redact_table(table: pa.Table, fields: Collection[str]) -> pa.Table:
    """Dead letters ``table`` with ``fields`` redacted everywhere (see the module docstring)."""
    texts = table.column("payloadString").to_pylist()
    messages = table.column("errorMessage").to_pylist()
    attributes = table.column("attributes").to_pylist()
    raw = table.column("payloadBytes").is_valid().to_pylist()
    for row, text in enumerate(texts):
        if text is None:
            if raw[row]:  # binary bytes (a PDF, an image) dropped: say so, as for any other
                texts[row] = UNPARSEABLE
            attributes[row] = _redact_attributes(attributes[row])
            continue
        named = {a["key"]: a["value"] for a in attributes[row] or ()}
        parsed = (
            _csv_fields(text, named, fields)
            if "csv.dialect" in named
            else _json_fields(text, fields)
        )
        if parsed is None:
            texts[row] = UNPARSEABLE
        else:
            texts[row] = parsed.text
            messages[row] = _redact_message(messages[row], parsed, fields)
        attributes[row] = _redact_attributes(attributes[row])
    for name, values in (
        ("payloadString", pa.array(texts, pa.string())),
        ("errorMessage", pa.array(messages, pa.string())),
        ("attributes", pa.array(attributes, table.schema.field("attributes").type)),
        ("payloadBytes", pa.nulls(table.num_rows, pa.binary())),
    ):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), values)
    return table


class RedactDeadLetters(beam.PTransform):
    """Replace the values of ``fields`` everywhere in dead letters; drop raw payload bytes."""

    def __init__(self, fields: Collection[str]) -> None:
        super().__init__()
        self._fields = frozenset(fields)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        fields = self._fields

        def redact(table: pa.Table) -> Iterable[pa.Table]:
            yield redact_table(table, fields)

        return tables | "Redact" >> beam.FlatMap(redact).with_output_types(pa.Table)
