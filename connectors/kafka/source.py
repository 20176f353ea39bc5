"""``ReadKafka``: a pure-Python Kafka source, a splittable DoFn over confluent-kafka.

Beam's own ``ReadFromKafka`` is cross-language and needs Java; this one is not. The shape:

``Impulse -> Plan (one PartitionRead per partition, at run time) -> Reshuffle -> Read (SDF)``

Each partition is one restriction, an offset range (:mod:`connectors.kafka.restriction`), read
by :class:`connectors.kafka.reader.ReadPartitionFn` in batches of up to ``batch_size`` messages,
each decoded into one Arrow table (:mod:`connectors.kafka.batch`).

Ends of a read (``bounded`` and the limits):

- ``bounded="end_offsets"``: stop at each partition's log end as planned (the high watermark of
  a fetch response, see :mod:`connectors.kafka.offsets`); never waits for new records.
- ``max_records``: at most this many records in total, shared out over the partitions when the
  read is planned (:func:`connectors.kafka.offsets.allocate_records`).
- ``max_duration_s``: stop when this much time has passed since planning.
- none of them (``bounded=None``): unbounded; a caught-up partition checkpoints and resumes
  later, advancing its watermark meanwhile (see :mod:`connectors.kafka.reader`).

Event time: each output table carries the earliest event time of its rows (the Kafka timestamp
or a field); a per-partition watermark estimator follows the earliest event time of the latest
batch, monotonically.

Delivery guarantee: at-least-once. Offsets are never auto-committed. With ``commit="bundle"``
the consumed offsets of a bundle are committed in the bundle's finalization, which a runner
calls once it has durably committed the bundle's outputs (Dataflow, Flink checkpoints). A
crash before that re-reads the bundle: duplicates, bounded by the uncommitted bundles, never
loss. Sinks that are idempotent by source position (``_bw_source``/``_bw_offset``) make it
effectively once. The FnApiRunner reads a bounded source in one bundle, so locally "the
uncommitted bundles" is the whole run: a run killed mid-way commits nothing and its re-run
writes again everything the killed one wrote (``tests/test_kafka_crash.py``). On the local FnApiRunner "committed outputs" only means "in this process's
memory", and stages run one after another: a file sink renames its files in a later stage, so
a crash after the commit would lose those records. Locally, with file sinks, use
``commit="manual"`` and commit after the run succeeded: ``commit_offsets(...,
consumed_offsets(result, source_name))``.

Local runner: the FnApiRunner runs streaming pipelines batch-style, so an unbounded read never
lets downstream stages run; read bounded locally. ``direct_num_workers > 1`` with a read that
may self-checkpoint (``bounded=None``) loses records on that runner, so it is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import DirectOptions

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.kafka import config as kafka_config
from connectors.kafka.batch import BatchSettings
from connectors.kafka.config import check_secret_ref
from connectors.kafka.decode import VALUE_FORMATS
from connectors.kafka.eventtime import KAFKA_TIMESTAMP
from connectors.kafka.offsets import check_start
from connectors.kafka.plan import ReadPlan
from connectors.kafka.reader import (
    COMMIT_MODES,
    DEAD_LETTERS,
    Decoding,
    PlanFn,
    ReadPartitionFn,
    Timing,
    UnboundedReadPartitionFn,
)
from connectors.kafka.schemas import record_schema
from connectors.names import labelled_pardo
from connectors.secrets import SecretRef

ROWS = "rows"
_LOCAL_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "FnApiRunner")


class ReadKafka(beam.PTransform):
    """Read Kafka topics into Arrow tables; outputs ``rows`` and ``dead_letters``.

    Rows carry ``_bw_source`` (``"topic/partition"``) and ``_bw_offset`` (the Kafka offset);
    undecodable messages become dead letters with the raw value, the reason and the record's
    topic, partition, offset, timestamp, key and headers in ``attributes``.

    Args:
        bootstrap_servers: ``host:port[,...]``.
        topics: a topic or topics; every partition of each is read.
        source_name: names the counters (``<source>/rows_in``, ``rows_out``,
            ``rows_dead_lettered``, ``next_offset/<topic/partition>``) and the dead letters' step.
        group_id: the consumer group whose offsets are read (``start="committed"``) and committed.
        value_format: json, avro (schemaless, ``avro_schema`` required), confluent_avro
            (``schema_registry_url`` required; ``avro_schema`` optional reader schema), bytes,
            string.
        avro_schema: an Avro record schema (dict) or the path of an ``.avsc`` file.
        schema_registry_url: Confluent Schema Registry base URL.
        schema_registry_auth: secret reference holding ``user:password`` for the registry.
        start: where partitions the group has no committed offset for begin (Kafka's
            ``auto.offset.reset`` meaning: partitions with one always continue from it):
            ``"committed"`` (``auto.offset.reset`` of ``consumer_config``, earliest by default),
            ``"earliest"``, ``"latest"``, ``{"timestamp_ms": ms}`` or
            ``{"offsets": {"topic/partition": offset, ...}}`` naming every partition. To read
            again from a position, use a new ``group_id`` or :func:`commit_offsets` it.
        bounded: ``"end_offsets"`` (stop at the log ends seen at start) or None.
        max_records: at most this many records in total.
        max_duration_s: stop reading this long after the read started.
        batch_size: messages per Arrow table (at most).
        consumer_config: librdkafka properties; credentials as secret references.
        event_time: ``"kafka_timestamp"`` or a decoded field (timestamp, epoch ms or ISO-8601).
        metadata_columns: ``{"key"|"timestamp"|"headers"|"topic"|"partition": column name}``.
        key_format: ``"string"`` (non-UTF-8 keys are dead-lettered) or ``"bytes"``.
        max_message_bytes: larger values are dead-lettered (rule ``too_large``).
        commit: ``"bundle"`` (commit in bundle finalization) or ``"manual"`` (never; commit with
            :func:`connectors.kafka.commit_offsets` after the run).
        timing: polling, resume, idle-watermark, checkpoint and broker-loss intervals; a lost
            broker fails the read with :class:`connectors.kafka.BrokerUnreachable`.
        run_id: stamped on dead letters.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: str | Sequence[str],
        *,
        source_name: str,
        group_id: str,
        value_format: str = "json",
        avro_schema: dict | str | None = None,
        schema_registry_url: str | None = None,
        schema_registry_auth: SecretRef | None = None,
        start: str | Mapping[str, Any] = "committed",
        bounded: str | None = "end_offsets",
        max_records: int | None = None,
        max_duration_s: float | None = None,
        batch_size: int = 10_000,
        consumer_config: Mapping[str, Any] | None = None,
        event_time: str = KAFKA_TIMESTAMP,
        metadata_columns: Mapping[str, str] | None = None,
        key_format: str = "string",
        max_message_bytes: int = 1 << 20,
        commit: str = "bundle",
        timing: Timing | None = None,
        run_id: str = "",
    ) -> None:
        super().__init__()
        topics = (topics,) if isinstance(topics, str) else tuple(topics)
        self._plan = ReadPlan(topics, check_start(start), bounded, max_records, max_duration_s)
        schema = _avro_schema(value_format, avro_schema, schema_registry_url, schema_registry_auth)
        if event_time != KAFKA_TIMESTAMP and value_format in ("bytes", "string"):
            raise ValueError(
                f"event_time={event_time!r} needs decoded fields; {value_format} values have none"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if commit not in COMMIT_MODES:
            raise ValueError(f"commit must be one of {COMMIT_MODES}, not {commit!r}")
        config = kafka_config.consumer_config(bootstrap_servers, group_id, consumer_config)
        settings = BatchSettings(
            source_name,
            run_id,
            event_time,
            BatchSettings.metadata(metadata_columns),
            key_format,
            max_message_bytes,
        )
        decoding = Decoding(value_format, schema, schema_registry_url, schema_registry_auth)
        reader = UnboundedReadPartitionFn if self._plan.unbounded else ReadPartitionFn
        timing = timing or Timing()
        self._planner = PlanFn(config, self._plan, timing)
        self._reader = reader(
            config, settings, decoding, batch_size=batch_size, commit=commit, timing=timing
        )

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        refuse_parallel_local_streaming(pbegin.pipeline, self._plan)
        reads = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Plan" >> beam.ParDo(self._planner)
            | "Spread" >> beam.Reshuffle()
        )
        outputs = reads | labelled_pardo("Read", self._reader).with_output_types(
            pa.Table
        ).with_outputs(DEAD_LETTERS, main=ROWS)
        outputs[DEAD_LETTERS].element_type = pa.Table  # tagged outputs get no type otherwise
        return outputs


