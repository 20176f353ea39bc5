"""Writes ``events.jsonl``: two weeks of OpenLineage events the report tests read.

Run ``python tests/data/lineage/make_events.py`` after changing it; a test checks the
committed file is what this script writes, so the fixture never drifts from its description.

The story the events tell (2026-03-01 .. 2026-03-14, namespace ``beamwright`` unless noted):

* ``data_processing.orders`` (a run of the ``data_processing`` template, BATCH, daily 02:00)
  reads landing orders + the customer reference file, writes a masked warehouse table and a
  dead-letter directory (which has no column lineage). Day 5: the ``regex(email)`` assertion
  fails (warn), fixed on day 6. Day 8: the run FAILs, day 9 completes. Day 13: 9,120 orders
  instead of ~2,000, and ``unique(order_id)`` fails (error); day 14 fails the same assertion
  and the run FAILs: no success after it.
* ``crm_export.customers`` (BATCH, daily 03:00, three runs on day 12) publishes customers to a
  Kafka topic with ``phone`` copied unmasked (the GDPR finding).
* ``marketing.segment_export`` (BATCH, days 12 and 13 only): a new reader of customers.csv.
* ``claims.ingest`` (namespace ``beamwright-streaming``, STREAMING, one run from day 10, RUNNING
  heartbeats every 12 h, no terminal event): PHI with ``patient_dob`` unprotected (HIPAA).
  Its quality assertions sit in the dataset facets rather than the input facets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

PRODUCER = "https://github.com/beamwright/beamwright/tree/0.1.0"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
SPEC = "https://openlineage.io/spec/facets"
GOVERNANCE_URL = (  # the schema shipped in lineage/schemas/
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "GovernanceDatasetFacet.json#/$defs/GovernanceDatasetFacet"
)
DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)

ORDERS = ("file", "/srv/landing/orders.jsonl")
CUSTOMERS = ("file", "/srv/ref/customers.csv")
WAREHOUSE = ("gs://acme-warehouse", "warehouse/orders")
DEAD_LETTERS = ("file", "/srv/alerts/dead_letters")
CRM_TOPIC = ("kafka://broker.internal:9092", "crm.customers")
SEGMENTS = ("gs://acme-marketing", "segments/weekly")
CLAIMS_RAW = ("kafka://broker.internal:9092", "claims.raw")
CLAIMS_CURATED = ("gs://acme-health", "claims/curated")

SCHEMAS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ORDERS: [
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "order_date", "type": "date32"},
        {"name": "status", "type": "string"},
        {"name": "currency", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "quantity", "type": "int64"},
        {"name": "card_number", "type": "string"},
        {
            "name": "shipping",
            "type": "struct",
            "fields": [{"name": "address", "type": "string"}, {"name": "city", "type": "string"}],
        },
    ],
    CUSTOMERS: [
        {"name": "customer_id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "segment", "type": "string"},
        {"name": "loyalty_tier", "type": "string"},
        {"name": "phone", "type": "string"},
    ],
    WAREHOUSE: [
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "order_date", "type": "date32"},
        {"name": "status", "type": "string"},
        {"name": "total", "type": "double"},
        {"name": "card_number", "type": "string"},
        {"name": "segment", "type": "string"},
    ],
    DEAD_LETTERS: [
        {"name": "timestamp", "type": "timestamp[us, tz=UTC]"},
        {"name": "payloadString", "type": "string"},
        {"name": "errorMessage", "type": "string"},
        {"name": "step", "type": "string"},
        {"name": "rule", "type": "string"},
        {"name": "run_id", "type": "string"},
    ],
    CRM_TOPIC: [
        {"name": "customer_id", "type": "string"},
        {"name": "name_hash", "type": "string"},
        {"name": "segment", "type": "string"},
        {"name": "phone", "type": "string"},
    ],
    SEGMENTS: [
        {"name": "customer_key", "type": "string"},
        {"name": "segment", "type": "string"},
        {"name": "loyalty_tier", "type": "string"},
    ],
    CLAIMS_RAW: [
        {"name": "claim_id", "type": "string"},
        {"name": "patient_id", "type": "string"},
        {"name": "patient_dob", "type": "date32"},
        {"name": "diagnosis_code", "type": "string"},
        {"name": "amount", "type": "double"},
    ],
    CLAIMS_CURATED: [
        {"name": "claim_id", "type": "string"},
        {"name": "patient_token", "type": "string"},
        {"name": "patient_dob", "type": "date32"},
        {"name": "diagnosis_group", "type": "string"},
        {"name": "amount", "type": "double"},
    ],
}

GOVERNANCE: dict[tuple[str, str], tuple[str, list[str], dict[str, tuple[str, str | None]]]] = {
    ORDERS: (
        "confidential",
        ["GDPR", "SOX"],
        {
            "customer_id": ("PII", None),
            "email": ("PII", None),
            "card_number": ("PII", None),
            "shipping.address": ("PII", None),
        },
    ),
    CUSTOMERS: (
        "confidential",
        ["GDPR"],
        {"customer_id": ("PII", None), "name": ("PII", None), "phone": ("PII", None)},
    ),
    WAREHOUSE: (
        "confidential",
        ["GDPR", "SOX"],
        {
            "customer_id": ("PII", "pseudonymize"),
            "email": ("PII", "email_domain"),
            "card_number": ("PII", "partial"),
        },
    ),
    DEAD_LETTERS: ("confidential", ["GDPR"], {}),
    CRM_TOPIC: (
        "PII",
        ["GDPR"],
        {
            "customer_id": ("PII", "pseudonymize"),
            "name_hash": ("PII", "hash"),
            "phone": ("PII", None),
        },
    ),
    SEGMENTS: ("internal", ["GDPR"], {"customer_key": ("PII", "hash")}),
    CLAIMS_RAW: (
        "restricted",
        ["HIPAA"],
        {
            "patient_id": ("PHI", None),
            "patient_dob": ("PHI", None),
            "diagnosis_code": ("PHI", None),
        },
    ),
    CLAIMS_CURATED: (
        "restricted",
        ["HIPAA"],
        {
            "patient_token": ("PHI", "pseudonymize"),
            "patient_dob": ("PHI", None),
            "diagnosis_group": ("PHI", "generalize"),
        },
    ),
}

# output field -> [(input dataset, input field, type, subtype, masking)]
Lineage = dict[str, list[tuple[tuple[str, str], str, str, str, bool]]]
COLUMN_LINEAGE: dict[tuple[str, str], Lineage] = {
    WAREHOUSE: {
        "order_id": [(ORDERS, "order_id", "DIRECT", "IDENTITY", False)],
        "customer_id": [(ORDERS, "customer_id", "DIRECT", "TRANSFORMATION", True)],
        "email": [(ORDERS, "email", "DIRECT", "TRANSFORMATION", True)],
        "order_date": [(ORDERS, "order_date", "DIRECT", "IDENTITY", False)],
        "status": [(ORDERS, "status", "DIRECT", "IDENTITY", False)],
        "total": [
            (ORDERS, "amount", "DIRECT", "TRANSFORMATION", False),
            (ORDERS, "quantity", "DIRECT", "TRANSFORMATION", False),
        ],
        "card_number": [(ORDERS, "card_number", "DIRECT", "TRANSFORMATION", True)],
        "segment": [(CUSTOMERS, "segment", "DIRECT", "IDENTITY", False)],
    },
    CRM_TOPIC: {
        "customer_id": [(CUSTOMERS, "customer_id", "DIRECT", "TRANSFORMATION", True)],
        "name_hash": [(CUSTOMERS, "name", "DIRECT", "TRANSFORMATION", True)],
        "segment": [(CUSTOMERS, "segment", "DIRECT", "IDENTITY", False)],
        "phone": [(CUSTOMERS, "phone", "DIRECT", "IDENTITY", False)],
    },
    SEGMENTS: {
        "customer_key": [(CUSTOMERS, "customer_id", "DIRECT", "TRANSFORMATION", True)],
        "segment": [(CUSTOMERS, "segment", "DIRECT", "IDENTITY", False)],
        "loyalty_tier": [(CUSTOMERS, "loyalty_tier", "DIRECT", "IDENTITY", False)],
    },
    CLAIMS_CURATED: {
        "claim_id": [(CLAIMS_RAW, "claim_id", "DIRECT", "IDENTITY", False)],
        "patient_token": [(CLAIMS_RAW, "patient_id", "DIRECT", "TRANSFORMATION", True)],
        "patient_dob": [(CLAIMS_RAW, "patient_dob", "DIRECT", "IDENTITY", False)],
        "diagnosis_group": [(CLAIMS_RAW, "diagnosis_code", "DIRECT", "TRANSFORMATION", True)],
        "amount": [(CLAIMS_RAW, "amount", "DIRECT", "IDENTITY", False)],
    },
}
DATASET_LINEAGE: dict[tuple[str, str], list[tuple[tuple[str, str], str, str]]] = {
    WAREHOUSE: [(ORDERS, "status", "FILTER"), (CUSTOMERS, "customer_id", "JOIN")],
    SEGMENTS: [(CUSTOMERS, "segment", "GROUP_BY")],
}


def facet(schema: str, /, schema_version: str = "1-0-1", **body: Any) -> dict:
    """A standard facet: ``_producer``, ``_schemaURL`` from the schema's name and version, body."""
    url = f"{SPEC}/{schema_version}/{schema}.json#/$defs/{schema}"
    return {"_producer": PRODUCER, "_schemaURL": url, **body}


