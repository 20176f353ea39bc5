"""Dead letters to a Kafka topic (``dead_letter: {type: kafka, ...}``), as Google's Kafka
templates offer: each rejected record is one JSON message (the record envelope), keyed by its
source position, with the position in headers. Read back by a separate consumer; a secret in
the producer config never reaches a message."""

from __future__ import annotations

import base64
import json

import pytest

from pipelines.loading import SpecError, spec_from_data
from pipelines.run import run_spec
from tests.kafka_broker import consume_all, produce, unique_group

CANARY = "canary-secret-4f1c9e"


def test_rejections_are_json_envelopes_keyed_by_position(kafka_broker, topic, tmp_path, monkeypatch):
    servers = kafka_broker.bootstrap_servers
    source, dead = topic(2), topic(1)
    values = [json.dumps({"id": f"o{i}", "amount": i - 2}).encode() for i in range(6)]
    produce(servers, source, [*values, b"{not json"], partitions=2)
    monkeypatch.setenv("DLQ_PASSWORD", CANARY)
    spec = spec_from_data(
        {
            "name": "dlq_topic",
            "sources": [{"name": "orders", "type": "kafka", "bootstrap_servers": servers,
                         "topics": source, "group_id": unique_group(), "start": "earliest"}],
            "steps": [{"name": "check", "type": "validate",
                       "fields": {"id": {"type": "string"}, "amount": {"type": "int64"}},
                       "rules": [{"rule": "min", "field": "amount", "min": 0}]}],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"type": "kafka", "bootstrap_servers": servers, "topic": dead,
                            # a property librdkafka accepts and ignores here, holding a secret
                            "producer_config": {"sasl.password": {"env": "DLQ_PASSWORD"}}},
            "run": {"error_threshold": 1.0},
        }
    )
    summary = run_spec(spec)
    assert summary.rows_dead_lettered == 3
    records = consume_all(servers, dead)
    letters = [json.loads(r.value) for r in records]
    assert sorted(d["rule"] for d in letters) == ["min:amount", "min:amount", "parse"]
    for record, letter in zip(records, letters, strict=True):
        assert record.key == f"{letter['source']}@{letter['offset']}".encode()
        assert record.headers["_bw_source"] == letter["source"].encode()
        assert record.headers["_bw_offset"] == str(letter["offset"]).encode()
        assert set(letter) >= {"timestamp", "payloadString", "payloadBytes", "attributes",
                               "errorMessage", "step", "rule", "run_id", "source", "offset"}
    broken = next(d for d in letters if d["rule"] == "parse")
    assert base64.b64decode(broken["payloadBytes"]) == b"{not json"
    assert all(CANARY.encode() not in (r.value or b"") for r in records)
    out = [d for d in summary.outputs if d.kind == "dead_letter"]
    assert out and out[0].uri.startswith("kafka://127.0.0.1:")


def test_a_kafka_dead_letter_needs_a_topic_and_takes_no_path():
    base = {"name": "x", "sources": [{"name": "s", "type": "file", "path": "in.jsonl"}],
            "sinks": [{"name": "o", "type": "file", "path": "out"}]}
    with pytest.raises(SpecError, match="needs 'bootstrap_servers' and 'topic'"):
        spec_from_data({**base, "dead_letter": {"type": "kafka", "topic": "t"}})
    with pytest.raises(SpecError, match="remove 'path'"):
        spec_from_data({**base, "dead_letter": {"type": "kafka", "topic": "t",
                                                "bootstrap_servers": "h:1", "path": "d"}})
    with pytest.raises(SpecError, match="needs a 'path'"):
        spec_from_data({**base, "dead_letter": {}})
