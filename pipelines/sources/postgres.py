"""The ``postgres`` source: a PostgreSQL table read in order, incrementally by a high-water mark.

With ``incremental``, only rows with ``(modified, key) > (mark_time, mark_id)`` are read,
ordered by ``(modified, key)`` in keyset pages (:mod:`connectors.postgres_changes`); the mark
is the ``(modified, key)`` of the last row scanned, kept in a state table in the same database
(:mod:`connectors.sync_state`, created when missing). The committed mark is read when the run
starts (an impulse the read follows), not while the graph is built, so ``beamwright plan``
and translation never need the server. The reader stages the new mark as pending when it
has read everything, and the driver commits it only after the run's outputs are published, so
a run killed at any point is read again from the same mark by the next one: no gap (nothing
past an uncommitted mark was skipped) and, with idempotent writes downstream, no duplicate.
``echo_column`` skips the rows a sync wrote itself (``echo_column = modified``) while the mark
passes them. Without ``incremental`` the whole table is read, in key order.

One worker reads (pages are sequential by nature: each starts after the last); rows carry the
table's dataset URI as source position and their number in the read as offset.

Lineage: the table is an input dataset (``postgres://host:port``, ``database.schema.table``),
its schema asked from the server when lineage is gathered.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

from pydantic import Field, field_validator

from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel
from pipelines.steps.postgres import (
    PostgresConnectionSpec,
    check_table_name,
    connection_settings,
    table_dataset_uri,
)

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class IncrementalTableSpec(SpecModel):
    """Read only rows changed after the last committed mark."""

    modified: str = Field(pattern=_IDENTIFIER, description="The modified-time column.")
    state_table: str = Field(
        default="public.beamwright_sync_state",
        description="schema.table holding the marks (created when missing).",
    )
    sync: Name | None = Field(
        default=None, description="Names this sync in the state table (default: the source)."
    )
    side: str = Field(default="db", description="The mark's side within the sync.")
    echo_column: str | None = Field(
        default=None,
        pattern=_IDENTIFIER,
        description="Rows where this column equals the modified column are the sync's own "
        "writes: skipped (counted as filtered), the mark passing them.",
    )

    @field_validator("state_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return check_table_name(value)


class PostgresSourceSpec(SpecModel):
    """Rows of a PostgreSQL table, in order, optionally only those changed since a mark."""

    type: Literal["postgres"]
    name: Name
    connection: PostgresConnectionSpec
    table: str = Field(description="schema.table (or table, in schema public).")
    key: str = Field(pattern=_IDENTIFIER, description="The key column (orders ties).")
    columns: list[str] | None = Field(default=None, description="Columns to read (default: all).")
    incremental: IncrementalTableSpec | None = None
    page_size: int = Field(default=50_000, ge=1, le=1_000_000, description="Rows per query.")

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return check_table_name(value)

    def sync_name(self) -> str:
        inc = self.incremental
        return (inc.sync if inc and inc.sync else None) or self.name


def build(node: PostgresSourceSpec, ctx: Any, path: str) -> None:
    import apache_beam as beam

    from connectors.postgres import PostgresConfigError, arrow_schema
    from connectors.postgres_changes import ChangeReader
    from connectors.sync_state import ReadMark, SyncState

    settings = connection_settings(node.connection, path)
    inc = node.incremental
    uri = table_dataset_uri(node.connection, node.table)
    try:
        reader = ChangeReader(
            settings,
            node.table,
            node.key,
            inc.modified if inc else None,
            columns=node.columns,
            echo_column=inc.echo_column if inc else None,
            page_size=node.page_size,
        )
    except PostgresConfigError as exc:
        raise ctx.fail(path, exc.problem) from None
    state = SyncState(settings, inc.state_table, node.sync_name()) if inc else None
    side = inc.side if inc else ""
    read = _ReadFn(reader, node.name, uri, state, side, ctx.run_id)
    rows = (
        ctx.pipeline
        | f"{node.name}/CommittedMark" >> ReadMark(state, side)
        | node.name >> beam.FlatMap(read)
    )
    ctx.outputs[node.name] = rows
    schema = partial(arrow_schema, settings, node.table)
    ctx.inputs.append(ctx.dataset(node.name, "source", uri, "postgres", schema=schema))
    if state is not None:
        ctx.after_publish.append(lambda _result: state.commit(ctx.run_id))


class _ReadFn:
    """Reads every page after the committed mark, then stages the mark of the last row
    scanned (called by ``beam.FlatMap`` with the mark :class:`ReadMark` read at run start)."""

    def __init__(
        self,
        reader: Any,
        source: str,
        uri: str,
        state: Any,
        side: str,
        run_id: str,
    ) -> None:
        self.reader, self.source, self.uri = reader, source, uri
        self.state, self.side, self.run_id = state, side, run_id

    def __call__(self, mark: Any) -> Iterator[Any]:
        from connectors import records
        from connectors.metrics import ROWS_FILTERED, ROWS_IN, ROWS_OUT, TALLY, NodeCounters

        counters = NodeCounters(self.source)
        number, last = 0, None
        for page in self.reader.pages(mark):
            last = page.last
            counters.inc(ROWS_IN, page.rows.num_rows + page.echoes)
            counters.inc(ROWS_FILTERED, page.echoes)
            counters.inc(ROWS_OUT, page.rows.num_rows)
            TALLY.add(self.source, page.rows.num_rows + page.echoes)
            if page.rows.num_rows:
                offsets = range(number + 1, number + 1 + page.rows.num_rows)
                number += page.rows.num_rows
                yield records.with_positions(page.rows, self.uri, list(offsets))
        if self.state is not None and last is not None:
            self.state.stage(self.side, self.run_id, last)


def known_fields(node: PostgresSourceSpec) -> list[str] | None:
    if node.columns is None:
        return None
    inc = node.incremental
    always = [node.key, inc.modified if inc else None, inc.echo_column if inc else None]
    return list(dict.fromkeys([*(n for n in always if n), *node.columns]))


KIND = Kind("source", PostgresSourceSpec, build, known_fields=known_fields)
