"""Rows written to an Airtable-like records API in batches, under the API's rate limit.

Each input row is one record: its API id (``id_column``; null for a record the API does not
have yet), its mapped fields (column -> API field), and optionally a deleted flag. Rows go in
requests of at most ``batch_size`` (10, the API's limit) records:

- deleted rows with an id: ``DELETE ?records[]=id...``;
- the others: ``PATCH`` with ``performUpsert: {fieldsToMergeOn: [external_id]}``: a record
  with an id is updated by id; one without is matched on ``external_id`` (a field holding the
  row's key) and updated, or created when no record holds that key.

Why the external id: a crash after the API created a record and before its id was written
back would make a re-run create it again if creates were plain ``POST``\\ s. Matched on the
key, the re-run's request updates the record the first run created: no duplicate, whatever
the moment of the crash. Updates by id and deletes are idempotent too, so requests are resent
after errors (``retry_non_idempotent``): sending one twice changes nothing.

Every request takes a permit of the job-wide limiter (``transforms.call_strategies``; named,
so a records API source of the same job can share it) and goes through the HTTP client of
:mod:`transforms.http_client` (retries with backoff, ``Retry-After`` of a 429 honoured, a
circuit breaker per host, credentials from the credential service). A batch the API refuses
(422) is sent again record by record so one bad record costs only itself; a delete of a record
the API no longer has counts as done (a re-run after a crash deletes it twice). Records that
still fail are dead letters with the row as it came (the original record) and the API's
answer as reason.

Write-back (``write_back``): the API's id and ``modifiedTime`` of every record written go back
to the rows' table with an upsert by key (:class:`connectors.postgres_upsert.UpsertWriter`),
with any pass-through columns (a sync's acknowledgement of the change it sent). That maps new
records to their API ids and records what the sync wrote (its echo, to be recognised later).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import apache_beam as beam
import pyarrow as pa

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors import records
from connectors.http.breaker import BreakerConfig
from connectors.http.request import Request
from connectors.http.retry import RetryPolicy
from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_WRITTEN, NodeCounters
from connectors.postgres_sink import refused_rows, write_outputs
from transforms.http_client import scrub_credentials
from transforms.http_source import open_limited_caller

MAX_BATCH = 10
CREATED, UPDATED, DELETED = "created", "updated", "deleted"
ALREADY_GONE = "ROW_DOES_NOT_EXIST"


@dataclass(frozen=True)
class WriteBack:
    """Where the API's ids and modified times go: ``writer`` upserts by ``key``."""

    writer: Any  # connectors.postgres_upsert.UpsertWriter
    key: str
    id_column: str
    modified_column: str | None = None
    passthrough: tuple[str, ...] = ()


