"""The ``record_sync`` template's ``both`` and ``db_to_api`` directions end to end: the local
records API (:mod:`pipelines.dev.records_api`: 5 requests/s per base, batches of 10, its
own request log) and the session PostgreSQL.

Both sides start equal (the API seeded in bulk, the table by COPY with the same records, both
marks at the seed time), then change: 1 % of the records edited on the API only, 1 % on the
table only, 1 % on both (conflicts), a few created and deleted on each side. One sync must
leave both sides equal except the ``manual`` conflicts, which are all in the conflicts table;
syncs killed with SIGKILL at random points and a last run must converge to the same state;
the API's log must never show more than 5 requests in a sliding second.
``RECORD_SYNC_BOTH_RECORDS`` sets the size (the issue's is 100000; make test runs 2000).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.postgres import PostgresSettings
from connectors.secrets import EnvSecret
from pipelines.dev.records_api import RecordsApi, record_id
from pipelines.dev.sample_records import (
    CONFLICTS_SQL,
    SYNC_INDEX_SQL,
    SYNC_TABLE_SQL,
    change_both,
    differences,
    seed_table,
    start_marks,
)
from pipelines.loading import resolve_parameters
from pipelines.run import run_spec
from templates.record_sync import TEMPLATE
from tests.postgres_server import password_in_env, postgres_server  # noqa: F401 - a fixture
from transforms.reconcile import Decide, SyncColumns

PASSWORD_ENV = "BW_TEST_SYNC_BOTH_PG_PASSWORD"
TOKEN_ENV = "BW_TEST_SYNC_BOTH_TOKEN"
TOKEN = "tok-" + uuid.uuid4().hex
BASE, TABLE = "app1", "contacts"
RECORDS = int(os.environ.get("RECORD_SYNC_BOTH_RECORDS", "2000"))
KILLS = int(os.environ.get("RECORD_SYNC_BOTH_KILLS", "2"))


@pytest.fixture(scope="module")
def pg(postgres_server):  # noqa: F811 - the fixture imported above
    with password_in_env(postgres_server, PASSWORD_ENV):
        yield postgres_server


class Pair:
    """One API table and one PostgreSQL table, seeded equal, with their own state tables."""

    def __init__(self, pg: Any, api: RecordsApi, n: int, tmp: Path) -> None:
        self.pg, self.api, self.n, self.tmp = pg, api, n, tmp
        suffix = uuid.uuid4().hex[:8]
        self.table = f"public.contacts_{suffix}"
        self.conflicts = f"public.conflicts_{suffix}"
        self.state = f"public.sync_state_{suffix}"
        pg.execute(SYNC_TABLE_SQL.format(table=self.table))
        pg.execute(SYNC_INDEX_SQL.format(table=self.table))
        pg.execute(CONFLICTS_SQL.format(table=self.conflicts))
        api.seed(BASE, TABLE, n)
        with pg.connect() as conn:
            seed_table(conn, self.table, n)
        settings = PostgresSettings(pg.host, pg.port, pg.dbname, pg.user, EnvSecret(PASSWORD_ENV))
        start_marks(settings, self.state, n, self.table)

    def params(self, **more: Any) -> dict[str, Any]:
        return {
            "output_dir": str(self.tmp),
            "api_url": self.api.url,
            "api_token": f"env:{TOKEN_ENV}",
            "postgres": f"{self.pg.user}@{self.pg.host}:{self.pg.port}/{self.pg.dbname}",
            "postgres_password": f"env:{PASSWORD_ENV}",
            "table": self.table,
            "conflicts_table": self.conflicts,
            "state_table": self.state,
            "direction": "both",
            "deletes": "soft_delete",
            "page_size": 100,
            "error_threshold": 0.0,
        } | more

    def sync(self, **more: Any) -> Any:
        values = resolve_parameters(TEMPLATE.parameters, self.params(**more))
        return run_spec(TEMPLATE.expand(values))

    def rows(self) -> dict[str, dict[str, Any]]:
        with self.pg.connect() as conn:
            cursor = conn.execute(f"SELECT * FROM {self.table}")
            names = [c.name for c in cursor.description]
            return {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}

    def conflict_keys(self) -> list[str]:
        with self.pg.connect() as conn:
            found = conn.execute(f"SELECT record_id FROM {self.conflicts}").fetchall()
        return sorted(r[0] for r in found)

    def change(self, rng: random.Random, tag: str) -> dict[str, list[str]]:
        with self.pg.connect() as conn:
            return change_both(self.api, conn, self.table, self.n, rng, tag)

    def assert_agree(self, except_keys: set[str] = frozenset()) -> None:
        """Live API records and live rows hold the same keys and fields, but for
        ``except_keys``, which must differ."""
        with self.pg.connect() as conn:
            left = differences(self.api, conn, self.table)
        assert sorted(left) == sorted(except_keys), {k: left.get(k) for k in sorted(left)[:3]}


def api_server(monkeypatch: Any) -> RecordsApi:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return RecordsApi(token=TOKEN, retry_after=0.2)


@pytest.mark.slow
def test_one_sync_makes_both_sides_agree_but_manual_conflicts(
    pg: Any, tmp_path: Path, monkeypatch: Any, caplog: Any, capfd: Any
) -> None:
    with api_server(monkeypatch) as api:
        pair = Pair(pg, api, RECORDS, tmp_path)
        changed = pair.change(random.Random(15), "one")
        started = time.monotonic()
        summary = pair.sync(conflicts="manual")
        took = time.monotonic() - started
        conflicted = set(changed["both"])
        assert pair.conflict_keys() == sorted(conflicted)
        pair.assert_agree(conflicted)
        m = len(changed["api"])
        stats = summary.node("reconcile").stats
        assert stats["conflict"] == stats["conflicts_manual"] == len(conflicted)
        assert stats["db_update"] == m and stats["db_create"] == 2 and stats["db_delete"] == 1
        assert stats["api_update"] == m and stats["api_create"] == 2
        assert stats["api_delete"] == 1
        api_stats = summary.node("api").stats
        assert api_stats["created"] == 2 and api_stats["deleted"] == 1
        report = json.loads((tmp_path / "report" / "sync_report.json").read_text())
        counted = {r["sync_action"]: r["records"] for r in report}
        assert counted["conflict"] == len(conflicted) and counted["api_create"] == 2
        events = [json.loads(line) for line in (tmp_path / "lineage" / "events.jsonl").open()]
        facet = events[-1]["run"]["facets"]["beamwright_syncReport"]
        assert facet["sides"]["db"] == {"created": 2, "updated": m, "deleted": 1}
        assert facet["sides"]["api"] == {"created": 2, "updated": m, "deleted": 1}
        assert (facet["conflicts"], facet["manual"]) == (len(conflicted), len(conflicted))
        # the API's log: never over its limit, and the sync's writes 10 records a request
        assert api.busiest_second(BASE) <= 5
        writes = [e for e in api.log if e.method in ("PATCH", "DELETE")]
        assert writes and max(e.records for e in writes) <= 10
        print(
            f"{RECORDS} records a side: one sync {took:.1f} s, {len(writes)} API writes, "
            f"busiest second {api.busiest_second(BASE)}"
        )
        # a second sync writes nothing: what it reads back of the first one's writes are
        # echoes (the API's) or skipped by the echo column (the table's), not changes
        api.reset_log()
        again = pair.sync(conflicts="manual")
        decided = again.node("reconcile").stats
        assert not {k: v for k, v in decided.items() if k.startswith(("db_", "api_", "conflict"))}
        assert decided["echoes"] == stats["api_update"] + stats["api_create"]
        assert decided["deletes_already_applied"] == stats["api_delete"]
        assert {e.method for e in api.log} == {"GET"}
        # neither secret reached a file the runs wrote (lineage, reports, dead letters) nor
        # the logs and output, nor the conflicts table
        captured = capfd.readouterr()
        written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
        with pg.connect() as conn:
            versions = str(conn.execute(f"SELECT * FROM {pair.conflicts}").fetchall())
        for text in [*written, caplog.text, captured.out, captured.err, versions]:
            assert TOKEN not in text and pg.password not in text


@pytest.mark.slow
def test_db_to_api_writes_table_changes_and_maps_new_ids(
    pg: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """db_to_api: the table's edits, creates and soft deletes reach the API (creates get their
    API id written back); the next run finds nothing: the write-back is not a change."""
    with api_server(monkeypatch) as api:
        pair = Pair(pg, api, 300, tmp_path)
        with pg.connect() as conn:
            conn.execute(
                f"UPDATE {pair.table} SET notes = 'db edit', modified_at = clock_timestamp() "
                "WHERE record_id = ANY(%s)",
                [[record_id(i) for i in (3, 30, 300)]],
            )
            conn.execute(
                f"UPDATE {pair.table} SET api_deleted = true, modified_at = clock_timestamp() "
                "WHERE record_id = %s",
                [record_id(4)],
            )
            conn.execute(f"INSERT INTO {pair.table} (record_id, name) VALUES ('db-new', 'new')")
        summary = pair.sync(direction="db_to_api")
        assert summary.node("api").stats == {
            "requests": 2,
            "updated": 3,
            "created": 1,
            "deleted": 1,
        }
        pair.assert_agree()
        made = pair.rows()["db-new"]
        assert api.records(BASE, TABLE)[made["api_id"]]["fields"]["sync_key"] == "db-new"
        report = json.loads((tmp_path / "report" / "sync_report.json").read_text())
        assert sorted((r["sync_action"], r["records"]) for r in report) == [
            ("api_create", 1),
            ("api_delete", 1),
            ("api_update", 3),
        ]
        api.reset_log()
        again = pair.sync(direction="db_to_api")
        assert again.node("db_changes").rows_out == 0 and api.log == []


def test_decisions_per_policy() -> None:
    """The per-key decision without Beam or I/O: each policy on one conflicting record, an
    echo, an acknowledgement and a create."""
    c = SyncColumns(
        "record_id",
        "api_id",
        "api_modified_at",
        "modified_at",
        "synced_at",
        "deleted",
        (("name", "string"),),
    )
    t = _dt.datetime(2026, 12, 1, tzinfo=_dt.timezone.utc)
    later = t + _dt.timedelta(seconds=1)
    api = {"api_id": "rec1", "api_modified_at": t, "name": "from api", "deleted": False}
    db = {"api_id": "rec1", "modified_at": later, "name": "from db", "deleted": False}
    wins = {}
    for policy in ("source_wins", "target_wins", "newest_wins", "manual"):
        row, extra = Decide(c, policy)("k", api, db, None)
        wins[policy] = (row["sync_action"], row.get("name"), extra)
    assert wins == {
        "source_wins": ("db_update", "from api", "conflicts_source_wins"),
        "target_wins": ("api_update", "from db", "conflicts_target_wins"),
        "newest_wins": ("api_update", "from db", "conflicts_newest_wins"),
        "manual": ("conflict", None, "conflicts_manual"),
    }
    decide = Decide(c, "manual")
    current = {"api_modified_at": t, "name": "x", "deleted": False}
    assert decide("k", api, None, current) == (None, "echoes")
    current = {"api_modified_at": None, "name": "from api", "deleted": False}
    assert decide("k", api, None, current)[0]["sync_action"] == "db_ack"
    assert decide("k", api, None, None)[0]["sync_action"] == "db_create"
    fresh = {"api_id": None, "modified_at": t, "name": "new", "deleted": False}
    assert decide("k", None, fresh, None)[0]["sync_action"] == "api_create"
    assert decide("k", None, {**fresh, "deleted": True}, None) == (None, "deletes_never_synced")
    with pytest.raises(ValueError, match="policy"):
        Decide(c, "coin_flip")


def cli_sync(pair: Pair, **more: Any) -> subprocess.Popen:
    """``beamwright run record_sync`` in its own process (so it can be killed mid-run); its
    output goes to ``cli.log`` in the run's directory."""
    command = [sys.executable, "-m", "pipelines.cli", "run", "record_sync"]
    for key, value in pair.params(**more).items():
        command += ["-p", f"{key}={value}"]
    log = (pair.tmp / "cli.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)


def api_writes(api: RecordsApi) -> int:
    return len([e for e in api.log if e.method in ("PATCH", "DELETE") and e.status == 200])


@pytest.mark.slow
def test_syncs_killed_at_random_points_converge(pg: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """newest_wins (writes on both sides): runs killed by SIGKILL, alternately at a random
    moment and just after they first wrote to either side (the point that matters: written,
    marks not committed), then one run to the end: both sides agree, no record was created
    twice in the API, and the API's limit held. RECORD_SYNC_BOTH_KILLS sets how many kills."""
    with api_server(monkeypatch) as api:
        pair = Pair(pg, api, RECORDS, tmp_path)
        rng = random.Random(7)
        pair.change(rng, "k")
        wrote = False
        for attempt in range(KILLS):
            process = cli_sync(pair, conflicts="newest_wins")
            writes, synced = api_writes(api), _synced(pair)
            at_random = attempt % 2 == 0
            deadline = time.monotonic() + (rng.uniform(1.0, 8.0) if at_random else 120.0)
            while time.monotonic() < deadline and process.poll() is None:
                if api_writes(api) != writes or _synced(pair) != synced:
                    wrote = True
                    if not at_random:
                        time.sleep(rng.uniform(0.0, 0.3))
                        break
                time.sleep(0.02)
            # a run may have ended on its own before its moment came: nothing left to kill
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pair.change(rng, f"k{attempt}")  # both sides keep changing between the runs
        assert wrote, "no killed run wrote anything: the kills came too early"
        final = cli_sync(pair, conflicts="newest_wins")
        assert final.wait(timeout=300) == 0, (pair.tmp / "cli.log").read_text()
        pair.assert_agree()
        keys = [r["fields"].get("sync_key") or rid for rid, r in api.records(BASE, TABLE).items()]
        assert len(keys) == len(set(keys)), "a record was created twice in the API"
        assert api.busiest_second(BASE) <= 5


def _synced(pair: Pair) -> int:
    with pair.pg.connect() as conn:
        return conn.execute(
            f"SELECT count(*) FROM {pair.table} WHERE synced_at > %s",
            [_dt.datetime(2026, 11, 30, tzinfo=_dt.timezone.utc)],
        ).fetchone()[0]


def test_writer_batches_upserts_by_external_id_and_dead_letters_refused_records() -> None:
    """The records API writer without Beam: creates merged on the external id (sent twice,
    created once), a batch refused for one unknown id retried record by record (only that one
    fails, with the API's answer), a delete of a record already gone counted as done."""
    import pyarrow as pa

    from transforms.records_api_write import RecordsApiWriter

    with RecordsApi(rate_limit=100) as api:
        api.seed(BASE, TABLE, 12)
        writer = RecordsApiWriter(
            url=f"{api.url}/v0/{BASE}/{TABLE}",
            fields={"name": "name"},
            id_column="api_id",
            key_column="record_id",
            external_id="sync_key",
            deleted_column="gone",
            rate_limit=50,
        )
        rows = pa.table(
            {
                "record_id": ["db-1", "db-2", *(record_id(i) for i in range(1, 10)), "x"],
                "api_id": [None, None, *(record_id(i) for i in range(1, 10)), "recMISSING"],
                "name": [f"n{i}" for i in range(12)],
                "gone": [False] * 12,
            }
        )
        first = writer.write(rows)
        assert (first.created, first.updated) == (2, 9)
        assert list(first.failures) == [11] and "ROW_DOES_NOT_EXIST" in first.failures[11]
        again = writer.write(rows.slice(0, 2))  # a re-run after a crash: no duplicate
        assert (again.created, again.updated) == (0, 2)
        made = [r for r in api.records(BASE, TABLE).values() if r["fields"].get("sync_key")]
        assert sorted(r["fields"]["sync_key"] for r in made) == ["db-1", "db-2"]
        api.remove(BASE, TABLE, record_id(12))
        gone = pa.table(
            {
                "record_id": [record_id(12)],
                "api_id": [record_id(12)],
                "name": [None],
                "gone": [True],
            }
        )
        assert writer.write(gone).deleted == 1
        batches = [e.records for e in api.log if e.method == "PATCH"]
        assert max(batches) == 10 and batches[:2] == [10, 2]


def test_change_reader_pages_strictly_after_the_mark_in_order(pg: Any) -> None:
    """Keyset pages of 2 over rows sharing a modified time: every row once, in (modified,
    key) order; from a mark inside the tie only the rows after it; echo rows skipped while the
    mark passes them."""
    from connectors.postgres_changes import ChangeReader

    t = _dt.datetime(2026, 12, 1, tzinfo=_dt.timezone.utc)
    table = f"public.changes_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE TABLE {table} (k text PRIMARY KEY, m timestamptz, echo timestamptz)")
    rows = [("a", 0, None), ("c", 1, None), ("b", 1, None), ("d", 1, 1), ("e", 2, None)]
    with pg.connect() as conn:
        for key, seconds, echo in rows:
            at = t + _dt.timedelta(seconds=seconds)
            conn.execute(
                f"INSERT INTO {table} VALUES (%s, %s, %s)",
                [key, at, at if echo is not None else None],
            )
    settings = PostgresSettings(pg.host, pg.port, pg.dbname, pg.user, EnvSecret(PASSWORD_ENV))
    reader = ChangeReader(settings, table, "k", "m", echo_column="echo", page_size=2)
    pages = list(reader.pages(None))
    assert [p.rows.column("k").to_pylist() for p in pages] == [["a", "b"], ["c"], ["e"]]
    assert [p.echoes for p in pages] == [0, 1, 0]
    assert pages[1].last == (t + _dt.timedelta(seconds=1), "d")  # past the echo row
    after = list(reader.pages((t + _dt.timedelta(seconds=1), "b")))
    assert [k for p in after for k in p.rows.column("k").to_pylist()] == ["c", "e"]
    assert list(reader.pages((t + _dt.timedelta(seconds=2), "e"))) == []


def test_sources_creating_the_state_table_at_once_do_not_collide(pg: Any) -> None:
    """Both sources of a sync read their marks at run start, on different workers, each
    creating the state table when missing: concurrent CREATE TABLE IF NOT EXISTS of one new
    table failed on PostgreSQL's catalog (a duplicate pg_type key, for about half of the
    callers here) until ensure() took an advisory lock. Each caller has its own connection
    pool, as each worker process does."""
    import threading

    from connectors.postgres import pool
    from connectors.sync_state import SyncState

    workers = [
        PostgresSettings(
            pg.host, pg.port, pg.dbname, pg.user, EnvSecret(PASSWORD_ENV), connect_timeout_s=10 + i
        )
        for i in range(4)
    ]
    for settings in workers:  # connected before the race, as a worker that already read
        with pool(settings).connection() as conn:
            conn.execute("SELECT 1")
    failures: list[BaseException] = []
    for _ in range(5):
        table = f"public.sync_state_{uuid.uuid4().hex[:8]}"
        start = threading.Barrier(len(workers))

        def ensure(state: SyncState, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                state.ensure()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

        callers = [
            threading.Thread(target=ensure, args=(SyncState(s, table, "sync"),)) for s in workers
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert SyncState(workers[0], table, "sync").mark("api") is None  # there, no mark yet
    assert failures == []
