"""A local orders API with a paginated listing and an event stream, for the ``http`` source,
the ``api_integration`` template's tests and ``beamwright sample-api``.

It extends :class:`pipelines.dev.enrich_api.EnrichApi` (same threaded 127.0.0.1 server, request
log, latency and failure injection, bearer-token check) with:

- ``GET /orders``: the records changed after ``since`` (ISO 8601; ``modified_at > since``),
  ordered by ``(modified_at, id)``, as ``{"items": [...]}``, paged in the style the query asks:
  ``page`` (+ ``per_page``); ``offset`` (+ ``limit``); ``limit`` alone or ``cursor``: cursor
  style, the answer holding ``next_cursor`` (null on the last page); none of these: pages of
  ``default_page_size`` linked by ``Link: <...>; rel="next"`` headers (RFC 8288), which the
  page style sends too.
- ``GET /orders/events``: the same records as server-sent events (``id:`` = the record's
  1-based position in the listing, ``data: <json>``), from the one after ``Last-Event-ID``,
  then the stream ends; ``?format=jsonl``: chunked JSON lines instead.

:attr:`SampleApi.orders` is a list the tests change while it runs (:meth:`add`); an element that
is not a dict is served as it is (to exercise dead letters).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pipelines.dev.enrich_api import EnrichApi, _Handler

STATUSES = (" Paid", "shipped ", "PENDING", "delivered", "cancelled")
CURRENCIES = ("usd", "EUR", "gbp")
BASE_TIME = _dt.datetime(2026, 12, 1, 9, 0, tzinfo=_dt.timezone.utc)


def sample_order(n: int, *, minutes: int | None = None) -> dict[str, Any]:
    """Order ``n`` as an API would send it: amounts in cents, untidy text, local offsets."""
    offset = _dt.timezone(_dt.timedelta(hours=(n % 3) - 1))  # UTC-1, UTC, UTC+1
    moment = BASE_TIME + _dt.timedelta(minutes=n if minutes is None else minutes)
    return {
        "id": n,
        "customer": {"id": n % 40, "email": f"Customer{n % 40}@Example.com"},
        "amount_cents": 1000 + (n * 37) % 9000,
        "currency": CURRENCIES[n % 3],
        "status": STATUSES[n % 5],
        "modified_at": moment.astimezone(offset).isoformat(),
    }


def _moment(record: Any) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(record["modified_at"]).astimezone(_dt.timezone.utc)
    except (TypeError, KeyError, ValueError):
        return BASE_TIME  # a malformed record is listed; the client dead-letters it


class _ListingHandler(_Handler):
    api: SampleApi

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path not in ("/orders", "/orders/events"):
            super().do_GET()
            return
        if not self._gate():
            return
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            records = self.api.changed_since(query.get("since"))
        except ValueError:
            self._reply(400, {"error": "since must be an ISO 8601 time"})
            return
        if parts.path == "/orders/events":
            self._stream(records, query.get("format", "sse"))
            return
        self._page(records, query)

    def _page(self, records: list[Any], query: dict[str, str]) -> None:
        headers: dict[str, str] = {}
        payload: dict[str, Any] = {}
        rest = {k: v for k, v in query.items() if k == "since"}
        if "offset" in query:
            start, size = int(query["offset"]), int(query.get("limit", 100))
        elif "cursor" in query or "limit" in query:
            start = int(base64.urlsafe_b64decode(query["cursor"])) if "cursor" in query else 0
            size = int(query.get("limit", 100))
            more = start + size < len(records)
            token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            payload["next_cursor"] = token if more else None
        else:
            page = int(query.get("page", 1))
            size = int(query.get("per_page", self.api.default_page_size))
            start = (page - 1) * size
            if start + size < len(records):
                link = urlencode({**rest, "page": page + 1, "per_page": size})
                headers["Link"] = f'</orders?{link}>; rel="next", </orders>; rel="first"'
        payload["items"] = records[start : start + size]
        self._reply(200, payload, headers)

    def _stream(self, records: list[Any], fmt: str) -> None:
        self.send_response(200)
        kind = "text/event-stream" if fmt == "sse" else "application/x-ndjson"
        self.send_header("Content-Type", kind)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        resume = self.headers.get("Last-Event-ID", "")
        first = int(resume) if resume.isdigit() else 0  # ids are positions in the listing
        for i, record in enumerate(records[first:], start=first):
            data = json.dumps(record).encode()
            chunk = b"id: %d\ndata: %s\n\n" % (i + 1, data) if fmt == "sse" else data + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


class SampleApi(EnrichApi):
    """The orders API (see the module docstring) on 127.0.0.1, a free port unless ``port``.

    Args:
        orders: the initial records (default: ``count`` sample orders).
        count: sample orders made when ``orders`` is not given.
        default_page_size: page size of the Link-header style.
        options: :class:`EnrichApi`'s (latency, failure injection, ``validate_token``...).
    """

    def __init__(
        self,
        *,
        orders: list[Any] | None = None,
        count: int = 250,
        default_page_size: int = 50,
        **options: Any,
    ) -> None:
        self.orders = (
            list(orders) if orders is not None else [sample_order(n) for n in range(count)]
        )
        self.default_page_size = default_page_size
        super().__init__(**options)
        self._httpd.RequestHandlerClass = type("Handler", (_ListingHandler,), {"api": self})

    def add(self, records: list[Any]) -> None:
        with self._lock:
            self.orders.extend(records)

    def changed_since(self, since: str | None) -> list[Any]:
        """Records modified after ``since``, oldest first (``ValueError``: not a time)."""
        with self._lock:
            records = list(self.orders)
        if since:
            after = _dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            records = [r for r in records if _moment(r) > after]
        return sorted(
            records, key=lambda r: (_moment(r), str(r.get("id") if isinstance(r, dict) else r))
        )

    def __enter__(self) -> SampleApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-api",
        help="serve a local orders API (paginated listing, event stream); --run: run the "
        "api_integration template against it",
    )
    p.add_argument("--count", type=int, default=250, help="orders listed at start")
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port on 127.0.0.1 (8765: the template's default api_endpoints; 0: a free one)",
    )
    p.add_argument(
        "--run",
        action="store_true",
        help="run api_integration against the API (api_endpoints set to it), then stop",
    )
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Serve on 127.0.0.1:``--port`` until Ctrl-C, or with ``--run`` run the
    template against it once and return its exit code."""
    import time

    from pipelines.interrupts import stop_on_signals

    try:
        api = SampleApi(count=args.count, port=args.port)
    except OSError as exc:
        print(f"beamwright: cannot listen on 127.0.0.1:{args.port}: {exc}; try --port 0")
        return 2
    with api:
        endpoint = f"{api.url}/orders"
        print(f"orders API on {endpoint} (events: {endpoint}/events)", flush=True)
        if not args.run:
            print("Ctrl-C stops", flush=True)
            stop_on_signals()
            try:
                while True:  # timed, so the main thread sees the signal whichever thread got it
                    time.sleep(0.5)
            except KeyboardInterrupt:
                return 0
        return run_template(endpoint, args.param)


def run_template(endpoint: str, pairs: list[str]) -> int:
    """Run ``api_integration`` against ``endpoint`` (its enrichment from the same API's
    customers), printing the summary; returns the exit code."""
    from pipelines.dev.template_run import run_template_with

    base = endpoint.rsplit("/", 1)[0]
    values = {
        "api_endpoints": endpoint,
        "data_transformations": "normalize,validate,enrich",
        "enrich_url": base + "/customers/{customer_id}",
    }
    return run_template_with("api_integration", values, pairs)
