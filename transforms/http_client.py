"""The HTTP client side shared by the ``http`` enrichment step and the ``http`` source: one
way to check their options, send a request with the credential service's headers, build the
caller around it and keep credentials out of error text, so both read an API by the same rules.

A request with credentials is sent inside ``Credentials.call``: a 401/403 (or a token endpoint
refusing the client) raises :class:`~transforms.credentials.AuthenticationFailed`, which makes the
helper try ``previous`` during a rotation's overlap, report the rejected version and refresh;
the caller treats credential errors as fatal (no retry would fix them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from connectors.http.auth import AuthScheme, TokenEndpointError, TokenRejected
from connectors.http.breaker import Breakers
from connectors.http.caller import HttpCaller
from connectors.http.pool import ConnectionPool
from connectors.http.request import Request, Response, decode_json
from connectors.http.retry import RetryPolicy
from connectors.secrets import Secret
from connectors.secrets.audit import scrub
from transforms.coerce import ARROW_TYPES
from transforms.credentials import AuthenticationFailed, Credentials, CredentialUnavailable

CREDENTIAL_ERRORS = (AuthenticationFailed, CredentialUnavailable, TokenEndpointError)


class TypedField(Protocol):
    name: str
    type: str


def check_options(
    fields: Sequence[TypedField], auth: AuthScheme | None, credentials: Credentials | None
) -> None:
    """Raise ValueError unless ``auth`` and ``credentials`` come together and every field's
    type is one of :data:`transforms.coerce.ARROW_TYPES` (caught when the job is built, not on
    a worker's first batch)."""
    if (auth is None) != (credentials is None):
        raise ValueError("auth and credentials go together")
    unknown = {f.name: f.type for f in fields if f.type not in ARROW_TYPES}
    if unknown:
        raise ValueError(f"unknown types {unknown}; use one of {sorted(ARROW_TYPES)}")


def send_with_credentials(
    pool: ConnectionPool,
    request: Request,
    *,
    timeout: float,
    auth: AuthScheme | None,
    credentials: Credentials | None,
) -> Response:
    """One attempt of ``request``, with the credential headers added at send time (never
    stored in the request, so they reach neither caches nor logs); a 401/403 forgets the
    access token sent and raises :class:`AuthenticationFailed` inside ``Credentials.call``."""
    if credentials is None or auth is None:
        return pool.send(request, timeout=timeout)

    def attempt(secret: Secret) -> Response:
        try:
            headers = auth.headers(secret, pool)
        except TokenRejected as exc:
            raise AuthenticationFailed(str(exc)) from None
        response = pool.send(request, timeout=timeout, extra_headers=headers)
        if response.status in (401, 403):
            auth.rejected(secret, headers)
            raise AuthenticationFailed(f"HTTP {response.status} from {request.host}")
        return response

    return credentials.call(attempt)


def open_caller(
    pool: ConnectionPool,
    *,
    auth: AuthScheme | None,
    credentials: Credentials | None,
    timeout: float,
    retry: RetryPolicy,
    breakers: Breakers,
    limiter: Any = None,
    cache: Any = None,
    decode: Callable[[bytes], Any] = decode_json,
) -> HttpCaller:
    """The worker's caller: attempts sent by :func:`send_with_credentials` (the credentials
    helper set up first), credential errors fatal, and every retry taking a permit of
    ``limiter`` (the job-wide rate limit, or None) as first attempts do."""
    if credentials is not None:
        credentials.setup()
    return HttpCaller(
        pool,
        timeout=timeout,
        retry=retry,
        breakers=breakers,
        cache=cache,
        send=partial(
            send_with_credentials, pool, timeout=timeout, auth=auth, credentials=credentials
        ),
        fatal=CREDENTIAL_ERRORS,
        before_retry=limiter.acquire if limiter is not None else None,
        decode=decode,
    )


def scrub_credentials(text: str, auth: AuthScheme | None, credentials: Credentials | None) -> str:
    """``text`` without any secret version the helper holds or access token ``auth`` bought
    (error messages go to dead letters and logs)."""
    if credentials is not None:
        text = credentials.scrub(text)
    if auth is not None:
        text = scrub(text, [Secret(t.encode()) for t, _ in list(auth._tokens.values())])
    return text
