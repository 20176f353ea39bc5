"""``beamwright bench --postgres-upsert``: the ``postgres`` sink against plain psycopg loops.

A throw-away PostgreSQL (:mod:`pipelines.dev.postgres_server`) gets a ``contacts`` table
(``id`` int8 primary key, text, numeric(12,2), float8, timestamptz, bool) and a Parquet file
of ``rows`` rows. Each case starts from an empty table and writes every row twice: the first
pass inserts, the second updates every row (new values), so both halves of an upsert are
measured:

- ``pipeline``: the spec a user writes, Parquet -> ``postgres`` sink, through ``run_spec``
  (Beam start-up included), once per pass;
- ``plain_copy``: the same upsert written by hand in one process: per batch, psycopg's
  ``copy.write_row`` for each row into a temp table, then the same ``INSERT ... ON CONFLICT``;
- ``plain_executemany``: ``cursor.executemany`` of ``INSERT ... ON CONFLICT`` over the first
  ``executemany_rows`` rows only (it is far slower; its rate is what is compared).

Rows/s is rows over wall time per pass; the target (:data:`TARGET_ROWS_PER_S`) is judged on
the pipeline's slower pass. Beside it, each pipeline pass reports the CPU seconds it took in
this process (Beam's worker threads run here) and in the PostgreSQL server (every process of
the cluster, from ``/proc``), and rows per CPU-second of both: on a shared machine the wall
rate moves with the load, the CPU cost much less. The cluster runs with
:mod:`pipelines.dev.postgres_server`'s settings (``fsync``, ``synchronous_commit`` and
``full_page_writes`` off: a throw-away cluster), everything else PostgreSQL's defaults.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

TARGET_ROWS_PER_S = 100_000
PASSWORD_ENV = "BEAMWRIGHT_BENCH_PG_PASSWORD"
TABLE_SQL = (
    "CREATE TABLE {name} (id int8 PRIMARY KEY, name text NOT NULL, amount numeric(12,2), "
    "score float8, updated_at timestamptz, active bool)"
)
COLUMNS = "id, name, amount, score, updated_at, active"
UPSERT_SQL = (
    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} ON CONFLICT (id) DO UPDATE SET "
    "name = EXCLUDED.name, amount = EXCLUDED.amount, score = EXCLUDED.score, "
    "updated_at = EXCLUDED.updated_at, active = EXCLUDED.active"
)


def _rows(path: Path, rows: int, generation: int) -> None:
    """Parquet of ``rows`` contacts; ``generation`` changes every non-key value."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = np.arange(1, rows + 1, dtype=np.int64)
    rng = np.random.default_rng(generation)
    names = pc.binary_join_element_wise(
        f"contact-{generation}-", pa.array(ids).cast(pa.string()), ""
    )
    start = 1_796_000_000_000_000 + generation * 1_000_000
    table = pa.table(
        {
            "id": pa.array(ids),
            "name": names,
            "amount": pa.array(((ids * 37 + generation) % 100_000) / 4).cast(pa.decimal128(12, 2)),
            "score": pa.array(rng.random(rows)),
            "updated_at": pa.array(start + ids, pa.timestamp("us", tz="UTC")),
            "active": pa.array((ids + generation) % 2 == 0),
        }
    )
    pq.write_table(table, path)


def _spec(server: Any, source: Path, out: Path, table: str, batch_size: int, workers: int) -> Any:
    from pipelines.spec import PipelineSpec

    return PipelineSpec.model_validate(
        {
            "name": "bench_postgres_upsert",
            "run": {"batch_size": batch_size, "direct_num_workers": workers},
            "sources": [{"name": "contacts", "type": "file", "path": str(source)}],
            "sinks": [
                {
                    "name": "db",
                    "type": "postgres",
                    "connection": server.connection_spec(PASSWORD_ENV),
                    "table": table,
                    "key": "id",
                }
            ],
            "dead_letter": {"path": str(out / "dead")},
            "lineage": {"enabled": False},
        }
    )


def _server_cpu_s(server: Any) -> float:
    """CPU seconds used so far by the cluster: the postmaster, its live children (backends,
    background workers) and its children already ended (counted into the postmaster's
    ``cutime``/``cstime`` when reaped)."""
    pid = server.postmaster_pid()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        this = int(stat.parent.name)
        if this == pid:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _checkpoints(server: Any) -> int:
    """Checkpoints the cluster has made (timed and requested): one in a pass means its
    dirty pages were written out while the pass ran."""
    with server.connect() as conn:
        row = conn.execute(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        ).fetchone()
    return int(row[0])


