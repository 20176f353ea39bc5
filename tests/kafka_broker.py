"""Helpers for the Kafka tests: producing, consuming, running a small pipeline, and a Schema
Registry server on 127.0.0.1 speaking the three Confluent calls the connector uses
(``GET /schemas/ids/{id}``, ``GET /subjects/{s}/versions/latest``, ``POST
/subjects/{s}/versions``). The fixtures that start a broker
are in :mod:`tests.kafka_fixtures`."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import apache_beam as beam
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.offsets import list_partitions, partition_key, probe_watermarks
from tests.servers.http import QuietHTTPServer


def unique_group() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | None],
    *,
    partitions: int = 4,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[list[tuple[str, bytes]] | None] | None = None,
    timestamps: Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    """Produce ``values`` round-robin over ``partitions``; the number delivered (all, or raise)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
            **(config or {}),
        }
    )
    errors: list[Any] = []
    count = 0
    for i, value in enumerate(values):
        kwargs: dict[str, Any] = {"partition": i % partitions}
        if keys is not None:
            kwargs["key"] = keys[i]
        if headers is not None and headers[i] is not None:
            kwargs["headers"] = headers[i]
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        while True:
            try:
                producer.produce(
                    topic, value, on_delivery=lambda err, _m: err and errors.append(err), **kwargs
                )
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    return count


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


def consume_all(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[Record]:
    """Every record of ``topic`` up to its current end offsets (found from a fetch, as the
    source does, because Tansu's ListOffsets(latest) is not the log end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_group(),
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        partitions = list_partitions(consumer, [topic], 10)
        ends = {key: high for key, (_, high) in probe_watermarks(consumer, partitions, 10).items()}
        consumer.assign([TopicPartition(topic, tp.partition, 0) for tp in partitions])
        next_offsets = {key: 0 for key in ends}
        found: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(next_offsets[k] < ends[k] for k in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read up to {next_offsets}, the ends are {ends}")
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    next_offsets[partition_key(topic, m.partition())] = m.offset() + 1
                    headers = dict(m.headers() or ())
                    found.append(Record(m.partition(), m.offset(), m.key(), m.value(), headers))
    finally:
        consumer.close()
    return found


def run_pipeline(build: Callable[[beam.Pipeline], Any], **options: Any) -> Any:
    """Build with ``build(pipeline)`` and run on the FnApiRunner; the finished result."""
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(**options))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return result


class Collect(beam.DoFn):
    """Puts elements into a process-global list (the FnApiRunner runs in this process)."""

    sinks: dict[str, list] = {}

    def __init__(self, name: str) -> None:
        self._name = name
        Collect.sinks[name] = []

    def process(self, element):  # noqa: ANN001, ANN201 - no hints: Beam would type-check them
        Collect.sinks[self._name].append(element)


def collected(name: str) -> list:
    return Collect.sinks[name]


# --------------------------------------------------------------------------- schema registry


class SchemaRegistryServer:
    """An in-memory Schema Registry on 127.0.0.1 (ids from 1, one per distinct schema)."""

    def __init__(self) -> None:
        self.schemas: dict[int, tuple[str, str]] = {}  # id -> (schema text, schema type)
        self.subjects: dict[str, list[int]] = {}
        self.lookups = 0
        self.authorizations: list[str | None] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                    registry.lookups += 1
                    registry.authorizations.append(self.headers.get("Authorization"))
                    found = registry.schemas.get(int(parts[2]))
                    if found is not None:
                        text, kind = found
                        reply = (
                            {"schema": text}
                            if kind == "AVRO"
                            else {"schema": text, "schemaType": kind}
                        )
                        return self._reply(200, reply)
                    return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                if parts[:1] + parts[2:] == ["subjects", "versions", "latest"]:
                    return self._latest(parts[1])  # GET /subjects/{subject}/versions/latest
                return self._reply(404, {"error_code": 404, "message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    return self._reply(200, {"id": registry.add(body["schema"], parts[1])})
                return self._reply(404, {"error_code": 404, "message": "not found"})

            def _latest(self, subject: str) -> None:
                versions = registry.subjects.get(subject)
                if not versions:
                    return self._reply(404, {"error_code": 40401, "message": "Subject not found"})
                text, kind = registry.schemas[versions[-1]]
                reply = {"subject": subject, "version": len(versions), "id": versions[-1]}
                reply["schema"] = text
                if kind != "AVRO":
                    reply["schemaType"] = kind
                return self._reply(200, reply)

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def add(self, schema: str | dict, subject: str | None = None, schema_type: str = "AVRO") -> int:
        """Register ``schema``; its id (the same id for the same schema, however formatted)."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        if schema_type == "AVRO":
            text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        known = {entry: schema_id for schema_id, entry in self.schemas.items()}
        schema_id = known.get((text, schema_type)) or len(self.schemas) + 1
        self.schemas[schema_id] = (text, schema_type)
        if subject is not None:
            self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def __enter__(self) -> SchemaRegistryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

