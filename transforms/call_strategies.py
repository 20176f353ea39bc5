"""How a step paces calls to an outside service: ordering, concurrency, adaptation, rate limits.

The workflow SDK this replaces named five processing strategies (sequential, parallel,
adaptive_parallel, streaming, burst) with ``batch_size``, ``max_concurrent`` and
``rate_limit_per_second``, but ran them all the same way and "rate limited" with a sleep. Here
each kind is a measured behaviour of one small object, :class:`CallStrategy`, that a DoFn makes
in ``setup()`` (:func:`make_strategy`) and hands each Arrow batch's requests to
(:meth:`CallStrategy.map`, or :meth:`CallStrategy.map_batches` for bulk endpoints):

- ``sequential``: one call in flight per key, in input order per key; different keys run
  concurrently up to ``max_concurrency``. Without a ``key`` function: strictly one call at a
  time, in input order, on the calling thread.
- ``parallel``: up to ``max_concurrency`` calls in flight per worker process, on a thread pool
  made once per process and step and reused by every bundle and DoFn instance.
- ``adaptive``: like ``parallel``, but the concurrency limit (and for bulk calls the batch
  size) moves between its minimum and maximum by AIMD: +1 per window of successes faster than
  the latency target, halved on an error, an overload signal or a latency spike.
- ``streaming``: ``parallel`` calls on batches a :class:`transforms.batching.BatchByKey` has
  buffered by size or ``max_buffering_duration`` (:meth:`StreamingStrategy.buffering`).
- ``burst``: a token bucket of ``burst`` capacity: exactly ``burst`` calls go at once, then the
  steady rate of ``rate_limit``.

``rate_limit`` (requests/s) is for the whole job. Each of the ``workers`` worker processes takes
its share, enforced by one limiter per process and step, shared by all its threads
(:class:`RateLimiter`: even pacing, then an admission check on the times calls really went,
so no one-second window sees more than the rate). Calls are counted through
:class:`connectors.metrics.NodeCounters` (:meth:`CallStrategy.publish`), so the run summary
can state the effective rate. Clocks are injectable (:class:`FakeClock`) for deterministic
tests. No Beam import at module level: the strategies are plain Python.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol, TypeVar

from connectors.errors import BeamwrightError

T = TypeVar("T")
R = TypeVar("R")

Kind = Literal["sequential", "parallel", "adaptive", "streaming", "burst"]
KINDS: tuple[str, ...] = ("sequential", "parallel", "adaptive", "streaming", "burst")

JITTER_GUARD = 0.05
"""Seconds of lateness after admission a rate limit absorbs: a worker admits at most
``floor(share)`` calls per ``1 + JITTER_GUARD`` seconds, so a call that reaches the service up
to 50 ms after it was admitted (its thread losing the GIL, the network, the server's own
scheduling) still cannot put ``floor(share) + 1`` calls into any one-second window of the
server's log. It costs about 5 % of the limit. 20 ms was measured too little: a whole run at
500/s on a loaded 2-core machine put 501 requests into one second of the server's log, and a
5/s source put 6 there."""

# Counter names (``<node>/<what>``, see connectors.metrics) a strategy publishes.
CALLS = "calls"
CALL_ERRORS = "call_errors"
CALL_ACTIVE_MS = "call_active_ms"  # summed over workers: time with a map() running
THROTTLED_MS = "call_throttled_ms"  # time calls waited for the rate limiter
CALL_SPAN = "call_span_ms"
"""A Beam distribution of the wall-clock epoch ms at which calls started and ended: its min and
max over the whole job bound the time calls ran, so ``calls / (max - min)`` is the job's
effective rate (:func:`job_rate`), whatever the number of workers."""
THROTTLING_NAMESPACE = "beamwright-throttling"
"""Namespace of the ``cumulativeThrottlingSeconds`` counter (Beam's ThrottlingSignaler): Dataflow's
autoscaler reads that counter name to avoid adding workers that would only wait for a limit."""


class StrategyError(BeamwrightError, ValueError):
    """A strategy configuration that cannot work (a burst without a rate, min above max, ...)."""


# --------------------------------------------------------------------------------------------
# Clocks


class Clock(Protocol):
    """Monotonic seconds and sleeping; wall time only for metrics."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wall(self) -> float: ...


class RealClock:
    """``time.monotonic`` / ``time.sleep`` / ``time.time``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wall(self) -> float:
        return time.time()


REAL_CLOCK = RealClock()


class FakeClock:
    """A clock that only moves when slept on (``sleep(d)`` adds ``d``) or advanced by a test,
    so pacing is tested exactly and without waiting. Meant for one calling thread at a time
    (``max_concurrency=1``, or ``observe`` called directly): concurrent sleepers would add
    up their sleeps. ``sleeps`` records every sleep asked for."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._t += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def wall(self) -> float:
        return self.now()


# --------------------------------------------------------------------------------------------
# Rate limiting


class TokenBucket:
    """A token bucket as GCRA (virtual scheduling): ``capacity`` calls may go at once after an
    idle time, then one per ``1 / rate`` seconds. Thread-safe and fair: each caller reserves
    the next permit time under the lock and sleeps outside it, so permits are handed out in
    arrival order and are spaced exactly, however many threads wait.

    With ``capacity`` 1 the permits are evenly spaced (:class:`RateLimiter` paces with that).
    A bucket of capacity ``c`` lets ``c + rate`` calls into one second after an idle time, so
    a capacity near the rate would nearly double it: only ``burst`` uses more than 1.
    """

    def __init__(self, rate: float, capacity: int = 1, clock: Clock = REAL_CLOCK) -> None:
        if rate <= 0:
            raise StrategyError("a token bucket needs a positive rate")
        if capacity < 1:
            raise StrategyError("a token bucket needs a capacity of at least 1")
        self.rate = rate
        self.capacity = capacity
        self._interval = 1.0 / rate
        self._clock = clock
        self._tat: float | None = None  # theoretical arrival time of the next conforming call
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """The time (on the clock) at which the caller may go; reserved for it."""
        with self._lock:
            now = self._clock.now()
            tat = now if self._tat is None else max(self._tat, now)
            permit = max(now, tat - (self.capacity - 1) * self._interval)
            self._tat = tat + self._interval
            return permit

    def acquire(self) -> float:
        """Wait for a permit; the seconds waited."""
        permit = self.reserve()
        wait = permit - self._clock.now()
        if wait > 0:
            self._clock.sleep(wait)
            return wait
        return 0.0


class RateLimiter:
    """A worker's share of a job-wide rate: :class:`TokenBucket` pacing (capacity 1, so calls
    are evenly spaced), then an admission check on the times calls actually went.

    Pacing alone plans the permits right, but a thread can wake from its sleep late (under
    the GIL with a hundred threads, by tens of ms), and late calls bunch up with punctual ones
    (measured: 513 calls in one second under a 500/s limit, with 3 x 64 threads of 20 ms
    calls). So after pacing, a call is admitted only if fewer than ``per_window`` calls were
    admitted in the last ``window`` seconds, by the clock at admission; otherwise it waits for
    the oldest of them to leave the window. The check uses the times calls really went, so no
    lateness before admission can put more than ``per_window`` calls into a window.
    """

    def __init__(
        self, rate: float, per_window: int, window: float, clock: Clock = REAL_CLOCK
    ) -> None:
        if per_window < 1 or window <= 0:
            raise StrategyError("a rate limiter needs at least one call per positive window")
        self.rate = rate
        self.per_window = per_window
        self.window = window
        self._bucket = TokenBucket(rate, 1, clock)
        self._clock = clock
        self._admitted: deque[float] = deque(maxlen=per_window)
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until the call may go; the seconds waited."""
        waited = self._bucket.acquire()
        while True:
            with self._lock:
                now = self._clock.now()
                full = len(self._admitted) == self.per_window
                if not full or now - self._admitted[0] >= self.window:
                    self._admitted.append(now)
                    return waited
                wait = self._admitted[0] + self.window - now
            self._clock.sleep(wait)
            waited += wait


def worker_share(rate: float, workers: int) -> float:
    """One worker process's part of a job-wide ``rate`` (requests/s)."""
    return rate / max(1, workers)


def steady_rate(rate: float, workers: int = 1) -> float:
    """The rate one worker's limiter paces calls at, for a job-wide ``rate`` over ``workers``.

    A share of at least 1/s is rounded down to whole calls (the job total then never exceeds
    ``rate`` in any window, even when every worker is at its peak) and spread over
    ``1 + JITTER_GUARD`` seconds. A share below 1/s is used as is (one call per 1/share s).
    """
    share = worker_share(rate, workers)
    if share < 1:
        return share
    return math.floor(share) / (1 + JITTER_GUARD)


_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_LOCK = threading.Lock()


def _shared(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """One object per key in this process (like Beam's ``Shared``, without weak references:
    a pool or limiter lives as long as the worker, which is what reuse across bundles needs)."""
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = make()
        return found


def make_limiter(
    config: StrategyConfig, *, workers: int = 1, name: str = "", clock: Clock | None = None
) -> RateLimiter | TokenBucket | None:
    """The rate limiter ``config`` asks for (``None`` without ``rate_limit``): for ``burst``
    a :class:`TokenBucket` of ``burst`` capacity, else a :class:`RateLimiter` admitting at most
    ``floor(share)`` calls (1 for a share below 1/s) per ``1 + JITTER_GUARD`` seconds (per
    ``1 / share`` seconds for a share below 1/s). Either has ``acquire() -> seconds waited``.

    With a ``name`` (the step name) and the real clock, every caller in this process with the
    same name and settings gets the same limiter, so all threads and DoFn instances of a
    worker share its share of the rate. Without a name, the limiter is the caller's own.
    """
    if config.rate_limit is None:
        return None
    rate = steady_rate(config.rate_limit, workers)
    share = worker_share(config.rate_limit, workers)
    burst = config.burst if config.kind == "burst" and config.burst else None
    clock = clock or REAL_CLOCK

    def make() -> RateLimiter | TokenBucket:
        if burst is not None:
            return TokenBucket(rate, burst, clock)
        if share < 1:
            return RateLimiter(rate, 1, 1 / share, clock)
        return RateLimiter(rate, math.floor(share), 1 + JITTER_GUARD, clock)

    if not name or clock is not REAL_CLOCK:
        return make()
    return _shared(("limiter", name, rate, burst), make)


def _shared_pool(name: str, size: int) -> ThreadPoolExecutor:
    return _shared(
        ("pool", name, size),
        lambda: ThreadPoolExecutor(size, thread_name_prefix=f"bw-calls-{name}"),
    )


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class StrategyConfig:
    """Plain settings of a call strategy (the spec's ``StrategySpec`` has the same fields).

    Args:
        kind: sequential | parallel | adaptive | streaming | burst (see the module docstring).
        max_concurrency: calls in flight per worker process, at most (parallel, adaptive,
            streaming, burst; sequential: keys at once). 8 suits a slow API; a 20 ms API needs
            about 48 for 2,000 calls/s per worker (concurrency = rate x latency, plus headroom).
        min_concurrency: adaptive: the limit never goes below this.
        batch_size: rows per bulk call (``map_batches``) and the streaming flush size;
            adaptive: the starting batch size.
        min_batch_size, max_batch_size: adaptive bounds of the batch size; ``min_batch_size``
            is also its additive increase step.
        max_buffering_duration: streaming: seconds a partial batch may wait before it is sent.
        latency_target: adaptive: seconds a call may take and still count as fast; default
            three times the fastest of the last 256 successful calls.
        rate_limit: requests/s for the whole job, shared out over the workers.
        burst: burst: the token bucket's capacity (calls that may go at once).
    """

    kind: Kind = "parallel"
    max_concurrency: int = 8
    min_concurrency: int = 1
    batch_size: int = 100
    min_batch_size: int = 1
    max_batch_size: int = 1000
    max_buffering_duration: float | None = None
    latency_target: float | None = None
    rate_limit: float | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        problems = config_problems(asdict(self))
        if problems:
            raise StrategyError("; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StrategyConfig:
        """From a spec model's ``model_dump()`` or any mapping with these keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def config_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with a strategy's settings (empty: nothing). Used by the dataclass and by
    the spec model, so both refuse the same things with the same words."""
    problems = []
    kind = values.get("kind", "parallel")
    if kind not in KINDS:
        problems.append(f"kind '{kind}' is not one of {', '.join(KINDS)}")
    for name in ("max_concurrency", "min_concurrency", "batch_size", "min_batch_size"):
        if values.get(name, 1) < 1:
            problems.append(f"{name} must be at least 1")
    if values.get("min_concurrency", 1) > values.get("max_concurrency", 8):
        problems.append("min_concurrency must not exceed max_concurrency")
    low, size, high = (
        values.get("min_batch_size", 1),
        values.get("batch_size", 100),
        values.get("max_batch_size", 1000),
    )
    if not low <= size <= high:
        problems.append("min_batch_size <= batch_size <= max_batch_size must hold")
    for name in ("max_buffering_duration", "latency_target", "rate_limit"):
        if values.get(name) is not None and values[name] <= 0:
            problems.append(f"{name} must be positive")
    if kind == "burst" and (values.get("burst") is None or values.get("rate_limit") is None):
        problems.append("kind 'burst' needs both 'burst' (capacity) and 'rate_limit' (steady rate)")
    if values.get("burst") is not None:
        if kind != "burst":
            problems.append("'burst' only applies to kind 'burst'")
        elif values["burst"] < 1:
            problems.append("burst must be at least 1")
    return problems


# --------------------------------------------------------------------------------------------
# Strategies


class _Gate:
    """At most ``limit()`` holders at once; the limit may change while holders wait."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._held = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self._held >= self._limit():
                self._cond.wait(0.05)  # the limit may rise without a release
            self._held += 1

    def release(self) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify()


class CallStrategy:
    """Runs calls for a step. Use one instance per DoFn instance (made in ``setup()``): Beam
    gives a DoFn instance one bundle at a time, so ``map`` is not called concurrently on it.

    The pool and the limiter behind it are per worker process and step (``name``), shared
    with the step's other DoFn instances in the process.
    """

    kind: str = ""

    def __init__(
        self,
        config: StrategyConfig,
        *,
        workers: int = 1,
        name: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.workers = max(1, workers)
        self.name = name
        self._clock = clock or REAL_CLOCK
        self._limiter = make_limiter(config, workers=self.workers, name=name, clock=self._clock)
        # (a RateLimiter, or for burst a TokenBucket: both have acquire() -> seconds waited)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0
        self._calls = 0
        self._errors = 0
        self._throttled = 0.0
        self._active = 0.0
        self._first_wall: float | None = None
        self._last_wall: float | None = None
        self._published: dict[str, int] = {}
        self._signalled_throttling = 0
        self._pool: ThreadPoolExecutor | None = None

    # -- what steps call --------------------------------------------------------------------

    def map(
        self,
        requests: Sequence[T],
        call: Callable[[T], R],
        *,
        key: Callable[[T], Hashable] | None = None,
        ok: Callable[[R], bool] | None = None,
    ) -> list[R | BaseException]:
        """``call`` on every request; results in input order. A call that raises has its
        exception in its slot (nothing is raised). ``key`` groups requests for ``sequential``
        (other kinds ignore it); ``ok`` judges a returned result (e.g. an HTTP 429 response a
        caller returns rather than raises): ``False`` counts as an error for the statistics
        and for ``adaptive``."""
        items = list(requests)
        results: list[Any] = [None] * len(items)
        units = (self._unit(results, [i], call, [r], ok, single=True) for i, r in enumerate(items))
        self._timed(lambda: self._run(units, items, key))
        return results

    def map_batches(
        self,
        requests: Sequence[T],
        call: Callable[[list[T]], Sequence[R]],
        *,
        ok: Callable[[Sequence[R]], bool] | None = None,
    ) -> list[R | BaseException]:
        """For bulk endpoints: ``call`` on chunks of :attr:`batch_size` requests (read as each
        chunk is sent, so ``adaptive`` resizes them as it learns); ``call`` returns one result
        per request of its chunk. Results in input order; a chunk's exception goes in each of
        its slots, as does a mismatch between results and requests."""
        items = list(requests)
        results: list[Any] = [None] * len(items)

        def units() -> Iterator[Callable[[], None]]:
            start = 0
            while start < len(items):
                size = max(1, self.batch_size)
                chunk = items[start : start + size]
                index = list(range(start, start + len(chunk)))
                yield self._unit(results, index, call, chunk, ok, single=False)
                start += len(chunk)

        self._timed(lambda: self._run(units(), None, None))
        return results

    def observe(self, latency_s: float, ok: bool) -> None:
        """Feedback from one call (``map`` gives it for each call it makes). Only ``adaptive``
        acts on it; a caller retrying inside ``call`` may report each attempt itself."""

    @property
    def concurrency(self) -> int:
        """Calls that may be in flight now (per worker process)."""
        return self.config.max_concurrency

    @property
    def batch_size(self) -> int:
        """Requests per chunk of :meth:`map_batches` now."""
        return self.config.batch_size

    def stats(self) -> dict[str, float]:
        """Counts of this strategy instance: ``calls``, ``errors``, ``effective_rate`` (calls/s
        while a map was running), ``max_in_flight``, ``concurrency``, ``batch_size``,
        ``throttled_seconds`` (summed over the calls that waited for the rate limiter)."""
        with self._lock:
            return {
                "calls": float(self._calls),
                "errors": float(self._errors),
                "active_seconds": self._active,
                "effective_rate": self._calls / self._active if self._active > 0 else 0.0,
                "max_in_flight": float(self._max_in_flight),
                "in_flight": float(self._in_flight),
                "concurrency": float(self.concurrency),
                "batch_size": float(self.batch_size),
                "throttled_seconds": self._throttled,
            }

    def publish(self, counters: Any) -> None:
        """Add what happened since the last publish to the step's Beam metrics:
        ``counters`` is the step's :class:`connectors.metrics.NodeCounters`. Call it at the end
        of each bundle (or batch); it is cheap."""
        with self._lock:
            now = {
                CALLS: self._calls,
                CALL_ERRORS: self._errors,
                CALL_ACTIVE_MS: int(self._active * 1000),
                THROTTLED_MS: int(self._throttled * 1000),
            }
            span = (self._first_wall, self._last_wall)
            self._first_wall = self._last_wall = None
            throttled_s = int(self._throttled)
        for what, value in now.items():
            counters.inc(what, value - self._published.get(what, 0))
        self._published = now
        from apache_beam.metrics import Metrics  # workers only

        from connectors.metrics import METRIC_NAMESPACE, metric_name

        if span[0] is not None and span[1] is not None:
            dist = Metrics.distribution(METRIC_NAMESPACE, metric_name(counters.node, CALL_SPAN))
            dist.update(int(span[0] * 1000))
            dist.update(int(span[1] * 1000))
        if throttled_s > self._signalled_throttling:
            from apache_beam.io.components.adaptive_throttler import ThrottlingSignaler

            ThrottlingSignaler(THROTTLING_NAMESPACE).signal_throttled(
                throttled_s - self._signalled_throttling
            )
            self._signalled_throttling = throttled_s

    def close(self) -> None:
        """Stop this strategy's own thread pool (a named one is the process's and stays)."""
        if self._pool is not None and not self.name:
            self._pool.shutdown(wait=False)
        self._pool = None

    # -- how ------------------------------------------------------------------------------

    def _run(
        self,
        units: Iterator[Callable[[], None]],
        items: list[Any] | None,
        key: Callable[[Any], Hashable] | None,
    ) -> None:
        """Run the units (each fills its result slots); subclasses decide how many at once."""
        self._run_pooled(units, lambda: self.concurrency)

    def _run_pooled(self, units: Iterator[Callable[[], None]], limit: Callable[[], int]) -> None:
        pool = self._pool
        if pool is None:
            size = self.config.max_concurrency
            pool = self._pool = (
                _shared_pool(self.name, size)
                if self.name
                else ThreadPoolExecutor(size, thread_name_prefix="bw-calls")
            )
        gate = _Gate(limit)
        futures: list[Future[None]] = []

        def task(unit: Callable[[], None]) -> None:
            try:
                unit()
            finally:
                gate.release()

        for unit in units:
            gate.acquire()
            futures.append(pool.submit(task, unit))
        for future in futures:
            future.result()  # units never raise for a call's error; this surfaces our bugs

    def _unit(
        self,
        results: list[Any],
        index: list[int],
        call: Callable[[Any], Any],
        args: list[Any],
        ok: Callable[[Any], bool] | None,
        *,
        single: bool,
    ) -> Callable[[], None]:
        def unit() -> None:
            value = self._call_one(call, args[0] if single else args, ok)
            if single:
                results[index[0]] = value
            elif isinstance(value, BaseException):
                for i in index:
                    results[i] = value
            else:
                got = list(value)
                if len(got) != len(index):
                    error = StrategyError(
                        f"a bulk call returned {len(got)} results for {len(index)} requests"
                    )
                    got = [error] * len(index)
                for i, result in zip(index, got, strict=True):
                    results[i] = result

        return unit

    def _call_one(self, call: Callable[[Any], Any], arg: Any, ok: Callable[[Any], bool] | None):
        waited = self._limiter.acquire() if self._limiter is not None else 0.0
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._throttled += waited
        start, wall = self._clock.now(), self._clock.wall()
        try:
            result: Any = call(arg)
            good = ok(result) if ok is not None else True
        except Exception as exc:  # noqa: BLE001 - a call's failure is its result
            result, good = exc, False
        latency = self._clock.now() - start
        with self._lock:
            self._in_flight -= 1
            self._calls += 1
            self._errors += not good
            if self._first_wall is None:
                self._first_wall = wall
            self._last_wall = wall + latency
        self.observe(latency, good)
        return result

    def _timed(self, body: Callable[[], None]) -> None:
        start = self._clock.now()
        try:
            body()
        finally:
            elapsed = self._clock.now() - start
            with self._lock:
                self._active += elapsed


class SequentialStrategy(CallStrategy):
    """One call in flight per key, in input order per key; keys run side by side up to
    ``max_concurrency``. Without a key: one call at a time, in order, on the calling thread.

    Per key within one ``map``: the order between bundles, and between workers, is Beam's (a
    key's rows reach one worker in order after a keyed step such as ``batch``)."""

    kind = "sequential"

    @property
    def concurrency(self) -> int:
        return 1

    def _run(self, units, items, key):
        if key is None or items is None:
            for unit in units:
                unit()
            return
        groups: dict[Hashable, list[Callable[[], None]]] = {}
        for item, unit in zip(items, units, strict=True):
            groups.setdefault(key(item), []).append(unit)

        def in_order(chain: list[Callable[[], None]]) -> Callable[[], None]:
            def run() -> None:
                for unit in chain:
                    unit()

            return run

        self._run_pooled(
            (in_order(chain) for chain in groups.values()), lambda: self.config.max_concurrency
        )


class ParallelStrategy(CallStrategy):
    """Up to ``max_concurrency`` calls in flight per worker process."""

    kind = "parallel"


class StreamingStrategy(ParallelStrategy):
    """``parallel`` calls on batches buffered upstream by size or time (see :meth:`buffering`)."""

    kind = "streaming"

    def buffering(self) -> dict[str, Any]:
        """Keyword arguments of :class:`transforms.batching.BatchByKey` that buffer rows the
        way this strategy flushes them: ``batch_size`` rows, or ``max_buffering_duration``."""
        return streaming_buffering(self.config)


class BurstStrategy(ParallelStrategy):
    """``parallel``, paced by a token bucket of ``burst`` capacity refilled at the steady
    rate: exactly ``burst`` calls start at once after an idle time, then the steady rate."""

    kind = "burst"


class AdaptiveStrategy(CallStrategy):
    """Concurrency and bulk batch size adapt by AIMD within their bounds.

    Increase: each call faster than the latency target adds ``1 / limit`` to the concurrency
    limit (one more per window of ``limit`` successes, as TCP grows its window per round trip)
    and ``min_batch_size`` to the batch size; until the first decrease it adds 1 per call
    (TCP's slow start: the limit doubles per round from ``min_concurrency``). Decrease: an error, a result ``ok`` rejects
    (429, 503) or a latency spike halves both, once per round: a failure of a call that began
    before the last decrease does not decrease again, so a burst of errors from one round of
    calls counts once. The latency target is ``latency_target`` or three times the fastest of
    the last 256 successful calls (the service's unloaded latency, like TCP Vegas' base RTT).
    """

    kind = "adaptive"
    DECREASE = 0.5
    SPIKE = 3.0

    def __init__(self, config: StrategyConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._limit = float(config.min_concurrency)
        self._batch = float(config.batch_size)
        self._last_decrease = -math.inf
        self._fast: deque[float] = deque(maxlen=256)
        self.decreases = 0

    @property
    def concurrency(self) -> int:
        return int(self._limit)

    @property
    def batch_size(self) -> int:
        return int(self._batch)

    def target(self) -> float | None:
        """The latency below which a call counts as fast (``None``: not known yet)."""
        if self.config.latency_target is not None:
            return self.config.latency_target
        if len(self._fast) < 5:
            return None
        return self.SPIKE * min(self._fast)

    def observe(self, latency_s: float, ok: bool) -> None:
        cfg = self.config
        with self._lock:
            now = self._clock.now()
            target = self.target()
            slow = target is not None and latency_s > target
            if ok:
                self._fast.append(latency_s)
            if ok and not slow:
                # slow start (doubling per round) until the first decrease, then +1 per round
                step = 1.0 if self.decreases == 0 else 1.0 / max(self._limit, 1.0)
                self._limit = min(cfg.max_concurrency, self._limit + step)
                self._batch = min(cfg.max_batch_size, self._batch + cfg.min_batch_size)
                return
            if now - latency_s < self._last_decrease:
                return  # began before the last decrease: same round
            self._limit = max(float(cfg.min_concurrency), self._limit * self.DECREASE)
            self._batch = max(float(cfg.min_batch_size), self._batch * self.DECREASE)
            self._last_decrease = now
            self.decreases += 1

    def _run(self, units, items, key):
        self._run_pooled(units, lambda: self.concurrency)


_KINDS: dict[str, type[CallStrategy]] = {
    "sequential": SequentialStrategy,
    "parallel": ParallelStrategy,
    "adaptive": AdaptiveStrategy,
    "streaming": StreamingStrategy,
    "burst": BurstStrategy,
}


def make_strategy(
    config: StrategyConfig,
    *,
    workers: int = 1,
    name: str = "",
    clock: Clock | None = None,
) -> CallStrategy:
    """The strategy ``config.kind`` names.

    Args:
        config: the settings.
        workers: worker processes of the job (:func:`workers_from_options`), for the share of
            ``rate_limit`` each takes.
        name: the step name: strategies of one step in one process share their thread pool
            and rate limiter. Without it each strategy has its own.
        clock: for tests (:class:`FakeClock`); default the real clock.
    """
    return _KINDS[config.kind](config, workers=workers, name=name, clock=clock)


def streaming_buffering(config: StrategyConfig) -> dict[str, Any]:
    """``BatchByKey`` arguments for a streaming flush: by ``batch_size`` or by time."""
    return {
        "batch_size": config.batch_size,
        "max_buffering_duration": config.max_buffering_duration,
    }


def job_rate(calls: int, span_min_ms: int, span_max_ms: int) -> float:
    """A job's effective call rate from its ``calls`` counter and the min and max of its
    ``call_span_ms`` distribution: calls per second of the time calls were running."""
    span = (span_max_ms - span_min_ms) / 1000
    return calls / span if span > 0 else 0.0


def rates_from_metrics(metrics: Any, node: str) -> dict[str, float]:
    """A step's call figures from a run's metrics (``PipelineResult.metrics()``): ``calls``,
    ``errors``, ``job_rate`` (calls/s over the time calls ran, all workers together: what the
    rate limit bounds), ``worker_rate`` (calls/s per worker while its map() ran) and
    ``throttled_seconds``."""
    from apache_beam.metrics.metric import MetricsFilter

    from connectors.metrics import METRIC_NAMESPACE, metric_name

    query = metrics.query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    wanted = {metric_name(node, w): w for w in (CALLS, CALL_ERRORS, CALL_ACTIVE_MS, THROTTLED_MS)}
    got: dict[str, int] = {}
    for counter in query["counters"]:
        what = wanted.get(counter.key.metric.name)
        if what is not None:
            got[what] = got.get(what, 0) + int(counter.committed or counter.attempted or 0)
    low = high = None
    for dist in query["distributions"]:
        if dist.key.metric.name == metric_name(node, CALL_SPAN):
            value = dist.committed or dist.attempted
            if value is not None and value.count:
                low = value.min if low is None else min(low, value.min)
                high = value.max if high is None else max(high, value.max)
    calls = got.get(CALLS, 0)
    active = got.get(CALL_ACTIVE_MS, 0) / 1000
    return {
        "calls": float(calls),
        "errors": float(got.get(CALL_ERRORS, 0)),
        "job_rate": job_rate(calls, low, high) if low is not None and high is not None else 0.0,
        "worker_rate": calls / active if active > 0 else 0.0,
        "throttled_seconds": got.get(THROTTLED_MS, 0) / 1000,
    }


# --------------------------------------------------------------------------------------------
# Workers


def _dataflow_processes_per_worker(values: Mapping[str, Any]) -> int:
    """Python SDK processes per Dataflow VM: one per vCPU unless told to use one container."""
    experiments = values.get("experiments") or []
    if "no_use_multiple_sdk_containers" in experiments:
        return 1
    machine = str(values.get("machine_type") or values.get("worker_machine_type") or "")
    tail = machine.rsplit("-", 1)[-1]
    if tail.isdigit():
        return int(tail)
    # Dataflow's defaults: n1-standard-1 (batch), n1-standard-4 for streaming without
    # Streaming Engine; assume the larger when streaming, to stay under the limit.
    return 4 if values.get("streaming") else 1


def workers_from_options(options: Any) -> int:
    """Worker processes that each hold a rate limiter, from Beam pipeline options (a
    ``PipelineOptions`` or a plain dict of option values).

    - FnApiRunner (direct): ``direct_num_workers`` when ``direct_running_mode`` is
      ``multi_processing``; in ``in_memory`` and ``multi_threading`` mode all workers are one
      process sharing one limiter: 1.
    - Dataflow: ``max_num_workers`` (else ``num_workers``, else 1) times the SDK processes per
      VM (its vCPUs, from ``machine_type``).
    - Flink: ``parallelism``; Portable: ``sdk_worker_parallelism`` when given. A Flink job
      without ``parallelism`` cannot know its share: :class:`StrategyError`.

    Overcounting only lowers each share; the job never exceeds its rate.
    """
    values: dict[str, Any] = (
        options.get_all_options() if hasattr(options, "get_all_options") else dict(options)
    )
    runner = str(values.get("runner") or "")
    if "Dataflow" in runner:
        workers = values.get("max_num_workers") or values.get("num_workers") or 1
        return int(workers) * _dataflow_processes_per_worker(values)
    if "Flink" in runner:
        parallelism = values.get("parallelism")
        if not parallelism or int(parallelism) < 1:
            raise StrategyError(
                "a rate limit on Flink needs runner_options.parallelism to share it out over "
                "the workers"
            )
        return int(parallelism)
    if "Portable" in runner:
        return max(1, int(values.get("sdk_worker_parallelism") or 1))
    if values.get("direct_running_mode") == "multi_processing":
        return max(1, int(values.get("direct_num_workers") or 1))
    return 1
