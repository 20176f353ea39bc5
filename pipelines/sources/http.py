"""The ``http`` source: paginated JSON listings of an HTTP API polled into Arrow batches, with
an optional incremental ``since`` mark kept in a checkpoint file.

It reuses the ``http`` enrichment step's client and settings (auth from a secret reference,
retries with backoff and ``Retry-After``, the per-host breaker, a job-wide ``rate_limit``):
see :mod:`transforms.http_source`. Pagination: ``page``, ``offset``, ``cursor`` or ``link``
(RFC 8288 ``Link: <...>; rel="next"``), :mod:`connectors.http.paging`.

Incremental state (``incremental``): each endpoint is asked for records after its mark
(``?since=<mark>``); the greatest value of the mark field the run read becomes the new mark,
written to the checkpoint file by the driver **after** the run's outputs are published
(:attr:`pipelines.build.BuildContext.after_publish`, next to the Kafka offset commit), so a
failed run leaves it unchanged and the next run refetches. The API's ``since`` should be
exclusive (``modified > since``); records sharing the mark's exact value that appear after a
run are then not fetched, which is why the mark is kept to the microsecond.

Lineage: each endpoint is an input dataset named by its URL without the query (namespace
``http://host:port``, name the path), as the ``http`` step names its API; its schema is the
declared fields. Rows carry that URL as their source position and their number in the run's
walk as offset.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel
from pipelines.steps.http import (
    AuthSpec,
    BreakerSpec,
    ResponseField,
    RetrySpec,
    open_auth,
    response_fields,
)


class PaginationSpec(SpecModel):
    """How one page leads to the next (see :class:`connectors.http.paging.Pagination`)."""

    style: Literal["none", "page", "offset", "cursor", "link"] = Field(
        default="none",
        description="page: ?page=N&per_page=size; offset: ?offset=N&limit=size; cursor: the "
        "answer's cursor_path sent back as cursor_param; link: the Link header's rel=next; "
        "none: one request.",
    )
    size: int = Field(default=100, ge=1, description="Records per page asked for.")
    page_param: str = "page"
    start_page: int = 1
    size_param: str = Field(
        default="per_page", description="The page-size parameter ('' to send none)."
    )
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    max_pages: int = Field(default=100_000, ge=1)


class IncrementalSpec(SpecModel):
    """Fetch only records changed since the last successful run."""

    field: str = Field(description="A declared field (timestamp or int64) whose maximum is kept.")
    param: str = Field(default="since", description="The query parameter carrying the mark.")
    checkpoint: str = Field(description="JSON file holding each endpoint's mark.")
    start: str | int | None = Field(
        default=None, description="The mark of the first run (default: fetch everything)."
    )


class HttpSourceSpec(SpecModel):
    """Paginated JSON listings of an HTTP API, decoded into typed Arrow batches."""

    type: Literal["http"]
    name: Name
    url: str | list[str] = Field(
        description="Listing URL(s), http(s)://host:port/path?fixed=query; several are read "
        "in parallel, each its own dataset."
    )
    records: str | None = Field(
        default=None,
        description="JSON path of the list of records in a page (default: the page is a list).",
    )
    fields: dict[str, ResponseField | str] = Field(
        min_length=1,
        description="Column -> JSON path in a record (a string column) or {path, type}.",
    )
    pagination: PaginationSpec = Field(default_factory=PaginationSpec)
    incremental: IncrementalSpec | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    timeout: float = Field(default=10.0, gt=0)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    rate_limit: float | None = Field(
        default=None, gt=0, description="Requests/s for the whole job, retries included."
    )

    @model_validator(mode="after")
    def _check(self) -> HttpSourceSpec:
        from connectors.http import jsonpath

        for url in self.urls():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"url: {url!r} is not an http(s)://host/path URL")
        uris = [dataset_uri(u) for u in self.urls()]
        if len(set(uris)) != len(uris):
            raise ValueError("url: two listings with the same path would be one dataset")
        paths = {name: spec.path for name, spec in self.source_fields().items()}
        if self.records:
            paths["records"] = self.records
        for name, path in paths.items():
            try:
                jsonpath.parse(path)
            except ValueError as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        if self.incremental is not None:
            kind = {n: f.type for n, f in self.source_fields().items()}.get(self.incremental.field)
            if kind not in ("timestamp", "int64"):
                raise ValueError(
                    f"incremental.field: '{self.incremental.field}' must be a declared field of "
                    "type timestamp or int64"
                )
        if self.auth is not None:
            self.auth.check_headers(self.headers)
        return self

    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    def source_fields(self) -> dict[str, ResponseField]:
        return response_fields(self.fields)


def dataset_uri(url: str) -> str:
    """The listing's URL without query or fragment: the dataset and the rows' position."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/') or '/'}"


