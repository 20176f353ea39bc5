"""A local customer API for the ``http`` enrichment step's tests and ``beamwright bench --http``.

It lives here, not under ``tests/``, because the bench (an installed command) starts it too;
``tests/servers/enrich_api.py`` re-exports it so the tests' servers stay in one place.

Endpoints (JSON, HTTP/1.1 keep-alive, 127.0.0.1 only):

- ``GET /customers/{id}``: one customer, or 404 when the id is unknown (negative, or in
  ``missing``).
- ``POST /customers:batch`` with ``{"ids": [...]}``: ``{"customers": [...]}`` for the known
  ids (unknown ones are left out, as bulk APIs do).
- ``GET /customers/{id}`` and the batch endpoint check a bearer token when ``validate_token`` is
  given (e.g. :meth:`tests.servers.api.ProtectedApi.valid`, so tokens a rotation revoked get
  401 for real), or, with ``oauth_clients`` (client id -> secret), an access token that
  ``POST /oauth/token`` (client credentials, HTTP Basic) issued and
  :meth:`EnrichApi.revoke_access_tokens` has not revoked.

Behaviour the tests set on the instance (attributes, changeable while it runs): ``latency``
seconds per request; the fractions ``rate_429`` (with ``Retry-After: retry_after``),
``rate_500`` and ``rate_hang`` (the request sleeps ``hang_seconds`` and then gets a 504:
clients time out first), drawn from a seeded RNG; ``down`` answers every request with 503
(a host outage, for circuit breakers); ``echo_auth`` makes 500 answers
echo the ``Authorization`` header, as careless APIs do (secret canaries). Every request is logged per wall-clock second
(:meth:`per_second`) and per id (:attr:`calls_by_id`), so tests can check rate limits and
retries from the server's point of view.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

LOOPBACK = "127.0.0.1"
TIERS = ("gold", "silver", "bronze")


def customer(cid: int) -> dict[str, Any]:
    """The record the API holds for ``cid``: nested objects and lists, for JSON paths."""
    return {
        "id": cid,
        "name": f"customer {cid}",
        "tier": TIERS[cid % 3],
        "score": str(cid * 0.5) if cid % 7 == 6 else cid * 0.5,  # some numbers arrive as text
        "address": {"city": f"city{cid % 50}", "zip": f"{cid % 100000:05d}"},
        "tags": [f"t{cid % 5}", f"t{cid % 11}"],
    }


def encoded(cid: int) -> bytes:
    """``json.dumps(customer(cid))``, formatted directly: the bench's bulk case asks for
    100,000 records a second, and the server must not be what it measures."""
    score = cid * 0.5
    score_text = f'"{score!r}"' if cid % 7 == 6 else repr(score)
    return (
        f'{{"id": {cid}, "name": "customer {cid}", "tier": "{TIERS[cid % 3]}", '
        f'"score": {score_text}, "address": {{"city": "city{cid % 50}", '
        f'"zip": "{cid % 100000:05d}"}}, "tags": ["t{cid % 5}", "t{cid % 11}"]}}'
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many clients connect at once
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out by design close mid-request: not worth a traceback."""


