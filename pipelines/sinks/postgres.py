"""The ``postgres`` sink: rows upserted into a PostgreSQL table by key, in batches.

See :mod:`connectors.postgres_upsert` for how (COPY into a staging table, then one
``INSERT ... ON CONFLICT (key) DO UPDATE`` per batch, in one transaction: idempotent when a
bundle is retried; ``concurrency`` batches at once, since one backend's CPU bounds a batch)
and :mod:`connectors.postgres_sink` for the Beam transform. The table's own column types
decide how values are read; rows PostgreSQL refuses are dead-lettered with its message (or
fail the run: ``on_failure: fail``). Like Kafka deliveries, upserts cannot be staged: they
are applied as the run goes.

Lineage: the table is an output dataset named as OpenLineage names PostgreSQL tables
(namespace ``postgres://host:port``, name ``database.schema.table``), its schema asked from the
server when lineage is gathered (never failing the run). The password is a secret reference,
resolved on the workers; it never reaches options, lineage or dead letters.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import SinkBase
from pipelines.steps.postgres import (
    PostgresConnectionSpec,
    check_table_name,
    connection_settings,
    table_dataset_uri,
)

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class PostgresSinkSpec(SinkBase):
    """Upsert rows into a PostgreSQL table by key (COPY + INSERT ... ON CONFLICT per batch)."""

    type: Literal["postgres"]
    connection: PostgresConnectionSpec
    table: str = Field(description="schema.table (or table, in schema public).")
    key: str | list[str] = Field(
        description="Key column(s): the table's primary key or a unique constraint."
    )
    on_failure: Literal["dead_letter", "fail"] = Field(
        default="dead_letter",
        description="Rows PostgreSQL refuses: dead-letter them, or fail the run.",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Further attempts after a connection failure, with doubling backoff.",
    )
    concurrency: int = Field(
        default=2,
        ge=1,
        le=4,
        description="Batches upserted at once, each on its own connection (a batch sharing a "
        "key with one in flight waits for it, so the later row of a key still wins).",
    )

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return check_table_name(value)

    @model_validator(mode="after")
    def _key_columns(self) -> PostgresSinkSpec:
        if not self.keys:
            raise ValueError("'key' needs at least one column")
        for name in self.keys:
            if not re.match(_IDENTIFIER, name):
                raise ValueError(f"key: '{name}' is not a plain column name")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("key: a column is named twice")
        return self


def dataset_uri(node: PostgresSinkSpec) -> str:
    """``postgres://host:port/database.schema.table`` (see :func:`lineage.naming.dataset_name`)."""
    return table_dataset_uri(node.connection, node.table)


def build(node: PostgresSinkSpec, ctx: Any, path: str, rows: Any) -> None:
    from connectors.postgres import PostgresConfigError, arrow_schema
    from connectors.postgres_sink import WritePostgres
    from connectors.postgres_upsert import UpsertWriter

    settings = connection_settings(node.connection, path)
    try:
        writer = UpsertWriter(settings, node.table, node.keys, retries=node.retries)
        write = WritePostgres(
            writer,
            sink_name=node.name,
            on_failure=node.on_failure,
            run_id=ctx.run_id,
            concurrency=node.concurrency,
        )
    except (PostgresConfigError, ValueError) as exc:
        raise ctx.fail(path, str(exc)) from None
    outputs = rows | node.name >> write
    ctx.dead_letters.append(outputs.dead_letters)
    schema = partial(arrow_schema, settings, node.table)
    ctx.datasets_out.append(
        ctx.dataset(node.name, "sink", dataset_uri(node), "postgres", schema=schema)
    )


def lineage(node: PostgresSinkSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    walk.read(f"{path}.key", node.keys, state)
    return state


KIND = Kind("sink", PostgresSinkSpec, build, lineage=lineage)
