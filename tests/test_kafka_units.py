"""The Kafka connector's parts that need no broker: settings, secrets, decoders, planning math."""

from __future__ import annotations

import io
import json
import pickle

import apache_beam as beam
import fastavro
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from connectors.kafka import KafkaConfigError, ReadKafka
from connectors.kafka.config import consumer_config, producer_config
from connectors.kafka.deadletters import kafka_attributes
from connectors.kafka.decode import AvroDecoder, ConfluentAvroDecoder, JsonDecoder, StringDecoder
from connectors.kafka.eventtime import field_millis
from connectors.kafka.offsets import allocate_records, check_start, split_partition_key
from connectors.kafka.schema_registry import SchemaRegistry, SchemaRegistryError, UnknownSchemaError
from connectors.secrets import EnvSecret, Secret
from pipelines.dev.kafka_broker import free_port

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}


# --------------------------------------------------------------------------- settings and secrets


def test_credentials_must_be_references_and_never_show(monkeypatch):
    monkeypatch.setenv("KAFKA_TEST_PASSWORD", "s3cr3t-value")
    config = consumer_config(
        "b:9092", "g", {"sasl.password": EnvSecret("KAFKA_TEST_PASSWORD"), "sasl.username": "u"}
    )
    assert "s3cr3t" not in repr(config) and "sasl.password=<secret>" in repr(config)
    assert b"s3cr3t" not in pickle.dumps(config)
    assert config.resolve()["sasl.password"] == "s3cr3t-value"

    source = ReadKafka(
        "b:9092",
        "t",
        source_name="s",
        group_id="g",
        consumer_config={"ssl.key.password": EnvSecret("KAFKA_TEST_PASSWORD")},
    )
    assert b"s3cr3t" not in pickle.dumps(source)

    with pytest.raises(KafkaConfigError, match="secret reference"):
        consumer_config("b:9092", "g", {"sasl.password": "plain-text"})
    with pytest.raises(KafkaConfigError, match="resolved Secret"):
        consumer_config("b:9092", "g", {"sasl.username": Secret(b"x")})


def test_consumers_never_auto_commit():
    with pytest.raises(KafkaConfigError, match="enable.auto.commit"):
        consumer_config("b:9092", "g", {"enable.auto.commit": "true"})
    with pytest.raises(KafkaConfigError, match="group_id"):
        consumer_config("b:9092", "g", {"group.id": "other"})
    resolved = consumer_config("b:9092", "g", {"enable.auto.commit": False}).resolve()
    assert resolved["enable.auto.commit"] is False and resolved["group.id"] == "g"
    assert producer_config("b:9092", {}).resolve()["enable.idempotence"] is True


def test_source_settings_are_checked_when_built():
    def make(**kwargs):
        return ReadKafka("b:9092", "t", source_name="s", group_id="g", **kwargs)

    with pytest.raises(ValueError, match="value_format"):
        make(value_format="xml")
    with pytest.raises(ValueError, match="avro_schema"):
        make(value_format="avro")
    with pytest.raises(ValueError, match="schema_registry_url"):
        make(value_format="confluent_avro")
    with pytest.raises(ValueError, match="needs decoded fields"):
        make(value_format="bytes", event_time="at")
    with pytest.raises(ValueError, match="bounded"):
        make(bounded="forever")
    with pytest.raises(ValueError, match="start"):
        make(start="yesterday")
    with pytest.raises(ValueError, match="metadata_columns"):
        make(metadata_columns={"offset": "o"})
    with pytest.raises(ValueError, match="commit"):
        make(commit="auto")
    with pytest.raises(ValueError, match="record"):
        make(value_format="avro", avro_schema={"type": "string"})


def test_an_endless_read_is_an_unbounded_collection():
    pipeline = beam.Pipeline(runner="FnApiRunner")
    endless = pipeline | ReadKafka("127.0.0.1:9", "t", source_name="s", group_id="g", bounded=None)
    assert not endless.rows.is_bounded
    timed = pipeline | "timed" >> ReadKafka(
        "127.0.0.1:9", "t", source_name="t", group_id="g", bounded=None, max_duration_s=5
    )
    assert timed.rows.is_bounded  # it ends on its own
    with pytest.raises(ValueError, match="direct_num_workers=2"):
        parallel = beam.Pipeline(
            runner="FnApiRunner", options=PipelineOptions(direct_num_workers=2)
        )
        parallel | ReadKafka("127.0.0.1:9", "t", source_name="p", group_id="g", bounded=None)


def test_start_positions_are_validated():
    assert check_start("earliest") == "earliest"
    assert check_start({"timestamp_ms": 5}) == {"timestamp_ms": 5}
    assert check_start({"offsets": {"a.b-c/3": 7}}) == {"offsets": {"a.b-c/3": 7}}
    for bad in ("now", {"timestamp_ms": -1}, {"offsets": {"t": 1}}, {"offsets": {"t/0": -2}}, {}):
        with pytest.raises(ValueError):
            check_start(bad)
    assert split_partition_key("my.topic/12") == ("my.topic", 12)


# --------------------------------------------------------------------------- planning math


def test_max_records_goes_to_the_backlogs_first():
    starts = {"t/0": 0, "t/1": 10, "t/2": 0}
    highs = {"t/0": 3, "t/1": 110, "t/2": 100}
    stops = allocate_records(50, starts, highs, wait_for_more=False)
    assert stops["t/0"] == 3  # all it has
    assert sum(stops[k] - starts[k] for k in starts) == 50
    assert allocate_records(500, starts, highs, wait_for_more=False) == highs
    waiting = allocate_records(500, starts, highs, wait_for_more=True)
    assert sum(waiting[k] - starts[k] for k in starts) == 500  # the rest for records to come


