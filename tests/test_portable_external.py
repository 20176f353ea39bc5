"""The main job on Beam's portable runner with SDK workers in other processes, in another
directory (an EXTERNAL worker pool behind Beam's local job service), against a direct run.

This is as close to a cluster as this machine gets without a download: the driver submits
through the Job API, the job service runs the stages, and every DoFn runs in a worker process
the pool started in its own working directory. Everything a run produces must be the same as
on the direct runner: outputs, dead letters, summary counts and lineage, column profiles
(dataQualityMetrics) included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.servers.beam_portable import portable_services

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(workdir: Path, key: Path, *extra: str) -> dict:
    """The main job through the CLI from ``workdir``, outputs under ``workdir/out``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pipelines.cli", "run", "data_processing", "--quiet",
        "-p", f"output_dir={workdir / 'out'}", "-p", f"pseudonym_key_file={key}",
        "--summary-json", str(workdir / "summary.json"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text())


def _warehouse(out: Path) -> list[dict]:
    rows = pq.read_table(out / "warehouse" / "orders").to_pylist()
    return sorted(rows, key=lambda r: r["order_id"])


def _report(path: Path) -> list:
    """A report's rows with floats to 12 significant digits: sums and means of floats depend on
    the order partial results are merged in, which differs between runners (the last bit of
    38002.67 vs 38002.670000000006), as in every distributed engine."""

    def norm(value: object) -> object:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return value
        return float(f"{number:.12g}") if isinstance(value, float) or "." in str(value) else value

    if path.suffix == ".json":
        return [{k: norm(v) for k, v in row.items()} for row in json.loads(path.read_text())]
    return [[norm(cell) for cell in line.split(",")] for line in path.read_text().splitlines()]


def _dead_letters(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "alerts" / "dead_letters").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for per_run in ("timestamp", "run_id"):
                row.pop(per_run)
            rows.append(row)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _complete_event(out: Path) -> dict:
    events = [json.loads(x) for x in (out / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    return events[-1]


def _lineage(out: Path) -> dict:
    event = _complete_event(out)
    inputs = {
        i["name"]: {k: v for k, v in i.get("inputFacets", {}).items()} for i in event["inputs"]
    }
    outputs = sorted(o["name"].replace(str(out), "<out>") for o in event["outputs"])
    return {"inputs": inputs, "outputs": outputs}


def _counts(summary: dict) -> list[tuple]:
    return [
        (n["name"], n["rows_in"], n["rows_out"], n["rows_dead_lettered"], n["rows_filtered"])
        for n in summary["nodes"]
    ]


def test_external_workers_in_another_directory_match_a_direct_run(tmp_path):
    key = tmp_path / "pseudonym.key"
    direct = _run(tmp_path / "direct", key)
    with portable_services(tmp_path / "services") as options:
        flags = [f"--option={name}={value}" for name, value in options.items()]
        portable = _run(
            tmp_path / "driver", key, "--runner", "portable", "--allow-local-secrets", *flags
        )
        pool_log = (tmp_path / "services" / "workers" / "worker_pool.log").read_text()
    assert "Starting worker with command" in pool_log  # the DoFns ran in the pool's processes
    assert portable["status"] == direct["status"] == "COMPLETE"
    assert portable["runner"] == "portable"
    assert _counts(portable) == _counts(direct)
    assert portable["rows_read"] == 2205 and portable["reconciled"]

    a, b = tmp_path / "direct" / "out", tmp_path / "driver" / "out"
    assert _warehouse(b) == _warehouse(a)
    assert _dead_letters(b) == _dead_letters(a)
    for report in ("reports/orders_by_status.json", "reports/orders_by_status.csv"):
        assert _report(b / report) == _report(a / report)
    assert (b / "alerts" / "rejections_by_rule.csv").read_bytes() == (
        a / "alerts" / "rejections_by_rule.csv"
    ).read_bytes()

    lineage_direct, lineage_portable = _lineage(a), _lineage(b)
    assert lineage_portable == lineage_direct
    assert all("dataQualityMetrics" in facets for facets in lineage_portable["inputs"].values())
    # nothing landed in the workers' own directory (relative paths would have)
    workers = tmp_path / "services" / "workers"
    assert sorted(p.name for p in workers.iterdir()) == ["worker_pool.log"]
    # the job service returns no Beam lineage metrics: said, not silently skipped
    codes = [w["code"] for w in portable["lineage"].get("warnings", [])]
    assert codes == ["beam_lineage_unavailable"]
    assert "warnings" not in direct["lineage"]
    warned = _complete_event(b)["run"]["facets"]["beamwright_runWarnings"]
    assert [w["code"] for w in warned["warnings"]] == codes
