"""Benchmark: ReadKafka (Kafka -> Arrow on the FnApiRunner) against a raw confluent-kafka loop.

``python -m pipelines.dev.kafka_bench [--messages 1000000] [--bootstrap-servers HOST:PORT]``

Produces small JSON messages over 4 partitions (into an embedded Tansu broker unless servers
are given), then reads the same topic, alternately, with

- the raw loop: one consumer assigned to every partition, ``consume(10_000)`` and
  ``json.loads`` of each value, the way a hand-written consumer parses records;
- the pipeline: ``ReadKafka(bounded="end_offsets")`` into a DoFn that only counts rows, run on
  the FnApiRunner: planning, decoding into Arrow tables, positions, counters, everything;
- the decoding alone: :class:`connectors.kafka.batch.BatchConverter` over messages already
  consumed, which is the connector's own cost per record;
- consuming alone (no parsing): what the broker and librdkafka deliver, the ceiling of both.

Both readers use the same consumer settings (``READER_DEFAULTS``). Prints a JSON report with
each rate (messages per second, best of ``--repeat``) and the pipeline's share of the raw rate.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import apache_beam as beam
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.batch import BatchConverter, BatchSettings
from connectors.kafka.decode import JsonDecoder
from connectors.kafka.reader import READER_DEFAULTS
from connectors.kafka.source import ReadKafka
from pipelines.dev.kafka_broker import EmbeddedBroker

PARTITIONS = 4


def produce(bootstrap: str, topic: str, count: int) -> float:
    """Produce ``count`` small JSON orders round-robin; messages per second."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    began = time.perf_counter()
    for i in range(count):
        value = b'{"id":%d,"customer":"c%d","amount":%d.25,"status":"paid"}' % (
            i,
            i % 977,
            i % 1000,
        )
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("messages left unsent")
    return count / (time.perf_counter() - began)


def _consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **READER_DEFAULTS,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    return consumer


def raw_loop(bootstrap: str, topic: str, count: int, *, parse: bool = True) -> float:
    """Consume and ``json.loads`` every message (or only consume); messages per second."""
    consumer = _consumer(bootstrap, topic)
    seen = 0
    began = time.perf_counter()
    try:
        while seen < count:
            for message in consumer.consume(10_000, 1.0):
                if message.error() is None:
                    if parse:
                        json.loads(message.value())
                    seen += 1
        return count / (time.perf_counter() - began)
    finally:
        consumer.close()


class _Count(beam.DoFn):
    def process(self, table):  # noqa: ANN001, ANN201 - no hints: Beam would check them
        beam.metrics.Metrics.counter("bench", "rows").inc(table.num_rows)


def pipeline(bootstrap: str, topic: str, count: int) -> float:
    """Run ReadKafka to the end offsets on the FnApiRunner; messages per second, wall clock."""
    p = beam.Pipeline(runner="FnApiRunner")
    out = p | ReadKafka(
        bootstrap,
        topic,
        source_name="bench",
        group_id=f"bench-{uuid.uuid4().hex}",
        start="earliest",
        commit="manual",
    )
    out.rows | beam.ParDo(_Count())
    began = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - began
    rows = (
        result.metrics()
        .query(beam.metrics.MetricsFilter().with_name("rows"))["counters"][0]
        .committed
    )
    if rows != count:
        raise RuntimeError(f"the pipeline read {rows} rows, not {count}")
    return count / elapsed


def decode_only(bootstrap: str, topic: str, count: int) -> float:
    """BatchConverter over 10,000-message batches already consumed; messages per second."""
    consumer = _consumer(bootstrap, topic)
    batches: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    try:
        seen = 0
        while seen < count:
            for message in consumer.consume(10_000, 1.0):
                batches[message.partition()].append(message)
                seen += 1
    finally:
        consumer.close()
    converter = BatchConverter(BatchSettings("bench"), JsonDecoder())
    began = time.perf_counter()
    for partition, messages in batches.items():
        for start in range(0, len(messages), 10_000):
            converter.convert(topic, partition, messages[start : start + 10_000])
    return count / (time.perf_counter() - began)


def run(bootstrap: str, count: int, repeat: int) -> dict[str, Any]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    report: dict[str, Any] = {
        "messages": count,
        "partitions": PARTITIONS,
        "produce_per_s": round(produce(bootstrap, topic, count)),
    }
    rates: dict[str, list[float]] = {"raw_loop": [], "pipeline": []}
    for _ in range(repeat):
        rates["raw_loop"].append(raw_loop(bootstrap, topic, count))
        rates["pipeline"].append(pipeline(bootstrap, topic, count))
    rates["consume_only"] = [raw_loop(bootstrap, topic, count, parse=False)]
    rates["decode_only"] = [decode_only(bootstrap, topic, count)]
    for name, values in rates.items():
        report[f"{name}_per_s"] = round(max(values))
        report[f"{name}_runs"] = [round(v) for v in values]
    report["pipeline_vs_raw"] = round(report["pipeline_per_s"] / report["raw_loop_per_s"], 3)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap-servers", help="an existing broker (default: start Tansu)")
    args = parser.parse_args(argv)
    if args.bootstrap_servers:
        print(json.dumps(run(args.bootstrap_servers, args.messages, args.repeat), indent=2))
        return
    with EmbeddedBroker() as broker:
        print(json.dumps(run(broker.bootstrap_servers, args.messages, args.repeat), indent=2))


if __name__ == "__main__":
    main()
