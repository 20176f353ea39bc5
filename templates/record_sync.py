"""The ``record_sync`` template: a records API (Airtable-like) and a PostgreSQL table kept in
sync, in one direction or both.

Every direction keeps per-side high-water marks ``(modified time, id)`` in ``state_table``
(PostgreSQL, created when missing; one row per side of the sync, see :func:`sync_name`): a
change is new when its ``(modified time, id)`` is strictly after its side's mark. The marks
are read when the run starts, never while the graph is built (``beamwright plan`` needs no
database). Readers stage the furthest mark they read as pending; the driver commits all sides
in one statement only after everything the run wrote is written
(:mod:`connectors.sync_state`), so a run killed at any point is re-read from the same marks
and its idempotent writes are applied again to the same values: no gap, no duplicate.

The API side (``api_to_db`` and ``both``) is the ``records_api`` source: it walks
``{api_url}/v0/{api_base}/{api_table}`` page by page (``offset`` tokens, ``page_size``
records a page) from ``?modified_since=<mark time>`` (inclusive: the records at the mark are
listed again and dropped), at most ``rate_limit`` requests/s for the whole job, 429s retried
after their ``Retry-After``. A record's key (``key_column``) is its ``external_id`` field when
the sync created it from a row, else its API id.

``api_to_db``: each record's key goes to ``key_column``, its ``modifiedTime`` to
``modified_column``, and each ``field_mapping`` entry (``column=api_field:type``) to its
column; the rows are upserted into ``table`` by ``key_column`` (the ``postgres`` sink: COPY +
``INSERT ... ON CONFLICT``). Rows the table refuses are dead letters; the report counts the
new records, and the run's summary and lineage the rows the table took. Deletes
(``deletes``): ``ignore`` leaves rows as last synced; ``soft_delete`` lists the API's
tombstones too (``include_deleted=true``), upserts live records whole with ``deleted_column``
false, and tombstones as key + deletion time + ``deleted_column`` true only, so the row keeps
its last fields. The table needs only the key, ``modified_column``, the mapped columns and,
with ``soft_delete``, ``deleted_column``.

For ``db_to_api`` and ``both`` the table needs, besides the key and
the mapped columns: ``api_id_column`` (the API's id), ``modified_column`` (the API's
``modifiedTime`` last seen or written), ``db_modified_column`` (its own modified time, set by
whoever edits a row: the ``postgres`` source reads rows with ``(modified, key)`` strictly after
its mark), ``synced_column`` (the modified time the sync last wrote or sent: rows where the two
are equal are the sync's own writes, not changes) and, with ``soft_delete``,
``deleted_column``. An index on ``(db_modified_column, (key_column::text))`` keeps the change
query cheap.

``db_to_api``: the table's changed rows go to the API (``records_api`` sink): 10 records a
request under ``rate_limit``, updates by API id, creates as upserts merged on the
``external_id`` field holding the row's key (a re-run after a crash updates the record the
killed run created instead of creating it twice), soft-deleted rows deleted. The API's id and
``modifiedTime`` of every record written come back into the row with ``synced_column`` set to
the change's modified time.

``both``: the API's changes (``records_api`` source) and the table's (``postgres`` source) are
keyed together by the ``reconcile`` step. A record changed on one side is written to the
other; one changed on both since the last sync is a conflict settled by ``conflicts``:
``source_wins`` (the API), ``target_wins`` (the table), ``newest_wins`` (the later modified
time), or ``manual``: both versions to ``conflicts_table`` (``key_column``, ``modified_column``,
``db_modified_column``, ``api_version``, ``db_version`` text; primary key the first three) and
neither side touched. The sync's own writes coming back from either side are recognised (the
API's modified time written back; the table's ``synced_column``) and not synced again.
The report (``report/sync_report.json``) counts the records per action (``db_create``,
``db_update``, ``db_delete``, ``api_create``, ``api_update``, ``api_delete``, ``conflict``,
``db_ack``); the run summary has the same counts per node.

The table must exist with ``key_column`` as its primary key (or a unique constraint); its
column types decide how values are stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import pipeline_spec, postgres_connection, rejections_report

DIRECTIONS = ["api_to_db", "db_to_api", "both"]
POLICIES = ["source_wins", "target_wins", "newest_wins", "manual"]
TYPES = ("string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp")
SAMPLE_MAPPING = ["name", "email", "amount:float64", "status", "notes"]

PARAMETERS = {
    "direction": ParameterSpec(
        type="string",
        default="api_to_db",
        choices=DIRECTIONS,
        description="api_to_db: API records upserted into the table; db_to_api: table rows "
        "written to the API; both: each side's changes to the other, conflicts settled by "
        "conflicts.",
    ),
    "conflicts": ParameterSpec(
        type="string",
        default="manual",
        choices=POLICIES,
        description="both: a record changed on both sides since the last sync: the API wins "
        "(source_wins), the table wins (target_wins), the later change wins (newest_wins), or "
        "both versions go to conflicts_table and neither side is written (manual).",
    ),
    "conflicts_table": ParameterSpec(
        type="string",
        default="public.contacts_conflicts",
        description="both, manual: schema.table receiving both versions of a conflict.",
    ),
    "state_table": ParameterSpec(
        type="string",
        default="public.beamwright_sync_state",
        description="schema.table of the per-side high-water marks (created when missing).",
    ),
    "sync_name": ParameterSpec(
        type="string",
        default="",
        description="This sync's name in state_table (default: sync_<api_base>-<api_table>-"
        "<table>, so syncs of other tables sharing the state table keep their own marks).",
    ),
    "db_modified_column": ParameterSpec(
        type="string",
        default="modified_at",
        description="db_to_api, both: the table's own modified time (set by whoever edits a row).",
    ),
    "synced_column": ParameterSpec(
        type="string",
        default="synced_at",
        description="db_to_api, both: the modified time the sync last wrote or sent; a row "
        "whose modified time equals it is the sync's own write, not a change.",
    ),
    "api_id_column": ParameterSpec(
        type="string",
        default="api_id",
        description="db_to_api, both: the API's record id (written back after a create).",
    ),
    "external_id": ParameterSpec(
        type="string",
        default="sync_key",
        description="db_to_api, both: the API field holding key_column of records the sync "
        "creates; creates are upserts merged on it, so a re-run never duplicates.",
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


def _api_to_db(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> tuple:
    """The API's changes (the ``records_api`` source, its mark in ``state_table`` as the
    ``api`` side) upserted into the table: every record (``ignore``), or live records whole
    and tombstones as key + modified time + deleted flag only, so a soft-deleted row keeps
    its last fields (``soft_delete``); and the sync report."""
    out = values["output_dir"].rstrip("/")
    key, modified, deleted = (
        values["key_column"],
        values["modified_column"],
        values["deleted_column"],
    )
    soft = values["deletes"] == "soft_delete"
    source = {
        "name": "api",
        "type": "records_api",
        **_api_spec(values, mapping),
        "modified_column": modified,
        "page_size": values["page_size"],
        "state": _state(values, "api"),
    }
    db = {
        "type": "postgres",
        "connection": _connection(values),
        "table": values["table"],
        "key": key,
    }
    report: dict[str, Any] = {
        "name": "sync_report",
        "type": "report",
        "input": "rows",
        "path": f"{out}/report/sync_report.json",
        "metrics": {"api_records_read": "count"},
    }
    steps: list[dict[str, Any]] = [
        {
            "name": "rows",
            "type": "map",
            "input": "api",
            "description": "The table's columns: the API id is the key, not a column of its own.",
            "select": [key, modified, *([deleted] if soft else []), *(c for c, _, _ in mapping)],
        }
    ]
    if not soft:
        return [source], steps, [{"name": "db", "input": "rows", **db}, report]
    steps += [
        {"name": "live", "type": "filter", "input": "rows", "where": f"{deleted} == false"},
        {"name": "deleted", "type": "filter", "input": "rows", "where": f"{deleted} == true"},
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
        {**report, "group_by": [deleted]},
    ]
    return [source], steps, sinks


def sync_name(values: Mapping[str, Any]) -> str:
    """The sync's rows in ``state_table``: ``sync_name``, or what it keeps in sync
    (``sync_<api_base>-<api_table>-<table>``, dots as ``_``). One fixed name made every record_sync sharing a state
    table read and move the same marks: a second sync would start after the first one's mark
    and skip every record changed before it."""
    if values.get("sync_name"):
        return str(values["sync_name"])
    what = f"{values['api_base']}-{values['api_table']}-{values['table']}"
    return "sync_" + re.sub(r"[^A-Za-z0-9_-]", "_", what)  # a name: see connectors.sync_state


def _state(values: Mapping[str, Any], side: str) -> dict[str, Any]:
    """Where ``side``'s high-water mark is kept: one row of ``state_table``."""
    return {
        "connection": _connection(values),
        "table": values["state_table"],
        "sync": sync_name(values),
        "side": side,
    }


