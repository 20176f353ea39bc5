"""``run --detach`` and ``beamwright jobs``: a streaming job submitted to Beam's local job
service (EXTERNAL workers in other processes) keeps running after the driver returned; its
outputs are leased to it; ``jobs status|metrics|cancel`` reach it through the Job API from
other processes, and the first that sees it ended emits its lineage terminal event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.beam_portable import portable_services

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path, home: Path, principal: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BEAMWRIGHT_HOME": str(home),
           "BEAMWRIGHT_PRINCIPAL": principal}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _spec(tmp_path: Path, servers: str, topic: str) -> Path:
    spec = {
        "name": "orders_live",
        "sources": [
            {"name": "orders", "type": "kafka", "bootstrap_servers": servers, "topics": topic,
             "group_id": "detached", "bounded": None}
        ],
        "steps": [{"name": "typed", "type": "validate",
                   "fields": {"order_id": {"type": "string", "required": True}}}],
        "sinks": [{"name": "warehouse", "type": "file", "path": str(tmp_path / "out"),
                   "format": "jsonl"}],
        "dead_letter": {"path": str(tmp_path / "dead")},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
    }  # fmt: skip
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_detached_streaming_job_is_followed_and_cancelled_from_other_processes(
    tmp_path, kafka_broker, topic
):
    spec = _spec(tmp_path, kafka_broker.bootstrap_servers, topic(partitions=1))
    home = tmp_path / "home"
    with portable_services(tmp_path / "services") as options:
        flags = [f"--option={k}={v}" for k, v in options.items()]
        t0 = time.monotonic()
        done = _cli("run", str(spec), "--runner", "portable", "--detach", *flags,
                    cwd=tmp_path, home=home, principal="service:scheduler")  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert time.monotonic() - t0 < 120  # returned while the job runs on
        job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
        record = json.loads((home / "jobs" / f"{job_id}.json").read_text())
        assert oct((home / "jobs" / f"{job_id}.json").stat().st_mode & 0o777) == "0o600"

        status = json.loads(_cli("jobs", "status", job_id, cwd=tmp_path, home=home).stdout)
        assert status["state"] in ("STARTING", "RUNNING") and "ended" not in status

        # the outputs are the job's: another run cannot claim them
        again = _cli("run", str(spec), "--runner", "portable", *flags, cwd=tmp_path, home=home)
        assert again.returncode == 2
        assert f"detached job {job_id} is writing to" in again.stderr
        assert f"beamwright jobs cancel {job_id}" in again.stderr

        metrics = _cli("jobs", "metrics", job_id, cwd=tmp_path, home=home)
        assert metrics.returncode == 0, metrics.stderr
        assert [n["name"] for n in json.loads(metrics.stdout)][:2] == ["orders", "typed"]

        # cancelled by someone else: the run is still the submitter's
        cancel = _cli("jobs", "cancel", job_id, cwd=tmp_path, home=home, principal="operator")
        cancelled = json.loads(cancel.stdout)
        assert cancelled["state"] == "CANCELLED" and cancelled["ended"] == "ABORT"
        assert all(not Path(p).exists() for p in record["leases"])

        # settled once: a later status neither emits another event nor fails
        later = json.loads(_cli("jobs", "status", job_id, cwd=tmp_path, home=home).stdout)
        assert later["state"] == "CANCELLED" and "lineage" not in later

    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "ABORT"]
    assert {e["run"]["runId"] for e in events} == {record["run_id"]}
    submitter = {"name": "scheduler", "type": "service", "source": "env:BEAMWRIGHT_PRINCIPAL"}
    facets = [e["run"]["facets"]["beamwright_principal"] for e in events]
    assert [{k: f[k] for k in submitter} for f in facets] == [submitter] * 2


def test_a_bounded_job_cannot_detach(tmp_path):
    done = _cli("run", "data_processing", "--detach", "--runner", "portable",
                "--option", "job_endpoint=127.0.0.1:1", "-p", f"output_dir={tmp_path}/o",
                cwd=tmp_path, home=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "published by the driver after the run's checks" in done.stderr
    assert not (tmp_path / "o").exists()


def test_jobs_status_of_an_unknown_job_says_where_it_looked(tmp_path):
    done = _cli("jobs", "status", "nope", cwd=tmp_path, home=tmp_path)
    assert done.returncode == 2 and "no detached job 'nope'" in done.stderr
