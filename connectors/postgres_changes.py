"""A PostgreSQL table read in ``(modified, key)`` order, strictly after a high-water mark.

Each page is one query, ``WHERE (modified, key) > (mark_time, mark_id) ORDER BY modified, key
LIMIT page_size`` (keyset paging: the next page starts after the last row of this one, so a
row changing while the read goes on is read once or, moved past the end, later; never lost
between pages). A row whose modified time is NULL is never read (it has no place in the
order). Without a modified column the table is read whole, in key order.

The rows come back as CSV aggregated by the server and parsed by Arrow (the same encoding as
:class:`connectors.postgres.TableReader`), typed by the table's columns.

Echo suppression (``echo_column``): a sync writing into this table stamps the rows it writes
with ``echo_column = modified``; those rows are its own writes, not changes, so they are
skipped (counted as filtered) while the mark still passes them, so they are not scanned again.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.postgres import (
    IDENTIFIER,
    Column,
    ColumnsOnce,
    PostgresConfigError,
    PostgresSettings,
    _csv_field,
    _fetch_one,
    _parse_csv,
    pick_columns,
    read_with_retries,
    split_table,
    table_columns,
)
from connectors.sync_state import Mark, table_mark

KEY_ORDER_TIME = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass
class ChangePage:
    """One page: the changed rows (echoes removed), how many echoes were skipped, and the
    ``(modified, key)`` of the last row scanned (the mark after this page)."""

    rows: pa.Table
    echoes: int
    last: Mark | None


class ChangeReader(ColumnsOnce):
    """Pages of ``table``'s rows after a mark.

    Args:
        settings: where to connect.
        table: ``schema.table``.
        key: the key column; ties of modified time are ordered by its text (``key::text``),
            and the mark keeps that text.
        modified: the modified-time column (timestamptz), or None to read the whole table.
        columns: the columns to read (None: all).
        echo_column: rows where it equals ``modified`` are the sync's own writes: skipped.
        page_size: rows per query.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        table: str,
        key: str,
        modified: str | None = None,
        *,
        columns: Sequence[str] | None = None,
        echo_column: str | None = None,
        page_size: int = 50_000,
        retries: int = 3,
    ) -> None:
        for name in [key, modified, echo_column, *(columns or [])]:
            if name is not None and not IDENTIFIER.match(name):
                raise PostgresConfigError(f"'{name}' is not a plain column name")
        if echo_column is not None and modified is None:
            raise PostgresConfigError("echo_column needs a modified column to compare with")
        self.settings = settings
        self.table = table
        self.schema_name, self.table_name = split_table(table)
        self.key, self.modified, self.echo_column = key, modified, echo_column
        self.wanted = list(columns) if columns is not None else None
        self.page_size = page_size
        self.retries = retries
        self._columns = None

    def columns(self) -> list[Column]:
        """The columns read, typed; the key, modified and echo columns always among them."""
        if self._columns is None:
            every = self._call(
                "reading the columns of",
                lambda conn: table_columns(conn, self.settings, self.schema_name, self.table_name),
            )
            needed = [n for n in (self.key, self.modified, self.echo_column) if n]
            wanted = self.wanted if self.wanted is not None else [c.name for c in every]
            picked = pick_columns(self.table, every, list(dict.fromkeys([*needed, *wanted])))
            modified = next((c for c in picked if c.name == self.modified), None)
            if modified is not None and not pa.types.is_timestamp(modified.arrow):
                raise PostgresConfigError(
                    f"{self.table}.{self.modified} is {modified.pg_type}, not a "
                    "timestamp: the mark compares modified times"
                )
            self._columns = picked
        return self._columns

    def pages(self, after: Mark | None) -> Iterator[ChangePage]:
        """Every page after ``after`` (None: from the start), in order."""
        while True:
            page = self.page(after)
            if page.last is None:
                return
            yield page
            after = page.last

    def page(self, after: Mark | None) -> ChangePage:
        """The next page after ``after``; its ``last`` is None when there is none."""
        columns = self.columns()
        query, params = self._query(columns, after)
        data = self._call("reading", lambda conn: _fetch_one(conn, query, params))
        rows = _parse_csv(data, columns, self.table)
        if rows.num_rows == 0:
            return ChangePage(rows, 0, None)
        if self.modified is None:  # key order only: the mark's time is a constant
            last: Mark | None = (KEY_ORDER_TIME, str(rows.column(self.key)[-1].as_py()))
        else:
            last = table_mark(rows.slice(rows.num_rows - 1), self.modified, self.key)
        echoes = 0
        if self.echo_column is not None:
            echo = pc.fill_null(
                pc.equal(rows.column(self.modified), rows.column(self.echo_column)), False
            )
            echoes = pc.sum(echo).as_py() or 0
            if echoes:
                rows = rows.filter(pc.invert(echo))
        return ChangePage(rows, echoes, last)

    def _query(self, columns: list[Column], after: Mark | None) -> tuple[Any, list[Any]]:
        from psycopg import sql

        table = sql.Identifier(self.schema_name, self.table_name)
        line = sql.SQL(" || ',' || ").join(_csv_field(c) for c in columns)
        key = sql.Identifier(self.key)
        params: list[Any] = []
        if self.modified is None:
            order = sql.SQL("{}::text").format(key)
            where = sql.SQL("TRUE")
            if after is not None:
                where = sql.SQL("{}::text > %s").format(key)
                params.append(after[1])
        else:
            modified = sql.Identifier(self.modified)
            order = sql.SQL("{}, {}::text").format(modified, key)
            where = sql.SQL("{} IS NOT NULL").format(modified)
            if after is not None:
                where = sql.SQL("({}, {}::text) > (%s, %s)").format(modified, key)
                params += [after[0], after[1]]
        # every line ends with a newline: Arrow misreads a last unquoted empty field without one
        query = sql.SQL(
            "SELECT convert_to(string_agg(line, '' ORDER BY n), 'UTF8') FROM "
            "(SELECT {line} || E'\\n' AS line, row_number() OVER (ORDER BY {order}) AS n "
            "FROM {table} WHERE {where} ORDER BY {order} LIMIT {limit}) page"
        ).format(
            line=line, order=order, table=table, where=where, limit=sql.Literal(self.page_size)
        )
        return query, params

    def _call(self, what: str, call: Any) -> Any:
        return read_with_retries(
            self.settings,
            self.table,
            call,
            doing=what,
            retries=self.retries,
            backoff_s=0.5,
            hint="is the server up? the run fails and its marks stay where they were",
        )
