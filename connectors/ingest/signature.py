"""Webhook authenticity: HMAC-SHA256 signatures and a replay guard.

The sender signs ``<timestamp>.<raw body>`` with the shared secret and sends::

    X-Signature: sha256=<hex digest>
    X-Timestamp: <unix seconds>
    X-Webhook-Id: <unique delivery id>   (optional; the signature stands in for it)

The timestamp is inside the signed bytes (as Stripe and Slack do), so a captured delivery
cannot be made fresh again by changing its header. A delivery is accepted when its signature
matches (compared in constant time, :func:`hmac.compare_digest`), its timestamp is within
``window`` seconds of now, and its id was not accepted within that window (:class:`ReplayGuard`:
ids are forgotten two windows after they arrived, when their timestamp can no longer pass, which
bounds the memory).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from connectors.errors import BeamwrightError

SIGNATURE_HEADER, TIMESTAMP_HEADER, ID_HEADER = "X-Signature", "X-Timestamp", "X-Webhook-Id"
PREFIX = "sha256="


class Rejected(BeamwrightError):
    """A delivery refused; ``status`` is the HTTP answer (401: not authentic, 409: replay)."""

    def __init__(self, problem: str, status: int) -> None:
        super().__init__(problem)
        self.status = status


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def signed_headers(
    secret: bytes, body: bytes, *, delivery_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers a sender adds (used by tests and by anyone scripting deliveries)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        SIGNATURE_HEADER: sign(secret, body, moment),
        TIMESTAMP_HEADER: str(moment),
        ID_HEADER: delivery_id,
    }


def verify(secret: bytes, body: bytes, headers: Mapping[str, str]) -> tuple[str, int]:
    """``(delivery id, timestamp)`` of an authentic delivery; raises :class:`Rejected` (401).
    ``headers`` are looked up case-insensitively by the caller's mapping (http.server's are)."""
    given = headers.get(SIGNATURE_HEADER) or ""
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    if not given.startswith(PREFIX) or not stamp.isdigit():
        raise Rejected("missing or malformed signature or timestamp", 401)
    expected = sign(secret, body, int(stamp))
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise Rejected("signature does not match", 401)
    return headers.get(ID_HEADER) or given[len(PREFIX) :], int(stamp)


class ReplayGuard:
    """Refuses stale timestamps and ids already accepted within ``window`` seconds.

    ``reserve`` claims an id (so two concurrent deliveries of it cannot both pass);
    ``release`` gives it back when the delivery could not be stored, so the sender's retry is
    accepted.
    """

    def __init__(self, window: float = 300.0, clock: object = time.time) -> None:
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> arrival, oldest first
        self._lock = threading.Lock()

    def reserve(self, delivery_id: str, timestamp: float) -> None:
        now = self._clock()  # type: ignore[operator]
        if abs(now - timestamp) > self.window:
            raise Rejected(f"timestamp outside the {self.window:g}s window", 409)
        with self._lock:
            # a delivery's timestamp passes until at most now + 2 * window (it may be up to
            # one window ahead of our clock): remember ids that long, in arrival order
            while self._seen and next(iter(self._seen.values())) < now - 2 * self.window:
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                raise Rejected("delivery already received (replay)", 409)
            self._seen[delivery_id] = now

    def release(self, delivery_id: str) -> None:
        with self._lock:
            self._seen.pop(delivery_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