def run_id(moment: dt.datetime, seed: str) -> str:
    """A deterministic UUIDv7: the millisecond timestamp, then bits from a hash of ``seed``."""
    millis = int(moment.timestamp() * 1000)
    rand = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def governance(ds: tuple[str, str]) -> dict:
    classification, frameworks, fields = GOVERNANCE[ds]
    return {
        "_producer": PRODUCER,
        "_schemaURL": GOVERNANCE_URL,
        "classification": classification,
        "frameworks": frameworks,
        "fields": {
            name: {"classification": cls, "protection": protection}
            for name, (cls, protection) in fields.items()
        },
    }


def dataset_facets(ds: tuple[str, str]) -> dict:
    namespace, name = ds
    uri = f"file://{name}" if namespace == "file" else f"{namespace}/{name}"
    facets = {
        "schema": facet("SchemaDatasetFacet", schema_version="1-2-0", fields=SCHEMAS[ds]),
        "dataSource": facet("DatasourceDatasetFacet", name=namespace, uri=uri),
        "beamwright_governance": governance(ds),
    }
    if ds == WAREHOUSE:
        facets["symlinks"] = facet(
            "SymlinksDatasetFacet",
            identifiers=[{"namespace": "bigquery", "name": "acme.sales.orders", "type": "TABLE"}],
        )
    return facets


