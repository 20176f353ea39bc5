"""The Kafka source's splittable DoFn proven the way Beam's own SDF tests prove one, on a real
broker (the embedded Tansu).

Two harnesses, both Beam's:

- :class:`Worker` runs the reading DoFn with ``apache_beam.runners.common.DoFnRunner``, the class
  an SDK harness runs every ParDo with. Its invoker creates the tracker and the watermark
  estimator from the DoFn's own providers and wraps them thread-safe, passes the bundle
  finalizer, turns ``defer_remainder`` into a deferred residual (with the watermark the runner
  is told) and takes runner splits through ``PerWindowInvoker.try_split``, as a harness does for
  a ``ProcessBundleSplitRequest`` (``runners/common_test.py`` tests splitting the same way).
  A residual is resumed by handing its ``residual_value`` to another worker, as a runner does.
- The FnApiRunner with an embedded gRPC worker and ``fn_runner.split_manager``, the hook
  ``fn_runner_test.FnApiRunnerSplitTest`` uses to split a running bundle, and which calls
  ``FinalizeBundle`` after each bundle it has received the outputs of.

Committed offsets are always read from the broker by a separate confluent-kafka consumer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.runners.common import DoFnRunner, Receiver
from apache_beam.runners.portability import fn_api_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.sdf_utils import SplitResultPrimary, SplitResultResidual
from apache_beam.transforms import environments
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from confluent_kafka import Consumer, TopicPartition

from connectors import records
from connectors.kafka import PartitionRead, ReadKafka, Timing
from connectors.kafka.reader import DEAD_LETTERS
from connectors.kafka.restriction import UNBOUNDED, PartitionRestrictions
from tests.kafka_broker import produce, unique_group

OLD_MS = 1_600_000_000_000
"""Event times of 2020: far behind the wall clock, so only idleness can move a watermark to now."""
RESTRICTIONS = PartitionRestrictions()


def values(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"i": i}).encode() for i in range(start, start + n)]


def committed_by_broker(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    """The group's committed offset as an outside client sees it (None: nothing committed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        [found] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
    finally:
        consumer.close()
    return found.offset if found.offset >= 0 else None


def sized(read: PartitionRead, restriction: OffsetRange | None = None) -> WindowedValue:
    """The element a runner hands to the SDF's Process step: ``((element, (restriction,
    watermark state)), size)``, made by the source's restriction provider (the work of Beam's
    PairWithRestriction and SplitAndSizeRestriction steps)."""
    restriction = restriction or RESTRICTIONS.initial_restriction(read)
    size = RESTRICTIONS.restriction_size(read, restriction)
    return GlobalWindows.windowed_value(((read, (restriction, None)), size))


def offsets_of(outputs: list[WindowedValue]) -> list[int]:
    return [o for wv in outputs for o in wv.value.column(records.OFFSET_COLUMN).to_pylist()]


class Outputs(Receiver):
    """Receives a tag's outputs; ``on_output`` runs on the processing thread while the DoFn's
    generator is suspended at that output (where a harness may get a split request)."""

    def __init__(self) -> None:
        self.values: list[WindowedValue] = []
        self.on_output: Callable[[WindowedValue], None] | None = None

    def receive(self, windowed_value: WindowedValue) -> None:
        self.values.append(windowed_value)
        if self.on_output is not None:
            self.on_output(windowed_value)


@dataclass
class Bundle:
    """What one bundle did: the rows' offsets and outputs, the deferred residuals (self
    checkpoints), the splits a runner took while it ran, and the runner's finalize call."""

    offsets: list[int]
    outputs: list[WindowedValue]
    residuals: list[SplitResultResidual]
    splits: list[tuple[list[SplitResultPrimary], list[SplitResultResidual]]]
    finalize: Callable[[], None]

    @property
    def split(self) -> tuple[OffsetRange, OffsetRange]:
        """The restrictions of the one runner split: (primary, residual)."""
        [([primary], [residual])] = self.splits
        return restriction_of(primary.primary_value), restriction_of(residual.residual_value)


def restriction_of(value: WindowedValue) -> OffsetRange:
    (_read, (restriction, _state)), _size = value.value
    return restriction


