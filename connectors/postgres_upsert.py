"""Arrow rows upserted into a PostgreSQL table by key: COPY into a staging table, then one
``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``.

Why this shape: a row-at-a-time ``INSERT`` (or ``executemany``) pays a protocol round and a
planner call per row; ``COPY`` streams the whole batch, and the one ``INSERT ... SELECT``
applies it set-wise. The batch goes to COPY as CSV written by Arrow's C++ writer
(``quoting_style="all_valid"``: every value quoted, so NULL (an unquoted empty field) and the
empty string stay apart); PostgreSQL parses the text into the column types, so the table, not
the rows, decides the types. The staging table is a session temp table created ``ON COMMIT
DROP`` inside the batch's transaction, shaped ``AS SELECT <columns> FROM target WITH NO DATA``:
the target's column types without its constraints.

Each batch is one transaction: it is applied whole or not at all, and a retried bundle rewrites
the same rows to the same values (upserts are idempotent). Within a batch the last row of a key
wins (earlier ones are dropped in Arrow first: ``ON CONFLICT`` refuses to touch a row twice).
Rows PostgreSQL refuses (a value that does not parse as its column's type, a NOT NULL or CHECK
violation) fail the transaction; the batch is then split in halves until each refused row is
alone, and those rows come back as failures with PostgreSQL's message, the others written.
Rows with a null key are failures before anything is sent. Connection failures are retried
(``retries``, doubling backoff), then raised as :class:`~connectors.postgres.PostgresError`.

The answer counts rows ``created`` and ``updated`` (``xmax = 0`` marks a row the statement
inserted), for sync reports.

:class:`ConcurrentUpserts` keeps up to ``depth`` batches of one writer upserting at once, each
on its own pooled connection. Why: an upsert is bound by its PostgreSQL backend's CPU (the
``INSERT ... ON CONFLICT`` of an update pass is ~75 % of a batch's time, Python ~7 %), and a
bundle's batches otherwise go one after another, so one server core works while the others
idle; a single Parquet row group, one Kafka partition or one HTTP page stream is one bundle.
Order is kept where it matters: a batch sharing a key with a batch in flight waits for it, so
the later row of a key still wins and two transactions never lock the same rows (no deadlock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.postgres import (
    IDENTIFIER,
    Column,
    PostgresConfigError,
    PostgresError,
    PostgresSettings,
    first_line,
    split_table,
    table_columns,
    with_connection_retries,
)

_COPY_CHUNK = 1 << 20


@dataclass
class UpsertResult:
    """What one :meth:`UpsertWriter.write` did: counts, and the rows refused with why."""

    created: int = 0
    updated: int = 0
    superseded: int = 0  # earlier rows of a key repeated in the same batch
    failures: dict[int, str] = field(default_factory=dict)  # row number -> error

    @property
    def written(self) -> int:
        return self.created + self.updated + self.superseded


class UpsertWriter:
    """Upsert Arrow tables into one PostgreSQL table by key, through this process's pool.

    Args:
        settings: where to connect.
        table: ``schema.table`` (or ``table``, in ``public``).
        keys: the key column(s): a primary key or unique constraint of the table.
        retries: further attempts after a connection failure, ``backoff_s`` doubling.
        backoff_s: the first wait between attempts.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        table: str,
        keys: Sequence[str],
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.table = table
        self.schema_name, self.table_name = split_table(table)
        self.keys = list(keys)
        if not self.keys:
            raise PostgresConfigError("an upsert needs at least one key column")
        for name in self.keys:
            if not IDENTIFIER.match(name):
                raise PostgresConfigError(f"'{name}' is not a plain column name")
        self.retries = retries
        self.backoff_s = backoff_s
        self._columns: dict[str, Column] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_columns"] = None
        return state

    def columns(self) -> dict[str, Column]:
        """The table's columns by name (asked once), checked to hold the keys."""
        if self._columns is None:
            every = self._with_retries(
                lambda conn: table_columns(conn, self.settings, self.schema_name, self.table_name)
            )
            found = {c.name: c for c in every}
            missing = [k for k in self.keys if k not in found]
            if missing:
                raise PostgresConfigError(
                    f"table {self.table} has no key column(s) {missing}; it has {list(found)}"
                )
            self._columns = found
        return self._columns

    def write(self, rows: pa.Table) -> UpsertResult:
        """Upsert ``rows`` (columns named like the table's; others are refused). Row numbers
        in the result's failures are positions in ``rows``.

        Raises:
            PostgresConfigError: a column the table does not have.
            PostgresError: the server unreachable after the retries.
        """
        columns = self.columns()
        unknown = [n for n in rows.column_names if n not in columns]
        if unknown:
            raise PostgresConfigError(
                f"rows have field(s) {unknown} that table {self.table} has no column for",
                hint="map or drop them before the sink (a map step's select)",
            )
        result = UpsertResult()
        if rows.num_rows == 0:
            return result
        positions = pa.array(range(rows.num_rows), pa.int64())
        null_key = _any_null(rows, self.keys)
        if null_key is not None:
            for row in pc.filter(positions, null_key).to_pylist():
                result.failures[row] = f"key {'+'.join(self.keys)} is null"
            keep = pc.invert(null_key)
            rows, positions = rows.filter(keep), positions.filter(keep)
        rows, positions, result.superseded = _last_per_key(rows, positions, self.keys)
        self._apply(rows, positions, result)
        return result

    # -- applying ---------------------------------------------------------------------
    def _apply(self, rows: pa.Table, positions: pa.Array, result: UpsertResult) -> None:
        """Upsert ``rows``; when PostgreSQL refuses the batch, halve it until the refused
        rows are alone (each then a failure)."""
        import psycopg

        if rows.num_rows == 0:
            return
        try:
            created, total = self._with_retries(lambda conn: self._upsert(conn, rows))
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.InternalError_) as exc:
            if rows.num_rows == 1:
                result.failures[positions[0].as_py()] = first_line(exc)
                return
            half = rows.num_rows // 2
            self._apply(rows.slice(0, half), positions.slice(0, half), result)
            self._apply(rows.slice(half), positions.slice(half), result)
            return
        result.created += created
        result.updated += total - created

    def _upsert(self, conn: Any, rows: pa.Table) -> tuple[int, int]:
        from psycopg import sql

        names = rows.column_names
        target = sql.Identifier(self.schema_name, self.table_name)
        stage = sql.Identifier(f"_bw_stage_{self.table_name}"[:63])
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        others = [n for n in names if n not in self.keys]
        if others:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in others
                )
            )
        else:
            action = sql.SQL("DO NOTHING")
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in self.keys)
        data = _csv(rows)
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
                ).format(stage, cols, target)
            )
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(stage, cols)
            with conn.cursor().copy(copy_sql) as copy:
                view = memoryview(data)
                for start in range(0, len(view), _COPY_CHUNK):
                    copy.write(view[start : start + _COPY_CHUNK])
            upsert = sql.SQL(
                "WITH done AS (INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} "
                "ON CONFLICT ({keys}) {action} RETURNING (xmax = 0) AS created) "
                "SELECT count(*) FILTER (WHERE created), count(*) FROM done"
            ).format(target=target, cols=cols, stage=stage, keys=keys, action=action)
            created, total = conn.execute(upsert).fetchone()
        return int(created), int(total)

    def _with_retries(self, call: Any) -> Any:
        def failed(attempts: int, exc: BaseException) -> PostgresError:
            return PostgresError(
                f"PostgreSQL at {self.settings.address} failed while writing "
                f"{self.table}: {first_line(exc)}",
                hint="is the server up and reachable from the workers?",
            )

        return with_connection_retries(
            self.settings, call, retries=self.retries, backoff_s=self.backoff_s, failed=failed
        )


