"""The lineage reports as their users see them: compliance report, access analysis, graph.

Most tests read ``tests/data/lineage/events.jsonl``, two weeks of events whose story is told
in ``make_events.py`` next to it (a failing run, an unmasked phone number, failing quality
assertions, a new reader, a volume spike). Small hand-built logs cover the edge cases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import subprocess
import sys
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from lineage.reports.access import analyse_access, robust_score
from lineage.reports.compliance import analyse, personal_flows, quality_histories
from lineage.reports.events import (
    DatasetId,
    EventLogError,
    build_log,
    parse_time,
    read_files,
    read_marquez,
)
from lineage.reports.graph import build_laid_out_graph
from lineage.reports.render import access_text, compliance_sections, to_markdown
from lineage.reports.svg import render_graph_html, render_svg
from pipelines.lineage_cli import add_parser
from tests import openlineage_schema
from tests.servers.http import QuietHTTPServer

DATA = Path(__file__).parent / "data" / "lineage"
EVENTS = DATA / "events.jsonl"
ROOT = Path(__file__).resolve().parents[1]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_events", DATA / "make_events.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()
ORDERS = DatasetId(*gen.ORDERS)
CUSTOMERS = DatasetId(*gen.CUSTOMERS)
WAREHOUSE = DatasetId(*gen.WAREHOUSE)
CRM_TOPIC = DatasetId(*gen.CRM_TOPIC)
DEAD_LETTERS = DatasetId(*gen.DEAD_LETTERS)


@pytest.fixture(scope="module")
def log():
    return read_files([EVENTS])


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="beamwright")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# --- small hand-built logs ---------------------------------------------------------------------


def event(kind: str, when: str, job: str, run: str, **parts: Any) -> dict:
    return {
        "eventType": kind,
        "eventTime": when,
        "producer": gen.PRODUCER,
        "schemaURL": gen.CORE,
        "run": {"runId": run, "facets": parts.pop("run_facets", {})},
        "job": {"namespace": "ns", "name": job, "facets": parts.pop("job_facets", {})},
        "inputs": parts.pop("inputs", []),
        "outputs": parts.pop("outputs", []),
    }


def governance(classification: str, frameworks: list[str], fields: dict) -> dict:
    return {
        "_producer": gen.PRODUCER,
        "_schemaURL": gen.GOVERNANCE_URL,
        "classification": classification,
        "frameworks": frameworks,
        "fields": {k: {"classification": c, "protection": p} for k, (c, p) in fields.items()},
    }


def lineage(fields: dict[str, list[tuple[str, str, str, str, str, bool]]]) -> dict:
    return gen.facet(
        "ColumnLineageDatasetFacet",
        schema_version="1-2-0",
        fields={
            out: {
                "inputFields": [
                    {
                        "namespace": ns,
                        "name": name,
                        "field": f,
                        "transformations": [{"type": t, "subtype": st, "masking": m}],
                    }
                    for ns, name, f, t, st, m in inputs
                ]
            }
            for out, inputs in fields.items()
        },
    )


def raw_input() -> dict:
    """The input of copy runs: /raw, whose email field is PII under GDPR."""
    gov = governance("confidential", ["GDPR"], {"email": ("PII", None)})
    return {"namespace": "file", "name": "/raw", "facets": {"beamwright_governance": gov}}


def copy_run(run: str, when: str, masking: bool) -> list[dict]:
    """A run copying /raw#email to /out#email, masked or not."""
    out = {
        "namespace": "file",
        "name": "/out",
        "facets": {
            "columnLineage": lineage(
                {"email": [("file", "/raw", "email", "DIRECT", "TRANSFORMATION", masking)]}
            ),
            "beamwright_governance": governance("internal", ["GDPR"], {}),
        },
    }
    return [event("COMPLETE", when, "copy", run, inputs=[raw_input()], outputs=[out])]


# --- the fixture -----------------------------------------------------------------------------


def test_fixture_is_what_its_generator_writes():
    assert EVENTS.read_text(encoding="utf-8") == gen.render()


