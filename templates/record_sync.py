"""The ``record_sync`` template: a records API (Airtable-like) kept in sync with a PostgreSQL
table. Served today: the ``api_to_db`` direction only (``db_to_api`` and ``both``, with their
conflict policies, are not written yet and are refused by the parameter's choices).

``api_to_db``: an ``http`` source walks ``{api_url}/v0/{api_base}/{api_table}`` page by page
(the answer's ``offset`` token sent back as ``?offset=``, ``pageSize`` records a page), asking
only for records modified since the last successful run (``?modified_since=<mark>``, the
greatest ``modifiedTime`` the run read, kept in a checkpoint under ``output_dir/state`` and
written only after the outputs were published), at most ``rate_limit`` requests/s for the
whole job, 429s retried after their ``Retry-After``. Each record's id goes to ``key_column``,
its ``modifiedTime`` to ``modified_column``, and each ``field_mapping`` entry
(``column=api_field:type``) to its column; the rows are upserted into ``table`` by
``key_column`` (the ``postgres`` sink: COPY + ``INSERT ... ON CONFLICT``). A run killed at any
point leaves the mark where it was, and the re-run fetches the same records again and rewrites
the same rows: no gap, no duplicate. Rows the table refuses are dead letters; a report counts
the records synced, and the run's summary and lineage the rows the table took.

Deletes (``deletes``): ``ignore`` leaves rows as last synced; ``soft_delete`` lists the API's
tombstones too (``include_deleted=true``), upserts live records whole with ``deleted_column``
false, and tombstones as key + deletion time + ``deleted_column`` true only, so the row keeps
its last fields. The report then counts records read per flag.

The table must exist with ``key_column`` as its primary key (or a unique constraint); its
column types decide how values are stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import pipeline_spec, postgres_connection, rejections_report

DIRECTIONS = ["api_to_db"]
TYPES = ("string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp")
SAMPLE_MAPPING = ["name", "email", "amount:float64", "status", "notes"]

PARAMETERS = {
    "direction": ParameterSpec(
        type="string",
        default="api_to_db",
        choices=DIRECTIONS,
        description="api_to_db: API records upserted into the table (the only one served yet).",
    ),
    "api_url": ParameterSpec(
        type="string", default="http://127.0.0.1:8766", description="The API's base URL."
    ),
    "api_base": ParameterSpec(type="string", default="app1", description="The API's base id."),
    "api_table": ParameterSpec(
        type="string", default="contacts", description="The API's table name."
    ),
    "api_token": ParameterSpec(
        type="secret", description="Bearer token for the API (env:VAR or a store reference)."
    ),
    "rate_limit": ParameterSpec(
        type="number",
        default=4,
        description="API requests/s for the whole job, retries included (the API allows 5/s "
        "per base).",
    ),
    "page_size": ParameterSpec(
        type="integer", default=100, description="Records per page (the API allows 1-100)."
    ),
    "field_mapping": ParameterSpec(
        type="list",
        default=SAMPLE_MAPPING,
        description="column=api_field:type per mapped field (api_field defaults to the "
        "column, type to string).",
    ),
    "postgres": ParameterSpec(
        type="string",
        default="postgres@127.0.0.1:5432/postgres",
        description="user@host:port/database (the password is postgres_password).",
    ),
    "postgres_password": ParameterSpec(
        type="secret", description="The PostgreSQL password (env:VAR or a store reference)."
    ),
    "table": ParameterSpec(
        type="string", default="public.contacts", description="schema.table kept in sync."
    ),
    "key_column": ParameterSpec(
        type="string", default="record_id", description="The table's key: the API record id."
    ),
    "modified_column": ParameterSpec(
        type="string",
        default="api_modified_at",
        description="Column holding the record's modifiedTime in the API.",
    ),
    "deletes": ParameterSpec(
        type="string",
        default="ignore",
        choices=["ignore", "soft_delete"],
        description="soft_delete: records deleted in the API keep their row, with "
        "deleted_column true and modified_column the deletion time (the API must list "
        "tombstones: include_deleted=true); ignore: rows stay as last synced.",
    ),
    "deleted_column": ParameterSpec(
        type="string",
        default="api_deleted",
        description="soft_delete: the boolean column marking deleted records.",
    ),
    "output_dir": ParameterSpec(
        type="string", default="beamwright-output/record_sync", description="Where outputs go."
    ),
    "error_threshold": ParameterSpec(
        type="number", default=0.2, description="Fail the run above this fraction rejected."
    ),
    "batch_size": ParameterSpec(type="integer", default=10_000, description="Rows per batch."),
}


def parse_mapping(text: str) -> tuple[str, str, str]:
    """``column=api_field:type`` -> (column, api_field, type)."""
    head, _, type_name = text.partition(":")
    column, _, field = head.partition("=")
    column, field = column.strip(), (field or column).strip()
    type_name = (type_name or "string").strip()
    if not column or not field or type_name not in TYPES:
        raise ValueError(
            f"parameters.field_mapping: {text!r} is not column=api_field:type "
            f"(types: {', '.join(TYPES)})"
        )
    return column, field, type_name


def _connection(values: Mapping[str, Any]) -> dict[str, Any]:
    return postgres_connection(
        values["postgres"], values["postgres_password"], "parameters.postgres"
    )


def _api_source(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> dict:
    out = values["output_dir"].rstrip("/")
    key, modified = values["key_column"], values["modified_column"]
    fields: dict[str, Any] = {
        key: {"path": "id", "type": "string"},
        modified: {"path": "modifiedTime", "type": "timestamp"},
    }
    for column, field, type_name in mapping:
        fields[column] = {"path": f"fields.{field}", "type": type_name}
    url = f"{values['api_url'].rstrip('/')}/v0/{values['api_base']}/{values['api_table']}"
    if values["deletes"] == "soft_delete":
        fields[values["deleted_column"]] = {"path": "deleted", "type": "bool"}
        url += "?include_deleted=true"
    source: dict[str, Any] = {
        "name": "api",
        "type": "http",
        "url": url,
        "records": "records",
        "fields": fields,
        "pagination": {
            "style": "cursor",
            "size": values["page_size"],
            "size_param": "pageSize",
            "cursor_param": "offset",
            "cursor_path": "offset",
        },
        "incremental": {
            "field": modified,
            "param": "modified_since",
            "checkpoint": f"{out}/state/api_marks.json",
        },
        "rate_limit": values["rate_limit"],
    }
    if values["api_token"]:
        source["auth"] = {"type": "bearer", "secret": values["api_token"]}
    return source


def _writes(values: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """Steps and sinks after the API source: every record upserted (``ignore``), or live
    records upserted whole and tombstones as key + modified time + deleted flag only, so a
    soft-deleted row keeps its last fields (``soft_delete``); and the sync report."""
    out = values["output_dir"].rstrip("/")
    key, modified, deleted = (
        values["key_column"],
        values["modified_column"],
        values["deleted_column"],
    )
    db = {
        "type": "postgres",
        "connection": _connection(values),
        "table": values["table"],
        "key": key,
    }
    report: dict[str, Any] = {
        "name": "sync_report",
        "type": "report",
        "path": f"{out}/report/sync_report.json",
        "metrics": {"api_records_read": "count"},
    }
    if values["deletes"] != "soft_delete":
        return [], [{"name": "db", "input": "api", **db}, {**report, "input": "api"}]
    steps = [
        {
            "name": "flags",
            "type": "map",
            "input": "api",
            "description": "Live records have no deleted flag in the API: false.",
            "derive": {deleted: f"coalesce({deleted}, false)"},
        },
        {"name": "live", "type": "filter", "input": "flags", "where": f"{deleted} == false"},
        {"name": "deleted", "type": "filter", "input": "flags", "where": f"{deleted} == true"},
        {
            "name": "tombstones",
            "type": "map",
            "input": "deleted",
            "description": "Only the key, the deletion time and the flag: the row keeps its fields.",
            "select": [key, modified, deleted],
        },
    ]
    sinks = [
        {"name": "db", "input": "live", **db},
        {"name": "db_deletes", "input": "tombstones", **db},
        {**report, "input": "flags", "group_by": [deleted]},
    ]
    return steps, sinks


class RecordSyncTemplate:
    name = "record_sync"
    version = "0.1"
    description = (
        "A records API (Airtable-like: paged, modified_since, 5 req/s) synced into a "
        "PostgreSQL table by batched upserts, resuming from a high-water mark."
    )
    parameters = PARAMETERS

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec:
        """The pipeline spec for typed parameter ``values``."""
        mapping = [parse_mapping(m) for m in values["field_mapping"]]
        columns = [values["key_column"], values["modified_column"]] + [c for c, _, _ in mapping]
        if len(set(columns)) != len(columns):
            raise ValueError(
                "parameters.field_mapping: a column is named twice (key_column and "
                "modified_column are columns too)"
            )
        out = values["output_dir"].rstrip("/")
        steps, sinks = _writes(values)
        return pipeline_spec(
            self,
            values,
            owner="integrations",
            sources=[_api_source(values, mapping)],
            steps=steps,
            sinks=[
                *sinks,
                rejections_report("alerts", f"{out}/alerts/rejections_by_rule.csv"),
            ],
            dead_letter={"path": f"{out}/alerts/dead_letters", "format": "jsonl"},
            governance={"classification": "internal", "fields": {"email": "PII"}},
        )


TEMPLATE = RecordSyncTemplate()