class ConcurrentUpserts:
    """Up to ``depth`` :meth:`UpsertWriter.write` calls at once, their results handed back in
    the order the batches came (``depth=1``: one after another, the same code path).

    A batch waits for the batches in flight it shares a key with before it starts. Results
    are taken from the caller's thread only (Beam counters and outputs belong to it).
    """

    def __init__(self, writer: UpsertWriter, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.writer = writer
        self.depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._flight: deque[tuple[Any, pa.Table, Future]] = deque()

    def put(self, rows: pa.Table, tag: Any) -> list[tuple[Any, UpsertResult]]:
        """Start upserting ``rows``; return ``(tag, result)`` of the batches that finished
        meanwhile (in order). One batch more than ``depth`` may wait for a thread, so a
        thread that finishes starts the next batch at once; beyond that this waits.

        Raises what :meth:`UpsertWriter.write` raised for a batch (after every other batch
        in flight has ended, so none still writes when the caller retries).
        """
        keys = rows.select(self.writer.keys)
        done: list[tuple[Any, UpsertResult]] = []
        while any(_share_a_key(keys, theirs) for _, theirs, _ in self._flight):
            done.append(self._oldest())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.depth, thread_name_prefix="beamwright-upsert")
        self._flight.append((tag, keys, self._pool.submit(self.writer.write, rows)))
        while self._flight and (len(self._flight) > self.depth or self._flight[0][2].done()):
            done.append(self._oldest())
        return done

    def drain(self) -> list[tuple[Any, UpsertResult]]:
        """Wait for every batch in flight; their ``(tag, result)`` in order."""
        return [self._oldest() for _ in range(len(self._flight))]

    def close(self) -> None:
        """Wait for what is in flight (results dropped) and stop the threads."""
        wait([future for _, _, future in self._flight])
        self._flight.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _oldest(self) -> tuple[Any, UpsertResult]:
        tag, _, future = self._flight.popleft()
        try:
            return tag, future.result()
        except BaseException:
            wait([other for _, _, other in self._flight])
            self._flight.clear()
            raise


