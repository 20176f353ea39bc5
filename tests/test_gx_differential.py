"""GX is the oracle: the Arrow kernels of transforms.gx_compile against GX itself.

Random tables (nulls, NaN, ±0, ±inf, empty strings, whitespace, unicode, dates, values on the
bounds) and random kwargs for every compiled expectation type; the compiled kernels must give
exactly GX's unexpected rows, ``unexpected_count`` and ``success`` (``mostly`` included).

Two oracles, because a full GX validation costs ~25 ms an expectation:

* ``test_compiled_kernels_agree_with_gx_metric_functions``: ``GX_DIFF_CASES`` (default 1,000)
  random cases per type, each a random table (its own columns) and a random config, judged by
  GX's own metric condition functions through :mod:`tests.gx_oracle`. A condition call costs
  ~0.15 ms (between) to ~1.5 ms (regex lists) whatever the rows, so cases alike but for their
  data and ``mostly`` (same other kwargs, same column types and null shape, hence the same
  pandas dtypes) are stacked into one frame for one call, each case judged from its own rows
  and ``mostly`` (uniqueness case by case); the kernels still run on each case's own table;
* ``test_compiled_kernels_and_metric_oracle_agree_with_full_gx``: ``CONFIGS`` (default 25)
  random cases per type through a full GX validation (``ExpectationSuite.evaluate(table,
  compiled=False)``), which both the kernels *and* the metric oracle must match, so the
  oracle's glue around GX's functions cannot drift from GX.

Why not 10,000 cases a type by default: stacking only saves calls where cases share kwargs;
random regexes and value sets rarely do, and one call per case of GX's regex functions and of
the kernels (RE2 compiles each translated pattern) is most of the time. Measured figures are
in docs/architecture.md ("Great Expectations suites").

Environment: ``GX_DIFF_SEED`` (default 16) picks the random draw; ``GX_DIFF_CASES`` and
``GX_DIFF_CONFIGS`` run more, e.g. ``GX_DIFF_CASES=10000 GX_DIFF_CONFIGS=500``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests import gx_oracle
from transforms import gx_compile
from transforms.expectations import ExpectationSuite
from transforms.gx_table import DATASET_TYPES, Partial, judge, metrics_needed, supported

# GX and pandas warn about the random patterns on the oracle's side (match groups, "possible
# nested set"); the verdicts are what is compared.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SEED = int(os.environ.get("GX_DIFF_SEED", "16"))
CONFIGS = int(os.environ.get("GX_DIFF_CONFIGS", "25"))
CASES_PER_TYPE = int(os.environ.get("GX_DIFF_CASES", "1000"))
CHUNK = 500  # cases sharing one Arrow table (one column set each) and one to_pandas call
ROWS = 70
ROW_COUNTS = [0, 1, 2, 3, 5, 8, 13, 21, 34]
PER_SUITE = 25
TABLE_CONFIGS = max(8, CONFIGS // 3)

INTS = [0, 1, -1, 2, 3, 5, 10, -10, 100, 2**31, -(2**31), 7, 42]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.0, 2.5, 10.0, 1e-300, -1e300, 3.25, math.inf,
          -math.inf, math.nan]  # fmt: skip
STRINGS = ["", " ", "a", "ab", "abc", "ABC", "a@x.com", "b@y.org", "no-at", "ü", "日本",
           "日本語", "\n", "abc\n", "a\nb", "  x", "x\t", "1", "12", "123", "\u00a0", "é",
           "e\u0301", "😀", "a.b", "x_y", "٣", "new", "paid", "shipped", "DE", "USA", "[a]",
           "\x0b", "\u2028", "aa", "aaa", "Ab1"]  # fmt: skip
REGEX_ATOMS = ["^", "$", "a", "b", "\\d", "\\s", "\\w", "\\D", "\\S", "\\W", ".", "[a-c]",
               "[^@\\s]", "@", "\\.", "日", "é", "x{2}", "a{,2}", "(ab|c)", "(?:a|b)", "+",
               "*", "?", "[\\d]", "[\\w-]", "\\n", "\\u00e9", "[[]", "\\t"]  # fmt: skip
# type names numpy resolves (GX's first resolution step): the ones compiled
TYPE_NAMES = ["int", "int64", "int32", "int8", "uint8", "long", "int_", "i8", "float",
              "float64", "float32", "float16", "f8", "str", "U", "S", "bytes", "object", "O",
              "object_", "bool", "complex", "datetime64", "M8[ns]"]  # fmt: skip
MOSTLY = [None, None, None, 1.0, 0.95, 0.8, 0.5, 0.1, 0.0]


def _column(rng: random.Random, kind: str, rows: int = ROWS) -> pa.Array:
    null_rate = rng.choice([0.0, 0.0, 0.1, 0.4, 1.0])
    if kind == "int":
        pool = rng.sample(INTS, rng.randint(2, len(INTS)))
        values = [None if rng.random() < null_rate else rng.choice(pool) for _ in range(rows)]
        return pa.array(values, pa.int64())
    if kind == "float":
        pool = rng.sample(FLOATS, rng.randint(2, len(FLOATS)))
        values = [None if rng.random() < null_rate else rng.choice(pool) for _ in range(rows)]
        return pa.array(values, pa.float64())
    if kind == "string":
        pool = rng.sample(STRINGS, rng.randint(2, len(STRINGS)))
        values = [None if rng.random() < null_rate else rng.choice(pool) for _ in range(rows)]
        return pa.array(values, pa.string())
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 5)) for _ in range(3)]
    values = [None if rng.random() < null_rate else rng.choice(days) for _ in range(rows)]
    return pa.array(values, pa.date32())


def _mostly(rng: random.Random, kwargs: dict[str, Any]) -> dict[str, Any]:
    mostly = rng.choice(MOSTLY)
    if mostly is None and rng.random() < 0.3:
        mostly = round(rng.random(), 3)
    return kwargs if mostly is None else {**kwargs, "mostly": mostly}


def _bound(rng: random.Random, kind: str) -> Any:
    if kind == "length":
        return rng.choice([0, 1, 2, 3, 4, 2.0])
    if kind == "int":
        return rng.choice(INTS + [0.5, 2.5])
    if kind == "float":
        return rng.choice([v for v in FLOATS if math.isfinite(v)] + [0, 1, 2])
    return rng.choice(STRINGS)


def _bounds(rng: random.Random, kind: str) -> dict[str, Any]:
    low, high = _bound(rng, kind), _bound(rng, kind)
    if low > high:
        low, high = high, low
    shape = rng.choice(["both", "min", "max"])
    out: dict[str, Any] = {}
    if shape in ("both", "min"):
        out["min_value"] = low
    if shape in ("both", "max"):
        out["max_value"] = high
    for key in ("strict_min", "strict_max"):
        if rng.random() < 0.4:
            out[key] = rng.random() < 0.5
    return out


def _value_set(rng: random.Random, kind: str) -> list[Any]:
    pool = STRINGS if kind == "string" else INTS + [v for v in FLOATS if abs(v) <= 2.0**53]
    return rng.sample(pool, rng.randint(0, 6))


def _regex(rng: random.Random) -> str:
    while True:
        pattern = "".join(rng.choice(REGEX_ATOMS) for _ in range(rng.randint(1, 4)))
        re2 = gx_compile.to_re2(pattern)
        if re2 is not None and gx_compile.re2_compiles(re2):
            return pattern


# type -> (column kinds to draw, kwargs from (rng, column names, kinds))
Maker = Callable[[random.Random, list[str], list[str]], dict[str, Any]]
NUM, ANY = ["int", "float"], ["int", "float", "string", "date"]
CASES: dict[str, tuple[list[list[str]], Maker]] = {
    "expect_column_values_to_not_be_null": ([[k] for k in ANY], lambda r, c, k: {"column": c[0]}),
    "expect_column_values_to_be_null": ([[k] for k in ANY], lambda r, c, k: {"column": c[0]}),
    "expect_column_values_to_be_between": (
        [["int"], ["float"]],
        lambda r, c, k: {"column": c[0], **_bounds(r, k[0])},
    ),
    "expect_column_value_lengths_to_be_between": (
        [["string"]],
        lambda r, c, k: {"column": c[0], **_bounds(r, "length")},
    ),
    "expect_column_value_lengths_to_equal": (
        [["string"]],
        lambda r, c, k: {"column": c[0], "value": r.randint(0, 4)},
    ),
    "expect_column_values_to_be_in_set": (
        [["int"], ["float"], ["string"]],
        lambda r, c, k: {"column": c[0], "value_set": _value_set(r, k[0])},
    ),
    "expect_column_values_to_not_be_in_set": (
        [["int"], ["float"], ["string"]],
        lambda r, c, k: {"column": c[0], "value_set": _value_set(r, k[0])},
    ),
    "expect_column_values_to_match_regex": (
        [["string"]],
        lambda r, c, k: {"column": c[0], "regex": _regex(r)},
    ),
    "expect_column_values_to_not_match_regex": (
        [["string"]],
        lambda r, c, k: {"column": c[0], "regex": _regex(r)},
    ),
    "expect_column_values_to_match_regex_list": (
        [["string"]],
        lambda r, c, k: {
            "column": c[0],
            "regex_list": [_regex(r) for _ in range(r.randint(1, 3))],
            **({"match_on": r.choice(["any", "all"])} if r.random() < 0.7 else {}),
        },
    ),
    "expect_column_values_to_not_match_regex_list": (
        [["string"]],
        lambda r, c, k: {"column": c[0], "regex_list": [_regex(r) for _ in range(r.randint(1, 3))]},
    ),
    "expect_column_values_to_be_unique": ([[k] for k in ANY], lambda r, c, k: {"column": c[0]}),
    "expect_column_pair_values_to_be_equal": (
        [["int", "int"], ["int", "float"], ["float", "float"], ["string", "string"]],
        lambda r, c, k: {
            "column_A": c[0],
            "column_B": c[1],
            **(
                {"ignore_row_if": r.choice(["both_values_are_missing", "either_value_is_missing", "neither"])}
                if r.random() < 0.7
                else {}
            ),
        },
    ),
    "expect_multicolumn_sum_to_equal": (
        [["int", "int"], ["int", "float"], ["float", "float"], ["int", "int", "int"], ["int"] * 4],
        lambda r, c, k: {
            "column_list": c,
            "sum_total": r.choice([0, 1, 2, 3, 1.5, 10, -1, 4]),
            **(
                {"ignore_row_if": r.choice(["all_values_are_missing", "any_value_is_missing", "never"])}
                if r.random() < 0.7
                else {}
            ),
        },
    ),
    "expect_column_values_to_be_of_type": (
        [[k] for k in ANY],
        lambda r, c, k: {"column": c[0], "type_": r.choice(TYPE_NAMES)},
    ),
    "expect_column_values_to_be_in_type_list": (
        [["int"], ["float"], ["date"]],
        lambda r, c, k: {"column": c[0], "type_list": r.sample(TYPE_NAMES, r.randint(1, 3))},
    ),
}  # fmt: skip


def test_every_compiled_type_is_in_the_differential_test() -> None:
    assert set(CASES) == gx_compile.COMPILED_TYPES


@pytest.mark.parametrize(
    ("arrow_type", "kwargs"),
    [
        (pa.string(), {"type_": "string"}),  # numpy refuses the name: GX looks in pandas
        (pa.int64(), {"type_": "Int64Dtype"}),
        (pa.string(), {"type_list": ["str"]}),  # StringDtype's own == decides
        (pa.bool_(), {"type_": "bool"}),  # not modelled: object with nulls, bool without
        (pa.timestamp("us"), {"type_": "datetime64"}),
        (pa.int64(), {"type_list": []}),
    ],
)
def test_type_checks_pandas_would_decide_are_left_to_gx(
    arrow_type: pa.DataType, kwargs: dict[str, Any]
) -> None:
    exp_type = "expect_column_values_to_be_" + ("of_type" if "type_" in kwargs else "in_type_list")
    schema = pa.schema([("c", arrow_type)])
    assert gx_compile.compile_expectation(exp_type, {"column": "c", **kwargs}, schema) is None
    # the same expectation on an int column with a numpy name does compile
    numpy_name = {"type_": "int64"} if "type_" in kwargs else {"type_list": ["int64"]}
    int_schema = pa.schema([("c", pa.int64())])
    assert gx_compile.compile_expectation(exp_type, {"column": "c", **numpy_name}, int_schema)


def _suite_and_table(
    rng: random.Random, exp_type: str, count: int, rows: int = ROWS
) -> tuple[ExpectationSuite, pa.Table]:
    """``count`` random expectations of ``exp_type``, each on random columns of its own."""
    shapes, make = CASES[exp_type]
    columns: dict[str, pa.Array] = {}
    expectations = []
    for j in range(count):
        kinds = rng.choice(shapes)
        names = [f"c{j}_{i}" for i in range(len(kinds))]
        for name, kind in zip(names, kinds, strict=True):
            columns[name] = _column(rng, kind, rows)
        # a second column drawn from the first one's values makes pairs often equal
        if len(kinds) == 2 and kinds[0] == kinds[1] and rng.random() < 0.5:
            base = columns[names[0]].to_pylist()
            columns[names[1]] = pa.array(
                [v if rng.random() < 0.8 else None for v in base], columns[names[0]].type
            )
        expectations.append({"type": exp_type, "kwargs": _mostly(rng, make(rng, names, kinds))})
    suite = ExpectationSuite({"name": "differential", "expectations": expectations})
    return suite, pa.table(columns) if columns else pa.table({})


def _compiled(suite: ExpectationSuite, table: pa.Table) -> list[gx_compile.CompiledCheck]:
    assert not suite.needs_gx()  # every drawn expectation may compile ...
    compiled, through_gx = suite._plan(table.schema)
    assert through_gx == ()  # ... and does, on these column types
    return [compiled[i] for i in range(len(compiled))]


def _shown(table: pa.Table, kwargs: dict[str, Any], rows: list[int]) -> Any:
    return table.select(_cols(kwargs)).take(pa.array(rows[:5], pa.int64())).to_pylist()


_DOMAIN = ("column", "column_A", "column_B", "column_list")


def _state(values: pa.ChunkedArray) -> str:
    """What decides the dtype pandas gives a column (an int column with a null is float64)."""
    if not len(values):
        return "empty"
    if values.null_count:
        return "all null" if values.null_count == len(values) else "some null"
    return "no null"


def _gx_verdicts(
    exp_type: str, cases: list[dict[str, Any]], table: pa.Table
) -> list[gx_oracle.Verdict]:
    """GX's metric-function verdict on each case (``cases[i]``'s kwargs on its own columns of
    ``table``). Cases alike but for their data and ``mostly`` (same other kwargs, same Arrow
    types and null shape, so the same pandas dtypes) are stacked into one frame and judged by
    one condition call, each case from its own rows; uniqueness is judged case by case."""
    groups: dict[tuple, list[int]] = {}
    for i, kwargs in enumerate(cases):
        names = _cols(kwargs)
        key = (
            repr(sorted((k, v) for k, v in kwargs.items() if k not in (*_DOMAIN, "mostly"))),
            tuple((str(table.column(n).type), _state(table.column(n))) for n in names),
            i if exp_type == "expect_column_values_to_be_unique" else None,
        )
        groups.setdefault(key, []).append(i)
    # as ExpectationSuite hands a batch to GX: pyarrow converts each column on its own
    frame = table.to_pandas(ignore_metadata=True)
    out: dict[int, gx_oracle.Verdict] = {}
    for members in groups.values():
        names = [f"x{j}" for j in range(len(_cols(cases[members[0]])))]
        stacked = pd.DataFrame(
            {
                name: pd.concat([frame[_cols(cases[i])[j]] for i in members], ignore_index=True)
                for j, name in enumerate(names)
            }
        )
        each = [_renamed(cases[i], names) for i in members]
        bounds = [j * table.num_rows for j in range(len(members) + 1)]
        verdicts = gx_oracle.verdicts(exp_type, each, stacked, bounds)
        out.update(zip(members, verdicts, strict=True))
    return [out[i] for i in range(len(cases))]


def _renamed(kwargs: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``kwargs`` on the stacked frame's columns ``names`` (in the order ``_cols`` lists them)."""
    if "column_list" in kwargs:
        return {**kwargs, "column_list": names}
    if "column_A" in kwargs:
        return {**kwargs, "column_A": names[0], "column_B": names[1]}
    return {**kwargs, "column": names[0]}


