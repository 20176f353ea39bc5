"""``beamwright bench --http``: the ``http`` step against a local API with 20 ms latency, each
case side by side with a plain sequential loop in the same run.

The API (:mod:`pipelines.dev.enrich_api`) runs as a subprocess, so its Python work does not
share this process's GIL (a remote API does not either). Cases, each through the real spec /
builder / runner path (Parquet of distinct ids -> ``http`` step -> Parquet, one worker):

- ``per_row``: ``GET /customers/{id}`` per row, ``parallel`` strategy, 64 in flight;
- ``bulk``: ``POST /customers:batch`` with 500 ids per call, 16 in flight;
- ``sequential_per_row`` / ``sequential_bulk``: the same calls in a plain loop over one
  keep-alive ``http.client`` connection, JSON decoded, no Beam: what a hand-written script does.

Reports rows/s of wall time (Beam's start-up included) and rows per CPU-second of this process
(the client: Beam, the step, JSON decoding; the server's CPU is reported apart), plus the
ratio of each case to its sequential loop. The targets (per-row >= 2,000 rows/s per worker,
bulk >= 100,000 rows/s) are judged on ``rows_per_second_calling``: rows over the time from the
first call's start to the last call's end, from the step's own call-span metrics (what the
summary reports as ``effective_rate_per_s``), since the ~2 s of Beam's start-up and the
writing of the output are not the enrichment's speed; the whole-run figure is beside it.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LATENCY = 0.02
TARGETS = {"per_row": 2_000, "bulk": 100_000}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds of another process (Linux /proc), for the server's share."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ApiProcess:
    """The local API in a subprocess; stopped by closing its stdin, then by its PID."""

    def __init__(self, latency: float = LATENCY) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.dev.enrich_api", "--latency", str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError("the local API did not start")

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _spec(url: str, source: str, out: Path, bulk: bool, batch_size: int) -> Any:
    from pipelines.spec import PipelineSpec

    step: dict[str, Any] = {
        "name": "enrich",
        "type": "http",
        "fields": {
            "name": "name",
            "city": "address.city",
            "score": {"path": "score", "type": "float64"},
        },
        "cache": None,
        "breaker": {"failure_threshold": 50},
    }
    if bulk:
        step.update(
            url=url + "/customers:batch",
            batch={"id_field": "id", "size": 500, "items": "customers"},
            strategy={"max_concurrency": 16},
        )
    else:
        step.update(url=url + "/customers/{id}", strategy={"max_concurrency": 64})
    return PipelineSpec.model_validate(
        {
            "name": "bench_http",
            "run": {"batch_size": batch_size, "direct_num_workers": 1, "error_threshold": 0.0},
            "sources": [{"name": "ids", "type": "file", "path": source}],
            "steps": [step],
            "sinks": [{"name": "out", "type": "file", "path": str(out), "format": "parquet"}],
            "dead_letter": {"path": str(out) + "_dead"},
            "lineage": {"enabled": False},
        }
    )


def _pipeline_case(
    api: ApiProcess, source: str, rows: int, out: Path, bulk: bool, batch_size: int
) -> dict[str, Any]:
    from pipelines.run import run_spec

    spec = _spec(api.url, source, out, bulk, batch_size)
    cpu0, server0, t0 = _cpu(), api.cpu(), time.perf_counter()
    summary = run_spec(spec)
    wall = time.perf_counter() - t0
    cpu, server = _cpu() - cpu0, api.cpu() - server0
    node = summary.node("enrich")
    if node.rows_out != rows:
        raise RuntimeError(f"the bench lost rows: {node.rows_out} of {rows} enriched")
    calls, rate = node.stats.get("calls", 0), node.stats.get("effective_rate_per_s", 0)
    calling = calls / rate if rate else wall  # from the first call's start to the last's end
    return {
        "rows": rows,
        "seconds": round(wall, 3),
        "rows_per_second": round(rows / wall),
        "calling_seconds": round(calling, 3),
        "rows_per_second_calling": round(rows / calling),
        "rows_per_cpu_second": round(rows / cpu) if cpu else None,
        "client_cpu_seconds": round(cpu, 2),
        "server_cpu_seconds": round(server, 2),
        "requests": node.stats.get("requests", 0),
    }


def _sequential(api: ApiProcess, rows: int, bulk: bool) -> dict[str, Any]:
    """The plain loop: one connection, one call at a time, JSON decoded."""
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    names: list[Any] = []
    cpu0, t0 = _cpu(), time.perf_counter()
    if bulk:
        for start in range(0, rows, 500):
            ids = list(range(start, min(rows, start + 500)))
            body = json.dumps({"ids": ids}).encode()
            conn.request("POST", "/customers:batch", body, {"Content-Type": "application/json"})
            for item in json.loads(conn.getresponse().read())["customers"]:
                names.append(item["name"])
    else:
        for i in range(rows):
            conn.request("GET", f"/customers/{i}")
            names.append(json.loads(conn.getresponse().read())["name"])
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    conn.close()
    assert len(names) == rows
    return {
        "rows": rows,
        "seconds": round(wall, 3),
        "rows_per_second": round(rows / wall),
        "rows_per_cpu_second": round(rows / cpu) if cpu else None,
    }


def http_bench(rows: int, bulk_rows: int, repeat: int, work: Path) -> dict[str, Any]:
    """Run the cases (best of ``repeat`` for the pipelines) in ``work``; the report."""
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq

    logging.getLogger().setLevel(logging.ERROR)
    sources = {}
    for name, n in (("per_row", rows), ("bulk", bulk_rows)):
        sources[name] = str(work / f"{name}.parquet")
        pq.write_table(pa.table({"id": pa.array(range(n), pa.int64())}), sources[name])
    api = ApiProcess()
    report: dict[str, Any] = {
        "latency_ms": LATENCY * 1000,
        "command": "beamwright bench --http "
        f"--http-rows {rows} --http-bulk-rows {bulk_rows} --repeat {repeat}",
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for name, n, bulk, batch in (
            ("per_row", rows, False, 5_000),
            ("bulk", bulk_rows, True, 50_000),
        ):
            runs = [
                _pipeline_case(api, sources[name], n, work / f"out_{name}_{i}", bulk, batch)
                for i in range(max(1, repeat))
            ]
            best = max(runs, key=lambda r: r["rows_per_second"])
            loop = _sequential(api, min(n, 500 if not bulk else 100_000), bulk)
            best["target_rows_per_second"] = TARGETS[name]
            best["meets_target"] = best["rows_per_second_calling"] >= TARGETS[name]
            best["vs_sequential"] = round(best["rows_per_second"] / loop["rows_per_second"], 1)
            report[name] = best
            report[f"sequential_{name}"] = loop
    finally:
        api.close()
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


if __name__ == "__main__":
    from pipelines.dev.workdir import BenchWorkdir

    with BenchWorkdir(None, "beamwright-bench-http-") as bench_work:
        print(
            json.dumps(http_bench(int(sys.argv[1]), int(sys.argv[2]), 1, bench_work.path), indent=2)
        )
