"""The DoFns behind :class:`connectors.kafka.ReadKafka`: planning, and reading a partition.

The reader assigns its consumer to the partition at the restriction's start, consumes up to
``batch_size`` messages, claims them and decodes them into one Arrow table (see
:mod:`connectors.kafka.batch`). Claiming is done per batch: claiming the batch's last offset
claims every offset up to it (an offset range's positions are claimed in blocks); when the
runner has split the restriction meanwhile the claim fails and only the records below the new
stop are emitted, exactly what claiming them one by one would have emitted. Claiming 10,000
records one by one costs ~0.27 s per million records here, a tenth of the whole read.

A read that may need records not yet in the partition (``PartitionRead.waits_for_data``)
self-checkpoints when it is caught up and gets nothing (``defer_remainder`` with a delay:
Python's form of ``ProcessContinuation.resume``), after advancing the watermark to
``now - idle_watermark_delay_s`` so an idle partition does not hold windows back; it also
checkpoints every ``checkpoint_interval_s`` so that bundles end and commit. A read that ends
at a known offset never waits: the records are in the partition, and if none come for
``stall_timeout_s`` it fails naming the partition rather than hang. A lost broker fails the read
sooner, with :class:`connectors.kafka.health.BrokerUnreachable` (see that module); the rows
emitted until then are in the local tally (:data:`connectors.metrics.TALLY`), which a failed
run's summary can report (Beam's counters of a failed bundle are lost).

With ``commit="bundle"`` the reader registers a bundle finalization callback committing the
next offset to read (unless the group already has a later one: a bundle finalized late must not
move it back); the runner calls it once the bundle's outputs are durably committed. The
position is also recorded when nothing was read if the partition was placed at the log end
(``PartitionRead.commit_start``), so the next run continues from there.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connectors.kafka.batch import BatchConverter, BatchSettings
from connectors.kafka.config import ClientConfig
from connectors.kafka.decode import ValueDecoder, make_decoder
from connectors.kafka.health import BrokerUnreachable, BrokerWatch
from connectors.kafka.offsets import next_offset_metric
from connectors.kafka.plan import PROBE_CONSUMER, PartitionRead, ReadPlan, plan_reads
from connectors.kafka.restriction import TRACKER_PARAM, WATERMARK_PARAM
from connectors.kafka.schema_registry import SchemaRegistry
from connectors.metrics import METRIC_NAMESPACE, ROWS_DEAD, ROWS_IN, ROWS_OUT, TALLY, NodeCounters
from connectors.secrets import SecretRef

DEAD_LETTERS = "dead_letters"
COMMIT_MODES = ("bundle", "manual")
READER_DEFAULTS = {"fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 100}
"""Consumer defaults for reading (the user's consumer_config wins), both measured here.
librdkafka's default 1 s backoff once its prefetch queue is full caps a fast reader at a fifth
of its rate; and a reader moving to the next partition first waits for the previous
partition's long-poll fetch (500 ms by default) to come back empty."""
_BENIGN = (KafkaError._PARTITION_EOF,)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """How the reader waits and checkpoints (seconds)."""

    poll_s: float = 0.5
    resume_delay_s: float = 1.0
    idle_watermark_delay_s: float = 2.0
    checkpoint_interval_s: float = 10.0
    stall_timeout_s: float = 60.0
    broker_silence_s: float = 4.0
    """Due records not coming for this long make the reader ask the broker if it is there."""
    broker_confirm_s: float = 4.0
    """How long the broker has to answer before the read fails with BrokerUnreachable."""


@dataclass(frozen=True)
class Decoding:
    """How values are decoded; the registry's credentials stay a reference until setup."""

    value_format: str
    avro_schema: dict | None
    schema_registry_url: str | None
    schema_registry_auth: SecretRef | None = None

    def decoder(self) -> ValueDecoder:
        registry = None
        if self.schema_registry_url:
            registry = SchemaRegistry.connect(self.schema_registry_url, self.schema_registry_auth)
        return make_decoder(self.value_format, self.avro_schema, registry)


class PlanFn(beam.DoFn):
    """Resolves the partitions and their offsets when the run starts."""

    def __init__(self, config: ClientConfig, plan: ReadPlan, timing: Timing) -> None:
        self._config = config
        self._plan = plan
        self._timing = timing

    def setup(self) -> None:
        self._watch = _watch(self._config, self._timing)
        self._client = {**self._config.resolve(**PROBE_CONSUMER), "error_cb": self._watch.on_error}

    def process(self, _impulse: bytes) -> Iterator[PartitionRead]:
        consumer = Consumer(self._client)
        try:
            self._watch.reach(
                consumer,
                within_s=self._plan.timeout_s,
                context=f"planning the read of {', '.join(self._plan.topics)}",
            )
            reset = self._config.get("auto.offset.reset", "earliest")
            reads = plan_reads(consumer, self._plan, reset=reset, now=time.time())
        finally:
            consumer.close()
        for read in reads:
            log.info("kafka read planned: %s", read)
            yield read


class ReadPartitionFn(beam.DoFn):
    """Reads one partition's restriction into Arrow tables (bounded: ends on its own)."""

    def __init__(
        self,
        config: ClientConfig,
        settings: BatchSettings,
        decoding: Decoding,
        *,
        batch_size: int,
        commit: str,
        timing: Timing,
    ) -> None:
        self._config = config
        self._settings = settings
        self._decoding = decoding
        self._batch_size = batch_size
        self._commit = commit
        self._timing = timing

    def setup(self) -> None:
        self._watch = _watch(self._config, self._timing)
        self._client = {
            **READER_DEFAULTS,
            **self._config.resolve(),
            "error_cb": self._watch.on_error,
        }
        self._live_consumer: Consumer | None = None
        self._converter = BatchConverter(self._settings, self._decoding.decoder())
        self._counters = NodeCounters(self._settings.source_name)
        self._recorded: dict[str, int] = {}

    def teardown(self) -> None:
        if getattr(self, "_live_consumer", None) is not None:
            self._live_consumer.close()
            self._live_consumer = None

    def process(
        self,
        read: PartitionRead,
        finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: Any = TRACKER_PARAM,
        watermark: Any = WATERMARK_PARAM,
    ) -> Iterator[Any]:
        # Beam binds BundleFinalizerParam by position, so it must precede the keyword params.
        yield from self._read(read, tracker, watermark, finalizer)

    def _consumer(self) -> Consumer:
        if self._live_consumer is None:
            self._live_consumer = Consumer(self._client)
        return self._live_consumer

    def _read(
        self, read: PartitionRead, tracker: Any, watermark: Any, finalizer: Any
    ) -> Iterator[Any]:
        start = tracker.current_restriction().start
        done_upto = start
        if start < tracker.current_restriction().stop:
            try:
                done_upto = yield from self._consume(read, tracker, watermark, start)
            except BrokerUnreachable:
                self.teardown()  # a consumer left open would retry the lost broker forever
                raise
        # A partition placed at the log end records its start even if nothing was read, once
        # per instance: an idle partition resumes every second with nothing new.
        if done_upto > start or (read.commit_start and self._recorded.get(read.key) != start):
            self._recorded[read.key] = done_upto
            self._record_position(read, done_upto, finalizer)

    def _consume(
        self, read: PartitionRead, tracker: Any, watermark: Any, start: int
    ) -> Generator[Any, None, int]:
        """Read the restriction from ``start``; returns the offset below which every record
        was emitted or dead-lettered."""
        tp = TopicPartition(read.topic, read.partition, start)
        consumer = self._consumer()
        consumer.assign([tp])
        done_upto = start
        began = last_data = time.monotonic()
        try:
            while True:
                stop = tracker.current_restriction().stop
                if done_upto >= stop:  # done, or the runner split the rest off meanwhile
                    break
                if read.deadline is not None and time.time() >= read.deadline:
                    tracker.try_claim(stop)  # nothing more is ours: the restriction is done
                    break
                want = min(self._batch_size, stop - done_upto)
                messages = self._data(consumer.consume(want, self._timing.poll_s))
                if not messages:
                    if self._position(consumer, tp) >= stop:  # only non-data records left
                        tracker.try_claim(stop)
                        done_upto = stop
                        break
                    caught_up = read.waits_for_data and self._caught_up(
                        consumer, tp, read, done_upto
                    )
                    self._watch.check(
                        consumer,
                        silent_since=None if caught_up else last_data,
                        context=f"{read.key} at offset {done_upto}",
                    )
                    if caught_up:
                        idle = Timestamp.now() - Duration.of(self._timing.idle_watermark_delay_s)
                        watermark.advance_to(idle)  # an idle partition must not hold windows back
                        tracker.defer_remainder(Duration.of(self._timing.resume_delay_s))
                        break
                    self._check_stall(read, done_upto, stop, last_data)
                    continue
                last_data = time.monotonic()
                keep = _claim(tracker, messages)
                if keep:
                    yield from self._emit(read, messages[:keep], watermark)
                    done_upto = messages[keep - 1].offset() + 1
                if keep < len(messages):  # the runner split the restriction: the rest is not ours
                    done_upto = tracker.current_restriction().stop
                    break
                if (
                    read.waits_for_data
                    and time.monotonic() - began >= self._timing.checkpoint_interval_s
                ):
                    tracker.defer_remainder()
                    break
        finally:
            consumer.unassign()
        return done_upto

    def _record_position(self, read: PartitionRead, next_offset: int, finalizer: Any) -> None:
        """Make ``next_offset`` the partition's position to commit: in the run's metrics (a
        driver commits them after the run) and, with ``commit="bundle"``, in the bundle's
        finalization."""
        Metrics.distribution(
            METRIC_NAMESPACE, next_offset_metric(self._settings.source_name, read.key)
        ).update(next_offset)
        if self._commit == "bundle":
            finalizer.register(
                functools.partial(self._commit_offset, read.topic, read.partition, next_offset)
            )

    def _emit(
        self, read: PartitionRead, messages: Sequence[Message], watermark: Any
    ) -> Iterator[Any]:
        converted = self._converter.convert(read.topic, read.partition, messages)
        self._counters.inc(ROWS_IN, len(messages))
        self._counters.inc(ROWS_OUT, converted.rows_out)

        TALLY.add(self._settings.source_name, len(messages))
        for table, event_ms in converted.tables:
            timestamp = Timestamp(micros=event_ms * 1000)
            yield beam.window.TimestampedValue(table, timestamp)
            watermark.advance_to(timestamp)
        if converted.dead_letters is not None:
            self._counters.inc(ROWS_DEAD, converted.rows_dead_lettered)
            stamped = beam.window.TimestampedValue(
                converted.dead_letters, Timestamp(micros=converted.dead_letter_time_ms * 1000)
            )
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, stamped)

    @staticmethod
    def _data(messages: list[Message]) -> list[Message]:
        """The data messages; a consumer error other than end-of-partition is raised."""
        if not any(map(Message.error, messages)):
            return messages
        for message in messages:
            error = message.error()
            if error is not None and error.code() not in _BENIGN:
                raise KafkaException(error)
        return [m for m in messages if m.error() is None]

    @staticmethod
    def _position(consumer: Consumer, tp: TopicPartition) -> int:
        [position] = consumer.position([tp])
        return position.offset

    @staticmethod
    def _caught_up(
        consumer: Consumer, tp: TopicPartition, read: PartitionRead, done_upto: int
    ) -> bool:
        """True once everything in the partition is read: the planned end and the latest
        high watermark a fetch reported."""
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        return done_upto >= max(read.log_end, high)

    def _check_stall(
        self, read: PartitionRead, done_upto: int, stop: int, last_data: float
    ) -> None:
        stalled = time.monotonic() - last_data
        if stalled > self._timing.stall_timeout_s:
            raise TimeoutError(
                f"Kafka partition {read.key}: no records for {stalled:.0f}s while offsets "
                f"{done_upto}..{stop - 1} remain below the end planned for this read"
            )

    def _commit_offset(self, topic: str, partition: int, offset: int) -> None:
        """Bundle finalization: the bundle's outputs are durable, its offsets may be committed.

        Never moves the group's offset back. Runners finalize bundles asynchronously, so the
        bundle of a split's primary can be finalized after the bundle of its residual (on
        another worker); committing the primary's lower offset then would make the next run
        read the residual's durable records again.
        """
        consumer = self._consumer()
        try:
            [committed] = consumer.committed(
                [TopicPartition(topic, partition)], timeout=self._timing.broker_confirm_s
            )
            if committed.offset >= offset:
                return
            consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        except KafkaException as exc:  # the records will be read again: duplicates, not loss
            self._counters.inc("commit_failures")
            log.warning(
                "kafka source %s: commit of %s/%s@%s failed: %s",
                self._settings.source_name,
                topic,
                partition,
                offset,
                exc,
            )


class UnboundedReadPartitionFn(ReadPartitionFn):
    """The same reader, declared unbounded per element (streaming runners need to know)."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        read: PartitionRead,
        finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: Any = TRACKER_PARAM,
        watermark: Any = WATERMARK_PARAM,
    ) -> Iterator[Any]:
        yield from self._read(read, tracker, watermark, finalizer)


def _watch(config: ClientConfig, timing: Timing) -> BrokerWatch:
    return BrokerWatch(config.bootstrap_servers, timing.broker_silence_s, timing.broker_confirm_s)


def _claim(tracker: Any, messages: Sequence[Message]) -> int:
    """How many of ``messages`` (in offset order) this restriction may emit, claimed."""
    if tracker.try_claim(messages[-1].offset()):
        return len(messages)
    stop = tracker.current_restriction().stop
    return sum(1 for m in messages if m.offset() < stop)
