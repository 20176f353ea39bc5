"""Hostile values (issue 8, items 6-9): NaN and ±Inf against range rules, dates and timestamps
Python cannot hold, 0-byte and header-only files, duplicate column names.

Each class of input is tried in every format that can carry it, on the readers and processors
directly and end to end through ``run_spec`` with real files written here.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
from pathlib import Path

import apache_beam as beam
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder for beam.Create
from connectors.files import CorruptFileError, make_format
from connectors.files.base import require_unique_columns
from connectors.records import with_positions
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import RunFailed, run_spec
from transforms import rules as r
from transforms.coerce import ARROW_TYPES, coerce, out_of_range
from transforms.profile import ColumnProfile, WriteProfile, merge_profiles
from transforms.validate import Validator

NAN, INF = float("nan"), float("inf")
NEG_NAN = math.copysign(NAN, -1.0)
EPOCH = dt.date(1970, 1, 1).toordinal()
YEAR_0_DAYS = dt.date.min.toordinal() - EPOCH - 366  # 0000-01-01 (year 0 is a leap year)
YEAR_10000_DAYS = dt.date.max.toordinal() - EPOCH + 1  # 10000-01-01
US_PER_DAY = 86_400_000_000


# --- helpers ------------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def write_avro(path: Path, schema: dict, records: list[dict]) -> Path:
    with open(path, "wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), records)
    return path


def batch(table: pa.Table) -> pa.Table:
    return with_positions(table, "in.parquet", range(1, table.num_rows + 1))


def rows_of(directory: Path, pattern: str = "part-*") -> list[dict]:
    """Every row of the files in ``directory``, read back with pyarrow (and into Python)."""
    rows: list[dict] = []
    for path in sorted(directory.glob(pattern)):
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        else:
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def run_pipeline(
    tmp_path: Path,
    source: Path | str,
    *,
    fields: dict[str, str] | None = None,
    rules: list[dict] | None = None,
    lineage: bool = False,
):
    """One real run: ``source`` -> validate -> Parquet; returns (summary, rows, dead letters)."""
    steps = []
    if fields is not None or rules:
        steps.append(
            {
                "name": "check",
                "type": "validate",
                "fields": {name: {"type": kind} for name, kind in (fields or {}).items()},
                "rules": rules or [],
            }
        )
    spec = spec_from_data(
        {
            "name": "hostile",
            "sources": [{"name": "rows", "type": "file", "path": str(source)}],
            "steps": steps,
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "parquet"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 1.0},
            "lineage": {"enabled": lineage, "event_log": str(tmp_path / "events.jsonl")},
        }
    )
    summary = run_spec(spec)
    return summary, rows_of(tmp_path / "out"), rows_of(tmp_path / "dead", "*.jsonl")


# --- 6. NaN and ±Inf against range rules --------------------------------------------------------

VALUES = [5.0, NAN, NEG_NAN, INF, -INF, 50.0, None]


@pytest.mark.parametrize(
    "bounds, allowed",
    [
        ({"min": 0, "max": 100}, [5.0, 50.0, None]),
        ({"min": 0, "max": 100, "exclusive": True}, [5.0, 50.0, None]),
        ({"min": 0}, [5.0, INF, 50.0, None]),  # +Inf is >= 0
        ({"max": 10}, [5.0, -INF, None]),  # -Inf is <= 10
        ({"min": 0, "max": 100, "allow_nan": True}, [5.0, "NaN", "NaN", 50.0, None]),
        ({"min": 0, "allow_nan": True}, [5.0, "NaN", "NaN", INF, 50.0, None]),
    ],
)
@pytest.mark.parametrize("kind", [pa.float64(), pa.float32()])
def test_range_rules_fail_nan_unless_allowed_and_order_infinities(bounds, allowed, kind):
    table = pa.table({"x": pa.array(VALUES, kind)})
    failed = r.Between("between:x", "x", **bounds).failures(table).to_pylist()
    kept = [v for v, bad in zip(table.column("x").to_pylist(), failed, strict=True) if not bad]
    assert ["NaN" if v is not None and math.isnan(v) else v for v in kept] == allowed


def test_nan_reason_says_how_to_accept_it():
    rule = r.Between("between:x", "x", min=0, max=1)
    assert rule.reason(NAN) == "x: NaN is not a number in range (allow_nan: true accepts it)"
    assert rule.reason(INF) == "x: inf is outside 0 <= value <= 1"


@pytest.mark.parametrize("text", ["NaN", "nan", "-nan", "-NaN", "NAN"])
def test_nan_text_cast_by_validation_fails_a_range_rule(text):
    result = Validator(
        step_name="check",
        fields={"x": "float64"},
        rules=[r.Between("between:x", "x", min=0, max=100)],
    ).process(batch(pa.table({"x": [text, "7"]})))
    assert result.rows.column("x").to_pylist() == [7.0]
    (letter,) = result.dead_letters.to_pylist()
    assert letter["rule"] == "between:x" and "NaN" in letter["errorMessage"]


def _nan_inputs(tmp_path: Path) -> dict[str, Path]:
    ids = list(range(1, 8))
    return {
        "jsonl": write_jsonl(
            tmp_path / "in.jsonl",
            [
                f'{{"id":{i},"x":{v}}}'
                for i, v in zip(
                    ids, ["5", "NaN", "-NaN", "Infinity", "-Infinity", "50", "null"], strict=True
                )
            ],
        ),
        "csv": _write_text(
            tmp_path / "in.csv",
            "id,x\n1,5\n2,NaN\n3,-nan\n4,inf\n5,-Infinity\n6,50\n7,\n",
        ),
        "parquet": write_parquet(
            tmp_path / "in.parquet", pa.table({"id": ids, "x": pa.array(VALUES, pa.float64())})
        ),
    }


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize(
    "rule, kept_ids",
    [
        ({"rule": "between", "field": "x", "min": 0, "max": 100}, [1, 6, 7]),
        (
            {"rule": "between", "field": "x", "min": 0, "max": 100, "allow_nan": True},
            [1, 2, 3, 6, 7],
        ),
        ({"rule": "min", "field": "x", "min": 0}, [1, 4, 6, 7]),
        ({"rule": "max", "field": "x", "max": 100}, [1, 5, 6, 7]),
    ],
)
def test_range_rules_on_nan_and_inf_end_to_end(tmp_path, fmt, rule, kept_ids):
    source = _nan_inputs(tmp_path)[fmt]
    summary, rows, dead = run_pipeline(
        tmp_path, source, fields={"id": "int64", "x": "float64"}, rules=[rule]
    )
    assert summary.status == "COMPLETE"
    assert sorted(row["id"] for row in rows) == kept_ids
    assert len(dead) == 7 - len(kept_ids)
    assert all(d["rule"].endswith(":x") for d in dead)
    nan_letters = [d for d in dead if "NaN" in d["errorMessage"]]
    assert len(nan_letters) == (0 if rule.get("allow_nan") else 2)


# --- 7. dates and timestamps Python cannot hold -------------------------------------------------


def test_out_of_range_finds_years_outside_1_to_9999_in_every_temporal_type():
    edges_days = [YEAR_0_DAYS, dt.date.min.toordinal() - EPOCH - 1, 0]
    edges_days += [dt.date.max.toordinal() - EPOCH, YEAR_10000_DAYS, None]
    expected = [True, True, False, False, True, False]
    days = pa.array(edges_days, pa.int32())
    assert out_of_range(days.cast(pa.date32())).to_pylist() == expected
    assert out_of_range(days.cast(pa.date32()).cast(pa.date64())).to_pylist() == expected
    for unit, per_day in (("s", 86_400), ("ms", 86_400_000), ("us", US_PER_DAY)):
        micros = pa.array([None if d is None else d * per_day for d in edges_days], pa.int64())
        for tz in (None, "UTC"):
            stamps = micros.cast(pa.timestamp(unit, tz=tz))
            assert out_of_range(stamps).to_pylist() == expected, (unit, tz)
    # the last microsecond of 9999 is in range, the first of 10000 is not
    last = (dt.date.max.toordinal() - EPOCH + 1) * US_PER_DAY - 1
    assert out_of_range(pa.array([last, last + 1], pa.timestamp("us"))).to_pylist() == [
        False,
        True,
    ]
    nanos = pa.array([-(2**63) + 1, 2**63 - 1], pa.int64()).cast(pa.timestamp("ns"))
    assert out_of_range(nanos).to_pylist() == [False, False]  # ns cannot leave 1677-2262
    assert out_of_range(pa.array([1.0])) is None


@pytest.mark.parametrize("target", ["date", "timestamp"])
def test_coerce_rejects_out_of_range_dates_instead_of_crashing(target):
    text = pa.array(
        ["0000-01-01", "0000-01-01T00:00:00Z", "10000-01-01", "9999-12-31T00:00:00Z", None]
    )
    values, failed = coerce(text, ARROW_TYPES[target])
    assert failed.to_pylist()[:3] == [True, True, True]
    assert failed.to_pylist()[4] is False
    values.to_pylist()  # every value left is one Python can hold


def _temporal_inputs(tmp_path: Path) -> dict[str, Path]:
    """id 1: year 0, id 2: year 10000, id 3: the last day of 9999, id 4: 0001-01-01."""
    texts = [
        ("0000-01-01", "0000-01-01T00:00:00"),
        ("10000-01-01", "10000-01-01T00:00:00"),
        ("9999-12-31", "9999-12-31T23:59:59"),
        ("0001-01-01", "0001-01-01T00:00:00"),
    ]
    days = [YEAR_0_DAYS, YEAR_10000_DAYS, dt.date.max.toordinal() - EPOCH, -719162]
    return {
        "jsonl": write_jsonl(
            tmp_path / "in.jsonl",
            [f'{{"id":{i},"d":"{d}","ts":"{t}Z"}}' for i, (d, t) in enumerate(texts, 1)],
        ),
        "csv": _write_text(
            tmp_path / "in.csv",
            "id,d,ts\n" + "".join(f"{i},{d},{t}Z\n" for i, (d, t) in enumerate(texts, 1)),
        ),
        "parquet": write_parquet(
            tmp_path / "in.parquet",
            pa.table(
                {
                    "id": [1, 2, 3, 4],
                    "d": pa.array(days, pa.int32()).cast(pa.date32()),
                    "ts": pa.array([d * US_PER_DAY for d in days], pa.int64()).cast(
                        pa.timestamp("us", tz="UTC")
                    ),
                }
            ),
        ),
    }


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_out_of_range_dates_are_dead_letters_and_the_profiler_only_warns(tmp_path, fmt, caplog):
    source = _temporal_inputs(tmp_path)[fmt]
    with caplog.at_level(logging.WARNING, logger="pipelines.lineage_run"):
        summary, rows, dead = run_pipeline(
            tmp_path,
            source,
            fields={"id": "int64", "d": "date", "ts": "timestamp"},
            lineage=True,
        )
    assert summary.status == "COMPLETE"
    assert sorted(row["id"] for row in rows) == [3, 4]  # read back into Python: all valid
    header_lines = 1 if fmt == "csv" else 0
    by_id = {d["offset"] - header_lines: d for d in dead}  # row i is id i
    assert sorted(by_id) == [1, 2]
    assert set(by_id[1]["rule"].split(",")) == {"type:d", "type:ts"}
    assert "is not a valid date (years 1 to 9999)" in by_id[1]["errorMessage"]
    assert "type:d" in by_id[2]["rule"]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["eventType"] == "COMPLETE"
    metrics = events[-1]["inputs"][0]["inputFacets"]["dataQualityMetrics"]["columnMetrics"]
    assert metrics["id"]["count"] == 4
    if fmt != "csv":  # CSV columns are text, profiled without min/max
        assert metrics["id"]["min"] == 1.0 and metrics["id"]["max"] == 4.0
    if fmt == "parquet":  # text columns (CSV; JSONL here, "10000-01-01" is no timestamp) have none
        assert "min" not in metrics["ts"] and metrics["ts"]["nullCount"] == 0
        assert_profile_warning(caplog, "ts")


def assert_profile_warning(caplog: pytest.LogCaptureFixture, column: str) -> None:
    warned = [rec.getMessage() for rec in caplog.records]
    expected = f"profile of source rows: column {column}: value metrics missing: OverflowError"
    assert any(w.startswith(expected) for w in warned), warned


def test_jsonl_year_0_read_as_timestamp_is_rejected_and_only_warns_the_profiler(tmp_path, caplog):
    """pyarrow reads ISO text as a timestamp when every value of the batch parses, year 0 too."""
    path = write_jsonl(
        tmp_path / "in.jsonl", ['{"id":1,"d":"0000-01-01"}', '{"id":2,"d":"2024-01-01"}']
    )
    with caplog.at_level(logging.WARNING, logger="pipelines.lineage_run"):
        summary, rows, dead = run_pipeline(tmp_path, path, fields={"id": "int64"}, lineage=True)
    assert summary.status == "COMPLETE"
    assert rows == [{"id": 2, "d": dt.datetime(2024, 1, 1)}]
    (letter,) = dead
    assert letter["rule"] == "type:d"
    assert (
        letter["errorMessage"]
        == "d: '0000-01-01 00:00:00' is not a valid timestamp (years 1 to 9999)"
    )
    assert_profile_warning(caplog, "d")


def test_undeclared_temporal_columns_out_of_range_are_rejected_too(tmp_path):
    source = _temporal_inputs(tmp_path)["parquet"]
    summary, rows, dead = run_pipeline(tmp_path, source, fields={"id": "int64"})
    assert sorted(row["id"] for row in rows) == [3, 4]
    assert {d["rule"] for d in dead} == {"type:d,type:ts"}


def test_avro_date_python_cannot_hold_fails_the_run_naming_the_file(tmp_path):
    """fastavro converts dates while decoding and cannot skip a record it fails on, so an Avro
    file holding year 0 cannot be accounted for record by record: it is a corrupt file."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "d", "type": {"type": "int", "logicalType": "date"}}],
    }
    path = write_avro(tmp_path / "in.avro", schema, [{"d": 0}, {"d": YEAR_0_DAYS}])
    with pytest.raises(CorruptFileError, match="in.avro"):
        list(make_format("avro").read(str(path), 10))
    with pytest.raises(RunFailed, match=r"CorruptFileError: cannot read .*in\.avro"):
        run_pipeline(tmp_path, path, fields={"d": "date"})


