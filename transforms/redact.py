"""Redact classified fields from dead-letter payloads.

Dead letters keep the rejected record so it can be fixed and replayed, which also means they
keep its personal data. Under GDPR-style rules a pipeline may instead redact the classified
fields (``dead_letter.redact: true``): the payload stays a JSON object with every other field,
the classified values become ``"[REDACTED]"``, and raw bytes that cannot be parsed field by
field are dropped (``payloadString`` then says so). The record is still counted and its
reason, rule and position are kept.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable

import apache_beam as beam
import pyarrow as pa

REDACTED = "[REDACTED]"
UNPARSEABLE = "[REDACTED: record could not be parsed into fields]"


def redact_payload(text: str | None, fields: Collection[str]) -> str | None:
    """``text`` (a JSON object) with the values of ``fields`` replaced; None stays None."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return UNPARSEABLE
    if not isinstance(record, dict):
        return UNPARSEABLE
    for name in fields:
        if record.get(name) is not None:
            record[name] = REDACTED
    return json.dumps(record, ensure_ascii=False)


def redact_table(table: pa.Table, fields: Collection[str]) -> pa.Table:
    payloads = [redact_payload(t, fields) for t in table.column("payloadString").to_pylist()]
    table = table.set_column(
        table.column_names.index("payloadString"), "payloadString", pa.array(payloads, pa.string())
    )
    index = table.column_names.index("payloadBytes")
    return table.set_column(index, "payloadBytes", pa.nulls(table.num_rows, pa.binary()))


class RedactDeadLetters(beam.PTransform):
    """Replace the values of ``fields`` in dead-letter payloads; drop raw payload bytes."""

    def __init__(self, fields: Collection[str]) -> None:
        super().__init__()
        self._fields = frozenset(fields)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        fields = self._fields

        def redact(table: pa.Table) -> Iterable[pa.Table]:
            yield redact_table(table, fields)

        return tables | beam.FlatMap(redact).with_output_types(pa.Table)
