"""Call strategies: each kind's behaviour, measured so that it would fail as another kind.

Deterministic tests run on a FakeClock; every kind also has a real-clock test (a call that
sleeps like a service with latency, timestamps from ``time.monotonic``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections.abc import Callable

import pytest

from transforms.call_strategies import (
    JITTER_GUARD,
    AdaptiveStrategy,
    FakeClock,
    RateLimiter,
    StrategyConfig,
    StrategyError,
    TokenBucket,
    make_limiter,
    make_strategy,
    steady_rate,
    workers_from_options,
)

_names = itertools.count()


def fresh(prefix: str) -> str:
    """A step name no other test used: named pools and limiters are per process."""
    return f"{prefix}-{next(_names)}"


class InFlight:
    """A service double's view: calls in flight now, the most ever, start times per key."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.starts: list[float] = []
        self.per_key: dict[object, int] = {}
        self.most_per_key = 0
        self.order: dict[object, list[int]] = {}

    def __call__(self, request: tuple[object, int]) -> int:
        key, seq = request
        with self.lock:
            self.starts.append(time.monotonic())
            self.now += 1
            self.most = max(self.most, self.now)
            self.per_key[key] = self.per_key.get(key, 0) + 1
            self.most_per_key = max(self.most_per_key, self.per_key[key])
            self.order.setdefault(key, []).append(seq)
        time.sleep(self.latency)
        with self.lock:
            self.now -= 1
            self.per_key[key] -= 1
        return seq