def test_profile_errors_are_kept_per_column_in_partials_and_merges(tmp_path):
    year_0 = pa.array([YEAR_0_DAYS * US_PER_DAY], pa.int64()).cast(pa.timestamp("us"))
    good = pa.table({"ts": pa.array([0], pa.timestamp("us")), "n": [1]})
    bad = pa.table({"ts": year_0, "n": [NAN]}).cast(
        pa.schema([("ts", year_0.type), ("n", pa.float64())])
    )

    with TestPipeline() as p:
        _ = p | beam.Create([good, bad]) | WriteProfile(str(tmp_path), "src")
    partials = [json.loads(f.read_text()) for f in sorted(tmp_path.glob("src-*.json"))]
    (failed,) = [part["columns"]["ts"] for part in partials if "error" in part["columns"]["ts"]]
    assert failed["error"] == "OverflowError: date value out of range"
    assert "min" not in failed and "max" not in failed

    clean = ColumnProfile().add_input(ColumnProfile().create_accumulator(), good)
    merged = merge_profiles([clean, *partials])  # the error wins over the clean partial's min
    assert merged["rowCount"] == 3
    assert merged["columns"]["ts"] == {
        "nullCount": 0,
        "count": 3,
        "error": "OverflowError: date value out of range",
    }
    assert merged["columns"]["n"]["max"] == 1.0  # min/max skip NaN
    assert "sum" not in merged["columns"]["n"]  # a sum over NaN cannot be written as JSON
    assert merged["warnings"] == [
        "column ts: value metrics missing: OverflowError: date value out of range",
        "column n: sum left out: not a finite number",
    ]