def most_in_one_second(times: Iterable[float]) -> int:
    """The most of ``times`` (epoch seconds) that fall in any sliding one-second window (not
    only in whole wall-clock seconds: a limit may be kept per second and still be doubled
    across one). The local APIs' busiest second, which their limits are checked against."""
    ordered = sorted(times)
    start, most = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def send_json_body(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``handler``'s request with ``status`` and ``body`` (JSON, already encoded) plus
    ``headers``, its length given so that the connection can be kept alive (HTTP/1.1)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    api: EnrichApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests read the request log, not access logs."""

    def _reply(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        if isinstance(payload, bytes):
            body = payload
        else:
            body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        send_json_body(self, status, body, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _gate(self) -> bool:
        """Log the request, then apply auth and the injected failures; True to go on."""
        api = self.api
        api.log_request()
        if api.validate_token is not None or api.oauth_clients:
            header = self.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            if not api.accepts(token):
                api.count("401")
                self._reply(401, {"error": "invalid or revoked token"})
                return False
        if api.latency:
            time.sleep(api.latency)
        fault = api.draw()
        if fault == "down":
            self._reply(503, {"error": "down"})
        elif fault == "429":
            self._reply(429, {"error": "slow down"}, {"Retry-After": f"{api.retry_after:g}"})
        elif fault == "500":
            detail = "internal error"
            if api.echo_auth:  # a careless API echoing the credential: callers must scrub it
                detail += f" (Authorization: {self.headers.get('Authorization', '')})"
            self._reply(500, {"error": detail})
        elif fault == "hang":
            time.sleep(api.hang_seconds)
            self._reply(504, {"error": "hung"})
        return fault is None

    def _token(self, body: bytes) -> None:
        """OAuth2 client credentials (RFC 6749 4.4), the client authenticated by HTTP Basic."""
        import base64
        from urllib.parse import parse_qs

        header = self.headers.get("Authorization", "")
        try:
            client, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            client = secret = ""
        grant = parse_qs(body.decode()).get("grant_type", [""])[0]
        token = (
            self.api.mint_access_token(client, secret) if grant == "client_credentials" else None
        )
        if token is None:
            self._reply(401, {"error": "invalid_client"})
        else:
            self._reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

    def do_GET(self) -> None:  # noqa: N802
        prefix = "/customers/"
        if not self.path.startswith(prefix):
            self._reply(404, {"error": "no such endpoint"})
            return
        if not self._gate():
            return
        raw = self.path[len(prefix) :]
        try:
            cid = int(raw)
        except ValueError:
            self._reply(404, {"error": "unknown id"})
            return
        self.api.note_ids([cid])
        if not self.api.known(cid):
            self._reply(404, {"error": "unknown id"})
            return
        self._reply(200, encoded(cid))

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path == "/oauth/token":
            self._token(body)
            return
        if self.path != "/customers:batch":
            self._reply(404, {"error": "no such endpoint"})
            return
        if not self._gate():
            return
        try:
            ids = [int(i) for i in json.loads(body)["ids"]]
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"error": 'body must be {"ids": [...]}'})
            return
        self.api.note_ids(ids)
        known = [encoded(i) for i in ids if self.api.known(i)]
        self._reply(200, b'{"customers": [' + b", ".join(known) + b"]}")


_Served = TypeVar("_Served", bound="LoopbackServer")


class LoopbackServer:
    """A local test API served on a 127.0.0.1 port by a background thread (one thread per
    connection): starting, its URL, stopping, and use as a context manager, shared by the
    enrichment and records APIs. Each request is handled by ``handler`` with the server's
    API object as its ``api`` attribute."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], port: int, name: str) -> None:
        """Listen on ``port`` (0: a free one) and serve from a daemon thread named ``name``."""
        bound = type("Handler", (handler,), {"api": self})
        self._httpd = _Server((LOOPBACK, port), bound)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), daemon=True, name=name
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self: _Served) -> _Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EnrichApi(LoopbackServer):
    """The customer API on a free loopback port, served by threads (one per connection)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        rate_hang: float = 0.0,
        retry_after: float = 0.05,
        hang_seconds: float = 2.0,
        missing: set[int] | None = None,
        validate_token: Callable[[str], bool] | None = None,
        echo_auth: bool = False,
        oauth_clients: dict[str, str] | None = None,
        seed: int = 13,
        port: int = 0,
    ) -> None:
        self.latency = latency
        self.rate_429, self.rate_500, self.rate_hang = rate_429, rate_500, rate_hang
        self.retry_after, self.hang_seconds = retry_after, hang_seconds
        self.missing = set(missing or ())
        self.validate_token = validate_token
        self.echo_auth = echo_auth
        self.oauth_clients = dict(oauth_clients or {})
        self.access_tokens: set[str] = set()
        self.token_requests = 0
        self.down = False
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.requests_by_second: Counter[int] = Counter()
        self.request_times: list[float] = []  # arrival of every request (epoch seconds)
        self.calls_by_id: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._serve(_Handler, port, "enrich-api")  # port 0: a free one

    # ------------------------------------------------------------------ bookkeeping

    def log_request(self) -> None:
        now = time.time()
        with self._lock:
            self.requests_by_second[int(now)] += 1
            self.request_times.append(now)

    def busiest_second(self) -> int:
        """The most requests received in any sliding one-second window (not only in whole
        wall-clock seconds: a limit may be kept per second and still be doubled across one)."""
        with self._lock:
            times = list(self.request_times)
        return most_in_one_second(times)

    def count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def note_ids(self, ids: list[int]) -> None:
        with self._lock:
            self.calls_by_id.update(ids)

    def mint_access_token(self, client: str, secret: str) -> str | None:
        """A new access token for a known client whose secret matches, else None."""
        import secrets

        with self._lock:
            self.token_requests += 1
            if not client or self.oauth_clients.get(client) != secret:
                return None
            token = secrets.token_urlsafe(16)
            self.access_tokens.add(token)
            return token

    def revoke_access_tokens(self) -> None:
        with self._lock:
            self.access_tokens.clear()

    def accepts(self, token: str) -> bool:
        if self.validate_token is not None:
            return self.validate_token(token)
        with self._lock:
            return token in self.access_tokens

    def known(self, cid: int) -> bool:
        return cid >= 0 and cid not in self.missing

    def draw(self) -> str | None:
        """The failure injected into this request, if any (counted in :attr:`outcomes`)."""
        with self._lock:
            if self.down:
                fault: str | None = "down"
            else:
                x = self._random.random()
                fault = None
                for name, rate in (
                    ("429", self.rate_429),
                    ("500", self.rate_500),
                    ("hang", self.rate_hang),
                ):
                    if x < rate:
                        fault = name
                        break
                    x -= rate
            self.outcomes[fault or "ok"] += 1
            return fault

    def per_second(self) -> dict[int, int]:
        """Requests received in each wall-clock second (epoch second -> count)."""
        with self._lock:
            return dict(self.requests_by_second)

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests_by_second.values())

    def reset_log(self) -> None:
        with self._lock:
            self.requests_by_second.clear()
            self.request_times.clear()
            self.calls_by_id.clear()
            self.outcomes.clear()


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.dev.enrich_api --latency 0.02``: serve until stdin closes,
    printing the URL on the first line (the bench runs it as a subprocess, so the server's
    Python work does not share the client's GIL)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args(argv)
    with EnrichApi(latency=args.latency) as api:
        print(api.url, flush=True)
        sys.stdin.read()  # the parent closes stdin (or dies) to stop us


if __name__ == "__main__":
    main()
