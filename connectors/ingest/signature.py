"""Webhook authenticity: HMAC-SHA256 signatures and a replay guard.

Two schemes (:class:`Scheme`). **timestamped** (the default): the sender signs
``<timestamp>.<raw body>`` with the shared secret and sends::

    X-Signature: sha256=<hex digest>
    X-Timestamp: <unix seconds>
    X-Webhook-Id: <unique delivery id>   (optional; the signature stands in for it)

The timestamp is inside the signed bytes (as Stripe and Slack do), so a captured delivery
cannot be made fresh again by changing its header. **body**: the signature covers the raw body
only (as GitHub's ``X-Hub-Signature-256`` does; header names configurable); there is no signed
time, so replays are refused by the delivery id alone, which is then required, and only within
the window the ids are remembered for.

A delivery is accepted when its signature matches (compared in constant time,
:func:`hmac.compare_digest`), its timestamp (if signed) is within ``window`` seconds of now, and
its id was not accepted before (:class:`ReplayGuard`: ids are forgotten two windows after they
arrived, when a signed timestamp can no longer pass, which bounds the memory).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.errors import BeamwrightError

SIGNATURE_HEADER, TIMESTAMP_HEADER, ID_HEADER = "X-Signature", "X-Timestamp", "X-Webhook-Id"
PREFIX = "sha256="


class Rejected(BeamwrightError):
    """A delivery refused; ``status`` is the HTTP answer (401: not authentic, 409: replay,
    400: no delivery id where one is needed)."""

    def __init__(self, problem: str, status: int) -> None:
        super().__init__(problem)
        self.status = status


@dataclass(frozen=True)
class Scheme:
    """What is signed and which headers carry it."""

    timestamped: bool = True
    signature_header: str = SIGNATURE_HEADER
    timestamp_header: str = TIMESTAMP_HEADER
    id_header: str = ID_HEADER


TIMESTAMPED = Scheme()
BODY = Scheme(timestamped=False)
SCHEMES = {"timestamped": TIMESTAMPED, "body": BODY}


def sign(secret: bytes, body: bytes, timestamp: int | None) -> str:
    """The signature header's value for ``body`` (sent at ``timestamp`` when it is signed)."""
    content = body if timestamp is None else str(timestamp).encode() + b"." + body
    return PREFIX + hmac.new(secret, content, hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes,
    body: bytes,
    *,
    delivery_id: str,
    timestamp: int | None = None,
    scheme: Scheme = TIMESTAMPED,
) -> dict[str, str]:
    """The headers a sender adds (used by tests and by anyone scripting deliveries)."""
    if not scheme.timestamped:
        return {scheme.signature_header: sign(secret, body, None), scheme.id_header: delivery_id}
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        scheme.signature_header: sign(secret, body, moment),
        scheme.timestamp_header: str(moment),
        scheme.id_header: delivery_id,
    }


def verify(
    secret: bytes, body: bytes, headers: Mapping[str, str], scheme: Scheme = TIMESTAMPED
) -> tuple[str, int | None]:
    """``(delivery id, signed timestamp or None)`` of an authentic delivery; raises
    :class:`Rejected`. ``headers`` are looked up case-insensitively by the caller's mapping
    (http.server's are)."""
    given = (headers.get(scheme.signature_header) or "").strip()
    stamp: int | None = None
    if scheme.timestamped:
        text = headers.get(scheme.timestamp_header) or ""
        if not text.isdigit():
            raise Rejected("missing or malformed signature or timestamp", 401)
        stamp = int(text)
    if not given.startswith(PREFIX):
        raise Rejected("missing or malformed signature or timestamp", 401)
    if not hmac.compare_digest(sign(secret, body, stamp).encode(), given.encode()):
        raise Rejected("signature does not match", 401)
    delivery_id = headers.get(scheme.id_header)
    if not delivery_id:
        if not scheme.timestamped:
            raise Rejected(f"no {scheme.id_header}: replays could not be refused", 400)
        delivery_id = given[len(PREFIX) :]
    return delivery_id, stamp


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

    def reserve(self, delivery_id: str, timestamp: float | None) -> None:
        """Claim ``delivery_id`` (``timestamp``: the signed time, None when unsigned)."""
        now = self._clock()  # type: ignore[operator]
        if timestamp is not None and abs(now - timestamp) > self.window:
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
