"""The ``postgres`` lookup step against a real PostgreSQL started for the session
(:mod:`tests.postgres_server`): types, keys, misses, counts, lineage, secrets, outages."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.postgres import PostgresConfigError, PostgresError, PostgresSettings, close_pools
from connectors.records import with_positions
from connectors.secrets import EnvSecret
from pipelines.loading import SpecError, spec_from_data
from tests.postgres_server import postgres_server, start_or_skip  # noqa: F401 - a fixture
from transforms.postgres_lookup import PostgresJoiner

PASSWORD_ENV = "BW_TEST_PG_PASSWORD"


@pytest.fixture(scope="module")
def pg(postgres_server):  # noqa: F811 - the fixture imported above
    """The session server with this module's tables, its password in ``PASSWORD_ENV``."""
    server = postgres_server
    server.execute("DROP SCHEMA IF EXISTS shop CASCADE")
    server.execute("CREATE SCHEMA shop")
    server.execute(
        """CREATE TABLE shop.customers (
            id int8 PRIMARY KEY, name text, tier varchar(10), credit numeric(12,2),
            score float8, active bool, since date)"""
    )
    server.execute(
        """INSERT INTO shop.customers VALUES
            (1, 'Ann', 'gold', 100.50, 0.5, true, '2020-01-02'),
            (2, 'Bob', 'silver', NULL, NULL, false, NULL),
            (3, '', NULL, 0, -1.25, NULL, '1999-12-31')"""
    )
    server.execute(
        """CREATE TABLE shop.prices (sku text, region char(2), price numeric(8,2),
            PRIMARY KEY (sku, region))"""
    )
    server.execute(
        "INSERT INTO shop.prices VALUES ('a', 'EU', 1.50), ('a', 'US', 2.00), ('b', 'EU', 3.25)"
    )
    server.execute(
        "CREATE TABLE shop.big AS SELECT i::int4 AS id, 'v' || i AS label "
        "FROM generate_series(1, 100000) i"
    )
    server.execute("ALTER TABLE shop.big ADD PRIMARY KEY (id)")
    os.environ[PASSWORD_ENV] = server.password
    yield server
    close_pools()
    os.environ.pop(PASSWORD_ENV, None)


def settings(server, **overrides) -> PostgresSettings:
    values = {
        "host": server.host,
        "port": server.port,
        "dbname": server.dbname,
        "user": server.user,
        "password": EnvSecret(PASSWORD_ENV),
    }
    return PostgresSettings(**{**values, **overrides})


def batch(rows: list[dict], schema: pa.Schema | None = None) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    return with_positions(table, "in.jsonl", range(1, len(rows) + 1))


def joiner(server, **options) -> PostgresJoiner:
    processor = PostgresJoiner(settings=settings(server), **options)
    processor.setup()
    return processor


