"""A realistic month of OpenLineage events with principals: ``beamwright lineage generate-history``.

Used to try ``beamwright lineage access`` without a month of production history, and by the
tests as the month the analysis must get exactly right. Seeded, so the same arguments write
the same events.

The month, per principal (all times UTC):

* ``svc-etl`` (service): every night at about 02:00, job ``data_processing.orders`` reads the
  landing orders and the CRM customers and writes the warehouse orders (audience ``internal``);
* ``ci-github`` (ci): 1 to 3 runs on weekdays between 09:00 and 18:00, the spec tests of the
  same job over the fixtures;
* ``alice@acme.example`` (user, finance): weekday runs of ``finance.revenue`` between 09:00 and
  16:00, warehouse orders to the revenue report (audience ``finance``);
* ``bob@acme.example`` (user, marketing): ``marketing.segments`` about once a weekday between
  10:00 and 15:00, warehouse orders and customers to the weekly segments (audience
  ``marketing``);
* ``dana@acme.example`` (user, data science): ``analysis.cohorts`` on weekdays between 13:00 and
  17:00 on the warehouse orders, written to her sandbox.

And one injected anomaly (``ANOMALY_DAYS_BEFORE_END`` days before the end): dana runs
``adhoc.export`` three times between 02:00 and 03:00, reading the whole CRM customers table
and the card vault, which she never read, and writing an export of about 100,000 rows: off
hours, a new dataset, and a volume far above her own days.

Every event validates against the OpenLineage 2-0-2 schemas and the facets' own schemas
(``beamwright_principal``, ``beamwright_audience``, ``beamwright_governance``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRODUCER = "https://github.com/beamwright/beamwright"
CORE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_SPEC = "https://openlineage.io/spec/facets"
_OWN = "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas"
NAMESPACE = "beamwright"
ANOMALOUS_PRINCIPAL = "dana@acme.example"
ANOMALY_DAYS_BEFORE_END = 6
DEFAULT_SEED = 17
DEFAULT_DAYS = 30

Dataset = tuple[str, str]
ORDERS: Dataset = ("file", "/srv/landing/orders")
CUSTOMERS: Dataset = ("postgres://crm.internal:5432", "crm.public.customers")
CARDS: Dataset = ("file", "/srv/vault/cards")
WAREHOUSE: Dataset = ("gs://acme-warehouse", "warehouse/orders")
FIXTURES: Dataset = ("file", "/srv/ci/fixtures/orders")
CI_OUT: Dataset = ("file", "/srv/ci/out/orders")
REVENUE: Dataset = ("gs://acme-finance", "reports/revenue_daily")
SEGMENTS: Dataset = ("gs://acme-marketing", "segments/weekly")
COHORTS: Dataset = ("file", "/srv/sandbox/dana/cohorts")
EXPORT: Dataset = ("file", "/srv/sandbox/dana/export")

GOVERNANCE: dict[Dataset, tuple[str, list[str], dict[str, tuple[str, str | None]]]] = {
    ORDERS: (
        "PII",
        ["GDPR", "PCI-DSS"],
        {"order_id": ("internal", None), "email": ("PII", None), "card_number": ("PCI", None)},
    ),
    CUSTOMERS: ("PII", ["GDPR"], {"customer_id": ("PII", None), "phone": ("PII", None)}),
    CARDS: ("restricted", ["PCI-DSS"], {"pan": ("PCI", None), "customer_id": ("PII", None)}),
    WAREHOUSE: (
        "PII",
        ["GDPR", "SOX"],
        {"email": ("PII", "email_domain"), "card_number": ("PCI", "partial")},
    ),
    FIXTURES: ("internal", [], {}),
    CI_OUT: ("internal", [], {}),
    REVENUE: ("confidential", ["SOX"], {"revenue": ("internal", None)}),
    SEGMENTS: ("PII", ["GDPR"], {"customer_id": ("PII", "pseudonymize")}),
    COHORTS: ("internal", ["GDPR"], {}),
    EXPORT: ("PII", ["GDPR", "PCI-DSS"], {"customer_id": ("PII", None), "pan": ("PCI", None)}),
}
AUDIENCES: dict[Dataset, tuple[str, dict[str, Any], list[str]]] = {
    WAREHOUSE: ("internal", {"clearance": "confidential"}, ["email", "card_number"]),
    REVENUE: ("finance", {"department": "finance", "clearance": "confidential"}, []),
    SEGMENTS: ("marketing", {"department": "marketing", "clearance": "internal"}, ["customer_id"]),
    COHORTS: ("data-science", {"department": "analytics", "clearance": "confidential"}, []),
    EXPORT: ("data-science", {"department": "analytics", "clearance": "confidential"}, []),
    CI_OUT: ("ci", {"clearance": "internal"}, []),
}


@dataclass(frozen=True)
class Principal:
    name: str
    type: str
    source: str


SVC_ETL = Principal("svc-etl", "service", "env:BEAMWRIGHT_PRINCIPAL")
CI = Principal("ci-github", "ci", "ci:github")
ALICE = Principal("alice@acme.example", "user", "os")
BOB = Principal("bob@acme.example", "user", "--as")
DANA = Principal(ANOMALOUS_PRINCIPAL, "user", "os")


def _facet(schema: str, version: str, **body: Any) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"{_SPEC}/{version}/{schema}.json#/$defs/{schema}",
        **body,
    }


def _own(schema: str, **body: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{_OWN}/{schema}.json#/$defs/{schema}", **body}


def run_id(moment: dt.datetime, seed: str) -> str:
    """A deterministic UUIDv7: the millisecond timestamp, then bits from a hash of ``seed``."""
    millis = int(moment.timestamp() * 1000)
    rand = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _time(moment: dt.datetime) -> str:
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _dataset(ds: Dataset) -> dict[str, Any]:
    classification, frameworks, fields = GOVERNANCE[ds]
    governance = _own(
        "GovernanceDatasetFacet",
        classification=classification,
        frameworks=frameworks,
        fields={
            name: {"classification": c, **({"protection": p} if p else {})}
            for name, (c, p) in fields.items()
        },
    )
    return {"namespace": ds[0], "name": ds[1], "facets": {"beamwright_governance": governance}}


def run_events(
    principal: Principal,
    job: str,
    started: dt.datetime,
    reads: Iterable[tuple[Dataset, int]],
    writes: Iterable[tuple[Dataset, int]],
    *,
    minutes: float = 4.0,
) -> list[dict[str, Any]]:
    """START and COMPLETE of one batch run by ``principal``: its inputs with the rows read
    (``inputStatistics``), its outputs with the rows written and their audience."""
    reads, writes = list(reads), list(writes)
    rid = run_id(started, f"{principal.name}:{job}:{started.isoformat()}")
    run_facets = {
        "beamwright_principal": _own(
            "PrincipalRunFacet", name=principal.name, type=principal.type, source=principal.source
        )
    }
    job_facets = {
        "jobType": _facet(
            "JobTypeJobFacet",
            "2-0-4",
            processingType="BATCH",
            integration="BEAMWRIGHT",
            jobType="JOB",
        )
    }

    def event(kind: str, moment: dt.datetime, inputs: list, outputs: list) -> dict[str, Any]:
        return {
            "eventType": kind,
            "eventTime": _time(moment),
            "producer": PRODUCER,
            "schemaURL": CORE_SCHEMA,
            "run": {"runId": rid, "facets": run_facets},
            "job": {"namespace": NAMESPACE, "name": job, "facets": job_facets},
            "inputs": inputs,
            "outputs": outputs,
        }

    start_event = event(
        "START", started, [_dataset(ds) for ds, _ in reads], [_dataset(ds) for ds, _ in writes]
    )
    inputs = []
    for ds, rows in reads:
        item = _dataset(ds)
        item["inputFacets"] = {
            "inputStatistics": _facet("InputStatisticsInputDatasetFacet", "1-0-0", rowCount=rows)
        }
        inputs.append(item)
    outputs = []
    for ds, rows in writes:
        item = _dataset(ds)
        if ds in AUDIENCES:
            name, attributes, masked = AUDIENCES[ds]
            item["facets"]["beamwright_audience"] = _own(
                "AudienceDatasetFacet", name=name, attributes=attributes, masked_fields=masked
            )
        item["outputFacets"] = {
            "outputStatistics": _facet(
                "OutputStatisticsOutputDatasetFacet", "1-0-2", rowCount=rows, size=rows * 160
            )
        }
        outputs.append(item)
    ended = started + dt.timedelta(minutes=minutes)
    return [start_event, event("COMPLETE", ended, inputs, outputs)]


def _at(rng: random.Random, day: dt.datetime, first_hour: int, last_hour: int) -> dt.datetime:
    """A moment on ``day`` between ``first_hour``:00 and ``last_hour``:59."""
    return day + dt.timedelta(
        hours=rng.randint(first_hour, last_hour),
        minutes=rng.randint(0, 59),
        seconds=rng.randint(0, 59),
    )


def _around(rng: random.Random, mean: int, spread: float) -> int:
    return round(mean * rng.uniform(1 - spread, 1 + spread))


def _day_runs(rng: random.Random, day: dt.datetime) -> list[list[dict[str, Any]]]:
    """The normal runs of one day, every principal."""
    weekday = day.weekday() < 5
    runs = []
    nightly = day + dt.timedelta(hours=2, minutes=rng.randint(-8, 8), seconds=rng.randint(0, 59))
    orders = _around(rng, 20_000, 0.1)
    runs.append(
        run_events(
            SVC_ETL,
            "data_processing.orders",
            nightly,
            [(ORDERS, orders), (CUSTOMERS, _around(rng, 50_000, 0.02))],
            [(WAREHOUSE, orders - rng.randint(0, 40))],
            minutes=12,
        )
    )
    if not weekday:
        return runs
    for _ in range(rng.randint(1, 3)):
        rows = rng.randint(200, 260)
        runs.append(
            run_events(
                CI,
                "data_processing.orders.spec_tests",
                _at(rng, day, 9, 17),
                [(FIXTURES, rows)],
                [(CI_OUT, rows)],
                minutes=1,
            )
        )
    for _ in range(rng.randint(1, 2)):
        runs.append(
            run_events(
                ALICE,
                "finance.revenue",
                _at(rng, day, 9, 16),
                [(WAREHOUSE, _around(rng, 60_000, 0.1))],
                [(REVENUE, rng.randint(28, 31))],
            )
        )
    if rng.random() < 0.9:
        runs.append(
            run_events(
                BOB,
                "marketing.segments",
                _at(rng, day, 10, 14),
                [(WAREHOUSE, _around(rng, 60_000, 0.1)), (CUSTOMERS, _around(rng, 50_000, 0.02))],
                [(SEGMENTS, _around(rng, 12_000, 0.05))],
            )
        )
    for _ in range(rng.randint(1, 2)):
        runs.append(
            run_events(
                DANA,
                "analysis.cohorts",
                _at(rng, day, 13, 16),
                [(WAREHOUSE, _around(rng, 5_000, 0.15))],
                [(COHORTS, rng.randint(180, 240))],
            )
        )
    return runs


def _anomaly(rng: random.Random, day: dt.datetime) -> list[list[dict[str, Any]]]:
    """dana's night: three exports of customers and cards she never read, 02:00 to 03:00."""
    return [
        run_events(
            DANA,
            "adhoc.export",
            day + dt.timedelta(hours=2, minutes=minute, seconds=rng.randint(0, 59)),
            [(CUSTOMERS, _around(rng, 50_000, 0.01)), (CARDS, _around(rng, 48_000, 0.01))],
            [(EXPORT, _around(rng, 33_000, 0.02))],
            minutes=9,
        )
        for minute in (4, 21, 48)
    ]


def generate(
    end: dt.datetime, *, days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """Events of the ``days`` whole UTC days before ``end``'s day, oldest first."""
    rng = random.Random(seed)
    last = end.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    runs: list[list[dict[str, Any]]] = []
    for back in range(days, 0, -1):
        day = last - dt.timedelta(days=back)
        runs += _day_runs(rng, day)
        if back == ANOMALY_DAYS_BEFORE_END:
            runs += _anomaly(rng, day)
    events = [e for run in runs for e in run]
    events.sort(key=lambda e: (e["eventTime"], e["run"]["runId"], e["eventType"]))
    return events


def anomaly_day(end: dt.datetime) -> dt.datetime:
    """The UTC midnight of the injected anomaly's day for a month ending at ``end``."""
    last = end.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return last - dt.timedelta(days=ANOMALY_DAYS_BEFORE_END)


def write(path: str | Path, events: Iterable[dict[str, Any]]) -> int:
    """Events as JSON lines (what the ``file`` transport appends); returns how many."""
    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)