@pytest.mark.parametrize("exp_type", sorted(CASES))
def test_compiled_kernels_agree_with_gx_metric_functions(exp_type: str) -> None:
    rng = random.Random(f"{SEED}:low:{exp_type}")
    judged = 0
    while judged < CASES_PER_TYPE:
        count = min(CHUNK, CASES_PER_TYPE - judged)
        suite, table = _suite_and_table(rng, exp_type, count, rng.choice(ROW_COUNTS))
        cases = [kwargs for _, kwargs, _ in suite.expectations]
        gx = _gx_verdicts(exp_type, cases, table)
        for check, kwargs, theirs in zip(_compiled(suite, table), cases, gx, strict=True):
            # each case on its own table: the kernels look its columns up by name
            rows, success, count_ = check.evaluate(table.select(_cols(kwargs)))
            where = f"seed {SEED}, {exp_type} {kwargs}: {table.select(_cols(kwargs))}"
            differ = sorted(set(rows.tolist()) ^ set(theirs.rows))
            assert rows.tolist() == theirs.rows, f"{where}\nrows {differ[:5]} differ: " + str(
                _shown(table, kwargs, differ)
            )
            assert count_ == theirs.unexpected_count, where
            assert success == theirs.success, where
            if judged % 50 == 0:  # stacking must not change GX's verdict: the case on its own
                own = table.select(_cols(kwargs)).to_pandas(ignore_metadata=True)
                assert gx_oracle.verdict(exp_type, kwargs, own) == theirs, where
            judged += 1
    assert judged == CASES_PER_TYPE


