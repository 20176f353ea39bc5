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
    FIELDS,
    SYNC_INDEX_SQL,
    SYNC_TABLE_SQL,
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
        start_marks(settings, self.state, n)

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
        """Edits on both sides: 1 % API only, 1 % table only, 1 % both (the table's edit
        later), two creates and one delete per side. Returns the keys by kind."""
        m = max(2, self.n // 100)
        picked = [record_id(i) for i in rng.sample(range(1, self.n + 1), 3 * m + 2)]
        api_only, db_only, both = picked[:m], picked[m : 2 * m], picked[2 * m : 3 * m]
        api_gone, db_gone = picked[3 * m], picked[3 * m + 1]
        records = self.api.records(BASE, TABLE)
        for rid in api_only + both:
            if rid in records:
                self.api.edit(BASE, TABLE, rid, {"status": f"api {tag}", "amount": 1.5})
        self.api.remove(BASE, TABLE, api_gone)
        made = [self.api.add(BASE, TABLE, {"name": f"api new {tag} {k}"})["id"] for k in (1, 2)]
        time.sleep(0.01)  # the table's edits are later than the API's (newest_wins: the table)
        with self.pg.connect() as conn:
            conn.execute(
                f"UPDATE {self.table} SET notes = %s, modified_at = clock_timestamp() "
                "WHERE record_id = ANY(%s) AND NOT api_deleted",
                [f"db {tag}", db_only + both],
            )
            conn.execute(
                f"UPDATE {self.table} SET api_deleted = true, modified_at = clock_timestamp() "
                "WHERE record_id = %s",
                [db_gone],
            )
            for k in (1, 2):
                conn.execute(
                    f"INSERT INTO {self.table} (record_id, name, amount) VALUES (%s, %s, %s)",
                    [f"db-{tag}-{k}", f"db new {tag} {k}", k / 4],
                )
        return {"api": api_only, "db": db_only, "both": both, "api_new": made}

    def assert_agree(self, except_keys: set[str] = frozenset()) -> None:
        """Live API records and live rows hold the same keys and fields (bar ``except_keys``);
        every row deleted on one side is deleted on the other."""
        api_live = {}
        for rid, record in self.api.records(BASE, TABLE).items():
            key = record["fields"].get("sync_key") or rid
            api_live[key] = tuple(record["fields"].get(f) for f in FIELDS)
        rows = self.rows()
        db_live = {k: tuple(r[f] for f in FIELDS) for k, r in rows.items() if not r["api_deleted"]}
        assert sorted(set(api_live) - except_keys) == sorted(set(db_live) - except_keys)
        different = [k for k in api_live if k not in except_keys and api_live[k] != db_live[k]]
        assert different == []
        for key in except_keys:
            assert api_live.get(key) != db_live.get(key), key


def api_server(monkeypatch: Any) -> RecordsApi:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return RecordsApi(token=TOKEN, retry_after=0.2)


@pytest.mark.slow
def test_one_sync_makes_both_sides_agree_but_manual_conflicts(
    pg: Any, tmp_path: Path, monkeypatch: Any
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
        # the API's log: never over its limit, and the sync's writes 10 records a request
        assert api.busiest_second(BASE) <= 5
        writes = [e for e in api.log if e.method in ("PATCH", "DELETE")]
        assert writes and max(e.records for e in writes) <= 10
        # a second sync finds nothing new: its own writes are echoes, not changes
        api.reset_log()
        again = pair.sync(conflicts="manual")
        assert not {
            k: v
            for k, v in again.node("reconcile").stats.items()
            if k.startswith(("db_", "api_", "conflict"))
        }
        assert [e.method for e in api.log] == ["GET"]
        print(f"{RECORDS} records a side: one sync {took:.1f} s, {len(writes)} API writes")


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
        pair = Pair(pg, api, max(200, RECORDS // 4), tmp_path)
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
