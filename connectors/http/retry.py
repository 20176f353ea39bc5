"""When and how long to wait before trying a request again.

Exponential backoff with *full jitter* (AWS architecture blog, "Exponential Backoff And
Jitter"): the n-th wait is uniform in ``[0, min(max_backoff, base * 2**n)]``, which spreads
the retries of many workers instead of synchronising them. A ``Retry-After`` header (seconds
or an HTTP date) on 429/503 is a floor: the server said when, so we never come back earlier.

Idempotency: a non-idempotent method (POST, PATCH) is resent only when the server says it did
not process it (429, or 503 with ``Retry-After``: RFC 6585 and RFC 9110 say so), unless the
spec sets ``retry_non_idempotent`` (e.g. a bulk lookup sent as POST that is read-only).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from connectors.http.request import Request, Response

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Args:
    max_attempts: attempts in all (1 = never retry).
    backoff: the first wait's upper bound in seconds; doubles each attempt.
    max_backoff: cap of the jittered wait.
    max_retry_after: a longer ``Retry-After`` is not waited for: the request fails (the
        row goes to the dead letters) instead of stalling the bundle.
    retry_non_idempotent: also resend POST/PATCH after errors where the server may have
        processed them.
    """

    max_attempts: int = 4
    backoff: float = 0.05
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    retry_non_idempotent: bool = False

    def may_resend(self, request: Request, response: Response | None) -> bool:
        """Whether ``request`` may be sent again after ``response`` (None: a transport error)."""
        if response is not None and response.status not in RETRY_STATUSES:
            return False
        if request.idempotent or self.retry_non_idempotent:
            return True
        if response is None:
            return False
        return response.status == 429 or (
            response.status == 503 and "retry-after" in response.headers
        )

    def delay(self, attempt: int, response: Response | None, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1), or None
        when a ``Retry-After`` asks for longer than ``max_retry_after``."""
        jitter = rng.uniform(0.0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        if response is not None and response.status in (429, 503):
            after = parse_retry_after(response.headers.get("retry-after"))
            if after is not None:
                if after > self.max_retry_after:
                    return None
                return max(after, jitter)
        return jitter


DEFAULT_RETRY = RetryPolicy()
