"""Alpha Vantage's ``TIME_SERIES_DAILY`` / ``TIME_SERIES_INTRADAY`` API read over HTTP, one
request per symbol, decoded by the same adapter as saved responses
(:mod:`connectors.files.alphavantage`).

The API key travels as the ``apikey`` query parameter (the API's only way), so the URL with
the key exists only inside :func:`fetch`, on the worker, built from a secret reference
resolved there; positions, dead letters, errors and lineage use the URL without it.

The API answers problems with HTTP 200 and a JSON message: ``"Note"`` or ``"Information"``
when the rate limit is hit (retried, like a 429 or 5xx or a network error, with doubling
waits from ``retry_wait`` seconds), ``"Error Message"`` for a bad symbol or key (not retried).
When every attempt failed, the bundle fails with an ``AlphaVantageError`` naming the symbol:
dead-lettering a whole series for an outage would turn it into rows to replay by hand.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from connectors.errors import RunError
from connectors.fileio import emit_chunks, read_each
from connectors.files.alphavantage import decode
from connectors.files.base import CorruptFileError
from connectors.metrics import NodeCounters

_RATE_LIMITED = ("Note", "Information")


class AlphaVantageError(RunError):
    """The API could not be read for a symbol (after retries, or it refused the request)."""


@dataclass(frozen=True)
class SeriesRequest:
    """What to ask for one symbol (never the key)."""

    base_url: str
    function: str
    symbol: str
    interval: str | None = None
    outputsize: str = "compact"

    def url(self, key: str | None = None) -> str:
        """The request URL; without ``key``, the one positions and messages show."""
        query = {"function": self.function, "symbol": self.symbol, "outputsize": self.outputsize}
        if self.interval:
            query["interval"] = self.interval
        if key is not None:
            query["apikey"] = key
        return f"{self.base_url}?{urllib.parse.urlencode(query)}"


def fetch(
    request: SeriesRequest, key: str, *, attempts: int, retry_wait: float, timeout: float
) -> bytes:
    """The response body for ``request``, retried as the module docstring says."""
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(retry_wait * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request.url(key), timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code == 429 or exc.code >= 500:
                continue
            break
        except OSError as exc:  # URLError, timeouts, resets
            problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            continue
        note = _rate_limit_note(body)
        if note is None:
            return body
        problem = f"rate limited: {note}"
    raise AlphaVantageError(
        f"cannot read {request.url()}: {problem}",
        hint="check the API key and plan's rate limit; the run can be repeated",
    )


def _rate_limit_note(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(doc, dict) and "Meta Data" not in doc:
        for key in _RATE_LIMITED:
            if key in doc:
                return str(doc[key])
    return None


class _FetchFn(beam.DoFn):
    def __init__(
        self, key_ref: Any, source: str, batch_size: int, run_id: str, settings: dict[str, Any]
    ) -> None:
        self._key_ref = key_ref
        self._source = source
        self._batch_size = batch_size
        self._run_id = run_id
        self._settings = settings

    def setup(self) -> None:
        self._counters = NodeCounters(self._source)

    def process(self, request: SeriesRequest) -> Iterable[Any]:
        key = self._key_ref.resolve().reveal().decode("utf-8")
        body = fetch(request, key, **self._settings)
        try:
            chunks = list(decode(body, request.url(), self._batch_size))
        except CorruptFileError as exc:
            raise AlphaVantageError(exc.detail, where=request.url()) from None
        yield from emit_chunks(chunks, self._counters, self._source, self._run_id)


class ReadAlphaVantage(beam.PTransform):
    """Read each request's series into Arrow batches; outputs ``rows`` and ``dead_letters``.

    Args:
        requests: one per symbol.
        key: a :class:`connectors.secrets.SecretRef` to the API key (resolved on workers).
        source_name: names counters and the dead letters' ``step``.
        batch_size: rows per Arrow batch.
        run_id: stamped on dead letters.
        attempts, retry_wait, timeout: see :func:`fetch`.
    """

    def __init__(
        self,
        requests: Sequence[SeriesRequest],
        key: Any,
        *,
        source_name: str,
        batch_size: int = 10_000,
        run_id: str = "",
        attempts: int = 4,
        retry_wait: float = 15.0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self._requests = list(requests)
        settings = {"attempts": attempts, "retry_wait": retry_wait, "timeout": timeout}
        self._fn = _FetchFn(key, source_name, batch_size, run_id, settings)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return read_each(pbegin, self._requests, self._fn, each_label="Symbols", read_label="Fetch")
