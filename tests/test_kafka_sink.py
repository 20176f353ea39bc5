"""WriteKafka on the FnApiRunner against a real broker: keys, headers, encodings, failed deliveries."""

from __future__ import annotations

import io
import json

import apache_beam as beam
import fastavro
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter

from connectors import records
from connectors.kafka import KafkaConfigError, ReadKafka, WriteKafka
from connectors.kafka.sink import DeliveryFailedError
from pipelines.dev.kafka_broker import EmbeddedBroker
from tests.kafka_broker import Collect, collected, consume_all, run_pipeline, unique_group

# pytest fixtures, taken by name


SCHEMA = {
    "type": "record",
    "name": "Row",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}],
}


def table_with_positions(n: int, source: str = "in/0", start: int = 0) -> pa.Table:
    rows = pa.table(
        {"id": list(range(start, start + n)), "name": [f"n{i}" for i in range(start, start + n)]}
    )
    return records.with_positions(rows, source, list(range(start, start + n)))


def write(tables: list[pa.Table], name: str, bootstrap: str, topic_name: str, **kwargs):
    def build(p: beam.Pipeline) -> None:
        out = (
            p
            | beam.Create(tables).with_output_types(pa.Table)
            | WriteKafka(bootstrap, topic_name, sink_name=name, **kwargs)
        )
        out.written | "written" >> beam.ParDo(Collect(f"{name}.written"))
        out.dead_letters | "dead" >> beam.ParDo(Collect(f"{name}.dead"))

    return run_pipeline(build)


def dead_of(name: str) -> list[dict]:
    return [row for table in collected(f"{name}.dead") for row in table.to_pylist()]


def counter(result, name: str) -> int:
    return sum(
        c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"]
    )