# --- 8. empty and header-only files -------------------------------------------------------------


@pytest.mark.parametrize("fmt, ext", [("parquet", ".parquet"), ("avro", ".avro")])
def test_zero_byte_container_files_are_corrupt(tmp_path, fmt, ext):
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"empty\.(parquet|avro).*0 bytes"):
        list(make_format(fmt).read(str(path), 10))


def test_zero_byte_parquet_row_groups_cannot_be_counted(tmp_path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="0 bytes"):
        make_format("parquet").row_group_count(str(path))


@pytest.mark.parametrize("ext", [".parquet", ".avro"])
def test_zero_byte_container_input_fails_before_the_run(tmp_path, ext):
    good = tmp_path / f"in-1{ext}"
    if ext == ".parquet":
        write_parquet(good, pa.table({"id": [1]}))
    else:
        schema = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]}
        write_avro(good, schema, [{"id": 1}])
    empty = tmp_path / f"in-2{ext}"
    empty.write_bytes(b"")
    with pytest.raises(SpecError, match=rf"sources\[0\]\.path: cannot read {empty}.*0 bytes"):
        run_pipeline(tmp_path, tmp_path / f"in-*{ext}")
    assert not (tmp_path / "out").exists()


def test_container_files_with_a_header_and_no_rows_are_valid(tmp_path):
    parquet = write_parquet(tmp_path / "none.parquet", pa.table({"id": pa.array([], pa.int64())}))
    schema = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]}
    avro = write_avro(tmp_path / "none.avro", schema, [])
    for path in (parquet, avro):
        chunks = list(make_format(path.suffix[1:]).read(str(path), 10))
        assert sum(c.rows.num_rows for c in chunks) == 0


