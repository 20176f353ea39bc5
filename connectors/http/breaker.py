"""A circuit breaker per host: stop calling a host that keeps failing, probe it, recover.

States (Nygard, *Release It!*): **closed** counts consecutive failures and opens at
``failure_threshold``; **open** refuses every call for ``open_seconds`` (rows fail fast to the
dead letters instead of each waiting out timeouts and retries); then **half-open** lets
``half_open_probes`` calls through: if that many succeed it closes, if one fails it opens
again for another ``open_seconds``. A failure is a 5xx, a timeout or a connection error; a 4xx
(the host answered) or a 429 (it is alive, only busy: backoff handles that) is not.

The clock is injectable so the state machine is testable without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    half_open_probes: int = 1


class CircuitBreaker:
    """One host's breaker; thread-safe."""

    def __init__(
        self, config: BreakerConfig = BreakerConfig(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0
        self.opens = 0  # times it opened (a counter for the summary)

    @property
    def state(self) -> str:
        with self._lock:
            self._advance()
            return self._state

    def _advance(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.config.open_seconds:
            self._state = HALF_OPEN
            self._probes_out = self._probes_ok = 0

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._failures = 0
        self.opens += 1

    def allow(self) -> bool:
        """Whether a call may go out now (a half-open probe slot is claimed by True)."""
        with self._lock:
            self._advance()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and self._probes_out < self.config.half_open_probes:
                self._probes_out += 1
                return True
            return False

    def record(self, ok: bool) -> None:
        """The outcome of a call :meth:`allow` let through."""
        with self._lock:
            if self._state == HALF_OPEN:
                if not ok:
                    self._open()
                    return
                self._probes_ok += 1
                if self._probes_ok >= self.config.half_open_probes:
                    self._state = CLOSED
                    self._failures = 0
                return
            if self._state == CLOSED:
                if ok:
                    self._failures = 0
                else:
                    self._failures += 1
                    if self._failures >= self.config.failure_threshold:
                        self._open()

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        with self._lock:
            self._advance()
            if self._state != OPEN:
                return 0.0
            return max(0.0, self.config.open_seconds - (self._clock() - self._opened_at))


@dataclass(eq=False)
class Breakers:
    """The breakers of one worker, one per host, made on first use with ``config`` and
    ``clock``."""

    config: BreakerConfig = BreakerConfig()
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _by_host: dict[str, CircuitBreaker] = field(default_factory=dict, init=False, repr=False)

    def for_host(self, host: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._by_host.get(host)
            if breaker is None:
                breaker = self._by_host[host] = CircuitBreaker(self.config, self.clock)
            return breaker

    def opens(self) -> int:
        with self._lock:
            return sum(b.opens for b in self._by_host.values())
