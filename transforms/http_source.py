"""Reading an HTTP API's paginated listing into Arrow batches: the ``http`` source's transform.

One element per endpoint; each is walked page by page (:mod:`connectors.http.paging`: page
numbers, offsets, cursors or ``Link: rel=next`` headers) on one worker, since a page's
successor is only known from its answer. Every page goes through the same client core as the
``http`` enrichment step (:class:`connectors.http.caller.HttpCaller`: keep-alive pool, retries
with backoff and ``Retry-After``, the host's circuit breaker) and takes a permit of the job-wide
rate limit (:func:`transforms.call_strategies.make_limiter`) before each attempt.

Records are decoded into Arrow by the declared fields (a JSON path and a type each). A record
that is not a JSON object, or whose value does not cast to its field's type, goes to the dead
letters with its JSON text as ``payloadString``/``payloadBytes`` (a page's JSON has no per-record
bytes, so the record is re-serialised compactly, keys in the API's order), the reason, and its
position: ``source`` = the endpoint, ``offset`` = the record's 1-based number in this run's walk,
attributes ``http.page`` (the page's URL) and ``http.index`` (0-based index on that page).

A page that fails (after retries: an HTTP error, a timeout, an open breaker, an answer that
is not JSON or has no list of records) fails the run rather than skip records: the checkpoint
then stays where it was, so the next run asks again (see :mod:`connectors.http.checkpoint`).

Incremental reads: with ``mark_field``, the greatest value of that field among the rows read is
reported as a Beam distribution per endpoint (:func:`high_water_marks` reads it back from the
result); the driver writes it once the outputs are published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import RunError
from connectors.http import jsonpath
from connectors.http.auth import AuthScheme
from connectors.http.breaker import BreakerConfig, Breakers
from connectors.http.checkpoint import to_metric
from connectors.http.paging import Pagination, with_query
from connectors.http.pool import ConnectionPool
from connectors.http.request import Request
from connectors.http.retry import DEFAULT_RETRY, RetryPolicy
from connectors.metrics import METRIC_NAMESPACE, ROWS_DEAD, ROWS_IN, ROWS_OUT, TALLY, NodeCounters
from connectors.names import labelled_pardo
from connectors.records import (
    DEAD_LETTER_SCHEMA,
    Reject,
    dead_letters_for_rejects,
    with_positions,
)
from transforms.call_strategies import StrategyConfig, make_limiter
from transforms.credentials import Credentials
from transforms.http_client import check_options, open_caller, scrub_credentials
from transforms.json_records import SourceField, decode_records

ROWS, DEAD_LETTERS = "rows", "dead_letters"
MARK_NAMESPACE = f"{METRIC_NAMESPACE}.http_marks"
PAGES = "pages"
ONE_PAGE = Pagination()
DEFAULT_BREAKER = BreakerConfig()


def open_limited_caller(options: Any, *, name: str) -> tuple[Any, Any]:
    """The job-wide limiter (``name``'s share of ``options.rate_limit`` over ``options.workers``)
    and a caller that waits on it, from an HTTP reader's or writer's ``auth``, ``credentials``,
    ``timeout``, ``retry`` and ``breaker``: opened in each worker's setup, never pickled, so
    every HTTP step throttles, retries and breaks the same way."""
    limiter = make_limiter(
        StrategyConfig(rate_limit=options.rate_limit), workers=options.workers, name=name
    )
    caller = open_caller(
        ConnectionPool(),
        auth=options.auth,
        credentials=options.credentials,
        timeout=options.timeout,
        retry=options.retry,
        breakers=Breakers(options.breaker),
        limiter=limiter,
    )
    return limiter, caller


class HttpSourceError(RunError):
    """A page of a listing could not be read; the run fails and its checkpoint stays."""


@dataclass(frozen=True)
class Endpoint:
    """One listing to walk: ``uri`` names it (lineage, positions, marks); ``url`` is asked."""

    uri: str
    url: str
    since: Any = None


def mark_metric(source: str, uri: str) -> str:
    return f"{source}@{uri}"


def high_water_marks(result: Any, source: str) -> dict[str, int]:
    """Endpoint URI -> the greatest mark value the run read (``source``'s distributions)."""
    from apache_beam.metrics.metric import MetricsFilter

    prefix = mark_metric(source, "")
    found = result.metrics().query(MetricsFilter().with_namespace(MARK_NAMESPACE))
    marks: dict[str, int] = {}
    for metric in found["distributions"]:
        name = metric.key.metric.name
        value = metric.committed if metric.committed is not None else metric.attempted
        if name.startswith(prefix) and value is not None and value.count:
            uri = name[len(prefix) :]
            marks[uri] = max(marks.get(uri, value.max), value.max)
    return marks


class _PagesFn(beam.DoFn):
    """Walks one endpoint's pages (see the module docstring)."""

    def __init__(self, reader: HttpReader) -> None:
        self._reader = reader

    def setup(self) -> None:
        self._reader.setup()

    def process(self, endpoint: Endpoint) -> Iterator[Any]:
        for tag, table in self._reader.read(endpoint):
            yield table if tag == ROWS else beam.pvalue.TaggedOutput(DEAD_LETTERS, table)


class HttpReader:
    """Reads endpoints without Beam (``read`` yields ``(tag, table)``); :class:`ReadHttp` runs
    it in a DoFn. Args are those of :class:`ReadHttp`."""

    def __init__(
        self,
        *,
        source_name: str,
        fields: Sequence[SourceField],
        records: str | None = None,
        pagination: Pagination = ONE_PAGE,
        headers: Mapping[str, str] | None = None,
        since_param: str | None = None,
        mark_field: str | None = None,
        auth: AuthScheme | None = None,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: BreakerConfig = DEFAULT_BREAKER,
        rate_limit: float | None = None,
        workers: int = 1,
        batch_size: int = 10_000,
        run_id: str = "",
        count_rows_out: bool = True,
    ) -> None:
        check_options(fields, auth, credentials)
        names = [f.name for f in fields]
        if mark_field is not None:
            kind = {f.name: f.type for f in fields}.get(mark_field)
            if kind not in ("timestamp", "int64"):
                raise ValueError(
                    f"the mark field '{mark_field}' must be a declared timestamp or int64 field"
                )
        self.source_name = source_name
        self.fields = list(fields)
        self.records = jsonpath.parse(records) if records else None
        self.pagination = pagination
        self.headers = tuple(sorted((headers or {}).items()))
        self.since_param = since_param
        self.mark_field = mark_field
        self.mark_type = {f.name: f.type for f in fields}.get(mark_field or "", "int64")
        self.auth = auth
        self.credentials = credentials
        self.timeout = timeout
        self.retry = retry
        self.breaker = breaker
        self.rate_limit = rate_limit
        self.workers = workers
        self.batch_size = batch_size
        self.run_id = run_id
        self.count_rows_out = count_rows_out
        self._names = names
        self._ready = False

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k == "_names"}
        state["_ready"] = False
        return state

    def setup(self) -> None:
        if self._ready:
            return
        self._limiter, self._caller = open_limited_caller(self, name=self.source_name)
        self._counters = NodeCounters(self.source_name)
        self._ready = True

    def first_request(self, endpoint: Endpoint) -> Request:
        url = endpoint.url
        if self.since_param and endpoint.since is not None:
            url = with_query(url, {self.since_param: endpoint.since})
        return Request("GET", self.pagination.first(url), self.headers)

    def read(self, endpoint: Endpoint) -> Iterator[tuple[str, pa.Table]]:
        """Walk ``endpoint``'s pages: yields ``(ROWS, table)`` batches of up to ``batch_size``
        rows and ``(DEAD_LETTERS, table)``; raises :class:`HttpSourceError` on a failed page."""
        self.setup()
        request: Request | None = self.first_request(endpoint)
        page_number, number = 0, 0
        pending: list[pa.Table] = []
        held = 0
        mark: int | None = None
        while request is not None:
            page_number += 1
            if self._limiter is not None:
                self._limiter.acquire()
            outcome = self._caller(request)
            self._publish_calls()
            if not outcome.ok:
                status = outcome.status if outcome.status is not None else "none"
                raise HttpSourceError(
                    scrub_credentials(
                        f"{request.describe()}: status={status} attempts={outcome.attempts}: "
                        f"{outcome.error or 'failed'}",
                        self.auth,
                        self.credentials,
                    ),
                    where=self.source_name,
                    hint="the run fetched nothing for good; its checkpoint is unchanged",
                )
            records = (
                outcome.body if self.records is None else jsonpath.get(outcome.body, self.records)
            )
            if records is None:
                records = []
            if not isinstance(records, list):
                raise HttpSourceError(
                    f"{request.describe()}: the answer has no list of records at "
                    f"'{'.'.join(map(str, self.records or ()))}'",
                    where=self.source_name,
                )
            self._counters.inc(PAGES)
            table, bad, reasons = decode_records(records, self.fields)
            skip = set(bad)
            good = [i for i in range(len(records)) if i not in skip] if bad else None
            offsets = (
                [number + 1 + i for i in good]
                if good is not None
                else list(range(number + 1, number + 1 + len(records)))
            )
            if table.num_rows:
                pending.append(with_positions(table, endpoint.uri, offsets))
                held += table.num_rows
                if self.mark_field is not None:
                    top = to_metric(pc.max(table.column(self.mark_field)).as_py(), self.mark_type)
                    if top is not None:
                        mark = top if mark is None else max(mark, top)
            self._counters.inc(ROWS_IN, len(records))
            if self.count_rows_out:
                self._counters.inc(ROWS_OUT, table.num_rows)
            TALLY.add(self.source_name, len(records))
            if bad:
                self._counters.inc(ROWS_DEAD, len(bad))
                yield (
                    DEAD_LETTERS,
                    self._rejects(records, bad, reasons, number, request.url, endpoint),
                )
            number += len(records)
            if held >= self.batch_size:
                yield ROWS, pa.concat_tables(pending)
                pending, held = [], 0
            request = self.pagination.next(
                request, outcome.body, outcome.headers, records, page_number
            )
        if pending:
            yield ROWS, pa.concat_tables(pending)
        if mark is not None:
            from apache_beam.metrics import Metrics

            Metrics.distribution(
                MARK_NAMESPACE, mark_metric(self.source_name, endpoint.uri)
            ).update(mark)

    def _rejects(
        self,
        records: Sequence[Any],
        bad: list[int],
        reasons: list[str],
        before: int,
        page_url: str,
        endpoint: Endpoint,
    ) -> pa.Table:
        rejects = [
            Reject(
                endpoint.uri,
                before + 1 + i,
                json.dumps(records[i], ensure_ascii=False, separators=(",", ":")).encode(),
                reason,
                "decode",
            )
            for i, reason in zip(bad, reasons, strict=True)
        ]
        letters = dead_letters_for_rejects(rejects, step=self.source_name, run_id=self.run_id)
        attributes = pa.array(
            [
                [{"key": "http.page", "value": page_url}, {"key": "http.index", "value": str(i)}]
                for i in bad
            ],
            DEAD_LETTER_SCHEMA.field("attributes").type,
        )
        return letters.set_column(
            letters.schema.get_field_index("attributes"), "attributes", attributes
        )

    def _publish_calls(self) -> None:
        for what, n in self._caller.drain().items():
            self._counters.inc("requests" if what == "calls" else what, n)


class ReadHttp(beam.PTransform):
    """Read paginated HTTP listings into Arrow batches; outputs ``rows`` and ``dead_letters``.

    Applied to the pipeline (``PBegin``) it walks ``endpoints``; applied to a PCollection of
    :class:`Endpoint` it walks those instead, for endpoints known only when the pipeline runs
    (a ``since`` mark read from a state table at run start).

    Args:
        endpoints: the listings to walk (one element each; several run in parallel); None
            when the transform is applied to a PCollection of them.
        source_name: names counters, dead letters' ``step`` and the shared rate limiter.
        fields: the columns (JSON path + type); records are decoded by them.
        records: JSON path of the list of records in a page (None: the page is the list).
        pagination: how pages follow each other.
        headers: fixed request headers (never credentials: see ``auth``).
        since_param: the query parameter carrying an endpoint's ``since`` mark.
        mark_field: the declared field whose greatest value becomes the next mark.
        auth, credentials: a credential scheme and the credential service's helper.
        timeout, retry, breaker: per request, as the ``http`` step has them.
        rate_limit: requests/s for the whole job (each worker takes its share).
        workers: worker processes of the job.
        batch_size: rows per Arrow batch (pages are gathered up to it).
        run_id: stamped on dead letters.
        count_rows_out: False when the caller keeps or drops decoded rows after the read
            (``records_api`` drops those at or before its mark) and so counts the source's
            ``rows_out`` and ``rows_filtered`` itself, where the rows leave the source.
    """

    def __init__(self, endpoints: Iterable[Endpoint] | None = None, **options: Any) -> None:
        super().__init__()
        self._endpoints = None if endpoints is None else list(endpoints)
        self._reader = HttpReader(**options)

    def expand(self, pvalue: beam.pvalue.PValue) -> beam.pvalue.DoOutputsTuple:
        if not isinstance(pvalue, beam.pvalue.PBegin):
            endpoints = pvalue
        elif self._endpoints is None:
            raise ValueError("ReadHttp applied to the pipeline needs its endpoints")
        else:
            endpoints = (
                pvalue
                | "Impulse" >> beam.Impulse()
                | "Endpoints" >> beam.FlatMap(_each, self._endpoints)
            )
            if len(self._endpoints) > 1:
                endpoints = endpoints | "Spread" >> beam.Reshuffle()
        outputs = endpoints | labelled_pardo("Pages", _PagesFn(self._reader)).with_output_types(
            pa.Table
        ).with_outputs(DEAD_LETTERS, main=ROWS)
        outputs[DEAD_LETTERS].element_type = pa.Table
        return outputs


def _each(_impulse: bytes, endpoints: list[Endpoint]) -> list[Endpoint]:
    return endpoints