def user_rows(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_bw")} for r in table.to_pylist()]


# --------------------------------------------------------------------------- types


def test_column_types_round_trip(pg):
    pg.execute(
        """CREATE TABLE IF NOT EXISTS shop.types (
            k int4 PRIMARY KEY, i2 int2, i8 int8, f4 float4, f8 float8, n numeric(10,3),
            nu numeric, t text, vc varchar(20), c char(3), b bool, d date, ts timestamp,
            tz timestamptz, j jsonb, u uuid, iv interval)"""
    )
    pg.execute("TRUNCATE shop.types")
    pg.execute(
        """INSERT INTO shop.types VALUES
          (1, -7, 9000000000, 1.5, 'NaN', 12.345, 1.5e20, 'a,"b"' || chr(10) || 'c', '', 'xy',
           true, '2024-02-29', '2024-01-01 10:11:12.345678', '2024-06-01 12:00:00+02',
           '{"a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day'),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL)"""
    )
    step = joiner(pg, step_name="types", table="shop.types", keys=["k"])
    rows = step.process(batch([{"k": 1}, {"k": 2}])).rows
    types = {f.name: f.type for f in rows.schema}
    assert types == {
        "k": pa.int64(),
        "i2": pa.int16(),
        "i8": pa.int64(),
        "f4": pa.float32(),
        "f8": pa.float64(),
        "n": pa.decimal128(10, 3),
        "nu": pa.float64(),
        "t": pa.string(),
        "vc": pa.string(),
        "c": pa.string(),
        "b": pa.bool_(),
        "d": pa.date32(),
        "ts": pa.timestamp("us"),
        "tz": pa.timestamp("us", tz="UTC"),
        "j": pa.string(),
        "u": pa.string(),
        "iv": pa.string(),
        "_bw_source": rows.schema.field("_bw_source").type,
        "_bw_offset": pa.int64(),
    }
    first, second = user_rows(rows)
    assert first["i2"] == -7 and first["i8"] == 9_000_000_000 and first["f4"] == 1.5
    assert first["f8"] != first["f8"]  # NaN
    assert first["n"] == decimal.Decimal("12.345") and first["nu"] == 1.5e20
    assert first["t"] == 'a,"b"\nc' and first["vc"] == "" and first["c"] == "xy"
    assert first["b"] is True and first["d"] == dt.date(2024, 2, 29)
    assert first["ts"] == dt.datetime(2024, 1, 1, 10, 11, 12, 345678)
    assert first["tz"] == dt.datetime(2024, 6, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert json.loads(first["j"]) == {"a": [1, 2]}
    assert first["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and first["iv"] == "P1D"
    assert all(v is None for k, v in second.items() if k != "k")  # NULL stays null, "" stays ""
    # char(n) comes back as PostgreSQL's text form of it: trailing blanks are not significant


def test_values_arrow_cannot_hold_fail_naming_the_column(pg):
    pg.execute("CREATE TABLE IF NOT EXISTS shop.odd (k int4, d date, n numeric(6,2))")
    pg.execute("TRUNCATE shop.odd")
    pg.execute("INSERT INTO shop.odd VALUES (1, 'infinity', 1), (2, '2024-01-01', 'NaN')")
    step = joiner(pg, step_name="odd", table="shop.odd", keys=["k"], fields=["d"])
    with pytest.raises(PostgresError, match=r"shop.odd does not fit .*column d: .*'infinity'"):
        step.process(batch([{"k": 1}]))
    step = joiner(pg, step_name="odd", table="shop.odd", keys=["k"], fields=["n"])
    with pytest.raises(PostgresError, match=r"column n: .*'NaN'"):
        step.process(batch([{"k": 2}]))


# --------------------------------------------------------------------------- keys and misses


def test_multi_column_keys_and_key_types_cast_to_the_tables(pg):
    step = joiner(pg, step_name="price", table="shop.prices", keys=["sku", "region"], prefix="p_")
    rows = [
        {"sku": "a", "region": "US", "qty": 1},
        {"sku": "b", "region": "EU", "qty": 2},
        {"sku": "b", "region": "US", "qty": 3},
        {"sku": "a", "region": "EU", "qty": 4},
    ]
    result = step.process(batch(rows))
    assert [(r["sku"], r["region"], r["p_price"]) for r in user_rows(result.rows)] == [
        ("a", "US", decimal.Decimal("2.00")),
        ("b", "EU", decimal.Decimal("3.25")),
        ("b", "US", None),
        ("a", "EU", decimal.Decimal("1.50")),
    ]
    # int64 table keys looked up with text keys from a CSV: cast, and "x" matches nothing
    step = joiner(pg, step_name="c", table="shop.customers", keys=["id"], fields=["name"])
    result = step.process(batch([{"id": "2"}, {"id": "x"}, {"id": "1"}]))
    assert [r["name"] for r in user_rows(result.rows)] == ["Bob", None, "Ann"]


@pytest.mark.parametrize(
    "mode, kept, dead, filtered", [("keep", 5, 0, 0), ("reject", 2, 3, 0), ("drop", 2, 0, 3)]
)
def test_on_missing_modes_reconcile(pg, mode, kept, dead, filtered):
    step = joiner(
        pg,
        step_name="enrich",
        table="shop.customers",
        keys=["id"],
        on_missing=mode,
        fields=["name", "tier"],
    )
    table = batch(
        [
            {"id": 1, "x": "a"},
            {"id": 99, "x": "b"},
            {"id": None, "x": "c"},
            {"id": 3, "x": "d"},
            {"id": 98, "x": "e"},
        ],
        pa.schema([("id", pa.int64()), ("x", pa.string())]),
    )
    result = step.process(table)
    assert result.rows.num_rows == kept and result.dead_letters.num_rows == dead
    assert result.filtered == filtered
    assert table.num_rows == kept + dead + filtered
    if mode == "keep":
        assert [r["name"] for r in user_rows(result.rows)] == ["Ann", None, None, "", None]
    else:
        assert [r["x"] for r in user_rows(result.rows)] == ["a", "d"]
    if mode == "reject":
        letters = result.dead_letters.to_pylist()
        assert [r["errorMessage"] for r in letters] == [
            "no row in shop.customers for id=99",
            "no row in shop.customers for id=null",
            "no row in shop.customers for id=98",
        ]
        assert [r["offset"] for r in letters] == [2, 3, 5]
        assert [json.loads(r["payloadString"])["x"] for r in letters] == ["b", "c", "e"]
        assert {r["rule"] for r in letters} == {"no_match"} and result.rule_failures == {
            "no_match": 3
        }


def test_duplicate_input_keys_are_asked_once_and_keep_order(pg):
    step = joiner(pg, step_name="d", table="shop.customers", keys=["id"], fields=["name"])
    ids = [3, 1, 3, 2, 1, 1]
    result = step.process(batch([{"id": i} for i in ids]))
    assert [r["name"] for r in user_rows(result.rows)] == ["", "Ann", "", "Bob", "Ann", "Ann"]
    assert step.reader.queries == 1


def test_duplicate_table_keys_never_multiply_rows(pg):
    pg.execute("CREATE TABLE IF NOT EXISTS shop.dupes (a int4, b text, v text)")
    pg.execute("TRUNCATE shop.dupes")
    pg.execute("INSERT INTO shop.dupes VALUES (1, 'x', 'one'), (1, 'x', 'uno'), (2, 'y', 'two')")
    rows = batch([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 1, "b": "y"}])
    for keys, third in ((["a"], "same as the first"), (["a", "b"], None)):
        step = joiner(pg, step_name="d", table="shop.dupes", keys=keys, fields=["v"])
        values = [r["v"] for r in user_rows(step.process(rows).rows)]
        assert len(values) == 3 and values[0] in ("one", "uno") and values[1] == "two"
        assert values[2] == (values[0] if third else None)


def test_100k_row_table_in_one_query(pg):
    step = joiner(pg, step_name="big", table="shop.big", keys=["id"], on_missing="reject")
    ids = pa.array(list(range(100_000, 0, -1)) + [0, 100_001], pa.int64())
    result = step.process(with_positions(pa.table({"id": ids}), "in", range(len(ids))))
    assert result.rows.num_rows == 100_000 and result.dead_letters.num_rows == 2
    assert result.rows.column("label")[0].as_py() == "v100000"
    assert step.reader.queries == 1


def test_name_clash_and_unknown_columns_are_clear(pg):
    step = joiner(pg, step_name="c", table="shop.customers", keys=["id"], fields=["name"])
    with pytest.raises(PostgresConfigError, match=r"\['name'\] already exist.*prefix"):
        step.process(batch([{"id": 1, "name": "x"}]))
    step = joiner(pg, step_name="c", table="shop.customers", keys=["id"], fields=["nope"])
    with pytest.raises(PostgresConfigError, match=r"no column\(s\) \['nope'\]"):
        step.process(batch([{"id": 1}]))
    step = joiner(pg, step_name="c", table="shop.missing", keys=["id"])
    with pytest.raises(PostgresConfigError, match="shop.missing does not exist"):
        step.process(batch([{"id": 1}]))


# --------------------------------------------------------------------------- spec


def base_spec(tmp_path: Path, server, step: dict, rows: list[dict]) -> dict:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "name": "pg_enrich",
        "sources": [{"name": "orders", "type": "file", "path": str(src)}],
        "steps": [
            {
                "name": "enrich",
                "type": "postgres",
                "connection": server.connection_spec(PASSWORD_ENV),
                **step,
            }
        ],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl"},
        "run": {"error_threshold": 0.9},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
    }


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.rglob("*.jsonl")) for line in f.open()]


