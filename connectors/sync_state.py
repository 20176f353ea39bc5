"""High-water marks of incremental syncs, kept in a PostgreSQL state table.

One row per ``(sync, side)``: the committed mark ``(mark_time, mark_id)`` (a change is new
when its ``(modified time, id)`` is strictly after it) and a *pending* mark staged by the run
that read past it. Why two: a source learns how far it read while the job runs, but the mark
may only move once everything the job wrote is written, or a crash between the two would skip
changes that never reached the other side. So readers :meth:`SyncState.stage` the furthest
``(time, id)`` they scanned under their run id, and the driver :meth:`SyncState.commit`\\ s
the run's pending marks after the outputs are published (``after_publish``). A run killed at
any point leaves the committed marks where they were; the next run stages its own (another
run id) and reads the same changes again, which the sync's idempotent writes apply again to
the same values: no gap, no duplicate.

The commit is one ``UPDATE`` for every side of the sync, so the sides' marks move together.

The committed mark is read when the pipeline *runs* (:class:`ReadMark`, an impulse whose one
element is the mark, which the source reads after), never while the graph is built: building,
planning or translating a pipeline (``beamwright plan``, a Dataflow job) must not need the
database. Nothing moves a committed mark during a run (only the driver, after publishing), so
every source of the run sees the marks the run started from, as when they were read before.

The table is created when missing (``CREATE TABLE IF NOT EXISTS``): it is the sync's own
bookkeeping, not user data.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from connectors.postgres import (
    PostgresSettings,
    failed_after,
    split_table,
    with_connection_retries,
)

Mark = tuple[_dt.datetime, str]

STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (sync text NOT NULL, side text NOT NULL, "
    "mark_time timestamptz, mark_id text, pending_time timestamptz, pending_id text, "
    "pending_run text, committed_run text, committed_at timestamptz, "
    "PRIMARY KEY (sync, side))"
)


@dataclass(frozen=True)
class SyncState:
    """The marks of sync ``sync`` in ``table`` (``schema.table``) at ``settings``."""

    settings: PostgresSettings
    table: str
    sync: str

    def _call(self, what: str, call: Any) -> Any:
        failed = failed_after(
            self.settings,
            f"while {what} sync state {self.table}",
            "is the server up? the marks stay where they were",
        )
        return with_connection_retries(self.settings, call, retries=3, backoff_s=0.5, failed=failed)

    def _ident(self) -> Any:
        from psycopg import sql

        return sql.Identifier(*split_table(self.table))

    def ensure(self) -> None:
        """Create the state table when it does not exist. Under a transaction-scoped advisory
        lock: the sources of one sync read their marks at the same moment on different
        workers, and two concurrent ``CREATE TABLE IF NOT EXISTS`` of one new table can fail
        on PostgreSQL's catalog (a duplicate ``pg_type`` key)."""
        from psycopg import sql

        ddl = sql.SQL(STATE_DDL).format(table=self._ident())

        def create(conn: Any) -> None:
            with conn.transaction():  # the pool's connections autocommit
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.table])
                conn.execute(ddl)

        self._call("creating", create)

    def mark(self, side: str) -> Mark | None:
        """The committed mark of ``side``, or None before its first committed run."""
        from psycopg import sql

        query = sql.SQL("SELECT mark_time, mark_id FROM {} WHERE sync = %s AND side = %s").format(
            self._ident()
        )
        row = self._call("reading", lambda conn: conn.execute(query, [self.sync, side]).fetchone())
        if row is None or row[0] is None:
            return None
        return row[0].astimezone(_dt.timezone.utc), row[1] or ""

    def set(self, side: str, mark: Mark | None) -> None:
        """Set ``side``'s committed mark (None: read everything next time), dropping any
        pending one: to start a sync of two sides already equal up to ``mark``, or to resync."""
        from psycopg import sql

        query = sql.SQL(
            "INSERT INTO {} (sync, side, mark_time, mark_id) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (sync, side) DO UPDATE SET mark_time = EXCLUDED.mark_time, "
            "mark_id = EXCLUDED.mark_id, pending_time = NULL, pending_id = NULL, "
            "pending_run = NULL"
        ).format(self._ident())
        params = [self.sync, side, mark[0] if mark else None, mark[1] if mark else None]
        self._call("setting", lambda conn: conn.execute(query, params))

    def stage(self, side: str, run_id: str, mark: Mark) -> None:
        """Record ``mark`` as ``side``'s pending mark for ``run_id`` (kept when this run
        already staged a later one: a retried bundle never moves it back)."""
        from psycopg import sql

        query = sql.SQL(
            "INSERT INTO {t} AS s (sync, side, pending_time, pending_id, pending_run) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (sync, side) DO UPDATE SET "
            "pending_time = EXCLUDED.pending_time, pending_id = EXCLUDED.pending_id, "
            "pending_run = EXCLUDED.pending_run "
            "WHERE s.pending_run IS DISTINCT FROM EXCLUDED.pending_run "
            "OR (s.pending_time, s.pending_id) < (EXCLUDED.pending_time, EXCLUDED.pending_id)"
        ).format(t=self._ident())
        params = [self.sync, side, mark[0], mark[1], run_id]
        self._call("staging", lambda conn: conn.execute(query, params))

    def commit(self, run_id: str) -> int:
        """Make ``run_id``'s pending marks the committed ones (every side in one statement;
        a mark never moves back). Returns the sides committed."""
        from psycopg import sql

        query = sql.SQL(
            "UPDATE {} SET mark_time = pending_time, mark_id = pending_id, "
            "committed_run = pending_run, committed_at = now(), pending_time = NULL, "
            "pending_id = NULL, pending_run = NULL WHERE sync = %s AND pending_run = %s "
            "AND (mark_time IS NULL OR (pending_time, pending_id) > (mark_time, mark_id))"
        ).format(self._ident())
        return self._call(
            "committing", lambda conn: conn.execute(query, [self.sync, run_id]).rowcount
        )


