"""The ``api_integration`` template and what it runs on, against real local servers: the
``http`` source polling the orders API (:class:`pipelines.dev.sample_api.SampleApi`) in every
pagination style with a ``since`` checkpoint, the webhook ingest server and the event-stream
relay appending to a real Kafka broker (Tansu), and the pipeline reading that topic.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import templates
from connectors.http.paging import Pagination, PagingError, next_links
from connectors.http.request import Request
from connectors.ingest.appender import KafkaAppender
from connectors.ingest.signature import Rejected, ReplayGuard, Scheme, signed_headers, verify
from connectors.ingest.stream import relay, sse_events
from connectors.ingest.webhook import WebhookIngest
from connectors.secrets import Secret
from pipelines.dev.sample_api import SampleApi, sample_order
from pipelines.loading import resolve_parameters
from pipelines.run import RunFailed, run_spec
from tests import kafka_broker as fixtures
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

TEMPLATE = templates.get_template("api_integration")


@pytest.fixture
def api() -> Iterator[SampleApi]:
    with SampleApi(count=230, default_page_size=40) as server:
        yield server


def expand(out: Path, **params: Any) -> Any:
    values = {"output_dir": str(out)} | {k: v for k, v in params.items()}
    return TEMPLATE.expand(resolve_parameters(TEMPLATE.parameters, values))


def warehouse_ids(out: Path) -> list[int]:
    return sorted(pq.read_table(out / "warehouse").column("order_id").to_pylist())


def dead_letters(out: Path) -> list[dict[str, Any]]:
    folder = out / "alerts" / "dead_letters"
    return [json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()]


def events(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (out / "lineage" / "events.jsonl").read_text().splitlines()
    ]


def marks_file(out: Path) -> Path:
    return out / "state" / "since_marks.json"


# --------------------------------------------------------------------------- pagination


def test_link_header_next_targets_follow_rfc_8288() -> None:
    header = (
        '<https://api.example/x?page=3>; rel="next last", </x?page=1>; rel=first, '
        '<https://api.example/x?page=9>; title="a, b; c"; rel="prev"'
    )
    assert next_links(header) == ["https://api.example/x?page=3"]
    assert next_links('</p2>; rel="first"') == []
    page = Pagination("link")
    request = Request("GET", "http://h:1/orders?page=1")
    after = page.next(request, {}, {"link": '</orders?page=2>; rel="next"'}, [1], 1)
    assert after is not None and after.url == "http://h:1/orders?page=2"
    with pytest.raises(PagingError, match="same page"):
        page.next(request, {}, {"link": '</orders?page=1>; rel="next"'}, [1], 1)


def test_page_offset_and_cursor_steps() -> None:
    by_page = Pagination("page", size=2)
    first = Request("GET", by_page.first("http://h:1/o?since=x"))
    assert first.url == "http://h:1/o?since=x&page=1&per_page=2"
    second = by_page.next(first, {}, {}, [1, 2], 1)
    assert second is not None and "page=2" in second.url and "since=x" in second.url
    assert by_page.next(second, {}, {}, [1], 2) is None  # a short page is the last
    by_offset = Pagination("offset", size=2, size_param="limit")
    start = Request("GET", by_offset.first("http://h:1/o"))
    after = by_offset.next(start, {}, {}, [1, 2], 1)
    assert after is not None and after.url == "http://h:1/o?limit=2&offset=2"
    by_cursor = Pagination("cursor", cursor_path="meta.next")
    req = Request("GET", by_cursor.first("http://h:1/o"))
    assert by_cursor.next(req, {"meta": {"next": "abc"}}, {}, [], 1).url.endswith("cursor=abc")  # type: ignore[union-attr]
    assert by_cursor.next(req, {"meta": {"next": None}}, {}, [1], 1) is None
    with pytest.raises(PagingError, match="max_pages"):
        Pagination("link", max_pages=3).next(req, {}, {"link": "</o?x>; rel=next"}, [1], 3)


# --------------------------------------------------------------------------- polling


@pytest.mark.parametrize(
    "style", ["link", "page", "offset", "cursor"], ids=lambda s: f"pagination={s}"
)
def test_polling_reads_every_page_and_counts_reconcile(
    tmp_path: Path, api: SampleApi, style: str
) -> None:
    summary = run_spec(
        expand(tmp_path, api_endpoints=f"{api.url}/orders", pagination=style, page_size=40)
    )
    source = summary.node("api")
    assert source.rows_in == source.rows_out == 230
    assert source.stats["pages"] == 6  # 5 full pages of 40 and one of 30
    assert summary.node("warehouse").rows_out == 230
    assert summary.reconciled
    assert warehouse_ids(tmp_path) == list(range(230))
    table = pq.read_table(tmp_path / "warehouse")
    # normalize: units, text case; timestamps in UTC whatever offset the API sent
    first = table.slice(0, 1).to_pylist()[0] if table.column("order_id")[0].as_py() == 0 else None
    row = next(r for r in table.to_pylist() if r["order_id"] == 1)
    assert row["amount"] == sample_order(1)["amount_cents"] / 100
    assert row["currency"] == "EUR" and row["status"] == "shipped"
    assert str(table.schema.field("modified_at").type) == "timestamp[us, tz=UTC]"
    assert row["modified_at"].isoformat() == "2026-12-01T09:01:00+00:00"
    assert first is None or first["order_id"] == 0
    # lineage: the API is an input dataset named by its base URL and path
    complete = [e for e in events(tmp_path) if e["eventType"] == "COMPLETE"]
    inputs = {(d["namespace"], d["name"]) for e in complete for d in e["inputs"]}
    assert (api.url, "orders") in inputs
    api_inputs = [d for e in complete for d in e["inputs"] if d["name"] == "orders"]
    schema = {f["name"]: f["type"] for f in api_inputs[0]["facets"]["schema"]["fields"]}
    assert schema["order_id"] == "int64" and schema["modified_at"].startswith("timestamp")


def test_second_run_fetches_only_new_records(tmp_path: Path, api: SampleApi) -> None:
    spec = lambda: expand(tmp_path, api_endpoints=f"{api.url}/orders")  # noqa: E731
    first = run_spec(spec())
    assert first.node("api").rows_in == 230
    mark = json.loads(marks_file(tmp_path).read_text())["marks"][f"{api.url}/orders"]["since"]
    assert mark == "2026-12-01T12:49:00Z"  # order 229, the latest, in UTC
    api.add([sample_order(n, minutes=10_000 + n) for n in range(230, 245)])
    second = run_spec(spec())
    assert second.node("api").rows_in == 15
    assert warehouse_ids(tmp_path) == list(range(245))  # appended, none twice
    third = run_spec(spec())
    assert third.node("api").rows_in == 0 and third.status == "COMPLETE"
    assert warehouse_ids(tmp_path) == list(range(245))


def test_failed_runs_leave_the_checkpoint_and_the_next_run_refetches(
    tmp_path: Path, api: SampleApi
) -> None:
    spec = lambda: expand(tmp_path, api_endpoints=f"{api.url}/orders")  # noqa: E731
    run_spec(spec())
    before = marks_file(tmp_path).read_bytes()
    api.add([sample_order(n, minutes=10_000 + n) for n in range(230, 240)])
    # 1. the API is down: reading fails, nothing is published
    api.down = True
    with pytest.raises(RunFailed) as failed:
        run_spec(spec())
    assert "503" in failed.value.summary.error
    assert marks_file(tmp_path).read_bytes() == before
    # 2. the pages are read (marks reported) but the run's checks fail: still unchanged
    api.down = False
    api.add([{"id": f"bad{i}", "modified_at": "2027-06-01T00:00:00Z"} for i in range(40)])
    with pytest.raises(RunFailed, match="error threshold"):
        run_spec(spec())
    assert marks_file(tmp_path).read_bytes() == before
    assert warehouse_ids(tmp_path) == list(range(230))
    # 3. fixed: the next run fetches everything after the old mark again
    with api._lock:
        api.orders = [o for o in api.orders if isinstance(o.get("id"), int)]
    again = run_spec(spec())
    assert again.node("api").rows_in == 10
    assert warehouse_ids(tmp_path) == list(range(240))
    assert marks_file(tmp_path).read_bytes() != before


def test_undecodable_records_are_dead_lettered_with_bytes_reason_and_position(
    tmp_path: Path,
) -> None:
    orders: list[Any] = [sample_order(n) for n in range(10)]
    orders[3] = {**orders[3], "amount_cents": "12,50"}
    orders[7] = ["not", "an", "object"]
    with SampleApi(orders=orders) as api:
        summary = run_spec(
            expand(
                tmp_path,
                api_endpoints=f"{api.url}/orders",
                pagination="page",
                page_size=4,
                incremental_field="",
                error_threshold=0.5,
            )
        )
    source = summary.node("api")
    assert (source.rows_in, source.rows_out, source.rows_dead_lettered) == (10, 8, 2)
    assert summary.reconciled
    letters = {d["offset"]: d for d in dead_letters(tmp_path) if d["step"] == "api"}
    # listed oldest first: order 0, the list (undated, listed at order 0's time), orders 1-9
    amount, listed = letters[5], letters[2]
    assert amount["errorMessage"] == "amount_cents: '12,50' is not int64"
    assert amount["source"] == f"{api.url}/orders" and amount["rule"] == "decode"
    assert json.loads(amount["payloadString"]) == orders[3]
    assert base64.b64decode(amount["payloadBytes"]).decode() == amount["payloadString"]
    attrs = {a["key"]: a["value"] for a in amount["attributes"]}
    assert attrs["http.index"] == "0" and "page=2" in attrs["http.page"]
    assert listed["errorMessage"] == "a record must be a JSON object, not list"
    assert json.loads(listed["payloadString"]) == ["not", "an", "object"]
    attrs = {a["key"]: a["value"] for a in listed["attributes"]}
    assert attrs["http.index"] == "1" and "page=1" in attrs["http.page"]


def test_polling_retries_429_within_the_rate_limit_with_a_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"tok-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("ORDERS_TOKEN", canary)
    with SampleApi(
        count=120, rate_429=0.15, retry_after=0.01, validate_token=lambda t: t == canary
    ) as api:
        caplog.set_level(logging.DEBUG)
        summary = run_spec(
            expand(
                tmp_path,
                api_endpoints=f"{api.url}/orders",
                pagination="page",
                page_size=10,
                rate_limit=8,
                api_token="env:ORDERS_TOKEN",
            )
        )
        assert summary.node("api").rows_out == 120
        assert summary.node("api").stats["retries"] >= 1
        assert api.outcomes["429"] >= 1
        sent = api.per_second()
        assert sum(sent.values()) == summary.node("api").stats["requests"] >= 13
        assert max(sent.values()) <= 8  # the job's rate limit holds, retries included
        assert len(sent) >= 2
        monkeypatch.setenv("ORDERS_TOKEN", "revoked")  # the API now refuses the credential
        with pytest.raises(RunFailed) as failed:
            run_spec(expand(tmp_path / "b", api_endpoints=f"{api.url}/orders"))
    assert "401" in failed.value.summary.error or "Authentication" in failed.value.summary.error
    everything = caplog.text + json.dumps(failed.value.summary.to_dict(), default=str)
    everything += "".join(
        p.read_text() for p in tmp_path.rglob("*") if p.suffix in (".jsonl", ".json")
    )
    assert canary not in everything


# --------------------------------------------------------------------------- webhook


def test_webhook_signatures_and_replays() -> None:
    secret = b"s3cret"
    body = b'{"id": 1}'
    headers = signed_headers(secret, body, delivery_id="d1", timestamp=1_000)
    assert verify(secret, body, headers) == ("d1", 1_000)
    with pytest.raises(Rejected) as wrong:
        verify(b"other", body, headers)
    assert wrong.value.status == 401
    with pytest.raises(Rejected):
        verify(secret, body + b" ", headers)  # the body changed
    with pytest.raises(Rejected):
        verify(secret, body, {**headers, "X-Timestamp": "1001"})  # the timestamp is signed
    now = [1_000.0]
    guard = ReplayGuard(window=60, clock=lambda: now[0])
    guard.reserve("d1", 1_000)
    with pytest.raises(Rejected, match="replay"):
        guard.reserve("d1", 1_000)
    with pytest.raises(Rejected, match="window"):
        guard.reserve("d2", 900)
    guard.release("d1")  # not stored: the sender's retry is accepted
    guard.reserve("d1", 1_000)
    now[0] = 1_200.0  # two windows later the id is forgotten (its timestamp cannot pass)
    guard.reserve("d3", 1_200)
    assert len(guard) == 1


def test_body_only_signatures_need_a_delivery_id() -> None:
    github = Scheme(False, "X-Hub-Signature-256", id_header="X-GitHub-Delivery")
    body = b'{"action": "opened"}'
    headers = signed_headers(b"k", body, delivery_id="g-1", scheme=github)
    assert set(headers) == {"X-Hub-Signature-256", "X-GitHub-Delivery"}
    assert verify(b"k", body, headers, github) == ("g-1", None)
    with pytest.raises(Rejected) as wrong:
        verify(b"other", body, headers, github)
    assert wrong.value.status == 401
    with pytest.raises(Rejected) as anonymous:
        verify(b"k", body, {"X-Hub-Signature-256": headers["X-Hub-Signature-256"]}, github)
    assert anonymous.value.status == 400
    guard = ReplayGuard(window=60)
    guard.reserve("g-1", None)
    with pytest.raises(Rejected, match="replay"):
        guard.reserve("g-1", None)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/" + (parts[3] if len(parts) > 3 else ""), body, headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_webhook_to_kafka_to_pipeline(
    tmp_path: Path, kafka_broker: Any, topic: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"hmac-canary-{uuid.uuid4().hex}".encode()
    servers, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    appender = KafkaAppender(servers, name)
    good = json.dumps(sample_order(7)).encode()
    with WebhookIngest(appender, Secret(canary), path="/hooks/orders", max_body=4096) as hook:
        assert hook.url.startswith("http://127.0.0.1:")
        signed = signed_headers(canary, good, delivery_id="evt-1")
        assert post(hook.url, good, signed) == 202
        assert post(hook.url, good, signed) == 409  # the same delivery again
        forged = json.dumps(sample_order(8)).encode()
        bad = signed_headers(b"guessed", forged, delivery_id="evt-2")
        assert post(hook.url, forged, bad) == 401
        stale = signed_headers(
            canary, forged, delivery_id="evt-3", timestamp=int(time.time()) - 3600
        )
        assert post(hook.url, forged, stale) == 409
        assert post(hook.url, forged, {}) == 401
        assert post(hook.url, b"x" * 5000, signed) == 413
        chunked = http.client.HTTPConnection("127.0.0.1", int(hook.url.split(":")[2].split("/")[0]))
        chunked.request("POST", "/hooks/orders", iter([good]), signed, encode_chunked=True)
        assert chunked.getresponse().status == 411  # the exact bytes must be known to verify
        chunked.close()
    appender.close()
    records = fixtures.consume_all(servers, name)
    assert [r.value for r in records] == [good]
    assert records[0].key == b"evt-1" and records[0].headers["webhook.id"] == b"evt-1"
    summary = run_spec(
        expand(
            tmp_path,
            integration_patterns="webhook",
            kafka_bootstrap=servers,
            ingest_topic=name,
        )
    )
    assert summary.node("ingest").rows_in == 1
    assert summary.reconciled
    assert warehouse_ids(tmp_path) == [7]
    row = pq.read_table(tmp_path / "warehouse").to_pylist()[0]
    assert row["amount"] == sample_order(7)["amount_cents"] / 100
    assert row["modified_at"].isoformat() == "2026-12-01T09:07:00+00:00"
    outputs = caplog.text + "".join(
        p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()
    )
    assert canary.decode() not in outputs
    assert all(canary not in (r.value or b"") for r in records)


# --------------------------------------------------------------------------- streaming


def test_sse_parsing() -> None:
    lines = [b": comment\n", b"id: 4\n", b'data: {"a":\n', b"data: 1}\n", b"\n", b"data: x\n"]
    found = list(sse_events(iter(lines)))
    assert [(e.id, e.data) for e in found] == [("4", b'{"a":\n1}')]  # a cut event is dropped


@pytest.mark.parametrize("fmt", ["sse", "jsonl"])
def test_event_stream_relayed_to_kafka_and_read_by_the_pipeline(
    tmp_path: Path, kafka_broker: Any, topic: Any, fmt: str
) -> None:
    servers, name = kafka_broker.bootstrap_servers, topic(partitions=2)
    appender = KafkaAppender(servers, name)
    with SampleApi(count=25) as api:
        appended = relay(
            f"{api.url}/orders/events?format={fmt}", appender, fmt=fmt, reconnect=False
        )
    appender.close()
    assert appended == 25
    summary = run_spec(
        expand(
            tmp_path,
            integration_patterns="streaming",
            kafka_bootstrap=servers,
            ingest_topic=name,
        )
    )
    assert summary.node("ingest").rows_in == 25 and summary.reconciled
    assert warehouse_ids(tmp_path) == list(range(25))


# --------------------------------------------------------------------------- template


def test_parameter_values_are_served_or_refused_with_the_supported_list(tmp_path: Path) -> None:
    from pipelines.loading import SpecError

    with pytest.raises((SpecError, ValueError), match="polling"):
        resolve_parameters(TEMPLATE.parameters, {"integration_patterns": "graphql"})
    with pytest.raises((SpecError, ValueError), match="normalize"):
        resolve_parameters(TEMPLATE.parameters, {"data_transformations": "dedupe"})
    with pytest.raises(ValueError, match="enrich_url"):
        expand(tmp_path, data_transformations="enrich")
    spec = expand(
        tmp_path,
        integration_patterns="polling,webhook,streaming",
        data_transformations="normalize,validate,enrich",
        enrich_url="http://127.0.0.1:1/customers/{customer_id}",
        output_destinations="warehouse,topic,alerts",
    )
    assert [s.type for s in spec.sources] == ["http", "kafka"]
    assert [s.name for s in spec.steps] == ["ingest_fields", "normalize", "validate", "enrich"]
    assert spec.steps[1].inputs == ["api", "ingest_fields"]
    assert [s.type for s in spec.sinks] == ["file", "kafka", "report"]


def test_ingest_webhook_command(kafka_broker: Any, topic: Any) -> None:
    """``beamwright ingest webhook`` as users start it: a secret reference, loopback, Ctrl-C."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    servers, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    canary = f"cli-canary-{uuid.uuid4().hex}"
    command = [sys.executable, "-m", "pipelines.cli", "-v", "ingest", "webhook"]
    command += ["--topic", name, "--secret", "env:HOOK_SECRET", "--port", str(port)]
    command += ["--bootstrap-servers", servers]
    process = subprocess.Popen(
        command,
        env={**os.environ, "HOOK_SECRET": canary},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(f"webhook ingest on http://127.0.0.1:{port}")
        body = b'{"id": 11}'
        url = f"http://127.0.0.1:{port}/"
        assert post(url, body, signed_headers(canary.encode(), body, delivery_id="x")) == 202
        assert post(url, body, signed_headers(canary.encode(), body, delivery_id="x")) == 409
        assert post(url, body, signed_headers(b"wrong", body, delivery_id="y")) == 401
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0
    assert "'202': 1" in output and "'409': 1" in output and "'401': 1" in output
    assert canary not in output
    assert [r.value for r in fixtures.consume_all(servers, name)] == [b'{"id": 11}']


def test_polled_records_enriched_from_postgres(
    tmp_path: Path,
    api: SampleApi,
    postgres_server: Any,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = postgres_server
    server.execute("DROP SCHEMA IF EXISTS crm CASCADE")
    server.execute("CREATE SCHEMA crm")
    server.execute("CREATE TABLE crm.customers (customer_id int8 PRIMARY KEY, segment text)")
    server.execute(
        "INSERT INTO crm.customers SELECT i, CASE WHEN i % 2 = 0 THEN 'retail' ELSE 'b2b' END "
        "FROM generate_series(0, 38) AS i"  # customer 39 is unknown: nulls (on_missing keep)
    )
    monkeypatch.setenv("CRM_PASSWORD", server.password)
    summary = run_spec(
        expand(
            tmp_path,
            api_endpoints=f"{api.url}/orders",
            data_transformations="normalize,validate,enrich",
            enrich_postgres=f"{server.user}@{server.host}:{server.port}/{server.dbname}",
            enrich_table="crm.customers",
            postgres_password="env:CRM_PASSWORD",
        )
    )
    assert summary.node("enrich_db").rows_in == summary.node("enrich_db").rows_out == 230
    assert summary.reconciled
    rows = pq.read_table(tmp_path / "warehouse").to_pylist()
    assert {r["customer_id"]: r["segment"] for r in rows} == {
        c: (None if c == 39 else "retail" if c % 2 == 0 else "b2b") for c in range(40)
    }
    complete = [e for e in events(tmp_path) if e["eventType"] == "COMPLETE"]
    names = {(d["namespace"], d["name"]) for e in complete for d in e["inputs"]}
    assert (f"postgres://{server.host}:{server.port}", f"{server.dbname}.crm.customers") in names


def test_extract_types_nested_fields_and_dead_letters_bad_values() -> None:
    import pyarrow as pa

    from connectors.records import with_positions
    from transforms.extract import Extractor
    from transforms.json_records import SourceField

    table = with_positions(
        pa.Table.from_pylist(
            [
                {"id": "1", "customer": {"id": 5}, "at": "2026-12-01T10:00:00+01:00"},
                {"id": "x", "customer": {"id": 6}, "at": None},
                {"id": "3", "customer": None, "at": "2026-12-01T09:00:00Z"},
            ]
        ),
        "topic/0",
        [10, 11, 12],
    )
    fields = [
        SourceField("order_id", "id", "int64"),
        SourceField("customer_id", "customer.id", "int64"),
        SourceField("at", "at", "timestamp"),
    ]
    result = Extractor(step_name="x", fields=fields).process(table)
    assert result.rows.select(["order_id", "customer_id"]).to_pylist() == [
        {"order_id": 1, "customer_id": 5},
        {"order_id": 3, "customer_id": None},
    ]
    assert [t.isoformat() for t in result.rows.column("at").to_pylist()] == [
        "2026-12-01T09:00:00+00:00",
        "2026-12-01T09:00:00+00:00",
    ]
    assert result.rows.column("_bw_offset").to_pylist() == [10, 12]
    dead = result.dead_letters.to_pylist()
    assert [(d["offset"], d["rule"], d["errorMessage"]) for d in dead] == [
        (11, "extract", "order_id: 'x' is not int64")
    ]


def test_validate_runs_a_great_expectations_suite(tmp_path: Path, api: SampleApi) -> None:
    suite = tmp_path / "orders_suite.json"
    suite.write_text(
        json.dumps(
            {
                "name": "api_orders",
                "expectations": [
                    {
                        "type": "expect_column_values_to_be_between",
                        "kwargs": {"column": "amount", "min_value": 0, "max_value": 50},
                    }
                ],
            }
        )
    )
    summary = run_spec(
        expand(
            tmp_path / "out",
            api_endpoints=f"{api.url}/orders",
            expectations_suite=str(suite),
            error_threshold=0.9,
        )
    )
    expected = sum(1 for n in range(230) if sample_order(n)["amount_cents"] > 5000)
    assert summary.node("validate").rows_dead_lettered == expected > 0
    assert summary.reconciled
    assert all(r["amount"] <= 50 for r in pq.read_table(tmp_path / "out" / "warehouse").to_pylist())


def test_stream_relay_reconnects_from_the_last_event_id(kafka_broker: Any, topic: Any) -> None:
    import threading

    servers, name = kafka_broker.bootstrap_servers, topic(partitions=1)
    appender = KafkaAppender(servers, name)
    with SampleApi(count=10) as api:
        done: list[int] = []
        relaying = threading.Thread(
            target=lambda: done.append(
                relay(f"{api.url}/orders/events", appender, max_events=14, retry_s=0.05)
            )
        )
        relaying.start()
        deadline = time.monotonic() + 10
        while api.total_requests() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first stream ended and the relay came back
        api.add([sample_order(n, minutes=1_000 + n) for n in range(10, 14)])
        relaying.join(20)
    appender.close()
    assert done == [14]
    records = fixtures.consume_all(servers, name)
    assert [json.loads(r.value)["id"] for r in records] == list(range(14))  # none twice
    assert [r.key for r in records][-1] == b"14"


def test_an_unreadable_checkpoint_stops_the_run_before_it_starts(
    tmp_path: Path, api: SampleApi
) -> None:
    from pipelines.loading import SpecError

    marks_file(tmp_path).parent.mkdir(parents=True)
    marks_file(tmp_path).write_text("{not json")
    with pytest.raises(SpecError, match=r"incremental\.checkpoint.*delete it"):
        run_spec(expand(tmp_path, api_endpoints=f"{api.url}/orders"))
    assert api.total_requests() == 0
    assert marks_file(tmp_path).read_text() == "{not json"


def test_a_password_in_the_postgres_address_is_refused_not_written_into_the_spec():
    from pipelines.cli import load_target
    from pipelines.loading import SpecError

    with pytest.raises(SpecError) as refused:
        load_target(
            "api_integration",
            {"data_transformations": "enrich", "enrich_postgres": "reader:s3cr3t@db/shop"},
        )
    assert "parameters.enrich_postgres" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
