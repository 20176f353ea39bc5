"""The ``api_integration`` template: records from HTTP APIs, polled or pushed, normalised,
validated and enriched, to a Parquet warehouse, a Kafka topic and an alerts report.

How each parameter value is served (a value not listed is refused, naming those that are):

- ``integration_patterns``:
  ``polling``: an ``http`` source walks each of ``api_endpoints`` page by page (``pagination``:
  link, page, offset, cursor, none), asking only for records changed after the last
  successful run (``incremental_field`` + ``since_param``, a checkpoint file under
  ``output_dir/state``), at most ``rate_limit`` requests/s, retried with backoff.
  ``webhook``: the pipeline reads ``ingest_topic``, which ``beamwright ingest webhook --topic
  ...`` fills with the payloads it accepted (HMAC-signed, replays refused).
  ``streaming``: the same topic, which ``beamwright ingest stream --url <endpoint> --topic ...``
  fills from the API's server-sent events or JSON lines. The local runner cannot run an
  unbounded HTTP read (a stage starts after the one before it ends), so the stream is made
  durable in Kafka by the ingest process and each run (or ``run --follow`` cycle) reads the
  topic up to its end from the committed offsets.
- ``data_transformations`` (run in the order normalize, validate, enrich):
  ``normalize``: field mapping and types (``record_fields``: ``name=json.path:type``;
  timestamps arrive typed and in UTC, whatever offset the API used), then ``normalize_derive``
  expressions (units, text case, ...) in a ``map`` step.
  ``validate``: required keys, business rules on the fields present, and an optional Great
  Expectations suite (``expectations_suite``).
  ``enrich``: an ``http`` step calling ``enrich_url`` per record (``{field}`` placeholders),
  adding ``enrich_fields``, and/or a ``postgres`` lookup of ``enrich_table`` by ``enrich_key``
  (``enrich_postgres``: ``user@host:port/database``, the password a secret reference).
- ``output_destinations``: ``warehouse`` (Parquet), ``topic`` (the normalised records to
  ``output_topic``), ``alerts`` (dead letters by step and rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import pipeline_spec, postgres_connection, rejections_report

PATTERNS = ["polling", "webhook", "streaming"]
TRANSFORMATIONS = ["normalize", "validate", "enrich"]
DESTINATIONS = ["warehouse", "topic", "alerts"]
PAGINATION = ["link", "page", "offset", "cursor", "none"]
TYPES = ("string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp")

SAMPLE_FIELDS = [
    "order_id=id:int64",
    "customer_id=customer.id:int64",
    "email=customer.email",
    "amount_cents:int64",
    "currency",
    "status",
    "modified_at:timestamp",
]
SAMPLE_DERIVE = [
    "amount=amount_cents / 100",
    "currency=upper(trim(currency))",
    "status=lower(trim(status))",
    "email=lower(trim(email))",
]
RULES: list[dict[str, Any]] = [
    {"rule": "between", "field": "amount", "min": 0, "max": 1_000_000},
    {"rule": "in_set", "field": "currency", "values": ["USD", "EUR", "GBP"]},
    {
        "rule": "in_set",
        "field": "status",
        "values": ["pending", "paid", "shipped", "delivered", "cancelled"],
    },
    {"rule": "regex", "field": "email", "regex": r"[^@\s]+@[^@\s]+\.[a-z]{2,}"},
]

PARAMETERS = {
    "api_endpoints": ParameterSpec(
        type="list",
        default=["http://127.0.0.1:8765/orders"],
        description="Listing URLs (base URL + path, fixed query allowed) polled by 'polling'; "
        "the API's event stream for 'streaming' is given to 'beamwright ingest stream'.",
    ),
    "integration_patterns": ParameterSpec(
        type="list", default=["polling"], choices=PATTERNS, description="How records arrive."
    ),
    "data_transformations": ParameterSpec(
        type="list",
        default=["normalize", "validate"],
        choices=TRANSFORMATIONS,
        description="Stages to run (always in the order normalize, validate, enrich).",
    ),
    "output_destinations": ParameterSpec(
        type="list",
        default=["warehouse", "alerts"],
        choices=DESTINATIONS,
        description="warehouse: Parquet dataset; topic: records to output_topic; alerts: "
        "dead letters plus rejections by step and rule.",
    ),
    "record_fields": ParameterSpec(
        type="list",
        default=SAMPLE_FIELDS,
        description="name=json.path:type per column (path defaults to the name, type to "
        "string); the first is the record's key.",
    ),
    "records_path": ParameterSpec(
        type="string", default="items", description="JSON path of a page's list of records."
    ),
    "pagination": ParameterSpec(
        type="string", default="link", choices=PAGINATION, description="How pages follow."
    ),
    "page_size": ParameterSpec(type="integer", default=100, description="Records per page."),
    "incremental_field": ParameterSpec(
        type="string",
        default="modified_at",
        description="A timestamp or int64 field kept as the high-water mark ('' : none).",
    ),
    "since_param": ParameterSpec(
        type="string", default="since", description="Query parameter carrying the mark."
    ),
    "rate_limit": ParameterSpec(
        type="number", default=50, description="API requests/s for the whole job."
    ),
    "api_token": ParameterSpec(
        type="secret", description="Bearer token for the API (env:VAR or a store reference)."
    ),
    "normalize_derive": ParameterSpec(
        type="list",
        default=SAMPLE_DERIVE,
        description="field=expression, applied in order by normalize (units, text case, ...).",
    ),
    "expectations_suite": ParameterSpec(
        type="string", default="", description="validate: a Great Expectations suite (JSON)."
    ),
    "enrich_url": ParameterSpec(
        type="string",
        default="",
        description="enrich: URL per record with {field} placeholders, e.g. "
        "http://api/customers/{customer_id}.",
    ),
    "enrich_fields": ParameterSpec(
        type="list",
        default=["customer_name=name", "customer_tier=tier"],
        description="enrich: name=json.path:type of the answer's fields to add.",
    ),
    "enrich_postgres": ParameterSpec(
        type="string",
        default="",
        description="enrich: a PostgreSQL lookup, user@host:port/database (with enrich_table, "
        "enrich_key and postgres_password).",
    ),
    "enrich_table": ParameterSpec(
        type="string", default="public.customers", description="enrich: schema.table looked up."
    ),
    "enrich_key": ParameterSpec(
        type="string", default="customer_id", description="enrich: key field (rows and table)."
    ),
    "postgres_password": ParameterSpec(
        type="secret", description="enrich: the PostgreSQL password (env:VAR or a store)."
    ),
    "kafka_bootstrap": ParameterSpec(
        type="string", default="127.0.0.1:9092", description="Kafka for webhook/streaming/topic."
    ),
    "ingest_topic": ParameterSpec(
        type="string", default="api-ingest", description="Topic 'beamwright ingest' appends to."
    ),
    "output_topic": ParameterSpec(
        type="string", default="api-records", description="topic: where records go."
    ),
    "output_dir": ParameterSpec(
        type="string", default="beamwright-output/api_integration", description="Where outputs go."
    ),
    "error_threshold": ParameterSpec(
        type="number", default=0.2, description="Fail the run above this fraction rejected."
    ),
    "batch_size": ParameterSpec(type="integer", default=10_000, description="Rows per batch."),
}


def parse_field(text: str, where: str) -> tuple[str, str, str]:
    """``name=path:type`` -> (name, path, type)."""
    head, _, type_name = text.partition(":")
    name, _, path = head.partition("=")
    name, path, type_name = name.strip(), (path or name).strip(), (type_name or "string").strip()
    if not name or type_name not in TYPES:
        raise ValueError(
            f"parameters.{where}: {text!r} is not name=json.path:type (types: {', '.join(TYPES)})"
        )
    return name, path, type_name


def _pairs(items: list[str], where: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip() or not expr.strip():
            raise ValueError(f"parameters.{where}: {item!r} is not field=expression")
        out.append((name.strip(), expr.strip()))
    return out


def _sources(values: Mapping[str, Any], fields: list[tuple[str, str, str]]) -> list[dict]:
    patterns, out = values["integration_patterns"], values["output_dir"].rstrip("/")
    sources: list[dict[str, Any]] = []
    if "polling" in patterns:
        if not values["api_endpoints"]:
            raise ValueError("parameters.api_endpoints: polling needs at least one URL")
        source: dict[str, Any] = {
            "name": "api",
            "type": "http",
            "url": list(values["api_endpoints"]),
            "records": values["records_path"] or None,
            "fields": {name: {"path": path, "type": t} for name, path, t in fields},
            "pagination": {
                "style": values["pagination"],
                "size": values["page_size"],
                "size_param": "limit"
                if values["pagination"] in ("offset", "cursor")
                else "per_page",
            },
            "rate_limit": values["rate_limit"] or None,
        }
        mark = values["incremental_field"]
        if mark:
            source["incremental"] = {
                "field": mark,
                "param": values["since_param"],
                "checkpoint": f"{out}/state/{values['since_param']}_marks.json",
            }
        if values["api_token"]:
            source["auth"] = {"type": "bearer", "secret": values["api_token"]}
        sources.append(source)
    if {"webhook", "streaming"} & set(patterns):
        sources.append(
            {
                "name": "ingest",
                "type": "kafka",
                "bootstrap_servers": values["kafka_bootstrap"],
                "topics": values["ingest_topic"],
                "group_id": "api_integration",
                "value_format": "json",
            }
        )
    return sources


def _ingest_steps(fields: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Pushed payloads arrive as JSON documents: pick the record fields by path and type them
    as the polling source does (a missing path is null, a bad value a dead letter), so both
    feed the same steps."""
    return [
        {
            "name": "ingest_fields",
            "type": "extract",
            "input": "ingest",
            "description": "Record fields of pushed payloads, by JSON path, typed.",
            "fields": {name: {"path": path, "type": t} for name, path, t in fields},
        }
    ]


