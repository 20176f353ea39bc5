"""Partition offsets: where a read starts and ends, and committing what a run consumed.

Offsets are keyed ``"topic/partition"`` everywhere (the ``_bw_source`` of a Kafka row), so a
spec can name them in JSON and a run summary can print them.

Broker answers are not taken on trust where a broker may get them wrong. Tansu (the test
broker) answers ``ListOffsets(latest)`` with the start of the last record batch, not the log
end, and ``ListOffsets(timestamp)`` with the earliest offset whatever the timestamp. So:

- the log end of each partition is the high watermark a *fetch* response reports
  (:func:`probe_watermarks` fetches once from the beginning and reads librdkafka's cached
  watermarks), never ``ListOffsets(latest)``;
- a timestamp's offset from ``offsets_for_times`` is verified against the records around it,
  and found by binary search over record timestamps when it is wrong (which assumes, as Kafka
  does for this lookup, timestamps that grow with offsets).

Committing: :func:`commit_offsets` commits ``{partition: next offset to read}`` for a group
from any process (the reader never joins the group, it only stores offsets), and
:func:`consumed_offsets` reads from a finished run's metrics how far each partition was read,
which is what a driver commits after the run succeeded (the ``commit="manual"`` mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from connectors.kafka import config as kafka_config
from connectors.metrics import METRIC_NAMESPACE

START_MODES = ("committed", "earliest", "latest")
NEXT_OFFSET_METRIC = "next_offset"

_PROBE_POLL_S = 0.05


def partition_key(topic: str, partition: int) -> str:
    """``"topic/partition"``: how offsets are keyed (Kafka topic names never contain "/")."""
    return f"{topic}/{partition}"


def split_partition_key(key: str) -> tuple[str, int]:
    """``("topic", partition)`` from ``"topic/partition"``."""
    topic, _, partition = key.rpartition("/")
    if not topic or not partition.isdigit():
        raise ValueError(f"expected 'topic/partition', got {key!r}")
    return topic, int(partition)


def check_start(start: Any) -> Any:
    """``start`` if it is a valid start position, else ``ValueError`` saying what is."""
    if isinstance(start, str) and start in START_MODES:
        return start
    if isinstance(start, Mapping) and len(start) == 1:
        if isinstance(start.get("timestamp_ms"), int) and start["timestamp_ms"] >= 0:
            return {"timestamp_ms": start["timestamp_ms"]}
        offsets = start.get("offsets")
        if isinstance(offsets, Mapping) and offsets:
            checked = {}
            for key, offset in offsets.items():
                split_partition_key(key)
                if not isinstance(offset, int) or offset < 0:
                    raise ValueError(
                        f"start offsets: {key} must be a non-negative int, got {offset!r}"
                    )
                checked[key] = offset
            return {"offsets": checked}
    raise ValueError(
        f"start must be one of {START_MODES}, {{'timestamp_ms': int}} or "
        f"{{'offsets': {{'topic/partition': offset}}}}; got {start!r}"
    )


def list_partitions(
    consumer: Consumer, topics: Sequence[str], timeout_s: float
) -> list[TopicPartition]:
    """Every partition of ``topics``; an unknown topic raises ``ValueError`` naming it."""
    metadata = consumer.list_topics(timeout=timeout_s)
    partitions = []
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            reason = "does not exist" if info is None or not info.partitions else str(info.error)
            raise ValueError(f"Kafka topic {topic!r} {reason}")
        partitions.extend(TopicPartition(topic, p) for p in sorted(info.partitions))
    return partitions


def probe_watermarks(
    consumer: Consumer, partitions: Sequence[TopicPartition], timeout_s: float
) -> dict[str, tuple[int, int]]:
    """``{key: (low, high)}`` watermarks as the partitions' fetch responses report them.

    Fetches once from the beginning of every partition (records are discarded) because the
    high watermark of a fetch response is the log end on every broker, unlike
    ``ListOffsets(latest)`` on some. The consumer should have a short ``fetch.wait.max.ms``.
    """
    consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])
    deadline = time.monotonic() + timeout_s
    found: dict[str, tuple[int, int]] = {}
    try:
        while True:
            for tp in partitions:
                key = partition_key(tp.topic, tp.partition)
                if key not in found:
                    low, high = consumer.get_watermark_offsets(tp, cached=True)
                    if low >= 0 and high >= 0:
                        found[key] = (low, high)
            if len(found) == len(partitions):
                return found
            if time.monotonic() > deadline:
                missing = sorted(
                    {partition_key(tp.topic, tp.partition) for tp in partitions} - set(found)
                )
                raise TimeoutError(
                    f"no fetch response within {timeout_s}s for {', '.join(missing)}"
                )
            consumer.consume(10_000, _PROBE_POLL_S)
    finally:
        consumer.unassign()


def resolve_starts(
    consumer: Consumer,
    partitions: Sequence[TopicPartition],
    start: Any,
    watermarks: Mapping[str, tuple[int, int]],
    *,
    reset: str,
    timeout_s: float,
) -> tuple[dict[str, int], set[str]]:
    """The first offset to read per partition, always within ``[low, high]``, and the keys of
    the partitions placed at the log end (``latest``) rather than at a committed offset.

    ``start`` has the meaning of Kafka's ``auto.offset.reset``: it places only the partitions
    the group has no committed offset for. Every other partition continues from its committed
    offset, so a re-run or the next ``--follow`` cycle reads each record once, whatever
    ``start`` says. ``committed`` places them at ``reset`` (earliest or latest). A committed
    offset older than the log start (deleted by retention) starts at the log start.

    A partition placed at the log end must have that position committed even if the run reads
    nothing there: the next run would place it at the log end again, past what arrived in
    between. The other placements give the same offset again (earliest, a timestamp, explicit).
    """
    keys = [partition_key(tp.topic, tp.partition) for tp in partitions]
    if isinstance(start, Mapping) and "offsets" in start:
        _check_named(start["offsets"], keys)
    committed = {}
    for key, tp in zip(keys, consumer.committed(list(partitions), timeout=timeout_s), strict=True):
        if tp.error is not None:
            raise KafkaException(tp.error)
        if tp.offset >= 0:
            committed[key] = tp.offset
    wanted = dict(committed)
    at_end = set()
    for key, tp in zip(keys, partitions, strict=True):
        if key in committed:
            continue
        low, high = watermarks[key]
        if start == "earliest" or (start == "committed" and reset == "earliest"):
            wanted[key] = low
        elif start in ("latest", "committed"):
            wanted[key] = high
            at_end.add(key)
        elif "timestamp_ms" in start:
            wanted[key] = offset_for_time(
                consumer, tp, start["timestamp_ms"], low, high, timeout_s=timeout_s
            )
        else:
            wanted[key] = start["offsets"][key]
    starts = {key: min(max(wanted[key], watermarks[key][0]), watermarks[key][1]) for key in keys}
    return starts, at_end


def _check_named(offsets: Mapping[str, int], keys: Sequence[str]) -> None:
    unknown = sorted(set(offsets) - set(keys))
    missing = sorted(set(keys) - set(offsets))
    if unknown or missing:
        raise ValueError(
            "start offsets must name every partition of the topics read, and only those: "
            f"missing {missing or 'none'}, unknown {unknown or 'none'}"
        )


def offset_for_time(
    consumer: Consumer,
    tp: TopicPartition,
    timestamp_ms: int,
    low: int,
    high: int,
    *,
    timeout_s: float,
) -> int:
    """The first offset whose record timestamp is at or after ``timestamp_ms`` (``high`` if none).

    The broker's answer is checked against the records on either side of it; when it is wrong
    the offset is found by binary search over record timestamps.
    """
    [answer] = consumer.offsets_for_times(
        [TopicPartition(tp.topic, tp.partition, timestamp_ms)], timeout=timeout_s
    )
    guess = high if answer.offset < 0 else answer.offset
    if _is_first_at_or_after(consumer, tp, guess, timestamp_ms, low, high, timeout_s):
        return guess
    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi) // 2
        offset, stamp = _record_at(consumer, tp, mid, timeout_s)
        if stamp >= timestamp_ms:
            hi = mid
        else:
            lo = offset + 1
    return lo


def _is_first_at_or_after(
    consumer: Consumer,
    tp: TopicPartition,
    guess: int,
    timestamp_ms: int,
    low: int,
    high: int,
    timeout_s: float,
) -> bool:
    if guess < high and _record_at(consumer, tp, guess, timeout_s)[1] < timestamp_ms:
        return False
    if guess > low:
        offset, stamp = _record_at(consumer, tp, guess - 1, timeout_s)
        if offset < guess and stamp >= timestamp_ms:
            return False
    return True


def _record_at(
    consumer: Consumer, tp: TopicPartition, offset: int, timeout_s: float
) -> tuple[int, int]:
    """(offset, timestamp ms) of the first record at or after ``offset``."""
    consumer.assign([TopicPartition(tp.topic, tp.partition, offset)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(1, _PROBE_POLL_S):
                if message.error() is None:
                    return message.offset(), message.timestamp()[1]
    finally:
        consumer.unassign()
    raise TimeoutError(
        f"{partition_key(tp.topic, tp.partition)}: no record at offset {offset} within {timeout_s}s"
    )


def allocate_records(
    max_records: int, starts: Mapping[str, int], highs: Mapping[str, int], *, wait_for_more: bool
) -> dict[str, int]:
    """Stop offsets giving at most ``max_records`` records in total over the partitions.

    The budget is shared out over the backlog each partition has now, smallest backlogs first
    (so none gets more than it holds, and the rest goes to the others). With ``wait_for_more``
    any budget left once every backlog is covered is split evenly over the partitions, for
    records that arrive later.
    """
    keys = sorted(starts, key=lambda k: (highs[k] - starts[k], k))
    remaining = max_records
    stops = {}
    for i, key in enumerate(keys):
        take = min(highs[key] - starts[key], remaining // (len(keys) - i))
        stops[key] = starts[key] + take
        remaining -= take
    if wait_for_more and remaining:
        for i, key in enumerate(sorted(keys)):
            stops[key] += remaining // len(keys) + (1 if i < remaining % len(keys) else 0)
    return stops


# --------------------------------------------------------------------------- committing


def _admin_consumer(
    bootstrap_servers: str, group_id: str, properties: Mapping[str, Any] | None
) -> Consumer:
    return Consumer(kafka_config.consumer_config(bootstrap_servers, group_id, properties).resolve())


def committed_offsets(
    bootstrap_servers: str,
    group_id: str,
    topics: str | Iterable[str],
    *,
    consumer_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """The group's committed offsets (next offset to read) for every partition of ``topics``
    that has one, keyed ``"topic/partition"``."""
    topics = [topics] if isinstance(topics, str) else list(topics)
    consumer = _admin_consumer(bootstrap_servers, group_id, consumer_config)
    try:
        partitions = list_partitions(consumer, topics, timeout_s)
        committed = consumer.committed(partitions, timeout=timeout_s)
    finally:
        consumer.close()
    return {partition_key(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}


def commit_offsets(
    bootstrap_servers: str,
    group_id: str,
    offsets: Mapping[str, int],
    *,
    consumer_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Commit ``{"topic/partition": next offset to read}`` for ``group_id``, synchronously.

    Call it only once the outputs holding the records before those offsets are durable (after
    the run succeeded): a commit is the promise that they need not be read again.
    """
    if not offsets:
        return
    partitions = [
        TopicPartition(*split_partition_key(key), offset) for key, offset in offsets.items()
    ]
    consumer = _admin_consumer(bootstrap_servers, group_id, consumer_config)
    try:
        for tp in consumer.commit(offsets=partitions, asynchronous=False) or ():
            if tp.error is not None:
                raise KafkaException(tp.error)
    finally:
        consumer.close()


def next_offset_metric(source_name: str, key: str) -> str:
    """The distribution whose max is the next offset ``source_name`` would read in ``key``."""
    return f"{source_name}/{NEXT_OFFSET_METRIC}/{key}"


def consumed_offsets(result: Any, source_name: str) -> dict[str, int]:
    """``{"topic/partition": next offset}`` read by source ``source_name`` in a finished run.

    Read from the run's metrics (committed values where the runner has them), so it works for
    any runner whose ``PipelineResult`` reports distributions. Partitions the run did not
    advance are absent. Feed it to :func:`commit_offsets` once the run succeeded.
    """
    from apache_beam.metrics.metric import MetricsFilter

    prefix = next_offset_metric(source_name, "")
    found = result.metrics().query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    offsets: dict[str, int] = {}
    for metric in found["distributions"]:
        name = metric.key.metric.name
        if not name.startswith(prefix):
            continue
        value = metric.committed if metric.committed is not None else metric.attempted
        if value is not None and value.count:
            key = name[len(prefix) :]
            offsets[key] = max(offsets.get(key, 0), value.max)
    return offsets