@pytest.mark.skipif(not openlineage_schema.available(), reason="../shared/openlineage-spec absent")
def test_fixture_events_validate_against_the_openlineage_schemas_facet_by_facet():
    problems, run_ids = [], set()
    for line in EVENTS.read_text().splitlines():
        ev = json.loads(line)
        problems += openlineage_schema.event_problems(ev)
        run_ids.add(ev["run"]["runId"])
    assert problems == []
    assert {uuid.UUID(r).version for r in run_ids} == {7}


# --- reading events ----------------------------------------------------------------------------


def test_runs_merge_their_events(log):
    assert len(log.runs) == 33 and log.skipped == 0
    jobs = {job.name: runs for job, runs in log.jobs().items()}
    orders = jobs["data_processing.orders"]
    assert [r.state for r in orders].count("FAIL") == 2
    day14 = orders[-1]
    assert day14.failed and day14.error_message.startswith("error threshold exceeded")
    assert day14.ended == parse_time("2026-03-14T02:04:12Z")
    # START named the datasets with their schema, COMPLETE added statistics: both survive
    warehouse = orders[0].outputs[WAREHOUSE]
    assert warehouse.facet("schema") and warehouse.facet("outputStatistics")["rowCount"] == 1947
    (claims,) = jobs["claims.ingest"]
    assert claims.state == "RUNNING" and claims.ended is None and claims.event_count == 10
    assert claims.processing_type == "STREAMING"
    # the latest heartbeat's metrics win
    (raw,) = claims.inputs.values()
    assert raw.facet("dataQualityMetrics")["rowCount"] == 36_000
    assert claims.run_facets["processing_engine"]["name"] == "Apache Beam"
    assert orders[0].run_facets["parent"]["job"]["name"] == "template:data_processing@1.0"


def test_reading_tolerates_cut_lines_duplicates_documents_and_directories(tmp_path):
    lines = EVENTS.read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:10] + lines[5:12]) + "\n" + lines[12][:80])
    (tmp_path / "b.json").write_text(json.dumps([json.loads(x) for x in lines[12:20]], indent=2))
    (tmp_path / "c.json").write_text(json.dumps({"events": [json.loads(lines[20])]}))
    (tmp_path / "notes.txt").write_text("not an event log")
    merged = read_files([tmp_path])
    whole = build_log([json.loads(x) for x in lines[:21]], "x")
    assert merged.skipped == 1  # the cut line; the duplicated lines 5-9 count once
    assert [r.run_id for r in merged.runs] == [r.run_id for r in whole.runs]
    assert [r.state for r in merged.runs] == [r.state for r in whole.runs]
    with pytest.raises(EventLogError, match="no event log"):
        read_files([tmp_path / "missing.jsonl"])


def test_times_parse_the_forms_emitters_write():
    utc = dt.timezone.utc
    assert parse_time("2026-03-01") == dt.datetime(2026, 3, 1, tzinfo=utc)
    assert parse_time("2026-03-01T02:00:00.123456789Z") == dt.datetime(
        2026, 3, 1, 2, 0, 0, 123456, tzinfo=utc
    )
    assert parse_time("2026-03-01T03:00:00+01:00") == dt.datetime(2026, 3, 1, 2, tzinfo=utc)
    with pytest.raises(ValueError, match="not an ISO 8601"):
        parse_time("yesterday")


# --- compliance --------------------------------------------------------------------------------


