"""No Kafka record is lost or written twice, on the real broker (Tansu):

- empty and whitespace-only values are dead letters (rule ``empty_value``) with the record's
  key, headers and position, the run completes, commits, and its re-run sends nothing again;
- ``start`` places only partitions the group has no committed offset for: ``--follow`` cycles
  and re-runs write each message once, for every kind of ``start``;
- a broker lost mid-read (killed, or frozen) fails the read within seconds with "broker
  unreachable", naming the bootstrap servers, with the rows read until then in the local
  tally; a broker down when the read starts fails it as quickly;
- :func:`connectors.kafka.fetch.fetch_records` reads records back by offset.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import uuid

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from connectors.kafka import ReadKafka, Timing, committed_offsets
from connectors.kafka.fetch import KafkaRecord, attributes_of, fetch_records
from connectors.metrics import TALLY
from pipelines.dev.kafka_broker import EmbeddedBroker, free_port
from pipelines.loading import spec_from_data
from pipelines.run import follow_spec, readable_error, run_spec
from tests.kafka_broker import (
    Collect,
    collected,
    consume_all,
    produce,
    run_pipeline,
    unique_group,
)


def spec_for(tmp_path, servers: str, src: str, group: str, start, out_topic: str | None = None):
    sinks = [
        {
            "name": "lake",
            "type": "file",
            "path": str(tmp_path / "lake"),
            "format": "parquet",
            "mode": "append",
        }
    ]
    if out_topic:
        sinks.append(
            {"name": "clean", "type": "kafka", "bootstrap_servers": servers, "topic": out_topic}
        )
    return spec_from_data(
        {
            "name": "kafka_safety",
            "sources": [
                {
                    "name": "orders",
                    "type": "kafka",
                    "bootstrap_servers": servers,
                    "topics": src,
                    "group_id": group,
                    "start": start,
                }
            ],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {"id": {"type": "int64", "required": True}},
                }
            ],
            "sinks": sinks,
            "dead_letter": {"path": str(tmp_path / "dead"), "format": "parquet"},
            "run": {"error_threshold": 0.9},
            "lineage": {"enabled": False},
        }
    )


def lake_ids(tmp_path) -> list[int]:
    if not (tmp_path / "lake").exists():
        return []
    return sorted(pq.read_table(tmp_path / "lake").column("id").to_pylist())


# --------------------------------------------------------------------------- empty values


def test_empty_and_whitespace_values_are_dead_letters_and_a_rerun_sends_nothing(
    tmp_path, kafka_broker, topic
):
    servers, src, out, group = kafka_broker.bootstrap_servers, topic(1), topic(1), unique_group()
    values = [b'{"id": 0}', b"", b"   ", b'{"id": 3}', b"\n", b"\t\r\n ", b'{"id": 6}']
    keys = [f"k{i}".encode() for i in range(7)]
    keys[4] = b"\xff\x00"
    produce(
        servers,
        src,
        values,
        partitions=1,
        keys=keys,
        headers=[[("trace", b"t%d" % i)] for i in range(7)],
    )
    spec = spec_for(tmp_path, servers, src, group, "committed", out_topic=out)

    summary = run_spec(spec)
    source = summary.node("orders")
    assert (source.rows_in, source.rows_out, source.rows_dead_lettered) == (7, 3, 4)
    assert summary.status == "COMPLETE" and summary.reconciled
    dead = {d["offset"]: d for d in pq.read_table(tmp_path / "dead").to_pylist()}
    assert {o: d["rule"] for o, d in dead.items()} == dict.fromkeys([1, 2, 4, 5], "empty_value")
    for offset, d in dead.items():
        assert d["payloadBytes"] == values[offset] and d["source"] == f"{src}/0"
        attributes = {a["key"]: a["value"] for a in d["attributes"]}
        assert attributes["topic"] == src and attributes["partition"] == "0"
        assert attributes["offset"] == str(offset) and attributes["header.trace"] == f"t{offset}"
    assert {a["key"]: a["value"] for a in dead[4]["attributes"]}["key"] == base64.b64encode(
        b"\xff\x00"
    ).decode()
    assert committed_offsets(servers, group, src) == {f"{src}/0": 7}
    assert len(consume_all(servers, out)) == 3

    again = run_spec(spec)
    assert again.node("orders").rows_in == 0 and again.status == "COMPLETE"
    assert len(consume_all(servers, out)) == 3  # nothing sent twice
    assert lake_ids(tmp_path) == [0, 3, 6]


# --------------------------------------------------------------------------- start and --follow


def start_values(src: str, since_ms: int) -> dict[str, object]:
    return {
        "earliest": "earliest",
        "latest": "latest",
        "committed": "committed",
        "timestamp": {"timestamp_ms": since_ms},
        "offsets": {"offsets": {f"{src}/{p}": 0 for p in range(2)}},
    }


def orders(first: int, n: int) -> list[bytes]:
    return [json.dumps({"id": i}).encode() for i in range(first, first + n)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["earliest", "latest", "committed", "timestamp", "offsets"])
def test_follow_cycles_and_reruns_write_each_message_once_whatever_start_says(
    tmp_path, kafka_broker, topic, kind
):
    servers, src, group = kafka_broker.bootstrap_servers, topic(2), unique_group()
    since = int(time.time() * 1000) - 1000
    produce(servers, src, orders(0, 100), partitions=2)
    spec = spec_for(tmp_path, servers, src, group, start_values(src, since)[kind])

    def more(cycle, _summary):
        produce(servers, src, orders(100 * cycle, 100), partitions=2)

    total = follow_spec(spec, interval_s=0, max_cycles=3, on_cycle=more)
    # latest: the group starts at the log end, after the first 100; every later message counts
    first = 100 if kind == "latest" else 0
    assert total.status == "COMPLETE"
    assert lake_ids(tmp_path) == list(range(first, 300))  # cycle 3's 100 are not read yet
    assert run_spec(spec).node("orders").rows_in == 100
    assert run_spec(spec).node("orders").rows_in == 0
    assert lake_ids(tmp_path) == list(range(first, 400))
    assert committed_offsets(servers, group, src) == {f"{src}/0": 200, f"{src}/1": 200}


def test_latest_commits_the_log_end_in_bundle_mode_so_the_next_run_misses_nothing(
    kafka_broker, topic
):
    servers, name, group = kafka_broker.bootstrap_servers, topic(2), unique_group()
    produce(servers, name, orders(0, 10), partitions=2)

    def read(tag: str) -> list[int]:
        def build(p: beam.Pipeline) -> None:
            out = p | ReadKafka(servers, name, source_name=tag, group_id=group, start="latest")
            out.rows | beam.ParDo(Collect(tag))

        run_pipeline(build)
        return sorted(i for table in collected(tag) for i in table.column("id").to_pylist())

    assert read("first") == []  # placed at the log end: nothing to read yet, but committed
    assert committed_offsets(servers, group, name) == {f"{name}/0": 5, f"{name}/1": 5}
    produce(servers, name, orders(10, 10), partitions=2)
    assert read("second") == list(range(10, 20))


# --------------------------------------------------------------------------- broker loss


class PauseAfterFirst(beam.DoFn):
    """Counts rows; after the first table, holds the reader until ``resume`` is set."""

    rows = 0
    first = threading.Event()
    resume = threading.Event()

    def process(self, table):  # noqa: ANN001, ANN201 - no hints: Beam would check them
        PauseAfterFirst.rows += table.num_rows
        PauseAfterFirst.first.set()
        PauseAfterFirst.resume.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("lost", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_a_lost_broker_fails_the_read_quickly_naming_it_and_the_rows_read_are_tallied(lost):
    """Killed: its connections reset and librdkafka reports it. Frozen (SIGSTOP, like a host
    gone or a network partition): nothing is reported, only the due records stop coming."""
    with EmbeddedBroker() as broker:  # its own broker: the module's must outlive this test
        servers = broker.bootstrap_servers
        name = broker.create_topic(f"lost-{uuid.uuid4().hex[:8]}", 1)
        produce(servers, name, orders(0, 100_000), partitions=1)
        killed: list[float] = []

        def kill_after_first_batch() -> None:
            PauseAfterFirst.first.wait(60)
            os.kill(broker.pid, lost)
            killed.append(time.monotonic())
            PauseAfterFirst.resume.set()

        def build(p: beam.Pipeline) -> None:
            read = p | ReadKafka(
                servers,
                name,
                source_name="lost",
                group_id=unique_group(),
                batch_size=1000,
                # a small prefetch, so the rest of the topic is still on the broker when it dies
                consumer_config={
                    "queued.max.messages.kbytes": 64,
                    "max.partition.fetch.bytes": 65536,
                },
                timing=Timing(stall_timeout_s=60),  # what reported a lost broker before
            )
            read.rows | beam.ParDo(PauseAfterFirst())

        TALLY.reset()
        PauseAfterFirst.rows = 0
        PauseAfterFirst.first.clear()
        PauseAfterFirst.resume.clear()
        killer = threading.Thread(target=kill_after_first_batch, daemon=True)
        killer.start()
        with pytest.raises(Exception) as failure:  # noqa: PT011 - the runner wraps it
            run_pipeline(build)
        failed = time.monotonic()
        killer.join(5)
        broker.stop()
    message = readable_error(failure.value)
    assert message.startswith("BrokerUnreachable: ") and "broker unreachable" in message
    assert servers in message and f"{name}/0" in message
    assert failed - killed[0] < 10
    assert 0 < PauseAfterFirst.rows < 100_000
    assert TALLY.snapshot()["lost"] == PauseAfterFirst.rows  # what the run summary can report


def test_a_broker_down_when_the_read_starts_fails_it_quickly_naming_it():
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    began = time.monotonic()
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the runner wraps it
        run_pipeline(
            lambda p: p | ReadKafka(servers, "orders", source_name="down", group_id=unique_group())
        )
    assert time.monotonic() - began < 10
    message = readable_error(failure.value)
    assert message.startswith("BrokerUnreachable: Kafka broker unreachable: " + servers)
    assert "planning the read of orders" in message


# --------------------------------------------------------------------------- fetch by offset


def test_fetch_records_by_offset_dense_sparse_and_missing(kafka_broker, topic):
    servers, name = kafka_broker.bootstrap_servers, topic(2)
    n = 4000  # 2000 per partition
    keys = [b"k%d" % i if i != 10 else b"\xfe\xff" for i in range(n)]
    headers = [[("trace", b"t%d" % i), ("bin", b"\x00\x81")] for i in range(n)]
    stamps = [1_700_000_000_000 + i for i in range(n)]
    produce(
        servers, name, orders(0, n), partitions=2, keys=keys, headers=headers, timestamps=stamps
    )
    groups_before = _groups(kafka_broker)

    # one dense range (5, 100..599), then sparse offsets (a seek each), then past the end
    wanted = list(range(100, 600)) + [5, 1200, 1999, 2000, 9999, 5]
    found = fetch_records(servers, {}, name, 0, wanted)
    assert sorted(found) == sorted(set(wanted) - {2000, 9999})  # past the end: absent
    record = found[1200]  # partition 0 holds messages 0, 2, 4, ...
    assert record == KafkaRecord(
        b'{"id": 2400}',
        b"k2400",
        [("trace", b"t2400"), ("bin", b"\x00\x81")],
        1_700_000_002_400,
        name,
        0,
        1200,
    )
    assert all(found[o].value == b'{"id": %d}' % (2 * o) for o in found)
    assert fetch_records(servers, {}, name, 1, []) == {}
    assert (
        fetch_records(servers, {}, name, 1, [2000])
        == {}
        == fetch_records(servers, {}, name, 1, [9999])
    )
    assert fetch_records(servers, {}, name, 1, [1999])[1999].value == b'{"id": 3999}'

    attributes = attributes_of(fetch_records(servers, {}, name, 0, [5])[5])
    assert attributes == [
        {"key": "topic", "value": name},
        {"key": "partition", "value": "0"},
        {"key": "offset", "value": "5"},
        {"key": "timestamp", "value": "1700000000010"},
        {"key": "key", "value": base64.b64encode(b"\xfe\xff").decode()},
        {"key": "key_encoding", "value": "base64"},
        {"key": "header.trace", "value": "t10"},
        {"key": "header.bin", "value": base64.b64encode(b"\x00\x81").decode()},
        {"key": "header_encoding.bin", "value": "base64"},
    ]
    assert _groups(kafka_broker) == groups_before  # nothing committed for any group


def _groups(broker: EmbeddedBroker) -> set[str]:
    result = broker.admin().list_consumer_groups().result(10)
    return {g.group_id for g in result.valid}
