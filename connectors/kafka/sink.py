"""``WriteKafka``: Arrow rows to a Kafka topic, every delivery checked.

The producer is idempotent (``enable.idempotence=true``, hence ``acks=all``): librdkafka's own
retries neither duplicate nor reorder messages. Each row becomes one message: the value is the
row (position columns dropped) as JSON or Avro, the key comes from ``key_field``, and headers
say where the row came from: ``_bw_run_id``, ``_bw_source`` and ``_bw_offset`` (when the row
carries a source position). A consumer can therefore deduplicate what an at-least-once
pipeline wrote twice after a crash.

Delivery reports are collected for every message; the bundle flushes (and waits for every
report) before it ends, and also whenever ``max_pending_rows`` rows are in flight, so memory
stays bounded. A row that cannot be encoded, that the producer refuses (larger than
``message.max.bytes``) or whose delivery fails (after librdkafka's retries, within
``message.timeout.ms``) goes to the ``dead_letters`` output with the error, or fails the bundle
when ``on_delivery_failure="fail"``; it is never dropped. The main output gets one summary per
flush: ``{"sink", "topic", "rows_written", "rows_dead_lettered"}``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue
from confluent_kafka import KafkaException, Producer

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors import records
from connectors.errors import RunError
from connectors.kafka import config as kafka_config
from connectors.kafka.config import ClientConfig, check_secret_ref
from connectors.kafka.deadletters import kafka_attributes, with_attributes
from connectors.kafka.encode import (
    ENCODE_FORMATS,
    AvroEncoder,
    JsonEncoder,
    ValueEncoder,
    confluent_prefix,
)
from connectors.kafka.schema_registry import SchemaRegistry
from connectors.kafka.schemas import record_schema
from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_WRITTEN, NodeCounters
from connectors.names import labelled_pardo
from connectors.secrets import SecretRef

DEAD_LETTERS = "dead_letters"
WRITTEN = "written"
FAILURE_MODES = ("dead_letter", "fail")
RUN_ID_HEADER, SOURCE_HEADER, OFFSET_HEADER = "_bw_run_id", "_bw_source", "_bw_offset"
POSITION_KEY = "_bw_position"
"""``key_field`` value that keys each message by its row's source position, ``<source>@<offset>``
(e.g. ``orders/2@1234``): what the dead-letter topic is keyed by."""
_FLUSH_STEP_S = 1.0
_QUEUE_FULL_WAIT_S = 0.1


class DeliveryFailedError(RunError, RuntimeError):
    """Rows could not be delivered and the sink was told to fail rather than dead-letter."""


@dataclass(frozen=True)
class Encoding:
    """How rows become values; the registry credentials stay a reference until setup."""

    value_format: str
    avro_schema: dict | None = None
    schema_registry_url: str | None = None
    schema_registry_auth: SecretRef | None = None
    schema_id: int | None = None

    def encoder(self, topic: str) -> ValueEncoder:
        if self.value_format == "json":
            return JsonEncoder()
        assert self.avro_schema is not None
        if self.value_format == "avro":
            return AvroEncoder(self.avro_schema)
        schema_id = self.schema_id
        if schema_id is None:  # TopicNameStrategy, as Confluent's serializers default to
            assert self.schema_registry_url
            registry = SchemaRegistry.connect(self.schema_registry_url, self.schema_registry_auth)
            schema_id = registry.register(f"{topic}-value", self.avro_schema)
        return AvroEncoder(self.avro_schema, confluent_prefix(schema_id))


@dataclass
class _Pending:
    """A table in flight, where its dead letters go, and its rows' failures."""

    table: pa.Table
    keys: list[bytes | None]
    headers: list[list[tuple[str, bytes]]]
    window: Any
    timestamp: Any
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (rule, error)


