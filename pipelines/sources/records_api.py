"""The ``records_api`` source: an Airtable-like records API's changes since a high-water mark.

It reads ``{url}/v0/{base}/{table}`` page by page (the answer's ``offset`` token sent back),
``?modified_since=<mark time>`` (the API's filter is inclusive) and, with ``deletes: true``,
``include_deleted=true`` (tombstones ``{id, deleted, modifiedTime}``), through the ``http``
source's reader (:class:`transforms.http_source.ReadHttp`: the job-wide rate limit, retries
with ``Retry-After``, the breaker, credentials). Each record becomes a row: ``id_column`` the
API id, ``modified_column`` its ``modifiedTime``, ``deleted_column`` true for tombstones, the
``key_column`` the record's ``external_id`` field when it has one (a record the sync created
from a database row) else its id, and one column per ``fields`` entry.

Records at or before the committed mark ``(mark_time, mark_id)`` are dropped and counted as
the source's filtered rows (the API's inclusive filter sends back the mark's millisecond), so a change is new when
``(modifiedTime, id) > mark``. The committed mark is read when the run starts
(:class:`connectors.sync_state.ReadMark`: the listing's endpoint, with its
``modified_since``, is made from it, and :class:`transforms.records_api_read.RecordRows`
takes it as a side input), never while the graph is built, so planning and translating
need no database. The mark of the
greatest ``(modifiedTime, id)`` read is staged in the state table and committed by the
driver after the outputs are published, as the ``postgres`` source does, so a killed run is
read again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel
from pipelines.steps.http import AuthSpec, BreakerSpec, RetrySpec
from pipelines.steps.postgres import PostgresConnectionSpec, check_table_name
from pipelines.steps.reconcile import FieldType

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class ApiFieldSpec(SpecModel):
    """One mapped API field: its name in the API's ``fields`` and its type."""

    field: str = Field(min_length=1)
    type: FieldType = "string"


class RecordsApiSpec(SpecModel):
    """What the records API source and sink share: where the table is and how to call it."""

    name: Name
    url: str = Field(description="The API's base URL, http(s)://host:port.")
    base: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    table: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    fields: dict[str, ApiFieldSpec | str] = Field(
        description="Column -> API field (a string field of that name) or {field, type}."
    )
    key_column: str = Field(default="record_id", pattern=_IDENTIFIER)
    id_column: str = Field(default="api_id", pattern=_IDENTIFIER)
    external_id: str = Field(
        default="sync_key",
        description="The API field holding a record's key when the sync created it from the "
        "other side (its merge field: re-sent creates update instead of duplicating).",
    )
    deleted_column: str | None = Field(default=None, pattern=_IDENTIFIER)
    auth: AuthSpec | None = None
    timeout: float = Field(default=10.0, gt=0)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    rate_limit: float = Field(
        default=4, gt=0, description="Requests/s for the whole job, retries included."
    )

    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/v0/{self.base}/{self.table}"

    def mapped(self) -> dict[str, ApiFieldSpec]:
        return {
            c: f if isinstance(f, ApiFieldSpec) else ApiFieldSpec(field=f)
            for c, f in self.fields.items()
        }

    @model_validator(mode="after")
    def _columns(self) -> RecordsApiSpec:
        import re
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: {self.url!r} is not an http(s)://host:port URL")
        for column in self.fields:
            if not re.match(_IDENTIFIER, column):
                raise ValueError(f"fields: '{column}' is not a plain column name")
        own = [self.key_column, self.id_column, self.deleted_column]
        clash = [c for c in own if c and c in self.fields]
        if clash or len({c for c in own if c}) != len([c for c in own if c]):
            raise ValueError(f"fields: column(s) {clash or own} named twice")
        return self


class StateSpec(SpecModel):
    """Where the sync's high-water marks are kept (see :mod:`connectors.sync_state`)."""

    connection: PostgresConnectionSpec
    table: str = Field(default="public.beamwright_sync_state")
    sync: Name
    side: str = "api"

    @model_validator(mode="after")
    def _table(self) -> StateSpec:
        check_table_name(self.table)
        return self