class Worker:
    """One instance of the source's reading DoFn, run by Beam's DoFnRunner as a harness runs it."""

    def __init__(self, source: ReadKafka) -> None:
        self.fn = source._reader
        self.rows = Outputs()
        self.runner = DoFnRunner(
            self.fn,
            [],
            {},
            [],
            Windowing(GlobalWindows()),
            tagged_receivers={None: self.rows, DEAD_LETTERS: Outputs()},
            step_name="Read",
        )
        self.runner.setup()

    def bundle(
        self,
        element: WindowedValue,
        *,
        split_at_output: tuple[int, float] | None = None,
        split_at_fetch: tuple[int, float] | None = None,
        split_at_assign: bool = False,
    ) -> Bundle:
        """Process ``element`` in a new bundle; finalizing it is left to the caller.

        A runner split of ``fraction`` can be requested when the n-th table is output
        (``split_at_output=(n, fraction)``), when the n-th fetch has returned its messages but
        before the reader claimed them (``split_at_fetch``: the split lands inside a batch), or
        right after the consumer was assigned, before anything was claimed (``split_at_assign``).
        A harness takes split requests on its control thread at any moment; these hooks make
        them land at exactly those moments.
        """
        self.runner.bundle_finalizer_param.reset()  # what a harness does between bundles
        self.rows.values = []
        splits: list = []

        def split(fraction: float) -> None:
            splits.append(self.runner.try_split(fraction))

        if split_at_output is not None:
            nth, fraction = split_at_output
            self.rows.on_output = lambda _: len(self.rows.values) == nth and split(fraction)
        else:
            self.rows.on_output = None
        if split_at_fetch is not None or split_at_assign:
            self.fn._live_consumer = SplitHook(
                self.fn._consumer(), split, fetch=split_at_fetch, at_assign=split_at_assign
            )
        self.runner.start()
        residuals = self.runner.process_with_sized_restriction(element)
        self.runner.finish()
        return Bundle(
            offsets_of(self.rows.values),
            list(self.rows.values),
            list(residuals),
            [s for s in splits if s],
            self.runner.finalize,
        )

    def close(self) -> None:
        self.runner.teardown()


