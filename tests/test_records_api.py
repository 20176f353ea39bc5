"""The local records API (pipelines/dev/records_api.py) keeps the limits a sync client must
keep: batches of at most 10, 5 requests per second per base, stable paging while records
change, and every request in its log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from pipelines.dev.records_api import MAX_BATCH, RecordsApi, record_id, seed_fields

BASE, TABLE = "app1", "contacts"


def call(api: RecordsApi, method: str, query: str = "", body: Any = None, **headers: str):
    """(status, payload, headers) of one request to the contacts table."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{api.url}/v0/{BASE}/{TABLE}{query}", data=data, method=method, headers=headers
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def list_all(
    api: RecordsApi, query: str = "", size: int = 7, offset: str | None = None
) -> list[dict[str, Any]]:
    """Every page of a listing (from ``offset``), waiting out the rate limit between pages."""
    found: list[dict[str, Any]] = []
    while True:
        q = f"?pageSize={size}{query}" + (f"&offset={offset}" if offset else "")
        status, page, _ = call(api, "GET", q)
        if status == 429:
            time.sleep(0.25)
            continue
        assert status == 200, page
        found += page["records"]
        offset = page.get("offset")
        if not offset:
            return found


@pytest.fixture
def api():
    with RecordsApi(rate_limit=1000) as server:
        server.seed(BASE, TABLE, 25)
        yield server


def test_seed_is_deterministic_and_pages_cover_every_record_once(api: RecordsApi) -> None:
    records = list_all(api)
    assert [r["id"] for r in records] == [record_id(i) for i in range(1, 26)]
    assert records[4]["fields"] == seed_fields(5)
    assert records[0]["createdTime"] == "2026-11-01T09:00:01.000Z"
    with RecordsApi() as other:
        other.seed(BASE, TABLE, 25)
        assert other.records(BASE, TABLE) == api.records(BASE, TABLE)


def test_modified_since_is_inclusive_and_edits_move_to_the_end(api: RecordsApi) -> None:
    since = list_all(api)[19]["modifiedTime"]
    assert [r["id"] for r in list_all(api, f"&modified_since={since}")] == [
        record_id(i) for i in range(20, 26)
    ]
    api.edit(BASE, TABLE, record_id(3), {"status": "customer"})
    changed = list_all(api, f"&modified_since={since}")
    assert changed[-1]["id"] == record_id(3) and changed[-1]["modifiedTime"] > since


def test_paging_stays_right_while_records_change(api: RecordsApi) -> None:
    status, first, _ = call(api, "GET", "?pageSize=10")
    assert status == 200 and len(first["records"]) == 10
    api.edit(BASE, TABLE, record_id(2), {"name": "moved"})  # already sent: comes again, last
    api.remove(BASE, TABLE, record_id(15))  # not yet sent
    rest = list_all(api, offset=first["offset"])
    ids = [r["id"] for r in rest]
    assert record_id(15) not in ids and ids[-1] == record_id(2)
    assert len(ids) == 15 - 1 + 1


def test_batch_writes_at_most_ten_and_unknown_ids_change_nothing(api: RecordsApi) -> None:
    eleven = {"records": [{"fields": {"name": f"n{i}"}} for i in range(MAX_BATCH + 1)]}
    status, answer, _ = call(api, "POST", body=eleven)
    assert status == 422 and answer["error"]["type"] == "INVALID_RECORDS"
    status, answer, _ = call(api, "POST", body={"records": eleven["records"][:MAX_BATCH]})
    assert status == 200 and len(answer["records"]) == MAX_BATCH
    assert answer["records"][0]["id"] == record_id(26)
    patch = {
        "records": [
            {"id": record_id(1), "fields": {"name": "x"}},
            {"id": "recNOPE", "fields": {"name": "y"}},
        ]
    }
    status, answer, _ = call(api, "PATCH", body=patch)
    assert status == 422 and answer["error"]["type"] == "ROW_DOES_NOT_EXIST"
    assert api.records(BASE, TABLE)[record_id(1)]["fields"]["name"] == "contact 1"
    status, answer, _ = call(api, "PATCH", body={"records": patch["records"][:1]})
    assert status == 200 and answer["records"][0]["fields"]["name"] == "x"
    assert answer["records"][0]["fields"]["email"] == "contact1@example.com"  # merged


def test_deletes_leave_tombstones_listed_on_request(api: RecordsApi) -> None:
    status, answer, _ = call(api, "DELETE", f"?records[]={record_id(4)}&records[]={record_id(5)}")
    assert status == 200 and [r["deleted"] for r in answer["records"]] == [True, True]
    assert record_id(4) not in {r["id"] for r in list_all(api)}
    tombstones = [r for r in list_all(api, "&include_deleted=true") if r.get("deleted")]
    assert {r["id"] for r in tombstones} == {record_id(4), record_id(5)}
    status, _, _ = call(api, "DELETE", f"?records[]={record_id(4)}")
    assert status == 422


def test_more_than_five_requests_a_second_per_base_get_429_and_are_logged() -> None:
    with RecordsApi(retry_after=0.5) as api:
        api.seed(BASE, TABLE, 3)
        answers = [call(api, "GET") for _ in range(8)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
        assert answers[5][2]["Retry-After"] == "0.5"
        assert api.busiest_second(BASE, accepted_only=True) == 5
        assert api.busiest_second(BASE) == 8
        assert [e.status for e in api.log] == statuses
        # another base has its own limit
        request = urllib.request.Request(f"{api.url}/v0/app2/other")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        time.sleep(1.0)
        assert call(api, "GET")[0] == 200


def test_token_is_required_when_set() -> None:
    with RecordsApi(token="s3cret") as api:
        assert call(api, "GET")[0] == 401
        assert call(api, "GET", Authorization="Bearer s3cret")[0] == 200