def _share_a_key(ours: pa.Table, theirs: pa.Table) -> bool:
    """Whether two batches' key columns hold a common (non-null) key; True when Arrow cannot
    join them (different key types), so such batches simply wait for each other."""
    try:
        return ours.join(theirs, ours.column_names, join_type="left semi").num_rows > 0
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return True


def _any_null(rows: pa.Table, keys: Sequence[str]) -> pa.Array | None:
    """A mask of rows with a null key, or None when there is none."""
    mask = None
    for k in keys:
        nulls = pc.is_null(rows.column(k))
        mask = nulls if mask is None else pc.or_(mask, nulls)
    if mask is None or not pc.any(mask).as_py():
        return None
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask


def _last_per_key(
    rows: pa.Table, positions: pa.Array, keys: Sequence[str]
) -> tuple[pa.Table, pa.Array, int]:
    """The rows without earlier repeats of a key (the last wins), their positions, and how
    many were dropped."""
    order = "_bw_upsert_row"
    numbered = rows.select(list(keys)).append_column(order, pa.array(range(rows.num_rows)))
    last = numbered.group_by(list(keys), use_threads=False).aggregate([(order, "max")])
    if last.num_rows == rows.num_rows:
        return rows, positions, 0
    take = pc.sort_indices(last.column(f"{order}_max"))
    index = pc.take(last.column(f"{order}_max"), take)
    return rows.take(index), positions.take(index), rows.num_rows - last.num_rows


def _csv(rows: pa.Table) -> bytes:
    """``rows`` as header-less CSV, every non-null value quoted; nested values as JSON text."""
    import pyarrow.csv as csv

    rows = _flat(rows)
    sink = pa.BufferOutputStream()
    options = csv.WriteOptions(include_header=False, quoting_style="all_valid")
    csv.write_csv(rows, sink, options)
    return sink.getvalue().to_pybytes()


def _flat(rows: pa.Table) -> pa.Table:
    """Columns the CSV writer cannot write (lists, structs, maps) as JSON text; dictionary
    columns as their values; zoned timestamps without their zone (Arrow holds them in UTC and
    the session's TimeZone is UTC; Arrow's CSV writer formats zoned ones 20x slower)."""
    from connectors.files.jsonencode import json_text

    for i, f in enumerate(rows.schema):
        t = f.type
        if pa.types.is_dictionary(t):
            rows = rows.set_column(i, f.name, rows.column(i).cast(t.value_type))
        elif pa.types.is_timestamp(t) and t.tz is not None:
            rows = rows.set_column(i, f.name, rows.column(i).cast(pa.timestamp(t.unit)))
        elif pa.types.is_nested(t):
            rows = rows.set_column(i, f.name, json_text(rows.column(i), strict=True))
    return rows
