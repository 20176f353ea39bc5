"""The ``kafka`` source: topics read by a pure-Python splittable DoFn over confluent-kafka
(no Java), decoded into Arrow; bounded by the end offsets seen at start (local runs,
``--follow`` cycles) or unbounded (Flink, Dataflow).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipelines.registry import Kind
from pipelines.spec_base import ConfigValue, Name, SpecModel


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


def build(node: KafkaSourceSpec, ctx: Any, path: str) -> None:
    from connectors.kafka import KafkaConfigError, ReadKafka
    from pipelines.build import client_config

    topics = [node.topics] if isinstance(node.topics, str) else list(node.topics)
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
        ctx.inputs.append(
            ctx.dataset(node.name, "source", f"kafka://{node.bootstrap_servers}/{topic}", "kafka")
        )


def origins(node: KafkaSourceSpec, dataset: Any, path: str) -> tuple[dict, dict]:
    from connectors.originals import KafkaOrigin
    from pipelines.build import client_config

    config = client_config(node.consumer_config, f"{path}.consumer_config")
    origin = KafkaOrigin(node.bootstrap_servers, config, node.value_format)
    topics = [node.topics] if isinstance(node.topics, str) else node.topics
    return {}, dict.fromkeys(topics, origin)


KIND = Kind("source", KafkaSourceSpec, build, unbounded=True, origins=origins)
