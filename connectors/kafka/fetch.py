"""Records fetched back from the broker by position, and how a dead letter describes one.

A row that a later step rejects only carries its source position (``_bw_source`` =
``"topic/partition"``, ``_bw_offset``); its original bytes, key and headers are still in
Kafka. :func:`fetch_records` reads them back by offset so that a dead letter can keep the
record as it arrived rather than the row re-serialised, and :func:`attributes_of` gives the
dead letter's ``attributes`` for it (the same ones the source gives the records it cannot
decode: see :mod:`connectors.kafka.deadletters`).

Fetching never joins or commits for a consumer group: the consumer is assigned the partition
(no group membership), positioned by seeking, under a fresh group id of its own, with
auto-commit off (:func:`connectors.kafka.config.consumer_config` refuses anything else).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from connectors.kafka import config as kafka_config
from connectors.kafka.deadletters import Attribute, kafka_attributes

DENSE_GAP = 500
"""Wanted offsets less than this far apart are read as one range: the records in between
mostly come in the fetches already under way, while a seek discards them and waits for a new
fetch. Farther apart, the consumer seeks to the next wanted offset."""

_FETCH_CONSUMER = {"fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"}
"""Quick fetch answers (a range ending at the log end must not wait for new records); an offset
out of range (deleted, or past the end) restarts at the log start, so no record still in the
range is skipped."""
_POLL_S = 0.05


@dataclass(frozen=True)
class KafkaRecord:
    """One Kafka record as the broker holds it; ``timestamp_ms`` is -1 when it has none."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int
    topic: str
    partition: int
    offset: int

    @classmethod
    def from_message(cls, message: Message) -> KafkaRecord:
        """The record a consumed (data) message holds."""
        _, timestamp_ms = message.timestamp()
        return cls(
            message.value(),
            message.key(),
            list(message.headers() or ()),
            timestamp_ms,
            message.topic(),
            message.partition(),
            message.offset(),
        )


def attributes_of(record: KafkaRecord) -> list[Attribute]:
    """The dead-letter ``attributes`` for ``record`` (``[{"key": ..., "value": ...}, ...]``):
    topic, partition, offset, timestamp, key (``key_encoding: base64`` when it is not UTF-8)
    and each header as ``header.<name>``."""
    return kafka_attributes(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms,
        record.key,
        record.headers,
    )


def fetch_records(
    bootstrap_servers: str,
    consumer_config: Mapping[str, Any],
    topic: str,
    partition: int,
    offsets: Sequence[int],
    timeout_s: float = 10.0,
) -> dict[int, KafkaRecord]:
    """The records at ``offsets`` of ``topic``/``partition``, keyed by offset.

    An offset that holds no record is absent from the result: deleted by retention or
    compaction, a transaction marker, or at/after the log end. Raises ``TimeoutError`` when the
    broker has not answered for all of them within ``timeout_s``, and ``KafkaException`` for a
    consumer error (an unknown topic, credentials refused).

    Args:
        bootstrap_servers: ``host:port[,...]``.
        consumer_config: librdkafka properties (credentials as secret references), as given to
            the source; group settings are ignored (a fresh group id is used, never committed).
        topic, partition: where the records are.
        offsets: the offsets wanted, in any order, duplicates allowed.
        timeout_s: the bound on the whole fetch.
    """
    wanted = sorted(set(offsets))
    if not wanted:
        return {}
    group = f"beamwright-fetch-{uuid.uuid4().hex}"
    config = kafka_config.consumer_config(bootstrap_servers, group, consumer_config)
    consumer = Consumer(config.resolve(**_FETCH_CONSUMER))
    deadline = time.monotonic() + timeout_s
    found: dict[int, KafkaRecord] = {}
    try:
        for number, (first, last) in enumerate(_ranges(wanted)):
            tp = TopicPartition(topic, partition, first)
            if number == 0:
                consumer.assign([tp])
            else:
                consumer.seek(tp)
            _read_range(consumer, tp, first, last, set(wanted), found, deadline)
    finally:
        consumer.close()
    return found


def _ranges(wanted: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted offsets as ``(first, last)`` ranges, split where the gap is ``DENSE_GAP`` or more."""
    ranges = [(wanted[0], wanted[0])]
    for offset in wanted[1:]:
        first, last = ranges[-1]
        if offset - last < DENSE_GAP:
            ranges[-1] = (first, offset)
        else:
            ranges.append((offset, offset))
    return ranges


def _read_range(
    consumer: Consumer,
    tp: TopicPartition,
    first: int,
    last: int,
    wanted: set[int],
    found: dict[int, KafkaRecord],
    deadline: float,
) -> None:
    """Consume from ``first`` (the consumer is positioned there) until past ``last`` or the log
    end, keeping the wanted records."""
    while True:
        messages = consumer.consume(min(last - first + 1, 10_000), _POLL_S)
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            if message.offset() in wanted:
                found[message.offset()] = KafkaRecord.from_message(message)
        if messages and messages[-1].offset() >= last:
            return
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        [position] = consumer.position([tp])
        if high >= 0 and max(position.offset, first) >= high:
            return  # the rest of the range is at or past the log end: no such records
        if time.monotonic() > deadline:
            missing = sorted(o for o in wanted if first <= o <= last and o not in found)
            raise TimeoutError(
                f"Kafka {tp.topic}/{tp.partition}: offsets {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''} not fetched in time"
            )