def test_spec_run_counts_lineage_and_the_password_never_shows(
    pg, tmp_path, caplog, capfd, monkeypatch
):
    from pipelines.run import run_spec

    canary = f"CANARY-{uuid.uuid4().hex}"
    role = f"reader_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{canary}'")
    pg.execute(f"GRANT USAGE ON SCHEMA shop TO {role}")
    pg.execute(f"GRANT SELECT ON shop.customers TO {role}")
    monkeypatch.setenv("BW_TEST_PG_CANARY", canary)
    rows = [{"id": i, "amount": i * 10} for i in (1, 2, 3, 4, 5, 1)]
    data = base_spec(
        tmp_path,
        pg,
        {
            "table": "shop.customers",
            "on": "id",
            "fields": ["name", "tier"],
            "prefix": "c_",
            "on_missing": "reject",
        },
        rows,
    )
    data["steps"][0]["connection"]["user"] = role
    data["steps"][0]["connection"]["password"] = {"env": "BW_TEST_PG_CANARY"}
    caplog.set_level(logging.DEBUG)
    summary = run_spec(spec_from_data(data))
    node = summary.node("enrich")
    assert (node.rows_in, node.rows_out, node.rows_dead_lettered) == (6, 4, 2)
    assert node.reconciled and node.rules == {"no_match": 2}
    out = read_jsonl(tmp_path / "out")
    assert sorted((r["id"], r["c_name"], r["c_tier"]) for r in out) == [
        (1, "Ann", "gold"),
        (1, "Ann", "gold"),
        (2, "Bob", "silver"),
        (3, "", None),
    ]
    dead = read_jsonl(tmp_path / "dead")
    assert sorted(r["errorMessage"] for r in dead) == [
        "no row in shop.customers for id=4",
        "no row in shop.customers for id=5",
    ]
    assert all(r["step"] == "enrich" and r["offset"] in (4, 5) for r in dead)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").open()]
    complete = events[-1]
    assert complete["eventType"] == "COMPLETE"
    (table,) = [d for d in complete["inputs"] if d["namespace"].startswith("postgres://")]
    assert table["namespace"] == f"postgres://{pg.host}:{pg.port}"
    assert table["name"] == f"{pg.dbname}.shop.customers"
    assert [f["name"] for f in table["facets"]["schema"]["fields"]] == ["id", "name", "tier"]
    assert "dataQualityAssertions" not in table.get("inputFacets", {})
    (output,) = [d for d in complete["outputs"] if d["name"].endswith("out")]
    lineage = output["facets"]["columnLineage"]
    (origin,) = lineage["fields"]["c_name"]["inputFields"]
    assert (origin["namespace"], origin["name"], origin["field"]) == (
        table["namespace"],
        table["name"],
        "name",
    )
    joins = [
        (f["name"], f["field"], t["subtype"])
        for f in lineage["dataset"]
        for t in f["transformations"]
    ]
    source = str(tmp_path / "in.jsonl")
    assert {(table["name"], "id", "JOIN"), (source, "id", "JOIN"), (source, "id", "FILTER")} <= set(
        joins
    )
    summary_json = tmp_path / "summary.json"
    summary.write_json(summary_json)
    captured = capfd.readouterr()
    everything = [
        captured.out,
        captured.err,
        caplog.text,
        (tmp_path / "events.jsonl").read_text(),
        summary_json.read_text(),
        *(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()),
    ]
    assert canary.encode() not in b"".join(s.encode() for s in everything)
    assert sum(canary in s for s in everything) == 0


