"""A batch of Kafka messages of one partition to Arrow tables and dead letters.

The hot path stays columnar: values, offsets and timestamps are pulled out of the messages with
C-level ``map`` calls, the values are decoded in bulk (see :mod:`connectors.kafka.decode`), and
metadata columns are gathered with ``take``. Per-message Python only runs for batches that
hold something hostile (a null value, an oversized value, a key that is not text), and then
only to screen those messages out before decoding.

Every message comes out exactly once: as a row (with ``_bw_source = "topic/partition"`` and
``_bw_offset = offset``) or as a dead letter whose attributes carry the topic, partition,
offset, timestamp, key and headers, with the raw value and the reason. Rules:

- ``null_value``: the message has no value (a tombstone);
- ``too_large``: the value is longer than ``max_message_bytes``;
- ``key_encoding``: a ``key`` metadata column is requested as text and the key is not UTF-8;
- ``parse`` / ``encoding``: not a JSON object / not UTF-8 (json, string);
- ``empty_value``: an empty or whitespace-only value (json; for bytes and string it is a row);
- ``avro_decode``, ``wire_format``, ``unknown_schema``, ``unsupported_schema``: Avro;
- ``event_time``: the event-time field is missing, null or not a timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message

from connectors import records
from connectors.files.base import is_utf8
from connectors.kafka.deadletters import with_attributes
from connectors.kafka.decode import Failure, ValueDecoder
from connectors.kafka.eventtime import KAFKA_TIMESTAMP, field_millis
from connectors.kafka.fetch import KafkaRecord, attributes_of

METADATA_KINDS = ("key", "timestamp", "headers", "topic", "partition")
KEY_FORMATS = ("string", "bytes")
HEADERS_TYPE = pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))
_MS_UTC = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class BatchSettings:
    """How messages become rows; plain data, pickled with the transform.

    Args:
        source_name: names the dead letters' ``step``.
        run_id: stamped on dead letters.
        event_time: ``"kafka_timestamp"`` or the name of a decoded field.
        metadata_columns: ``{kind: column name}`` for kinds in ``METADATA_KINDS``; such a
            column replaces a decoded field of the same name.
        key_format: ``"string"`` (UTF-8 text; other keys are dead-lettered) or ``"bytes"``.
        max_message_bytes: longer values are dead-lettered instead of decoded.
    """

    source_name: str
    run_id: str = ""
    event_time: str = KAFKA_TIMESTAMP
    metadata_columns: tuple[tuple[str, str], ...] = ()
    key_format: str = "string"
    max_message_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for kind, _ in self.metadata_columns:
            if kind not in METADATA_KINDS:
                raise ValueError(
                    f"metadata_columns: unknown kind {kind!r}; valid: {METADATA_KINDS}"
                )
        if self.key_format not in KEY_FORMATS:
            raise ValueError(f"key_format must be one of {KEY_FORMATS}, not {self.key_format!r}")
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")

    @staticmethod
    def metadata(columns: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((columns or {}).items()))


@dataclass
class Converted:
    """What one batch of messages became."""

    tables: list[tuple[pa.Table, int]] = field(default_factory=list)
    """Row tables, each with its earliest event time (epoch ms)."""
    dead_letters: pa.Table | None = None
    dead_letter_time_ms: int = 0
    rows_out: int = 0

    @property
    def rows_dead_lettered(self) -> int:
        return 0 if self.dead_letters is None else self.dead_letters.num_rows


class BatchConverter:
    """Turns the messages of one partition into tables of rows and dead letters."""

    def __init__(self, settings: BatchSettings, decoder: ValueDecoder) -> None:
        self._settings = settings
        self._decoder = decoder
        self._metadata = dict(settings.metadata_columns)
        self._text_keys = "key" in self._metadata and settings.key_format == "string"

    def convert(self, topic: str, partition: int, messages: Sequence[Message]) -> Converted:
        """``messages`` (data messages of ``topic``/``partition``, in offset order) decoded."""
        values = list(map(Message.value, messages))
        kafka_ms = _kafka_millis(messages)
        failures, kept = self._screen(messages, values)
        decoded = self._decoder.decode(values if kept is None else [values[i] for i in kept])
        if kept is not None:
            failures += [Failure(kept[f.index], f.rule, f.error) for f in decoded.failures]
        else:
            failures += decoded.failures
        kept_indices = None if kept is None else pa.array(kept, pa.int64())
        source = f"{topic}/{partition}"
        offsets = pa.array(list(map(Message.offset, messages)), pa.int64())
        result = Converted()
        for table, local in decoded.parts:
            indices = local if kept_indices is None else kept_indices.take(local)
            table, indices, event_ms = self._event_times(table, indices, kafka_ms, failures)
            if not table.num_rows:
                continue
            table = self._with_metadata(table, indices, messages, topic, partition, kafka_ms)
            table = records.with_positions(table, source, offsets.take(indices))
            result.tables.append((table, pc.min(event_ms).as_py()))
            result.rows_out += table.num_rows
        if failures:
            failures.sort(key=lambda f: f.index)
            result.dead_letters = self._dead_letters(source, messages, failures)
            stamps = kafka_ms.take(pa.array([f.index for f in failures], pa.int64()))
            earliest = pc.min(stamps).as_py()
            result.dead_letter_time_ms = int(time.time() * 1000) if earliest is None else earliest
        return result

    def _screen(
        self, messages: Sequence[Message], values: list
    ) -> tuple[list[Failure], list[int] | None]:
        """Values that must not reach the decoder, and the indices of the others (None: all)."""
        limit = self._settings.max_message_bytes
        keys = list(map(Message.key, messages)) if self._text_keys else []
        if None not in values and max(map(len, values), default=0) <= limit and _all_text(keys):
            return [], None
        failures: list[Failure] = []
        kept: list[int] = []
        for index, value in enumerate(values):
            if value is None:
                failures.append(
                    Failure(
                        index,
                        "null_value",
                        "the message has no value (a null payload, such as a tombstone)",
                    )
                )
            elif len(value) > limit:
                failures.append(
                    Failure(
                        index,
                        "too_large",
                        f"the value is {len(value)} bytes, more than max_message_bytes={limit}",
                    )
                )
            elif keys and keys[index] is not None and not is_utf8(keys[index]):
                failures.append(
                    Failure(
                        index,
                        "key_encoding",
                        "the key is not UTF-8 text (key_format='string'); attribute key holds it as base64",
                    )
                )
            else:
                kept.append(index)
        return failures, kept

    def _event_times(
        self, table: pa.Table, indices: pa.Array, kafka_ms: pa.Array, failures: list[Failure]
    ) -> tuple[pa.Table, pa.Array, pa.Array]:
        """Each row's event time (ms); rows without a usable one move to ``failures``."""
        name = self._settings.event_time
        if name == KAFKA_TIMESTAMP:
            event_ms = kafka_ms.take(indices)
            if event_ms.null_count:  # a message without a timestamp: ingestion time
                event_ms = event_ms.fill_null(int(time.time() * 1000))
            return table, indices, event_ms
        event_ms, why = field_millis(table, name)
        if not event_ms.null_count:
            return table, indices, event_ms
        valid = pc.is_valid(event_ms)
        failures.extend(
            Failure(i, "event_time", why) for i in indices.filter(pc.invert(valid)).to_pylist()
        )
        return table.filter(valid), indices.filter(valid), event_ms.filter(valid)

    def _with_metadata(
        self,
        table: pa.Table,
        indices: pa.Array,
        messages: Sequence[Message],
        topic: str,
        partition: int,
        kafka_ms: pa.Array,
    ) -> pa.Table:
        for kind, name in self._settings.metadata_columns:
            column = self._metadata_column(kind, indices, messages, topic, partition, kafka_ms)
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, column)
        return table

    def _metadata_column(
        self,
        kind: str,
        indices: pa.Array,
        messages: Sequence[Message],
        topic: str,
        partition: int,
        kafka_ms: pa.Array,
    ) -> pa.Array:
        n = len(indices)
        if kind == "topic":
            return pa.repeat(pa.scalar(topic, pa.string()), n)
        if kind == "partition":
            return pa.repeat(pa.scalar(partition, pa.int32()), n)
        if kind == "timestamp":
            return kafka_ms.take(indices).cast(_MS_UTC)
        chosen = [messages[i] for i in indices.to_pylist()]
        if kind == "key":
            keys = pa.array(list(map(Message.key, chosen)), pa.binary())
            return keys.cast(pa.string()) if self._text_keys else keys
        headers = [[{"key": k, "value": v} for k, v in m.headers() or ()] for m in chosen]
        return pa.array(headers, HEADERS_TYPE)

    def _dead_letters(
        self, source: str, messages: Sequence[Message], failures: list[Failure]
    ) -> pa.Table:
        failed = [KafkaRecord.from_message(messages[f.index]) for f in failures]
        rejects = [
            records.Reject(source, record.offset, record.value or b"", f.error, f.rule)
            for record, f in zip(failed, failures, strict=True)
        ]
        table = records.dead_letters_for_rejects(
            rejects, step=self._settings.source_name, run_id=self._settings.run_id
        )
        return with_attributes(
            table, list(map(attributes_of, failed)), [record.value is None for record in failed]
        )


def _kafka_millis(messages: Sequence[Message]) -> pa.Array:
    """Each message's Kafka timestamp (ms); null when the broker gave none."""
    millis = pa.array([ts for _, ts in map(Message.timestamp, messages)], pa.int64())
    return pc.if_else(pc.less(millis, 0), pa.scalar(None, pa.int64()), millis)


def _all_text(keys: Sequence[bytes | None]) -> bool:
    """True if every non-null key is valid UTF-8 (checked by one Arrow cast)."""
    if not keys:
        return True
    try:
        pa.array(keys, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True
