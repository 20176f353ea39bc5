"""JSON records (Python values, as a JSON parser or ``Table.to_pylist`` gives them) into a
typed Arrow table by declared fields, finding the records that cannot be rows instead of
failing the batch. Shared by the ``http`` source (records of a page) and the ``extract`` step
(pushed payloads read from Kafka): one decoder, so a record is typed the same whichever way it
arrived.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.http import jsonpath
from transforms.coerce import ARROW_TYPES, coerce


@dataclass(frozen=True)
class SourceField:
    """A column: the value at ``path`` (:mod:`connectors.http.jsonpath`) of each record, as
    ``type`` (a name of :data:`transforms.coerce.ARROW_TYPES`)."""

    name: str
    path: str
    type: str = "string"


def json_text(value: Any) -> str:
    """A JSON value as text to cast from or to compare by: ``true``/``false`` for booleans
    (not Python's ``True``), objects and lists as JSON with sorted keys, anything else ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def decode_records(
    records: Sequence[Any], fields: Sequence[SourceField]
) -> tuple[pa.Table, list[int], list[str]]:
    """The records as a table with one typed column per field, plus the indexes of records
    that cannot be rows and why (the table holds only the good ones, in order)."""
    getters = [jsonpath.getter(jsonpath.parse(f.path)) for f in fields]
    bad: dict[int, str] = {}
    for i, record in enumerate(records):
        if type(record) is not dict:
            bad[i] = f"a record must be a JSON object, not {type(record).__name__}"
    columns = []
    for spec, get in zip(fields, getters, strict=True):
        values = [get(r) for r in records]
        target = ARROW_TYPES[spec.type]
        try:
            columns.append(pa.array(values, type=target))
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        text = pa.array([None if v is None else json_text(v) for v in values], pa.string())
        cast, failed = coerce(text, target)
        if failed is not None:
            for i in pc.indices_nonzero(failed).to_pylist():
                bad.setdefault(i, f"{spec.name}: {json_text(values[i])[:80]!r} is not {spec.type}")
        columns.append(cast)
    table = pa.table(columns, names=[f.name for f in fields])
    if bad:
        keep = [i not in bad for i in range(len(records))]
        table = table.filter(pa.array(keep))
    order = sorted(bad)
    return table, order, [bad[i] for i in order]
