"""One request through the cache, the host's circuit breaker and the retry policy, as an
:class:`Outcome` that is never an exception: the step turns failed outcomes into dead letters.

The shape follows Beam's ``requestresponse.Caller`` (a callable taking a request, with a cache
key) but a failure is a value, since Beam's version raises and a batch of rows cannot be
half-raised. Retries happen here, per request, so the concurrency strategy around it sees one
call per request and rate limits apply to each attempt through ``before_retry``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.http.breaker import Breakers
from connectors.http.cache import MISSING, TTLCache
from connectors.http.pool import ConnectionPool
from connectors.http.request import Request, Response, decode_json
from connectors.http.retry import DEFAULT_RETRY, RetryPolicy

NOT_FOUND = 404

# names of the counters in :meth:`HttpCaller.drain` (the step reports them per step)
CALLS, RETRIES, CACHE_HITS, CACHE_MISSES, TIMEOUTS, BREAKER_REFUSED = (
    "calls",
    "retries",
    "cache_hits",
    "cache_misses",
    "timeouts",
    "breaker_refused",
)


@dataclass(frozen=True)
class Outcome:
    """What became of one request. ``body`` is the parsed JSON on success (status 2xx)."""

    status: int | None  # the last HTTP status; None: no answer (timeout, refused, breaker)
    body: Any = None
    attempts: int = 0
    error: str | None = None
    cached: bool = False
    headers: dict[str, str] = field(default_factory=dict, compare=False)  # of a 2xx answer

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def not_found(self) -> bool:
        return self.status == NOT_FOUND


class HttpCaller:
    """Args:
    pool: the connections.
    timeout: seconds of socket inactivity before an attempt counts as timed out.
    retry: the retry policy.
    breakers: the worker's circuit breakers (one per host).
    cache: successful and not-found answers, or None.
    send: sends one attempt; default ``pool.send``; the step wraps it with credentials.
    fatal: exception types that end the request at once (credentials rejected everywhere).
    before_retry: called before every attempt after the first (the job-wide rate limiter's
        ``acquire``: the strategy paces first attempts, this paces retries).
    decode: a successful answer's bytes -> the outcome's ``body``; default the general JSON
        decoder (a bulk step passes a typed one: :mod:`connectors.http.typed_json`).
    sleep, rng: injectable for tests.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        breakers: Breakers | None = None,
        cache: TTLCache | None = None,
        send: Callable[[Request], Response] | None = None,
        fatal: tuple[type[BaseException], ...] = (),
        before_retry: Callable[[], Any] | None = None,
        decode: Callable[[bytes], Any] = decode_json,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.timeout = timeout
        self.retry = retry
        self.breakers = breakers or Breakers()
        self.cache = cache
        self._send = send or (lambda request: pool.send(request, timeout=timeout))
        self.fatal = fatal
        self.before_retry = before_retry
        self._decode = decode
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._stats[what] += n

    def drain(self) -> dict[str, int]:
        """Counts since the last drain (calls, retries, cache hits/misses, timeouts...)."""
        with self._lock:
            stats, self._stats = dict(self._stats), Counter()
        return stats

    def cached(self, request: Request) -> Outcome | None:
        """The cached outcome of ``request``, or None (counted as a hit or a miss). Steps ask
        this before handing the misses to their concurrency strategy, so a hit costs no
        thread hop and no rate-limit permit."""
        if self.cache is None:
            return None
        hit = self.cache.get(request)
        if hit is MISSING:
            self._count(CACHE_MISSES)
            return None
        self._count(CACHE_HITS)
        return Outcome(hit[0], hit[1], 0, None, cached=True)

    def __call__(self, request: Request) -> Outcome:
        """Send ``request`` (retrying as the policy allows); success and not-found answers
        are cached."""
        outcome = self._attempts(request)
        if self.cache is not None and (outcome.ok or outcome.not_found):
            self.cache.put(request, (outcome.status, outcome.body))
        return outcome

    def _attempts(self, request: Request) -> Outcome:
        breaker = self.breakers.for_host(request.host)
        attempt = 0
        while True:
            if not breaker.allow():
                self._count(BREAKER_REFUSED)
                return Outcome(
                    None,
                    attempts=attempt,
                    error=f"circuit open for {request.host} (retry in {breaker.retry_in():.1f}s)",
                )
            attempt += 1
            if attempt > 1 and self.before_retry is not None:
                self.before_retry()
            self._count(CALLS)
            response: Response | None = None
            try:
                response = self._send(request)
            except self.fatal as exc:
                breaker.record(True)  # the host answered; the credential was the problem
                return Outcome(None, attempts=attempt, error=f"{type(exc).__name__}: {exc}")
            except TimeoutError as exc:
                self._count(TIMEOUTS)
                breaker.record(False)
                error = f"timeout: {exc}"
            except OSError as exc:
                breaker.record(False)
                error = f"{type(exc).__name__}: {exc}"
            else:
                breaker.record(response.status < 500)
                if 200 <= response.status < 300:
                    try:
                        body = self._decode(response.body) if response.body else None
                        return Outcome(response.status, body, attempt, headers=response.headers)
                    except ValueError:
                        return Outcome(
                            response.status, attempts=attempt, error="response is not JSON"
                        )
                if response.status == NOT_FOUND:
                    return Outcome(NOT_FOUND, attempts=attempt)
                error = f"HTTP {response.status}: {response.text()}"
            status = response.status if response is not None else None
            if attempt >= self.retry.max_attempts or not self.retry.may_resend(request, response):
                return Outcome(status, attempts=attempt, error=error)
            wait = self.retry.delay(attempt, response, self._rng)
            if wait is None:
                return Outcome(status, attempts=attempt, error=error + " (Retry-After too long)")
            self._count(RETRIES)
            self._sleep(wait)