class _WriteFn(beam.DoFn):
    def __init__(
        self,
        config: ClientConfig,
        topic: str,
        sink_name: str,
        key_field: str | None,
        encoding: Encoding,
        on_delivery_failure: str,
        run_id: str,
        max_pending_rows: int,
    ) -> None:
        self._config = config
        self._topic = topic
        self._sink = sink_name
        self._key_field = key_field
        self._encoding = encoding
        self._on_failure = on_delivery_failure
        self._run_id = run_id
        self._max_pending_rows = max_pending_rows

    def setup(self) -> None:
        self._producer = Producer(self._config.resolve())
        self._encoder = self._encoding.encoder(self._topic)
        self._counters = NodeCounters(self._sink)

    def start_bundle(self) -> None:
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._delivered = 0

    def process(
        self,
        table: pa.Table,
        window: Any = beam.DoFn.WindowParam,
        timestamp: Any = beam.DoFn.TimestampParam,
    ) -> Iterator[Any]:
        if not table.num_rows:
            return
        self._counters.inc(ROWS_IN, table.num_rows)
        batch = _Pending(table, self._keys(table), self._headers(table), window, timestamp)
        number = len(self._pending)
        self._pending.append(batch)
        self._pending_rows += table.num_rows
        encoded = self._encoder.encode(records.strip_positions(table))
        for row, error in encoded.failures.items():
            batch.failures[row] = ("encode", error)
        for row, value in enumerate(encoded.values):
            if value is not None:
                self._produce(number, row, value)
        self._producer.poll(0)
        if self._pending_rows >= self._max_pending_rows:
            yield from self._drain()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._drain()

    def _produce(self, number: int, row: int, value: bytes) -> None:
        batch = self._pending[number]
        callback = functools.partial(self._on_delivery, number, row)
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value,
                    batch.keys[row],
                    headers=batch.headers[row],
                    on_delivery=callback,
                )
                return
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self._producer.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as exc:  # refused before sending (e.g. message.max.bytes)
                batch.failures[row] = ("produce", _error_text(exc))
                return

    def _on_delivery(self, number: int, row: int, error: Any, _message: Any) -> None:
        if error is None:
            self._delivered += 1
        else:
            self._pending[number].failures[row] = ("delivery", error.str())

    def _drain(self) -> Iterator[Any]:
        """Wait for every delivery report; then the dead letters and a summary, as outputs."""
        while self._producer.flush(_FLUSH_STEP_S):
            pass  # librdkafka reports every message within message.timeout.ms
        failed = sum(len(batch.failures) for batch in self._pending)
        if failed and self._on_failure == "fail":
            rule, error = next(f for batch in self._pending for f in batch.failures.values())
            raise DeliveryFailedError(
                f"Kafka sink {self._sink}: {failed} rows were not delivered to {self._topic!r} "
                f"(first: {rule}: {error})"
            )
        self._counters.inc(ROWS_WRITTEN, self._delivered)
        self._counters.inc(ROWS_DEAD, failed)
        summary = {
            "sink": self._sink,
            "topic": self._topic,
            "rows_written": self._delivered,
            "rows_dead_lettered": failed,
        }
        pending = self._pending
        self.start_bundle()
        for batch in pending:
            if batch.failures:
                dead = WindowedValue(self._dead_letters(batch), batch.timestamp, [batch.window])
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)
        yield GlobalWindows.windowed_value(summary)

    def _dead_letters(self, batch: _Pending) -> pa.Table:
        rows = sorted(batch.failures)
        failures = [batch.failures[row] for row in rows]
        table = records.dead_letters_for_rows(
            batch.table.take(pa.array(rows, pa.int64())),
            errors=[error for _, error in failures],
            rules=[rule for rule, _ in failures],
            step=self._sink,
            run_id=self._run_id,
        )
        attributes = [
            kafka_attributes(self._topic, None, None, None, batch.keys[row], batch.headers[row])
            for row in rows
        ]
        return with_attributes(table, attributes)

    def _keys(self, table: pa.Table) -> list[bytes | None]:
        if self._key_field == POSITION_KEY:
            return [None if s is None else f"{s}@{o}".encode() for s, o in _positions(table)]
        if self._key_field is None:
            return [None] * table.num_rows
        column = table.column(self._key_field)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            column = column.cast(pa.string()).cast(pa.binary())
        return column.to_pylist()

    def _headers(self, table: pa.Table) -> list[list[tuple[str, bytes]]]:
        common = [(RUN_ID_HEADER, self._run_id.encode())] if self._run_id else []
        names = table.column_names
        if records.SOURCE_COLUMN not in names or records.OFFSET_COLUMN not in names:
            return [list(common) for _ in range(table.num_rows)]
        return [
            [
                *common,
                (SOURCE_HEADER, (source or "").encode()),
                (OFFSET_HEADER, ("" if offset is None else str(offset)).encode()),
            ]
            for source, offset in _positions(table)
        ]


