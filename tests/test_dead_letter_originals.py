"""Dead letters keep the record as it was read, whatever step rejected it (issue 8, item 10).

Each format runs a real spec through ``run_spec`` where the validate step rejects rows, and the
dead letters' ``payloadBytes`` must be byte-identical to the record in the file or topic:
the JSONL line (``{}`` and ``1e400`` included), the whole CSV record (quoted line breaks,
CRLF), the Avro datum, the Kafka value with its key and headers. Redaction must leave a canary
PII value nowhere in the dead-letter files, in every format.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from fastavro.schema import fingerprint, to_parsing_canonical_form

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors import records
from connectors.originals import Origins, RecoverOriginals, file_origins, recover_originals
from pipelines.loading import spec_from_data
from pipelines.run import run_spec
from tests import kafka_broker as fixtures
from transforms.redact import redact_table

CANARY = "canary.pii.7f3a@example.org"
CHECKS = {
    "fields": {
        "id": {"type": "int64", "required": True},
        "amount": {"type": "float64"},
        "email": {"type": "string", "classification": "PII"},
    },
    "rules": [
        {"rule": "between", "field": "amount", "min": 0, "max": 100},
        {"rule": "regex", "field": "email", "regex": "^[a-z]+@[a-z]+\\.io$"},
    ],
}


def _no_constants(token: str) -> Any:
    raise AssertionError(f"not strict JSON: bare {token} token")


def run(tmp_path: Path, source: dict, *, steps: list | None = None, redact: bool = False) -> list:
    """Run ``source`` -> ``steps`` (default: validate with CHECKS); the dead letters, with
    ``payloadBytes`` decoded and ``attributes`` as a dict."""
    spec = spec_from_data(
        {
            "name": "originals",
            "sources": [{"name": "src", **source}],
            "steps": steps or [{"name": "check", "type": "validate", **CHECKS}],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl", "redact": redact},
            "run": {"error_threshold": 1.0, "batch_size": 3},
            "lineage": {"enabled": False},
        }
    )
    run_spec(spec)
    return dead_letters(tmp_path / "dead")


def dead_letters(folder: Path) -> list[dict]:
    letters = []
    for part in sorted(folder.rglob("*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            letter = json.loads(line, parse_constant=_no_constants)
            raw = letter["payloadBytes"]
            letter["payloadBytes"] = None if raw is None else base64.b64decode(raw)
            letter["attributes"] = {a["key"]: a["value"] for a in letter["attributes"] or ()}
            letters.append(letter)
    return sorted(letters, key=lambda d: (d["step"], d["offset"]))


def from_step(letters: list[dict], step: str = "check") -> dict[int, dict]:
    return {d["offset"]: d for d in letters if d["step"] == step}


def strict(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


# --------------------------------------------------------------------------- JSONL

JSONL_LINES = [
    b'\xef\xbb\xbf{"id": 9, "amount": -9, "email": "bom@first.io"}',  # line 1, BOM removed
    b"{}",  # no id: was written as all-null fields
    b'{"id": 3, "amount": 1e400, "email": "big@number.io"}',  # was written as Infinity
    b"",  # blank: skipped
    b'{"id":4,  "amount": "abc" , "email": "caf\xc3\xa9@x.io"}',  # odd spacing, UTF-8
    b'{"id": 5, "amount": 1',  # not JSON: the source's own reject
    b'{"id": 6, "amount": 7, "email": "ok@fine.io"}',
]


def test_jsonl_dead_letters_hold_the_line_exactly_as_read(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"\n".join(JSONL_LINES[:4]) + b"\r\n" + b"\n".join(JSONL_LINES[4:]) + b"\n")
    letters = run(tmp_path, {"type": "file", "path": str(data)})
    rejected = from_step(letters)
    assert sorted(rejected) == [1, 2, 3, 5]
    for line, letter in rejected.items():
        expected = JSONL_LINES[line - 1].removeprefix(b"\xef\xbb\xbf")
        assert letter["payloadBytes"] == expected
        assert letter["payloadString"] == expected.decode("utf-8")
        assert "original" not in letter["attributes"]  # only set when unavailable
    assert rejected[2]["payloadString"] == "{}"
    assert rejected[3]["payloadString"] == '{"id": 3, "amount": 1e400, "email": "big@number.io"}'
    [parse] = [d for d in letters if d["step"] == "src"]  # sources keep raw bytes already
    assert parse["payloadBytes"] == JSONL_LINES[5] and parse["attributes"] == {}


def test_step_payloads_without_an_original_are_strict_json():
    table = pa.table(
        {"x": [float("inf"), float("-inf"), float("nan")], "n": [{"y": 1e308 * 10}] * 3}
    )
    dead = records.dead_letters_for_rows(
        table, errors=["e"] * 3, rules=["r"] * 3, step="s", run_id="run"
    )
    values = [strict(text) for text in dead.column("payloadString").to_pylist()]
    assert [v["x"] for v in values] == ["Infinity", "-Infinity", "NaN"]
    assert values[0]["n"] == {"y": "Infinity"}
    untouched, recovered, unavailable = recover_originals(dead, Origins())
    assert (recovered, unavailable) == (0, 0) and untouched.equals(dead)  # no position


def test_recovering_20000_of_a_million_jsonl_lines_is_quick(tmp_path):
    data = tmp_path / "big.jsonl"
    lines = [
        b'{"id": %d, "amount": %d.5, "email": "u%d@x.io"}' % (i, i, i) for i in range(1_000_000)
    ]
    data.write_bytes(b"\n".join(lines) + b"\n")
    wanted = np.sort(np.random.default_rng(1).choice(1_000_000, 20_000, replace=False)) + 1
    rows = records.with_positions(pa.table({"id": pa.array(wanted - 1)}), str(data), wanted)
    dead = records.dead_letters_for_rows(
        rows, errors=["e"] * len(wanted), rules=["r"] * len(wanted), step="check", run_id="r"
    )
    origins = Origins(files=file_origins([str(data)], None, {}))
    started = time.perf_counter()
    out, recovered, unavailable = recover_originals(dead, origins)
    elapsed = time.perf_counter() - started
    assert (recovered, unavailable) == (20_000, 0)
    payloads = out.column("payloadBytes").to_pylist()
    assert payloads == [lines[i - 1] for i in wanted.tolist()]
    assert elapsed < 2.0, f"{elapsed:.2f} s"


# --------------------------------------------------------------------------- CSV

CSV_RECORDS = [
    b"id,amount,email",  # line 1
    b"1,5,ok@fine.io",  # line 2
    b'2,-1,"multi\r\nline ""quoted"", email"',  # lines 3-4: one record
    b"3,abc,x@y.io",  # line 5
    b"4,7,caf\xe9@latin.io",  # line 6: not UTF-8, the source's own reject
    b"5,1e400,big@number.io",  # line 7, no final line break
]


def test_csv_dead_letters_hold_the_whole_record_and_its_header(tmp_path):
    data = tmp_path / "in.csv"
    data.write_bytes(b"\r\n".join(CSV_RECORDS))
    letters = run(tmp_path, {"type": "file", "path": str(data)})
    rejected = from_step(letters)
    assert sorted(rejected) == [3, 5, 7]
    assert rejected[3]["payloadBytes"] == CSV_RECORDS[2]
    assert rejected[5]["payloadBytes"] == CSV_RECORDS[3]
    assert rejected[7]["payloadBytes"] == CSV_RECORDS[5]
    for letter in rejected.values():
        assert letter["payloadString"] == letter["payloadBytes"].decode("utf-8")
        assert letter["attributes"]["csv.header"] == "id,amount,email"
        assert json.loads(letter["attributes"]["csv.dialect"]) == {
            "delimiter": ",",
            "quote_char": '"',
        }
    [encoding] = [d for d in letters if d["step"] == "src"]
    assert encoding["payloadBytes"] == CSV_RECORDS[4] and encoding["offset"] == 6


# --------------------------------------------------------------------------- Parquet

PARQUET_ROWS = {
    "id": [1, 2, 3, None, 5],
    "amount": [5.0, float("inf"), -1.0, float("nan"), 7.0],
    "email": ["a@b.io", "b@c.io", "c@d.io", "d@e.io", "e@f.io"],
}


def _stored_json(index: int) -> dict:
    value = PARQUET_ROWS["amount"][index]
    amount = value if np.isfinite(value) else ("NaN" if np.isnan(value) else "Infinity")
    return {
        "id": PARQUET_ROWS["id"][index],
        "amount": amount,
        "email": PARQUET_ROWS["email"][index],
    }


@pytest.mark.parametrize("renamed_first", [False, True], ids=["as-read", "after-a-map-step"])
def test_parquet_dead_letters_hold_the_row_as_stored(tmp_path, renamed_first):
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table(PARQUET_ROWS), data, row_group_size=2)
    steps = None
    if renamed_first:  # the validate step then sees other names: only a re-read gives the row
        checks = json.loads(json.dumps(CHECKS).replace('"amount"', '"amt"'))
        steps = [
            {"name": "rename", "type": "map", "rename": {"amount": "amt"}},
            {"name": "check", "type": "validate", **checks},
        ]
    letters = run(tmp_path, {"type": "file", "path": str(data)}, steps=steps)
    rejected = from_step(letters)
    assert {2, 3, 4} <= set(rejected)
    for offset, letter in rejected.items():
        assert letter["payloadBytes"] is None  # Parquet has no per-record bytes
        assert strict(letter["payloadString"]) == _stored_json(offset - 1)
        assert "original" not in letter["attributes"]  # only set when unavailable


# --------------------------------------------------------------------------- Avro

AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "email", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
AVRO_RECORDS = [
    {"id": i, "amount": amount, "email": "user@avro.io", "tags": ["t"] * (i % 3)}
    for i, amount in enumerate([5.0, float("inf"), -1.0, 7.0, 250.0, 1.0, float("-inf")], 1)
]


def _avro_datum(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), record)
    return out.getvalue()


def test_avro_dead_letters_hold_the_datum_as_stored(tmp_path):
    data = tmp_path / "in.avro"
    with data.open("wb") as out:
        schema = fastavro.parse_schema(AVRO_SCHEMA)
        fastavro.writer(out, schema, AVRO_RECORDS, codec="deflate", sync_interval=64)
    letters = run(tmp_path, {"type": "file", "path": str(data)})
    rejected = from_step(letters)
    assert sorted(rejected) == [2, 3, 5, 7]
    expected_fingerprint = fingerprint(to_parsing_canonical_form(AVRO_SCHEMA), "CRC-64-AVRO")
    for offset, letter in rejected.items():
        record = AVRO_RECORDS[offset - 1]
        assert letter["payloadBytes"] == _avro_datum(record)
        amount = record["amount"]
        shown = amount if np.isfinite(amount) else ("Infinity" if amount > 0 else "-Infinity")
        assert strict(letter["payloadString"]) == {**record, "amount": shown}
        assert letter["attributes"]["avro.schema_fingerprint"] == expected_fingerprint


# --------------------------------------------------------------------------- Kafka

KAFKA_VALUES = [
    b'{"id": 0, "amount": 5, "email": "ok@fine.io"}',
    b"{}",
    b'{"id": 2, "amount": 1e400, "email": "big@number.io"}',
    b'{"id":3,"amount":-1,"email":"neg@x.io"}',
]
KAFKA_KEYS = [b"k0", b"k1", b"\xff\xfe", None]
KAFKA_HEADERS = [None, [("trace", b"t-1")], [("bin", b"\xff\x00"), ("n", b"v")], None]


def kafka_source(servers: str, name: str) -> dict:
    return {
        "type": "kafka",
        "bootstrap_servers": servers,
        "topics": name,
        "group_id": fixtures.unique_group(),
        "start": "earliest",
    }


def test_kafka_dead_letters_hold_the_value_key_and_headers(tmp_path, kafka_broker, topic):
    name = topic(partitions=1)
    servers = kafka_broker.bootstrap_servers
    fixtures.produce(
        servers, name, KAFKA_VALUES, partitions=1, keys=KAFKA_KEYS, headers=KAFKA_HEADERS
    )
    letters = run(tmp_path, kafka_source(servers, name))
    rejected = from_step(letters)
    assert sorted(rejected) == [1, 2, 3]
    for offset, letter in rejected.items():
        attributes = letter["attributes"]
        assert letter["payloadBytes"] == KAFKA_VALUES[offset]
        assert letter["payloadString"] == KAFKA_VALUES[offset].decode()
        assert attributes["topic"] == name and attributes["partition"] == "0"
        assert attributes["offset"] == str(offset) and int(attributes["timestamp"]) > 0
        assert "original" not in attributes
    assert rejected[1]["attributes"]["key"] == "k1"
    assert rejected[1]["attributes"]["header.trace"] == "t-1"
    assert rejected[2]["attributes"]["key"] == base64.b64encode(b"\xff\xfe").decode()
    assert rejected[2]["attributes"]["key_encoding"] == "base64"
    assert rejected[2]["attributes"]["header.bin"] == "/wA="
    assert rejected[2]["attributes"]["header.n"] == "v"
    assert "key" not in rejected[3]["attributes"]  # the record had no key


# --------------------------------------------------------------------------- redaction


def _canary_inputs(tmp_path: Path, fmt: str) -> dict:
    """A source whose rejected rows hold CANARY in the classified ``email`` field."""
    bad = {"id": 7, "amount": -3.0, "email": CANARY}
    if fmt == "jsonl":
        path = tmp_path / "in.jsonl"
        path.write_text(json.dumps(bad) + '\n{"id": 8, "amount": 1.0, "email": "ok@fine.io"}\n')
    elif fmt == "csv":
        path = tmp_path / "in.csv"
        path.write_text(f'id,amount,email\r\n7,-3,"{CANARY}"\r\n8,1,"multi\nline@x.io"\r\n')
    elif fmt == "parquet":
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist([bad, {**bad, "amount": 1.0}]), path)
    else:
        path = tmp_path / "in.avro"
        with path.open("wb") as out:
            fastavro.writer(out, fastavro.parse_schema(AVRO_SCHEMA), [{**bad, "tags": ["t"]}])
    return {"type": "file", "path": str(path)}


def _assert_no_canary(folder: Path, letters: list[dict]) -> None:
    assert letters
    for part in folder.rglob("*"):
        if part.is_file():
            assert CANARY.encode() not in part.read_bytes(), part
    assert all(d["payloadBytes"] is None for d in letters)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "avro"])
def test_redaction_leaves_no_pii_in_any_format(tmp_path, fmt):
    letters = run(tmp_path, _canary_inputs(tmp_path, fmt), redact=True)
    _assert_no_canary(tmp_path / "dead", letters)
    [letter] = [d for d in letters if d["offset"] in (1, 2) and d["step"] == "check"][:1]
    assert "[REDACTED]" in letter["payloadString"]
    assert letter["errorMessage"].startswith("amount: -3")  # reasons about other fields stay


def test_redaction_leaves_no_pii_from_kafka_keys_or_headers(tmp_path, kafka_broker, topic):
    name = topic(partitions=1)
    servers = kafka_broker.bootstrap_servers
    value = json.dumps({"id": 1, "amount": 500, "email": CANARY}).encode()
    fixtures.produce(
        servers,
        name,
        [value],
        partitions=1,
        keys=[CANARY.encode()],
        headers=[[("user", CANARY.encode())]],
    )
    letters = run(tmp_path, kafka_source(servers, name), redact=True)
    _assert_no_canary(tmp_path / "dead", letters)
    [letter] = letters
    assert letter["attributes"]["key"] == letter["attributes"]["header.user"] == "[REDACTED]"
    assert strict(letter["payloadString"])["email"] == "[REDACTED]"


# --------------------------------------------------------------------------- unavailable


def _letters_for(path: Path, offsets: list[int]) -> pa.Table:
    rows = records.with_positions(pa.table({"id": offsets}), str(path), offsets)
    n = len(offsets)
    return records.dead_letters_for_rows(
        rows, errors=["e"] * n, rules=["r"] * n, step="s", run_id="r"
    )


def test_a_changed_or_deleted_file_keeps_the_json_payload_and_says_why(tmp_path):
    changed, deleted = tmp_path / "changed.jsonl", tmp_path / "deleted.jsonl"
    for path in (changed, deleted):
        path.write_text('{"id": 1}\n{"id": 2}\n')
    origins = Origins(files=file_origins([str(changed), str(deleted)], None, {}))
    changed.write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    deleted.unlink()
    tables = [_letters_for(changed, [2]), _letters_for(deleted, [1]), _letters_for(changed, [1])]

    def check(outputs: list[pa.Table]) -> None:
        letters = [row for table in outputs for row in table.to_pylist()]
        assert len(letters) == 3
        for letter in letters:
            [(key, why)] = [(a["key"], a["value"]) for a in letter["attributes"]]
            assert key == "original" and why.startswith("unavailable (file ")
            assert letter["payloadBytes"] is None and strict(letter["payloadString"])["id"]

    pipeline = TestPipeline(runner="FnApiRunner")
    recovered = pipeline | beam.Create(tables) | RecoverOriginals(origins)
    assert_that(recovered, check)
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(
        MetricsFilter().with_name("dead_letters/originals_unavailable")
    )
    assert sum(c.committed for c in counters["counters"]) == 3


def test_an_offset_past_the_end_is_unavailable_and_other_letters_are_untouched(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text('{"id": 1}\n')
    origins = Origins(files=file_origins([str(path)], None, {}))
    reject = records.Reject(str(path), 9, b"raw", "bad", "parse")
    source_letter = records.dead_letters_for_rejects([reject], step="src", run_id="r")
    mixed = pa.concat_tables([_letters_for(path, [1]), source_letter, _letters_for(path, [5])])
    out, recovered, unavailable = recover_originals(mixed, origins)
    assert (recovered, unavailable) == (1, 1)
    assert out.column("payloadBytes").to_pylist() == [b'{"id": 1}', b"raw", None]
    assert out.slice(1, 1).equals(source_letter)  # a source's own reject is left alone
    why = [a["value"] for a in out.column("attributes")[2].as_py()]
    assert why == ["unavailable (offset 5 is past the end of the file (1))"]
    assert out.column("attributes")[0].as_py() is None  # recovered: no marker


def test_csv_without_header_in_another_dialect_is_recovered_and_redacted(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(b"1\tok@fine.io\n2\t'" + CANARY.encode() + b"\r'\n3\tx@y.io\n")
    options = {"delimiter": "\t", "quote_char": "'", "header": False}
    origins = Origins(files=file_origins([str(path)], "csv", options))
    letters, recovered, _ = recover_originals(_letters_for(path, [2]), origins)
    assert recovered == 1
    [letter] = letters.to_pylist()
    assert letter["payloadBytes"] == b"2\t'" + CANARY.encode() + b"\r'"  # quoted bare \r kept
    attributes = {a["key"]: a["value"] for a in letter["attributes"]}
    assert "csv.header" not in attributes
    assert json.loads(attributes["csv.dialect"]) == {"delimiter": "\t", "quote_char": "'"}
    [redacted] = redact_table(letters, {"f1"}).to_pylist()
    assert redacted["payloadString"] == "2\t[REDACTED]" and redacted["payloadBytes"] is None


def test_an_unreachable_broker_makes_originals_unavailable_once_per_minute():
    from connectors.originals import KafkaOrigin
    from pipelines.dev.kafka_broker import free_port

    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    origins = Origins(topics={"orders": KafkaOrigin(servers, {})})
    rows = records.with_positions(pa.table({"id": [1, 2]}), "orders/0", [5, 6])
    letters = records.dead_letters_for_rows(
        rows, errors=["e", "e"], rules=["r", "r"], step="check", run_id="r"
    )
    started = time.perf_counter()
    out, recovered, unavailable = recover_originals(letters, origins)
    first = time.perf_counter() - started
    assert (recovered, unavailable) == (0, 2) and first < 30
    [why] = {a["value"] for row in out.column("attributes").to_pylist() for a in row}
    assert why.startswith("unavailable (") and out.column("payloadString").equals(
        letters.column("payloadString")
    )
    started = time.perf_counter()
    _, _, again = recover_originals(letters, origins)  # the next batch does not wait again
    assert again == 2 and time.perf_counter() - started < 1
