"""``beamwright bench --postgres``: the ``postgres`` lookup step against a plain psycopg loop.

A throw-away PostgreSQL (:mod:`pipelines.dev.postgres_server`) gets a ``customers`` table
(``table_rows`` rows: ``customer_id`` int8 key, text, text, numeric(12,2), float8); a Parquet file of ``rows``
orders references it by ``customer_id`` (about 1 % of them customers that do not exist). Then,
each ``repeat`` times, best run reported:

- ``pipeline``: the spec a user writes, Parquet -> ``postgres`` step (reject misses) ->
  Parquet + dead letters, through ``run_spec`` (Beam start-up and publishing included);
- ``plain_loop``: the same lookups written by hand in one process: read the Parquet in
  batches, one ``SELECT ... WHERE id = ANY(%s)`` per batch, ``fetchall`` into a dict, and a
  Python loop joining each order to its customer (no output written: a lower bound).

Rows/s is orders over wall time; rows per CPU-second counts this process's CPU time (user +
system: the pipeline runs in-process, ``multi_threading``, on the local runner); the server's
CPU (its processes while the case ran) is reported apart and in ``..._with_server``: the
pipeline has the server write CSV, so it moves work there.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

TARGET_ROWS_PER_S = 200_000
PASSWORD_ENV = "BEAMWRIGHT_BENCH_PG_PASSWORD"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_seconds(postmaster: int | None) -> float:
    """CPU time of the server's processes alive now (the postmaster and its backends)."""
    if postmaster is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _load(server: Any, table_rows: int) -> None:
    server.execute(
        "CREATE TABLE customers (customer_id int8 PRIMARY KEY, name text, tier text, "
        "credit numeric(12,2), score float8)"
    )
    server.execute(
        "INSERT INTO customers SELECT i, 'customer ' || i, (ARRAY['gold','silver','bronze'])"
        "[1 + i %% 3], (i %% 10000) / 4.0, i * 0.001 FROM generate_series(1, %s) i",
        (table_rows,),
    )
    server.execute("ANALYZE customers")


