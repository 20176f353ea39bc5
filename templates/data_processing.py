"""The ``data_processing`` template: orders from files in four formats, cleaned, validated,
transformed, enriched with customer data, PII-masked, and delivered to a Parquet warehouse,
a business report and an alerts area holding the dead letters.

The defaults run on the sample data shipped in ``templates/sample_data`` with no setup. Its
tests (``beamwright test data_processing``: a happy path, rows rejected by named rules, an
unknown customer rejected by the enrich stage) are in ``templates/tests/data_processing.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import SAMPLE_DATA, pipeline_spec, rejections_report

STAGES = ["clean", "validate", "transform", "enrich", "mask"]
DESTINATIONS = ["warehouse", "reports", "alerts"]

ORDER_FIELDS = {
    "order_id": {"type": "string", "required": True, "description": "Order number"},
    "customer_id": {"type": "string", "required": True, "classification": "PII"},
    "email": {"type": "string", "classification": "PII"},
    "order_date": {"type": "date", "required": True},
    "ship_date": {"type": "date"},
    "status": {"type": "string", "required": True},
    "currency": {"type": "string"},
    "amount": {"type": "float64", "required": True},
    "quantity": {"type": "int64"},
    "country": {"type": "string"},
    "card_number": {"type": "string", "classification": "PII"},
}

ORDER_RULES = [
    {"rule": "between", "field": "amount", "min": 0, "max": 100_000},
    {"rule": "between", "field": "quantity", "min": 1, "max": 1_000},
    {"rule": "regex", "field": "email", "regex": r"[^@\s]+@[^@\s]+\.[a-z]{2,}"},
    {
        "rule": "in_set",
        "field": "status",
        "values": ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"],
    },
    {"rule": "in_set", "field": "currency", "values": ["USD", "EUR", "GBP"]},
    {"rule": "length", "field": "country", "min": 2, "max": 2},
    {"rule": "regex", "field": "card_number", "regex": r"\d{12,19}"},
    {"rule": "unique", "field": "order_id"},
    {
        "id": "ships_after_order",
        "rule": "expression",
        "expr": "ship_date is null or ship_date >= order_date",
        "message": "ship_date is before order_date",
    },
]

PARAMETERS = {
    "data_sources": ParameterSpec(
        type="list",
        default=[
            str(SAMPLE_DATA / f"orders_2026_0{i}.{ext}")
            for i, ext in ((1, "jsonl"), (2, "csv"), (3, "parquet"), (4, "avro"))
        ],
        description="Order files or glob patterns (JSONL, CSV, Parquet, Avro; format from the extension).",
    ),
    "customers": ParameterSpec(
        type="string",
        default=str(SAMPLE_DATA / "customers.csv"),
        description="Customer reference data for the enrich stage.",
    ),
    "processing_stages": ParameterSpec(
        type="list", default=STAGES, choices=STAGES, description="Stages to run, in this order."
    ),
    "output_destinations": ParameterSpec(
        type="list",
        default=DESTINATIONS,
        choices=DESTINATIONS,
        description="warehouse: Parquet dataset; reports: revenue report (JSON and CSV); "
        "alerts: dead letters plus a summary of rejection reasons.",
    ),
    "output_dir": ParameterSpec(
        type="string", default="beamwright-output/data_processing", description="Where outputs go."
    ),
    "pseudonym_key_file": ParameterSpec(
        type="string",
        default="beamwright-output/secrets/pseudonym.key",
        description="Key for pseudonymising customer ids; created (random, mode 0600) if missing.",
    ),
    "pseudonym_key": ParameterSpec(
        type="secret",
        description="The pseudonymisation key from a secret store, e.g. {store: {type: gcp, "
        "project: P}, name: pseudonym-key}; replaces pseudonym_key_file. Needed on Dataflow "
        "and Flink, whose workers do not share the driver's files.",
    ),
    "error_threshold": ParameterSpec(
        type="number", default=0.1, description="Fail the run above this fraction of rejected rows."
    ),
    "batch_size": ParameterSpec(
        type="integer", default=10_000, description="Rows per Arrow batch."
    ),
}


def _stage_steps(stage: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    if stage == "clean":
        return [
            {
                "name": "clean",
                "type": "map",
                "description": "Normalise text fields before they are checked.",
                "derive": {
                    "email": "lower(trim(email))",
                    "status": "lower(trim(status))",
                    "currency": "upper(trim(currency))",
                    "country": "upper(trim(country))",
                },
            }
        ]
    if stage == "validate":
        return [
            {
                "name": "validate",
                "type": "validate",
                "description": "Types, required fields and business rules for orders.",
                "fields": ORDER_FIELDS,
                "rules": ORDER_RULES,
            }
        ]
    if stage == "transform":
        return [
            {
                "name": "transform",
                "type": "map",
                "description": "Derive order totals and the order month.",
                "derive": {
                    "total": "round(amount * coalesce(quantity, 1), 2)",
                    "order_year": "year(order_date)",
                    "order_month": "month(order_date)",
                    "days_to_ship": "days_between(order_date, ship_date)",
                },
            }
        ]
    if stage == "enrich":
        return [
            {
                "name": "enrich",
                "type": "lookup",
                "description": "Add the customer's segment, tier and value; unknown customers are rejected.",
                "lookup": "customers",
                "on": "customer_id",
                "fields": ["segment", "loyalty_tier", "lifetime_value"],
                "cast": {"lifetime_value": "float64"},
                "on_missing": "reject",
            }
        ]
    key = values["pseudonym_key"] or {"file": values["pseudonym_key_file"], "generate": True}
    masks: list[dict[str, Any]] = [
        {"field": "email", "strategy": "email_domain"},
        {"field": "card_number", "strategy": "partial", "keep_last": 4},
        {"field": "customer_id", "strategy": "pseudonymize", "key": key, "length": 24},
    ]
    if "enrich" in values["processing_stages"]:
        masks.append(
            {
                "field": "lifetime_value",
                "strategy": "bucket",
                "boundaries": [0, 1_000, 10_000, 100_000, 1_000_000],
                "prefix": "$",
            }
        )
    return [{"name": "mask", "type": "mask", "description": "Protect PII.", "fields": masks}]


def _sinks(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = values["output_dir"].rstrip("/")
    stages = values["processing_stages"]
    sinks: list[dict[str, Any]] = []
    destinations = values["output_destinations"]
    if "warehouse" in destinations:
        sinks.append(
            {
                "name": "warehouse",
                "type": "file",
                "path": f"{out}/warehouse/orders",
                "format": "parquet",
            }
        )
    if "reports" in destinations:
        metrics = {"orders": "count"}
        if "validate" in stages:
            metrics |= {"revenue": "sum(amount)", "average_order": "mean(amount)"}
        if "enrich" in stages:
            metrics["customers"] = "count_distinct(customer_id)"
        for ext in ("json", "csv"):
            sinks.append(
                {
                    "name": f"report_{ext}",
                    "type": "report",
                    "path": f"{out}/reports/orders_by_status.{ext}",
                    "group_by": ["status"],
                    "metrics": metrics,
                }
            )
    if "alerts" in destinations:
        sinks.append(rejections_report("alerts", f"{out}/alerts/rejections_by_rule.csv"))
    return sinks


class DataProcessingTemplate:
    name = "data_processing"
    version = "1.0"
    description = (
        "Orders from JSONL/CSV/Parquet/Avro files: clean, validate, transform, enrich, mask; "
        "to a Parquet warehouse, reports and alerts (dead letters)."
    )
    parameters = PARAMETERS

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec:
        """The pipeline spec for typed parameter ``values``."""
        stages = values["processing_stages"]
        order = [s for s in STAGES if s in stages]
        if order != list(stages):
            raise ValueError(
                f"parameters.processing_stages: stages run in the order {STAGES}; "
                f"got {list(stages)} — list them in that order"
            )
        if not {"warehouse", "reports"} & set(values["output_destinations"]):
            raise ValueError(
                "parameters.output_destinations: include warehouse or reports (alerts alone "
                "would leave the valid rows with nowhere to go)"
            )
        sources: list[dict[str, Any]] = [
            {"name": f"orders_{i + 1}", "type": "file", "path": path}
            for i, path in enumerate(values["data_sources"])
        ]
        if "enrich" in stages:
            sources.append({"name": "customers", "type": "file", "path": values["customers"]})
        steps = [step for stage in stages for step in _stage_steps(stage, values)]
        out = values["output_dir"].rstrip("/")
        return pipeline_spec(
            self,
            values,
            owner="data-platform",
            sources=sources,
            steps=steps,
            sinks=_sinks(values),
            dead_letter={"path": f"{out}/alerts/dead_letters", "format": "jsonl", "redact": True},
            governance={
                "frameworks": ["GDPR", "PCI-DSS"],
                "classification": "internal",
                "fields": {"name": "PII", "phone": "PII", "lifetime_value": "confidential"},
            },
        )


TEMPLATE = DataProcessingTemplate()