class CallTimes:
    """A call double that records when each call went (``time.monotonic``), then sleeps
    ``latency``; safe to call from many threads."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, _request: object) -> None:
        with self._lock:
            self.times.append(time.monotonic())
        if self.latency:
            time.sleep(self.latency)


def run_threads(target: Callable[[], object], n: int) -> None:
    """``target`` on ``n`` threads at once (workers, or DoFn instances of one worker)."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def permit_times(limiter: RateLimiter | TokenBucket, clock: FakeClock, n: int) -> list[float]:
    """The fake clock's time at each of ``n`` permits taken one after another."""
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(round(clock.now(), 9))
    return times


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """The most timestamps in any half-open window ``[t, t + width)`` (sliding: every window
    starting at a timestamp is checked, which covers every window)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def max_in_aligned_seconds(times: list[float]) -> int:
    counts: dict[int, int] = {}
    for t in times:
        counts[math.floor(t)] = counts.get(math.floor(t), 0) + 1
    return max(counts.values(), default=0)


# ---------------------------------------------------------------------------------------------
# configuration


def test_config_refuses_what_cannot_work():
    with pytest.raises(StrategyError, match="needs both 'burst'"):
        StrategyConfig(kind="burst", burst=5)
    with pytest.raises(StrategyError, match="only applies to kind 'burst'"):
        StrategyConfig(kind="parallel", burst=5, rate_limit=10)
    with pytest.raises(StrategyError, match="min_concurrency"):
        StrategyConfig(kind="adaptive", min_concurrency=9, max_concurrency=8)
    with pytest.raises(StrategyError, match="batch_size"):
        StrategyConfig(batch_size=5, min_batch_size=10)
    assert StrategyConfig.from_mapping({"kind": "sequential", "other": 1}).kind == "sequential"


def test_spec_model_has_the_same_fields_and_refusals():
    from pydantic import ValidationError

    from pipelines.spec_base import StrategySpec

    spec = StrategySpec(kind="burst", burst=3, rate_limit=10)
    config = StrategyConfig.from_mapping(spec.model_dump())
    assert (config.kind, config.burst, config.rate_limit) == ("burst", 3, 10)
    assert set(StrategySpec.model_fields) == set(StrategyConfig.__dataclass_fields__)
    with pytest.raises(ValidationError, match="needs both"):
        StrategySpec(kind="burst", burst=3)
    with pytest.raises(ValidationError, match="did you mean 'max_concurrency'"):
        StrategySpec(max_concurent=3)


# ---------------------------------------------------------------------------------------------
# rate limits


def test_token_bucket_of_capacity_one_spaces_permits_evenly():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=1, clock=clock)
    assert permit_times(bucket, clock, 5) == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_admission_counts_the_times_calls_really_went():
    """Pacing planned 100/s, but only 3 calls may be admitted per second: the fourth waits
    for the first to leave the window, whatever the pacing said (a late thread's call is
    judged by when it goes, not by when it was planned)."""
    clock = FakeClock()
    limiter = RateLimiter(rate=100, per_window=3, window=1.0, clock=clock)
    assert permit_times(limiter, clock, 5) == [0.0, 0.01, 0.02, 1.0, 1.01]


def test_a_workers_share_is_whole_calls_spread_over_a_guarded_second():
    assert steady_rate(500, 1) == pytest.approx(500 / (1 + JITTER_GUARD))
    assert steady_rate(500, 3) == pytest.approx(166 / (1 + JITTER_GUARD))  # 3 x 166 <= 500
    assert steady_rate(0.5, 1) == 0.5
    # with capacity 1, floor(share) + 1 calls always span more than one second
    for rate, workers in [(500, 1), (500, 3), (7, 2), (1, 1)]:
        share = steady_rate(rate, workers)
        n = math.floor(rate / workers)
        assert n / share > 1.0  # n + 1 permits are n intervals apart


def test_workers_come_from_the_runner_options():
    assert workers_from_options({"runner": "FnApiRunner", "direct_num_workers": 4}) == 1
    assert (
        workers_from_options({"direct_num_workers": 4, "direct_running_mode": "multi_processing"})
        == 4
    )
    dataflow = {"runner": "DataflowRunner", "max_num_workers": 5, "machine_type": "n1-standard-4"}
    assert workers_from_options(dataflow) == 20  # one SDK process per vCPU
    assert (
        workers_from_options({**dataflow, "experiments": ["no_use_multiple_sdk_containers"]}) == 5
    )
    assert workers_from_options({"runner": "DataflowRunner", "num_workers": 3}) == 3
    assert workers_from_options({"runner": "FlinkRunner", "parallelism": 6}) == 6
    with pytest.raises(StrategyError, match="parallelism"):
        workers_from_options({"runner": "FlinkRunner", "parallelism": -1})
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(
        flags=[], direct_num_workers=3, direct_running_mode="multi_processing"
    )
    assert workers_from_options(options) == 3


def test_a_named_limiter_is_shared_by_the_process():
    config = StrategyConfig(rate_limit=100)
    name = fresh("shared")
    assert make_limiter(config, name=name) is make_limiter(config, name=name)
    assert make_limiter(config, name="") is not make_limiter(config, name="")
    assert make_limiter(StrategyConfig(), name=name) is None


def test_rate_limit_is_never_exceeded_in_any_second_by_two_workers_real_clock():
    """Two worker processes' worth of strategies (their own limiters), each with 32 threads,
    calling as fast as they can under a job-wide 150/s for 1.6 s: no one-second window,
    sliding or aligned, sees more than 150 calls, and the limit is used (within 10 %)."""
    rate, workers, seconds = 150, 2, 1.6
    call = CallTimes()

    def worker():
        strategy = make_strategy(
            StrategyConfig(max_concurrency=32, rate_limit=rate), workers=workers, name=fresh("w")
        )
        n = int(steady_rate(rate, workers) * seconds)
        strategy.map(range(n), call)

    run_threads(worker, workers)
    times = call.times
    assert max_in_any_window(times) <= rate
    assert max_in_aligned_seconds(times) <= rate
    assert max_in_any_window(times) >= 0.9 * rate  # and it is not simply slow


@pytest.mark.slow
def test_500_per_second_over_three_workers_of_64_threads_real_clock():
    """The issue's case: 500 req/s for the job, three workers (a fractional share, 166.7),
    64 threads each, 3 s of 1 ms calls: no one-second window over 500, busiest at least 450."""
    rate, workers, seconds = 500, 3, 3.0
    call = CallTimes(latency=0.001)

    def worker():
        strategy = make_strategy(
            StrategyConfig(max_concurrency=64, rate_limit=rate), workers=workers, name=fresh("w")
        )
        strategy.map(range(int(steady_rate(rate, workers) * seconds)), call)

    run_threads(worker, workers)
    times = call.times
    assert max_in_any_window(times) <= rate
    assert max_in_aligned_seconds(times) <= rate
    assert max_in_any_window(times) >= 0.9 * rate


def test_threads_of_one_worker_share_its_limiter_real_clock():
    """Two DoFn instances (same step name) in one process: together at the worker's share."""
    rate = 40
    name = fresh("step")
    call = CallTimes()

    def instance():
        make_strategy(StrategyConfig(rate_limit=rate), name=name).map(range(30), call)

    run_threads(instance, 2)
    times = call.times
    assert len(times) == 60
    assert max_in_any_window(times) <= rate  # alone, each would have taken 40 in one second
    elapsed = max(times) - min(times)
    assert elapsed == pytest.approx(59 / steady_rate(rate), rel=0.1)


