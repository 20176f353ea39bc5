"""The ``http`` enrichment: each Arrow batch's rows enriched from an HTTP API, typed, with
every row either enriched, missed (the API does not know it) or dead-lettered with why.

Per batch, :class:`HttpEnricher`

1. builds one request per row from the row's fields (:class:`connectors.http.template.
   RequestTemplate`), or, with ``bulk``, one request per ``size`` distinct ids;
2. deduplicates identical requests within the batch and answers what it can from the worker's
   TTL LRU cache (no thread hop, no rate-limit permit for a hit);
3. runs the rest through the step's call strategy (:mod:`transforms.call_strategies`:
   sequential, parallel, adaptive, streaming, burst; the job-wide rate limit), each request
   going through the host's circuit breaker and the retry policy
   (:class:`connectors.http.caller.HttpCaller`), with credentials from the credential
   service's :class:`~transforms.credentials.Credentials` helper: a 401/403 raises
   :class:`~transforms.credentials.AuthenticationFailed` inside ``Credentials.call``, which
   tries ``previous`` during a rotation's overlap, reports the rejected version and refreshes;
4. maps response fields by JSON path (:mod:`connectors.http.jsonpath`) into typed columns;
   values that do not cast become null and are counted per field (``http_cast:<field>``), as
   the lookup step's ``cast`` does;
5. sends rows whose call still failed to the dead letters, with the HTTP status, the number of
   attempts and the last error (scrubbed of every credential the worker holds), rule
   ``http:<status>`` (``http:error`` without one, ``http:circuit_open``, ``http:request``).

Counters (``<step>/<what>``, :class:`connectors.metrics.NodeCounters`): ``requests`` (HTTP
requests sent, retries included), ``retries``, ``timeouts``, ``cache_hits``, ``cache_misses``,
``breaker_opens``, ``breaker_refused``, ``rows_enriched``, ``rows_missed``; the strategy adds
its ``calls``, ``call_errors`` and timing counters.

No value from the live side input: the helper refreshes by itself on every runner (see
:mod:`transforms.credentials`), at most once per ``refresh_interval`` per worker.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.http import jsonpath
from connectors.http.auth import AuthScheme
from connectors.http.breaker import BreakerConfig, Breakers
from connectors.http.cache import MISSING, TTLCache
from connectors.http.caller import (
    BREAKER_REFUSED,
    CACHE_HITS,
    CACHE_MISSES,
    CALLS,
    Outcome,
)
from connectors.http.pool import ConnectionPool
from connectors.http.request import Request, decode_json
from connectors.http.retry import DEFAULT_RETRY, RetryPolicy
from connectors.http.template import RequestTemplate, TemplateError
from connectors.http.typed_json import BulkAnswer, bulk_decoder
from connectors.metrics import NodeCounters
from connectors.records import POSITION_COLUMNS, dead_letters_for_rows
from transforms.call_strategies import StrategyConfig, make_limiter, make_strategy
from transforms.coerce import ARROW_TYPES, coerce
from transforms.credentials import Credentials
from transforms.http_client import check_options, open_caller, scrub_credentials
from transforms.json_records import json_text
from transforms.step import ArrowStep, StepResult

ON_MISSING = ("keep", "reject", "drop")
_SCALARS = (str, int, float)  # what a record id in a bulk answer may be (bool is an int)
REQUESTS, ROWS_ENRICHED, ROWS_MISSED, BREAKER_OPENS = (
    "requests",
    "rows_enriched",
    "rows_missed",
    "breaker_opens",
)


@dataclass(frozen=True)
class BulkConfig:
    """A bulk endpoint: one request carries up to ``size`` ids.

    Args:
        id_field: the row field whose value identifies the record.
        size: ids per request.
        ids_param: the JSON body key holding the list of ids.
        items: JSON path of the list of records in the answer.
        item_id: JSON path of a record's id within it (matched to the sent id as text).
    """

    id_field: str
    size: int = 500
    ids_param: str = "ids"
    items: str = "items"
    item_id: str = "id"


@dataclass(frozen=True)
class CacheConfig:
    """``memory``: a per-worker TTL LRU of ``max_entries``; ``redis``: a cache at ``url``
    shared by all workers (keys under ``prefix``), see :mod:`connectors.http.redis_cache`."""

    max_entries: int = 10_000
    ttl: float = 300.0
    type: str = "memory"
    url: str | None = None
    prefix: str = "beamwright:http:"

    def open(self) -> Any:
        if self.type == "redis":
            from connectors.http.redis_cache import RedisCache

            if not self.url:
                raise ValueError("a redis cache needs a url")
            return RedisCache(self.url, ttl=self.ttl, prefix=self.prefix)
        return TTLCache(max_entries=self.max_entries, ttl=self.ttl)


@dataclass(frozen=True)
class OutputField:
    """A column the step adds: the value at ``path`` in the answer, cast to ``type``."""

    name: str
    path: str
    type: str = "string"


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int | None
    attempts: int
    rule: str


DEFAULT_BREAKER = BreakerConfig()
DEFAULT_CACHE = CacheConfig()
DEFAULT_STRATEGY = StrategyConfig(max_concurrency=48)  # a 20 ms API at 2,000 calls/s

_MISS = object()  # the API does not know this row's record (404, or absent from a bulk answer)

_WORKER: dict[tuple[Any, ...], Any] = {}
_WORKER_LOCK = threading.Lock()


def _per_worker(key: tuple[Any, ...], make: Any) -> Any:
    """One pool / breaker set / cache per worker process and step, shared by its DoFn
    instances and threads (the cache and breakers only mean something when shared)."""
    with _WORKER_LOCK:
        if key not in _WORKER:
            _WORKER[key] = make()
        return _WORKER[key]


def typed_column(values: list[Any], type_name: str) -> tuple[pa.Array, int]:
    """``values`` (from JSON) as an Arrow array of ``type_name``; values that do not cast
    become null. Returns the array and how many values failed their cast."""
    target = ARROW_TYPES[type_name]
    try:
        return pa.array(values, type=target), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    is_text = [type(v) is str for v in values]
    if any(is_text) and not all(is_text):  # numbers, some sent as text: cast only the text
        try:
            direct = pa.array(
                [None if t else v for v, t in zip(values, is_text, strict=True)], target
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        else:
            texts = pa.array([v if t else None for v, t in zip(values, is_text, strict=True)])
            cast, failed = coerce(texts, target)
            bad = (pc.sum(failed).as_py() or 0) if failed is not None else 0
            return pc.if_else(pa.array(is_text), cast, direct), bad
    text = pa.array([None if v is None else json_text(v) for v in values], pa.string())
    cast, failed = coerce(text, target)
    return cast, (pc.sum(failed).as_py() or 0) if failed is not None else 0


class HttpEnricher:
    """Batch processor of :class:`HttpEnrich` (see the module docstring).

    Args:
        step_name: names counters, dead letters, the per-worker pool, cache and breakers.
        url, method, query, headers, body: the request template (``{field}`` placeholders).
        fields: the columns to add.
        bulk: a bulk endpoint instead of one request per row.
        auth: how a secret becomes headers; needs ``credentials``.
        credentials: the credential service's helper for the secret ``auth`` uses.
        timeout: seconds without an answer before an attempt fails.
        retry, breaker: the retry policy and the per-host circuit breaker settings.
        cache: the per-worker cache settings, or None for no cache.
        strategy: how calls are paced (kind, concurrency, job-wide rate limit).
        workers: worker processes of the job (each takes its share of the rate limit).
        on_missing: rows the API does not know: keep (nulls), reject (dead letters) or drop.
    """

    def __init__(
        self,
        *,
        step_name: str,
        url: str,
        fields: Sequence[OutputField],
        run_id: str = "",
        method: str = "GET",
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        bulk: BulkConfig | None = None,
        auth: AuthScheme | None = None,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: BreakerConfig = DEFAULT_BREAKER,
        cache: CacheConfig | None = DEFAULT_CACHE,
        strategy: StrategyConfig = DEFAULT_STRATEGY,
        workers: int = 1,
        on_missing: str = "keep",
    ) -> None:
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}")
        check_options(fields, auth, credentials)
        self.step_name = step_name
        self.run_id = run_id
        self.template = RequestTemplate(
            url,
            method=method if bulk is None or method != "GET" else "POST",
            query=query,
            headers=headers,
            body=body,
        )
        self.fields = list(fields)
        self._paths = [jsonpath.parse(f.path) for f in self.fields]
        self.bulk = bulk
        if bulk is not None:
            if self.template.fields():
                raise ValueError("a bulk request cannot hold row placeholders; ids go in the body")
            self._items = jsonpath.parse(bulk.items)
            self._item_id = jsonpath.parse(bulk.item_id)
            size = bulk.size
            strategy = dataclasses.replace(
                strategy,
                batch_size=size,
                min_batch_size=min(strategy.min_batch_size, size),
                max_batch_size=max(strategy.max_batch_size, size),
            )
        self.auth = auth
        self.credentials = credentials
        self.timeout = timeout
        self.retry = retry
        self.breaker = breaker
        self.cache = cache
        self.strategy = strategy
        self.workers = workers
        self.on_missing = on_missing
        self._ready = False

    def __getstate__(self) -> dict[str, Any]:
        state = {
            k: v
            for k, v in self.__dict__.items()
            if not k.startswith("_") or k in ("_paths", "_items", "_item_id")
        }
        state["_ready"] = False
        return state

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        key = (self.run_id, self.step_name, self.template.url)
        # connections outlive a run (a worker's next job reuses them); answers and a host's
        # failures belong to the run, so a new run starts with an empty cache, closed breakers
        self._pool = _per_worker(("pool", self.template.url.split("/")[2]), ConnectionPool)
        self._breakers = _per_worker(
            ("breakers", *key, self.breaker), lambda: Breakers(self.breaker)
        )
        self._cache = None
        if self.cache is not None:
            cache = self.cache
            self._cache = _per_worker(
                ("cache", *key, cache),
                cache.open,
            )
        self._caller = open_caller(
            self._pool,
            auth=self.auth,
            credentials=self.credentials,
            timeout=self.timeout,
            retry=self.retry,
            breakers=self._breakers,
            limiter=make_limiter(self.strategy, workers=self.workers, name=self.step_name),
            cache=self._cache if self.bulk is None else None,
            decode=self._bulk_decoder() or decode_json,
        )
        self._strategy = make_strategy(self.strategy, workers=self.workers, name=self.step_name)
        self._record = jsonpath.record_getter(self._paths)
        if self.bulk is not None:
            self._item_getter = jsonpath.getter(self._item_id)
        self._counters = NodeCounters(self.step_name)
        self._totals: Counter[str] = Counter()
        self._opens_seen = self._breakers.opens()
        self._ready = True

    def _bulk_decoder(self) -> Any:
        """A bulk step's typed decoder (answers straight to ids and field values), if the
        paths allow one and msgspec is installed."""
        if self.bulk is None:
            return None
        return bulk_decoder(self._items, self._item_id, self._paths)

    # ------------------------------------------------------------------ calls

    def _extract(self, document: Any) -> tuple[Any, ...]:
        """The added fields' values in ``document`` (one record of the answer)."""
        return self._record(document)

    def _resolve(self, outcome: Outcome | BaseException) -> Any:
        """A row's result from an outcome: the added fields' values (a tuple), :data:`_MISS`,
        or a failure. Called on the thread that made the call, so extracting fields overlaps
        other calls' waits instead of following them."""
        if isinstance(outcome, BaseException):
            return _Failure(f"{type(outcome).__name__}: {outcome}", None, 0, "http:error")
        if outcome.ok:
            return self._extract(outcome.body)
        if outcome.not_found:
            return _MISS
        if outcome.error and outcome.error.startswith("circuit open"):
            rule = "http:circuit_open"
        else:
            rule = f"http:{outcome.status}" if outcome.status is not None else "http:error"
        return _Failure(outcome.error or "failed", outcome.status, outcome.attempts, rule)

    def _per_row(self, table: pa.Table) -> list[Any]:
        names = self.template.fields()
        absent = [f for f in names if f not in table.column_names]
        if absent:
            raise KeyError(f"{self.step_name}: the request uses field(s) {absent} the rows lack")
        rows = table.select(names).to_pylist() if names else [{}] * table.num_rows
        results: list[Any] = [None] * table.num_rows
        by_request: dict[Request, list[int]] = {}
        for i, row in enumerate(rows):
            try:
                request = self.template.render(row)
            except TemplateError as exc:
                results[i] = _Failure(f"cannot build the request: {exc}", None, 0, "http:request")
                continue
            by_request.setdefault(request, []).append(i)
        pending: list[Request] = []
        asked = list(by_request)
        hits = self._cache.get_many(asked) if self._cache is not None else [MISSING] * len(asked)
        for request, hit in zip(asked, hits, strict=True):
            if hit is MISSING:
                pending.append(request)
                continue
            result = self._resolve(Outcome(hit[0], hit[1], 0, None, cached=True))
            for i in by_request[request]:
                results[i] = result
        if self._cache is not None:
            self._inc(CACHE_HITS, len(asked) - len(pending))
            self._inc(CACHE_MISSES, len(pending))
        outcomes = self._strategy.map(
            pending,
            self._call,
            ok=lambda r: not isinstance(r, _Failure),
        )
        for request, outcome in zip(pending, outcomes, strict=True):
            result = self._resolve(outcome) if isinstance(outcome, BaseException) else outcome
            for i in by_request[request]:
                results[i] = result
        return results

    def _call(self, request: Request) -> Any:
        return self._resolve(self._caller(request))

    def _bulk_call(self, ids: list[Any]) -> list[Any]:
        assert self.bulk is not None
        body = {self.bulk.ids_param: ids}
        if isinstance(self.template.body, Mapping):
            body = {**self.template.body, **body}
        request = Request(
            self.template.method,
            self.template.url,
            tuple(sorted({**self.template.headers, "Content-Type": "application/json"}.items())),
            json.dumps(body, separators=(",", ":")).encode(),
        )
        outcome = self._caller(request)
        if not outcome.ok:
            return [self._resolve(outcome)] * len(ids)
        if isinstance(outcome.body, BulkAnswer):  # decoded typed: ids and values at hand
            by_id = {
                i: row for i, row in zip(*outcome.body, strict=True) if isinstance(i, _SCALARS)
            }
            return self._align(ids, by_id)
        items = jsonpath.get(outcome.body, self._items)
        if not isinstance(items, list):
            failure = _Failure(
                f"the answer has no list at '{self.bulk.items}'",
                outcome.status,
                outcome.attempts,
                "http:answer",
            )
            return [failure] * len(ids)
        item_id, extract = self._item_getter, self._extract
        by_id = {}
        for item in items:
            found = item_id(item)
            if isinstance(found, _SCALARS):  # an object or list is no id: the record is unknown
                by_id[found] = extract(item)
        return self._align(ids, by_id)

    @staticmethod
    def _align(ids: list[Any], by_id: dict[Any, Any]) -> list[Any]:
        """Each sent id's record values, or :data:`_MISS` when the answer lacks it."""
        results = [by_id.get(i, _MISS) for i in ids]
        if _MISS in results:  # ids sent as numbers may come back as text, or the other way
            by_text = {json_text(k): v for k, v in by_id.items()}
            results = [
                r if r is not _MISS else by_text.get(json_text(i), _MISS)
                for i, r in zip(ids, results, strict=True)
            ]
        return results

    def _bulk_rows(self, table: pa.Table) -> list[Any]:
        assert self.bulk is not None
        if self.bulk.id_field not in table.column_names:
            raise KeyError(f"{self.step_name}: the rows have no id field '{self.bulk.id_field}'")
        ids = table.column(self.bulk.id_field).to_pylist()
        known: dict[Any, Any] = {}
        pending = []
        distinct = list(dict.fromkeys(v for v in ids if v is not None))
        if self._cache is None:
            pending = distinct
        else:  # cached as JSON values: the fields' values (a list), or null for a miss
            keys = [("bulk", self.template.url, value) for value in distinct]
            for value, hit in zip(distinct, self._cache.get_many(keys), strict=True):
                if hit is MISSING:
                    pending.append(value)
                else:
                    known[value] = _MISS if hit is None else tuple(hit)
        if self._cache is not None:
            self._inc(CACHE_HITS, len(known))
            self._inc(CACHE_MISSES, len(pending))
        results = self._strategy.map_batches(
            pending,
            self._bulk_call,
            ok=lambda chunk: not any(isinstance(r, (_Failure, BaseException)) for r in chunk),
        )
        known.update(zip(pending, results, strict=True))
        store = []
        for value, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                known[value] = result = self._resolve(result)
            if self._cache is not None and not isinstance(result, _Failure):
                store.append(
                    (("bulk", self.template.url, value), None if result is _MISS else list(result))
                )
        if store:
            self._cache.put_many(store)
        null_id = _Failure(f"the id field '{self.bulk.id_field}' is null", None, 0, "http:request")
        return [null_id if v is None else known[v] for v in ids]

    # ------------------------------------------------------------------ batch

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        if not self._ready:
            self.setup()
        results = self._bulk_rows(table) if self.bulk is not None else self._per_row(table)
        self._publish()
        nothing = (None,) * len(self.fields)
        rows = [r if type(r) is tuple else nothing for r in results]
        missed = [r is _MISS for r in results]
        n_missed = sum(missed)
        failed = [i for i, r in enumerate(results) if type(r) is _Failure]
        rule_failures: dict[str, int] = {}
        plain = [c for c in table.column_names if c not in POSITION_COLUMNS]
        out = table.select(plain)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(self.fields)
        for spec, values in zip(self.fields, columns, strict=True):
            column, bad = typed_column(list(values), spec.type)
            if bad:
                rule_failures[f"http_cast:{spec.name}"] = bad
            if spec.name in out.column_names:
                out = out.set_column(out.column_names.index(spec.name), spec.name, column)
            else:
                out = out.append_column(spec.name, column)
        for name in POSITION_COLUMNS:
            if name in table.column_names:
                out = out.append_column(name, table.column(name))
        self._inc(ROWS_ENRICHED, len(results) - n_missed - len(failed))
        self._inc(ROWS_MISSED, n_missed)
        dead_index = list(failed)
        errors = [self._describe(results[i]) for i in failed]
        rules = [results[i].rule for i in failed]
        drop = []
        if n_missed and self.on_missing != "keep":
            miss_index = [i for i, m in enumerate(missed) if m]
            if self.on_missing == "reject":
                dead_index += miss_index
                errors += ["not found: the API has no record for this row"] * len(miss_index)
                rules += ["http:not_found"] * len(miss_index)
            else:
                drop = miss_index
        for rule in rules:
            rule_failures[rule] = rule_failures.get(rule, 0) + 1
        if not dead_index and not drop:
            return StepResult(rows=out, rule_failures=rule_failures)
        keep = [True] * table.num_rows
        for i in dead_index + drop:
            keep[i] = False
        order = sorted(range(len(dead_index)), key=lambda k: dead_index[k])
        dead = dead_letters_for_rows(
            table.take(pa.array([dead_index[k] for k in order], pa.int64())),
            errors=[errors[k] for k in order],
            rules=[rules[k] for k in order],
            step=self.step_name,
            run_id=self.run_id,
        )
        return StepResult(
            rows=out.filter(pa.array(keep)),
            dead_letters=dead,
            filtered=len(drop),
            rule_failures=rule_failures,
        )

    def _describe(self, failure: _Failure) -> str:
        status = failure.status if failure.status is not None else "none"
        return scrub_credentials(
            f"http: status={status} attempts={failure.attempts}: {failure.error}",
            self.auth,
            self.credentials,
        )

    def _inc(self, what: str, n: int) -> None:
        self._counters.inc(what, n)
        self._totals[what] += n

    def totals(self) -> dict[str, int]:
        """This instance's counts so far (what it added to the step's Beam counters)."""
        return dict(self._totals)

    def _publish(self) -> None:
        stats = self._caller.drain()
        self._inc(REQUESTS, stats.pop(CALLS, 0))
        for what, n in stats.items():
            self._inc(what, n)
        opens = self._breakers.opens()
        self._inc(BREAKER_OPENS, opens - self._opens_seen)
        self._opens_seen = opens
        self._strategy.publish(self._counters)


class HttpEnrich(ArrowStep):
    """Enrich Arrow batches from an HTTP API; ``rows`` and ``dead_letters`` outputs.

    Args: those of :class:`HttpEnricher`.
    """

    def __init__(self, *, step_name: str = "http", **options: Any) -> None:
        super().__init__(HttpEnricher(step_name=step_name, **options), step_name=step_name)


__all__ = [
    "BREAKER_OPENS",
    "BREAKER_REFUSED",
    "BulkConfig",
    "CacheConfig",
    "HttpEnrich",
    "HttpEnricher",
    "OutputField",
    "typed_column",
]
