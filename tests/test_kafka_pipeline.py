"""Kafka in a spec, end to end on the real broker: validate into Parquet and a Kafka topic,
offsets committed after the run, and continuous --follow cycles with lineage heartbeats."""

from __future__ import annotations

import json
import threading

import pyarrow.parquet as pq

from lineage.emitter import EVENT_OBSERVERS
from pipelines.loading import spec_from_data
from pipelines.run import follow_spec, run_spec
from tests import kafka_broker as fixtures
from tests import openlineage_schema


def orders(start: int, n: int, bad_every: int = 10) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        if i % bad_every == 3:
            out.append(b"{not json")
        else:
            amount = -1 if i % bad_every == 5 else i * 1.5
            out.append(json.dumps({"order_id": f"O{i}", "amount": amount}).encode())
    return out


def kafka_spec(tmp_path, servers, source_topic, out_topic, group):
    return spec_from_data(
        {
            "name": "kafka_orders",
            "sources": [{"name": "orders", "type": "kafka", "bootstrap_servers": servers, "topics": source_topic, "group_id": group, "start": "committed"}],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {"order_id": {"type": "string", "required": True}, "amount": {"type": "float64"}},
                    "rules": [{"rule": "min", "field": "amount", "min": 0}],
                }
            ],
            "sinks": [
                {"name": "lake", "type": "file", "path": str(tmp_path / "lake"), "format": "parquet", "mode": "append"},
                {"name": "clean", "type": "kafka", "bootstrap_servers": servers, "topic": out_topic, "key_field": "order_id"},
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 0.5},
            "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        }
    )


def lake_ids(tmp_path) -> list[str]:
    return sorted(pq.read_table(tmp_path / "lake").column("order_id").to_pylist())


def test_kafka_to_parquet_and_kafka_with_offsets_committed(tmp_path, kafka_broker, topic):
    src, out = topic(), topic()
    servers = kafka_broker.bootstrap_servers
    fixtures.produce(servers, src, orders(0, 400))
    spec = kafka_spec(tmp_path, servers, src, out, fixtures.unique_group())
    summary = run_spec(spec)
    assert summary.node("orders").rows_in == 400
    assert summary.node("orders").rows_dead_lettered == 40  # not JSON
    assert summary.node("check").rows_dead_lettered == 40  # negative amounts
    assert summary.node("lake").rows_out == 320 == summary.node("clean").rows_out
    assert summary.reconciled
    assert len(lake_ids(tmp_path)) == 320
    # offsets were committed: the same spec again reads nothing new
    again = run_spec(spec)
    assert again.node("orders").rows_in == 0
    assert len(lake_ids(tmp_path)) == 320
    letters = [json.loads(line) for f in (tmp_path / "dead").glob("*.jsonl") for line in f.read_text().splitlines()]
    parse = [d for d in letters if d["rule"] == "parse"]
    assert parse and parse[0]["source"].startswith(f"{src}/") and parse[0]["offset"] >= 0
    assert {a["key"] for a in parse[0]["attributes"]} >= {"topic", "partition", "offset"}


def test_follow_runs_cycles_and_emits_heartbeats(tmp_path, kafka_broker, topic):
    src, out = topic(), topic()
    servers = kafka_broker.bootstrap_servers
    spec = kafka_spec(tmp_path, servers, src, out, fixtures.unique_group())
    fixtures.produce(servers, src, orders(0, 100))
    cycles: list[int] = []
    stop = threading.Event()

    def on_cycle(n, summary):
        cycles.append(summary.node("orders").rows_in)
        if n == 1:
            fixtures.produce(servers, src, orders(100, 50))
        if n == 3:
            stop.set()

    events: list[dict] = []
    EVENT_OBSERVERS.append(events.append)
    try:
        total = follow_spec(spec, interval_s=0.1, stop=stop, on_cycle=on_cycle)
    finally:
        EVENT_OBSERVERS.remove(events.append)
    assert cycles == [100, 50, 0]
    assert total.status == "COMPLETE" and total.node("orders").rows_in == 150
    assert len(lake_ids(tmp_path)) == 120
    kinds = [e["eventType"] for e in events]
    assert kinds == ["START", "RUNNING", "RUNNING", "RUNNING", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == 1
    running = events[2]
    assert running["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert running["inputs"][0]["namespace"] == f"kafka://{servers}"
    assert running["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 150
    for event in events:
        assert openlineage_schema.event_problems(event) == []