@pytest.mark.parametrize(
    "name, data",
    [
        ("a.csv", b""),
        ("a.csv", b"id,x\n"),
        ("a.csv", b"id,x"),
        ("a.csv", b"\xef\xbb\xbfid,x\r\n"),
        ("a.jsonl", b""),
        ("a.jsonl", b"\n  \n"),
    ],
)
def test_empty_and_header_only_text_files_are_zero_rows_end_to_end(tmp_path, name, data):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_bytes(data)
    other = "b" + name[1:]
    text = b"id,x\n1,2\n" if name.endswith(".csv") else b'{"id":1,"x":"2"}\n'
    (tmp_path / "in" / other).write_bytes(text)
    summary, rows, dead = run_pipeline(
        tmp_path, tmp_path / "in" / "*", fields={"id": "int64", "x": "string"}
    )
    assert summary.status == "COMPLETE"
    assert summary.node("rows").rows_in == 1 and rows == [{"id": 1, "x": "2"}] and dead == []


# --- 9. duplicate column names ------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"id,amount,amount\n1,2,3\n", b"id,amount,amount\n"])
def test_csv_header_naming_a_column_twice_is_corrupt(tmp_path, data):
    path = tmp_path / "dup.csv"
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match=r"dup\.csv.*'amount' \(2 times\)"):
        list(make_format("csv").read(str(path), 10))