class WriteKafka(beam.PTransform):
    """Write Arrow rows to a Kafka topic; outputs ``written`` (summaries) and ``dead_letters``.

    Args:
        bootstrap_servers: ``host:port[,...]``.
        topic: the topic to write to.
        sink_name: names the counters (``<sink>/rows_in``, ``rows_written``,
            ``rows_dead_lettered``) and the dead letters' step.
        key_field: the column whose value (as text, or raw bytes for binary columns) is the key;
            :data:`POSITION_KEY` keys by the row's source position.
        value_format: json, avro (``avro_schema`` required) or confluent_avro (``avro_schema``
            and either ``schema_id`` or ``schema_registry_url`` to register it under
            ``<topic>-value``).
        avro_schema: an Avro record schema (dict) or the path of an ``.avsc`` file.
        schema_registry_url: Confluent Schema Registry base URL.
        schema_registry_auth: secret reference holding ``user:password`` for the registry.
        schema_id: the registry id of ``avro_schema`` (skips registration).
        on_delivery_failure: ``"dead_letter"`` or ``"fail"`` (fail the bundle, hence the run).
        producer_config: librdkafka properties; credentials as secret references.
        max_pending_rows: flush once this many rows are in flight.
        run_id: sent as the ``_bw_run_id`` header and stamped on dead letters.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        sink_name: str,
        key_field: str | None = None,
        value_format: str = "json",
        avro_schema: dict | str | None = None,
        schema_registry_url: str | None = None,
        schema_registry_auth: SecretRef | None = None,
        schema_id: int | None = None,
        on_delivery_failure: str = "dead_letter",
        producer_config: Mapping[str, Any] | None = None,
        max_pending_rows: int = 100_000,
        run_id: str = "",
    ) -> None:
        super().__init__()
        if on_delivery_failure not in FAILURE_MODES:
            raise ValueError(
                f"on_delivery_failure must be one of {FAILURE_MODES}, not {on_delivery_failure!r}"
            )
        if max_pending_rows < 1:
            raise ValueError("max_pending_rows must be at least 1")
        encoding = _encoding(
            value_format, avro_schema, schema_registry_url, schema_registry_auth, schema_id
        )
        config = kafka_config.producer_config(bootstrap_servers, producer_config)
        self._fn = _WriteFn(
            config,
            topic,
            sink_name,
            key_field,
            encoding,
            on_delivery_failure,
            run_id,
            max_pending_rows,
        )

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        outputs = tables | labelled_pardo("Produce", self._fn).with_outputs(
            DEAD_LETTERS, main=WRITTEN
        )
        outputs[DEAD_LETTERS].element_type = pa.Table  # tagged outputs get no type otherwise
        return outputs


def _positions(table: pa.Table) -> list[tuple[str | None, int | None]]:
    names = table.column_names
    if records.SOURCE_COLUMN not in names or records.OFFSET_COLUMN not in names:
        return [(None, None)] * table.num_rows
    sources = table.column(records.SOURCE_COLUMN).cast(pa.string()).to_pylist()
    return list(zip(sources, table.column(records.OFFSET_COLUMN).to_pylist(), strict=True))


def _error_text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if hasattr(error, "str") else str(exc)


def _encoding(
    value_format: str,
    avro_schema: dict | str | None,
    registry_url: str | None,
    registry_auth: SecretRef | None,
    schema_id: int | None,
) -> Encoding:
    """The sink's encoding settings, checked now rather than on a worker."""
    if value_format not in ENCODE_FORMATS:
        raise ValueError(f"value_format must be one of {ENCODE_FORMATS}, not {value_format!r}")
    check_secret_ref(registry_auth, "schema_registry_auth")
    if value_format == "json":
        if avro_schema is not None or schema_id is not None:
            raise ValueError("avro_schema and schema_id are only used with Avro values")
        return Encoding("json")
    if avro_schema is None:
        raise ValueError(
            f"value_format={value_format!r} needs avro_schema (a dict or an .avsc path)"
        )
    schema = record_schema(avro_schema)
    if value_format == "confluent_avro" and schema_id is None and not registry_url:
        raise ValueError("value_format='confluent_avro' needs schema_id or schema_registry_url")
    return Encoding(value_format, schema, registry_url, registry_auth, schema_id)
