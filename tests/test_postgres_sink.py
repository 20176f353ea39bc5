"""The ``postgres`` sink against a real PostgreSQL started for the session
(:mod:`tests.postgres_server`): upserts by key, refused rows isolated and dead-lettered,
re-runs idempotent, lineage naming the table, the password never written anywhere."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.postgres import PostgresConfigError, PostgresSettings
from connectors.postgres_upsert import ConcurrentUpserts, UpsertWriter
from connectors.secrets import EnvSecret
from pipelines.loading import SpecError, spec_from_data
from tests.postgres_server import (
    create_scratch_table,
    password_in_env,
    postgres_server,  # noqa: F401 - a fixture
)

PASSWORD_ENV = "BW_TEST_PG_SINK_PASSWORD"


@pytest.fixture(scope="module")
def pg(postgres_server):  # noqa: F811 - the fixture imported above
    server = postgres_server
    server.execute("DROP SCHEMA IF EXISTS sink CASCADE")
    server.execute("CREATE SCHEMA sink")
    with password_in_env(server, PASSWORD_ENV):
        yield server


@pytest.fixture
def table(pg) -> str:
    return create_scratch_table(
        pg,
        "sink.t",
        """id int8 PRIMARY KEY, name text NOT NULL, amount numeric(12,2),
            score float8, at timestamptz, ok bool, tags jsonb""",
    )


def writer(pg, table: str) -> UpsertWriter:
    settings = PostgresSettings(
        host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=EnvSecret(PASSWORD_ENV)
    )
    return UpsertWriter(settings, table, ["id"], retries=0)


def contents(pg, table: str) -> list[tuple]:
    with pg.connect() as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


AT = dt.datetime(2026, 12, 1, 10, 30, 0, 123456, tzinfo=dt.timezone.utc)


def test_upsert_types_counts_and_refused_rows(pg, table):
    w = writer(pg, table)
    rows = pa.table(
        {
            "id": [1, 2, 2, None, 3, 4],
            "name": ["a", "b", "b2", "x", None, ""],
            "amount": pa.array([1.5, 2, 3, 4, 5, 6]).cast(pa.decimal128(12, 2)),
            "score": [0.5, None, 0.25, 1.0, 1.0, 1.0],
            "at": pa.array([AT] * 6, pa.timestamp("us", tz="UTC")),
            "ok": [True, False, None, True, True, False],
            "tags": pa.array([["x", "y"], [], None, None, None, None], pa.list_(pa.string())),
        }
    )
    result = w.write(rows)
    assert (result.created, result.updated, result.superseded) == (3, 0, 1)
    assert result.failures == {
        3: "key id is null",
        4: 'null value in column "name" of relation "t_'
        + table.split("_")[1]
        + '" violates not-null constraint',
    }
    assert contents(pg, table) == [
        (1, "a", decimal.Decimal("1.50"), 0.5, AT, True, ["x", "y"]),
        (2, "b2", decimal.Decimal("3.00"), 0.25, AT, None, None),
        (4, "", decimal.Decimal("6.00"), 1.0, AT, False, None),
    ]
    again = w.write(rows.slice(0, 3))  # a retried batch: same rows, same values
    assert (again.created, again.updated, again.superseded) == (0, 2, 1)
    assert len(contents(pg, table)) == 3
    partial = w.write(pa.table({"id": [1, 9], "score": [9.0, 1.0], "name": ["a", "n"]}))
    assert (partial.created, partial.updated) == (1, 1)
    assert contents(pg, table)[0][:4] == (1, "a", decimal.Decimal("1.50"), 9.0)  # others kept


def test_a_value_the_column_type_refuses_is_isolated(pg, table):
    rows = pa.table({"id": list(range(1, 21)), "name": ["n"] * 20, "amount": ["1.5"] * 20})
    rows = rows.set_column(2, "amount", pa.array(["1.5"] * 7 + ["lots"] + ["2"] * 12))
    result = writer(pg, table).write(rows)
    assert list(result.failures) == [7]
    assert "invalid input syntax for type numeric" in result.failures[7]
    assert result.created == 19 and len(contents(pg, table)) == 19


def test_unknown_fields_and_missing_keys_are_config_errors(pg, table):
    w = writer(pg, table)
    with pytest.raises(PostgresConfigError, match="no column for"):
        w.write(pa.table({"id": [1], "name": ["a"], "colour": ["red"]}))
    settings = w.settings
    with pytest.raises(PostgresConfigError, match="no key column"):
        UpsertWriter(settings, table, ["nope"]).write(pa.table({"id": [1]}))


class _TimedWriter(UpsertWriter):
    """A real writer that notes when each batch (by its first name) started and ended, and
    holds the batches named in ``slow`` back a moment before writing them."""

    def __init__(self, *args, slow: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slow = slow
        self.times: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def write(self, rows: pa.Table):
        name = rows.column("name")[0].as_py()
        start = time.monotonic()
        if name in self.slow:
            time.sleep(0.4)
        try:
            return super().write(rows)
        finally:
            with self.lock:
                self.times[name] = (start, time.monotonic())


def test_concurrent_batches_overlap_unless_they_share_a_key(pg, table):
    w = writer(pg, table)
    timed = _TimedWriter(w.settings, table, ["id"], retries=0, slow=("a",))
    upserts = ConcurrentUpserts(timed, depth=2)
    batches = {  # c shares ids 1..10 with a: it must wait for a, so its values win
        "a": pa.table({"id": range(1, 1001), "name": ["a"] * 1000}),
        "b": pa.table({"id": range(1001, 2001), "name": ["b"] * 1000}),
        "c": pa.table({"id": range(1, 11), "name": ["c"] * 10, "score": [2.0] * 10}),
    }
    done = []
    for name, rows in batches.items():
        done += upserts.put(rows, name)
    done += upserts.drain()
    assert [(tag, r.created, r.updated) for tag, r in done] == [
        ("a", 1000, 0),
        ("b", 1000, 0),
        ("c", 0, 10),
    ]
    assert timed.times["b"][0] < timed.times["a"][1]  # b ran while a was held back
    assert timed.times["c"][0] >= timed.times["a"][1]  # c waited for a
    rows = contents(pg, table)
    assert len(rows) == 2000
    assert {r[1] for r in rows[:10]} == {"c"} and {r[1] for r in rows[10:1000]} == {"a"}
    with pytest.raises(PostgresConfigError, match="no column for"):  # a batch's error is raised
        upserts.put(pa.table({"id": [5000], "name": ["x"], "colour": ["red"]}), "bad")
        upserts.drain()
    upserts.close()


def spec(tmp_path: Path, pg, table: str, rows: list[dict]) -> dict:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "name": "pg_upsert",
        "sources": [{"name": "contacts", "type": "file", "path": str(src)}],
        "sinks": [
            {
                "name": "db",
                "type": "postgres",
                "connection": pg.connection_spec(PASSWORD_ENV),
                "table": table,
                "key": "id",
            }
        ],
        "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl"},
        "run": {"error_threshold": 0.9},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
    }


def test_spec_run_upserts_dead_letters_and_names_the_table_in_lineage(pg, table, tmp_path):
    from pipelines.run import run_spec

    rows = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(1, 8)]
    rows.append({"id": 8, "name": None, "score": 1.0})
    for attempt in range(2):  # the second run rewrites the same rows: nothing new
        out = tmp_path / f"run{attempt}"
        out.mkdir()
        summary = run_spec(spec_from_data(spec(out, pg, table, rows)))
        node = summary.node("db")
        assert (node.rows_in, node.rows_dead_lettered) == (8, 1), node
        assert node.stats == ({"created": 7} if attempt == 0 else {"updated": 7}), node
        assert contents(pg, table)[-1][:2] == (7, "n7") and len(contents(pg, table)) == 7
        dead = [json.loads(line) for f in (out / "dead").rglob("*.jsonl") for line in f.open()]
        assert [(d["step"], d["rule"], json.loads(d["payloadString"])["id"]) for d in dead] == [
            ("db", "upsert", 8)
        ]
        assert "not-null constraint" in dead[0]["errorMessage"]
        events = [json.loads(line) for line in (out / "events.jsonl").open()]
        assert events[-1]["eventType"] == "COMPLETE"
        (target,) = [d for d in events[-1]["outputs"] if d["namespace"].startswith("postgres://")]
        assert target["namespace"] == f"postgres://{pg.host}:{pg.port}"
        assert target["name"] == f"{pg.dbname}.{table}"
        assert [f["name"] for f in target["facets"]["schema"]["fields"]][:3] == [
            "id",
            "name",
            "amount",
        ]
        written = [p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()]
        assert not any(pg.password in text for text in written)


def test_spec_refuses_bad_table_and_key_names(pg, tmp_path):
    data = spec(tmp_path, pg, "sink.t; drop", [{"id": 1}])
    with pytest.raises(SpecError, match="is not a table name"):
        spec_from_data(data)
    data = spec(tmp_path, pg, "sink.t", [{"id": 1}])
    data["sinks"][0]["key"] = []
    with pytest.raises(SpecError, match="at least one column"):
        spec_from_data(data)