@pytest.mark.parametrize("exp_type", sorted(CASES))
def test_compiled_kernels_and_metric_oracle_agree_with_full_gx(exp_type: str) -> None:
    rng = random.Random(f"{SEED}:{exp_type}")
    judged = 0
    for start in range(0, CONFIGS, PER_SUITE):
        suite, table = _suite_and_table(rng, exp_type, min(PER_SUITE, CONFIGS - start))
        _compiled(suite, table)
        ours = suite.evaluate(table)
        gx = suite.evaluate(table, compiled=False)
        frame = table.to_pandas(ignore_metadata=True)
        for index, (mine, theirs) in enumerate(zip(ours.outcomes, gx.outcomes, strict=True)):
            where = f"seed {SEED}, {exp_type} {mine.kwargs}: {table.select(_cols(mine.kwargs))}"
            assert theirs.error is None, where + f" GX error {theirs.error}"
            mine_rows = ours.unexpected.get(index, np.empty(0, np.int64)).tolist()
            gx_rows = gx.unexpected.get(index, np.empty(0, np.int64)).tolist()
            differ = sorted(set(mine_rows) ^ set(gx_rows))
            shown = _shown(table, mine.kwargs, differ)
            assert mine_rows == gx_rows, f"{where}\nrows {differ[:5]} differ: {shown}"
            assert mine.unexpected_count == theirs.unexpected_count, where
            assert mine.success == theirs.success, where
            oracle = gx_oracle.verdict(exp_type, mine.kwargs, frame)
            assert (oracle.rows, oracle.unexpected_count, oracle.success) == (
                gx_rows,
                theirs.unexpected_count,
                theirs.success,
            ), f"metric oracle {oracle} is not GX's verdict: {where}"
            judged += 1
    assert judged == CONFIGS