def client_options(node: Any, ctx: Any, path: str, workers: int) -> dict[str, Any]:
    """The ReadHttp arguments every HTTP-backed source fills from its spec the same way (auth
    opened from the secret, retry, breaker, rate limit over ``workers``, the run's batch size
    and id), so an ``http`` source and a ``records_api`` source call alike."""
    from connectors.http.breaker import BreakerConfig
    from connectors.http.retry import RetryPolicy

    auth, credentials = open_auth(node.auth, node.timeout, path)
    return {
        "auth": auth,
        "credentials": credentials,
        "timeout": node.timeout,
        "retry": RetryPolicy(**node.retry.model_dump()),
        "breaker": BreakerConfig(**node.breaker.model_dump()),
        "rate_limit": node.rate_limit,
        "workers": workers,
        "batch_size": ctx.spec.run.batch_size,
        "run_id": ctx.run_id,
    }


def build(node: HttpSourceSpec, ctx: Any, path: str) -> None:
    from connectors.http.checkpoint import CheckpointError, from_metric, read_marks, write_marks
    from connectors.http.paging import Pagination
    from transforms.call_strategies import StrategyError, workers_from_options
    from transforms.http_source import Endpoint, ReadHttp, SourceField, high_water_marks

    workers = 1
    if node.rate_limit is not None:
        try:
            workers = workers_from_options(ctx.pipeline.options)
        except StrategyError as exc:
            raise ctx.fail(f"{path}.rate_limit", exc.problem) from None
    inc = node.incremental
    marks: dict[str, Any] = {}
    if inc is not None:
        try:
            marks = read_marks(inc.checkpoint)
        except CheckpointError as exc:
            raise ctx.fail(f"{path}.incremental.checkpoint", str(exc)) from None
    endpoints = [
        Endpoint(dataset_uri(u), u, marks.get(dataset_uri(u), inc.start if inc else None))
        for u in node.urls()
    ]
    fields = [SourceField(n, f.path, f.type) for n, f in node.source_fields().items()]
    p = node.pagination
    read = ReadHttp(
        endpoints,
        source_name=node.name,
        fields=fields,
        records=node.records,
        pagination=Pagination(
            p.style,
            p.size,
            p.page_param,
            p.start_page,
            p.size_param,
            p.offset_param,
            p.cursor_param,
            p.cursor_path,
            p.max_pages,
        ),
        headers=node.headers,
        since_param=inc.param if inc else None,
        mark_field=inc.field if inc else None,
        **client_options(node, ctx, path, workers),
    )
    outputs = ctx.pipeline | node.name >> read
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)

    def schema() -> Any:
        import pyarrow as pa

        from transforms.coerce import ARROW_TYPES

        return pa.schema([(f.name, ARROW_TYPES[f.type]) for f in fields])

    for endpoint in endpoints:
        ctx.inputs.append(ctx.dataset(node.name, "source", endpoint.uri, "http", schema=schema))
    if inc is not None:
        kind = {f.name: f.type for f in fields}[inc.field]

        def commit(result: Any) -> None:
            found = high_water_marks(result, node.name)
            if found:
                new = {uri: from_metric(value, kind) for uri, value in found.items()}
                write_marks(inc.checkpoint, new, run_id=ctx.run_id)

        ctx.after_publish.append(commit)


def known_fields(node: HttpSourceSpec) -> list[str]:
    return list(node.fields)


KIND = Kind("source", HttpSourceSpec, build, known_fields=known_fields)
