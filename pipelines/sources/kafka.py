"""The ``kafka`` source: topics read by a pure-Python splittable DoFn over confluent-kafka
(no Java), decoded into Arrow; bounded by the end offsets seen at start (local runs,
``--follow`` cycles) or unbounded (Flink, Dataflow).

Lineage: one dataset per topic, named as OpenLineage names Kafka topics
(:func:`lineage.naming.kafka_uri`). A topic's schema is its values' Avro schema: the
``avro_schema`` file, else the schema registry's latest ``<topic>-value`` schema for
``confluent_avro``, asked when lineage is gathered and never failing the run (see
:func:`value_schema`). Without either, lineage describes the topic by the fields the validate
step reading it declares (:mod:`pipelines.lineage_run`). Known fields (for ``validate``): those
of the ``avro_schema`` file; a topic is never read to find them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Literal

from pydantic import Field

from pipelines.registry import Kind
from pipelines.spec_base import ConfigValue, Name, SpecModel

log = logging.getLogger(__name__)

AVRO_FORMATS = ("avro", "confluent_avro")
"""Value formats whose rows hold the fields of an Avro schema."""

REGISTRY_TIMEOUT_S = 5.0
"""How long lineage waits for the schema registry: one try, lineage never slows a run much."""


class KafkaSourceSpec(SpecModel):
    """Kafka topics read by a pure-Python splittable DoFn (no Java), decoded into Arrow."""

    type: Literal["kafka"]
    name: Name
    bootstrap_servers: str
    topics: str | list[str]
    group_id: str
    value_format: Literal["json", "avro", "confluent_avro", "bytes", "string"] = "json"
    avro_schema: str | None = Field(default=None, description="Path of an .avsc file.")
    schema_registry_url: str | None = None
    start: Literal["committed", "earliest", "latest"] | dict[str, Any] = Field(
        default="committed",
        description="Where partitions the group has no committed offset for begin (Kafka's "
        "auto.offset.reset): committed (= consumer_config auto.offset.reset, earliest by "
        "default), earliest, latest, {timestamp_ms: ...} or {offsets: {'topic/partition': n}}. "
        "Partitions with a committed offset always continue from it.",
    )
    bounded: Literal["end_offsets"] | None = Field(
        default="end_offsets",
        description="end_offsets: stop at the end offsets seen at start (local runs, --follow "
        "cycles); null: unbounded (Flink, Dataflow).",
    )
    max_records: int | None = Field(default=None, ge=1)
    max_duration_s: float | None = Field(default=None, gt=0)
    event_time: str = Field(
        default="kafka_timestamp", description="kafka_timestamp, or a field of the value."
    )
    consumer_config: dict[str, ConfigValue] = Field(
        default_factory=dict,
        description="librdkafka properties; passwords as secret references {env: ...}.",
    )


def topics_of(node: KafkaSourceSpec) -> list[str]:
    return [node.topics] if isinstance(node.topics, str) else list(node.topics)


def build(node: KafkaSourceSpec, ctx: Any, path: str) -> None:
    from connectors.kafka import KafkaConfigError, ReadKafka
    from lineage.naming import kafka_uri
    from pipelines.build import client_config

    topics = topics_of(node)
    unbounded = node.bounded is None
    # Locally "durable" means in memory, and file sinks rename after bundle finalization:
    # commit once the whole run has succeeded instead (pipelines.run does it).
    commit = "manual" if ctx.spec.run.runner == "direct" else "bundle"
    try:
        read = ReadKafka(
            node.bootstrap_servers,
            topics,
            source_name=node.name,
            group_id=node.group_id,
            value_format=node.value_format,
            avro_schema=node.avro_schema,
            schema_registry_url=node.schema_registry_url,
            start=node.start,
            bounded=node.bounded,
            max_records=node.max_records,
            max_duration_s=node.max_duration_s,
            batch_size=ctx.spec.run.batch_size,
            consumer_config=client_config(node.consumer_config, f"{path}.consumer_config"),
            event_time=node.event_time,
            commit=commit,
            run_id=ctx.run_id,
        )
        outputs = ctx.pipeline | node.name >> read
    except (KafkaConfigError, ValueError) as exc:
        raise ctx.fail(path, str(exc)) from None
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    if commit == "manual" and not unbounded:
        ctx.kafka_commits.append(
            (node.name, node.bootstrap_servers, node.group_id, node.consumer_config)
        )
    for topic in topics:
        uri = kafka_uri(node.bootstrap_servers, topic)
        schema = partial(value_schema, node, topic)
        ctx.inputs.append(ctx.dataset(node.name, "source", uri, "kafka", schema=schema))


def value_schema(node: KafkaSourceSpec, topic: str) -> Any:
    """The Arrow schema of ``topic``'s values, or None (logged when it could not be had).

    The ``avro_schema`` file (the rows' schema with ``avro``, the reader schema with
    ``confluent_avro``); else, for ``confluent_avro``, the latest schema registered under
    ``<topic>-value`` (the registry's default subject naming). An unreachable registry, an
    unknown subject or a schema rows cannot hold only cost lineage the schema, never the run.
    """
    from connectors.errors import BeamwrightError
    from connectors.files.avroschema import avro_schema_to_arrow
    from connectors.kafka import SchemaRegistry

    if node.value_format not in AVRO_FORMATS:
        return None
    try:
        if node.avro_schema:
            return _avsc_schema(node.avro_schema)
        if node.schema_registry_url:
            registry = SchemaRegistry(
                node.schema_registry_url, timeout_s=REGISTRY_TIMEOUT_S, retries=0
            )
            return avro_schema_to_arrow(registry.latest(f"{topic}-value"))
    except (BeamwrightError, OSError) as exc:
        log.warning("lineage has no schema for Kafka topic %s: %s", topic, exc)
    return None


def _avsc_schema(path: str) -> Any:
    """The Arrow schema of the rows an ``.avsc`` record schema describes.

    Raises:
        InvalidAvroSchema: not an Avro record schema Arrow can hold.
        OSError: the file cannot be read.
    """
    from connectors.files.avroschema import avro_schema_to_arrow, load_avsc

    return avro_schema_to_arrow(load_avsc(path))


def known_fields(node: KafkaSourceSpec) -> list[str] | None:
    """The fields of a local ``avro_schema`` file (Avro values only), else None: a topic's
    fields are not known without reading it, and ``validate`` asks no registry."""
    from connectors.files.base import is_remote

    if node.value_format not in AVRO_FORMATS or not node.avro_schema:
        return None
    if is_remote(node.avro_schema):
        return None
    try:
        return _avsc_schema(node.avro_schema).names
    except (ValueError, OSError):  # building the source reports the unreadable schema
        return None


def origins(node: KafkaSourceSpec, dataset: Any, path: str) -> tuple[dict, dict]:
    from connectors.originals import KafkaOrigin
    from pipelines.build import client_config

    config = client_config(node.consumer_config, f"{path}.consumer_config")
    origin = KafkaOrigin(node.bootstrap_servers, config, node.value_format)
    return {}, dict.fromkeys(topics_of(node), origin)


KIND = Kind(
    "source",
    KafkaSourceSpec,
    build,
    known_fields=known_fields,
    unbounded=True,
    origins=origins,
)
