"""``beamwright lineage report``: PII flows only from classified (or derived) fields, one row per
output field, every finding with a recommendation; quality per dataset from its own assertions.

The demo test runs the shipped main job (as ``make demo`` does) and checks its report against
the governance its own events declare, so it follows the template rather than a frozen count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.reports.compliance import analyse, personal_flows, quality_histories
from lineage.reports.events import DatasetId, build_log, read_files
from tests.test_lineage_reports import cli, event, gen, governance, lineage

ROOT = Path(__file__).resolve().parents[1]


def output(name: str, fields: dict, gov: dict, **facets: dict) -> dict:
    return {
        "namespace": "file",
        "name": name,
        "facets": {"columnLineage": lineage(fields), "beamwright_governance": gov, **facets},
    }


def source(name: str, gov: dict, schema: list[str] | None = None) -> dict:
    facets: dict = {"beamwright_governance": gov}
    if schema is not None:
        facets["schema"] = gen.facet(
            "SchemaDatasetFacet",
            schema_version="1-2-0",
            fields=[{"name": n, "type": "string"} for n in schema],
        )
    return {"namespace": "file", "name": name, "facets": facets}


def one_run(
    *outputs: dict,
    job: str = "job",
    day: str = "2026-01-01",
    number: int = 1,
    inputs: list[dict] | None = None,
) -> dict:
    """The COMPLETE event of one run of ``job`` on ``day`` reading the classified orders (or
    ``inputs``) and writing ``outputs``."""
    return event(
        "COMPLETE", day, job, f"0190d8a0-0000-7000-8000-{number:012d}",
        inputs=[source("/orders", ORDERS_GOV)] if inputs is None else inputs,
        outputs=list(outputs),
    )  # fmt: skip


def edge(name: str, field: str, masking: bool = False) -> tuple:
    return ("file", name, field, "DIRECT", "TRANSFORMATION", masking)


ORDERS_GOV = governance(
    "PII",
    ["GDPR", "PCI-DSS"],
    {"email": ("PII", None), "pan": ("PCI", None), "amount": ("internal", None)},
)


def test_a_payload_classified_pii_lists_only_the_personal_fields_feeding_it():
    dead = output(
        "/dead",
        {
            "payload": [
                edge("/orders", "amount"),
                edge("/orders", "email"),
                edge("/orders", "status"),
            ]
        },
        governance("PII", ["GDPR"], {"payload": ("PII", None)}),
    )
    events = [one_run(dead)]
    (flow,) = personal_flows(build_log(events, "t"))
    assert [(s.dataset.name, s.field) for s in flow.sources] == [("/orders", "email")]
    assert flow.source_label() == "email from orders"


def test_fields_derived_from_personal_fields_are_flows_across_jobs():
    staging = output(
        "/staging", {"mail": [edge("/orders", "email")]}, governance("internal", ["GDPR"], {})
    )
    staging["facets"].pop("beamwright_governance")  # job A's output declares nothing
    out = output(
        "/out", {"contact": [edge("/staging", "mail")]}, governance("internal", ["GDPR"], {})
    )
    events = [
        one_run(staging, job="a"),
        one_run(
            out,
            job="b",
            day="2026-01-02",
            number=2,
            inputs=[{"namespace": "file", "name": "/staging"}],
        ),
    ]
    flows = {(f.job.name, f.target_label()): f for f in personal_flows(build_log(events, "t"))}
    derived = flows[("b", "/out#contact")]
    assert derived.sources[0].derived and derived.source_label() == "mail (derived) from staging"
    (finding,) = [f for f in analyse(build_log(events, "t")).findings if "/out#contact" in f.detail]
    assert finding.rule == "GDPR-PII-UNPROTECTED"


def test_each_finding_says_which_field_strategy_sink_and_audience():
    sink = output(
        "/cards_out",
        {"pan": [edge("/orders", "pan")], "email": [edge("/orders", "email", masking=True)]},
        governance("PII", ["GDPR", "PCI-DSS"], {}),
        symlinks=gen.facet(
            "SymlinksDatasetFacet",
            identifiers=[{"namespace": "beamwright", "name": "pay.card_report", "type": "DATASET"}],
        ),
    )
    sink["facets"]["columnLineage"]["fields"]["email"]["inputFields"][0]["transformations"][0][
        "description"
    ] = "masked: email_domain"
    events = [one_run(sink, job="pay")]
    report = analyse(build_log(events, "t"))
    assert {f.rule for f in report.findings} == {"GDPR-PII-UNPROTECTED", "PCI-DSS-PAN-UNPROTECTED"}
    for finding in report.findings:
        text = finding.recommendation
        assert "Mask field pan" in text and "strategy partial" in text
        assert "before sink card_report" in text and "already has (it applies email_domain)" in text
        assert "audience" in text and "PCI data" in text
        assert "ISO27001 A.8.11 data masking" in finding.controls


def test_an_audience_masking_the_field_protects_the_flow():
    audience = {
        "_producer": gen.PRODUCER,
        "_schemaURL": "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/"
        "schemas/AudienceDatasetFacet.json#/$defs/AudienceDatasetFacet",
        "name": "analysts",
        "attributes": {"clearance": "internal"},
        "masked_fields": ["email"],
    }
    out = output(
        "/out",
        {"email": [edge("/orders", "email")]},
        governance("PII", ["GDPR"], {}),
        beamwright_audience=audience,
    )
    events = [one_run(out)]
    log = build_log(events, "t")
    (flow,) = personal_flows(log)
    assert flow.protection_label == "masked for audience analysts (masking)"
    assert analyse(log).findings == []


def test_quality_history_keeps_each_datasets_own_assertions():
    def assertions(*checks: tuple[str, str, bool]) -> dict:
        return {
            "dataQualityAssertions": gen.assertions([(a, c, ok, "error") for a, c, ok in checks])
        }

    east = source("/east", governance("internal", [], {}), ["status", "amount"])
    east["inputFacets"] = assertions(
        ("in_set", "status", False), ("not_null", "customer_name", False)
    )
    west = source("/west", governance("internal", [], {}), ["amount"])
    west["inputFacets"] = assertions(("between", "amount", True))
    events = [one_run(inputs=[east, west])]
    histories = {h.dataset.name: h for h in quality_histories(build_log(events, "t"))}
    # customer_name is not a field of /east: a rule of the joined reference, not east's own
    assert histories["/east"].assertion_keys() == ["in_set(status)"]
    assert histories["/west"].assertion_keys() == ["between(amount)"]


@pytest.mark.slow
def test_demo_report_lists_only_classified_fields_and_recommends_on_every_finding(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "data_processing", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = tmp_path / "beamwright-output/data_processing/lineage/events.jsonl"
    log = read_files([events])
    personal_inputs: set[tuple[DatasetId, str]] = set()
    non_personal: set[tuple[DatasetId, str]] = set()
    for run in log.runs:
        for use in run.inputs.values():
            fields = use.facet("beamwright_governance")["fields"]
            for name, info in fields.items():
                bucket = (
                    personal_inputs
                    if info["classification"] in ("PII", "PCI", "PHI", "SPI")
                    else non_personal
                )
                bucket.add((use.dataset, name))
    assert {f for _, f in non_personal} >= {"amount", "status"}
    flows = personal_flows(log)
    sources = {(s.dataset, s.field) for flow in flows for s in flow.sources}
    assert sources and sources <= personal_inputs and not sources & non_personal
    dead = [f for f in flows if f.sink == "dead_letters" and f.target_field == "payloadBytes"]
    assert {(s.dataset, s.field) for s in dead[0].sources} == personal_inputs
    assert len({(f.job, f.target, f.target_field) for f in flows}) == len(flows)  # one row each

    out = tmp_path / "report"
    assert cli("lineage", "report", "--events", str(events), "--out", str(out)) == 0
    markdown = (out / "compliance.md").read_text()
    table = markdown.split("## Where personal data flows")[1].split("## Protections in use")[0]
    assert table.count("\n| beamwright/") == len(flows)
    assert "#amount" not in table and "#status" not in table
    for finding in analyse(log).findings:
        assert finding.recommendation
    json.dumps([f.recommendation for f in analyse(log).findings])