def test_findings_tell_the_fixture_story(log):
    report = analyse(log)
    found = {(f.severity, f.rule, f.framework) for f in report.findings}
    assert found == {
        ("high", "GDPR-PII-UNPROTECTED", "GDPR"),
        ("high", "HIPAA-PHI-UNPROTECTED", "HIPAA"),
        ("high", "SOX-ASSERTION-FAILED", "SOX"),
        ("high", "SOX-FAILED-RUN", "SOX"),
        ("medium", "GDPR-LINEAGE-MISSING", "GDPR"),
        ("info", "SOX-ASSERTION-FAILED", "SOX"),
        ("info", "SOX-FAILED-RUN", "SOX"),
    }
    assert [f.severity for f in report.findings] == sorted(
        (f.severity for f in report.findings), key=["high", "medium", "low", "info"].index
    )
    by_rule = {(f.rule, f.severity): f for f in report.findings}
    crm_runs = log.jobs()[next(j for j in log.jobs() if j.name == "crm_export.customers")]
    gdpr = by_rule[("GDPR-PII-UNPROTECTED", "high")]
    assert (gdpr.evidence[0].dataset, gdpr.evidence[0].field) == (CRM_TOPIC, "phone")
    assert (gdpr.evidence[1].dataset, gdpr.evidence[1].field) == (CUSTOMERS, "phone")
    assert gdpr.evidence[0].run_id == crm_runs[-1].run_id
    assert "16 of 16 run(s)" in gdpr.detail
    hipaa = by_rule[("HIPAA-PHI-UNPROTECTED", "high")]
    assert hipaa.evidence[0].field == "patient_dob"

    orders = log.jobs()[next(j for j in log.jobs() if j.name == "data_processing.orders")]
    unrecovered = by_rule[("SOX-FAILED-RUN", "high")]
    assert unrecovered.evidence[0].run_id == orders[13].run_id
    recovered = by_rule[("SOX-FAILED-RUN", "info")]
    assert [e.run_id for e in recovered.evidence] == [orders[7].run_id, orders[8].run_id]
    unique = by_rule[("SOX-ASSERTION-FAILED", "high")]
    assert "unique(order_id)" in unique.title and "2 of 13 run(s)" in unique.detail
    assert (unique.evidence[0].dataset, unique.evidence[0].field) == (ORDERS, "order_id")
    regex = by_rule[("SOX-ASSERTION-FAILED", "info")]
    assert [e.run_id for e in regex.evidence] == [orders[4].run_id, orders[5].run_id]
    gap = by_rule[("GDPR-LINEAGE-MISSING", "medium")]
    assert gap.evidence[0].dataset == DEAD_LETTERS and "12 run(s)" in gap.detail


def test_flows_show_what_protects_each_personal_field(log):
    flows = {(f.job.name, f.target_label()): f for f in personal_flows(log)}
    email = flows[("data_processing.orders", "gs://acme-warehouse/warehouse/orders#email")]
    assert email.source_label() == "email from orders.jsonl"
    assert email.protection_label == "email_domain (masking)"
    assert len(email.observations) == 14 and not email.unprotected
    token = flows[("data_processing.orders", "gs://acme-warehouse/warehouse/orders#customer_id")]
    assert token.protection_label == "pseudonymize (pseudonymisation)"
    # failed runs declare the output's governance but no lineage: no "declared only" rows
    assert all(f.sources for f in flows.values())
    # not personal: not a flow
    assert not any(key[1].endswith("#segment") for key in flows)
    assert len(flows) == 10


@pytest.mark.parametrize(
    ("history", "severity"),
    [((False, True), "medium"), ((True, False), "high"), ((False, False), "high")],
)
def test_unmasked_flow_is_high_while_it_lasts_and_medium_once_fixed(history, severity):
    events = [
        e
        for i, masked in enumerate(history)
        for e in copy_run(f"0190d8a0-0000-7000-8000-00000000000{i}", f"2026-01-0{i + 1}", masked)
    ]
    (finding,) = analyse(build_log(events, "t")).findings
    assert (finding.rule, finding.severity) == ("GDPR-PII-UNPROTECTED", severity)
    assert f"{history.count(False)} of 2 run(s)" in finding.detail