# ---------------------------------------------------------------------------------------------
# sequential


def test_sequential_without_key_is_one_call_at_a_time_in_order():
    service = InFlight(latency=0.002)
    strategy = make_strategy(StrategyConfig(kind="sequential", max_concurrency=8))
    requests = [("k", i) for i in range(20)]
    assert strategy.map(requests, service) == list(range(20))
    assert service.most == 1
    assert service.order["k"] == list(range(20))
    assert strategy.stats()["max_in_flight"] == 1


def test_sequential_keeps_per_key_order_and_runs_keys_side_by_side_real_clock():
    """Per key: one in flight, in order. Across keys: concurrent (4 keys, up to 4 at once).
    ``parallel`` would put several calls of one key in flight and break their order."""
    service = InFlight(latency=0.01)
    strategy = make_strategy(StrategyConfig(kind="sequential", max_concurrency=4))
    requests = [(k, i) for i in range(8) for k in "abcd"]  # interleaved keys
    started = time.monotonic()
    results = strategy.map(requests, service, key=lambda r: r[0])
    elapsed = time.monotonic() - started
    assert results == [i for _, i in requests]
    assert service.most_per_key == 1
    assert all(service.order[k] == list(range(8)) for k in "abcd")
    assert service.most == 4  # the keys overlapped
    assert elapsed < 32 * 0.01  # faster than one at a time


# ---------------------------------------------------------------------------------------------
# parallel


def test_parallel_reaches_and_never_exceeds_max_concurrency_real_clock():
    """The first ``max_concurrency`` calls all start before any ends (adaptive would start at
    ``min_concurrency``; sequential at one), and never more are in flight."""
    service = InFlight(latency=0.05)
    strategy = make_strategy(StrategyConfig(kind="parallel", max_concurrency=12))
    results = strategy.map([("k", i) for i in range(60)], service)
    assert results == list(range(60))
    assert service.most == 12
    first = sorted(service.starts)[:12]
    assert first[-1] - first[0] < 0.05  # all twelve began within one call's latency
    assert strategy.stats()["max_in_flight"] == 12


def test_parallel_pool_is_reused_across_bundles():
    name = fresh("pool")
    one = make_strategy(StrategyConfig(max_concurrency=4), name=name)
    two = make_strategy(StrategyConfig(max_concurrency=4), name=name)
    one.map(range(8), lambda x: x)
    two.map(range(8), lambda x: x)
    assert one._pool is two._pool


def test_parallel_handles_2000_calls_per_second_of_20ms_latency_real_clock():
    """The bench path: a 20 ms service needs ~40 in flight for 2,000/s; 64 threads do it."""
    strategy = make_strategy(StrategyConfig(max_concurrency=64), name=fresh("bench"))
    started = time.monotonic()
    strategy.map(range(1500), lambda x: time.sleep(0.02))
    rate = 1500 / (time.monotonic() - started)
    assert rate >= 2000, rate
    assert strategy.stats()["effective_rate"] >= 2000


def test_errors_come_back_in_their_slots():
    def call(x):
        if x % 3 == 0:
            raise RuntimeError(f"bad {x}")
        return x

    strategy = make_strategy(StrategyConfig(max_concurrency=4))
    results = strategy.map(range(7), call)
    assert [type(r) for r in results] == [
        RuntimeError,
        int,
        int,
        RuntimeError,
        int,
        int,
        RuntimeError,
    ]
    assert str(results[3]) == "bad 3"
    assert strategy.stats()["errors"] == 3
    assert strategy.stats()["calls"] == 7