def _plain_copy(server: Any, source: Path, table: str, batch_size: int) -> float:
    """Seconds to upsert ``source`` by hand: COPY row by row into a temp table, then upsert."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    with server.connect() as conn:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size):
            with conn.transaction():
                conn.execute(
                    f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT {COLUMNS} FROM {table} "
                    "WITH NO DATA"
                )
                with conn.cursor().copy(f"COPY stage ({COLUMNS}) FROM STDIN") as copy:
                    for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                        copy.write_row(row)
                conn.execute(UPSERT_SQL.format(target=table, cols=COLUMNS, source="stage"))
    return time.perf_counter() - t0


def _plain_executemany(server: Any, source: Path, table: str, rows: int) -> float:
    """Seconds to upsert the first ``rows`` rows with ``executemany``."""
    import pyarrow.parquet as pq

    data = pq.read_table(source).slice(0, rows)
    values = list(zip(*(c.to_pylist() for c in data.columns), strict=True))
    sql = (
        f"INSERT INTO {table} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) "
        "DO UPDATE SET name = EXCLUDED.name, amount = EXCLUDED.amount, score = EXCLUDED.score, "
        "updated_at = EXCLUDED.updated_at, active = EXCLUDED.active"
    )
    t0 = time.perf_counter()
    with server.connect() as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(sql, values)
    return time.perf_counter() - t0


def postgres_upsert_bench(
    work: Path,
    rows: int = 1_000_000,
    batch_size: int = 125_000,
    workers: int = 2,
    executemany_rows: int = 50_000,
) -> dict[str, Any]:
    """Run the cases (see the module docstring) in ``work``; the report."""
    from pipelines.dev.postgres_server import TempPostgres
    from pipelines.run import run_spec

    passes = [work / "pass1.parquet", work / "pass2.parquet"]
    for generation, path in enumerate(passes, start=1):
        _rows(path, rows, generation)
    executemany_rows = min(executemany_rows, rows)
    report: dict[str, Any] = {
        "rows": rows,
        "batch_size": batch_size,
        "workers": workers,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with TempPostgres() as server:
        os.environ[PASSWORD_ENV] = server.password
        for name in ("via_pipeline", "via_copy", "via_executemany"):
            server.execute(TABLE_SQL.format(name=name))
        for number, path in enumerate(passes, start=1):
            spec = _spec(
                server, path, work / f"run{number}", "public.via_pipeline", batch_size, workers
            )
            cpu, server_cpu = time.process_time(), _server_cpu_s(server)
            checkpoints = _checkpoints(server)
            summary = run_spec(spec)
            cpu, server_cpu = time.process_time() - cpu, _server_cpu_s(server) - server_cpu
            checkpoints = _checkpoints(server) - checkpoints
            node = summary.node("db")
            if node.rows_in != rows or node.rows_dead_lettered:
                raise RuntimeError(f"the sink counted {node}, not {rows} rows written")
            kind = "insert" if number == 1 else "update"
            report[f"pipeline_{kind}_rows_per_s"] = round(rows / summary.elapsed_seconds)
            report[f"pipeline_{kind}_cpu_s"] = {
                "beamwright": round(cpu, 2),
                "postgres": round(server_cpu, 2),
            }
            report[f"pipeline_{kind}_rows_per_cpu_s"] = round(rows / (cpu + server_cpu))
            report[f"pipeline_{kind}_checkpoints"] = checkpoints
            seconds = _plain_copy(server, path, "via_copy", batch_size)
            report[f"plain_copy_{kind}_rows_per_s"] = round(rows / seconds)
            seconds = _plain_executemany(server, path, "via_executemany", executemany_rows)
            report[f"plain_executemany_{kind}_rows_per_s"] = round(executemany_rows / seconds)
        with server.connect() as conn:
            same = conn.execute(
                "SELECT count(*) FROM via_pipeline p JOIN via_copy c USING (id) WHERE "
                "(p.name, p.amount, p.score, p.updated_at, p.active) = "
                "(c.name, c.amount, c.score, c.updated_at, c.active)"
            ).fetchone()[0]
    report["pipeline_rows_equal_to_plain_copy"] = same
    slower = min(report["pipeline_insert_rows_per_s"], report["pipeline_update_rows_per_s"])
    report["pipeline_vs_plain_copy"] = round(
        slower
        / min(report["plain_copy_insert_rows_per_s"], report["plain_copy_update_rows_per_s"]),
        3,
    )
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["target_rows_per_s"] = TARGET_ROWS_PER_S
    report["target_met"] = slower >= TARGET_ROWS_PER_S
    return report
