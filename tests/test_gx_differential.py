"""GX is the oracle: the Arrow kernels of transforms.gx_compile against GX itself.

Random tables (nulls, NaN, ±0, ±inf, empty strings, whitespace, unicode, dates, values on the
bounds) and random kwargs for every compiled expectation type; the compiled kernels must give
exactly GX's unexpected rows, ``unexpected_count`` and ``success`` (``mostly`` included).

Two oracles, because a full GX validation costs ~25 ms an expectation:

* ``test_compiled_kernels_agree_with_gx_metric_functions``: ``GX_DIFF_CASES`` (default
  10,000) random cases per type, judged by GX's own metric condition functions through
  :mod:`tests.gx_oracle`. A call (ours or GX's) costs ~0.1-1.5 ms whatever the rows, so each
  run draws ``GX_DIFF_POOL`` (default 100) random parameter sets per type (regexes, value
  sets, bounds, types, ``ignore_row_if``... each as random as a case of its own) and every
  case takes one, with random data (nulls, NaN, ±inf, empty strings, unicode, boundary values,
  0-34 rows) and ``mostly`` of its own. Cases alike but for data and ``mostly`` (same kwargs,
  Arrow types and null shape, hence the same pandas dtypes) are stacked: one GX condition call
  and one call of our kernel over the stacked columns (row verdicts are row-local), then each
  case is judged on its own rows: unexpected rows, ``unexpected_count``, and success with its
  own ``mostly`` (from our check on the case's own rows wherever the rows considered decide
  it; those GX considers must total ours over the group). Uniqueness is not row-local: a
  group is converted once, then each case gets its own GX call and check call. Every
  ``ALONE``-th case is also run alone through the suite's normal compiled path
  (``ExpectationSuite.evaluate``, what the validate step calls) against GX on its own frame,
  so stacking cannot hide a per-case difference;
* ``test_compiled_kernels_and_metric_oracle_agree_with_full_gx``: ``CONFIGS`` (default 25)
  random cases per type through a full GX validation (``ExpectationSuite.evaluate(table,
  compiled=False)``), which both the kernels *and* the metric oracle must match, so the
  oracle's glue around GX's functions cannot drift from GX.

Environment: ``GX_DIFF_SEED`` replays a draw (a new one each run otherwise, printed and in
every failure message); ``GX_DIFF_CASES``, ``GX_DIFF_POOL`` and ``GX_DIFF_CONFIGS`` run more,
e.g. ``GX_DIFF_CASES=100000 GX_DIFF_POOL=1000 GX_DIFF_CONFIGS=500``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests import gx_oracle
from transforms import gx_compile
from transforms.expectations import ExpectationSuite
from transforms.gx_table import DATASET_TYPES, Partial, judge, metrics_needed, supported

# GX and pandas warn about the random patterns on the oracle's side (match groups, "possible
# nested set"); the verdicts are what is compared.
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::RuntimeWarning"
)

# a new draw each run (printed, and in every failure message); GX_DIFF_SEED replays one
SEED = int(os.environ.get("GX_DIFF_SEED") or random.SystemRandom().randrange(1_000_000))
CONFIGS = int(os.environ.get("GX_DIFF_CONFIGS", "25"))
CASES_PER_TYPE = int(os.environ.get("GX_DIFF_CASES", "10000"))
POOL = int(os.environ.get("GX_DIFF_POOL", "100"))  # parameter sets per type and run
ALONE = 50  # every ALONE-th case is also judged on its own, through the suite's normal path
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


def _case_columns(rng: random.Random, kinds: list[str], rows: int) -> list[pa.Array]:
    """One case's random columns; a second column drawn from the first one's values makes
    pairs often equal."""
    arrays = [_column(rng, kind, rows) for kind in kinds]
    if len(kinds) == 2 and kinds[0] == kinds[1] and rng.random() < 0.5:
        base = arrays[0].to_pylist()
        arrays[1] = pa.array([v if rng.random() < 0.8 else None for v in base], arrays[0].type)
    return arrays


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
        columns.update(zip(names, _case_columns(rng, kinds, rows), strict=True))
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


def _state(values: pa.Array) -> str:
    """What decides the dtype pandas gives a column (an int column with a null is float64,
    other types keep theirs), and the edge cases kept apart: nothing, or nothing once GX
    drops the nulls."""
    if not len(values):
        return "empty"
    if values.null_count == len(values):
        return "all null"
    if pa.types.is_integer(values.type):
        return "some null" if values.null_count else "no null"
    return "some value"


Case = tuple[int, dict[str, Any], list[pa.Array]]  # (index, kwargs on x0, x1..., columns)


def _pool(rng: random.Random, exp_type: str) -> list[tuple[list[str], dict[str, Any]]]:
    """``POOL`` random parameter sets (column kinds, kwargs on columns ``x0``, ``x1``...), each
    drawn as randomly as a case of its own: the cases of a run share them, so many cases
    differ only in their data and ``mostly`` and are judged together."""
    shapes, make = CASES[exp_type]
    out = []
    for _ in range(POOL):
        kinds = rng.choice(shapes)
        out.append((kinds, make(rng, [f"x{i}" for i in range(len(kinds))], kinds)))
    return out


def _groups(rng: random.Random, exp_type: str) -> list[list[Case]]:
    """``CASES_PER_TYPE`` random cases (parameters from the pool, random data and ``mostly``
    of their own), grouped where they are alike but for data and ``mostly``: same kwargs, same
    Arrow types and null shape, so pandas gives the stacked columns the dtypes it gives each
    case's own."""
    pool = _pool(rng, exp_type)
    groups: dict[tuple, list[Case]] = {}
    for i in range(CASES_PER_TYPE):
        kinds, kwargs = rng.choice(pool)
        arrays = _case_columns(rng, kinds, rng.choice(ROW_COUNTS))
        key = (
            repr(sorted(kwargs.items())),
            tuple(kinds),
            tuple(_state(a) for a in arrays),
        )
        groups.setdefault(key, []).append((i, _mostly(rng, kwargs), arrays))
    return list(groups.values())