class SplitHook:
    """The reader's real consumer, calling ``split`` at one moment of the read (a test hook:
    every call still goes to the broker)."""

    def __init__(
        self,
        consumer: Consumer,
        split: Callable[[float], None],
        *,
        fetch: tuple[int, float] | None,
        at_assign: bool,
    ) -> None:
        self._consumer = consumer
        self._split = split
        self._fetch = fetch
        self._at_assign = at_assign
        self._fetches = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._consumer.assign(partitions)
        if self._at_assign:
            self._at_assign = False
            self._split(0.0)

    def consume(self, num_messages: int, timeout: float) -> list:
        messages = self._consumer.consume(num_messages, timeout)
        if messages and self._fetch is not None:
            self._fetches += 1
            nth, fraction = self._fetch
            if self._fetches == nth:
                self._split(fraction)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Makes workers (each a set-up instance of the reading DoFn), torn down after the test."""
    made: list[Worker] = []

    def make(bootstrap: str, topic: str, group: str, **kwargs: Any) -> Worker:
        kwargs.setdefault("batch_size", 10)
        source = ReadKafka(bootstrap, topic, source_name="sdf", group_id=group, **kwargs)
        made.append(Worker(source))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def fast(**kwargs: float) -> Timing:
    return Timing(poll_s=0.2, resume_delay_s=0.1, **kwargs)


# --------------------------------------------------------------------------- 1. checkpoint and resume


@pytest.mark.parametrize(
    ("split", "batch_size", "expected_stop"),
    [
        ({"split_at_output": (3, 0.0)}, 10, 30),  # a checkpoint between batches
        ({"split_at_fetch": (2, 0.0)}, 30, 30),  # a checkpoint while batch 30..59 is in flight
        ({"split_at_fetch": (2, 0.2)}, 30, 43),  # a split inside that batch: 29 + 71 * 0.2
        ({"split_at_output": (2, 0.5)}, 10, 59),  # half the remainder: 19 + 81 * 0.5
    ],
    ids=["checkpoint", "checkpoint-in-flight", "split-mid-batch", "split-half"],
)
def test_primary_and_residual_read_every_record_once(
    kafka_broker, topic, workers, split, batch_size, expected_stop
):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(100), partitions=1)
    read = PartitionRead(name, 0, 0, 100, 100)

    first = workers(bootstrap, name, group, batch_size=batch_size).bundle(sized(read), **split)
    primary, residual = first.split
    assert (primary.start, primary.stop, residual.stop) == (0, expected_stop, 100)
    assert residual.start == primary.stop and not first.residuals
    assert first.offsets == list(range(primary.stop))  # the primary's records, nothing beyond

    [split_residual] = first.splits[0][1]
    second = workers(bootstrap, name, group, batch_size=batch_size).bundle(
        split_residual.residual_value
    )
    assert second.offsets == list(range(residual.start, 100)) and not second.residuals
    assert sorted(first.offsets + second.offsets) == list(range(100))  # no gap, no duplicate


@pytest.mark.parametrize("bounded", ["end_offsets", None])
def test_a_checkpoint_before_the_first_claim_ends_the_primary_at_once(
    kafka_broker, topic, workers, bounded
):
    """A runner checkpoint that arrives before the reader claimed anything leaves it an empty
    primary. The reader used to keep polling for zero messages until ``stall_timeout_s`` and
    fail the bundle with "offsets 0..-1 remain"."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(40), partitions=1)
    read = PartitionRead(name, 0, 0, 40 if bounded else None, 40)
    timing = fast(stall_timeout_s=5.0)

    began = time.monotonic()
    worker = workers(bootstrap, name, group, bounded=bounded, timing=timing)
    first = worker.bundle(sized(read), split_at_assign=True)
    assert time.monotonic() - began < 2.0
    primary, residual = first.split
    assert (primary.start, primary.stop, residual.start) == (0, 0, 0) and first.offsets == []
    first.finalize()
    assert committed_by_broker(bootstrap, group, name) is None  # nothing read, nothing committed

    [split_residual] = first.splits[0][1]
    second = workers(bootstrap, name, group, bounded=bounded, timing=timing).bundle(
        split_residual.residual_value
    )
    assert second.offsets == list(range(40))


def test_an_endless_restriction_checkpoints_itself_and_resumes(kafka_broker, topic, workers):
    """Unbounded: a caught-up partition defers its remainder (with the resume delay); a busy
    one checkpoints every ``checkpoint_interval_s`` (0 here: after every batch). Chained through
    their residuals, as a runner resumes them, the bundles read each record once, including
    records produced while the read was parked."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(25), partitions=1)
    read = PartitionRead(name, 0, 0, None, 25)
    make = lambda: workers(  # noqa: E731 - a new worker per bundle, as on another machine
        bootstrap, name, group, bounded=None, timing=fast(checkpoint_interval_s=0.0)
    )

    bundles = [make().bundle(sized(read))]
    while bundles[-1].offsets:  # one batch per bundle until a bundle finds nothing new
        [residual] = bundles[-1].residuals
        assert restriction_of(residual.residual_value).stop == UNBOUNDED
        bundles.append(make().bundle(residual.residual_value))
    assert [len(b.offsets) for b in bundles] == [10, 10, 5, 0]
    [parked] = bundles[-1].residuals
    assert restriction_of(parked.residual_value) == OffsetRange(25, UNBOUNDED)
    assert Duration.of(0) < parked.deferred_timestamp <= Duration.of(0.1)  # the resume delay

    produce(bootstrap, name, values(15, start=25), partitions=1)
    resumed = make().bundle(parked.residual_value)
    later = make().bundle(resumed.residuals[0].residual_value)
    read_offsets = [o for b in [*bundles, resumed, later] for o in b.offsets]
    assert read_offsets == list(range(40))  # in order, contiguous, once


def test_a_fractional_split_of_an_endless_restriction_splits_where_a_checkpoint_would(
    kafka_broker, topic, workers
):
    """Half of an endless remainder used to be offset ~4.6e18: a primary that looked bounded
    (draining would never end it) and a residual waiting for that offset. Now the primary ends
    at what was claimed and the residual keeps the endless rest, which draining truncates."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(30), partitions=1)
    read = PartitionRead(name, 0, 0, None, 30)

    first = workers(bootstrap, name, group, bounded=None, timing=fast()).bundle(
        sized(read), split_at_output=(1, 0.5)
    )
    primary, residual = first.split
    assert primary == OffsetRange(0, 10) and residual == OffsetRange(10, UNBOUNDED)
    assert first.offsets == list(range(10)) and not first.residuals
    assert RESTRICTIONS.truncate(read, primary) == primary  # draining finishes the primary
    assert RESTRICTIONS.truncate(read, residual) is None  # and stops the endless rest

    [split_residual] = first.splits[0][1]
    second = workers(bootstrap, name, group, bounded=None, timing=fast()).bundle(
        split_residual.residual_value
    )
    assert second.offsets == list(range(10, 30))
    [parked] = second.residuals
    assert restriction_of(parked.residual_value) == OffsetRange(30, UNBOUNDED)


