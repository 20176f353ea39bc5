"""The ``reconcile`` step: a records API's changes and a PostgreSQL table's changes keyed
together (``CoGroupByKey``), each key turned into the write that makes both sides agree, with
a conflict policy for records both sides changed since the last sync.

``input`` is the API side's changes (a ``records_api`` source), ``target`` the table's (a
``postgres`` source with an echo column; read like a lookup's table, not flattened into the
input). See :mod:`transforms.reconcile` for the decisions. The output rows carry
``sync_action`` (``db_create``, ``db_update``, ``db_delete``, ``db_ack``, ``api_create``,
``api_update``, ``api_delete``, ``conflict``): filters route each to its sink. The table's
current rows of keys only the API changed are read from ``table`` at ``connection`` (one query
per batch), which is also an input dataset in lineage.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import Name, StepBase
from pipelines.steps.postgres import (
    PostgresConnectionSpec,
    check_table_name,
    connection_settings,
    table_dataset_uri,
)

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"
FieldType = Literal["string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp"]


class ReconcileStepSpec(StepBase):
    """Key both sides' changes together and decide each record's writes and conflicts."""

    # the table is read only for keys the API alone changed (see the module docstring): the
    # run-start server check (pipelines.steps.postgres.check_reachable) leaves it to the run
    server_needed_at_start: ClassVar[bool] = False

    type: Literal["reconcile"]
    target: Name = Field(description="The database side's changes (a source name).")
    connection: PostgresConnectionSpec
    table: str = Field(description="The synced table (its current rows are read by key).")
    policy: Literal["source_wins", "target_wins", "newest_wins", "manual"] = Field(
        default="manual",
        description="Records changed on both sides: the API wins, the database wins, the later "
        "change wins, or both versions go to a conflict row and neither side is written.",
    )
    fields: dict[str, FieldType] = Field(min_length=1, description="Mapped column -> type.")
    key: str = Field(default="record_id", pattern=_IDENTIFIER)
    id_column: str = Field(default="api_id", pattern=_IDENTIFIER)
    api_modified: str = Field(default="api_modified_at", pattern=_IDENTIFIER)
    modified: str = Field(default="modified_at", pattern=_IDENTIFIER)
    echo_column: str = Field(default="synced_at", pattern=_IDENTIFIER)
    deleted: str | None = Field(
        default="deleted",
        pattern=_IDENTIFIER,
        description="The soft-delete flag of both sides (null: deletes are not synced).",
    )

    @model_validator(mode="after")
    def _names(self) -> ReconcileStepSpec:
        import re

        check_table_name(self.table)
        own = [self.key, self.id_column, self.api_modified, self.modified]
        own += [self.echo_column, *([self.deleted] if self.deleted else [])]
        for name in self.fields:
            if not re.match(_IDENTIFIER, name):
                raise ValueError(f"fields: '{name}' is not a plain column name")
        every = own + list(self.fields)
        if len(set(every)) != len(every):
            raise ValueError("a column is named twice among the key, times, flag and fields")
        return self

    def columns(self) -> Any:
        from transforms.reconcile import SyncColumns

        return SyncColumns(
            self.key,
            self.id_column,
            self.api_modified,
            self.modified,
            self.echo_column,
            self.deleted,
            tuple(self.fields.items()),
        )


def build(node: ReconcileStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from connectors.postgres import PostgresConfigError, TableReader, arrow_schema
    from transforms.reconcile import Reconcile

    if node.target not in ctx.outputs:
        raise ctx.fail(f"{path}.target", f"'{node.target}' is not a source or earlier step")
    settings = connection_settings(node.connection, path)
    flag = [node.deleted] if node.deleted else []
    wanted = [node.id_column, node.api_modified, *flag, *node.fields]
    try:
        reader = TableReader(settings, node.table, [node.key], wanted)
    except PostgresConfigError as exc:
        raise ctx.fail(path, exc.problem) from None
    from functools import partial

    ctx.inputs.append(
        ctx.dataset(
            node.name,
            "lookup",
            table_dataset_uri(node.connection, node.table),
            "postgres",
            schema=partial(arrow_schema, settings, node.table),
        )
    )
    return (rows, ctx.outputs[node.target]) | node.name >> Reconcile(
        node.columns(), node.policy, reader, step_name=node.name, run_id=ctx.run_id
    )


def lineage(node: ReconcileStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.reconcile import ACTION, API_VERSION, DB_VERSION, RESOLUTION

    target = walk.state(node.target)
    out = state.copy()
    walk.read(f"{path}.key", [node.key], state)
    walk.read(f"{path}.key (in {node.target})", [node.key], target)
    for name in [node.modified, node.echo_column]:
        out.fields[name] = list(target.fields.get(name, []))
    for name in node.fields:  # a field comes from either side, as decided per record
        merged = [*state.fields.get(name, []), *target.fields.get(name, [])]
        out.fields[name] = merged
    for name in (ACTION, RESOLUTION, API_VERSION, DB_VERSION):
        out.fields[name] = []
    join = Step("INDIRECT", "JOIN", f"{node.name}: both sides keyed on {node.key}")
    depend(out, [node.key], join)
    return out


def side_inputs(node: ReconcileStepSpec) -> list[str]:
    return [node.target]


KIND = Kind(
    "step",
    ReconcileStepSpec,
    build,
    lineage=lineage,
    side_inputs=side_inputs,
    counts_side_inputs=True,
)