def _case_table(case: Case) -> pa.Table:
    return pa.table({f"x{j}": a for j, a in enumerate(case[2])})


def _segment_sums(mask: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The count of true values of ``mask`` in each segment ``bounds[k]:bounds[k + 1]``."""
    total = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    return total[bounds[1:]] - total[bounds[:-1]]


def _stacked(
    exp_type: str, members: list[Case]
) -> tuple[pa.Table, np.ndarray, dict[str, Any], gx_compile.CompiledCheck]:
    """The group's cases stacked (case ``k`` is rows ``bounds[k]:bounds[k + 1]``), their
    kwargs but ``mostly``, and our check for them (``mostly`` 1)."""
    names = [f"x{j}" for j in range(len(members[0][2]))]
    table = pa.table(
        {n: pa.concat_arrays([case[2][j] for case in members]) for j, n in enumerate(names)}
    )
    bounds = np.cumsum([0] + [len(case[2][0]) for case in members])
    bare = {k: v for k, v in members[0][1].items() if k != "mostly"}
    check = gx_compile.compile_expectation(exp_type, bare, table.schema)
    assert check is not None, f"seed {SEED}: {exp_type} {bare} does not compile on {table.schema}"
    return table, bounds, bare, check


def _judge_each(exp_type: str, members: list[Case]) -> None:
    """Uniqueness is not row-local: each case gets its own GX call and its own check, on its
    slice of the group's stacked table and frame (converted once: the same dtypes)."""
    table, bounds, _, check = _stacked(exp_type, members)
    frame = table.to_pandas(ignore_metadata=True)
    for case, a, b in zip(members, bounds.tolist(), bounds[1:].tolist(), strict=False):
        gx = gx_oracle.verdict(exp_type, case[1], frame.iloc[a:b].reset_index(drop=True))
        mostly = float(case[1].get("mostly", 1.0))
        rows, success, count = dataclasses.replace(check, mostly=mostly).evaluate(
            table.slice(a, b - a)
        )
        assert gx == gx_oracle.Verdict(rows.tolist(), count, success), (
            f"seed {SEED}, {exp_type} {case[1]}: {_case_table(case)}; GX {gx}, ours {rows}"
        )


def _judge_group(exp_type: str, members: list[Case]) -> None:
    """Our kernels and GX's condition function, each called once on the group's cases stacked,
    then every case judged on its own rows: its unexpected rows (compared as one mask, and
    case by case where they differ), its ``unexpected_count`` and its success with its own
    ``mostly`` (by our check on the case's own rows wherever the rows considered decide it)."""
    table, bounds, bare, check = _stacked(exp_type, members)
    # as ExpectationSuite hands a batch to GX: pyarrow converts each column on its own
    theirs, considered, dtype_success = gx_oracle.masks(
        exp_type, members[0][1], table.to_pandas(ignore_metadata=True)
    )
    # GX judging the dtype (listing no rows) is where our check has a dtype verdict
    assert (check.verdict is None) == (dtype_success is None), f"seed {SEED}: {exp_type} {bare}"
    if check.verdict is not None:
        assert check.verdict(table) == dtype_success, f"seed {SEED}, {exp_type} {bare}: {table}"
        return
    ours, our_considered = check.unexpected(table)
    if not np.array_equal(ours, theirs):
        for case, a, b in zip(members, bounds, bounds[1:], strict=False):
            mine, gx = np.flatnonzero(ours[a:b]).tolist(), np.flatnonzero(theirs[a:b]).tolist()
            differ = sorted(set(mine) ^ set(gx))
            own = _case_table(case)
            assert mine == gx, (
                f"seed {SEED}, {exp_type} {case[1]}: {own}\nrows {differ[:5]} differ: "
                + str(_shown(own, case[1], differ))
            )
    # the rows GX judges mostly on, case by case, are ours in sum; per case below
    assert our_considered == int(considered.sum()), f"seed {SEED}: {exp_type} {bare}"
    counts = _segment_sums(ours, bounds)
    judged = _segment_sums(considered, bounds)
    for case, a, b, count, on in zip(
        members, bounds.tolist(), bounds[1:].tolist(), counts.tolist(), judged.tolist(),
        strict=False,
    ):  # fmt: skip
        gx = gx_oracle.success(exp_type, case[1], on, count)
        mostly = case[1].get("mostly", 1.0)
        if count and 0 < mostly < 1:
            # success hangs on how many rows are considered: our check on the case's own rows
            _, mine, _ = dataclasses.replace(check, mostly=float(mostly)).evaluate(
                table.slice(a, b - a)
            )
        else:  # no row unexpected, or mostly 1 / 0: decided whatever the rows considered
            mine = count == 0 or mostly == 0
        assert mine == gx, f"seed {SEED}, {exp_type} {case[1]}: {_case_table(case)}"


def _judge_alone(exp_type: str, case: Case) -> None:
    """One case through the suite's normal compiled path (what the validate step calls) and
    GX's condition on the case's own frame: stacking must change neither verdict."""
    own = _case_table(case)
    suite = ExpectationSuite(
        {"name": "alone", "expectations": [{"type": exp_type, "kwargs": case[1]}]}
    )
    _compiled(suite, own)
    ours = suite.evaluate(own)
    rows = ours.unexpected.get(0, np.empty(0, np.int64)).tolist()
    gx = gx_oracle.verdict(exp_type, case[1], own.to_pandas(ignore_metadata=True))
    outcome = ours.outcomes[0]
    assert gx == gx_oracle.Verdict(rows, outcome.unexpected_count, outcome.success), (
        f"seed {SEED}, {exp_type} {case[1]}: {own}; GX {gx}, ours {rows} {outcome}"
    )


@pytest.mark.parametrize("exp_type", sorted(CASES))
def test_compiled_kernels_agree_with_gx_metric_functions(exp_type: str) -> None:
    print(f"GX_DIFF_SEED={SEED} GX_DIFF_CASES={CASES_PER_TYPE} GX_DIFF_POOL={POOL}")
    rng = random.Random(f"{SEED}:low:{exp_type}")
    judged = 0
    judge = _judge_each if exp_type == "expect_column_values_to_be_unique" else _judge_group
    for members in _groups(rng, exp_type):
        judge(exp_type, members)
        for case in members:
            if case[0] % ALONE == 0:
                _judge_alone(exp_type, case)
        judged += len(members)
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