# --------------------------------------------------------------------------- 2. watermarks


def watermark_of(residual: SplitResultResidual) -> Timestamp:
    """The watermark the runner is told for a residual (and resumes the estimator from)."""
    (_read, (_restriction, state)), _size = residual.residual_value.value
    assert state == residual.current_watermark  # the estimator's state is its watermark
    return residual.current_watermark


def test_the_watermark_follows_event_time_never_goes_back_and_idles_to_the_clock(
    kafka_broker, topic, workers
):
    """Per partition, a checkpoint after every batch shows the watermark the runner gets:
    each batch's earliest event time, held when a batch is older (out of order), then, once the
    partition is caught up, ``now - idle_watermark_delay_s``, moving with the clock. A record
    older than that arriving afterwards is emitted with its own time, behind the watermark: a
    late record, the price of not holding windows open for an idle partition (Java KafkaIO's
    idle handling makes the same trade). The delay is the knob."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    seconds = [0, 1, 2, 100, 101, 102, 50, 51, 52]  # the last batch is older than the one before
    produce(
        bootstrap,
        name,
        values(9),
        partitions=1,
        timestamps=[OLD_MS + s * 1000 for s in seconds],
    )
    read = PartitionRead(name, 0, 0, None, 9)
    timing = fast(checkpoint_interval_s=0.0, idle_watermark_delay_s=2.0)
    make = lambda: workers(  # noqa: E731
        bootstrap, name, group, bounded=None, batch_size=3, timing=timing
    )

    bundles = [make().bundle(sized(read))]
    for _ in range(3):
        bundles.append(make().bundle(bundles[-1].residuals[0].residual_value))
    old = Timestamp(micros=OLD_MS * 1000)
    marks = [watermark_of(b.residuals[0]) for b in bundles[:3]]
    assert marks == [old, old + Duration.of(100), old + Duration.of(100)]
    stamps = [wv.timestamp for b in bundles[:3] for wv in b.outputs]
    assert stamps == [old, old + Duration.of(100), old + Duration.of(50)]  # each batch's earliest

    idle = watermark_of(bundles[3].residuals[0])  # caught up: nothing new for one poll
    assert bundles[3].offsets == [] and Duration.of(2) <= Timestamp.now() - idle < Duration.of(5)
    time.sleep(0.3)
    later = make().bundle(bundles[3].residuals[0].residual_value)
    assert watermark_of(later.residuals[0]) >= idle + Duration.of(0.3)  # moves with the clock

    produce(bootstrap, name, values(1, start=9), partitions=1, timestamps=[OLD_MS + 200_000])
    late = make().bundle(later.residuals[0].residual_value)
    assert late.offsets == [9] and late.outputs[0].timestamp == old + Duration.of(200)
    assert watermark_of(late.residuals[0]) >= watermark_of(later.residuals[0])  # never back


def test_an_idle_partition_does_not_hold_the_watermark_back(kafka_broker, topic, workers):
    """Of two partitions, one busy with old records and one that never gets any, the runner's
    watermark (the minimum of theirs) is the busy one's event time, not the idle one's start."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=2), unique_group()
    produce(bootstrap, name, values(10), partitions=1, timestamps=[OLD_MS] * 10)
    busy, idle = PartitionRead(name, 0, 0, None, 10), PartitionRead(name, 1, 0, None, 0)
    timing = fast(checkpoint_interval_s=0.0)
    make = lambda: workers(bootstrap, name, group, bounded=None, timing=timing)  # noqa: E731

    busy_mark = watermark_of(make().bundle(sized(busy)).residuals[0])
    idle_bundle = make().bundle(sized(idle))
    idle_mark = watermark_of(idle_bundle.residuals[0])
    assert busy_mark == Timestamp(micros=OLD_MS * 1000)
    assert idle_bundle.offsets == [] and idle_mark > busy_mark and idle_mark > MIN_TIMESTAMP
    assert min(busy_mark, idle_mark) == busy_mark


