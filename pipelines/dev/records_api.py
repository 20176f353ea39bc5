"""A local Airtable-like records API for the ``record_sync`` tests and dev runs.

It lives here, not under ``tests/``, because dev commands and the bench start it too. It keeps
the limits that shape a sync client, so tests can check the client keeps them from the server's
side (:attr:`RecordsApi.log`), not from the client's word.

Endpoints (JSON, HTTP/1.1 keep-alive, 127.0.0.1 only), per base and table:

- ``GET /v0/{base}/{table}?pageSize=&offset=&modified_since=``: records
  ``{id, createdTime, modifiedTime, fields}`` ordered by ``(modifiedTime, id)``, at most
  ``pageSize`` (1-100, default 100) per page; ``offset`` in the answer (absent on the last page)
  is an opaque token naming the last record sent, so a page boundary stays right while records
  change. ``modified_since`` (ISO 8601) keeps records with ``modifiedTime >= modified_since``:
  inclusive, so a client resuming from a ``(time, id)`` high-water mark loses nothing that
  shares its millisecond and filters out what it already has. ``include_deleted=true`` (this
  server's extension; Airtable has webhooks for it) adds tombstones ``{id, deleted: true,
  modifiedTime}`` of records deleted since then, in the same order.
- ``POST /v0/{base}/{table}`` with ``{"records": [{"fields": {...}}, ...]}``: creates them
  (ids ``rec`` + 14 characters, assigned in order) and answers the created records.
- ``PATCH /v0/{base}/{table}`` with ``{"records": [{"id", "fields"}, ...]}``: merges the fields
  into existing records; an unknown id fails the whole request (422 ``ROW_DOES_NOT_EXIST``),
  as batch APIs do, so nothing is half-applied. With ``"performUpsert": {"fieldsToMergeOn":
  [field, ...]}`` (Airtable's upsert), a record without ``id`` updates the live record whose
  merge fields hold the same values, or is created when none does; the answer then also lists
  ``createdRecords`` and ``updatedRecords`` (ids). Sending the same upsert twice creates once.
- ``DELETE /v0/{base}/{table}?records[]=id&records[]=id``: deletes them (tombstones kept).

More than :data:`MAX_BATCH` (10) records in one write is refused with 422 ``INVALID_RECORDS``.
More than ``rate_limit`` (5) requests in any sliding second per base get 429 with
``Retry-After``; a refused request does not count against the limit (Airtable's rule is a
30 s penalty; ``retry_after`` is shorter here so tests stay short). ``token``, when given, is
required as ``Authorization: Bearer <token>`` (401 otherwise). Every request is logged
(:class:`Logged`) with its arrival time, base, method, status and record count.

Modified times come from a clock that never goes back and never repeats within a table
(at least 1 ms apart), so ``(modifiedTime, id)`` orders every change. Seed data
(:meth:`RecordsApi.seed`) is deterministic: record ``n`` has the same id, fields and times in
every run.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.dev.enrich_api import LoopbackServer, most_in_one_second, send_json_body

MAX_BATCH = 10
MAX_PAGE_SIZE = 100
SEED_TIME = _dt.datetime(2026, 11, 1, 9, 0, tzinfo=_dt.timezone.utc)
STATUSES = ("lead", "customer", "churned")


def record_id(n: int) -> str:
    """The id of the ``n``-th record a table holds: ``rec`` + 14 characters, as Airtable's."""
    return f"rec{n:014d}"


