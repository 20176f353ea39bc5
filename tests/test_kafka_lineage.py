"""Kafka topics in lineage: datasets named as OpenLineage names them (``kafka://host:port`` of
the first bootstrap server, the topic), schema facets from an Avro schema file, the schema
registry or the validate step reading the topic, and column lineage from topics to files and
to topics. Every event is checked against the official schemas, facet by facet."""

from __future__ import annotations

import io
import json
import logging
import time

import fastavro

from lineage.naming import dataset_name, kafka_namespace, kafka_uri
from pipelines import registry
from pipelines.checks import static_problems
from pipelines.loading import spec_from_data
from pipelines.run import run_spec
from pipelines.sources.kafka import KafkaSourceSpec, value_schema
from tests import kafka_broker as fixtures
from tests import openlineage_schema

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
ORDER_V1 = {"type": "record", "name": "Order", "fields": ORDER["fields"][:2]}
CHECK = {
    "name": "check",
    "type": "validate",
    "fields": {"order_id": {"type": "string", "required": True}, "amount": {"type": "float64"}},
    "rules": [{"rule": "min", "field": "amount", "min": 0}],
}


def json_orders(n: int) -> list[bytes]:
    return [json.dumps({"order_id": f"O{i}", "amount": i * 1.5}).encode() for i in range(n)]


def avro_orders(n: int, schema: dict = ORDER, prefix: bytes = b"") -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    values = []
    for i in range(n):
        out = io.BytesIO(prefix)
        out.seek(len(prefix))
        fastavro.schemaless_writer(out, parsed, {"order_id": f"O{i}", "amount": i * 1.5})
        values.append(out.getvalue())
    return values


def write_avsc(tmp_path, schema: dict = ORDER) -> str:
    path = tmp_path / "order.avsc"
    path.write_text(json.dumps(schema))
    return str(path)


def kafka_source(servers: str, topics: str | list[str], **extra) -> dict:
    return {
        "name": "orders",
        "type": "kafka",
        "bootstrap_servers": servers,
        "topics": topics,
        "group_id": fixtures.unique_group(),
        "start": "earliest",
        "bounded": "end_offsets",
        **extra,
    }


def run_with_lineage(tmp_path, sources: list, steps: list, sinks: list) -> list[dict]:
    """Run the spec; its START and COMPLETE events from the JSONL event log, each valid."""
    log = tmp_path / "events.jsonl"
    spec = spec_from_data(
        {
            "name": "kafka_lineage",
            "sources": sources,
            "steps": steps,
            "sinks": sinks,
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"event_log": str(log)},
        }
    )
    assert run_spec(spec).status == "COMPLETE"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert openlineage_schema.event_problems(event) == []
    return events


def schema_of(dataset: dict) -> dict[str, str | None]:
    return {f["name"]: f.get("type") for f in dataset["facets"]["schema"]["fields"]}


def inputs_of(dataset: dict, field: str) -> set[tuple[str, str, str]]:
    lineage = dataset["facets"]["columnLineage"]["fields"][field]["inputFields"]
    return {(f["namespace"], f["name"], f["field"]) for f in lineage}


def by_name(datasets: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in datasets}


# --------------------------------------------------------------------------- no broker


def test_kafka_datasets_are_named_by_the_first_bootstrap_server():
    assert (
        kafka_namespace("b1.example.com:9092,b2.example.com:9092") == "kafka://b1.example.com:9092"
    )
    assert (
        kafka_namespace(" SASL_SSL://b1.example.com:9093 , b2:9093")
        == "kafka://b1.example.com:9093"
    )
    assert kafka_namespace("broker") == "kafka://broker:9092"  # librdkafka's default port
    assert kafka_namespace("[::1]:19092") == "kafka://[::1]:19092"
    assert dataset_name(kafka_uri("b1:9092,b2:9092", "orders.raw")) == (
        "kafka://b1:9092",
        "orders.raw",
    )


def test_validate_checks_field_names_against_the_avro_schema(tmp_path):
    source = kafka_source(
        "127.0.0.1:1", "orders", value_format="avro", avro_schema=write_avsc(tmp_path)
    )
    spec = spec_from_data(
        {
            "name": "kafka_lineage",
            "sources": [source],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "rules": [{"rule": "min", "field": "amout", "min": 0}],
                }
            ],
            "sinks": [{"name": "lake", "type": "file", "path": str(tmp_path / "lake")}],
            "dead_letter": {"path": str(tmp_path / "dead")},
        }
    )
    assert static_problems(spec) == [
        "steps[0].rules[0].field: unknown field 'amout'; did you mean 'amount'?"
    ]
    kind = registry.kind_of(spec.sources[0])
    assert kind.known_fields(spec.sources[0]) == ["order_id", "amount", "note"]
    json_topic = KafkaSourceSpec.model_validate(kafka_source("127.0.0.1:1", "orders"))
    assert kind.known_fields(json_topic) is None  # a topic is never read to find its fields


