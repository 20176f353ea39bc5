"""The ``records_api`` sink: rows created, updated or deleted in an Airtable-like records API.

Batches of at most 10 records per request under the job-wide rate limit (shared by name with
a ``records_api`` source of the same API: ``limiter``), creates matched on an external-id field
so a re-run after a crash cannot duplicate, deletes for rows whose ``deleted_column`` is true;
refused records are dead letters with the row as it came. See
:mod:`transforms.records_api_write`. ``write_back`` upserts the API's id and modified time of
every record written (and ``passthrough`` columns) into a PostgreSQL table by key: the id
mapping of created records, and what the sync wrote (its echo, recognised by the next sync).

Like the ``postgres`` sink, the writes cannot be staged: they are applied as the run goes, and
are idempotent so a retried bundle or re-run rewrites the same values.

Lineage: the API table is an output dataset (``http://host:port``, path
``/v0/{base}/{table}``), with the mapped fields as its schema.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.sources.records_api import RecordsApiSpec
from pipelines.spec_base import Name, SinkBase, SpecModel
from pipelines.steps.postgres import PostgresConnectionSpec, check_table_name

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class WriteBackSpec(SpecModel):
    """Where the API's ids and modified times of the records written go."""

    connection: PostgresConnectionSpec
    table: str
    key: str = Field(default="record_id", pattern=_IDENTIFIER, description="Its key column.")
    id_column: str = Field(default="api_id", pattern=_IDENTIFIER)
    modified_column: str | None = Field(default="api_modified_at", pattern=_IDENTIFIER)
    passthrough: list[str] = Field(
        default_factory=list, description="Input columns written back as they are."
    )

    @model_validator(mode="after")
    def _names(self) -> WriteBackSpec:
        check_table_name(self.table)
        for name in self.passthrough:
            if not re.match(_IDENTIFIER, name):
                raise ValueError(f"passthrough: '{name}' is not a plain column name")
        return self


class RecordsApiSinkSpec(RecordsApiSpec, SinkBase):
    """Create, update or delete records in an Airtable-like API, 10 per request."""

    type: Literal["records_api"]
    name: Name
    batch_size: int = Field(default=10, ge=1, le=10, description="Records per request.")
    limiter: Name | None = Field(
        default=None,
        description="Share the rate limit with this node (a records_api source of the same "
        "API in this job), so the job's requests together stay under it.",
    )
    write_back: WriteBackSpec | None = None


def build(node: RecordsApiSinkSpec, ctx: Any, path: str, rows: Any) -> None:
    from connectors.http.breaker import BreakerConfig
    from connectors.http.retry import RetryPolicy
    from connectors.postgres import PostgresConfigError
    from connectors.postgres_upsert import UpsertWriter
    from pipelines.steps.http import open_auth
    from pipelines.steps.postgres import connection_settings
    from transforms.call_strategies import StrategyError, workers_from_options
    from transforms.records_api_write import RecordsApiWriter, WriteBack, WriteRecordsApi

    try:
        workers = workers_from_options(ctx.pipeline.options)
    except StrategyError as exc:
        raise ctx.fail(f"{path}.rate_limit", exc.problem) from None
    back = None
    wb = node.write_back
    if wb is not None:
        settings = connection_settings(wb.connection, f"{path}.write_back")
        try:
            upsert = UpsertWriter(settings, wb.table, [wb.key])
        except PostgresConfigError as exc:
            raise ctx.fail(f"{path}.write_back", exc.problem) from None
        back = WriteBack(upsert, wb.key, wb.id_column, wb.modified_column, tuple(wb.passthrough))
    auth, credentials = open_auth(node.auth, node.timeout, path)
    try:
        writer = RecordsApiWriter(
            url=node.endpoint(),
            fields={c: f.field for c, f in node.mapped().items()},
            id_column=node.id_column,
            key_column=node.key_column,
            external_id=node.external_id,
            deleted_column=node.deleted_column,
            rate_limit=node.rate_limit,
            limiter_name=node.limiter or node.name,
            workers=workers,
            auth=auth,
            credentials=credentials,
            timeout=node.timeout,
            retry=RetryPolicy(**node.retry.model_dump()),
            breaker=BreakerConfig(**node.breaker.model_dump()),
            write_back=back,
            batch_size=node.batch_size,
        )
    except ValueError as exc:
        raise ctx.fail(path, str(exc)) from None
    outputs = rows | node.name >> WriteRecordsApi(writer, sink_name=node.name, run_id=ctx.run_id)
    ctx.dead_letters.append(outputs.dead_letters)

    def schema() -> Any:
        import pyarrow as pa

        from transforms.coerce import ARROW_TYPES

        return pa.schema([(f.field, ARROW_TYPES[f.type]) for f in node.mapped().values()])

    ctx.datasets_out.append(ctx.dataset(node.name, "sink", node.endpoint(), "http", schema=schema))


def lineage(node: RecordsApiSinkSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    own = [node.key_column, node.id_column, node.deleted_column]
    walk.read(f"{path}.fields", [*(c for c in own if c), *node.fields], state)
    return state


KIND = Kind("sink", RecordsApiSinkSpec, build, lineage=lineage)
