"""OpenLineage for every run: facets, column lineage, quality results, and a backend that
misbehaves without touching the pipeline."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from lineage.emitter import EVENT_OBSERVERS, BackgroundSender
from lineage.naming import dataset_name, strip_credentials
from pipelines.cli import load_target
from pipelines.column_lineage import sink_lineage
from pipelines.dev import datagen
from pipelines.loading import spec_from_data
from pipelines.run import RunFailed, run_spec
from tests import openlineage_schema
from tests.servers.http import QuietHTTPServer

ORDER_FIELDS = datagen.orders(1).column_names
CUSTOMER_FIELDS = datagen.customers(1).column_names


def captured_run(spec, **kwargs):
    events: list[dict] = []
    EVENT_OBSERVERS.append(events.append)
    try:
        try:
            summary = run_spec(spec, **kwargs)
        except RunFailed as exc:
            summary = exc.summary
    finally:
        EVENT_OBSERVERS.remove(events.append)
    return summary, events


@pytest.fixture(scope="module")
def template_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lineage")
    spec = load_target(
        "data_processing", {"output_dir": str(out / "out"), "pseudonym_key_file": str(out / "key")}
    )
    summary, events = captured_run(spec)
    return out, spec, summary, events


def test_every_event_is_valid_against_the_spec(template_run):
    *_, events = template_run
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert openlineage_schema.event_problems(event) == []


def test_column_lineage_of_the_template_field_by_field(template_run):
    _, spec, _, _ = template_run
    sources = {f"orders_{i}": ORDER_FIELDS for i in range(1, 5)} | {"customers": CUSTOMER_FIELDS}
    warehouse = sink_lineage(spec, sources)["warehouse"]

    def origin(field):
        found = {(o.source.split("_")[0], o.field) for o in warehouse.fields[field]}
        kinds = {
            tuple((st.type, st.subtype, st.masking) for st in o.steps)
            for o in warehouse.fields[field]
        }
        assert len(kinds) == 1, f"{field}: every source file takes the same path"
        return found, kinds.pop()

    identity = ("DIRECT", "IDENTITY", False)
    cleaned = ("DIRECT", "TRANSFORMATION", False)
    masked = ("DIRECT", "TRANSFORMATION", True)
    assert origin("order_id") == ({("orders", "order_id")}, (identity,))
    assert origin("amount") == ({("orders", "amount")}, (identity,))
    assert origin("email") == ({("orders", "email")}, (cleaned, identity, masked))
    assert origin("customer_id") == ({("orders", "customer_id")}, (identity, masked))
    assert origin("card_number") == ({("orders", "card_number")}, (identity, masked))
    assert origin("status") == ({("orders", "status")}, (cleaned, identity))
    total, _ = origin("total")
    assert total == {("orders", "amount"), ("orders", "quantity")}
    assert origin("days_to_ship")[0] == {("orders", "order_date"), ("orders", "ship_date")}
    assert origin("segment") == ({("customers", "segment")}, (identity,))
    assert origin("lifetime_value") == ({("customers", "lifetime_value")}, (cleaned, masked))
    filters = {(o.source.split("_")[0], o.field, o.steps[-1].subtype) for o in warehouse.dataset}
    assert ("orders", "amount", "FILTER") in filters  # validation rules decide which rows stay
    assert ("customers", "customer_id", "JOIN") in filters and (
        "orders",
        "customer_id",
        "JOIN",
    ) in filters
    report = sink_lineage(spec, sources)["report_json"]
    assert {o.field for o in report.fields["revenue"]} == {"amount"}
    assert report.fields["revenue"][0].steps[-1].subtype == "AGGREGATION"
    assert report.fields["orders"] == []


def test_column_lineage_reaches_the_event(template_run):
    *_, events = template_run
    warehouse = next(o for o in events[-1]["outputs"] if o["name"].endswith("warehouse/orders"))
    fields = warehouse["facets"]["columnLineage"]["fields"]
    email = fields["email"]["inputFields"]
    assert {Path(i["name"]).name for i in email} == {
        "orders_2026_01.jsonl",
        "orders_2026_02.csv",
        "orders_2026_03.parquet",
        "orders_2026_04.avro",
    }
    assert any(t["masking"] for t in email[0]["transformations"])
    gov = warehouse["facets"]["beamwright_governance"]
    assert gov["fields"]["email"] == {
        "classification": "PII",
        "protection": "email_domain",
        "sources": ["orders_1#email", "orders_2#email", "orders_3#email", "orders_4#email"],
    }
    assert gov["fields"]["customer_id"]["protection"] == "pseudonymize"
    assert gov["frameworks"] == ["GDPR", "PCI-DSS"]
    assert warehouse["outputFacets"]["outputStatistics"]["rowCount"] == 1924


def test_quality_assertions_match_the_dead_letters(template_run):
    out, _, summary, events = template_run
    letters = [
        json.loads(line)
        for f in (out / "out/alerts/dead_letters").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    jsonl = next(i for i in events[-1]["inputs"] if i["name"].endswith(".jsonl"))
    per_rule: dict[str, int] = {}
    for d in letters:  # the dataset's own failures, not the step's run-wide ones
        if d["step"] == "validate" and d["source"] == jsonl["name"]:
            for rule in d["rule"].split(","):
                per_rule[rule] = per_rule.get(rule, 0) + 1
    assertions = {a["name"]: a for a in jsonl["inputFacets"]["dataQualityAssertions"]["assertions"]}
    for name, a in assertions.items():
        n = per_rule.get(name, 0)
        assert a["success"] is (n == 0), name
        assert a["actual"] == f"{n} failing rows", name
    assert {k for k, v in per_rule.items() if v} <= set(assertions)
    metrics = jsonl["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 500 and metrics["columnMetrics"]["quantity"]["min"] == 1


def test_run_facets_and_parent_template(template_run):
    _, _, summary, events = template_run
    run = events[0]["run"]
    assert run["runId"] == summary.run_id
    assert run["facets"]["processing_engine"]["name"] == "Apache Beam"
    assert run["facets"]["parent"]["job"]["name"] == "template:data_processing@1.0"
    job = events[0]["job"]["facets"]
    assert job["jobType"]["processingType"] == "BATCH" and job["jobType"]["integration"] == "BEAM"
    assert job["ownership"]["owners"][0]["name"] == "data-platform"


def test_beam_lineage_datasets_all_appear_in_events(template_run):
    _, _, summary, _ = template_run
    assert summary.lineage["beam_datasets_missing"] == []
    assert summary.lineage["sent"] == 2 and summary.lineage["failed"] == 0


def test_failed_run_emits_fail_with_error_and_stack(tmp_path):
    spec = load_target(
        "data_processing",
        {"output_dir": str(tmp_path), "error_threshold": "0.001", "processing_stages": "validate"},
    )
    summary, events = captured_run(spec)
    assert summary.status == "FAILED"
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert "error threshold" in error["message"] and error["programmingLanguage"] == "python"


def test_credentials_never_reach_dataset_names():
    assert strip_credentials("s3://AKIA:secretkey@bucket/path") == "s3://bucket/path"
    assert dataset_name("gs://user:pw@bucket/data/x.parquet") == ("gs://bucket", "data/x.parquet")
    assert dataset_name("/tmp/a.csv") == ("file", "/tmp/a.csv")


# --------------------------------------------------------------------------- a misbehaving backend


class Backend:
    """A local Marquez-like endpoint: POST /api/v1/lineage answering as told."""

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        self.mode, self.delay, self.received = mode, delay, []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(backend.delay)
                if backend.mode == "ok":
                    backend.received.append(json.loads(body))
                    self.send_response(201)
                else:
                    self.send_response(500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def small_spec(tmp_path: Path, transport: dict | None):
    src = tmp_path / "in.csv"
    src.write_text("id,amount\n" + "".join(f"{i},{i * 1.5}\n" for i in range(200)))
    return spec_from_data(
        {
            "name": "small",
            "sources": [{"name": "rows", "type": "file", "path": str(src)}],
            "steps": [
                {
                    "name": "typed",
                    "type": "validate",
                    "fields": {"id": {"type": "int64"}, "amount": {"type": "float64"}},
                }
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {
                "transport": transport,
                "shutdown_timeout": 2.0,
                "event_log": str(tmp_path / "events.jsonl"),
            },
        }
    )


def output_rows(tmp_path: Path) -> list[str]:
    return sorted(
        line for f in (tmp_path / "out").glob("*.jsonl") for line in f.read_text().splitlines()
    )


@pytest.mark.parametrize("mode", ["ok", "down", "slow", "error500"])
def test_backend_trouble_changes_nothing_but_a_bounded_wait(tmp_path, mode):
    backend = None
    if mode == "down":
        url = free_url()
    else:
        backend = Backend(
            "ok" if mode in ("ok", "slow") else "error", delay=30.0 if mode == "slow" else 0.0
        )
        url = backend.url
    transport = {
        "type": "http",
        "url": url,
        "timeout": 1.0,
        "retry": {"total": 1, "backoff_factor": 0.05},
    }
    try:
        t0 = time.perf_counter()
        summary = run_spec(small_spec(tmp_path, transport))
        elapsed = time.perf_counter() - t0
    finally:
        if backend:
            backend.stop()
    assert summary.status == "COMPLETE"
    assert len(output_rows(tmp_path)) == 200
    assert elapsed < summary.elapsed_seconds + 2.0 + 3.0  # the 2 s shutdown bound, plus build time
    if mode == "ok":
        assert [e["eventType"] for e in backend.received] == ["START", "COMPLETE"]
        assert summary.lineage["sent"] == 2
    else:
        assert summary.lineage["sent"] == 0
        assert summary.lineage["failed"] + summary.lineage["dropped"] == 2


def test_sender_never_blocks_and_bounds_close():
    calls = []

    def stuck(event):
        calls.append(event)
        time.sleep(5)

    sender = BackgroundSender(stuck, max_buffer=3, retries=0, close_timeout=0.3)
    t0 = time.perf_counter()
    for i in range(10):
        sender.submit(i)
    assert time.perf_counter() - t0 < 0.1
    stats = sender.close()
    assert time.perf_counter() - t0 < 1.0
    assert stats.dropped >= 7 and stats.sent == 0


def test_running_heartbeat_carries_counts_so_far(tmp_path):
    from lineage.datasets import Dataset
    from pipelines.lineage_run import LineageSession
    from pipelines.summary import NodeCounts

    spec = small_spec(tmp_path, None)
    events: list[dict] = []
    EVENT_OBSERVERS.append(events.append)
    try:
        session = LineageSession(
            spec,
            [
                Dataset(
                    "rows", "source", str(tmp_path / "in.csv"), "csv", [str(tmp_path / "in.csv")]
                )
            ],
            [Dataset("out", "sink", str(tmp_path / "out"), "jsonl")],
            "01900000-0000-7000-8000-000000000001",
            event_log=str(tmp_path / "events.jsonl"),
        )
        session.running(
            [
                NodeCounts("source", "rows", rows_in=120, rows_out=120, files=1),
                NodeCounts("sink", "out", rows_in=100, rows_out=100, files=1, bytes=2048),
            ]
        )
        session.emitter.close()
    finally:
        EVENT_OBSERVERS.remove(events.append)
    running = events[-1]
    assert running["eventType"] == "RUNNING"
    assert running["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert running["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 120
    assert running["outputs"][0]["outputFacets"]["outputStatistics"] == {
        **running["outputs"][0]["outputFacets"]["outputStatistics"],
        "rowCount": 100,
        "size": 2048,
    }
    assert openlineage_schema.event_problems(running) == []


def test_a_profile_that_never_came_back_is_a_warning_not_silence(tmp_path, monkeypatch):
    """Workers that write column profiles where the driver cannot read them (a worker's own
    temp dir) lose the dataQualityMetrics: the summary and the COMPLETE event say so."""
    from transforms.profile import _ProfileBundles

    monkeypatch.setattr(_ProfileBundles, "finish_bundle", lambda self: None)
    summary, events = captured_run(small_spec(tmp_path, None))
    assert summary.status == "COMPLETE"
    assert [w["code"] for w in summary.lineage["warnings"]] == ["profile_missing"]
    assert summary.lineage["warnings"][0]["subject"] == "rows"
    facet = events[-1]["run"]["facets"]["beamwright_runWarnings"]
    assert facet["warnings"] == summary.lineage["warnings"]
    assert openlineage_schema.event_problems(events[-1]) == []
    assert "dataQualityMetrics" not in events[-1]["inputs"][0].get("inputFacets", {})


def test_a_complete_run_with_its_profiles_has_no_warnings(template_run):
    _, _, summary, events = template_run
    assert "warnings" not in summary.lineage
    assert "beamwright_runWarnings" not in events[-1]["run"]["facets"]
