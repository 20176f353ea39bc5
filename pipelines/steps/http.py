"""The ``http`` step: enrich rows from an HTTP API (per-row calls or a bulk endpoint).

Column lineage: each added field comes from the API's answer (DIRECT, TRANSFORMATION: picked by
a JSON path and cast) and depends on the row fields the request is built from (INDIRECT, JOIN:
they choose which record answers); a FILTER dependency too when unknown rows are rejected or
dropped. The API is an input dataset named by its base URL (namespace ``http://host:port``,
name the path before the first {field}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Origin, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import FieldType, SecretSpec, SpecModel, StepBase, StrategySpec


class ResponseField(SpecModel):
    path: str = Field(description='JSON path in the answer: a.b, tags[0], "odd.key".x')
    type: FieldType = "string"


def response_fields(fields: Mapping[str, ResponseField | str]) -> dict[str, ResponseField]:
    """A spec's ``fields`` with the short form (a bare path: a string column) spelled out."""
    return {
        name: ResponseField(path=spec) if isinstance(spec, str) else spec
        for name, spec in fields.items()
    }


class BulkSpec(SpecModel):
    """A bulk endpoint: one POST carries up to ``size`` ids in its JSON body."""

    id_field: str = Field(description="The row field whose value is sent.")
    size: int = Field(default=500, ge=1, le=100_000)
    ids_param: str = Field(default="ids", description="Body key holding the list of ids.")
    items: str = Field(default="items", description="JSON path of the list of records.")
    item_id: str = Field(default="id", description="JSON path of a record's id.")


class ReportSpec(SpecModel):
    """The rotation service's inbox, where rejected credential versions are reported."""

    inbox: str
    key: SecretSpec


class AuthSpec(SpecModel):
    type: Literal["bearer", "basic", "api_key", "oauth2"]
    secret: SecretSpec = Field(
        description="The token, password, API key or OAuth2 client secret ('env' or 'store'; "
        "rotations are followed: current, then previous during the overlap)."
    )
    username: str = ""
    header: str = Field(default="X-API-Key", description="api_key: the header.")
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    refresh_interval: float = Field(default=60.0, gt=0, description="Store reads, at most.")
    auth_wait: float | None = Field(
        default=None, gt=0, description="Seconds to keep retrying when every version is rejected."
    )
    report: ReportSpec | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuthSpec:
        if self.secret.file is not None:
            raise ValueError(
                "secret: use 'env' or 'store' (a plain file has no versions to rotate)"
            )
        if self.type == "oauth2" and not (self.token_url and self.client_id):
            raise ValueError("oauth2 needs token_url and client_id")
        if self.type == "basic" and not self.username:
            raise ValueError("basic needs a username")
        return self

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """Raise ValueError if fixed ``headers`` set one this auth sets: credentials come only
        from the secret reference, never written into the spec."""
        secret_headers = {"authorization", self.header.lower()}
        clash = [h for h in headers if h.lower() in secret_headers]
        if clash:
            raise ValueError(
                f"headers.{clash[0]} is set by 'auth'; credentials never go in headers"
            )


class RetrySpec(SpecModel):
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff: float = Field(default=0.05, ge=0, description="First wait's bound; doubles.")
    max_backoff: float = Field(default=5.0, ge=0)
    max_retry_after: float = Field(default=30.0, ge=0)


class BreakerSpec(SpecModel):
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)


class CacheSpec(SpecModel):
    """memory: a per-worker TTL LRU cache; redis: one cache for every worker (and later runs
    within ``ttl``) at ``url``."""

    type: Literal["memory", "redis"] = "memory"
    max_entries: int = Field(default=10_000, ge=1, description="memory: entries per worker.")
    ttl: float = Field(default=300.0, gt=0, description="Seconds an answer is reused.")
    url: str | None = Field(default=None, description="redis: redis://host:port/db.")
    prefix: str = Field(default="beamwright:http:", description="redis: key prefix.")

    def needed_extras(self) -> tuple[str, ...]:
        return ("redis",) if self.type == "redis" else ()

    @model_validator(mode="after")
    def _redis_url(self) -> CacheSpec:
        if self.type == "redis" and not self.url:
            raise ValueError("a redis cache needs a 'url' (redis://host:port/db)")
        if self.type == "redis" and "@" in (self.url or ""):
            raise ValueError("no password in the redis url: the spec is not a secret store")
        return self