def test_masking_flag_or_governance_protection_each_protect_and_indirect_edges_carry_nothing():
    masked_by_transformation = copy_run("0190d8a0-0000-7000-8000-000000000001", "2026-01-01", True)
    assert analyse(build_log(masked_by_transformation, "t")).findings == []
    declared = copy_run("0190d8a0-0000-7000-8000-000000000002", "2026-01-01", False)
    declared[0]["outputs"][0]["facets"]["beamwright_governance"] = governance(
        "internal", ["GDPR"], {"email": ("PII", "redact")}
    )
    (flow,) = personal_flows(build_log(declared, "t"))
    assert flow.protection_label == "redact (masking)" and not flow.unprotected
    indirect = copy_run("0190d8a0-0000-7000-8000-000000000003", "2026-01-01", False)
    edge = indirect[0]["outputs"][0]["facets"]["columnLineage"]["fields"]["email"]
    edge["inputFields"][0]["transformations"] = [{"type": "INDIRECT", "subtype": "FILTER"}]
    assert personal_flows(build_log(indirect, "t")) == []


def test_card_data_is_checked_under_pci_dss_and_gdpr_and_missing_lineage_is_reported():
    card = governance("restricted", ["GDPR", "PCI-DSS"], {"email": ("PCI", None)})
    events = copy_run("0190d8a0-0000-7000-8000-000000000001", "2026-01-01", False)
    events[0]["inputs"][0]["facets"]["beamwright_governance"] = card
    events[0]["outputs"].append(
        {"namespace": "file", "name": "/dump", "facets": {"beamwright_governance": card}}
    )
    found = {(f.rule, f.severity) for f in analyse(build_log(events, "t")).findings}
    assert found == {
        ("GDPR-PII-UNPROTECTED", "high"),
        ("PCI-DSS-PAN-UNPROTECTED", "high"),
        ("GDPR-LINEAGE-MISSING", "medium"),
        ("PCI-DSS-LINEAGE-MISSING", "medium"),
    }


def test_unclassified_dataset_in_a_regulated_run_is_reported():
    events = copy_run("0190d8a0-0000-7000-8000-000000000001", "2026-01-01", True)
    events[0]["inputs"].append({"namespace": "file", "name": "/lookup"})
    (finding,) = analyse(build_log(events, "t")).findings
    assert (finding.rule, finding.severity, finding.framework) == (
        "GOV-UNCLASSIFIED",
        "low",
        "GDPR",
    )
    assert finding.evidence[0].dataset == DatasetId("file", "/lookup")


def test_quality_history_per_dataset_and_run(log):
    histories = {h.dataset: h for h in quality_histories(log)}
    orders = histories[ORDERS]
    assert orders.assertion_keys() == [
        "not_null(order_id)",
        "between(amount)",
        "regex(email)",
        "unique(order_id)",
    ]
    assert len(orders.records) == 13  # day 8 failed before any validation
    failing = [
        (r.run.started.day, k)
        for r in orders.records
        for k, v in r.results.items()
        if not v.success
    ]
    assert failing == [(5, "regex(email)"), (13, "unique(order_id)"), (14, "unique(order_id)")]
    assert orders.records[4].results["regex(email)"].severity == "warn"
    # claims.raw keeps its assertions in the dataset facets, not the input facets: still read
    claims = histories[DatasetId("kafka://broker.internal:9092", "claims.raw")]
    assert claims.failures() == 0 and len(claims.records) == 1


def test_report_command_writes_self_contained_html_and_markdown(tmp_path, capsys):
    assert cli("lineage", "report", "--events", str(EVENTS), "--out", str(tmp_path)) == 0
    assert "4 high, 1 medium, 0 low, 2 info" in capsys.readouterr().out
    markdown = (tmp_path / "compliance.md").read_text()
    page = (tmp_path / "compliance.html").read_text()
    for heading in (
        "## Findings",
        "## Datasets by classification",
        "## Where personal data flows",
        "## Protections in use",
        "## Quality assertion history",
    ):
        assert heading in markdown
        assert f"<h2>{heading[3:]}</h2>" in page
    assert (
        "| beamwright/crm_export.customers | kafka://broker.internal:9092/crm.customers#phone | "
        "kafka://broker.internal:9092/crm.customers | phone from customers.csv |" in markdown
    )
    assert markdown.count("**Recommendation: **") == 7
    assert "FAIL (error)" in markdown and "FAIL (warn)" in markdown
    # self-contained: nothing to fetch (no src/href, no external url(); dataset URIs are text)
    assert " src=" not in page and " href=" not in page and "@import" not in page
    assert page.count("url(") == page.count("url(#arrow)") > 0
    assert page.count('<g class="node ') == 12
    ET.fromstring(page[page.index("<svg") : page.index("</svg>") + 6])


