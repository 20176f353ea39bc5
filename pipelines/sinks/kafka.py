"""The ``kafka`` sink: an idempotent producer, keyed by a field, with the source position in
headers; failed deliveries are dead-lettered or fail the run. Kafka deliveries cannot be
staged: they are published as the run goes.

Lineage: the topic is a dataset named as OpenLineage names Kafka topics
(:func:`lineage.naming.kafka_uri`); its schema is the ``avro_schema`` the values are written
with, else the fields the rows carry to the sink (the column-lineage walk's).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import ConfigValue, SinkBase

log = logging.getLogger(__name__)


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
    from lineage.naming import kafka_uri
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
    uri = kafka_uri(node.bootstrap_servers, node.topic)
    schema = partial(value_schema, node)
    ctx.datasets_out.append(ctx.dataset(node.name, "sink", uri, "kafka", schema=schema))


def value_schema(node: KafkaSinkSpec) -> Any:
    """The Arrow schema of the values written (their ``avro_schema``), or None: lineage then
    describes the topic by the fields the rows carry here. Never raises: building the sink
    checked the schema, and a file gone since only costs lineage the schema (logged)."""
    from connectors.errors import BeamwrightError
    from connectors.files.avroschema import avro_schema_to_arrow, load_avsc

    if node.value_format == "json" or not node.avro_schema:
        return None
    try:
        return avro_schema_to_arrow(load_avsc(node.avro_schema))
    except (BeamwrightError, OSError) as exc:
        log.warning("lineage has no schema for Kafka topic %s: %s", node.topic, exc)
        return None


def lineage(node: KafkaSinkSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    if node.key_field:
        walk.read(f"{path}.key_field", [node.key_field], state)
    return state


KIND = Kind("sink", KafkaSinkSpec, build, lineage=lineage)