class RecordsApiSourceSpec(RecordsApiSpec):
    """An Airtable-like API's records changed since the committed mark."""

    type: Literal["records_api"]
    modified_column: str = Field(default="api_modified_at", pattern=_IDENTIFIER)
    page_size: int = Field(default=100, ge=1, le=100)
    state: StateSpec | None = Field(
        default=None, description="The mark's state table (default: read everything)."
    )


def build(node: RecordsApiSourceSpec, ctx: Any, path: str) -> None:
    import apache_beam as beam

    from connectors.http.paging import Pagination
    from connectors.sync_state import ReadMark, StageMark, SyncState
    from pipelines.sources.http import client_options
    from pipelines.steps.postgres import connection_settings
    from transforms.call_strategies import StrategyError, workers_from_options
    from transforms.http_source import Endpoint, ReadHttp, SourceField
    from transforms.records_api_read import EXTERNAL, RecordRows, endpoint_after

    try:
        workers = workers_from_options(ctx.pipeline.options)
    except StrategyError as exc:
        raise ctx.fail(f"{path}.rate_limit", exc.problem) from None
    state = side = None
    if node.state is not None:
        settings = connection_settings(node.state.connection, f"{path}.state")
        state, side = SyncState(settings, node.state.table, node.state.sync), node.state.side
    uri = node.endpoint()
    url = uri + ("?include_deleted=true" if node.deleted_column else "")
    fields = [
        SourceField(node.id_column, "id", "string"),
        SourceField(node.modified_column, "modifiedTime", "timestamp"),
        SourceField(EXTERNAL, f"fields.{node.external_id}", "string"),
        *(SourceField(c, f"fields.{f.field}", f.type) for c, f in node.mapped().items()),
    ]
    if node.deleted_column:
        fields.append(SourceField(node.deleted_column, "deleted", "bool"))
    read = ReadHttp(
        source_name=node.name,
        fields=fields,
        records="records",
        pagination=Pagination(
            "cursor",
            node.page_size,
            size_param="pageSize",
            cursor_param="offset",
            cursor_path="offset",
        ),
        since_param="modified_since",
        count_rows_out=False,  # RecordRows counts what leaves the source (see there)
        **client_options(node, ctx, path, workers),
    )
    mark = ctx.pipeline | f"{node.name}/CommittedMark" >> ReadMark(state, side or "")
    endpoint = mark | f"{node.name}/Endpoint" >> beam.Map(endpoint_after, Endpoint(uri, url))
    outputs = endpoint | node.name >> read
    rows = outputs.rows | f"{node.name}/Records" >> beam.Map(
        RecordRows(
            node.name, node.key_column, node.id_column, node.modified_column, node.deleted_column
        ),
        beam.pvalue.AsSingleton(mark),
    )
    if state is not None:
        _ = rows | f"{node.name}/Mark" >> StageMark(
            state, side, ctx.run_id, node.modified_column, node.id_column
        )
        ctx.after_publish.append(lambda _result: state.commit(ctx.run_id))
    ctx.outputs[node.name] = rows
    ctx.dead_letters.append(outputs.dead_letters)

    def schema() -> Any:
        import pyarrow as pa

        from transforms.coerce import ARROW_TYPES

        names = [node.key_column] + [f.name for f in fields if f.name != EXTERNAL]
        types = {f.name: f.type for f in fields}
        return pa.schema([(n, ARROW_TYPES[types.get(n, "string")]) for n in names])

    ctx.inputs.append(ctx.dataset(node.name, "source", uri, "http", schema=schema))


def known_fields(node: RecordsApiSourceSpec) -> list[str]:
    own = [node.key_column, node.id_column, node.modified_column, node.deleted_column]
    return [c for c in own if c] + list(node.fields)


KIND = Kind("source", RecordsApiSourceSpec, build, known_fields=known_fields)