def _api_spec(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> dict:
    """What the records API source and sink share."""
    spec: dict[str, Any] = {
        "url": values["api_url"],
        "base": values["api_base"],
        "table": values["api_table"],
        "fields": {c: {"field": f, "type": t} for c, f, t in mapping},
        "key_column": values["key_column"],
        "id_column": values["api_id_column"],
        "external_id": values["external_id"],
        "rate_limit": values["rate_limit"],
    }
    if values["deletes"] == "soft_delete":
        spec["deleted_column"] = values["deleted_column"]
    if values["api_token"]:
        spec["auth"] = {"type": "bearer", "secret": values["api_token"]}
    return spec


def _db_columns(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> list[str]:
    own = [
        values["key_column"],
        values["api_id_column"],
        values["modified_column"],
        values["db_modified_column"],
        values["synced_column"],
    ]
    if values["deletes"] == "soft_delete":
        own.append(values["deleted_column"])
    return own + [c for c, _, _ in mapping]


def _db_source(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> dict:
    return {
        "name": "db_changes",
        "type": "postgres",
        "connection": _connection(values),
        "table": values["table"],
        "key": values["key_column"],
        "columns": _db_columns(values, mapping),
        "incremental": {
            "modified": values["db_modified_column"],
            "state_table": values["state_table"],
            "sync": sync_name(values),
            "side": "db",
            "echo_column": values["synced_column"],
        },
    }


def _api_sink(values: Mapping[str, Any], mapping: list[tuple[str, str, str]], src: str) -> dict:
    """The records API sink fed by ``src``, writing ids, API times and the acknowledged
    change time (``synced_column``) back into the table."""
    sink = {
        "name": "api",
        "type": "records_api",
        "input": src,
        **_api_spec(values, mapping),
        "write_back": {
            "connection": _connection(values),
            "table": values["table"],
            "key": values["key_column"],
            "id_column": values["api_id_column"],
            "modified_column": values["modified_column"],
            "passthrough": [values["synced_column"]],
        },
    }
    return sink


def _db_to_api(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> tuple:
    out = values["output_dir"].rstrip("/")
    db_mod, synced = values["db_modified_column"], values["synced_column"]
    gone = values["deleted_column"] if values["deletes"] == "soft_delete" else None
    api_id = values["api_id_column"]
    action = f"if({api_id} is null, 'api_create', 'api_update')"
    if gone:
        action = f"if(coalesce({gone}, false), 'api_delete', {action})"
    steps = [
        {
            "name": "outgoing",
            "type": "map",
            "input": "db_changes",
            "description": "The change sent is acknowledged by its modified time (written "
            "back once the API took it), and labelled for the report.",
            "derive": {synced: db_mod, "sync_action": action},
        }
    ]
    sinks = [
        _api_sink(values, mapping, "outgoing"),
        {
            "name": "sync_report",
            "type": "report",
            "input": "outgoing",
            "path": f"{out}/report/sync_report.json",
            "group_by": ["sync_action"],
            "metrics": {"records": "count"},
        },
    ]
    return [_db_source(values, mapping)], steps, sinks


def _both(values: Mapping[str, Any], mapping: list[tuple[str, str, str]]) -> tuple:
    out = values["output_dir"].rstrip("/")
    key, api_id = values["key_column"], values["api_id_column"]
    api_mod, db_mod = values["modified_column"], values["db_modified_column"]
    synced = values["synced_column"]
    gone = values["deleted_column"] if values["deletes"] == "soft_delete" else None
    fields = [c for c, _, _ in mapping]
    api_source = {
        "name": "api_changes",
        "type": "records_api",
        **_api_spec(values, mapping),
        "modified_column": api_mod,
        "page_size": values["page_size"],
        "state": _state(values, "api"),
    }
    reconcile: dict[str, Any] = {
        "name": "reconcile",
        "type": "reconcile",
        "input": "api_changes",
        "target": "db_changes",
        "connection": _connection(values),
        "table": values["table"],
        "policy": values["conflicts"],
        "fields": {c: t for c, _, t in mapping},
        "key": key,
        "id_column": api_id,
        "api_modified": api_mod,
        "modified": db_mod,
        "echo_column": synced,
    }
    reconcile["deleted"] = gone

    def route(name: str, actions: list[str], select: list[str] | None) -> list[dict]:
        listed = ", ".join(f"'{a}'" for a in actions)
        found = {"name": name, "type": "filter", "input": "reconcile"}
        found["where"] = f"sync_action in [{listed}]"
        if select is None:
            return [found]
        return [found, {"name": f"{name}_columns", "type": "map", "input": name, "select": select}]

    flag = [gone] if gone else []
    steps = [
        reconcile,
        *route(
            "to_db",
            ["db_create", "db_update"],
            [key, api_id, *fields, *flag, api_mod, db_mod, synced],
        ),
        *route("to_api", ["api_create", "api_update", "api_delete"], None),
        *route("to_acks", ["db_ack"], [key, api_id, api_mod]),
        *route("to_conflicts", ["conflict"], [key, api_mod, db_mod, "api_version", "db_version"]),
    ]
    if gone:
        steps += route("to_db_deletes", ["db_delete"], [key, gone, api_mod, db_mod, synced])
    db = {
        "type": "postgres",
        "connection": _connection(values),
        "table": values["table"],
        "key": key,
    }
    sinks = [
        {"name": "db", "input": "to_db_columns", **db},
        {"name": "db_acks", "input": "to_acks_columns", **db},
        _api_sink(values, mapping, "to_api"),
        {
            "name": "conflicts_table",
            "input": "to_conflicts_columns",
            "type": "postgres",
            "connection": _connection(values),
            "table": values["conflicts_table"],
            "key": [key, api_mod, db_mod],
        },
        {
            "name": "sync_report",
            "type": "report",
            "input": "reconcile",
            "path": f"{out}/report/sync_report.json",
            "group_by": ["sync_action"],
            "metrics": {"records": "count"},
        },
    ]
    if gone:
        sinks.append({"name": "db_deletes", "input": "to_db_deletes_columns", **db})
    return [api_source, _db_source(values, mapping)], steps, sinks


class RecordSyncTemplate:
    name = "record_sync"
    version = "0.1"
    description = (
        "A records API (Airtable-like: paged, modified_since, 5 req/s) synced into a "
        "PostgreSQL table (one way or both), resuming from per-side high-water marks."
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
        make = {"api_to_db": _api_to_db, "both": _both, "db_to_api": _db_to_api}
        sources, steps, sinks = make[values["direction"]](values, mapping)
        return pipeline_spec(
            self,
            values,
            owner="integrations",
            sources=sources,
            steps=steps,
            sinks=[
                *sinks,
                rejections_report("alerts", f"{out}/alerts/rejections_by_rule.csv"),
            ],
            dead_letter={"path": f"{out}/alerts/dead_letters", "format": "jsonl"},
            governance={"classification": "internal", "fields": {"email": "PII"}},
        )


TEMPLATE = RecordSyncTemplate()