def refuse_parallel_local_streaming(pipeline: beam.Pipeline, plan: ReadPlan) -> None:
    """Raise if a read that may self-checkpoint runs on the local runner with several workers.

    Measured on Beam 2.77: the FnApiRunner with ``direct_num_workers > 1`` silently loses
    records of a self-checkpointing splittable DoFn. Reads with ``bounded=None`` checkpoint.
    """
    if plan.bounded is not None or type(pipeline.runner).__name__ not in _LOCAL_RUNNERS:
        return
    workers = pipeline.options.view_as(DirectOptions).direct_num_workers
    if workers == 0:  # Beam's "one per core"
        workers = os.cpu_count() or 1
    if workers > 1:
        raise ValueError(
            f"ReadKafka of {', '.join(plan.topics)} with bounded=None cannot run on the local "
            f"runner with direct_num_workers={workers}: that runner loses records of a reader "
            "that checkpoints itself. Use direct_num_workers=1, or bounded='end_offsets' "
            "(with --follow for continuous local runs), or run on Flink/Dataflow."
        )


def _avro_schema(
    value_format: str,
    avro_schema: dict | str | None,
    registry_url: str | None,
    registry_auth: SecretRef | None,
) -> dict | None:
    """The Avro schema the settings need, loaded and checked now rather than on a worker."""
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"value_format must be one of {VALUE_FORMATS}, not {value_format!r}")
    check_secret_ref(registry_auth, "schema_registry_auth")
    if value_format == "confluent_avro" and not registry_url:
        raise ValueError("value_format='confluent_avro' needs schema_registry_url")
    if value_format == "avro" and avro_schema is None:
        raise ValueError("value_format='avro' needs avro_schema (a dict or an .avsc path)")
    if avro_schema is None:
        return None
    if value_format not in ("avro", "confluent_avro"):
        raise ValueError(f"avro_schema is only used with Avro values, not {value_format}")
    return record_schema(avro_schema)
