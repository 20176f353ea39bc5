"""The ``postgres`` step: enrich rows from a PostgreSQL table, one query per batch.

See :mod:`transforms.postgres_lookup` for what it does at run time and
:mod:`connectors.postgres` for the connection pool and the column types.

Lineage: the table is an input dataset of the run, named as OpenLineage names PostgreSQL
tables: namespace ``postgres://{host}:{port}``, name ``{database}.{schema}.{table}``. The step
registers it while the graph is built (``ctx.inputs``, kind ``lookup``: read by a step, not a
source node, so it gets no input statistics or data-quality assertions of the rows it
enriches). Its schema is asked from the server when lineage is gathered, never failing the
run. Column lineage: added fields come from the table (DIRECT, IDENTITY); the key fields of
both sides are row-level (INDIRECT, JOIN) dependencies, and a FILTER one too when rows without
a match are rejected or dropped.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lineage.columns import FieldState, Origin, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import SecretSpec, SpecModel, StepBase

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"
_TABLE_HINT = "write schema.table (or table, in schema public) with letters, digits, _ and $"


class PostgresConnectionSpec(SpecModel):
    """Where the table is. The password is a secret reference, resolved on the workers."""

    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: SecretSpec | None = Field(
        default=None, description="{env: VAR}, {file: PATH} or {store: {...}}; never the value."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)

    def needed_extras(self) -> tuple[str, ...]:
        return ("postgres",)  # psycopg and its pool


def check_table_name(value: str) -> str:
    """``value`` if it is ``schema.table`` or ``table`` of plain identifiers (it is quoted as
    such in SQL and named so in lineage), else a ValueError saying how to write it."""
    import re

    parts = value.split(".")
    if len(parts) > 2 or not all(re.match(_IDENTIFIER, p) for p in parts):
        raise ValueError(f"'{value}' is not a table name; {_TABLE_HINT}")
    return value


def table_dataset_uri(connection: PostgresConnectionSpec, table: str) -> str:
    """``postgres://host:port/database.schema.table`` (schema ``public`` when ``table`` names
    none): what :func:`lineage.naming.dataset_name` splits into OpenLineage's namespace and
    name for a PostgreSQL table, read by the lookup step or written by the sink."""
    c = connection
    schema, _, name = table.rpartition(".")
    return f"postgres://{c.host}:{c.port}/{c.database}.{schema or 'public'}.{name}"


def connection_settings(connection: PostgresConnectionSpec, path: str) -> Any:
    """The :class:`connectors.postgres.PostgresSettings` for ``connection`` (the node at
    ``path``), its password reference resolved as the workers will. Typed ``Any`` so that
    spec modules need not import the connector (and pyarrow) to be loaded."""
    from connectors.postgres import PostgresSettings
    from pipelines.build import resolve_secret_ref

    c = connection
    return PostgresSettings(
        host=c.host,
        port=c.port,
        dbname=c.database,
        user=c.user,
        password=resolve_secret_ref(c.password, f"{path}.connection.password"),
        connect_timeout_s=c.connect_timeout_s,
    )


def connections(spec: Any) -> list[tuple[str, PostgresConnectionSpec]]:
    """(spec path, connection) of every PostgreSQL connection a pipeline spec names, in any
    node (a source, a step, a sink, a sync's state table), each server once; not those of a
    node that connects only for some data (``server_needed_at_start = False``: reconcile)."""
    found: dict[tuple[str, int, str, str], tuple[str, PostgresConnectionSpec]] = {}

    def visit(value: Any, path: str) -> None:
        if isinstance(value, PostgresConnectionSpec):
            found.setdefault((value.host, value.port, value.database, value.user), (path, value))
        elif isinstance(value, SpecModel):
            for name in type(value).model_fields:
                visit(getattr(value, name), f"{path}.{name}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                visit(item, f"{path}[{i}]")

    for role in ("sources", "steps", "sinks"):
        for i, node in enumerate(getattr(spec, role)):
            if getattr(node, "server_needed_at_start", True):
                visit(node, f"{role}[{i}]")
    return list(found.values())


def check_reachable(spec: Any) -> None:
    """Run start, on the local runner (its workers are this machine): one plain connection to
    each PostgreSQL server the spec names, before any pool is made or anything is claimed.

    Why: a pool retries an unreachable server in the background and every caller retries the
    pool, so ``run`` took 44 s and 24 warnings to fail; now it fails in at most
    ``connectors.postgres.PREFLIGHT_TIMEOUT_S`` seconds with one line. Remote runners' workers
    may reach a server the launching machine cannot, so they are not checked here.

    Raises:
        PostgresError: path + problem + hint for the first server that does not connect.
    """
    from connectors.postgres import PostgresError, unreachable

    for path, connection in connections(spec):
        settings = connection_settings(connection, path.rsplit(".", 1)[0])
        problem = unreachable(settings)
        if problem is not None:
            raise PostgresError(
                f"cannot connect to PostgreSQL at {settings.address}: {problem}",
                where=path,
                hint="start the server or correct host, port, database, user and password; "
                "nothing has run",
            )


class PostgresStepSpec(StepBase):
    """Enrich rows from a PostgreSQL table joined on key fields (one query per batch)."""

    type: Literal["postgres"]
    connection: PostgresConnectionSpec
    table: str = Field(description="schema.table (or table, in schema public).")
    on: str | list[str] = Field(description="Key field(s), named alike in the rows and the table.")
    fields: list[str] | None = Field(
        default=None, description="Table columns to add (default: all but the keys)."
    )
    prefix: str = ""
    on_missing: Literal["keep", "reject", "drop"] = Field(
        default="keep",
        description="keep: add nulls; reject: dead-letter the row; drop: count as filtered.",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Further attempts after a connection failure, with doubling backoff; then "
        "the batch fails its bundle (the runner may retry it).",
    )

    @property
    def keys(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return check_table_name(value)

    @model_validator(mode="after")
    def _columns(self) -> PostgresStepSpec:
        import re

        if not self.keys:
            raise ValueError("'on' needs at least one key field")
        if self.fields is not None and not self.fields:
            raise ValueError("'fields' is empty; list the columns to add, or leave it out for all")
        for where, names in (("on", self.keys), ("fields", self.fields or [])):
            for name in names:
                if not re.match(_IDENTIFIER, name):
                    raise ValueError(
                        f"{where}: '{name}' is not a plain column name; "
                        "use letters, digits, _ and $"
                    )
            if len(set(names)) != len(names):
                raise ValueError(f"{where}: a column is named twice")
        both = sorted(set(self.keys) & set(self.fields or []))
        if both:
            raise ValueError(f"fields {both} are keys; keys are not added again, drop them")
        return self

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


def dataset_uri(node: PostgresStepSpec) -> str:
    """``postgres://host:port/database.schema.table``: what :func:`lineage.naming.dataset_name`
    splits into OpenLineage's namespace and name for a PostgreSQL table."""
    return table_dataset_uri(node.connection, node.table)


def build(node: PostgresStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from connectors.postgres import arrow_schema
    from transforms.postgres_lookup import PostgresLookup

    settings = connection_settings(node.connection, path)
    columns = None if node.fields is None else [*node.keys, *node.fields]
    schema = partial(arrow_schema, settings, node.table, columns)
    ctx.inputs.append(
        ctx.dataset(node.name, "lookup", dataset_uri(node), "postgres", schema=schema)
    )
    return rows | node.name >> PostgresLookup(
        step_name=node.name,
        run_id=ctx.run_id,
        settings=settings,
        table=node.table,
        keys=node.keys,
        fields=node.fields,
        prefix=node.prefix,
        on_missing=node.on_missing,
        retries=node.retries,
    )


def lineage(node: PostgresStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    table = walk.state(node.name)  # the table's columns, when lineage could read its schema
    out = state.copy()
    walk.read(f"{path}.on", node.keys, state)
    if node.fields is None and not table.fields:
        out.complete = False  # it adds every column of the table, and those are not known
    wanted = node.fields or [f for f in table.fields if f not in node.keys]
    keys = "+".join(node.keys)
    added = Step("DIRECT", "IDENTITY", f"looked up from {node.table} on {keys}")
    for name in wanted:
        out.fields[node.prefix + name] = [Origin(node.name, name).then(added)]
    join = Step("INDIRECT", "JOIN", f"{node.name}: join on {keys}")
    depend(out, node.keys, join)
    for key in node.keys:
        dep = Origin(node.name, key).then(join)
        if dep not in out.dataset:
            out.dataset.append(dep)
    if node.on_missing != "keep":
        depend(out, node.keys, Step("INDIRECT", "FILTER", f"{node.name}: rows without a match"))
    return out


KIND = Kind("step", PostgresStepSpec, build, lineage=lineage)