# --------------------------------------------------------------------------- decoders


def test_json_values_with_line_breaks_are_rows_not_errors():
    values = [b'{\n "a": 1\n}', b'{"a": 2}', b'{"a":\r\n 3}', b"nope"]
    decoded = JsonDecoder().decode(values)
    [(table, indices)] = decoded.parts
    assert table.column("a").to_pylist() == [1, 2, 3] and indices.to_pylist() == [0, 1, 2]
    assert [(f.index, f.rule) for f in decoded.failures] == [(3, "parse")]


def test_string_values_reject_invalid_utf8():
    decoded = StringDecoder().decode([b"ok", b"\xff", b"fine"])
    [(table, indices)] = decoded.parts
    assert table.column("value").to_pylist() == ["ok", "fine"] and indices.to_pylist() == [0, 2]
    assert [(f.index, f.rule) for f in decoded.failures] == [(1, "encoding")]


def avro(record: dict, schema: dict = SCHEMA) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_avro_values_must_match_the_schema_exactly():
    decoded = AvroDecoder(SCHEMA).decode([avro({"id": 5}), avro({"id": 5}) + b"\x00", b""])
    [(table, _)] = decoded.parts
    assert table.to_pylist() == [{"id": 5}]
    assert [(f.index, f.rule) for f in decoded.failures] == [(1, "avro_decode"), (2, "avro_decode")]


def test_confluent_values_without_a_registry_answer_fail_the_bundle():
    registry = SchemaRegistry(f"http://127.0.0.1:{free_port()}", retries=0, timeout_s=1)
    with pytest.raises(SchemaRegistryError):
        ConfluentAvroDecoder(registry).decode([b"\x00\x00\x00\x00\x01" + avro({"id": 1})])


def test_registry_lookups_are_cached(schema_registry):
    schema_id = schema_registry.add(SCHEMA)
    registry = SchemaRegistry(schema_registry.url)
    assert registry.schema(schema_id) == SCHEMA
    assert registry.schema(schema_id) == SCHEMA
    with pytest.raises(UnknownSchemaError, match="schema id 77"):
        registry.schema(77)
    with pytest.raises(UnknownSchemaError):
        registry.schema(77)  # remembered: no second request
    assert schema_registry.lookups == 2
    assert registry.register("subj-value", SCHEMA) == schema_id


def test_registry_credentials_are_a_reference_resolved_on_use(schema_registry, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH", "reader:pa55")
    schema_id = schema_registry.add(SCHEMA)
    SchemaRegistry.connect(schema_registry.url, EnvSecret("REGISTRY_AUTH")).schema(schema_id)
    assert schema_registry.authorizations == ["Basic cmVhZGVyOnBhNTU="]
    with pytest.raises(KafkaConfigError, match="schema_registry_auth"):
        ReadKafka(
            "b:9092",
            "t",
            source_name="s",
            group_id="g",
            value_format="confluent_avro",
            schema_registry_url=schema_registry.url,
            schema_registry_auth="reader:pa55",
        )


def test_registry_schemas_that_cannot_hold_rows(schema_registry):
    decoder = ConfluentAvroDecoder(SchemaRegistry(schema_registry.url))
    protobuf = schema_registry.add('syntax = "proto3"; message M {}', schema_type="PROTOBUF")
    primitive = schema_registry.add(json.dumps({"type": "string"}))
    values = [b"\x00" + i.to_bytes(4, "big") + b"\x02a" for i in (protobuf, primitive)]
    decoded = decoder.decode(values)
    assert [f.rule for f in decoded.failures] == ["unsupported_schema", "unsupported_schema"]
    assert "PROTOBUF schema, not Avro" in decoded.failures[0].error


# --------------------------------------------------------------------------- event time and attributes


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([1_000, None], pa.timestamp("ms", tz="UTC")), [1_000, None]),
        (pa.array([1_500_000, None], pa.timestamp("us")), [1_500, None]),
        (pa.array([7, None], pa.int64()), [7, None]),
        (pa.array(["1970-01-01T00:00:01Z", "x"]), [1_000, None]),
        (pa.array(["1970-01-01T00:00:01.5+00:00", "1970-01-01 00:00:02"]), [1_500, 2_000]),
        (pa.array([True, False]), [None, None]),
    ],
)
def test_event_time_from_a_field(column, expected):
    millis, why = field_millis(pa.table({"at": column}), "at")
    assert millis.to_pylist() == expected and "at" in why


def test_event_time_field_missing():
    millis, why = field_millis(pa.table({"b": [1]}), "at")
    assert millis.to_pylist() == [None] and "missing" in why


def test_attributes_keep_binary_keys_and_headers_as_base64():
    pairs = kafka_attributes("t", 1, 5, 99, b"\xff", [("h", b"text"), ("b", b"\x80"), ("n", None)])
    assert pairs == [
        {"key": "topic", "value": "t"},
        {"key": "partition", "value": "1"},
        {"key": "offset", "value": "5"},
        {"key": "timestamp", "value": "99"},
        {"key": "key", "value": "/w=="},
        {"key": "key_encoding", "value": "base64"},
        {"key": "header.h", "value": "text"},
        {"key": "header.b", "value": "gA=="},
        {"key": "header_encoding.b", "value": "base64"},
        {"key": "header.n", "value": None},
    ]