def column_lineage(ds: tuple[str, str]) -> dict:
    fields = {
        out: {
            "inputFields": [
                {
                    "namespace": src[0],
                    "name": src[1],
                    "field": field,
                    "transformations": [
                        {"type": kind, "subtype": subtype, "description": "", "masking": masking}
                    ],
                }
                for src, field, kind, subtype, masking in inputs
            ]
        }
        for out, inputs in COLUMN_LINEAGE[ds].items()
    }
    body: dict[str, Any] = {"fields": fields}
    if ds in DATASET_LINEAGE:
        body["dataset"] = [
            {
                "namespace": src[0],
                "name": src[1],
                "field": field,
                "transformations": [
                    {"type": "INDIRECT", "subtype": subtype, "description": "", "masking": False}
                ],
            }
            for src, field, subtype in DATASET_LINEAGE[ds]
        ]
    return facet("ColumnLineageDatasetFacet", schema_version="1-2-0", **body)


def assertions(checks: list[tuple[str, str, bool, str]]) -> dict:
    return facet(
        "DataQualityAssertionsDatasetFacet",
        schema_version="1-1-0",
        assertions=[
            {"assertion": a, "column": c, "success": ok, "severity": sev}
            for a, c, ok, sev in checks
        ],
    )


def metrics(rows: int, nulls: dict[str, int]) -> dict:
    return facet(
        "DataQualityMetricsInputDatasetFacet",
        schema_version="1-0-3",
        rowCount=rows,
        columnMetrics={col: {"nullCount": n} for col, n in nulls.items()},
    )


def event(
    kind: str,
    moment: dt.datetime,
    job: tuple[str, str],
    rid: str,
    job_facets: dict,
    run_facets: dict,
    inputs: list[dict],
    outputs: list[dict],
) -> dict:
    return {
        "eventType": kind,
        "eventTime": moment.isoformat().replace("+00:00", "Z"),
        "producer": PRODUCER,
        "schemaURL": CORE,
        "run": {"runId": rid, "facets": run_facets},
        "job": {"namespace": job[0], "name": job[1], "facets": job_facets},
        "inputs": inputs,
        "outputs": outputs,
    }


