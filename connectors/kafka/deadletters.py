"""Kafka context for dead letters: topic, partition, offset, timestamp, key and headers.

The dead-letter table (``connectors.records``) has an ``attributes`` column, a list of
``{key, value}`` string pairs, like Pub/Sub attributes in Google's DLQ table. A Kafka record's
context goes there so that a rejected message can be found, replayed or re-keyed:

- ``topic``, ``partition``, ``offset``, ``timestamp`` (epoch ms), as text;
- ``key``: the record key as text; a key that is not UTF-8 (binary garbage included) is kept
  as base64, flagged by a ``key_encoding: base64`` attribute, rather than lost;
- ``header.<name>`` for each header, in order (null for a header without a value); a value that
  is not UTF-8 is base64, flagged by ``header_encoding.<name>: base64``.

:func:`connectors.kafka.fetch.attributes_of` gives them for a record read from the broker; every
Kafka dead letter (source, sink, or a later step re-fetching the record) is described this way.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from connectors.files.base import is_utf8
from connectors.records import DEAD_LETTER_SCHEMA

ATTRIBUTES_TYPE = DEAD_LETTER_SCHEMA.field("attributes").type
Attribute = dict[str, str | None]
Headers = Sequence[tuple[str, bytes | None]] | None


def kafka_attributes(
    topic: str,
    partition: int | None,
    offset: int | None,
    timestamp_ms: int | None,
    key: bytes | None,
    headers: Headers,
) -> list[Attribute]:
    """The attributes describing one Kafka record (None or negative fields are left out: a
    record the sink could not deliver has no partition or offset)."""
    pairs: list[Attribute] = [{"key": "topic", "value": topic}]
    for name, value in (("partition", partition), ("offset", offset), ("timestamp", timestamp_ms)):
        if value is not None and value >= 0:
            pairs.append({"key": name, "value": str(value)})
    if key is not None:
        pairs += _bytes_attributes("key", "key_encoding", key)
    for name, value in headers or ():
        pairs += _bytes_attributes(f"header.{name}", f"header_encoding.{name}", value)
    return pairs


def with_attributes(
    dead_letters: pa.Table,
    attributes: Sequence[list[Attribute]],
    null_payloads: Sequence[bool] = (),
) -> pa.Table:
    """``dead_letters`` with its ``attributes`` column set, row by row; rows flagged in
    ``null_payloads`` get null payload columns (the record had no value, not an empty one)."""
    column = dead_letters.schema.get_field_index("attributes")
    table = dead_letters.set_column(
        column, DEAD_LETTER_SCHEMA.field("attributes"), pa.array(list(attributes), ATTRIBUTES_TYPE)
    )
    if any(null_payloads):
        mask = pa.array(list(null_payloads), pa.bool_())
        for name in ("payloadString", "payloadBytes"):
            index = table.schema.get_field_index(name)
            values = table.column(name)
            table = table.set_column(
                index,
                DEAD_LETTER_SCHEMA.field(name),
                pc.if_else(mask, pa.scalar(None, values.type), values),
            )
    return table


def _bytes_attributes(name: str, encoding_name: str, value: bytes | None) -> list[Attribute]:
    if value is None:
        return [{"key": name, "value": None}]
    if is_utf8(value):
        return [{"key": name, "value": value.decode("utf-8")}]
    return [
        {"key": name, "value": base64.b64encode(value).decode("ascii")},
        {"key": encoding_name, "value": "base64"},
    ]