def _orders(path: Path, rows: int, table_rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    ids = rng.integers(1, int(table_rows * 1.01) + 1, rows)  # ~1 % beyond the table: misses
    table = pa.table(
        {
            "order_id": pa.array(np.arange(rows), pa.int64()),
            "customer_id": pa.array(ids, pa.int64()),
            "amount": pa.array(rng.random(rows) * 100),
        }
    )
    pq.write_table(table, path)


def _spec(server: Any, source: Path, out: Path, batch_size: int, workers: int) -> Any:
    from pipelines.spec import PipelineSpec

    return PipelineSpec.model_validate(
        {
            "name": "bench_postgres",
            "run": {
                "batch_size": batch_size,
                "error_threshold": 0.5,
                "direct_num_workers": workers,
            },
            "sources": [{"name": "orders", "type": "file", "path": str(source)}],
            "steps": [
                {
                    "name": "customers",
                    "type": "postgres",
                    "connection": server.connection_spec(PASSWORD_ENV),
                    "table": "public.customers",
                    "on": "customer_id",
                    "fields": ["name", "tier", "credit", "score"],
                    "prefix": "customer_",
                    "on_missing": "reject",
                }
            ],
            "sinks": [{"name": "lake", "type": "file", "path": str(out / "lake")}],
            "dead_letter": {"path": str(out / "dead")},
            "lineage": {"enabled": False},
        }
    )


def plain_loop(server: Any, source: Path, batch_size: int) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, server CPU seconds, rows joined) of the hand-written lookup
    loop (the server's measured before its connection closes: a backend that exited is gone
    from /proc)."""
    import psycopg
    import pyarrow.parquet as pq

    postmaster = server.postmaster_pid()
    s0 = _server_cpu_seconds(postmaster)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    joined = 0
    with psycopg.connect(
        host=server.host,
        port=server.port,
        dbname=server.dbname,
        user=server.user,
        password=server.password,
    ) as conn:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size):
            ids = batch.column(1).to_pylist()
            found = {
                row[0]: row
                for row in conn.execute(
                    "SELECT customer_id, name, tier, credit, score FROM customers "
                    "WHERE customer_id = ANY(%s)",
                    (list(set(ids)),),
                ).fetchall()
            }
            out = []
            for order_id, customer, amount in zip(
                batch.column(0).to_pylist(), ids, batch.column(2).to_pylist(), strict=True
            ):
                match = found.get(customer)
                if match is not None:
                    out.append((order_id, customer, amount, *match[1:]))
            joined += len(out)
        server_cpu = _server_cpu_seconds(postmaster) - s0
    return time.perf_counter() - t0, _cpu_seconds() - c0, server_cpu, joined


def postgres_bench(
    rows: int = 1_000_000,
    table_rows: int = 100_000,
    repeat: int = 1,
    batch_size: int = 125_000,
    workers: int = 2,
    *,
    work: Path,
) -> dict[str, Any]:
    """Run both cases (see the module docstring) in ``work``; the report."""
    from pipelines.dev.postgres_server import TempPostgres
    from pipelines.run import run_spec

    source = work / "orders.parquet"
    with TempPostgres() as server:
        _load(server, table_rows)
        _orders(source, rows, table_rows)
        os.environ[PASSWORD_ENV] = server.password
        piped: list[dict[str, float]] = []
        plain: list[dict[str, float]] = []
        postmaster = server.postmaster_pid()
        for i in range(repeat):
            wall, cpu, server_cpu, joined = plain_loop(server, source, batch_size)
            plain.append({"wall": wall, "cpu": cpu, "server_cpu": server_cpu})
            spec = _spec(server, source, work / f"run{i}", batch_size, workers)
            s0, c0 = _server_cpu_seconds(postmaster), _cpu_seconds()
            summary = run_spec(spec)
            cpu = _cpu_seconds() - c0
            node = summary.node("customers")
            if node.rows_in != rows or not node.reconciled:
                raise RuntimeError(f"the pipeline counted {node}, not {rows} reconciled rows")
            piped.append(
                {
                    "wall": summary.elapsed_seconds,
                    "cpu": cpu,
                    "server_cpu": _server_cpu_seconds(postmaster) - s0,
                    "enriched": node.rows_out,
                    "dead_lettered": node.rows_dead_lettered,
                }
            )
    best = min(piped, key=lambda r: r["wall"])
    best_plain = min(plain, key=lambda r: r["wall"])
    pipeline_rate = rows / best["wall"]
    plain_rate = rows / best_plain["wall"]
    return {
        "rows": rows,
        "table_rows": table_rows,
        "batch_size": batch_size,
        "workers": workers,
        "pipeline_rows_per_s": round(pipeline_rate),
        "pipeline_rows_per_cpu_s": round(rows / best["cpu"]) if best["cpu"] else None,
        "pipeline_server_cpu_seconds": round(best["server_cpu"], 2),
        "pipeline_rows_per_cpu_s_with_server": round(rows / (best["cpu"] + best["server_cpu"])),
        "pipeline_enriched": best["enriched"],
        "pipeline_dead_lettered": best["dead_lettered"],
        "plain_loop_rows_per_s": round(plain_rate),
        "plain_loop_rows_per_cpu_s": round(rows / best_plain["cpu"]) if best_plain["cpu"] else None,
        "plain_loop_server_cpu_seconds": round(best_plain["server_cpu"], 2),
        "plain_loop_rows_per_cpu_s_with_server": round(
            rows / (best_plain["cpu"] + best_plain["server_cpu"])
        ),
        "plain_loop_joined": joined,
        "pipeline_vs_plain_loop": round(pipeline_rate / plain_rate, 3),
        "pipeline_runs_s": [round(r["wall"], 3) for r in piped],
        "plain_loop_runs_s": [round(r["wall"], 3) for r in plain],
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "target_met": pipeline_rate >= TARGET_ROWS_PER_S,
    }
