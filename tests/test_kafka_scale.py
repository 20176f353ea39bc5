"""Issue 4's end-to-end check at full size: 1M JSON and 1M Avro messages over 4 partitions,
validated into Parquet and a Kafka topic, every message accounted for, offsets committed."""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka import committed_offsets
from connectors.kafka.offsets import probe_watermarks
from pipelines.loading import spec_from_data
from pipelines.run import run_spec
from tests import kafka_broker as fixtures

MESSAGES = 1_000_000
SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "order_id", "type": "long"}, {"name": "amount", "type": "double"}],
}


def values(kind: str):
    parsed = fastavro.parse_schema(SCHEMA)
    for i in range(MESSAGES):
        amount = -1.0 if i % 50 == 7 else (i % 1000) * 1.5  # 2% fail the rule
        if kind == "json":
            yield b'{"order_id":%d,"amount":%r}' % (i, amount) if i % 100 != 3 else b"{broken"
        else:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, {"order_id": i, "amount": amount})
            yield out.getvalue() if i % 100 != 3 else out.getvalue()[:3]  # truncated Avro


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["json", "avro"])
def test_a_million_messages_end_to_end(tmp_path, kafka_broker, topic, kind):
    servers = kafka_broker.bootstrap_servers
    src, out = topic(4), topic(4)
    assert fixtures.produce(servers, src, values(kind)) == MESSAGES
    group = fixtures.unique_group()
    schema_file = tmp_path / "order.avsc"
    schema_file.write_text(json.dumps(SCHEMA))
    spec = spec_from_data(
        {
            "name": f"scale_{kind}",
            "run": {"batch_size": 50_000, "error_threshold": 0.1},
            "sources": [
                {
                    "name": "orders",
                    "type": "kafka",
                    "bootstrap_servers": servers,
                    "topics": src,
                    "group_id": group,
                    "start": "earliest",
                    "value_format": kind,
                    "avro_schema": str(schema_file) if kind == "avro" else None,
                }
            ],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {
                        "order_id": {"type": "int64", "required": True},
                        "amount": {"type": "float64"},
                    },
                    "rules": [{"rule": "min", "field": "amount", "min": 0}],
                }
            ],
            "sinks": [
                {"name": "lake", "type": "file", "path": str(tmp_path / "lake")},
                {
                    "name": "clean",
                    "type": "kafka",
                    "bootstrap_servers": servers,
                    "topic": out,
                    "key_field": "order_id",
                },
            ],
            "dead_letter": {"path": str(tmp_path / "dead"), "format": "parquet"},
            "lineage": {"enabled": False},
        }
    )
    summary = run_spec(spec)
    undecodable, negative = MESSAGES // 100, MESSAGES // 50
    assert summary.node("orders").rows_in == MESSAGES
    assert summary.node("orders").rows_dead_lettered == undecodable
    assert summary.node("check").rows_dead_lettered == negative
    written = MESSAGES - undecodable - negative
    assert summary.node("lake").rows_out == written == summary.node("clean").rows_out
    assert summary.reconciled
    assert pq.read_table(tmp_path / "lake", columns=["order_id"]).num_rows == written
    assert pq.read_table(tmp_path / "dead", columns=["rule"]).num_rows == undecodable + negative
    committed = committed_offsets(servers, group, [src])
    assert committed == {f"{src}/{p}": MESSAGES // 4 for p in range(4)}  # produced round-robin
    consumer = Consumer({"bootstrap.servers": servers, "group.id": fixtures.unique_group()})
    try:
        marks = probe_watermarks(consumer, [TopicPartition(out, p) for p in range(4)], 30.0)
    finally:
        consumer.close()
    assert sum(high - low for low, high in marks.values()) == written