def test_bulk_calls_get_chunks_and_fill_every_slot():
    seen = []

    def bulk(chunk):
        seen.append(len(chunk))
        if chunk[0] == 4:
            raise RuntimeError("bulk failed")
        return [x * 10 for x in chunk]

    strategy = make_strategy(StrategyConfig(batch_size=4, max_concurrency=2))
    results = strategy.map_batches(list(range(10)), bulk)
    assert sorted(seen) == [2, 4, 4]
    assert results[:4] == [0, 10, 20, 30] and results[8:] == [80, 90]
    assert all(isinstance(r, RuntimeError) for r in results[4:8])


# ---------------------------------------------------------------------------------------------
# adaptive


def test_adaptive_aimd_on_a_fake_clock():
    clock = FakeClock()
    config = StrategyConfig(
        kind="adaptive", min_concurrency=2, max_concurrency=10, latency_target=0.1
    )
    strategy = make_strategy(config, clock=clock)
    assert isinstance(strategy, AdaptiveStrategy)
    assert strategy.concurrency == 2
    for _ in range(4):  # slow start: +1 per success
        clock.advance(0.05)
        strategy.observe(0.05, ok=True)
    assert strategy.concurrency == 6
    clock.advance(0.05)
    strategy.observe(0.05, ok=False)  # an error halves
    assert strategy.concurrency == 3
    clock.advance(0.01)
    strategy.observe(0.05, ok=False)  # began before that decrease: same round, no change
    assert strategy.concurrency == 3
    clock.advance(0.6)
    strategy.observe(0.5, ok=True)  # a latency spike over the target also halves
    assert strategy.concurrency == 2  # floored at min_concurrency (3 * 0.5 = 1.5)
    for _ in range(6):  # congestion avoidance: +1/limit per success, +1 per round
        clock.advance(0.05)
        strategy.observe(0.05, ok=True)
    assert strategy.concurrency == 4
    assert strategy.decreases == 2


def test_adaptive_batch_size_grows_additively_and_halves():
    clock = FakeClock()
    config = StrategyConfig(
        kind="adaptive", batch_size=100, min_batch_size=10, max_batch_size=400, latency_target=1
    )
    strategy = make_strategy(config, clock=clock)
    for _ in range(5):
        clock.advance(0.1)
        strategy.observe(0.1, ok=True)
    assert strategy.batch_size == 150
    clock.advance(0.1)
    strategy.observe(0.1, ok=False)
    assert strategy.batch_size == 75


class OverloadedService:
    """Answers 'busy' (as a 429) whenever more than ``capacity`` calls are in flight."""

    def __init__(self, capacity: int, latency: float) -> None:
        self.capacity, self.latency = capacity, latency
        self.lock = threading.Lock()
        self.now = 0

    def __call__(self, _):
        with self.lock:
            self.now += 1
            busy = self.now > self.capacity
        time.sleep(self.latency / 4 if busy else self.latency)
        with self.lock:
            self.now -= 1
        return 429 if busy else 200


def test_adaptive_finds_the_concurrency_a_service_can_take_real_clock():
    """A service that takes 8 at a time: adaptive settles near 8 with few refusals, where
    parallel at its maximum of 32 gets most calls refused."""
    requests = range(600)

    def run(kind: str) -> tuple[float, object]:
        strategy = make_strategy(
            StrategyConfig(kind=kind, min_concurrency=1, max_concurrency=32, latency_target=0.05)
        )
        results = strategy.map(requests, OverloadedService(8, 0.005), ok=lambda r: r == 200)
        return results.count(429) / len(results), strategy

    refused, adaptive = run("adaptive")
    refused_parallel, _ = run("parallel")
    assert refused < 0.15, refused
    assert refused_parallel > 0.5, refused_parallel
    assert 3 <= adaptive.concurrency <= 16
    assert adaptive.decreases >= 1