def _cols(kwargs: dict[str, Any]) -> list[str]:
    return [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs] + list(
        kwargs.get("column_list", [])
    )


def test_mostly_counts_and_dead_letters_every_unexpected_row_as_gx_lists_it() -> None:
    # GX lists the failing rows of an expectation that passes thanks to `mostly`; so do we,
    # and the validate step dead-letters them (see transforms.gx_compile).
    from transforms.validate import Validator

    suite = ExpectationSuite(
        {
            "name": "s",
            "expectations": [
                {"type": "expect_column_values_to_be_in_set",
                 "kwargs": {"column": "s", "value_set": ["a"], "mostly": 0.5}},
            ],
        }
    )  # fmt: skip
    table = pa.table({"s": ["a", "a", "b", None, "a"]})
    gx = suite.evaluate(table, compiled=False)
    assert gx.outcomes[0].success and gx.unexpected[0].tolist() == [2]
    ours = suite.evaluate(table)
    assert ours.outcomes[0].success and ours.unexpected[0].tolist() == [2]
    result = Validator(step_name="v", expectations=suite).process(table)
    assert result.rows.column("s").to_pylist() == ["a", "a", None, "a"]
    assert result.dead_letters.num_rows == 1


# -- table-level expectations: merged partials against GX on the whole table -------------------