def test_keys_headers_and_json_values(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    tables = [table_with_positions(50, "orders/1", 0), table_with_positions(50, "orders/1", 50)]
    result = write(tables, "out", bootstrap, name, key_field="id", run_id="run-7")

    found = consume_all(bootstrap, name)
    assert (
        len(found) == 100
    )  # exactly once each: no duplicates from the idempotent producer's retries
    assert counter(result, "out/rows_written") == 100
    assert sum(s["rows_written"] for s in collected("out.written")) == 100
    by_key = {r.key: r for r in found}
    record = by_key[b"42"]
    assert json.loads(record.value) == {"id": 42, "name": "n42"}  # position columns are not written
    assert record.headers == {
        "_bw_run_id": b"run-7",
        "_bw_source": b"orders/1",
        "_bw_offset": b"42",
    }
    for partition in {r.partition for r in found}:  # per key, in order
        ids = [
            int(r.key) for r in sorted(found, key=lambda r: r.offset) if r.partition == partition
        ]
        assert ids == sorted(ids)


def test_avro_and_confluent_avro_round_trip(kafka_broker, topic, schema_registry):
    bootstrap = kafka_broker.bootstrap_servers
    plain, confluent = topic(), topic()
    write(
        [table_with_positions(20)],
        "avro_out",
        bootstrap,
        plain,
        value_format="avro",
        avro_schema=SCHEMA,
    )
    [first] = [r for r in consume_all(bootstrap, plain) if r.headers["_bw_offset"] == b"3"]
    assert fastavro.schemaless_reader(io.BytesIO(first.value), fastavro.parse_schema(SCHEMA)) == {
        "id": 3,
        "name": "n3",
    }

    write(
        [table_with_positions(20)],
        "conf_out",
        bootstrap,
        confluent,
        value_format="confluent_avro",
        avro_schema=SCHEMA,
        schema_registry_url=schema_registry.url,
    )
    assert schema_registry.subjects == {f"{confluent}-value": [1]}

    def build(p: beam.Pipeline) -> None:
        out = p | ReadKafka(
            bootstrap,
            confluent,
            source_name="back",
            group_id=unique_group(),
            value_format="confluent_avro",
            schema_registry_url=schema_registry.url,
        )
        out.rows | beam.ParDo(Collect("back.rows"))

    run_pipeline(build)
    rows = pa.concat_tables(collected("back.rows"))
    assert sorted(records.strip_positions(rows).to_pylist(), key=lambda r: r["id"]) == [
        {"id": i, "name": f"n{i}"} for i in range(20)
    ]


def test_rows_that_do_not_fit_or_are_too_large_are_dead_lettered(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    big = "x" * 5000
    table = records.with_positions(
        pa.table({"id": [1, 2, 3], "name": ["ok", big, "fine"]}), "src/0", [10, 11, 12]
    )
    result = write(
        [table],
        "small",
        bootstrap,
        name,
        key_field="name",
        producer_config={"message.max.bytes": 2000},
    )
    dead = dead_of("small")
    assert [(d["offset"], d["rule"], d["source"]) for d in dead] == [(11, "produce", "src/0")]
    assert "too large" in dead[0]["errorMessage"].lower()
    assert json.loads(dead[0]["payloadString"]) == {"id": 2, "name": big}
    attributes = {a["key"]: a["value"] for a in dead[0]["attributes"]}
    assert attributes["topic"] == name and attributes["header._bw_offset"] == "11"
    assert (
        counter(result, "small/rows_written") == 2
        and counter(result, "small/rows_dead_lettered") == 1
    )
    assert sorted(json.loads(r.value)["id"] for r in consume_all(bootstrap, name)) == [1, 3]

    nulls = pa.table({"id": pa.array([1, None], pa.int64()), "name": ["a", "b"]})
    write([nulls], "encode", bootstrap, name, value_format="avro", avro_schema=SCHEMA)
    assert [d["rule"] for d in dead_of("encode")] == ["encode"]


def test_failed_delivery_can_fail_the_run(kafka_broker, topic):
    table = pa.table({"id": [1, 2], "name": ["a", "y" * 5000]})
    with pytest.raises(Exception, match="1 rows were not delivered"):
        write(
            [table],
            "strict",
            kafka_broker.bootstrap_servers,
            topic(),
            on_delivery_failure="fail",
            producer_config={"message.max.bytes": 2000},
        )
    assert issubclass(DeliveryFailedError, RuntimeError)


def test_deliveries_to_a_dead_broker_are_dead_lettered():
    broker = EmbeddedBroker().start()
    try:
        name = broker.create_topic("doomed", 4)
    finally:
        broker.stop()  # the broker dies before the sink writes
    write(
        [table_with_positions(5)],
        "doomed",
        broker.bootstrap_servers,
        name,
        producer_config={"message.timeout.ms": 1500},
    )
    dead = dead_of("doomed")
    assert len(dead) == 5 and {d["rule"] for d in dead} == {"delivery"}
    assert all("timed out" in d["errorMessage"].lower() for d in dead)


def test_producer_settings_keep_the_guarantees():
    with pytest.raises(KafkaConfigError, match="enable.idempotence"):
        WriteKafka("127.0.0.1:1", "t", sink_name="s", producer_config={"enable.idempotence": False})
    with pytest.raises(KafkaConfigError, match="acks"):
        WriteKafka("127.0.0.1:1", "t", sink_name="s", producer_config={"acks": 1})
    with pytest.raises(KafkaConfigError, match="secret reference"):
        WriteKafka("127.0.0.1:1", "t", sink_name="s", producer_config={"sasl.password": "hunter2"})
    with pytest.raises(ValueError, match="avro_schema"):
        WriteKafka("127.0.0.1:1", "t", sink_name="s", value_format="avro")
    with pytest.raises(ValueError, match="schema_id or schema_registry_url"):
        WriteKafka(
            "127.0.0.1:1", "t", sink_name="s", value_format="confluent_avro", avro_schema=SCHEMA
        )