def test_an_unreachable_registry_costs_lineage_the_schema_and_says_so(caplog):
    node = KafkaSourceSpec.model_validate(
        kafka_source(
            "127.0.0.1:1",
            "orders",
            value_format="confluent_avro",
            schema_registry_url="http://127.0.0.1:1",
        )
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert value_schema(node, "orders") is None
    assert time.monotonic() - started < 2
    assert "lineage has no schema for Kafka topic orders" in caplog.text


# --------------------------------------------------------------------------- on a broker


def test_json_topics_to_parquet_described_by_the_validate_step(tmp_path, kafka_broker, topic):
    servers = kafka_broker.bootstrap_servers
    first, second = topic(), topic()
    fixtures.produce(servers, first, json_orders(20))
    fixtures.produce(servers, second, json_orders(10))
    start, complete = run_with_lineage(
        tmp_path,
        [kafka_source(servers, [first, second])],
        [CHECK],
        [{"name": "lake", "type": "file", "path": str(tmp_path / "lake"), "format": "parquet"}],
    )
    namespace = f"kafka://{servers}"
    for event in (start, complete):
        topics = by_name(event["inputs"])
        assert sorted(topics) == sorted([first, second])  # one dataset per topic
        for dataset in topics.values():
            assert dataset["namespace"] == namespace
            assert dataset["facets"]["dataSource"]["name"] == namespace
            # a JSON topic has no schema of its own: the fields its validate step declares
            assert schema_of(dataset) == {"order_id": "string", "amount": "double"}
    lake = by_name(complete["outputs"])[str(tmp_path / "lake")]
    for field in ("order_id", "amount"):
        assert inputs_of(lake, field) == {(namespace, first, field), (namespace, second, field)}
    checked = lake["facets"]["columnLineage"][
        "dataset"
    ]  # rows kept by the required field and the rule
    assert {(d["name"], d["field"]) for d in checked} == {
        (topic_name, field) for topic_name in (first, second) for field in ("order_id", "amount")
    }


def test_avro_topic_to_kafka_topics_in_json_and_avro(tmp_path, kafka_broker, topic):
    servers = kafka_broker.bootstrap_servers
    source, as_json, as_avro = topic(), topic(), topic()
    fixtures.produce(servers, source, avro_orders(12))
    avsc = write_avsc(tmp_path)
    sink = {"type": "kafka", "input": "orders", "bootstrap_servers": servers}
    _, complete = run_with_lineage(
        tmp_path,
        [kafka_source(servers, source, value_format="avro", avro_schema=avsc)],
        [],
        [
            {**sink, "name": "clean", "topic": as_json, "key_field": "order_id"},
            {
                **sink,
                "name": "archive",
                "topic": as_avro,
                "value_format": "avro",
                "avro_schema": avsc,
            },
        ],
    )
    namespace = f"kafka://{servers}"
    (read,) = complete["inputs"]
    assert (read["namespace"], read["name"]) == (namespace, source)
    assert schema_of(read) == {"order_id": "string", "amount": "double", "note": "string"}
    outputs = by_name(complete["outputs"])
    for name in (as_json, as_avro):
        assert outputs[name]["namespace"] == namespace
        assert inputs_of(outputs[name], "amount") == {(namespace, source, "amount")}
        assert outputs[name]["outputFacets"]["outputStatistics"]["rowCount"] == 12
    # JSON values: the fields the rows carry there; Avro values: the schema they are written with
    assert schema_of(outputs[as_json]) == {"order_id": None, "amount": None, "note": None}
    assert schema_of(outputs[as_avro]) == {
        "order_id": "string",
        "amount": "double",
        "note": "string",
    }


def test_confluent_avro_topics_described_by_the_latest_registered_schema(
    tmp_path, kafka_broker, topic, schema_registry, caplog
):
    servers = kafka_broker.bootstrap_servers
    registered, unregistered = topic(), topic()
    schema_registry.add(ORDER_V1, f"{registered}-value")
    latest = schema_registry.add(ORDER, f"{registered}-value")
    wire = b"\x00" + latest.to_bytes(4, "big")
    fixtures.produce(servers, registered, avro_orders(8, prefix=wire))
    fixtures.produce(servers, unregistered, avro_orders(4, prefix=wire))  # known by id only
    source = kafka_source(
        servers,
        [registered, unregistered],
        value_format="confluent_avro",
        schema_registry_url=schema_registry.url,
    )
    with caplog.at_level(logging.WARNING):
        _, complete = run_with_lineage(
            tmp_path,
            [source],
            [CHECK],
            [{"name": "lake", "type": "file", "path": str(tmp_path / "lake"), "format": "parquet"}],
        )
    topics = by_name(complete["inputs"])
    assert schema_of(topics[registered]) == {
        "order_id": "string",
        "amount": "double",
        "note": "string",
    }
    # no subject <topic>-value: the run goes on, lineage falls back to the declared fields
    assert f"lineage has no schema for Kafka topic {unregistered}" in caplog.text
    assert schema_of(topics[unregistered]) == {"order_id": "string", "amount": "double"}
    lake = by_name(complete["outputs"])[str(tmp_path / "lake")]
    namespace = f"kafka://{servers}"
    assert inputs_of(lake, "order_id") == {
        (namespace, registered, "order_id"),
        (namespace, unregistered, "order_id"),
    }


def test_kafka_outputs_are_appended_to_never_overwritten():
    """A topic only grows: lineage must not mark a Kafka sink (or dead-letter topic) as
    OVERWRITE, as it does a file sink in overwrite mode."""
    from lineage.datasets import Dataset
    from pipelines.lineage_run import RunLineageFacts

    spec = spec_from_data(
        {
            "name": "appends",
            "sources": [{"name": "s", "type": "file", "path": "in.jsonl"}],
            "sinks": [{"name": "k", "type": "kafka", "bootstrap_servers": "h:9092", "topic": "t"}],
            "dead_letter": {"type": "kafka", "bootstrap_servers": "h:9092", "topic": "dlq"},
        }
    )
    outputs = [
        Dataset("k", "sink", "kafka://h:9092/t", "kafka"),
        Dataset("dead_letters", "dead_letter", "kafka://h:9092/dlq", "kafka"),
    ]
    facts = RunLineageFacts(spec, "run", [], outputs)
    for dataset in facts.output_datasets():
        assert "lifecycleStateChange" not in (dataset.facets or {}), dataset.name