def table_mark(table: pa.Table, time_column: str, id_column: str) -> Mark | None:
    """The greatest ``(time, id)`` of ``table``'s rows (rows with a null time or id aside)."""
    valid = pc.and_(pc.is_valid(table.column(time_column)), pc.is_valid(table.column(id_column)))
    rows = table.select([time_column, id_column]).filter(valid)
    if rows.num_rows == 0:
        return None
    order = pc.sort_indices(rows, [(time_column, "descending"), (id_column, "descending")])
    top = rows.take(order.slice(0, 1)).to_pylist()[0]
    moment = top[time_column]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment, str(top[id_column])


class ReadMark(beam.PTransform):
    """One element when the pipeline runs: ``side``'s committed mark, None before its first
    commit or without a ``state`` (read everything). The state table is created when missing.

    A source applies its read to this output, so the mark is read at run start, on a worker,
    and the graph can be built, planned and translated without reaching the database.
    """

    def __init__(self, state: SyncState | None, side: str) -> None:
        super().__init__()
        self._state, self._side = state, side

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Read" >> beam.Map(_committed_mark, self._state, self._side)
        )


def _committed_mark(_impulse: bytes, state: SyncState | None, side: str) -> Mark | None:
    if state is None:
        return None
    state.ensure()
    return state.mark(side)


class StageMark(beam.PTransform):
    """Stage the greatest ``(time, id)`` of the rows as ``side``'s pending mark for
    ``run_id`` (one value for the whole PCollection, written once at its end).

    Used by sources whose reads are spread or come from another transform; a source reading
    sequentially can call :meth:`SyncState.stage` itself when it is done.
    """

    def __init__(
        self, state: SyncState, side: str, run_id: str, time_column: str, id_column: str
    ) -> None:
        super().__init__()
        self._state, self._side, self._run_id = state, side, run_id
        self._columns = (time_column, id_column)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        time_column, id_column = self._columns
        return (
            tables
            | "Mark" >> beam.FlatMap(_marks_of, time_column, id_column)
            | "Greatest" >> beam.CombineGlobally(max).without_defaults()
            | "Stage" >> beam.Map(self._stage)
        )

    def _stage(self, mark: Mark) -> Mark:
        self._state.stage(self._side, self._run_id, mark)
        return mark


def _marks_of(table: pa.Table, time_column: str, id_column: str) -> Iterator[Mark]:
    found = table_mark(table, time_column, id_column) if table.num_rows else None
    if found is not None:
        yield found