# --------------------------------------------------------------------------- 3. bundle finalization


def test_offsets_are_committed_only_when_the_runner_finalizes_the_bundle(
    kafka_broker, topic, workers
):
    """commit="bundle": processing commits nothing; the finalize call (the runner has made the
    bundle's outputs durable) commits the next offset to read; a bundle that failed or was
    abandoned, and so is never finalized, commits nothing; its retry does."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(100), partitions=1)
    read = PartitionRead(name, 0, 0, 100, 100)
    committed = lambda: committed_by_broker(bootstrap, group, name)  # noqa: E731
    seen = []

    first = workers(bootstrap, name, group, commit="bundle").bundle(
        sized(read), split_at_output=(3, 0.0)
    )
    seen.append(committed())
    first.finalize()
    seen.append(committed())
    [residual] = first.splits[0][1]

    failed = workers(bootstrap, name, group, commit="bundle").bundle(residual.residual_value)
    assert failed.offsets == list(range(30, 100))  # read and emitted, then never finalized
    seen.append(committed())

    retried = workers(bootstrap, name, group, commit="bundle").bundle(residual.residual_value)
    seen.append(committed())
    retried.finalize()
    seen.append(committed())
    assert seen == [None, 30, 30, 30, 100]  # last processed + 1, never back


def test_a_late_finalization_never_moves_the_committed_offset_back(kafka_broker, topic, workers):
    """Runners finalize asynchronously: the bundle that read a split's primary can be finalized
    after the one that read its residual. Its lower offset used to overwrite the higher one."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(100), partitions=1)
    read = PartitionRead(name, 0, 0, 100, 100)

    primary = workers(bootstrap, name, group, commit="bundle").bundle(
        sized(read), split_at_output=(2, 0.5)
    )
    [residual] = primary.splits[0][1]
    rest = workers(bootstrap, name, group, commit="bundle").bundle(residual.residual_value)
    assert primary.offsets == list(range(59)) and rest.offsets == list(range(59, 100))

    rest.finalize()
    assert committed_by_broker(bootstrap, group, name) == 100
    primary.finalize()
    assert committed_by_broker(bootstrap, group, name) == 100


def test_manual_commit_never_commits_in_finalization(kafka_broker, topic, workers):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(20), partitions=1)
    done = workers(bootstrap, name, group, commit="manual").bundle(
        sized(PartitionRead(name, 0, 0, 20, 20))
    )
    done.finalize()
    assert done.offsets == list(range(20)) and committed_by_broker(bootstrap, group, name) is None


# --------------------------------------------------------------------------- the FnApiRunner


@dataclass
class ProbeState:
    """What a :class:`Probe` saw, and its breakpoint (Beam's ``ElementCounter`` idea)."""

    bootstrap: str
    group: str
    topic: str
    hold_after: int | None = None
    fail_from: int | None = None
    tables: list[list[int]] = field(default_factory=list)
    committed_at: dict[int, int | None] = field(default_factory=dict)
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


PROBES: dict[str, ProbeState] = {}


