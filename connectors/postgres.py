"""PostgreSQL reads by key into Arrow: a per-process connection pool and typed batch reads.

One :class:`TableReader` answers "the rows of ``schema.table`` whose key is one of these" with
one query and an Arrow table typed from the table's own column types (read once per process
from ``pg_catalog`` and cached). psycopg (3) is imported on first use only.

How rows come back: the server writes the matching rows as CSV text and aggregates them
into one value (``SELECT string_agg(<csv line> || '\n', '') FROM ... WHERE key = ANY(...)``), which
Arrow's C++ CSV reader parses with the column types given. Python touches one value per
batch, not a tuple (``fetchall``) or a protocol message (``COPY``) per row. Measured here (2
cores, PostgreSQL 15, psycopg 3.3): 100k rows of 6 columns (int8, text, float8,
numeric(12,2), timestamptz, bool) by 100k keys: ``COPY ... (FORMAT csv)`` + Arrow 230-250 ms,
``fetchall`` + ``pa.Table.from_pydict`` with the same schema 700-750 ms (binary cursor
700-710 ms); 71k rows of the bench's 5 columns: ``COPY`` 167 ms (most of it psycopg's
per-row Python), the aggregated query 116 ms with almost no client CPU. Text is written
quoted, so NULL (unquoted empty) and the empty string (``""``) stay apart. The session runs
with ``TimeZone=UTC`` and ``DateStyle=ISO`` so dates and timestamps print in the one form
Arrow parses. One batch's rows must stay under PostgreSQL's 1 GB limit for one value
(``run.batch_size`` rows of the table's width).

Types (:func:`arrow_type`): int2/int4/int8 -> int16/int32/int64, float4/float8 ->
float32/float64, ``numeric(p,s)`` with p <= 38 -> decimal128(p,s) (exact); a ``numeric`` without
precision (or wider than 38 digits) -> float64, since Arrow has no unbounded decimal; bool,
date, timestamp -> timestamp[us], timestamptz -> timestamp[us, UTC]; text, varchar, char,
json/jsonb, uuid and every other type -> string (their PostgreSQL text form). Values Arrow
cannot hold (numeric ``NaN``, ``infinity`` dates and timestamps) fail the batch with
:class:`PostgresError` naming the column, rather than becoming nulls nobody asked for.

Keys are sent as one bound parameter per key column, an array literal built in Arrow
(``%s::<key type>[]``); several key columns match through
``(a, b) IN (SELECT * FROM unnest(...))``. Identifiers are always quoted with
``psycopg.sql.Identifier``, so a spec cannot inject SQL.

Connection settings hold the password as a :class:`~connectors.secrets.SecretRef`, resolved
when the process's pool is made and passed to libpq as a keyword, never in a conninfo string,
a message or a log line.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import BeamwrightError, RunError
from connectors.secrets import SecretRef

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
"""A plain PostgreSQL identifier (what a spec may name: a schema, a table, a column)."""

DEFAULT_SCHEMA = "public"
MAX_DECIMAL_PRECISION = 38
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601"


class PostgresConfigError(BeamwrightError, ValueError):
    """Settings that cannot work: a bad table name, a table or field that does not exist."""


class PostgresError(RunError):
    """The database failed while a run used it (unreachable, or a query error)."""


@dataclass(frozen=True)
class PostgresSettings:
    """Where to connect. Frozen and hashable: it keys the process's connection pools."""

    host: str
    port: int = 5432
    dbname: str = "postgres"
    user: str = "postgres"
    password: SecretRef | None = None
    connect_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        """``host:port/dbname`` as messages name the server (never a credential)."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq keywords, password resolved now (call on the worker, never log the result)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "connect_timeout": max(1, int(self.connect_timeout_s)),
            "application_name": "beamwright",
            "options": SESSION_OPTIONS,
        }
        if self.password is not None:
            kwargs["password"] = self.password.resolve().reveal().decode("utf-8")
        return kwargs


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` (or ``table``, in ``public``) -> (schema, table).

    Raises:
        PostgresConfigError: not one or two plain identifiers.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(IDENTIFIER.match(p) for p in parts):
        raise PostgresConfigError(
            f"'{name}' is not a table name",
            hint="write schema.table (or table, in schema public) with letters, digits, _ and $",
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (DEFAULT_SCHEMA, parts[0])


# --------------------------------------------------------------------------- pools

_POOLS: dict[PostgresSettings, Any] = {}
_POOLS_LOCK = threading.Lock()
PREFLIGHT_TIMEOUT_S = 5  # the run-start check's connect timeout (libpq takes whole seconds)


def unreachable(settings: PostgresSettings) -> str | None:
    """Why one plain connection to ``settings`` fails (PostgreSQL's first message line), or
    None when it connects. Run start calls it once per server before any pool exists, so an
    unreachable database fails in seconds with one line, not after every pool's reconnect
    attempts and every caller's retries (those stay for a server lost mid-run)."""
    import psycopg

    kwargs = settings.connect_kwargs()
    kwargs["connect_timeout"] = min(kwargs["connect_timeout"], PREFLIGHT_TIMEOUT_S)
    try:
        psycopg.connect(**kwargs).close()
    except psycopg.Error as exc:
        return first_line(exc)
    return None


class _FirstPoolError(logging.Filter):
    """Lets through the first "error connecting" warning of each pool and drops the rest:
    psycopg_pool logs one per reconnect attempt (24 lines for one unreachable server), and
    the caller's own error (:func:`failed_after`) already says what failed."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("error connecting"):
            return True
        pool_name = str(record.args[0]) if record.args else ""
        if pool_name in self._seen:
            return False
        self._seen.add(pool_name)
        return True


_POOL_LOG_FILTER = _FirstPoolError()


def pool(settings: PostgresSettings) -> Any:
    """This process's ``psycopg_pool.ConnectionPool`` for ``settings``, made on first use.

    One per process and settings, shared by every DoFn instance (and thread) of the worker;
    connections are checked when taken, so a server restart costs one reconnect, not a
    failed batch.
    """
    with _POOLS_LOCK:
        found = _POOLS.get(settings)
        if found is None:
            from psycopg_pool import ConnectionPool

            pool_log = logging.getLogger("psycopg.pool")
            if _POOL_LOG_FILTER not in pool_log.filters:
                pool_log.addFilter(_POOL_LOG_FILTER)
            found = ConnectionPool(
                kwargs={**settings.connect_kwargs(), "autocommit": True},
                min_size=1,
                max_size=4,
                timeout=settings.connect_timeout_s,
                check=ConnectionPool.check_connection,
                name=f"beamwright:{settings.address}",
                open=True,
            )
            _POOLS[settings] = found
        return found


def close_pools() -> None:
    """Close every pool of this process (tests; workers keep theirs until they exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.close()


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Column:
    """A table column: name, PostgreSQL type (``format_type``), Arrow type."""

    name: str
    pg_type: str
    arrow: pa.DataType


_SIMPLE = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def arrow_type(typname: str, typmod: int) -> pa.DataType:
    """The Arrow type for a PostgreSQL column of type ``typname`` (``pg_type.typname``) with
    ``atttypmod`` ``typmod`` (see the module docstring for the mapping)."""
    if typname in _SIMPLE:
        return _SIMPLE[typname]
    if typname == "numeric":
        if typmod >= 4:
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            if 0 < precision <= MAX_DECIMAL_PRECISION and scale <= precision:
                return pa.decimal128(precision, scale)
        return pa.float64()
    return pa.string()


_COLUMNS: dict[tuple[PostgresSettings, str, str], list[Column]] = {}

_COLUMNS_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atttypmod
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
ORDER BY a.attnum
"""


def table_columns(conn: Any, settings: PostgresSettings, schema: str, table: str) -> list[Column]:
    """The columns of ``schema.table`` (asked once per process and table, then cached).

    Raises:
        PostgresConfigError: the table (or view) does not exist, or cannot be seen.
    """
    key = (settings, schema, table)
    found = _COLUMNS.get(key)
    if found is None:
        rows = conn.execute(_COLUMNS_SQL, (schema, table)).fetchall()
        if not rows:
            raise PostgresConfigError(
                f"table {schema}.{table} does not exist in {settings.address} "
                f"(or user '{settings.user}' cannot see it)"
            )
        found = [Column(name, fmt, arrow_type(typ, mod)) for name, typ, fmt, mod in rows]
        _COLUMNS[key] = found
    return found


def arrow_schema(
    settings: PostgresSettings, table_name: str, fields: Sequence[str] | None = None
) -> pa.Schema | None:
    """The Arrow schema of ``table_name``'s columns (``fields`` only, when given), asked with
    a fresh short-lived connection; None (logged) when the server cannot tell. For lineage,
    which must never fail a run."""
    import psycopg

    try:
        schema, table = split_table(table_name)
        kwargs = {**settings.connect_kwargs(), "connect_timeout": 5}
        with psycopg.connect(**kwargs, autocommit=True) as conn:
            columns = table_columns(conn, settings, schema, table)
    except (BeamwrightError, psycopg.Error) as exc:
        log.warning(
            "lineage has no schema for table %s at %s: %s", table_name, settings.address, exc
        )
        return None
    wanted = set(fields) if fields is not None else None
    return pa.schema([(c.name, c.arrow) for c in columns if wanted is None or c.name in wanted])


# --------------------------------------------------------------------------- reads


class ColumnsOnce:
    """Base of the readers that ask the server for a table's typed columns once, caching them
    in ``_columns``: pickling drops the cache, so each worker asks its own connection (the
    launcher's answer may be stale) instead of shipping it."""

    _columns: list[Column] | None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_columns"] = None
        return state


def pick_columns(table: str, every: Sequence[Column], names: Sequence[str]) -> list[Column]:
    """``names``' columns among ``every`` column of ``table``, in that order; a name the table
    lacks fails before any row is read, listing the columns it has."""
    by_name = {c.name: c for c in every}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PostgresConfigError(
            f"table {table} has no column(s) {missing}; it has {[c.name for c in every]}"
        )
    return [by_name[n] for n in names]


class TableReader(ColumnsOnce):
    """Rows of one table by key, as Arrow, through this process's pool.

    Args:
        settings: where to connect.
        table: ``schema.table`` (or ``table``).
        keys: key column(s) of the table.
        fields: columns to read besides the keys (None: all the others).
        retries: further attempts after a connection failure (the server unreachable, the
            connection lost), ``backoff_s`` doubling between them; then :class:`PostgresError`.
        backoff_s: the first wait between attempts.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        table: str,
        keys: Sequence[str],
        fields: Sequence[str] | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.table = table
        self.schema_name, self.table_name = split_table(table)
        self.keys = list(keys)
        self.fields = list(fields) if fields is not None else None
        for name in [*self.keys, *(self.fields or [])]:
            if not IDENTIFIER.match(name):
                raise PostgresConfigError(f"'{name}' is not a plain column name")
        self.retries = retries
        self.backoff_s = backoff_s
        self.queries = 0
        self._columns = None

    # -- schema --------------------------------------------------------------------
    def columns(self) -> list[Column]:
        """Key columns then field columns, typed (asks the server the first time)."""
        if self._columns is None:
            every = self._with_retries(
                lambda conn: table_columns(conn, self.settings, self.schema_name, self.table_name)
            )
            wanted = self.fields
            if wanted is None:
                wanted = [c.name for c in every if c.name not in self.keys]
            self._columns = pick_columns(self.table, every, [*self.keys, *wanted])
        return self._columns

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.arrow) for c in self.columns()])

    # -- reads ---------------------------------------------------------------------
    def read(self, keys: pa.Table) -> pa.Table:
        """The table's rows whose keys are among ``keys`` (columns named like the table's key
        columns and typed like them; rows with a null key are ignored), in one query."""
        columns = self.columns()
        keys = keys.filter(_all_valid(keys, self.keys)) if keys.num_rows else keys
        if keys.num_rows == 0:
            return self.schema.empty_table()
        query, params = self._query(columns, keys)
        data = self._with_retries(lambda conn: _fetch_one(conn, query, params))
        self.queries += 1
        return _parse_csv(data, columns, self.table)

    def _query(self, columns: list[Column], keys: pa.Table) -> tuple[Any, list[str]]:
        from psycopg import sql

        table = sql.Identifier(self.schema_name, self.table_name)
        line = sql.SQL(" || ',' || ").join(_csv_field(c) for c in columns)
        by_name = {c.name: c for c in columns}
        arrays = [
            sql.SQL("{}::{}[]").format(sql.Placeholder(), sql.SQL(by_name[k].pg_type))
            for k in self.keys
        ]
        params = [array_literal(keys.column(k)) for k in self.keys]
        if len(self.keys) == 1:
            where = sql.SQL("{} = ANY({})").format(sql.Identifier(self.keys[0]), arrays[0])
        else:
            where = sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(
                sql.SQL(", ").join(sql.Identifier(k) for k in self.keys),
                sql.SQL(", ").join(arrays),
            )
        # every line ends with a newline: Arrow misreads a last unquoted empty field without one
        query = sql.SQL("SELECT convert_to(string_agg({} || E'\\n', ''), 'UTF8') FROM {} WHERE {}")
        return query.format(line, table, where), params

    def _with_retries(self, call: Any) -> Any:
        """``call(connection)`` with a pooled connection; connection failures are retried
        ``retries`` times with doubling backoff, then raised as :class:`PostgresError`."""
        return read_with_retries(
            self.settings,
            self.table,
            call,
            doing="reading",
            retries=self.retries,
            backoff_s=self.backoff_s,
            hint="is the server up and reachable? the bundle fails and the runner may retry it",
        )


def read_with_retries(
    settings: PostgresSettings,
    table: str,
    call: Callable[[Any], Any],
    *,
    doing: str,
    retries: int,
    backoff_s: float,
    hint: str,
) -> Any:
    """:func:`with_connection_retries` for a read of ``table``: a connection that stays lost
    fails as "failed N time(s) ``doing`` ``table``" with ``hint``, and a query error (which
    retrying cannot help) as a refused read; both as :class:`PostgresError` without the psycopg
    chain, which can hold the connection string."""
    import psycopg

    try:
        return with_connection_retries(
            settings,
            call,
            retries=retries,
            backoff_s=backoff_s,
            failed=failed_after(settings, f"{doing} {table}", hint),
        )
    except psycopg.Error as exc:
        raise PostgresError(
            f"PostgreSQL at {settings.address} refused a read of {table}: {first_line(exc)}"
        ) from None


def failed_after(
    settings: PostgresSettings, doing: str, hint: str
) -> Callable[[int, BaseException], PostgresError]:
    """The ``failed`` of :func:`with_connection_retries`: one wording of "the server stayed
    unreachable while ``doing``" for every PostgreSQL caller, naming the address (never the
    connection string) and PostgreSQL's first message line."""

    def failed(attempts: int, exc: BaseException) -> PostgresError:
        return PostgresError(
            f"PostgreSQL at {settings.address} failed {attempts} time(s) {doing}: "
            f"{first_line(exc)}",
            hint=hint,
        )

    return failed


def with_connection_retries(
    settings: PostgresSettings,
    call: Callable[[Any], Any],
    *,
    retries: int,
    backoff_s: float,
    failed: Callable[[int, BaseException], PostgresError],
) -> Any:
    """``call(connection)`` with a connection from ``settings``' pool. A lost or refused
    connection (or a pool timeout) is retried ``retries`` times with doubling backoff from
    ``backoff_s``, since the server may be back a moment later; after that,
    ``failed(attempts, exc)`` is raised (without the psycopg chain, which can hold the
    connection string). Query errors are not retried: they propagate as psycopg raised them."""
    import psycopg
    from psycopg_pool import PoolTimeout

    attempt = 0
    while True:
        try:
            with pool(settings).connection() as conn:
                return call(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if attempt >= retries:
                raise failed(attempt + 1, exc) from None
            time.sleep(backoff_s * (2**attempt))
            attempt += 1


def first_line(exc: BaseException) -> str:
    """PostgreSQL's first message line of ``exc`` (never the connection string), or the
    exception's type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _all_valid(table: pa.Table, names: Sequence[str]) -> pa.Array:
    mask = pc.is_valid(table.column(names[0]))
    for name in names[1:]:
        mask = pc.and_(mask, pc.is_valid(table.column(name)))
    return mask


def array_literal(values: pa.Array | pa.ChunkedArray) -> str:
    """A PostgreSQL array literal (``{"a","b"}``) of ``values`` (no nulls), built in Arrow.

    Every element is double-quoted with ``\\`` and ``"`` escaped, so any text is one element;
    the literal is then bound as one string parameter, so nothing of it is SQL.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        values = values.cast(pa.timestamp(values.type.unit))  # UTC wall time, session is UTC
    text = values.cast(pa.string())
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    joined = pa.ListArray.from_arrays(pa.array([0, len(quoted)], pa.int32()), quoted)
    return "{" + (pc.binary_join(joined, ",")[0].as_py() or "") + "}"


def _csv_field(column: Column) -> Any:
    """The SQL writing one column as a CSV field: text quoted (quotes doubled), NULL empty."""
    from psycopg import sql

    name = sql.Identifier(column.name)
    if pa.types.is_string(column.arrow):
        return sql.SQL(
            """CASE WHEN {0} IS NULL THEN '' ELSE '"' || replace({0}::text, '"', '""') || '"' END"""
        ).format(name)
    return sql.SQL("coalesce({}::text, '')").format(name)


def _fetch_one(conn: Any, query: Any, params: list[str]) -> bytes:
    """The one value of the aggregated query: the rows as CSV (empty when none matched)."""
    with conn.cursor(binary=True) as cursor:
        row = cursor.execute(query, params).fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


def _parse_csv(data: bytes, columns: list[Column], table_name: str) -> pa.Table:
    import pyarrow.csv as csv

    schema = pa.schema([(c.name, c.arrow) for c in columns])
    if not data:
        return schema.empty_table()
    try:
        table = _read_csv(csv, data, columns)
    except pa.ArrowInvalid as exc:
        text = first_line(exc)
        found = re.search(r"column #(\d+): (.*)$", text)
        if found and int(found.group(1)) < len(columns):
            text = f"column {columns[int(found.group(1))].name}: {found.group(2)}"
        raise PostgresError(
            f"a value read from {table_name} does not fit its Arrow type ({text})",
            hint="numeric NaN and infinite dates or timestamps have no Arrow value: leave "
            "those columns out of 'fields', or read through a view that maps them",
        ) from None
    return table.cast(schema)


def _read_csv(csv: Any, data: bytes, columns: list[Column]) -> pa.Table:
    return csv.read_csv(
        io.BytesIO(data),
        read_options=csv.ReadOptions(column_names=[c.name for c in columns], use_threads=False),
        parse_options=csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=csv.ConvertOptions(
            column_types={c.name: c.arrow for c in columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["true"],
            false_values=["false"],
        ),
    )