def test_csv_without_header_names_columns_itself(tmp_path):
    path = tmp_path / "nohead.csv"
    path.write_bytes(b"a,a\n1,2\n")
    (chunk,) = make_format("csv", header=False).read(str(path), 10)
    assert chunk.rows.column_names[:2] == ["f0", "f1"]


def test_parquet_schema_repeating_a_column_is_corrupt(tmp_path):
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], ["amount", "amount"]), flat)
    nested = tmp_path / "nested.parquet"
    inner = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["id", "id"])
    pq.write_table(pa.table({"customer": inner}), nested)
    fmt = make_format("parquet")
    with pytest.raises(CorruptFileError, match=r"flat\.parquet.*'amount' \(2 times\)"):
        fmt.row_group_count(str(flat))
    with pytest.raises(CorruptFileError, match=r"flat\.parquet.*'amount'"):
        list(fmt.read(str(flat), 10))
    with pytest.raises(CorruptFileError, match=r"nested\.parquet.*'customer\.id' \(2 times\)"):
        list(fmt.read(str(nested), 10))


def _avro_with_duplicate_field(path: Path, nested: bool) -> Path:
    """An Avro file whose writer schema names a field twice (fastavro refuses to write one,
    so a valid file's header is edited: the names have equal length, the file stays valid)."""
    record = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "amount", "type": "long"}, {"name": "amounu", "type": "long"}],
    }
    if nested:
        record = {"type": "record", "name": "outer", "fields": [{"name": "inner", "type": record}]}
        rows = [{"inner": {"amount": 1, "amounu": 2}}]
    else:
        rows = [{"amount": 1, "amounu": 2}]
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(record), rows)
    data = buffer.getvalue()
    assert data.count(b'"amounu"') == 1
    path.write_bytes(data.replace(b'"amounu"', b'"amount"'))
    return path