def job_facets(processing: str, description: str, owner: str) -> dict:
    return {
        "jobType": facet(
            "JobTypeJobFacet",
            schema_version="2-0-4",
            processingType=processing,
            integration="BEAM",
            jobType="JOB",
        ),
        "documentation": facet(
            "DocumentationJobFacet", schema_version="1-1-0", description=description
        ),
        "ownership": facet("OwnershipJobFacet", owners=[{"name": owner, "type": "MAINTAINER"}]),
    }


def run_facets(template: str | None, moment: dt.datetime) -> dict:
    facets: dict[str, Any] = {
        "processing_engine": facet(
            "ProcessingEngineRunFacet",
            schema_version="1-1-1",
            name="Apache Beam",
            version="2.77.0",
            openlineageAdapterVersion="beamwright 0.1.0",
        ),
        "tags": facet(
            "TagsRunFacet",
            schema_version="1-0-0",
            tags=[{"key": "runner", "value": "direct", "source": "BEAMWRIGHT"}],
        ),
    }
    if template:
        facets["tags"]["tags"].append(
            {"key": "template", "value": template, "source": "BEAMWRIGHT"}
        )
        facets["parent"] = facet(
            "ParentRunFacet",
            schema_version="1-2-0",
            run={"runId": run_id(moment, "template:" + template)},
            job={"namespace": "beamwright", "name": f"template:{template}"},
        )
    return facets


def batch_run(
    job: tuple[str, str],
    moment: dt.datetime,
    *,
    jf: dict,
    template: str | None,
    reads: list[tuple[tuple[str, str], int, dict | None]],
    writes: list[tuple[tuple[str, str], int]],
    error: str | None = None,
) -> list[dict]:
    """START and COMPLETE (or FAIL) of one batch run."""
    rid = run_id(moment, f"{job}:{moment.isoformat()}")
    rf = run_facets(template, moment)
    start_inputs = [
        {"namespace": ds[0], "name": ds[1], "facets": dataset_facets(ds)} for ds, _, _ in reads
    ]
    start_outputs = [
        {"namespace": ds[0], "name": ds[1], "facets": dataset_facets(ds)} for ds, _ in writes
    ]
    events = [event("START", moment, job, rid, jf, rf, start_inputs, start_outputs)]
    end_inputs = []
    for ds, rows, quality in reads:
        item: dict[str, Any] = {"namespace": ds[0], "name": ds[1]}
        if rows:
            item["inputFacets"] = {
                "dataQualityMetrics": metrics(rows, {"email": 0})
                if ds == ORDERS
                else metrics(rows, {})
            }
            if quality:
                item["inputFacets"]["dataQualityAssertions"] = quality
        end_inputs.append(item)
    end_outputs = []
    for ds, rows in writes:
        item = {"namespace": ds[0], "name": ds[1]}
        if error is None:
            facets: dict[str, Any] = {
                "lifecycleStateChange": facet(
                    "LifecycleStateChangeDatasetFacet", lifecycleStateChange="OVERWRITE"
                )
            }
            if ds in COLUMN_LINEAGE:
                facets["columnLineage"] = column_lineage(ds)
            item["facets"] = facets
            item["outputFacets"] = {
                "outputStatistics": facet(
                    "OutputStatisticsOutputDatasetFacet",
                    schema_version="1-0-2",
                    rowCount=rows,
                    size=rows * 180,
                    fileCount=1,
                )
            }
        end_outputs.append(item)
    end_rf: dict[str, Any] = {}
    if error is not None:
        end_rf["errorMessage"] = facet(
            "ErrorMessageRunFacet",
            message=error,
            programmingLanguage="python",
            stackTrace=f"Traceback (most recent call last):\n  ...\nRuntimeError: {error}",
        )
    end = moment + dt.timedelta(minutes=4, seconds=12)
    events.append(
        event("FAIL" if error else "COMPLETE", end, job, rid, jf, end_rf, end_inputs, end_outputs)
    )
    return events


ORDER_ROWS = [1987, 2011, 2003, 1995, 2020, 1978, 2005, 0, 2014, 1999, 2008, 1992, 9120, 2003]


def order_checks(day: int) -> list[tuple[str, str, bool, str]]:
    return [
        ("not_null", "order_id", True, "error"),
        ("between", "amount", True, "error"),
        ("regex", "email", day != 5, "warn"),
        ("unique", "order_id", day < 13, "error"),
    ]