def test_report_filters_and_fails_on_severity(tmp_path, capsys):
    streaming = ["--namespace", "beamwright-streaming"]
    args = ["lineage", "report", "--events", str(EVENTS), "--out", str(tmp_path)]
    assert cli(*args, *streaming, "--fail-on", "high") == 1
    assert "1 run(s) of 1 job(s); findings: 1 high, 0 medium" in capsys.readouterr().out
    assert cli(*args, "--since", "2026-03-10", "--until", "2026-03-12", "--fail-on", "medium") == 1
    out = capsys.readouterr().out
    assert out.startswith("5 run(s) of 3 job(s)")  # days 10 and 11: 2 orders, 2 crm, 1 claims
    assert cli(*args, "--events", str(tmp_path / "missing.jsonl")) == 2
    assert "no event log" in capsys.readouterr().err


def test_markdown_escapes_what_markdown_would_interpret():
    events = copy_run("0190d8a0-0000-7000-8000-000000000001", "2026-01-01", False)
    events[0]["job"]["name"] = "a|b*c"
    text = to_markdown("t", compliance_sections(analyse(build_log(events, "t"))))
    assert "ns/a\\|b\\*c" in text and "a|b*c" not in text


# --- access ------------------------------------------------------------------------------------


def test_robust_score_uses_mad_then_mean_deviation_then_any_change():
    history = [100, 102, 98, 101, 99, 100, 400]  # one old spike does not hide the next
    score = robust_score(400, history)
    assert score.median == 100 and score.spread == 1 and score.anomalous
    assert not robust_score(103, history).anomalous
    daily = [1, 1, 2, 1, 1, 0, 1, 2, 1, 1]  # MAD is 0: mean absolute deviation
    assert robust_score(1, daily).z == 0 and robust_score(3, daily).anomalous
    assert not robust_score(2, daily).anomalous
    assert robust_score(2, [1] * 6).z == float("inf")
    assert robust_score(1, [1] * 6).z == 0


