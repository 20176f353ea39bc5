"""The file formats: round trips, positions, and every hostile input a source can meet."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import pickle
import subprocess
import sys
import types

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import records
from connectors.files import (
    FORMATS,
    AvroFormat,
    CorruptFileError,
    CsvFormat,
    JsonlFormat,
    ParquetFormat,
    arrow_schema_to_avro,
    avro_schema_to_arrow,
    csvread,
    infer_format,
    load_avsc,
    make_format,
    open_input,
    open_output,
)
from connectors.files.jsondecode import MAX_DEPTH

OFFSET = records.OFFSET_COLUMN


# --- helpers ------------------------------------------------------------------------------------


def write_bytes(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def read(fmt, path: str, batch_size: int = 1000, **kwargs):
    """All chunks of ``path``: (rows without the source column, rejects, chunks)."""
    chunks = list(fmt.read(path, batch_size, **kwargs))
    rows = [
        {k: v for k, v in row.items() if k != records.SOURCE_COLUMN}
        for chunk in chunks
        for row in chunk.rows.to_pylist()
    ]
    rejects = [reject for chunk in chunks for reject in chunk.rejects]
    return rows, rejects, chunks


def write_table(fmt, path: str, *tables: pa.Table):
    with open(path, "wb") as sink:
        writer = fmt.open_writer(sink)
        for table in tables:
            writer.write(table)
        writer.close()
    return writer


def only(rejects):
    assert len(rejects) == 1, rejects
    return rejects[0]


SIMPLE = pa.table(
    {
        "id": pa.array([1, 2, 3, None], pa.int64()),
        "amount": [12.5, 3.0, None, -0.25],
        "name": ["plain", 'comma, "quoted"', "multi\nline", None],
        "city": ["Zürich", "東京", "", "x"],
        "paid": [True, False, None, True],
    }
)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jsonl", "parquet", "avro"])
def test_round_trip_keeps_rows_and_types(tmp_path, name):
    fmt = make_format(name)
    path = str(tmp_path / f"data{fmt.extensions[0]}")
    with_positions = records.with_positions(SIMPLE, "in.jsonl", [7, 8, 9, 10])
    writer = write_table(fmt, path, with_positions.slice(0, 2), with_positions.slice(2))

    rows, rejects, _ = read(fmt, path)

    assert writer.rows_written == 4
    assert rejects == []
    assert [row.pop(OFFSET) for row in rows] == [1, 2, 3, 4]
    assert rows == SIMPLE.to_pylist()


def test_csv_round_trip_gives_text_and_line_numbers(tmp_path):
    path = str(tmp_path / "data.csv")
    write_table(CsvFormat(), path, records.with_positions(SIMPLE, "in", [1, 2, 3, 4]))

    rows, rejects, _ = read(CsvFormat(), path)

    assert rejects == []
    assert rows == [
        {"id": "1", "amount": "12.5", "name": "plain", "city": "Zürich", "paid": "true", OFFSET: 2},
        {
            "id": "2",
            "amount": "3",
            "name": 'comma, "quoted"',
            "city": "東京",
            "paid": "false",
            OFFSET: 3,
        },
        # the quoted line break makes this record two lines long, so the next starts on 6
        {"id": "3", "amount": None, "name": "multi\nline", "city": None, "paid": None, OFFSET: 4},
        {"id": None, "amount": "-0.25", "name": None, "city": "x", "paid": "true", OFFSET: 6},
    ]


RICH = pa.table(
    {
        "ts": pa.array(
            [dt.datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=dt.timezone.utc), None],
            pa.timestamp("us", "UTC"),
        ),
        "local": pa.array([dt.datetime(2024, 5, 1, 8, 0), None], pa.timestamp("us")),
        "day": pa.array([dt.date(2024, 2, 29), None]),
        "price": pa.array([decimal.Decimal("19.99"), None], pa.decimal128(10, 2)),
        "blob": pa.array([b"\x00\xffraw", None]),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "address": pa.array(
            [{"city": "Bern", "zip": 3000}, None],
            pa.struct([("city", pa.string()), ("zip", pa.int64())]),
        ),
        "small": pa.array([7, None], pa.int32()),
    }
)


@pytest.mark.parametrize("name", ["parquet", "avro"])
def test_typed_formats_round_trip_logical_and_nested_types(tmp_path, name):
    fmt = make_format(name)
    path = str(tmp_path / f"rich{fmt.extensions[0]}")
    write_table(fmt, path, RICH)

    _, _, chunks = read(fmt, path)
    back = chunks[0].rows.drop_columns(list(records.POSITION_COLUMNS))

    assert back.to_pylist() == RICH.to_pylist()
    assert back.schema.field("ts").type == pa.timestamp("us", "UTC")
    assert back.schema.field("local").type == pa.timestamp("us")
    assert back.schema.field("price").type == pa.decimal128(10, 2)


def test_jsonl_writer_writes_json_for_types_json_lacks(tmp_path):
    path = str(tmp_path / "rich.jsonl")
    write_table(JsonlFormat(), path, RICH)

    lines = (tmp_path / "rich.jsonl").read_text("utf-8").splitlines()

    assert json.loads(lines[0]) == {
        "ts": "2024-05-01T12:30:00.123456Z",
        "local": "2024-05-01T08:00:00.000000",
        "day": "2024-02-29",
        "price": "19.99",
        "blob": "AP9yYXc=",
        "tags": ["a", "b"],
        "address": {"city": "Bern", "zip": 3000},
        "small": 7,
    }
    assert json.loads(lines[1])["ts"] is None


def test_jsonl_writer_escapes_strings_and_keeps_floats_floats(tmp_path):
    table = pa.table({'we"ird\nkey': ['a"b\\c\n\t\x01é'], "f": [3.0], "nan": [float("nan")]})
    path = str(tmp_path / "esc.jsonl")
    write_table(JsonlFormat(), path, table)

    text = (tmp_path / "esc.jsonl").read_text("utf-8")

    assert text == '{"we\\"ird\\nkey":"a\\"b\\\\c\\n\\t\\u0001é","f":3.0,"nan":NaN}\n'


def test_csv_writer_writes_nested_values_as_json_text(tmp_path):
    path = str(tmp_path / "nested.csv")
    write_table(CsvFormat(), path, RICH.select(["tags", "address", "blob"]))

    rows, _, _ = read(CsvFormat(), path)

    assert rows[0] == {
        "tags": '["a","b"]',
        "address": '{"city":"Bern","zip":3000}',
        "blob": "AP9yYXc=",
        OFFSET: 2,
    }


def test_csv_writer_only_quotes_with_double_quotes():
    with pytest.raises(ValueError, match="quotes with"):
        CsvFormat(quote_char="'").open_writer(io.BytesIO())


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_writers_leave_the_sink_open(name):
    sink = io.BytesIO()
    writer = make_format(name).open_writer(sink)
    writer.write(SIMPLE)
    writer.close()
    assert not sink.closed and sink.getvalue()


# --- empty files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["csv", "jsonl"])  # 0-byte Parquet/Avro: test_hostile_values
def test_empty_file_reads_as_nothing(tmp_path, name):
    path = write_bytes(tmp_path, "empty" + FORMATS[name].extensions[0], b"")
    assert list(make_format(name).read(path, 10)) == []


@pytest.mark.parametrize("data", [b"a,b,c\n", b"a,b,c", b"a,b,c\r\n\n\n"])
def test_csv_with_only_a_header_reads_as_nothing(tmp_path, data):
    path = write_bytes(tmp_path, "header.csv", data)
    assert list(CsvFormat().read(path, 10)) == []


# --- JSON Lines ---------------------------------------------------------------------------------


def test_jsonl_offsets_are_physical_lines_and_blank_lines_are_skipped(tmp_path):
    data = b'{"a":1}\n\n   \n{"a":2}\r\n\t\n{"a":3}'
    rows, rejects, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))
    assert rejects == []
    assert rows == [{"a": 1, OFFSET: 1}, {"a": 2, OFFSET: 4}, {"a": 3, OFFSET: 6}]


def test_jsonl_invalid_json_is_rejected_with_its_line_and_bytes(tmp_path):
    data = b'{"a":1}\n{"a": tru}\n{"a":3}\n'
    rows, rejects, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))

    reject = only(rejects)
    assert (reject.rule, reject.offset, reject.payload) == ("parse", 2, b'{"a": tru}')
    assert reject.error == "invalid JSON at column 7: Expecting value"
    assert reject.source.endswith("x.jsonl")
    assert [row[OFFSET] for row in rows] == [1, 3]


def test_jsonl_invalid_utf8_is_an_encoding_reject_keeping_the_raw_bytes(tmp_path):
    data = b'{"a":"ok"}\n{"a":"caf\xe9"}\r\n{"a":"fine"}\n'
    rows, rejects, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))

    reject = only(rejects)
    assert (reject.rule, reject.offset, reject.payload) == ("encoding", 2, b'{"a":"caf\xe9"}')
    assert "invalid UTF-8 at byte 10" in reject.error
    assert rows == [{"a": "ok", OFFSET: 1}, {"a": "fine", OFFSET: 3}]


@pytest.mark.parametrize(
    ("line", "kind"),
    [(b"[1,2]", "array"), (b"42", "number"), (b'"x"', "string"), (b"true", "boolean")],
)
def test_jsonl_json_that_is_not_an_object_is_rejected(tmp_path, line, kind):
    path = write_bytes(tmp_path, "x.jsonl", b'{"a":1}\n' + line + b"\n")
    rows, rejects, _ = read(JsonlFormat(), path)
    reject = only(rejects)
    assert (reject.rule, reject.offset, reject.payload) == ("parse", 2, line)
    assert reject.error == f"expected a JSON object, got {kind}"
    assert rows == [{"a": 1, OFFSET: 1}]


def test_jsonl_top_level_null_is_rejected_without_reaching_pyarrow(tmp_path):
    # pyarrow's JSON reader segfaults on a chunk that starts with a top-level null
    path = write_bytes(tmp_path, "x.jsonl", b'null\n{"a":1}\nnull\n')
    rows, rejects, _ = read(JsonlFormat(), path)
    assert [(r.offset, r.error) for r in rejects] == [
        (1, "expected a JSON object, got null"),
        (3, "expected a JSON object, got null"),
    ]
    assert rows == [{"a": 1, OFFSET: 2}]


def test_jsonl_two_objects_on_one_line_are_one_reject(tmp_path):
    path = write_bytes(tmp_path, "x.jsonl", b'{"a":1} {"a":2}\n{"a":3}\n')
    rows, rejects, _ = read(JsonlFormat(), path)
    reject = only(rejects)
    assert (reject.offset, reject.error) == (1, "invalid JSON at column 9: Extra data")
    assert rows == [{"a": 3, OFFSET: 2}]


@pytest.mark.parametrize(
    "deep",
    [
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # valid JSON, crashes pyarrow
        b'{"a":' + b"[" * 100_000,  # never closed
        b'{"a":' + b'{"b":' * 100_000 + b"1" + b"}" * 100_001,
    ],
)
def test_jsonl_pathological_nesting_is_rejected_without_crashing(tmp_path, deep):
    path = write_bytes(tmp_path, "x.jsonl", b'{"a":0}\n' + deep + b'\n{"a":2}\n')
    rows, rejects, _ = read(JsonlFormat(), path)
    reject = only(rejects)
    assert (reject.rule, reject.offset) == ("parse", 2)
    assert reject.error == f"nesting deeper than {MAX_DEPTH} levels"
    assert reject.payload == deep
    assert rows == [{"a": 0, OFFSET: 1}, {"a": 2, OFFSET: 3}]


def test_jsonl_nesting_limit_is_exact(tmp_path):
    def nested(levels: int) -> bytes:  # the top-level object is level 1
        inner = levels - 1
        return b'{"a":' + b"[" * inner + b"]" * inner + b"}"

    path = write_bytes(tmp_path, "x.jsonl", nested(MAX_DEPTH) + b"\n" + nested(MAX_DEPTH + 1))
    rows, rejects, _ = read(JsonlFormat(), path)
    assert [row[OFFSET] for row in rows] == [1]
    assert only(rejects).offset == 2


def test_jsonl_ten_megabyte_line_parses(tmp_path):
    big = "x" * (10 << 20)
    data = json.dumps({"big": big}).encode() + b'\n{"big":"small"}\n'
    rows, rejects, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))
    assert rejects == []
    assert [len(row["big"]) for row in rows] == [10 << 20, 5]


def test_jsonl_mixed_kinds_in_a_column_become_text(tmp_path):
    data = b'{"amount": 12.5}\n{"amount": "abc"}\n{"amount": 3}\n{"amount": {"x": [1]}}\n'
    rows, rejects, chunks = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))
    assert rejects == []
    assert chunks[0].rows.schema.field("amount").type == pa.string()
    assert [row["amount"] for row in rows] == ["12.5", "abc", "3", '{"x":[1]}']
    assert [row[OFFSET] for row in rows] == [1, 2, 3, 4]


def test_jsonl_kinds_differing_between_halves_of_a_big_batch(tmp_path):
    # pyarrow's JSON reader segfaults when one read gets several blocks whose values differ in
    # kind (numbers in one block, arrays in the next); the batch is big enough to be parsed in
    # parts, so this checks the reader never hands pyarrow such a read.
    pad = "x" * 100
    lines = [json.dumps({"a": 1, "pad": pad}) for _ in range(1500)]
    lines += [json.dumps({"a": [1], "pad": pad}) for _ in range(1500)]
    path = write_bytes(tmp_path, "x.jsonl", "\n".join(lines).encode())

    rows, rejects, _ = read(JsonlFormat(), path, batch_size=5000)

    assert rejects == []
    assert [row["a"] for row in rows] == ["1"] * 1500 + ["[1]"] * 1500


def test_jsonl_lists_starting_with_null_read_correctly(tmp_path):
    # pyarrow 25 builds invalid arrays for these; the reader must notice and decode them itself
    data = b'{"b": [null, 1]}\n{"b": [null, {"a": 1}]}\n{"b": [2, null]}\n'
    rows, rejects, chunks = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))
    chunks[0].rows.validate(full=True)
    assert rejects == []
    assert [row["b"] for row in rows] == ["[null,1]", '[null,{"a":1}]', "[2,null]"]


def test_jsonl_int_then_float_reads_as_float(tmp_path):
    rows, _, chunks = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", b'{"a":1}\n{"a":2.5}'))
    assert chunks[0].rows.schema.field("a").type == pa.float64()
    assert [row["a"] for row in rows] == [1.0, 2.5]


def test_jsonl_nulls_everywhere_and_differing_keys(tmp_path):
    data = b'{"a":null,"b":null}\n{"c":null}\n{}\n{"a":null,"d":1}\n'
    rows, rejects, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", data))
    assert rejects == []
    assert rows == [
        {"a": None, "b": None, "c": None, "d": None, OFFSET: 1},
        {"a": None, "b": None, "c": None, "d": None, OFFSET: 2},
        {"a": None, "b": None, "c": None, "d": None, OFFSET: 3},
        {"a": None, "b": None, "c": None, "d": 1, OFFSET: 4},
    ]


def test_jsonl_lone_surrogate_escape_is_an_encoding_reject(tmp_path):
    path = write_bytes(tmp_path, "x.jsonl", b'{"a":"\\ud800"}\n{"a":"\\ud83d\\ude00"}\n')
    rows, rejects, _ = read(JsonlFormat(), path)
    assert (only(rejects).rule, only(rejects).offset) == ("encoding", 1)
    assert rows == [{"a": "😀", OFFSET: 2}]


def test_jsonl_ignores_a_byte_order_mark(tmp_path):
    rows, _, _ = read(JsonlFormat(), write_bytes(tmp_path, "x.jsonl", b'\xef\xbb\xbf{"a":1}\n'))
    assert rows == [{"a": 1, OFFSET: 1}]


def test_jsonl_a_few_bad_lines_in_a_big_batch_keep_the_inferred_types(tmp_path):
    lines = [b'{"n":%d,"at":"2024-05-01T12:00:00","x":1.5}' % i for i in range(300)]
    bad = {40: b'{"n":40,', 41: b"[40]", 250: b'{"n":"\xff"}'}
    lines = [bad.get(i, line) for i, line in enumerate(lines)]
    path = write_bytes(tmp_path, "x.jsonl", b"\n".join(lines) + b"\n")

    rows, rejects, chunks = read(JsonlFormat(), path, batch_size=1000)

    assert [(r.offset, r.rule, r.payload) for r in rejects] == [
        (41, "parse", bad[40]),
        (42, "parse", bad[41]),
        (251, "encoding", bad[250]),
    ]
    assert [row[OFFSET] for row in rows] == [i + 1 for i in range(300) if i not in bad]
    assert [row["n"] for row in rows] == [i for i in range(300) if i not in bad]
    schema = chunks[0].rows.schema
    assert (schema.field("n").type, schema.field("x").type) == (pa.int64(), pa.float64())


def test_jsonl_batch_size_bounds_every_chunk(tmp_path):
    lines = [b'{"n":%d}' % i for i in range(23)]
    lines[5] = b"not json"
    lines[11] = b""
    path = write_bytes(tmp_path, "x.jsonl", b"\n".join(lines))

    rows, rejects, chunks = read(JsonlFormat(), path, batch_size=4)

    assert all(chunk.rows.num_rows <= 4 for chunk in chunks)
    assert [row[OFFSET] for row in rows] == [i + 1 for i in range(23) if i not in (5, 11)]
    assert [row["n"] for row in rows] == [i for i in range(23) if i not in (5, 11)]
    assert only(rejects).offset == 6


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_wrong_column_count_is_rejected_with_the_raw_row(tmp_path):
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n"
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", data))
    assert [(r.rule, r.offset, r.error, r.payload) for r in rejects] == [
        ("column_count", 3, "expected 3 columns, got 2", b"4,5"),
        ("column_count", 4, "expected 3 columns, got 4", b"6,7,8,9"),
    ]
    assert rows == [
        {"a": "1", "b": "2", "c": "3", OFFSET: 2},
        {"a": "10", "b": "11", "c": "12", OFFSET: 5},
    ]


def test_csv_reads_every_column_as_nullable_text(tmp_path):
    data = b'id,amount,flag\n1,12.50,true\n,"",NA\n'
    rows, _, chunks = read(CsvFormat(null_values=("", "NA")), write_bytes(tmp_path, "x.csv", data))
    user_types = {f.type for f in chunks[0].rows.schema if not f.name.startswith("_bw_")}
    assert user_types == {pa.string()}
    assert rows == [
        {"id": "1", "amount": "12.50", "flag": "true", OFFSET: 2},
        {"id": None, "amount": None, "flag": None, OFFSET: 3},
    ]


def test_csv_offsets_count_quoted_line_breaks_and_empty_lines(tmp_path):
    data = b'a,b\n1,"two\r\nlines"\n\n2,"three\nmore\nlines"\n\r\n3,x\n'
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", data))
    assert rejects == []
    assert [(row["a"], row[OFFSET]) for row in rows] == [("1", 2), ("2", 5), ("3", 9)]


def test_csv_bare_carriage_returns_end_lines(tmp_path):
    rows, _, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", b"a,b\r1,2\r\r3,4\r"))
    assert rows == [{"a": "1", "b": "2", OFFSET: 2}, {"a": "3", "b": "4", OFFSET: 4}]


def test_csv_invalid_utf8_rejects_only_its_record_with_the_original_bytes(tmp_path):
    data = b'a,b\n1,ok\n2,caf\xe9\n3,"multi\nline \xff"\n4,fine\n'
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", data))
    assert [(r.rule, r.offset, r.payload) for r in rejects] == [
        ("encoding", 3, b"2,caf\xe9"),
        ("encoding", 4, b'3,"multi\nline \xff"'),
    ]
    assert rejects[1].error.startswith("line 5: invalid UTF-8 at byte 6")
    assert [(row["a"], row[OFFSET]) for row in rows] == [("1", 2), ("4", 6)]


def test_csv_invalid_utf8_in_a_row_with_the_wrong_column_count(tmp_path):
    data = b"a,b\n1,\xff,extra\n2,ok\n"
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", data))
    assert [(r.rule, r.offset, r.payload) for r in rejects] == [("encoding", 2, b"1,\xff,extra")]
    assert rows == [{"a": "2", "b": "ok", OFFSET: 3}]


@pytest.mark.parametrize(
    ("tail", "payload"),
    [
        (b'4,5,"six\n7,8,9\n', b'4,5,"six\n7,8,9'),  # swallows a later row
        (b'4,5,"six', b'4,5,"six'),  # the quote is in the last field: column count is right
        (b'"4,5,6\n', b'"4,5,6'),
    ],
)
def test_csv_unterminated_quote_at_end_of_file_is_a_parse_reject(tmp_path, tail, payload):
    data = b"a,b,c\n1,2,3\n" + tail
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", data))
    reject = only(rejects)
    assert (reject.rule, reject.offset, reject.payload) == ("parse", 3, payload)
    assert reject.error.startswith("unterminated quoted field")
    assert rows == [{"a": "1", "b": "2", "c": "3", OFFSET: 2}]


def test_csv_closed_quote_at_end_of_file_is_a_row(tmp_path):
    rows, rejects, _ = read(CsvFormat(), write_bytes(tmp_path, "x.csv", b'a,b\n1,""'))
    assert rejects == []
    assert rows == [{"a": "1", "b": None, OFFSET: 2}]


def test_csv_record_larger_than_a_parse_block_is_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setattr(csvread, "BLOCK_BYTES", 64)
    path = write_bytes(tmp_path, "x.csv", b'a,b\n1,"' + b"x" * 500 + b'"\n')
    with pytest.raises(CorruptFileError, match="x.csv"):
        read(CsvFormat(), path)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"caf\xe9,b\n1,2\n", "first line is not valid UTF-8"),
        (b'a,"b\n1,2\n', "never closed"),
        (b"\na,b\n", "first line is empty"),
    ],
)
def test_csv_unreadable_header_is_a_corrupt_file(tmp_path, data, detail):
    path = write_bytes(tmp_path, "x.csv", data)
    with pytest.raises(CorruptFileError, match=detail) as error:
        read(CsvFormat(), path)
    assert error.value.path == path


def test_csv_without_header_names_columns_and_numbers_from_line_one(tmp_path):
    data = b"\xef\xbb\xbf1\t2\n3\t4\n"
    rows, _, _ = read(CsvFormat(delimiter="\t", header=False), write_bytes(tmp_path, "x.tsv", data))
    assert rows == [{"f0": "1", "f1": "2", OFFSET: 1}, {"f0": "3", "f1": "4", OFFSET: 2}]


def test_csv_batch_size_bounds_every_chunk(tmp_path):
    body = b"".join(b"%d,x\n" % i if i != 7 else b"7\n" for i in range(30))
    rows, rejects, chunks = read(CsvFormat(), write_bytes(tmp_path, "x.csv", b"n,s\n" + body), 8)
    assert all(chunk.rows.num_rows <= 8 for chunk in chunks)
    assert [row[OFFSET] for row in rows] == [i + 2 for i in range(30) if i != 7]
    assert only(rejects).offset == 9


# --- Parquet ------------------------------------------------------------------------------------


@pytest.fixture
def ten_rows_in_four_groups(tmp_path) -> str:
    path = str(tmp_path / "groups.parquet")
    write_table(ParquetFormat(row_group_size=3), path, pa.table({"n": list(range(10))}))
    return path


def test_parquet_row_group_reads_keep_file_offsets(ten_rows_in_four_groups):
    fmt = ParquetFormat()
    assert fmt.row_group_count(ten_rows_in_four_groups) == 4

    rows, _, _ = read(fmt, ten_rows_in_four_groups, row_groups=[3, 1])

    assert [(row["n"], row[OFFSET]) for row in rows] == [(9, 10), (3, 4), (4, 5), (5, 6)]


def test_parquet_batch_size_bounds_every_chunk(ten_rows_in_four_groups):
    _, _, chunks = read(ParquetFormat(), ten_rows_in_four_groups, batch_size=2)
    offsets = [chunk.rows.column(OFFSET).to_pylist() for chunk in chunks]
    assert offsets == [[1, 2], [3], [4, 5], [6], [7, 8], [9], [10]]


def test_parquet_row_group_out_of_range(ten_rows_in_four_groups):
    with pytest.raises(ValueError, match=r"row groups \[4\] out of range"):
        read(ParquetFormat(), ten_rows_in_four_groups, row_groups=[4])


def test_parquet_writer_casts_later_batches_and_names_what_does_not_fit(tmp_path):
    sink = io.BytesIO()
    writer = ParquetFormat().open_writer(sink)
    writer.write(pa.table({"a": [1.5], "b": ["x"]}))
    writer.write(pa.table({"a": pa.array([2], pa.int64())}))  # cast to double; b is null

    with pytest.raises(ValueError, match="a: cannot cast string to double") as error:
        writer.write(pa.table({"a": ["not a number"], "c": [1]}))
    assert "columns not in the file's schema: c" in str(error.value)
    writer.close()
    assert pq.read_table(io.BytesIO(sink.getvalue())).to_pylist() == [
        {"a": 1.5, "b": "x"},
        {"a": 2.0, "b": None},
    ]


def test_parquet_null_typed_first_batch_needs_an_explicit_schema(tmp_path):
    first, later = pa.table({"coupon": [None, None]}), pa.table({"coupon": ["SAVE10"]})
    writer = ParquetFormat().open_writer(io.BytesIO())
    writer.write(first)
    with pytest.raises(ValueError, match="entirely null in the first batch"):
        writer.write(later)

    path = str(tmp_path / "typed.parquet")
    write_table(ParquetFormat(schema=pa.schema([("coupon", pa.string())])), path, first, later)
    assert pq.read_table(path).column("coupon").to_pylist() == [None, None, "SAVE10"]


def test_parquet_writer_without_rows(tmp_path):
    schema = pa.schema([("a", pa.int64())])
    typed, untyped = str(tmp_path / "typed.parquet"), str(tmp_path / "untyped.parquet")
    write_table(ParquetFormat(schema=schema), typed)
    write_table(ParquetFormat(), untyped)
    assert pq.read_schema(typed) == schema
    with pytest.raises(CorruptFileError, match="0 bytes"):  # nothing written: a 0-byte file
        list(ParquetFormat().read(untyped, 10))


def corrupt_variants(good: bytes) -> dict[str, bytes]:
    return {
        "cut in half": good[: len(good) // 2],
        "random bytes": bytes(range(256)) * 4,
        "not this format": b'{"this": "is json"}\n',
        "header only": good[:16],
    }


@pytest.mark.parametrize("case", ["cut in half", "random bytes", "not this format", "header only"])
@pytest.mark.parametrize("name", ["parquet", "avro"])
def test_corrupt_container_files_raise_corrupt_file_error(tmp_path, name, case):
    fmt = make_format(name)
    good = tmp_path / f"good{fmt.extensions[0]}"
    write_table(fmt, str(good), pa.table({"n": list(range(5000)), "s": ["v"] * 5000}))
    path = write_bytes(
        tmp_path, f"bad{fmt.extensions[0]}", corrupt_variants(good.read_bytes())[case]
    )

    with pytest.raises(CorruptFileError) as error:
        read(fmt, path)

    assert str(error.value).startswith(f"cannot read {path}: ")
    assert isinstance(error.value.__cause__, Exception)


def test_parquet_corruption_found_mid_read(tmp_path):
    path = str(tmp_path / "mid.parquet")
    fmt = ParquetFormat(row_group_size=500, compression=None)
    write_table(fmt, path, pa.table({"n": list(range(1000))}))
    second_group = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray((tmp_path / "mid.parquet").read_bytes())
    data[second_group : second_group + 40] = b"\xff" * 40
    (tmp_path / "mid.parquet").write_bytes(bytes(data))

    chunks = fmt.read(path, 500)
    assert next(chunks).rows.num_rows == 500
    with pytest.raises(CorruptFileError, match="mid.parquet"):
        next(chunks)


def test_parquet_page_decoding_to_invalid_text_is_a_corrupt_file(tmp_path):
    path = tmp_path / "text.parquet"
    fmt = ParquetFormat(compression=None)
    write_table(fmt, str(path), pa.table({"s": ["hello-marker"]}))
    same_length_garbage = b"hello-\xff\xfe\xfd\xfc\xfb\xfa"
    path.write_bytes(path.read_bytes().replace(b"hello-marker", same_length_garbage))

    with pytest.raises(CorruptFileError, match="UTF8"):
        read(fmt, str(path))


def test_missing_file_is_not_a_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read(ParquetFormat(), str(tmp_path / "nope.parquet"))


# --- Avro ---------------------------------------------------------------------------------------


def test_avro_truncated_file_fails_after_the_intact_blocks(tmp_path):
    path = str(tmp_path / "many.avro")
    write_table(AvroFormat(codec="null"), path, pa.table({"n": list(range(20_000))}))
    data = (tmp_path / "many.avro").read_bytes()
    cut = write_bytes(tmp_path, "cut.avro", data[: len(data) // 2])

    chunks = AvroFormat().read(cut, 1000)
    first = next(chunks)
    assert first.rows.column(OFFSET).to_pylist() == list(range(1, 1001))
    with pytest.raises(CorruptFileError, match="cut.avro"):
        list(chunks)


def test_avro_reads_unions_and_logical_types_from_the_writer_schema(tmp_path):
    schema = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "note", "type": ["null", "string"]},
            {"name": "any", "type": ["null", "string", "long"]},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
            {"name": "again", "type": ["null", "Kind"]},
            {"name": "attrs", "type": {"type": "map", "values": "long"}},
        ],
    }
    at = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    ref = "12345678-1234-5678-1234-567812345678"
    rows = [
        {
            "id": 1,
            "note": None,
            "any": 5,
            "at": at,
            "ref": ref,
            "kind": "A",
            "again": "B",
            "attrs": {"x": 1},
        },
        {
            "id": 2,
            "note": "n",
            "any": "s",
            "at": at,
            "ref": ref,
            "kind": "B",
            "again": None,
            "attrs": {},
        },
    ]
    path = tmp_path / "typed.avro"
    with open(path, "wb") as sink:
        fastavro.writer(sink, fastavro.parse_schema(schema), rows)

    back, _, chunks = read(AvroFormat(), str(path))

    arrow = chunks[0].rows.schema
    assert arrow.field("id").type == pa.int32() and not arrow.field("id").nullable
    assert arrow.field("note").nullable
    assert arrow.field("at").type == pa.timestamp("ms", "UTC")
    assert [row["any"] for row in back] == ["5", "s"]  # a multi-type union reads as JSON text
    assert [row["ref"] for row in back] == [ref, ref]
    assert [(row["kind"], row["again"]) for row in back] == [("A", "B"), ("B", None)]
    assert [row["attrs"] for row in back] == [[("x", 1)], []]
    assert [row[OFFSET] for row in back] == [1, 2]


def test_avro_writer_uses_the_given_schema(tmp_path):
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    path = str(tmp_path / "given.avro")
    write_table(AvroFormat(schema=schema, codec="null"), path, pa.table({"n": [1, 2]}))
    with open(path, "rb") as stream:
        reader = fastavro.reader(stream)
        assert reader.writer_schema == {**schema, "type": "record"}
        assert list(reader) == [{"n": 1}, {"n": 2}]


def test_arrow_schema_to_avro_mapping():
    schema = pa.schema(
        [
            pa.field("i8", pa.int8(), nullable=False),
            pa.field("i64", pa.int64()),
            pa.field("ts", pa.timestamp("ms", "UTC"), nullable=False),
            pa.field("d", pa.date32(), nullable=False),
            pa.field("dec", pa.decimal128(9, 3), nullable=False),
            pa.field("s", pa.struct([pa.field("x", pa.float32(), nullable=False)]), False),
            pa.field("l", pa.list_(pa.field("item", pa.bool_(), nullable=False)), False),
        ]
    )
    fields = {f["name"]: f["type"] for f in arrow_schema_to_avro(schema, "Order")["fields"]}
    assert fields == {
        "i8": "int",
        "i64": ["null", "long"],
        "ts": {"type": "long", "logicalType": "timestamp-micros"},
        "d": {"type": "int", "logicalType": "date"},
        "dec": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3},
        "s": {"type": "record", "name": "Order_s", "fields": [{"name": "x", "type": "float"}]},
        "l": {"type": "array", "items": "boolean"},
    }
    assert avro_schema_to_arrow(arrow_schema_to_avro(schema)).field("ts").type == pa.timestamp(
        "us", "UTC"
    )


def test_arrow_types_without_avro_equivalent_are_named():
    with pytest.raises(ValueError, match="column span: Arrow type duration"):
        arrow_schema_to_avro(pa.schema([("span", pa.duration("s"))]))


def test_load_avsc(tmp_path):
    good = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    (tmp_path / "good.avsc").write_text(json.dumps(good))
    (tmp_path / "broken.avsc").write_text('{"type": "record",')
    (tmp_path / "unknown.avsc").write_text(
        json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]})
    )

    assert load_avsc(str(tmp_path / "good.avsc")) == good
    with pytest.raises(ValueError, match="broken.avsc is not a JSON file"):
        load_avsc(str(tmp_path / "broken.avsc"))
    with pytest.raises(ValueError, match="unknown.avsc is not a valid Avro schema"):
        load_avsc(str(tmp_path / "unknown.avsc"))


def test_avro_codec_is_checked():
    with pytest.raises(ValueError, match="unknown Avro codec 'gzip'"):
        AvroFormat(codec="gzip")


# --- registry and plumbing ----------------------------------------------------------------------


def test_registry_knows_the_four_formats():
    assert sorted(FORMATS) == ["avro", "csv", "jsonl", "parquet"]
    assert make_format("csv", delimiter=";").delimiter == ";"


def test_make_format_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown file format 'xml'; valid formats: jsonl, csv"):
        make_format("xml")
    with pytest.raises(ValueError, match="unknown option.* delimeter .*valid options: delimiter"):
        make_format("csv", delimeter=";")
    with pytest.raises(ValueError, match="valid options: none"):
        make_format("jsonl", schema={})
    with pytest.raises(ValueError, match="delimiter must be one ASCII character"):
        make_format("csv", delimiter="§")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("a.jsonl", "jsonl"),
        ("gs://b/x.NDJSON", "jsonl"),
        ("x.json", "jsonl"),
        ("x.csv", "csv"),
        ("x.tsv", "csv"),
        ("x.parquet", "parquet"),
        ("x.pq", "parquet"),
        ("x.avro", "avro"),
    ],
)
def test_infer_format(path, name):
    assert infer_format(path) == name


def test_infer_format_unknown_extension():
    with pytest.raises(ValueError, match=r"cannot tell the file format of 'x.xml'.*\.avro"):
        infer_format("x.xml")


def test_corrupt_file_error_message_and_pickling():
    error = CorruptFileError("gs://b/f.avro", "bad sync marker")
    assert str(error) == "cannot read gs://b/f.avro: bad sync marker"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.detail, str(copy)) == (error.path, error.detail, str(error))


def test_remote_paths_go_through_beam_filesystems(monkeypatch):
    calls = []

    class FakeFileSystems:
        @staticmethod
        def open(path, compression_type):
            calls.append(("open", path, compression_type))
            return io.BytesIO(b"data")

        @staticmethod
        def create(path, compression_type):
            calls.append(("create", path, compression_type))
            return io.BytesIO()

    filesystems = types.ModuleType("apache_beam.io.filesystems")
    filesystems.FileSystems = FakeFileSystems
    filesystem = types.ModuleType("apache_beam.io.filesystem")
    filesystem.CompressionTypes = types.SimpleNamespace(UNCOMPRESSED="uncompressed")
    monkeypatch.setitem(sys.modules, "apache_beam.io.filesystems", filesystems)
    monkeypatch.setitem(sys.modules, "apache_beam.io.filesystem", filesystem)

    assert open_input("gs://bucket/in.csv").read() == b"data"
    open_output("s3://bucket/out.csv")
    assert calls == [
        ("open", "gs://bucket/in.csv", "uncompressed"),
        ("create", "s3://bucket/out.csv", "uncompressed"),
    ]


def test_importing_the_formats_does_not_import_beam():
    code = "import sys, connectors.files; print('apache_beam' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
