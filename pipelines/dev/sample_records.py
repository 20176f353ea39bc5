"""``beamwright sample-records``: the ``record_sync`` template end to end on a laptop.

``--direction both`` (or ``db_to_api``) seeds both sides equal instead and edits both sides
between runs (1 % each, 1 % conflicting); see :func:`_two_way`.

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
import random
import sys
import tempfile
import time
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
# change_both picks 3 * max(2, n // 100) + 2 distinct seeded records
TWO_WAY_MIN = 8


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


def start_marks(settings: Any, state_table: str, n: int, table: str) -> None:
    """Both sides' marks at the last seed record of the sync of ``table``: the sides are equal
    up to there."""
    from connectors.sync_state import SyncState
    from pipelines.dev.records_api import SEED_TIME, record_id
    from templates.record_sync import sync_name

    names = {"api_base": BASE, "api_table": TABLE, "table": table}
    state = SyncState(settings, state_table, sync_name(names))
    state.ensure()
    mark = (SEED_TIME + _dt.timedelta(seconds=n), record_id(n))
    state.set("api", mark)
    state.set("db", mark)


def change_both(
    api: Any, conn: Any, table: str, n: int, rng: random.Random, tag: str
) -> dict[str, list[str]]:
    """Edits on both sides of a sync of ``n`` seeded records: 1 % API only, 1 % table only,
    1 % both (conflicts; the table's edit a little later), two creates and one soft delete per
    side. Returns the keys by kind (``api``, ``db``, ``both``, ``api_new``, ``api_gone``)."""
    from pipelines.dev.records_api import record_id

    m = max(2, n // 100)
    picked = [record_id(i) for i in rng.sample(range(1, n + 1), 3 * m + 2)]
    api_only, db_only, both = picked[:m], picked[m : 2 * m], picked[2 * m : 3 * m]
    api_gone, db_gone = picked[3 * m], picked[3 * m + 1]
    live = api.records(BASE, TABLE)
    for rid in api_only + both:
        if rid in live:
            api.edit(BASE, TABLE, rid, {"status": f"api {tag}", "amount": 1.5})
    api.remove(BASE, TABLE, api_gone)
    made = [api.add(BASE, TABLE, {"name": f"api new {tag} {k}"})["id"] for k in (1, 2)]
    time.sleep(0.01)  # the table's edits are later than the API's (newest_wins: the table)
    conn.execute(
        f"UPDATE {table} SET notes = %s, modified_at = clock_timestamp() "
        "WHERE record_id = ANY(%s) AND NOT api_deleted",
        [f"db {tag}", db_only + both],
    )
    conn.execute(
        f"UPDATE {table} SET api_deleted = true, modified_at = clock_timestamp() "
        "WHERE record_id = %s",
        [db_gone],
    )
    for k in (1, 2):
        conn.execute(
            f"INSERT INTO {table} (record_id, name, amount) VALUES (%s, %s, %s)",
            [f"db-{tag}-{k}", f"db new {tag} {k}", k / 4],
        )
    return {"api": api_only, "db": db_only, "both": both, "api_new": made, "api_gone": [api_gone]}


def differences(api: Any, conn: Any, table: str) -> dict[str, tuple[Any, Any]]:
    """Keys whose live API record and live row differ (or exist on one side only): key ->
    (API fields, row fields). A record the sync created from a row is keyed by its
    ``sync_key`` field."""
    api_live = {}
    for rid, record in api.records(BASE, TABLE).items():
        key = record["fields"].get("sync_key") or rid
        api_live[key] = tuple(record["fields"].get(f) for f in FIELDS)
    columns = ", ".join(FIELDS)
    rows = conn.execute(
        f"SELECT record_id, {columns} FROM {table} WHERE NOT api_deleted"
    ).fetchall()
    db_live = {r[0]: tuple(r[1:]) for r in rows}
    keys = set(api_live) | set(db_live)
    return {k: (api_live.get(k), db_live.get(k)) for k in keys if api_live.get(k) != db_live.get(k)}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-records",
        help="run the record_sync template against a local records API and a throw-away "
        "PostgreSQL, then stop both",
        description="Start the local records API (seeded with --count records, 5 requests/s) "
        "and a throw-away PostgreSQL on 127.0.0.1, run the record_sync template --runs times "
        "(editing records between runs to show the incremental marks), print each run's "
        "summary and whether both sides agree, then stop both servers. Needs the postgres "
        "extra and a PostgreSQL server installation (initdb).",
    )
    p.add_argument(
        "--count",
        type=_at_least(1),
        default=500,
        help=f"records the API holds at start (both/db_to_api: at least {TWO_WAY_MIN}) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--runs",
        type=_at_least(1),
        default=2,
        help="syncs, with API edits between them (default: %(default)s)",
    )
    p.add_argument(
        "--direction",
        choices=("api_to_db", "db_to_api", "both"),
        default="api_to_db",
        help="api_to_db: API records upserted into the table; both/db_to_api: both sides "
        "seeded equal, then edited on both sides between runs (default: %(default)s)",
    )
    p.add_argument(
        "--output-dir",
        default="",
        help="where the runs write their outputs (default: a new temporary directory, printed)",
    )
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a record_sync template parameter, repeatable (see: beamwright templates show "
        "record_sync)",
    )
    p.set_defaults(func=main)


def _at_least(low: int) -> Any:
    """An argparse type: an integer >= ``low`` (a usage error otherwise, not a traceback)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def edited_ids(count: int) -> list[str]:
    """The API records edited between api_to_db runs: up to five of the ``count`` seeded
    (every 7th, wrapping), so a small sample edits records it has instead of failing."""
    from pipelines.dev.records_api import record_id

    return [record_id(i) for i in sorted({1 + (7 * k - 1) % count for k in range(1, 6)})]


def main(args: argparse.Namespace) -> int:
    from pipelines.dev.postgres_server import PostgresUnavailable, TempPostgres
    from pipelines.dev.records_api import RecordsApi

    if args.direction != "api_to_db" and args.count < TWO_WAY_MIN:
        print(
            f"beamwright: --count {args.count}: --direction {args.direction} edits, creates and "
            f"deletes records on both sides between runs and needs at least {TWO_WAY_MIN} "
            f"(hint: --count {TWO_WAY_MIN} or more)",
            file=sys.stderr,
        )
        return 2
    out = args.output_dir or tempfile.mkdtemp(prefix="beamwright-sample-records-")
    try:
        server = TempPostgres().start()
    except PostgresUnavailable as exc:
        print(f"beamwright: {exc}", file=sys.stderr)
        return 2
    if args.direction != "api_to_db":
        try:
            return _two_way(server, args, out)
        finally:
            os.environ.pop(PASSWORD_ENV, None)
            server.stop()
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
                    for rid in edited_ids(args.count):  # API edits, fetched by the next run
                        api.edit(BASE, TABLE, rid, {"status": f"edited in {run}"})
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


def _two_way(server: Any, args: argparse.Namespace, out: str) -> int:
    """``both`` or ``db_to_api``: both sides seeded equal (API in bulk, table by COPY, marks at
    the seed), then before each run edits on both sides (``db_to_api``: the API's are synced
    to no one, so only the table's are checked); after each run the sides must agree but for
    ``manual`` conflicts, which must all be in the conflicts table."""
    from connectors.postgres import PostgresSettings, close_pools
    from connectors.secrets import EnvSecret
    from pipelines.dev.records_api import RecordsApi

    os.environ[PASSWORD_ENV] = server.password
    table, conflicts = "public.contacts", "public.contacts_conflicts"
    server.execute(SYNC_TABLE_SQL.format(table=table))
    server.execute(SYNC_INDEX_SQL.format(table=table))
    server.execute(CONFLICTS_SQL.format(table=conflicts))
    settings = PostgresSettings(
        server.host, server.port, server.dbname, server.user, EnvSecret(PASSWORD_ENV)
    )
    rng = random.Random(15)
    manual = _policy(args.param) == "manual"
    try:
        with RecordsApi() as api, server.connect() as conn:
            api.seed(BASE, TABLE, args.count)
            seed_table(conn, table, args.count)
            start_marks(settings, "public.beamwright_sync_state", args.count, table)
            print(
                f"records API on {api.url}/v0/{BASE}/{TABLE}; PostgreSQL on "
                f"{server.host}:{server.port}; {args.count} records a side; outputs in {out}",
                flush=True,
            )
            api_side: set[str] = set()  # db_to_api: records only the API changed, all runs
            for run in range(max(1, args.runs)):
                changed = change_both(api, conn, table, args.count, rng, f"r{run}")
                extra = [f"direction={args.direction}", "deletes=soft_delete", *args.param]
                code = _sync(api, server, out, extra)
                if code:
                    return code
                left = differences(api, conn, table)
                if args.direction == "db_to_api":  # API-side edits are not synced back
                    kinds = ("api", "both", "api_new", "api_gone")
                    api_side |= {k for kind in kinds for k in changed[kind]}
                    left = {k: v for k, v in left.items() if k not in api_side}
                found = {r[0] for r in conn.execute(f"SELECT record_id FROM {conflicts}")}
                expected = set(changed["both"]) if manual and args.direction == "both" else set()
                unexplained = sorted(set(left) - found)
                print(
                    f"run {run + 1}: records differing: {len(left)} (manual conflicts in "
                    f"{conflicts}: {len(found & expected)}/{len(expected)}), unexplained: "
                    f"{unexplained[:5]}; API requests so far: {len(api.log)}, busiest "
                    f"second: {api.busiest_second(BASE)} (limit {api.rate_limit}), 429s: "
                    f"{api.statuses().get(429, 0)}",
                    flush=True,
                )
                if unexplained or not expected <= found:
                    return 1
            return 0
    finally:
        close_pools()


def _policy(pairs: list[str]) -> str:
    """The ``conflicts`` parameter given with -p (the template's default otherwise)."""
    given = dict(p.partition("=")[::2] for p in pairs)
    return given.get("conflicts", "manual")


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