def test_access_over_events_without_principals_attributes_them_to_unknown(capsys):
    """The fixture predates principals: every run is the principal ``unknown``, reported as
    unattributed; reads, rows and streaming are counted as before."""
    argv = ["lineage", "access", "--events", str(EVENTS), "--from", "2026-03-12"]
    assert cli(*argv, "--to", "2026-03-15", "--baseline-days", "11", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    access = {(r["principal"], r["dataset"]): r for r in result["accesses"]}
    assert access[("unknown", "/srv/ref/customers.csv")]["reads"] == 10
    assert access[("unknown", "/srv/landing/orders.jsonl")]["rows_read"] == 1992 + 9120 + 2003
    stream = access[("unknown", "kafka://broker.internal:9092/claims.raw")]
    assert stream["streaming"] and stream["rows_read"] is None
    kinds = {(a["kind"], a["dataset"]) for a in result["anomalies"]}
    assert ("unattributed", None) in kinds
    assert ("new_dataset", "gs://acme-marketing/segments/weekly") in kinds


def test_short_history_is_listed_as_unchecked_not_guessed(log):
    report = analyse_access(
        log, parse_time("2026-03-04"), parse_time("2026-03-05"), baseline_days=7
    )
    assert [a.kind for a in report.anomalies] == ["unattributed"]
    assert any(
        u.startswith("volume: unknown: fewer than 7 baseline days") for u in report.unchecked
    )
    assert "Not checked (too little history)" in access_text(report)
    with pytest.raises(ValueError, match="empty"):
        analyse_access(log, parse_time("2026-03-05"), parse_time("2026-03-05"))


def test_access_rejects_a_backwards_range(capsys):
    argv = ["lineage", "access", "--events", str(EVENTS), "--from", "2026-03-12", "--to"]
    assert cli(*argv, "2026-03-01") == 2
    assert "--to must be after --from" in capsys.readouterr().err


# --- Marquez API -------------------------------------------------------------------------------


class FakeMarquez:
    """``GET /api/v1/events/lineage`` as Marquez answers it, over the fixture events."""

    def __init__(self, events: list[dict], *, ignore_offset: bool = False, status: int = 200):
        self.events = sorted(events, key=lambda e: parse_time(e["eventTime"]))
        self.ignore_offset = ignore_offset
        self.status = status
        self.requests: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(path)
        if url.path != "/api/v1/events/lineage":
            return 404, {}
        query = dict(urllib.parse.parse_qsl(url.query))
        self.requests.append(query)
        self.headers.append(headers)
        if self.status != 200:
            return self.status, {"error": "boom"}
        before = parse_time(query.get("before", "2030-01-01T00:00:00+00:00"))
        after = parse_time(query.get("after", "1970-01-01T00:00:00+00:00"))
        chosen = [e for e in self.events if after <= parse_time(e["eventTime"]) <= before]
        if query.get("sortDirection", "desc") == "desc":
            chosen.reverse()
        limit = int(query.get("limit", 100))
        offset = 0 if self.ignore_offset else int(query.get("offset", 0))
        return 200, {"events": chosen[offset : offset + limit], "totalCount": len(chosen)}


@pytest.fixture
def marquez() -> Iterator[tuple[FakeMarquez, str]]:
    fake = FakeMarquez([json.loads(x) for x in EVENTS.read_text().splitlines()])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, body = fake.answer(self.path, dict(self.headers))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_marquez_reader_pages_through_all_events(marquez):
    fake, url = marquez
    from_api = read_marquez(url, page_size=20)
    assert [q["offset"] for q in fake.requests] == ["0", "20", "40", "60"]
    assert {q["sortDirection"] for q in fake.requests} == {"asc"}
    assert all("before" in q and "after" not in q for q in fake.requests)
    from_file = read_files([EVENTS])
    assert [(r.run_id, r.state, r.event_count) for r in from_api.runs] == [
        (r.run_id, r.state, r.event_count) for r in from_file.runs
    ]
    api_report, file_report = analyse(from_api), analyse(from_file)
    assert [(f.rule, f.severity, f.detail) for f in api_report.findings] == [
        (f.rule, f.severity, f.detail) for f in file_report.findings
    ]


def test_marquez_window_and_api_key_reach_the_server(marquez, monkeypatch, capsys, tmp_path):
    fake, url = marquez
    monkeypatch.setenv("MARQUEZ_API_KEY", "k-123")
    args = ["lineage", "graph", "--marquez", url + "/api/v1/", "--out", str(tmp_path / "g.html")]
    assert cli(*args, "--since", "2026-03-13", "--until", "2026-03-14") == 0
    # orders, crm, marketing, and the streaming run, known here by its heartbeats in the window
    assert "4 job(s)" in capsys.readouterr().out
    (query,) = fake.requests
    assert (query["after"], query["before"]) == (
        "2026-03-13T00:00:00+00:00",
        "2026-03-14T00:00:00+00:00",
    )
    assert fake.headers[0]["Authorization"] == "Bearer k-123"


def test_marquez_errors_and_servers_ignoring_offset_are_reported(marquez, capsys, tmp_path):
    fake, url = marquez
    fake.ignore_offset = True
    log = read_marquez(url, page_size=10)
    assert len(fake.requests) == 2 and "ignores 'offset'" in log.warnings[0]
    fake.status = 500
    assert cli("lineage", "report", "--marquez", url, "--out", str(tmp_path)) == 2
    assert "answered HTTP 500" in capsys.readouterr().err
    with pytest.raises(EventLogError, match="cannot reach"):
        read_marquez("http://127.0.0.1:9")


# --- graph -------------------------------------------------------------------------------------


def test_graph_is_layered_deterministic_and_well_formed(log):
    graph = build_laid_out_graph(log)
    nodes = graph.visible_nodes()
    assert sum(n.kind == "job" for n in nodes) == 4 and sum(n.kind == "dataset" for n in nodes) == 8
    # reads go right into jobs, writes go right out of them
    for edge in graph.edges:
        source, target = graph.nodes[edge.source], graph.nodes[edge.target]
        assert target.layer == source.layer + 1
        assert edge.points[0][0] == source.x + source.width and edge.points[-1][0] == target.x
    # no two nodes overlap
    for a in nodes:
        for b in nodes:
            if a is not b:
                assert (
                    a.x + a.width <= b.x
                    or b.x + b.width <= a.x
                    or a.y + a.height <= b.y
                    or b.y + b.height <= a.y
                ), (a.id, b.id)
    exposed = {(k.source_field, k.target_field) for k in graph.links if k.kind == "exposed"}
    assert exposed == {("phone", "phone"), ("patient_dob", "patient_dob")}
    assert len(graph.links) == 21
    phone = next(k for k in graph.links if k.kind == "exposed" and k.job.endswith("customers"))
    customers = graph.nodes[CUSTOMERS.node_id]
    assert phone.points[0][1] == customers.field_y("phone")
    svg = render_svg(graph)
    assert svg == render_svg(build_laid_out_graph(read_files([EVENTS])))
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    page = render_graph_html(graph, title="t", source="s")
    assert (
        "<script>" in page
        and " src=" not in page
        and "http://"
        not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace("kafka://", "")
    )


def test_graph_handles_cycles_long_edges_and_empty_logs():
    # a job reading and writing the same table, and an edge skipping layers
    ds = [{"namespace": "file", "name": f"/{n}"} for n in ("a", "b", "c")]
    events = [
        event(
            "COMPLETE",
            "2026-01-01",
            "j1",
            "0190d8a0-0000-7000-8000-000000000001",
            inputs=[ds[0]],
            outputs=[ds[1]],
        ),
        event(
            "COMPLETE",
            "2026-01-02",
            "j2",
            "0190d8a0-0000-7000-8000-000000000002",
            inputs=[ds[1], ds[2]],
            outputs=[ds[2]],
        ),
        event(
            "COMPLETE",
            "2026-01-03",
            "j3",
            "0190d8a0-0000-7000-8000-000000000003",
            inputs=[ds[0], ds[2]],
            outputs=[],
        ),
    ]
    graph = build_laid_out_graph(build_log(events, "t"))
    assert all(len(e.points) >= 2 for e in graph.edges)
    long_edge = next(
        e for e in graph.edges if e.source == "dataset:file:/a" and e.target.endswith("j3")
    )
    assert len(long_edge.points) > 2  # bent through dummy nodes, not across other nodes
    ET.fromstring(render_svg(graph))
    empty = build_laid_out_graph(build_log([], "t"))
    assert "No runs in the event log." in render_svg(empty)


def test_graph_command_writes_page_and_svg(tmp_path, capsys):
    page, svg = tmp_path / "out" / "graph.html", tmp_path / "graph.svg"
    assert (
        cli("lineage", "graph", "--events", str(EVENTS), "--out", str(page), "--svg", str(svg)) == 0
    )
    assert "4 job(s), 8 dataset(s), 21 column link(s)" in capsys.readouterr().out
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert ET.fromstring(svg.read_text()).get("width")


def test_cli_module_imports_nothing_heavy():
    code = (
        "import sys, pipelines.lineage_cli; "
        "print([m for m in sys.modules if m.split('.')[0] in "
        "('apache_beam', 'pyarrow', 'openlineage', 'jsonschema') or m.startswith('lineage.')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