@dataclass
class WriteResult:
    """What one table's writes did."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    written: list[tuple[int, str, str | None]] = field(default_factory=list)  # row, id, time
    failures: dict[int, str] = field(default_factory=dict)  # row -> reason


class RecordsApiWriter:
    """Writes rows to one table of a records API (without Beam: :meth:`write`).

    Args:
        url: the table's endpoint, ``{api}/v0/{base}/{table}``.
        fields: column -> API field of the values sent.
        id_column: the column holding the API's record id (null: not in the API yet).
        key_column: the row's key, sent as ``external_id`` when the id is null.
        external_id: the API field holding the key (merge field of upserts).
        deleted_column: a boolean column; true rows are deleted (None: no deletes).
        rate_limit, limiter_name, workers: the job-wide limit and the name its limiter is
            shared under in each worker process.
        auth, credentials, timeout, retry, breaker: as the ``http`` source has them.
        write_back: the ids and modified times written back, or None.
    """

    def __init__(
        self,
        *,
        url: str,
        fields: dict[str, str],
        id_column: str,
        key_column: str,
        external_id: str,
        deleted_column: str | None = None,
        rate_limit: float | None = None,
        limiter_name: str = "",
        workers: int = 1,
        auth: Any = None,
        credentials: Any = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        breaker: BreakerConfig | None = None,
        write_back: WriteBack | None = None,
        batch_size: int = MAX_BATCH,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH} (the API's limit)")
        if (auth is None) != (credentials is None):
            raise ValueError("auth and credentials go together")
        self.url = url.rstrip("/")
        self.fields = dict(fields)
        self.id_column, self.key_column = id_column, key_column
        self.external_id = external_id
        self.deleted_column = deleted_column
        self.rate_limit, self.limiter_name, self.workers = rate_limit, limiter_name, workers
        self.auth, self.credentials, self.timeout = auth, credentials, timeout
        base = retry or RetryPolicy()
        self.retry = RetryPolicy(
            base.max_attempts, base.backoff, base.max_backoff, base.max_retry_after, True
        )
        self.breaker = breaker or BreakerConfig()
        self.write_back = write_back
        self.batch_size = batch_size
        self._ready = False

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["_ready"] = False
        return state

    def setup(self) -> None:
        if self._ready:
            return
        self._limiter, self._caller = open_limited_caller(self, name=self.limiter_name)
        self._ready = True

    def requests_made(self) -> dict[str, int]:
        """Calls, retries, ... since the last ask (the caller's tallies)."""
        return self._caller.drain()

    # -- writing ----------------------------------------------------------------------
    def write(self, rows: pa.Table) -> WriteResult:
        """Write every row; failures by row number, never raised."""
        self.setup()
        result = WriteResult()
        items = rows.to_pylist()
        deletes, upserts = [], []
        for i, row in enumerate(items):
            gone = self.deleted_column is not None and bool(row.get(self.deleted_column))
            if gone and row.get(self.id_column) is None:
                result.failures[i] = (
                    "deleted, but its API id is unknown (never synced to the API, or its id "
                    "was not written back)"
                )
            elif gone:
                deletes.append(i)
            else:
                upserts.append(i)
        for start in range(0, len(upserts), self.batch_size):
            self._upsert([(i, items[i]) for i in upserts[start : start + self.batch_size]], result)
        for start in range(0, len(deletes), self.batch_size):
            self._delete([(i, items[i]) for i in deletes[start : start + self.batch_size]], result)
        if self.write_back is not None and result.written:
            self._write_back(rows, result)
        return result

    def _send(self, request: Request) -> Any:
        if self._limiter is not None:
            self._limiter.acquire()
        return self._caller(request)

    def _upsert(self, batch: list[tuple[int, dict[str, Any]]], result: WriteResult) -> None:
        body = {
            "performUpsert": {"fieldsToMergeOn": [self.external_id]},
            "records": [self._record(row) for _, row in batch],
        }
        request = Request(
            "PATCH",
            self.url,
            (("Content-Type", "application/json"),),
            json.dumps(body, default=_json_value).encode(),
        )
        outcome = self._send(request)
        if not outcome.ok:
            self._refused(batch, outcome, result, self._upsert)
            return
        created = set((outcome.body or {}).get("createdRecords") or [])
        answered = (outcome.body or {}).get("records") or []
        for (i, _row), record in zip(batch, answered, strict=False):
            result.written.append((i, record.get("id"), record.get("modifiedTime")))
            if record.get("id") in created:
                result.created += 1
            else:
                result.updated += 1

    def _record(self, row: dict[str, Any]) -> dict[str, Any]:
        fields = {api: row.get(column) for column, api in self.fields.items()}
        record: dict[str, Any] = {"fields": fields}
        if row.get(self.id_column) is not None:
            record["id"] = row[self.id_column]
        else:
            fields[self.external_id] = row.get(self.key_column)
        return record

    def _delete(self, batch: list[tuple[int, dict[str, Any]]], result: WriteResult) -> None:
        query = "&".join(f"records[]={quote(str(row[self.id_column]))}" for _, row in batch)
        outcome = self._send(Request("DELETE", f"{self.url}?{query}"))
        gone = len(batch) == 1 and not outcome.ok and ALREADY_GONE in (outcome.error or "")
        if not outcome.ok and not gone:
            self._refused(batch, outcome, result, self._delete)
            return
        for i, row in batch:
            result.written.append((i, row[self.id_column], None))
            result.deleted += 1

    def _refused(
        self,
        batch: list[tuple[int, dict[str, Any]]],
        outcome: Any,
        result: WriteResult,
        again: Any,
    ) -> None:
        """A refused batch (422) is tried again record by record; other failures (the API
        unreachable, retries spent, the breaker open) fail every record of the batch."""
        if outcome.status == 422 and len(batch) > 1:
            for item in batch:
                again([item], result)
            return
        reason = scrub_credentials(
            f"status={outcome.status} attempts={outcome.attempts}: {outcome.error}",
            self.auth,
            self.credentials,
        )
        for i, _row in batch:
            result.failures[i] = reason

    def _write_back(self, rows: pa.Table, result: WriteResult) -> None:
        back = self.write_back
        assert back is not None
        order = [i for i, _, _ in result.written]
        columns: dict[str, Any] = {
            back.key: rows.column(self.key_column).take(pa.array(order, pa.int64())),
            back.id_column: pa.array([rid for _, rid, _ in result.written], pa.string()),
        }
        if back.modified_column is not None:
            times = [_parse_time(t) for _, _, t in result.written]
            stamps = pa.array(times, pa.timestamp("us", tz="UTC"))
            columns[back.modified_column] = stamps
        for name in back.passthrough:
            columns[name] = rows.column(name).take(pa.array(order, pa.int64()))
        table = pa.table(columns)
        if back.modified_column is not None:  # deletes answer no time: leave the column
            deleted = table.filter(pa.compute.is_null(table.column(back.modified_column)))
            kept = table.filter(pa.compute.is_valid(table.column(back.modified_column)))
            back.writer.write(kept)
            if deleted.num_rows:
                back.writer.write(deleted.drop_columns([back.modified_column]))
        else:
            back.writer.write(table)


def _parse_time(text: str | None) -> _dt.datetime | None:
    if text is None:
        return None
    moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def _json_value(value: Any) -> Any:
    """Values JSON has no type for: dates and times as ISO 8601, decimals as numbers."""
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if hasattr(value, "as_integer_ratio"):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


class WriteRecordsApi(beam.PTransform):
    """Write Arrow rows to a records API; outputs ``written`` (one summary per batch) and
    ``dead_letters`` (the rows the API refused, with its answer)."""

    def __init__(self, writer: RecordsApiWriter, *, sink_name: str, run_id: str = "") -> None:
        super().__init__()
        self._fn = _WriteFn(writer, sink_name, run_id)

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return write_outputs(tables, "Write", self._fn)


class _WriteFn(beam.DoFn):
    def __init__(self, writer: RecordsApiWriter, sink: str, run_id: str) -> None:
        self._writer, self._sink, self._run_id = writer, sink, run_id

    def setup(self) -> None:
        self._counters = NodeCounters(self._sink)
        self._writer.setup()

    def process(self, table: pa.Table) -> Iterator[Any]:
        if not table.num_rows:
            return
        self._counters.inc(ROWS_IN, table.num_rows)
        result = self._writer.write(records.strip_positions(table))
        for what, n in self._writer.requests_made().items():
            self._counters.inc("requests" if what == "calls" else what, n)
        self._counters.inc(ROWS_WRITTEN, len(result.written))
        self._counters.inc(CREATED, result.created)
        self._counters.inc(UPDATED, result.updated)
        self._counters.inc(DELETED, result.deleted)
        self._counters.inc(ROWS_DEAD, len(result.failures))
        yield from refused_rows(
            table, result.failures, rule="records_api", step=self._sink, run_id=self._run_id
        )
        yield {
            "sink": self._sink,
            "rows_written": len(result.written),
            "created": result.created,
            "updated": result.updated,
            "deleted": result.deleted,
            "rows_dead_lettered": len(result.failures),
        }
