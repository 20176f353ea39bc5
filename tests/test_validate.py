"""The validate step on Arrow batches: types, required fields, every rule, dead-letter reasons."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from connectors.records import DEAD_LETTER_SCHEMA, with_positions
from transforms import rules as r
from transforms.validate import Validator


def batch(rows: list[dict], source: str = "orders.jsonl") -> pa.Table:
    table = pa.Table.from_pylist(rows)
    return with_positions(table, source, range(1, len(rows) + 1))


def run(rows, **options):
    v = Validator(step_name="check", run_id="run-1", **options)
    v.setup()
    return v.process(batch(rows))


def dead(result) -> list[dict]:
    return result.dead_letters.to_pylist()


def test_clean_batch_passes_with_declared_types():
    result = run(
        [{"id": "1", "amount": "12.5", "day": "2026-01-02", "ok": "yes"}],
        fields={"id": "string", "amount": "float64", "day": "date", "ok": "bool"},
    )
    assert result.dead_letters.num_rows == 0
    row = result.rows.to_pylist()[0]
    assert row["amount"] == 12.5
    assert row["day"] == dt.date(2026, 1, 2)
    assert row["ok"] is True
    assert row["_bw_offset"] == 1


def test_uncastable_value_is_a_rejection_with_original_payload():
    result = run(
        [{"id": "1", "amount": "12.5"}, {"id": "2", "amount": "abc"}, {"id": "3", "amount": None}],
        fields={"id": "string", "amount": "float64"},
    )
    assert [row["id"] for row in result.rows.to_pylist()] == ["1", "3"]
    (letter,) = dead(result)
    assert letter["errorMessage"] == "amount: 'abc' is not a valid float64"
    assert letter["rule"] == "type:amount"
    assert letter["step"] == "check"
    assert letter["run_id"] == "run-1"
    assert letter["source"] == "orders.jsonl"
    assert letter["offset"] == 2
    assert json.loads(letter["payloadString"]) == {"id": "2", "amount": "abc"}
    assert result.dead_letters.schema == DEAD_LETTER_SCHEMA


def test_integer_overflow_and_fractions_reject_only_their_rows():
    result = run(
        [{"q": "1"}, {"q": "99999999999999999999"}, {"q": "2.5"}, {"q": "7"}],
        fields={"q": "int64"},
    )
    assert result.rows.column("q").to_pylist() == [1, 7]
    assert [d["offset"] for d in dead(result)] == [2, 3]


def test_required_field_missing_or_null():
    result = run(
        [{"id": None}, {"id": "x"}],
        fields={"id": "string", "name": "string"},
        required=["id", "name"],
    )
    assert result.rows.num_rows == 0
    messages = [d["errorMessage"] for d in dead(result)]
    assert messages[0] == "id: required field is null; name: required field is missing"
    assert messages[1] == "name: required field is missing"


@pytest.mark.parametrize(
    "rule, values, failing, message",
    [
        (r.NotNull(id="nn", field="v"), ["a", None], [1], "v: is null or missing"),
        (
            r.Between(id="b", field="v", min=0, max=10),
            [5, -1, 11, None],
            [1, 2],
            "v: -1 is outside 0 <= value <= 10",
        ),
        (
            r.Between(id="b", field="v", min=0, exclusive=True),
            [0, 1],
            [0],
            "v: 0 is outside 0 < value",
        ),
        (
            r.Regex(id="re", field="v", pattern=r"[a-z]+@[a-z]+\.com"),
            ["a@b.com", "a@b.comx", None],
            [1],
            "v: 'a@b.comx' does not match /[a-z]+@[a-z]+\\.com/",
        ),
        (
            r.InSet(id="in", field="v", values=("paid", "shipped")),
            ["paid", "lost", None],
            [1],
            "v: 'lost' is not one of ['paid', 'shipped']",
        ),
        (
            r.Length(id="len", field="v", min=2, max=2),
            ["US", "USA", "U"],
            [1, 2],
            "v: length 3 is outside [2, 2]",
        ),
        (
            r.Unique(id="u", field="v"),
            ["a", "b", "a", None, None, "a"],
            [2, 5],
            "v: 'a' is a duplicate within the batch",
        ),
        (
            r.Expression(id="e", expr="v > 1", message="v must exceed 1"),
            [2, 1, None],
            [1, 2],
            "v must exceed 1",
        ),
    ],
)
def test_each_rule_rejects_exactly_its_rows(rule, values, failing, message):
    result = run([{"v": v} for v in values], rules=[rule])
    letters = dead(result)
    assert [d["offset"] - 1 for d in letters] == failing
    assert letters[0]["errorMessage"] == message
    assert letters[0]["rule"] == rule.id
    assert result.rows.num_rows == len(values) - len(failing)
    assert result.rule_failures[rule.id] == len(failing)


def test_a_row_failing_several_rules_is_rejected_once_with_every_reason():
    result = run(
        [{"a": -5, "s": "zzz"}],
        rules=[
            r.Between(id="range", field="a", min=0),
            r.InSet(id="set", field="s", values=("x",)),
        ],
    )
    (letter,) = dead(result)
    assert letter["rule"] == "range,set"
    assert letter["errorMessage"] == "a: -5 is outside 0 <= value; s: 'zzz' is not one of ['x']"


def test_warning_rules_count_but_do_not_reject():
    result = run(
        [{"a": -1}, {"a": 1}], rules=[r.Between(id="w", field="a", min=0, severity="warning")]
    )
    assert result.rows.num_rows == 2
    assert result.dead_letters.num_rows == 0
    assert result.rule_failures == {"w": 1}


@pytest.mark.parametrize(
    "mode, kept_columns, rejected",
    [("keep", ["a", "extra"], 0), ("drop", ["a"], 0), ("reject", ["a"], 1)],
)
def test_additional_fields(mode, kept_columns, rejected):
    result = run(
        [{"a": 1, "extra": "x"}, {"a": 2, "extra": None}],
        fields={"a": "int64"},
        additional_fields=mode,
    )
    assert [c for c in result.rows.column_names if not c.startswith("_bw")] == kept_columns
    assert result.dead_letters.num_rows == rejected


def test_nulls_everywhere_and_all_null_columns():
    result = run(
        [{"a": None, "b": None}] * 3,
        fields={"a": "float64", "b": "date"},
        rules=[r.Between(id="b", field="a", min=0), r.InSet(id="s", field="b", values=("x",))],
    )
    assert result.rows.num_rows == 3
    assert result.rows.schema.field("a").type == pa.float64()


def test_nested_field_rule():
    result = run(
        [{"customer": {"tier": "gold"}}, {"customer": {"tier": "tin"}}],
        rules=[r.InSet(id="tier", field="customer.tier", values=("gold", "silver"))],
    )
    assert [d["offset"] for d in dead(result)] == [2]


def test_unknown_type_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown field types"):
        Validator(step_name="v", fields={"a": "decimal"})
