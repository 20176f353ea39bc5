"""``expect_column_values_to_be_unique`` on the whole input (transforms/gx_unique.py): a value
repeated in two batches (on two workers) is caught, every row holding it is dead-lettered, as
GX judging the whole input at once says."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.expectations import ExpectationSuite
from transforms.gx_unique import canonical_keys
from transforms.validate import Validate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

UNIQUE = "expect_column_values_to_be_unique"
FLOATS = [0.0, -0.0, 1.0, 2.5, -3.0, math.inf, math.nan, 1e300]
STRINGS = ["", " ", "a", "A", "ü", "日本", "a\n", "1", "new"]


def _batches(rng: random.Random, count: int) -> list[pa.Table]:
    """Random batches; every row carries its input position in ``pos``."""
    out, pos = [], 0
    for _ in range(count):
        n = rng.randint(0, 30)

        def draw(pool: list[Any], nulls: float, n: int = n) -> list[Any]:
            return [None if rng.random() < nulls else rng.choice(pool) for _ in range(n)]

        out.append(
            pa.table(
                {
                    "pos": pa.array(range(pos, pos + n), pa.int64()),
                    "id": pa.array(draw(list(range(200)), 0.1), pa.int64()),
                    "f": pa.array(draw(FLOATS, 0.1), pa.float64()),
                    "s": pa.array(draw(STRINGS, 0.2), pa.string()),
                    "x": pa.array(draw([0, 5, 50, 500], 0.0), pa.int64()),
                }
            )
        )
        pos += n
    return out


def _suite(rng: random.Random) -> ExpectationSuite:
    def mostly() -> dict[str, float]:
        return {"mostly": rng.choice([0.5, 0.9])} if rng.random() < 0.5 else {}

    return ExpectationSuite(
        {
            "name": "whole",
            "expectations": [
                {"type": UNIQUE, "kwargs": {"column": "id", **mostly()}},
                {"type": UNIQUE, "kwargs": {"column": "f", **mostly()}},
                {"type": UNIQUE, "kwargs": {"column": "s", **mostly()}},
                # rejects rows of its own: their values still count for uniqueness
                {"type": "expect_column_values_to_be_between",
                 "kwargs": {"column": "x", "max_value": 100}},
            ],
        }
    )  # fmt: skip


def _validate(p: beam.Pipeline, batches: list[pa.Table], suite: ExpectationSuite) -> Any:
    """(kept positions, (position, error message) of the dead letters) of a validate step."""
    out = p | beam.Create(batches, reshuffle=False) | Validate(step_name="v", expectations=suite)
    kept = out.rows | "Kept" >> beam.FlatMap(lambda t: t.column("pos").to_pylist())
    dead = out.dead_letters | "Dead" >> beam.FlatMap(
        lambda t: [(json.loads(row)["pos"], error) for row, error in
                   zip(t.column("payloadString").to_pylist(),
                       t.column("errorMessage").to_pylist(), strict=True)]
    )  # fmt: skip
    return kept, dead


def _gx_verdict(batches: list[pa.Table], suite: ExpectationSuite) -> dict[int, list[str]]:
    """GX on the whole input at once: position -> reasons of the expectations it fails."""
    whole = pa.concat_tables(batches)
    gx = suite.evaluate(whole.drop_columns(["pos"]), compiled=False)
    positions = whole.column("pos").to_pylist()
    reasons: dict[int, list[str]] = {}
    for index in sorted(gx.unexpected):
        text = gx.reasons[index] + (" on the whole input" if index < 3 else "")
        for row in gx.unexpected[index].tolist():
            reasons.setdefault(positions[row], []).append(text)
    return reasons


@pytest.mark.parametrize(
    "workers", [[], ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]]
)
def test_values_repeated_across_batches_fail_every_row_as_gx_on_the_whole_input(
    workers: list[str],
) -> None:
    rng = random.Random(f"16:{len(workers)}")
    batches = _batches(rng, 8)
    suite = _suite(rng)
    expected = _gx_verdict(batches, suite)
    assert any(len(v) > 1 for v in expected.values())  # the draw has rows failing several
    total = sum(b.num_rows for b in batches)
    with TestPipeline(runner="FnApiRunner", options=PipelineOptions(workers)) as p:
        kept, dead = _validate(p, batches, suite)
        wanted = [(pos, "; ".join(reasons)) for pos, reasons in sorted(expected.items())]
        assert_that(dead, equal_to(wanted), "dead")
        assert_that(kept, equal_to([i for i in range(total) if i not in expected]), "kept")


def test_one_value_is_one_key_whatever_the_batch_typed_it() -> None:
    keys = canonical_keys(pa.array([1, 1.0, -0.0, 0, None, math.nan, 2.5], pa.float64()))
    ints = canonical_keys(pa.array([1, 0, 2**53, 2**53 + 1], pa.int64()))
    assert keys[0] == keys[1] == ints[0] and keys[2] == keys[3] == ints[1]
    assert keys[4].as_py() is None and keys[5].as_py() is None  # missing: skipped, as GX does
    assert ints[2] != ints[3]  # an int column keeps its precision
    assert canonical_keys(pa.array(["1"]))[0] != ints[0]


def test_an_int_batch_and_a_float_batch_share_values() -> None:
    suite = ExpectationSuite(
        {"name": "u", "expectations": [{"type": UNIQUE, "kwargs": {"column": "id"}}]}
    )
    batches = [
        pa.table({"pos": [0, 1], "id": pa.array([1, 2], pa.int64())}),
        pa.table({"pos": [2, 3], "id": pa.array([1.0, 3.5], pa.float64())}),
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        kept, dead = _validate(p, batches, suite)
        assert_that(kept, equal_to([1, 3]), "kept")
        assert_that(dead | beam.Map(lambda d: d[0]), equal_to([0, 2]), "dead")
