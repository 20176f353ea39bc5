"""``beamwright sample-records``: the ``record_sync`` template end to end on a laptop.

It starts the local records API (:mod:`pipelines.dev.records_api`, seeded with ``--count``
records, its 5 requests/s limit enforced) and a throw-away PostgreSQL
(:mod:`pipelines.dev.postgres_server`, on a free 127.0.0.1 port), creates the table, runs the
template once (or ``--runs`` times, editing a few API records between runs, to show the
incremental mark at work), prints each run's summary and whether both sides agree, then stops
both servers. The database password goes to the run as an environment variable named by a
secret reference; it is never printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
from typing import Any

BASE, TABLE = "app1", "contacts"
PASSWORD_ENV = "BEAMWRIGHT_SAMPLE_RECORDS_PG_PASSWORD"
TABLE_SQL = (
    "CREATE TABLE public.contacts (record_id text PRIMARY KEY, api_modified_at timestamptz, "
    "name text, email text, amount float8, status text, notes text)"
)
# db_to_api and both: the table's own modified time, the sync's acknowledgement, the API id
# and the soft-delete flag beside the mapped fields
SYNC_TABLE_SQL = (
    "CREATE TABLE {table} (record_id text PRIMARY KEY, api_id text, "
    "api_modified_at timestamptz, modified_at timestamptz NOT NULL DEFAULT now(), "
    "synced_at timestamptz, api_deleted boolean NOT NULL DEFAULT false, "
    "name text, email text, amount float8, status text, notes text)"
)
SYNC_INDEX_SQL = "CREATE INDEX ON {table} (modified_at, (record_id::text))"
CONFLICTS_SQL = (
    "CREATE TABLE {table} (record_id text, api_modified_at timestamptz, modified_at "
    "timestamptz, api_version text, db_version text, "
    "PRIMARY KEY (record_id, api_modified_at, modified_at))"
)
FIELDS = ("name", "email", "amount", "status", "notes")


def seed_table(conn: Any, table: str, n: int) -> None:
    """Rows 1..n equal to :meth:`RecordsApi.seed`'s records (same ids, fields and times), as
    if an earlier sync had written them: loaded by COPY."""
    from pipelines.dev.records_api import SEED_TIME, record_id, seed_fields

    columns = "record_id, api_id, api_modified_at, modified_at, synced_at, " + ", ".join(FIELDS)
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for i in range(1, n + 1):
            moment = SEED_TIME + _dt.timedelta(seconds=i)
            fields = seed_fields(i)
            rid = record_id(i)
            copy.write_row([rid, rid, moment, moment, moment, *(fields[f] for f in FIELDS)])


def start_marks(settings: Any, state_table: str, n: int) -> None:
    """Both sides' marks at the last seed record: the sides are equal up to there."""
    from connectors.sync_state import SyncState
    from pipelines.dev.records_api import SEED_TIME, record_id

    state = SyncState(settings, state_table, "record_sync")
    state.ensure()
    mark = (SEED_TIME + _dt.timedelta(seconds=n), record_id(n))
    state.set("api", mark)
    state.set("db", mark)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-records",
        help="run the record_sync template against a local records API and a throw-away "
        "PostgreSQL, then stop both",
    )
    p.add_argument("--count", type=int, default=500, help="records the API holds at start")
    p.add_argument("--runs", type=int, default=2, help="syncs, with API edits between them")
    p.add_argument("--output-dir", default="", help="outputs (default: a temporary directory)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pipelines.dev.postgres_server import PostgresUnavailable, TempPostgres
    from pipelines.dev.records_api import RecordsApi, record_id

    out = args.output_dir or tempfile.mkdtemp(prefix="beamwright-sample-records-")
    try:
        server = TempPostgres().start()
    except PostgresUnavailable as exc:
        print(f"beamwright: {exc}", file=sys.stderr)
        return 2
    try:
        with RecordsApi() as api:
            api.seed(BASE, TABLE, args.count)
            server.execute(TABLE_SQL)
            os.environ[PASSWORD_ENV] = server.password
            print(
                f"records API on {api.url}/v0/{BASE}/{TABLE}; PostgreSQL on "
                f"{server.host}:{server.port}; outputs in {out}",
                flush=True,
            )
            code = 0
            for run in range(max(1, args.runs)):
                if run:
                    for n in range(1, 6):  # edits on the API side, fetched by the next run
                        api.edit(BASE, TABLE, record_id(n * 7), {"status": f"edited in {run}"})
                code = _sync(api, server, out, args.param)
                if code:
                    break
                agree = _agree(api, server)
                print(
                    f"run {run + 1}: both sides agree: {agree}; API requests so far: "
                    f"{len(api.log)}, busiest second: {api.busiest_second(BASE)} "
                    f"(limit {api.rate_limit}), 429s: {api.statuses().get(429, 0)}",
                    flush=True,
                )
                if not agree:
                    code = 1
                    break
            return code
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        server.stop()


def _sync(api: Any, server: Any, out: str, pairs: list[str]) -> int:
    from pipelines.dev.template_run import run_template_with

    values = {
        "api_url": api.url,
        "postgres": f"{server.user}@{server.host}:{server.port}/{server.dbname}",
        "postgres_password": f"env:{PASSWORD_ENV}",
        "table": "public.contacts",
        "output_dir": out,
    }
    return run_template_with("record_sync", values, pairs)


def _agree(api: Any, server: Any) -> bool:
    """Whether the table holds exactly the API's records, field for field."""
    records = api.records(BASE, TABLE)
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT record_id, name, email, amount, status, notes FROM public.contacts"
        ).fetchall()
    fields = ("name", "email", "amount", "status", "notes")
    found = {r[0]: r[1:] for r in rows}
    wanted = {rid: tuple(rec["fields"].get(f) for f in fields) for rid, rec in records.items()}
    return found == wanted