def all_events() -> list[dict]:
    events: list[dict] = []
    orders_job = ("beamwright", "data_processing.orders")
    orders_jf = job_facets("BATCH", "Orders: clean, validate, enrich, mask.", "team:orders")
    crm_job = ("beamwright", "crm_export.customers")
    crm_jf = job_facets("BATCH", "Publish customers to the CRM topic.", "team:crm")
    for day in range(1, 15):
        base = DAY0 + dt.timedelta(days=day - 1)
        failed = {
            8: "connection reset while writing gs://acme-warehouse/warehouse/orders",
            14: "error threshold exceeded: 9.4% of rows rejected (limit 5%)",
        }
        events += batch_run(
            orders_job,
            base + dt.timedelta(hours=2),
            jf=orders_jf,
            template="data_processing@1.0",
            reads=[
                (ORDERS, ORDER_ROWS[day - 1], assertions(order_checks(day)) if day != 8 else None),
                (CUSTOMERS, 500 if day != 8 else 0, None),
            ],
            writes=[(WAREHOUSE, ORDER_ROWS[day - 1] - 40), (DEAD_LETTERS, 40)],
            error=failed.get(day),
        )
        crm_times = [3] + ([15, 21] if day == 12 else [])
        for hour in crm_times:
            events += batch_run(
                crm_job,
                base + dt.timedelta(hours=hour),
                jf=crm_jf,
                template=None,
                reads=[(CUSTOMERS, 500, None)],
                writes=[(CRM_TOPIC, 500)],
            )
        if day in (12, 13):
            events += batch_run(
                ("beamwright", "marketing.segment_export"),
                base + dt.timedelta(hours=10),
                jf=job_facets("BATCH", "Weekly marketing segments.", "team:marketing"),
                template=None,
                reads=[(CUSTOMERS, 500, None)],
                writes=[(SEGMENTS, 12)],
            )
    events += claims_stream()
    events.sort(key=lambda e: (e["eventTime"], e["job"]["name"], e["eventType"]))
    return events


def claims_stream() -> list[dict]:
    """START on day 10 08:00, then a RUNNING heartbeat every 12 h with cumulative metrics."""
    job = ("beamwright-streaming", "claims.ingest")
    jf = job_facets("STREAMING", "Curate insurance claims from Kafka.", "team:claims")
    start = DAY0 + dt.timedelta(days=9, hours=8)
    rid = run_id(start, "claims.ingest")
    rf = run_facets(None, start)
    inputs = [
        {"namespace": CLAIMS_RAW[0], "name": CLAIMS_RAW[1], "facets": dataset_facets(CLAIMS_RAW)}
    ]
    outputs = [
        {
            "namespace": CLAIMS_CURATED[0],
            "name": CLAIMS_CURATED[1],
            "facets": {
                **dataset_facets(CLAIMS_CURATED),
                "columnLineage": column_lineage(CLAIMS_CURATED),
            },
        }
    ]
    events = [event("START", start, job, rid, jf, rf, inputs, outputs)]
    for beat in range(1, 10):
        moment = start + dt.timedelta(hours=12 * beat)
        rows = 4_000 * beat
        beat_inputs = [
            {
                "namespace": CLAIMS_RAW[0],
                "name": CLAIMS_RAW[1],
                "facets": {
                    "dataQualityAssertions": assertions(
                        [
                            ("not_null", "patient_id", True, "error"),
                            ("regex", "diagnosis_code", True, "warn"),
                        ]
                    )
                },
                "inputFacets": {"dataQualityMetrics": metrics(rows, {"patient_id": 0})},
            }
        ]
        beat_outputs = [
            {
                "namespace": CLAIMS_CURATED[0],
                "name": CLAIMS_CURATED[1],
                "outputFacets": {
                    "outputStatistics": facet(
                        "OutputStatisticsOutputDatasetFacet",
                        schema_version="1-0-2",
                        rowCount=rows - beat,
                    )
                },
            }
        ]
        events.append(event("RUNNING", moment, job, rid, jf, {}, beat_inputs, beat_outputs))
    return events


def render() -> str:
    """The fixture file's exact text."""
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in all_events())


if __name__ == "__main__":
    target = Path(__file__).with_name("events.jsonl")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