def test_adaptive_batch_size_follows_the_latency_target_real_clock():
    """A bulk endpoint taking 0.1 ms per row with a 20 ms target: batches settle around the
    200 rows that fit, far from both the start (50) and the maximum (2,000)."""
    sizes = []

    def bulk(chunk):
        sizes.append(len(chunk))
        time.sleep(0.0001 * len(chunk))
        return chunk

    config = StrategyConfig(
        kind="adaptive",
        max_concurrency=1,
        batch_size=50,
        min_batch_size=10,
        max_batch_size=2000,
        latency_target=0.02,
    )
    strategy = make_strategy(config)
    strategy.map_batches(list(range(20000)), bulk)
    late = sizes[len(sizes) // 2 :]
    assert 80 <= sum(late) / len(late) <= 320, late
    assert max(sizes) < 2000


# ---------------------------------------------------------------------------------------------
# burst


def test_burst_allows_exactly_burst_calls_then_the_steady_rate():
    clock = FakeClock()
    config = StrategyConfig(kind="burst", burst=5, rate_limit=10, max_concurrency=1)
    strategy = make_strategy(config, clock=clock)
    starts = []
    strategy.map(range(9), lambda _: starts.append(clock.now()))
    interval = 1 / steady_rate(10)
    assert starts[:5] == [0.0] * 5
    assert starts[5:] == pytest.approx([interval * k for k in range(1, 5)])
    # a plain rate limit (no burst) lets one go at once
    clock2 = FakeClock()
    plain = make_strategy(StrategyConfig(rate_limit=10, max_concurrency=1), clock=clock2)
    starts2 = []
    plain.map(range(3), lambda _: starts2.append(clock2.now()))
    assert starts2 == pytest.approx([0.0, interval, 2 * interval])


def test_burst_real_clock():
    config = StrategyConfig(kind="burst", burst=10, rate_limit=50, max_concurrency=16)
    strategy = make_strategy(config)
    starts: list[float] = []
    lock = threading.Lock()

    def call(_):
        with lock:
            starts.append(time.monotonic())

    strategy.map(range(20), call)
    starts.sort()
    t0 = starts[0]
    interval = 1 / steady_rate(50)
    assert starts[9] - t0 < 0.1  # ten at once (capacity 1 would take 9 intervals: 184 ms)
    steady = [b - a for a, b in itertools.pairwise(starts[10:])]
    assert starts[10] - t0 == pytest.approx(interval, abs=0.015)
    assert min(steady) > interval * 0.6 and sum(steady) / len(steady) == pytest.approx(
        interval, rel=0.15
    )
    assert strategy.stats()["throttled_seconds"] > 0


# ---------------------------------------------------------------------------------------------
# streaming and metrics


def test_streaming_flushes_the_way_batch_by_key_does():
    config = StrategyConfig(kind="streaming", batch_size=250, max_buffering_duration=2.5)
    strategy = make_strategy(config)
    assert strategy.buffering() == {"batch_size": 250, "max_buffering_duration": 2.5}
    from transforms.batching import BatchByKey

    BatchByKey(key_fields=["k"], **strategy.buffering())  # the arguments fit


def test_streaming_strategy_flushes_by_size_and_by_buffering_time():
    """Through BatchByKey on a TestStream: a full batch goes at once, a partial one after
    ``max_buffering_duration`` (the TestStream's processing-time clock), the rest at the end."""
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    from connectors.arrow_coder import ArrowTableCoder
    from tests.test_batching import TestClockAtZero, batch, run_stream
    from transforms.batching import BatchByKey

    strategy = make_strategy(
        StrategyConfig(kind="streaming", batch_size=2, max_buffering_duration=5.0)
    )
    events = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(batch(["a", "a", "a"], 1), 0)])  # a full batch of 2
        .advance_processing_time(6)  # row 3 has waited 6 s > 5: flushed alone
        .add_elements([TimestampedValue(batch(["a"], 4), 0)])
        .advance_watermark_to_infinity()  # row 4: flushed at the end
    )
    transform = BatchByKey(key_fields=["k"], clock=TestClockAtZero(), **strategy.buffering())
    run_stream(events, transform, [("a", (1, 2)), ("a", (3,)), ("a", (4,))])


def test_publish_adds_only_what_is_new():
    class Counters:
        node = "enrich"

        def __init__(self):
            self.values: dict[str, int] = {}

        def inc(self, what, n=1):
            self.values[what] = self.values.get(what, 0) + n

    counters = Counters()
    strategy = make_strategy(StrategyConfig(max_concurrency=2))
    strategy.map(range(5), lambda x: x)
    strategy.publish(counters)
    strategy.map(range(3), lambda x: 1 / 0)
    strategy.publish(counters)
    assert counters.values["calls"] == 8
    assert counters.values["call_errors"] == 3


# ---------------------------------------------------------------------------------------------
# the batch step


EMITTED_AT: list[float] = []


def _emitted(table) -> None:
    EMITTED_AT.append(time.monotonic())