def _steps(values: Mapping[str, Any], fields: list[tuple[str, str, str]]) -> list[dict]:
    stages = values["data_transformations"]
    patterns = values["integration_patterns"]
    pushed = bool({"webhook", "streaming"} & set(patterns))
    steps: list[dict[str, Any]] = _ingest_steps(fields) if pushed else []
    first_input: list[str] = []
    if pushed:
        first_input = (["api"] if "polling" in patterns else []) + ["ingest_fields"]
    known = {name for name, _, _ in fields}
    if "normalize" in stages:
        derive = dict(_pairs(values["normalize_derive"], "normalize_derive"))
        steps.append(
            {
                "name": "normalize",
                "type": "map",
                "description": "Types (timestamps in UTC), units, text case, derived fields.",
                "cast": {name: t for name, _, t in fields if t != "string"},
                "derive": derive,
            }
        )
        known |= set(derive)
    if "validate" in stages:
        key = fields[0][0]
        step: dict[str, Any] = {
            "name": "validate",
            "type": "validate",
            "description": "Required key, business rules for the fields present.",
            "fields": {key: {"type": fields[0][2], "required": True}},
            "rules": [r for r in RULES if r["field"] in known],
        }
        if values["expectations_suite"]:
            step["expectations"] = values["expectations_suite"]
        steps.append(step)
    if "enrich" in stages:
        steps += _enrich_steps(values)
    if first_input:
        first = next((s for s in steps if s["name"] != "ingest_fields"), None)
        if first is None:
            raise ValueError(
                "parameters.data_transformations: webhook and streaming records need at least "
                "one stage to gather them"
            )
        first["input"] = first_input
    return steps