TABLE_CASES = sorted(DATASET_TYPES)


def _table_kwargs(rng: random.Random, exp_type: str, kind: str) -> dict[str, Any]:
    if exp_type == "expect_table_row_count_to_equal":
        return {"value": rng.choice([0, 40, 60, 61, 70])}
    if exp_type == "expect_table_row_count_to_be_between":
        low, high = sorted(rng.sample([0, 30, 40, 60, 70, 100, 140], 2))
        return {"min_value": low, "max_value": high} | _strict(rng)
    if "distinct_values" in exp_type:
        return {"column": "x", "value_set": _value_set(rng, kind) or [1]}
    if "proportion" in exp_type:
        low, high = sorted([round(rng.random(), 2), round(rng.random(), 2)])
        return {"column": "x", "min_value": low, "max_value": high} | _strict(rng)
    if "unique_value_count" in exp_type:
        low, high = sorted(rng.sample(range(0, 12), 2))
        return {"column": "x", "min_value": low, "max_value": high} | _strict(rng)
    bounds = _bounds(rng, "float")
    return {"column": "x", **bounds}


def _strict(rng: random.Random) -> dict[str, bool]:
    return {k: rng.random() < 0.5 for k in ("strict_min", "strict_max") if rng.random() < 0.4}


@pytest.mark.parametrize("exp_type", TABLE_CASES)
def test_table_expectations_on_merged_partials_agree_with_gx(exp_type: str) -> None:
    rng = random.Random(f"{SEED}:{exp_type}")
    numeric = not ("distinct" in exp_type or "unique" in exp_type)
    for _ in range(TABLE_CONFIGS):
        kind = rng.choice(NUM if numeric else ["int", "string"])
        values = _column(rng, kind)
        if kind == "float":  # GX's mean/sum over an infinity is not compared here
            values = pa.array([None if v is not None and math.isinf(v) else v
                               for v in values.to_pylist()], pa.float64())  # fmt: skip
        table = pa.table({"x": pa.concat_arrays([values, _column(rng, kind).cast(values.type)])})
        table = table.slice(0, rng.randint(0, table.num_rows))
        kwargs = _table_kwargs(rng, exp_type, kind)
        assert supported(exp_type, kwargs), kwargs
        # the oracle: GX on the whole table, through a GX-only suite
        suite = ExpectationSuite(
            {"name": "t", "expectations": [{"type": exp_type, "kwargs": kwargs}]}
        )
        (theirs,) = suite.dataset_level_with_gx(table)
        # ours: the same table cut into random partials, merged in a random order
        partials = []
        cuts = sorted(rng.sample(range(table.num_rows + 1), min(3, table.num_rows + 1)))
        for a, b in zip([0, *cuts], [*cuts, table.num_rows], strict=True):
            p = Partial(metrics_needed([(exp_type, kwargs)]))
            p.add(table.slice(a, b - a))
            partials.append(Partial.from_json(p.to_json()))
        rng.shuffle(partials)
        merged = partials[0]
        for p in partials[1:]:
            merged.merge(p)
        mine = judge(exp_type, kwargs, merged)
        where = f"{exp_type} {kwargs} on {table.column('x').to_pylist()}"
        assert mine["success"] == theirs.success, where + f" ours {mine} GX {theirs}"
        assert theirs.error is None, where + f" GX error {theirs.error}"
        expected = theirs.observed_value
        if expected is None and "distinct_values" in exp_type:
            continue  # GX leaves the observed value set out of its result; success compared
        if isinstance(expected, float):
            assert mine["observed_value"] == pytest.approx(expected, rel=1e-9, abs=1e-12), where
        elif isinstance(expected, list):
            assert sorted(map(str, mine["observed_value"])) == sorted(map(str, expected)), where
        else:
            assert mine["observed_value"] == expected, where