def run_batches(transform, keys: int) -> list[float]:
    """Batch ``keys`` one-row keys on the FnApiRunner; when each batch was emitted."""
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    EMITTED_AT.clear()
    table = pa.table({"k": [f"k{i}" for i in range(keys)], "v": list(range(keys))})
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create([table]) | transform
        _ = out.rows | beam.Map(_emitted)
    return sorted(EMITTED_AT)


def test_batch_step_rate_limit_paces_emitted_batches_real_clock():
    """30 batches all ready at the end of the input, at 25 batches/s for the job: never more
    than 25 in a second, evenly spread (without the limit they go out at once)."""
    from transforms.batching import BatchByKey

    transform = BatchByKey(key_fields=["k"], batch_size=10, step_name=fresh("b"), rate_limit=25)
    times = run_batches(transform, 30)
    assert len(times) == 30
    assert max_in_any_window(times) <= 25
    assert times[-1] - times[0] == pytest.approx(29 / steady_rate(25), rel=0.1)
    free = run_batches(BatchByKey(key_fields=["k"], batch_size=10, step_name=fresh("b")), 30)
    assert free[-1] - free[0] < 0.3


def test_batch_step_burst_sends_burst_batches_at_once_real_clock():
    from transforms.batching import BatchByKey

    transform = BatchByKey(
        key_fields=["k"], batch_size=10, step_name=fresh("b"), rate_limit=20, burst=8
    )
    times = run_batches(transform, 12)
    assert times[7] - times[0] < 0.05  # eight at once
    assert times[8] - times[0] == pytest.approx(1 / steady_rate(20), abs=0.03)
    assert times[11] - times[8] == pytest.approx(3 / steady_rate(20), rel=0.15)


def test_batch_step_takes_only_the_strategies_that_fit():
    from pydantic import ValidationError

    from pipelines.steps.batch import BatchStepSpec

    base = {"name": "b", "type": "batch", "key": ["k"], "batch_size": 10}
    spec = BatchStepSpec(**base, strategy={"kind": "streaming", "rate_limit": 5})
    assert spec.strategy is not None and spec.strategy.rate_limit == 5
    with pytest.raises(ValidationError, match="a batch step makes none"):
        BatchStepSpec(**base, strategy={"kind": "parallel"})
    with pytest.raises(ValidationError, match="step's own fields"):
        BatchStepSpec(**base, strategy={"kind": "streaming", "batch_size": 3})


def test_batch_step_rate_limit_on_flink_needs_parallelism():
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.build import BuildContext
    from pipelines.loading import SpecError
    from pipelines.steps.batch import BatchStepSpec, build

    node = BatchStepSpec(
        name="b", type="batch", key=["k"], batch_size=10, strategy={"rate_limit": 5.0}
    )
    pipeline = beam.Pipeline(options=PipelineOptions(flags=[], runner="FlinkRunner"))
    ctx = BuildContext(spec=None, pipeline=pipeline, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="parallelism"):
        build(node, ctx, "steps[0]", None)


class _CallingFn:
    """A DoFn calling a 2 ms service for each element under a strategy, publishing counts."""

    def __new__(cls, config, node):
        import apache_beam as beam

        from connectors.metrics import NodeCounters

        class Fn(beam.DoFn):
            def setup(self):
                self.strategy = make_strategy(config, name=node)
                self.counters = NodeCounters(node)

            def process(self, batch):
                yield from self.strategy.map(batch, lambda x: time.sleep(0.002) or x)
                self.strategy.publish(self.counters)

        return Fn()


def test_the_run_metrics_give_the_effective_rate_real_clock():
    """40 calls at a 100/s limit: the job rate read back from the run's metrics is the limit
    (within 10 %), and the counters count every call."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.call_strategies import rates_from_metrics

    node = fresh("enrich")
    config = StrategyConfig(max_concurrency=8, rate_limit=100)
    p = beam.Pipeline(runner=FnApiRunner())
    _ = (
        p
        | beam.Create([list(range(20)), list(range(20, 40))])
        | beam.ParDo(_CallingFn(config, node))
    )
    result = p.run()
    result.wait_until_finish()
    rates = rates_from_metrics(result.metrics(), node)
    assert rates["calls"] == 40
    assert rates["job_rate"] == pytest.approx(steady_rate(100), rel=0.1)
    assert rates["throttled_seconds"] > 0
