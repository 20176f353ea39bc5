"""A streaming job followed from the driver (issue 11): START when submitted, RUNNING
heartbeats with statistics polled from the running job's metrics, then COMPLETE when it
drained, ABORT when cancelled, FAIL when it failed; and an unbounded spec is refused on the
local FnApiRunner with a hint instead of hanging.

The job runs on Beam's BundleBasedDirectRunner (in process, asynchronous like Flink and
Dataflow: ``run()`` returns once submitted), fed by a TestStream; the ``hold`` step keeps it
running until the test has seen what it wants to see.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.records import with_positions
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import RunFailed, run_spec, stream_spec
from tests.plugin_kinds import hold
from tests.plugin_kinds.teststream import STREAMS


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def spec_for(tmp: Path, *, runner_options: dict | None = None):  # noqa: ANN202
    table = with_positions(pa.table({"order_id": ["a", "b", None]}), "orders/0", [0, 1, 2])
    STREAMS["held"] = (
        TestStream(coder=ArrowTableCoder())
        .add_elements([TimestampedValue(table, 0)])
        .advance_watermark_to_infinity()
    )
    return spec_from_data(
        {
            "name": "held_stream",
            "plugins": ["tests.plugin_kinds.teststream", "tests.plugin_kinds.hold"],
            "sources": [{"name": "orders", "type": "teststream", "stream": "held"}],
            "steps": [
                {"name": "check", "type": "validate",
                 "fields": {"order_id": {"type": "string", "required": True}}},
                {"name": "held", "type": "hold"},
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp / "out"), "format": "jsonl"}],
            "dead_letter": {"path": str(tmp / "dead")},
            "run": {"runner_options": runner_options or {"runner": "BundleBasedDirectRunner"}},
            "lineage": {"heartbeat_seconds": 0.2, "event_log": str(tmp / "events.jsonl")},
        }
    )


@pytest.fixture(autouse=True)
def held():
    hold.RELEASE.clear()
    hold.FAIL.clear()
    yield
    hold.RELEASE.set()  # never leave a job thread waiting


def start(spec, stop: threading.Event | None = None) -> tuple[threading.Thread, dict]:  # noqa: ANN001
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = stream_spec(spec, stop=stop)
        except RunFailed as exc:
            outcome["failed"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def running(log: Path) -> list[dict]:
    return [e for e in events(log) if e["eventType"] == "RUNNING"]


def test_heartbeats_while_running_then_complete_when_drained(tmp_path):
    log = tmp_path / "events.jsonl"
    thread, outcome = start(spec_for(tmp_path))
    wait_for(lambda: len(running(log)) >= 2)
    assert [e["eventType"] for e in events(log)][0] == "START"
    beat = running(log)[-1]
    assert beat["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    hold.RELEASE.set()
    thread.join(60)
    assert outcome["summary"].status == "COMPLETE"
    types = [e["eventType"] for e in events(log)]
    assert types[-1] == "COMPLETE" and types.count("START") == 1
    assert len({e["run"]["runId"] for e in events(log)}) == 1
    # heartbeats carry statistics from the job's metrics: the validate step ran before the hold
    counts = {n.name: n for n in outcome["summary"].nodes}
    assert counts["check"].rows_in == 3 and counts["check"].rows_dead_lettered == 1
    written = [json.loads(x) for p in (tmp_path / "out").rglob("*.jsonl") for x in p.open()]
    assert sorted(r["order_id"] for r in written) == ["a", "b"]


def test_cancel_aborts_the_job(tmp_path):
    log = tmp_path / "events.jsonl"
    stop = threading.Event()
    thread, outcome = start(spec_for(tmp_path), stop)
    wait_for(lambda: len(running(log)) >= 1)
    stop.set()
    threading.Timer(1.0, hold.RELEASE.set).start()  # then the worker finishes its bundle
    thread.join(60)
    assert outcome["summary"].status == "ABORTED", outcome
    assert events(log)[-1]["eventType"] == "ABORT"


def test_a_failing_job_fails(tmp_path):
    log = tmp_path / "events.jsonl"
    thread, outcome = start(spec_for(tmp_path))
    wait_for(lambda: len(running(log)) >= 1)
    hold.FAIL.set()
    hold.RELEASE.set()
    thread.join(60)
    assert "held batch failed on purpose" in str(outcome["failed"])
    assert events(log)[-1]["eventType"] == "FAIL"


def test_the_local_runner_refuses_an_unbounded_spec_with_a_hint(tmp_path):
    spec = spec_for(tmp_path, runner_options={"direct_num_workers": 1})
    with pytest.raises(SpecError, match=r"run --follow, or run it on flink, dataflow"):
        run_spec(spec)
    assert not (tmp_path / "events.jsonl").exists()  # refused before anything started
