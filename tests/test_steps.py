"""map, filter, lookup, mask and aggregate steps: on Arrow batches and inside a Beam pipeline."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.records import with_positions
from connectors.secrets import EnvSecret, Secret
from transforms import rules as r
from transforms.aggregate import GroupAggregate
from transforms.filter import Filterer, FilterRows
from transforms.lookup import Joiner, Lookup
from transforms.map import MapRows, Reshaper
from transforms.mask import Mask, Masker
from transforms.validate import Validate


def batch(rows: list[dict]) -> pa.Table:
    return with_positions(pa.Table.from_pylist(rows), "in.jsonl", range(1, len(rows) + 1))


def user_rows(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("_bw")} for row in table.to_pylist()]


def test_map_renames_casts_derives_drops_in_order():
    step = Reshaper(
        step_name="shape",
        rename={"amt": "amount"},
        cast={"amount": "float64", "qty": "int64"},
        derive={"total": "amount * qty", "tag": "upper(kind)"},
        drop=["kind"],
    )
    result = step.process(
        batch([{"amt": "2.5", "qty": "4", "kind": "a"}, {"amt": "x", "qty": "1", "kind": "b"}])
    )
    assert user_rows(result.rows) == [{"amount": 2.5, "qty": 4, "total": 10.0, "tag": "A"}]
    (letter,) = result.dead_letters.to_pylist()
    assert letter["errorMessage"] == "amount: 'x' is not a valid float64"
    assert letter["offset"] == 2
    assert result.rows.column_names[-2:] == ["_bw_source", "_bw_offset"]


def test_map_select_keeps_positions():
    result = Reshaper(step_name="s", select=["b"]).process(batch([{"a": 1, "b": 2}]))
    assert result.rows.column_names == ["b", "_bw_source", "_bw_offset"]


def test_filter_counts_dropped_rows_as_filtered_not_rejected():
    result = Filterer(where="status == 'paid' and amount > 10").process(
        batch(
            [
                {"status": "paid", "amount": 20},
                {"status": "paid", "amount": None},
                {"status": "x", "amount": 50},
            ]
        )
    )
    assert user_rows(result.rows) == [{"status": "paid", "amount": 20}]
    assert result.filtered == 2
    assert result.dead_letters.num_rows == 0


REFERENCE = pa.table(
    {
        "customer_id": ["C1", "C2", "C2"],
        "segment": ["retail", "old", "enterprise"],
        "tier": ["gold", "x", "silver"],
    }
)


@pytest.mark.parametrize(
    "mode, kept, dead, filtered", [("keep", 3, 0, 0), ("reject", 2, 1, 0), ("drop", 2, 0, 1)]
)
def test_lookup_modes_and_last_duplicate_wins(mode, kept, dead, filtered):
    joiner = Joiner(step_name="enrich", keys=["customer_id"], fields=["segment"], on_missing=mode)
    result = joiner.process(
        batch(
            [
                {"customer_id": "C2", "n": 1},
                {"customer_id": "C9", "n": 2},
                {"customer_id": "C1", "n": 3},
            ]
        ),
        REFERENCE,
    )
    assert result.rows.num_rows == kept
    assert result.dead_letters.num_rows == dead
    assert result.filtered == filtered
    rows = user_rows(result.rows)
    assert rows[0] == {"customer_id": "C2", "n": 1, "segment": "enterprise"}  # input order kept
    if mode == "reject":
        assert result.dead_letters.column("errorMessage").to_pylist() == [
            "no lookup match for customer_id"
        ]
        assert result.dead_letters.column("offset").to_pylist() == [2]


def test_lookup_name_clash_needs_a_prefix():
    joiner = Joiner(step_name="enrich", keys=["customer_id"])
    with pytest.raises(ValueError, match="set 'prefix'"):
        joiner.process(batch([{"customer_id": "C1", "segment": "s"}]), REFERENCE)
    prefixed = Joiner(step_name="enrich", keys=["customer_id"], prefix="cust_")
    assert (
        "cust_segment"
        in prefixed.process(
            batch([{"customer_id": "C1", "segment": "s"}]), REFERENCE
        ).rows.column_names
    )


def test_lookup_casts_reference_keys_to_the_input_type():
    ref = pa.table({"id": ["1", "2"], "name": ["a", "b"]})
    result = Joiner(step_name="j", keys=["id"]).process(batch([{"id": 2}]), ref)
    assert user_rows(result.rows) == [{"id": 2, "name": "b"}]


def test_mask_resolves_secrets_on_the_worker_only(monkeypatch):
    monkeypatch.setenv("BW_TEST_KEY", "k" * 32)
    masker = Masker(
        fields=[{"field": "id", "strategy": "pseudonymize", "key": EnvSecret("BW_TEST_KEY")}]
    )
    import pickle

    blob = pickle.dumps(masker)
    assert b"k" * 32 not in blob
    restored = pickle.loads(blob)
    restored.setup()
    assert b"k" * 32 not in pickle.dumps(restored)
    out = restored.process(batch([{"id": "C1"}, {"id": "C1"}])).rows.column("id").to_pylist()
    assert out[0] == out[1] and out[0] != "C1"


def test_mask_refuses_literal_keys():
    with pytest.raises(TypeError, match="secret reference"):
        Masker(fields=[{"field": "id", "strategy": "pseudonymize", "key": b"literal-key-000000"}])


def test_secret_value_never_prints_or_pickles():
    secret = Secret(b"hunter2-hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(secret)


def test_aggregate_is_exact_across_batches():
    agg = GroupAggregate(
        ["s"],
        {
            "n": "count",
            "total": "sum(a)",
            "avg": "mean(a)",
            "d": "count_distinct(c)",
            "hi": "max(a)",
        },
    )
    left = agg.add_input(
        agg.create_accumulator(),
        pa.table({"s": ["x", "y", "x"], "a": [1, 2, 3], "c": ["p", "q", "p"]}),
    )
    right = agg.add_input(
        agg.create_accumulator(), pa.table({"s": ["x", "z"], "a": [10, None], "c": ["r", None]})
    )
    assert agg.extract_output(agg.merge_accumulators([left, right])).to_pylist() == [
        {"s": "x", "n": 3, "total": 14, "avg": 14 / 3, "d": 2, "hi": 10},
        {"s": "y", "n": 1, "total": 2, "avg": 2.0, "d": 1, "hi": 2},
        {"s": "z", "n": 1, "total": None, "avg": None, "d": 0, "hi": None},
    ]


def test_steps_compose_in_a_beam_pipeline_and_every_row_is_accounted_for(monkeypatch):
    monkeypatch.setenv("BW_TEST_KEY", "k" * 32)
    batches = [
        batch(
            [
                {"id": "1", "amount": "5", "email": "a@x.com"},
                {"id": "2", "amount": "bad", "email": "b@x.com"},
            ]
        ),
        batch(
            [
                {"id": "3", "amount": "-1", "email": "c@x.com"},
                {"id": "4", "amount": "7", "email": "d@y.org"},
            ]
        ),
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        tables = p | beam.Create(batches)
        checked = tables | Validate(
            step_name="v",
            fields={"amount": "float64"},
            rules=[r.Between(id="pos", field="amount", min=0)],
        )
        masked = checked.rows | Mask(
            step_name="m", fields=[{"field": "email", "strategy": "email_domain"}]
        )
        shaped = masked.rows | MapRows(step_name="shape", derive={"double": "amount * 2"})
        kept = shaped.rows | FilterRows(step_name="f", where="amount > 6")
        rows = kept.rows | beam.FlatMap(
            lambda t: [(r["id"], r["email"], r["double"]) for r in t.to_pylist()]
        )
        reasons = (
            (checked.dead_letters, masked.dead_letters, shaped.dead_letters, kept.dead_letters)
            | beam.Flatten()
            | beam.FlatMap(lambda t: t.column("rule").to_pylist())
        )
        assert_that(rows, equal_to([("4", "***@y.org", 14.0)]), label="rows")
        assert_that(reasons, equal_to(["type:amount", "pos"]), label="dead")


def test_lookup_side_input_in_a_beam_pipeline():
    with TestPipeline(runner="FnApiRunner") as p:
        orders = p | "orders" >> beam.Create(
            [batch([{"customer_id": "C1"}, {"customer_id": "C7"}])]
        )
        ref = p | "ref" >> beam.Create([REFERENCE.slice(0, 1), REFERENCE.slice(1)])
        out = orders | Lookup(
            ref, step_name="enrich", keys=["customer_id"], fields=["tier"], on_missing="reject"
        )
        assert_that(
            out.rows | beam.FlatMap(user_rows),
            equal_to([{"customer_id": "C1", "tier": "gold"}]),
            label="rows",
        )
        assert_that(
            out.dead_letters | beam.FlatMap(lambda t: t.column("offset").to_pylist()),
            equal_to([2]),
            label="dead",
        )


def test_bad_mask_options_fail_when_the_step_is_built():
    from transforms.masking import MaskError

    with pytest.raises(MaskError, match="boundaries"):
        Masker(fields=[{"field": "v", "strategy": "bucket", "boundaries": [10, 5]}])