def test_spec_errors_name_the_path_and_the_fix(pg, tmp_path):
    def problems(step: dict) -> str:
        with pytest.raises(SpecError) as info:
            spec_from_data(base_spec(tmp_path, pg, step, [{"id": 1}]))
        return str(info.value)

    text = problems({"table": "shop.customers; DROP TABLE x", "on": "id"})
    assert "steps[0]" in text and "table" in text and "schema.table" in text
    assert "not a table name" in problems({"table": "a.b.c", "on": "id"})
    assert "'fields' is empty" in problems({"table": "t", "on": "id", "fields": []})
    assert "are keys" in problems({"table": "t", "on": "id", "fields": ["id", "name"]})
    assert "plain column name" in problems({"table": "t", "on": 'id" OR 1=1 --'})
    assert "did you mean 'on_missing'" in problems({"table": "t", "on": "id", "on_mising": "x"})


def test_validate_checks_fields_downstream_and_deep_asks_the_server(pg, tmp_path):
    from pipelines.checks import deep_problems, static_problems
    from pipelines.column_lineage import walk

    def spec(step: dict, derive: str):
        data = base_spec(tmp_path, pg, step, [{"id": 1}])
        (tmp_path / "in.csv").write_text("id\n1\n")  # a CSV header: the fields are known
        data["sources"][0]["path"] = str(tmp_path / "in.csv")
        data["steps"].append({"name": "shout", "type": "map", "derive": {"u": derive}})
        return spec_from_data(data)

    named = {"table": "shop.customers", "on": "id", "fields": ["name"], "prefix": "c_"}
    assert static_problems(spec(named, "upper(c_name)")) == []
    assert static_problems(spec(named, "upper(c_nme)")) == [
        "steps[1].derive.u: unknown field 'c_nme'; did you mean 'c_name'?"
    ]
    assert deep_problems(spec(named, "upper(c_name)")) == []
    (problem,) = deep_problems(spec({**named, "fields": ["nope"]}, "upper(id)"))
    assert problem.startswith("steps[0]: table shop.customers has no column(s) ['nope']")
    # every column (no 'fields'): known only when lineage has the table's schema
    every = spec({"table": "shop.customers", "on": "id"}, "upper(tier)")
    state = walk(every, {"orders": ["id"], "enrich": ["id", "name", "tier"]}, ["orders"])
    added = state.states["enrich"].fields
    assert sorted(added) == ["id", "name", "tier"]
    assert [(o.source, o.field) for o in added["tier"]] == [("enrich", "tier")]
    assert walk(every, {"orders": ["id"]}, ["orders"]).states["enrich"].complete is False