class HttpStepSpec(StepBase):
    """Enrich rows from an HTTP API: URL/query/headers/body templated from row fields."""

    type: Literal["http"]
    url: str = Field(description="http(s)://host:port/path; {field} placeholders in the path.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] | None = None
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    fields: dict[str, ResponseField | str] = Field(
        min_length=1, description="Column -> JSON path (a string: a string column) or {path, type}."
    )
    batch: BulkSpec | None = None
    auth: AuthSpec | None = None
    timeout: float = Field(default=10.0, gt=0)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    retry_non_idempotent: bool = False
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    cache: CacheSpec | None = Field(default_factory=CacheSpec)
    strategy: StrategySpec = Field(default_factory=lambda: StrategySpec(max_concurrency=48))
    on_missing: Literal["keep", "reject", "drop"] = Field(
        default="keep",
        description="Rows the API does not know (404, absent from a bulk answer): keep (nulls), "
        "reject (dead letters) or drop (filtered).",
    )

    @model_validator(mode="after")
    def _check(self) -> HttpStepSpec:
        from connectors.http import jsonpath
        from connectors.http.template import RequestTemplate

        template = RequestTemplate(
            self.url,
            method=self.method or "GET",
            query=self.query,
            headers=self.headers,
            body=self.body,
        )
        if self.batch is not None and template.fields():
            raise ValueError("with 'batch' the ids go in the body: no {field} placeholders")
        for name, spec in self.response_fields().items():
            try:
                jsonpath.parse(spec.path)
            except ValueError as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        if self.auth is not None:
            self.auth.check_headers(self.headers)
        return self

    def response_fields(self) -> dict[str, ResponseField]:
        return response_fields(self.fields)

    def request_fields(self) -> list[str]:
        from connectors.http.template import RequestTemplate

        if self.batch is not None:
            return [self.batch.id_field]
        return RequestTemplate(
            self.url, query=self.query, headers=self.headers, body=self.body
        ).fields()


def dataset_uri(node: HttpStepSpec) -> str:
    """The API's base URL plus the path before the first {field} (query dropped):
    :func:`lineage.naming.dataset_name` makes it namespace ``http://host:port``, name the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(node.url)
    path = parts.path.split("{", 1)[0].rstrip("/") or "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def open_auth(auth: AuthSpec | None, timeout: float, path: str) -> tuple[Any, Any]:
    """The request auth scheme and the credential service's helper for ``auth`` (both None
    without it), as the ``http`` step and the ``http`` source use them; the secret reference
    is resolved now so a missing secret fails the build, not a worker."""
    if auth is None:
        return None, None
    from connectors.http.auth import AuthScheme

    scheme = AuthScheme(
        auth.type,
        auth.username,
        auth.header,
        auth.token_url,
        auth.client_id,
        auth.scope,
        timeout=timeout,
    )
    return scheme, _credentials(auth, path)


def _credentials(auth: AuthSpec, path: str) -> Any:
    from pipelines.build import resolve_secret_ref
    from transforms.credentials import Credentials

    resolve_secret_ref(auth.secret, f"{path}.auth.secret")  # fails now if it is not there
    secret = auth.secret
    if secret.env is not None:
        source: dict[str, Any] = {"type": "env"}
        name = secret.env
    else:
        source = dict(secret.store or {})
        name = source.pop("name", None)
        source.pop("ref", None)
    reporter = None
    if auth.report is not None:
        from connectors.secrets.reporting import InboxReporter

        key = resolve_secret_ref(auth.report.key, f"{path}.auth.report.key")
        reporter = InboxReporter(auth.report.inbox, key)
    return Credentials(
        source,
        name,
        refresh_interval=auth.refresh_interval,
        reporter=reporter,
        auth_wait=auth.auth_wait,
        max_staleness=max(86400.0, auth.refresh_interval),
    )


def build(node: HttpStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from connectors.http.breaker import BreakerConfig
    from connectors.http.retry import RetryPolicy
    from transforms.call_strategies import StrategyConfig, StrategyError, workers_from_options
    from transforms.http_enrich import BulkConfig, CacheConfig, HttpEnrich, OutputField

    workers = 1
    if node.strategy.rate_limit is not None:
        try:
            workers = workers_from_options(ctx.pipeline.options)
        except StrategyError as exc:
            raise ctx.fail(f"{path}.strategy.rate_limit", exc.problem) from None
    fields = [OutputField(n, f.path, f.type) for n, f in node.response_fields().items()]
    auth, credentials = open_auth(node.auth, node.timeout, path)

    def schema() -> Any:
        import pyarrow as pa

        from transforms.coerce import ARROW_TYPES

        return pa.schema([(f.path, ARROW_TYPES[f.type]) for f in fields])

    ctx.inputs.append(ctx.dataset(node.name, "lookup", dataset_uri(node), "http", schema=schema))
    b = node.batch
    return rows | node.name >> HttpEnrich(
        step_name=node.name,
        run_id=ctx.run_id,
        url=node.url,
        method=node.method or ("POST" if b is not None else "GET"),
        query=node.query,
        headers=node.headers,
        body=node.body,
        fields=fields,
        bulk=BulkConfig(b.id_field, b.size, b.ids_param, b.items, b.item_id) if b else None,
        auth=auth,
        credentials=credentials,
        timeout=node.timeout,
        retry=RetryPolicy(
            **node.retry.model_dump(), retry_non_idempotent=node.retry_non_idempotent
        ),
        breaker=BreakerConfig(**node.breaker.model_dump()),
        cache=CacheConfig(**node.cache.model_dump()) if node.cache else None,
        strategy=StrategyConfig.from_mapping(node.strategy.model_dump()),
        workers=workers,
        on_missing=node.on_missing,
    )


def lineage(node: HttpStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    asked = node.request_fields()
    if node.batch is not None:
        walk.read(f"{path}.batch.id_field", asked, state)
    else:
        walk.read(f"{path}.url", asked, state)
    join = Step("INDIRECT", "JOIN", f"{node.name}: requested by {'+'.join(asked) or 'no field'}")
    requested = [o.then(join) for name in asked for o in state.fields.get(name.split(".")[0], [])]
    for name, spec in node.response_fields().items():
        picked = Step("DIRECT", "TRANSFORMATION", f"{spec.path} of the answer, as {spec.type}")
        out.fields[name] = [Origin(node.name, spec.path).then(picked), *requested]
    depend(out, asked, join)
    if node.on_missing != "keep":
        depend(out, asked, Step("INDIRECT", "FILTER", f"{node.name}: rows the API does not know"))
    return out


KIND = Kind("step", HttpStepSpec, build, lineage=lineage)