def _enrich_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An ``http`` step (``enrich_url``), a ``postgres`` lookup (``enrich_postgres``), or both."""
    if not values["enrich_url"] and not values["enrich_postgres"]:
        raise ValueError(
            "parameters.enrich_url: 'enrich' needs an API to call per record (enrich_url, with "
            "{field} placeholders, e.g. http://host/customers/{customer_id}) or a PostgreSQL "
            "table (enrich_postgres: user@host:port/database, with enrich_table and enrich_key)"
        )
    steps: list[dict[str, Any]] = []
    if values["enrich_url"]:
        fields = [parse_field(f, "enrich_fields") for f in values["enrich_fields"]]
        steps.append(
            {
                "name": "enrich",
                "type": "http",
                "description": "Fields from the enrichment API, per record.",
                "url": values["enrich_url"],
                "fields": {name: {"path": path, "type": t} for name, path, t in fields},
                "strategy": {"kind": "parallel", "max_concurrency": 16},
            }
        )
    if values["enrich_postgres"]:
        # no ':' in the user name: 'user:secret@host/db' would put a password into the spec
        connection = postgres_connection(
            values["enrich_postgres"], values["postgres_password"], "parameters.enrich_postgres"
        )
        steps.append(
            {
                "name": "enrich_db",
                "type": "postgres",
                "description": "Columns of the reference table, one query per batch.",
                "connection": connection,
                "table": values["enrich_table"],
                "on": values["enrich_key"],
            }
        )
    return steps


def _sinks(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = values["output_dir"].rstrip("/")
    destinations = values["output_destinations"]
    sinks: list[dict[str, Any]] = []
    if "warehouse" in destinations:
        sinks.append(
            {
                "name": "warehouse",
                "type": "file",
                "path": f"{out}/warehouse",
                "format": "parquet",
                "mode": "append",  # each run brings only new records
            }
        )
    if "topic" in destinations:
        sinks.append(
            {
                "name": "records_topic",
                "type": "kafka",
                "bootstrap_servers": values["kafka_bootstrap"],
                "topic": values["output_topic"],
            }
        )
    if "alerts" in destinations:
        sinks.append(rejections_report("alerts", f"{out}/alerts/rejections_by_rule.csv"))
    return sinks


class ApiIntegrationTemplate:
    name = "api_integration"
    version = "1.0"
    description = (
        "Records from HTTP APIs (polling with pagination and a since checkpoint, signed "
        "webhooks, event streams via Kafka): normalize, validate, enrich; to Parquet, Kafka "
        "and alerts."
    )
    parameters = PARAMETERS

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec:
        """The pipeline spec for typed parameter ``values``."""
        if not values["integration_patterns"]:
            raise ValueError(f"parameters.integration_patterns: choose from {PATTERNS}")
        if not {"warehouse", "topic"} & set(values["output_destinations"]):
            raise ValueError(
                "parameters.output_destinations: include warehouse or topic (alerts alone "
                "would leave the records with nowhere to go)"
            )
        fields = [parse_field(f, "record_fields") for f in values["record_fields"]]
        if not fields:
            raise ValueError("parameters.record_fields: declare at least the record's key")
        out = values["output_dir"].rstrip("/")
        return pipeline_spec(
            self,
            values,
            owner="integrations",
            sources=_sources(values, fields),
            steps=_steps(values, fields),
            sinks=_sinks(values),
            dead_letter={"path": f"{out}/alerts/dead_letters", "format": "jsonl"},
            governance={"classification": "internal", "fields": {"email": "PII"}},
        )


TEMPLATE = ApiIntegrationTemplate()