@pytest.mark.parametrize("nested, shown", [(False, "'amount'"), (True, "'inner.amount'")])
def test_avro_schema_repeating_a_field_is_corrupt(tmp_path, nested, shown):
    path = _avro_with_duplicate_field(tmp_path / "dup.avro", nested)
    with pytest.raises(CorruptFileError, match=rf"dup\.avro.*{shown} \(2 times\)"):
        list(make_format("avro").read(str(path), 10))


def test_require_unique_columns_lists_every_repeated_name():
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64()), ("a", pa.string()), ("b", pa.int8())])
    with pytest.raises(CorruptFileError, match=r"'a' \(2 times\), 'b' \(2 times\)"):
        require_unique_columns("x.parquet", schema)


@pytest.mark.parametrize(
    "line",
    [
        '{"id":2,"amount":1,"amount":2}',
        '{"id":2,"amount":1,"x":0,"amount":1}',
        '{"id":2,"c":{"amount":1,"amount":2}}',
    ],
)
def test_jsonl_object_repeating_a_key_is_rejected_as_pyarrow_refuses_it(tmp_path, line):
    lines = ['{"id":1,"amount":5}', line, '{"id":3,"amount":7}']
    path = write_jsonl(tmp_path / "dup.jsonl", lines)
    chunks = list(make_format("jsonl").read(str(path), 10))
    rows = [row["id"] for c in chunks for row in c.rows.to_pylist()]
    (reject,) = [reject for c in chunks for reject in c.rejects]
    assert rows == [1, 3]
    assert (reject.offset, reject.rule, reject.payload) == (2, "parse", line.encode())
    assert "'amount' appears more than once" in reject.error


@pytest.mark.parametrize("fmt", ["csv", "avro"])
def test_duplicate_columns_fail_the_run_naming_file_and_column(tmp_path, fmt):
    if fmt == "csv":
        path = _write_text(tmp_path / "dup.csv", "id,amount,amount\n1,2,3\n")
    else:
        path = _avro_with_duplicate_field(tmp_path / "dup.avro", nested=False)
    with pytest.raises(RunFailed, match=rf"CorruptFileError: cannot read .*dup\.{fmt}.*'amount'"):
        run_pipeline(tmp_path, path)


def test_duplicate_parquet_columns_fail_before_the_run(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], ["amount", "amount"]), path)
    with pytest.raises(SpecError, match=r"dup\.parquet.*'amount' \(2 times\)"):
        run_pipeline(tmp_path, path)


def test_duplicate_jsonl_keys_are_dead_letters_end_to_end(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", ['{"id":1,"a":1}', '{"id":2,"a":1,"a":2}'])
    summary, rows, dead = run_pipeline(tmp_path, path, fields={"id": "int64", "a": "int64"})
    assert summary.status == "COMPLETE"
    assert rows == [{"id": 1, "a": 1}]
    (letter,) = dead
    assert letter["rule"] == "parse" and letter["offset"] == 2
    assert letter["payloadString"] == '{"id":2,"a":1,"a":2}'