def test_server_down_fails_the_run_with_the_address(tmp_path):
    from pipelines.run import run_spec

    server = start_or_skip()
    try:
        server.execute("CREATE TABLE t (id int8 PRIMARY KEY, v text)")
        server.execute("INSERT INTO t VALUES (1, 'one')")
        os.environ["BW_TEST_PG_DOWN"] = server.password
        step = PostgresJoiner(
            settings=PostgresSettings(
                server.host,
                server.port,
                server.dbname,
                server.user,
                EnvSecret("BW_TEST_PG_DOWN"),
                connect_timeout_s=1,
            ),
            step_name="down",
            table="t",
            keys=["id"],
            retries=1,
            backoff_s=0.05,
        )
        step.setup()
        assert user_rows(step.process(batch([{"id": 1}])).rows) == [{"id": 1, "v": "one"}]
        server.stop(remove=False)  # mid-run: the pool's connection dies with the server
        with pytest.raises(PostgresError) as info:
            step.process(batch([{"id": 1}]))
        message = str(info.value)
        assert f"{server.host}:{server.port}/{server.dbname}" in message
        assert "failed 2 time(s)" in message and server.password not in message
        server.start()  # back: the pool reconnects, the next batch works
        assert user_rows(step.process(batch([{"id": 1}])).rows) == [{"id": 1, "v": "one"}]
        server.stop(remove=False)
        data = base_spec(tmp_path, server, {"table": "t", "on": "id", "retries": 0}, [{"id": 1}])
        data["steps"][0]["connection"]["password"] = {"env": "BW_TEST_PG_DOWN"}
        data["steps"][0]["connection"]["connect_timeout_s"] = 1
        # a run finds it down at its start (one connection, before any pool): one line
        with pytest.raises(PostgresError) as failed:
            run_spec(spec_from_data(data))
        assert f"steps[0].connection: cannot connect to PostgreSQL at {server.host}:{server.port}" in str(failed.value)
    finally:
        close_pools()
        server.stop()
        os.environ.pop("BW_TEST_PG_DOWN", None)


def test_beam_transform_counts_queries_keys_and_misses(pg):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.postgres_lookup import PostgresLookup

    batches = [batch([{"id": 1}, {"id": 7}, {"id": 1}]), batch([{"id": 2}, {"id": None}])]
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create(batches)
        | PostgresLookup(
            step_name="enrich",
            settings=settings(pg),
            table="shop.customers",
            keys=["id"],
            fields=["name"],
            on_missing="drop",
        )
    )
    assert_that(
        out.rows | beam.FlatMap(user_rows),
        equal_to([{"id": 1, "name": "Ann"}, {"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]),
    )
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("beamwright"))["counters"]
    }
    assert counters["enrich/lookup/queries"] == 2
    assert counters["enrich/lookup/keys"] == 3  # 1 and 7, then 2: nulls are never asked
    assert counters["enrich/lookup/rows_looked_up"] == 5
    assert counters["enrich/lookup/misses"] == 2
    assert counters["enrich/rows_in"] == 5 and counters["enrich/rows_filtered"] == 2
    assert counters["enrich/rows_out"] == 3


def test_a_port_taken_before_the_server_binds_is_retried_and_a_failed_start_is_no_skip(
    monkeypatch,
):
    """On a shared machine another process may take the free port first: the server moves to
    another one. A server that cannot start at all raises PostgresStartFailed (a failure),
    never PostgresUnavailable (which skips)."""
    import socket

    from pipelines.dev import postgres_server as ps

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = ps.free_port
        monkeypatch.setattr(ps, "free_port", lambda: next(ports, None) or real())
        try:
            server = ps.TempPostgres().start()
        except ps.PostgresUnavailable as exc:
            pytest.skip(str(exc))
        try:
            assert server.port != taken.getsockname()[1] and server.running
        finally:
            server.stop()
        with pytest.raises(ps.PostgresStartFailed, match="already in use"):
            ps.TempPostgres(port=taken.getsockname()[1]).start()