def iso(moment: _dt.datetime) -> str:
    """Airtable's timestamp form: UTC, milliseconds, ``Z``."""
    return (
        moment.astimezone(_dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(text: str) -> _dt.datetime:
    """An ISO 8601 timestamp (``Z`` or an offset; naive means UTC) as an aware datetime."""
    moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def seed_fields(n: int) -> dict[str, Any]:
    """The fields of seed record ``n``: text, a number, a choice and a nullable value."""
    return {
        "name": f"contact {n}",
        "email": f"contact{n}@example.com",
        "amount": round((n * 37) % 10000 / 4, 2),
        "status": STATUSES[n % 3],
        "notes": None if n % 4 == 0 else f"note {n % 11}",
    }


@dataclass(frozen=True)
class Logged:
    """One request as the server saw it (``records``: how many a write carried)."""

    time: float
    base: str
    table: str
    method: str
    status: int
    records: int = 0


class ApiError(Exception):
    """A request the API refuses: the HTTP status and Airtable's error type."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class _Table:
    """One table's records and tombstones (guarded by the API's lock)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, str] = {}  # id -> deletion time (ISO)
        self.next_number = 0
        self.last_ms = 0

    def stamp(self) -> str:
        """Now, in whole milliseconds, after every earlier stamp of this table."""
        ms = max(int(time.time() * 1000), self.last_ms + 1)
        self.last_ms = ms
        return iso(_dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc))

    def new_id(self) -> str:
        self.next_number += 1
        return record_id(self.next_number)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    api: RecordsApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests read :attr:`RecordsApi.log`, not access logs."""

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        send_json_body(self, status, json.dumps(payload).encode("utf-8"), headers)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "v0":
            self._reply(404, {"error": {"type": "NOT_FOUND", "message": "no such endpoint"}})
            return
        base, table = parts[1], parts[2]
        query = parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        self._reply(*self.api.handle(method, base, table, query, body, auth))

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class RecordsApi(LoopbackServer):
    """The records API on a free loopback port, served by threads (one per connection).

    Args:
        rate_limit: requests per sliding second per base before 429.
        retry_after: seconds sent in ``Retry-After`` with a 429.
        token: the bearer token required, or None for none.
        port: 0 for a free port.
    """

    def __init__(
        self,
        *,
        rate_limit: int = 5,
        retry_after: float = 1.0,
        token: str | None = None,
        port: int = 0,
    ) -> None:
        self.rate_limit = rate_limit
        self.retry_after = retry_after
        self.token = token
        self.log: list[Logged] = []
        self._tables: dict[tuple[str, str], _Table] = {}
        self._accepted: dict[str, list[float]] = {}  # base -> arrival times of accepted requests
        self._lock = threading.Lock()
        self._serve(_Handler, port, "records-api")

    # ------------------------------------------------------------------ data, for tests

    def seed(self, base: str, table: str, n: int) -> None:
        """Add records 1..n with :func:`seed_fields`, created and modified one second apart
        from :data:`SEED_TIME` (deterministic), unless the table already holds records."""
        with self._lock:
            t = self._table(base, table)
            if t.records:
                return
            for i in range(1, n + 1):
                moment = iso(SEED_TIME + _dt.timedelta(seconds=i))
                rid = record_id(i)
                t.records[rid] = {
                    "id": rid,
                    "createdTime": moment,
                    "modifiedTime": moment,
                    "fields": seed_fields(i),
                }
            t.next_number = max(t.next_number, n)

    def edit(self, base: str, table: str, rid: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change a record as a user of the API would (not logged, not rate limited)."""
        with self._lock:
            return self._update(self._table(base, table), rid, fields)

    def add(self, base: str, table: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a record as a user of the API would (not logged, not rate limited)."""
        with self._lock:
            return json.loads(
                json.dumps(
                    self._create(self._table(base, table), [{"fields": fields}])["records"][0]
                )
            )

    def remove(self, base: str, table: str, rid: str) -> None:
        """Delete a record as a user of the API would (a tombstone is kept)."""
        with self._lock:
            t = self._table(base, table)
            if t.records.pop(rid, None) is not None:
                t.deleted[rid] = t.stamp()

    def records(self, base: str, table: str) -> dict[str, dict[str, Any]]:
        """A copy of the table's live records by id."""
        with self._lock:
            t = self._table(base, table)
            return json.loads(json.dumps(t.records))

    def deleted(self, base: str, table: str) -> dict[str, str]:
        with self._lock:
            return dict(self._table(base, table).deleted)

    # ------------------------------------------------------------------ the request log

    def busiest_second(self, base: str | None = None, *, accepted_only: bool = False) -> int:
        """The most requests (to ``base``, or any) that arrived in one sliding second."""
        with self._lock:
            times = [
                e.time
                for e in self.log
                if (base is None or e.base == base) and (not accepted_only or e.status != 429)
            ]
        return most_in_one_second(times)

    def statuses(self) -> dict[int, int]:
        """Requests per answered status."""
        with self._lock:
            found: dict[int, int] = {}
            for e in self.log:
                found[e.status] = found.get(e.status, 0) + 1
            return found

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    # ------------------------------------------------------------------ serving

    def handle(
        self,
        method: str,
        base: str,
        table: str,
        query: dict[str, list[str]],
        body: bytes,
        auth: str,
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, payload, headers), logged. Thread-safe."""
        with self._lock:
            now = time.time()
            count = 0
            headers: dict[str, str] = {}
            try:
                if self.token is not None and auth != f"Bearer {self.token}":
                    raise ApiError(401, "AUTHENTICATION_REQUIRED", "invalid or missing token")
                if not self._admit(base, now):
                    headers["Retry-After"] = f"{self.retry_after:g}"
                    raise ApiError(429, "TOO_MANY_REQUESTS", f"over {self.rate_limit} req/s")
                t = self._table(base, table)
                if method == "GET":
                    payload = self._list(t, query)
                elif method == "DELETE":
                    ids = query.get("records[]", [])
                    count = len(ids)
                    payload = self._delete(t, ids)
                else:
                    items = _records_of(body)
                    count = len(items)
                    payload = (
                        self._create(t, items)
                        if method == "POST"
                        else self._patch(t, items, _merge_fields(body))
                    )
                status = 200
            except ApiError as exc:
                status, payload = exc.status, {"error": {"type": exc.kind, "message": exc.message}}
            self.log.append(Logged(now, base, table, method, status, count))
            return status, payload, headers

    def _admit(self, base: str, now: float) -> bool:
        window = [t for t in self._accepted.get(base, []) if now - t < 1.0]
        if len(window) >= self.rate_limit:
            self._accepted[base] = window
            return False
        window.append(now)
        self._accepted[base] = window
        return True

    def _table(self, base: str, table: str) -> _Table:
        return self._tables.setdefault((base, table), _Table())

    def _list(self, t: _Table, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            size = int(query.get("pageSize", [MAX_PAGE_SIZE])[0])
            since = query.get("modified_since", [None])[0]
            since_key = iso(parse_time(since)) if since else ""
            after = _decode_offset(query["offset"][0]) if "offset" in query else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(422, "INVALID_REQUEST", f"bad query: {exc}") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ApiError(422, "INVALID_REQUEST", f"pageSize must be 1..{MAX_PAGE_SIZE}")
        rows: list[dict[str, Any]] = list(t.records.values())
        if query.get("include_deleted", [""])[0] == "true":
            rows += [{"id": i, "deleted": True, "modifiedTime": m} for i, m in t.deleted.items()]
        rows = [r for r in rows if r["modifiedTime"] >= since_key]
        if after is not None:
            rows = [r for r in rows if (r["modifiedTime"], r["id"]) > after]
        rows.sort(key=lambda r: (r["modifiedTime"], r["id"]))
        page = rows[:size]
        answer: dict[str, Any] = {"records": page}
        if len(rows) > size:
            answer["offset"] = _encode_offset(page[-1]["modifiedTime"], page[-1]["id"])
        return answer

    def _create(self, t: _Table, items: list[Any]) -> dict[str, Any]:
        made = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("fields"), dict):
                raise ApiError(422, "INVALID_RECORDS", "each record needs a fields object")
        for item in items:
            stamp = t.stamp()
            rid = t.new_id()
            record = {"id": rid, "createdTime": stamp, "modifiedTime": stamp, "fields": {}}
            record["fields"] = dict(item["fields"])
            t.records[rid] = record
            made.append(record)
        return {"records": made}

    def _patch(self, t: _Table, items: list[Any], merge_on: list[str] | None) -> dict[str, Any]:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("fields"), dict):
                raise ApiError(422, "INVALID_RECORDS", "each record needs an id and fields")
            if merge_on is not None and "id" not in item:
                if any(item["fields"].get(f) is None for f in merge_on):
                    raise ApiError(422, "INVALID_RECORDS", f"upserts need values of {merge_on}")
                continue
            if item.get("id") not in t.records:
                raise ApiError(422, "ROW_DOES_NOT_EXIST", f"record {item.get('id')!r} not found")
        if merge_on is None:
            return {"records": [self._update(t, item["id"], item["fields"]) for item in items]}
        by_merge = {
            tuple(r["fields"].get(f) for f in merge_on): rid for rid, r in t.records.items()
        }
        done, created, updated = [], [], []
        for item in items:
            rid = item.get("id") or by_merge.get(tuple(item["fields"][f] for f in merge_on))
            if rid is None:
                record = self._create(t, [item])["records"][0]
                by_merge[tuple(item["fields"][f] for f in merge_on)] = record["id"]
                created.append(record["id"])
            else:
                record = self._update(t, rid, item["fields"])
                updated.append(rid)
            done.append(record)
        return {"records": done, "createdRecords": created, "updatedRecords": updated}

    def _update(self, t: _Table, rid: str, fields: dict[str, Any]) -> dict[str, Any]:
        record = t.records.get(rid)
        if record is None:
            raise ApiError(422, "ROW_DOES_NOT_EXIST", f"record {rid!r} not found")
        record["fields"].update(fields)
        record["modifiedTime"] = t.stamp()
        return json.loads(json.dumps(record))

    def _delete(self, t: _Table, ids: list[str]) -> dict[str, Any]:
        if not ids:
            raise ApiError(422, "INVALID_REQUEST", "name the records: ?records[]=id")
        if len(ids) > MAX_BATCH:
            raise ApiError(422, "INVALID_RECORDS", f"at most {MAX_BATCH} records per request")
        missing = [i for i in ids if i not in t.records]
        if missing:
            raise ApiError(422, "ROW_DOES_NOT_EXIST", f"records {missing} not found")
        for rid in ids:
            del t.records[rid]
            t.deleted[rid] = t.stamp()
        return {"records": [{"id": rid, "deleted": True} for rid in ids]}


def _records_of(body: bytes) -> list[Any]:
    try:
        items = json.loads(body)["records"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(422, "INVALID_REQUEST", 'body must be {"records": [...]}') from None
    if not isinstance(items, list) or not items:
        raise ApiError(422, "INVALID_REQUEST", "records must be a non-empty list")
    if len(items) > MAX_BATCH:
        raise ApiError(422, "INVALID_RECORDS", f"at most {MAX_BATCH} records per request")
    return items


def _merge_fields(body: bytes) -> list[str] | None:
    """The ``performUpsert.fieldsToMergeOn`` of a PATCH body, or None for a plain update."""
    upsert = json.loads(body).get("performUpsert")
    if upsert is None:
        return None
    fields = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise ApiError(422, "INVALID_REQUEST", "performUpsert needs fieldsToMergeOn: [field]")
    return fields


def _encode_offset(modified: str, rid: str) -> str:
    return base64.urlsafe_b64encode(f"{modified}|{rid}".encode()).decode()


def _decode_offset(token: str) -> tuple[str, str]:
    modified, _, rid = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    if not rid:
        raise ValueError("unknown offset")
    return modified, rid


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.dev.records_api --seed app1/contacts=100``: serve until stdin
    closes, printing the URL on the first line."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", action="append", default=[], help="base/table=N")
    args = parser.parse_args(argv)
    with RecordsApi() as api:
        for item in args.seed:
            where, _, n = item.partition("=")
            base, _, table = where.partition("/")
            api.seed(base, table, int(n))
        print(api.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