class Probe(beam.DoFn):
    """Fused after the reader, so it runs inside the reader's bundle: records each table's
    offsets and the group's committed offset at that moment (read from the broker), holds the
    bundle after ``hold_after`` tables until released, and fails on an offset from
    ``fail_from`` (a bundle that fails is never finalized)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def process(self, table):  # noqa: ANN001, ANN201 - no hints: Beam would type-check them
        probe = PROBES[self._name]
        offsets = table.column(records.OFFSET_COLUMN).to_pylist()
        if probe.fail_from is not None and offsets[-1] >= probe.fail_from:
            raise RuntimeError(f"the bundle holding offset {offsets[-1]} fails")
        probe.committed_at[offsets[0]] = committed_by_broker(
            probe.bootstrap, probe.group, probe.topic
        )
        probe.tables.append(offsets)
        if len(probe.tables) == probe.hold_after:
            probe.reached.set()
            assert probe.released.wait(10), "the split manager never released the bundle"


def run_with_probe(source: ReadKafka, probe: str, runner: fn_api_runner.FnApiRunner) -> None:
    pipeline = beam.Pipeline(runner=runner)
    (pipeline | "Kafka" >> source).rows | beam.ParDo(Probe(probe))
    pipeline.run().wait_until_finish()


def grpc_runner() -> fn_api_runner.FnApiRunner:
    """A runner whose worker takes split requests while a bundle runs (FnApiRunnerSplitTest's)."""
    return fn_api_runner.FnApiRunner(
        default_environment=environments.EmbeddedPythonGrpcEnvironment.default()
    )


@pytest.mark.parametrize("residual_fails", [False, True], ids=["finalized", "residual-fails"])
def test_fn_api_runner_checkpoint_resume_and_finalization(kafka_broker, topic, residual_fails):
    """The FnApiRunner checkpoints the running read (a split at fraction 0 after two tables),
    finalizes that bundle, then runs the residual in a bundle of its own. During the first
    bundle nothing is committed; the residual's bundle sees exactly the split point committed;
    at the end everything is. When the residual's bundle fails, the run fails and the split
    point stays the committed offset."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(100), partitions=1)
    probe = f"checkpoint-{residual_fails}"
    PROBES[probe] = ProbeState(
        bootstrap, group, name, hold_after=2, fail_from=20 if residual_fails else None
    )
    splits = []

    def split_manager(num_elements: int) -> Iterator[float | None]:
        if splits:  # the residual's bundle runs unsplit
            return
        yield None  # let the runner send the bundle's input
        assert PROBES[probe].reached.wait(20)
        splits.append((yield 0.0))
        PROBES[probe].released.set()

    source = ReadKafka(bootstrap, name, source_name="fn", group_id=group, batch_size=10)
    with fn_runner.split_manager("Kafka/Read/Read", split_manager):
        if residual_fails:
            with pytest.raises(Exception, match="the bundle holding offset 29"):
                run_with_probe(source, probe, grpc_runner())
        else:
            run_with_probe(source, probe, grpc_runner())

    [split] = splits
    assert split is not None and len(split.residual_roots) == 1  # the runner took a checkpoint
    seen = PROBES[probe]
    if residual_fails:
        assert [o for t in seen.tables for o in t] == list(range(20))
        assert committed_by_broker(bootstrap, group, name) == 20
        return
    assert [o for t in seen.tables for o in t] == list(range(100))  # once each, in order
    assert seen.committed_at == {0: None, 10: None, **dict.fromkeys(range(20, 100, 10), 20)}
    assert committed_by_broker(bootstrap, group, name) == 100


def test_fn_api_runner_resumes_self_checkpoints_and_finalizes_each_bundle(kafka_broker, topic):
    """A read without an end offset (``bounded=None``, stopped by ``max_duration_s``) on the
    FnApiRunner: the reader checkpoints after every batch and when caught up, the runner
    finalizes each bundle and resumes the residual in the next. Each table's bundle sees the
    previous bundles' offsets committed: the finalization ran before the resume and committed
    last processed + 1."""
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(partitions=1), unique_group()
    produce(bootstrap, name, values(30), partitions=1)
    probe = "self-checkpoints"
    PROBES[probe] = ProbeState(bootstrap, group, name)
    source = ReadKafka(
        bootstrap,
        name,
        source_name="fn",
        group_id=group,
        batch_size=10,
        bounded=None,
        max_duration_s=2.0,
        timing=fast(checkpoint_interval_s=0.0),
    )
    run_with_probe(source, probe, fn_api_runner.FnApiRunner())

    seen = PROBES[probe]
    assert seen.tables == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    assert seen.committed_at == {0: None, 10: 10, 20: 20}
    assert committed_by_broker(bootstrap, group, name) == 30
