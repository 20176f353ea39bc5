"""The ``kafka`` sink: an idempotent producer, keyed by a field, with the source position in
headers; failed deliveries are dead-lettered or fail the run. Kafka deliveries cannot be
staged: they are published as the run goes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import ConfigValue, SinkBase


class KafkaSinkSpec(SinkBase):
    """An idempotent Kafka producer; failed deliveries are dead-lettered or fail the run."""

    type: Literal["kafka"]
    bootstrap_servers: str
    topic: str
    key_field: str | None = None
    value_format: Literal["json", "avro", "confluent_avro"] = "json"
    avro_schema: str | None = None
    schema_registry_url: str | None = None
    on_delivery_failure: Literal["dead_letter", "fail"] = "dead_letter"
    producer_config: dict[str, ConfigValue] = Field(default_factory=dict)


def build(node: KafkaSinkSpec, ctx: Any, path: str, rows: Any) -> None:
    from connectors.kafka import KafkaConfigError, WriteKafka
    from pipelines.build import client_config

    try:
        write = WriteKafka(
            node.bootstrap_servers,
            node.topic,
            sink_name=node.name,
            key_field=node.key_field,
            value_format=node.value_format,
            avro_schema=node.avro_schema,
            schema_registry_url=node.schema_registry_url,
            on_delivery_failure=node.on_delivery_failure,
            producer_config=client_config(node.producer_config, f"{path}.producer_config"),
            run_id=ctx.run_id,
        )
        outputs = rows | node.name >> write
    except (KafkaConfigError, ValueError) as exc:
        raise ctx.fail(path, str(exc)) from None
    ctx.dead_letters.append(outputs.dead_letters)
    ctx.datasets_out.append(
        ctx.dataset(node.name, "sink", f"kafka://{node.bootstrap_servers}/{node.topic}", "kafka")
    )


def lineage(node: KafkaSinkSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    if node.key_field:
        walk.read(f"{path}.key_field", [node.key_field], state)
    return state


KIND = Kind("sink", KafkaSinkSpec, build, lineage=lineage)
