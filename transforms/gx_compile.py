"""Great Expectations row-level expectations compiled to pyarrow.compute kernels.

GX validating a pandas DataFrame costs ~30 ms a call plus a pandas copy of the batch; most
expectations users write have an exact Arrow equivalent that runs at millions of rows per
second. :func:`compile_expectation` returns a :class:`CompiledCheck` for an expectation whose
result, *on the column types of the batch at hand*, is known to be exactly GX's; anything else
returns ``None`` and keeps running through GX. "Exactly" is enforced by
``tests/test_gx_differential.py``: random tables and random kwargs, judged by GX's own metric
functions (1,000 cases a type by default, ``GX_DIFF_CASES`` for more) and by full GX
validations (which that fast oracle must match too).

What GX (pandas engine, 1.x) does, and so what the kernels do:

* Missing values are ``None`` and float NaN (pandas ``isnull``). Column map expectations other
  than ``..._to_not_be_null`` / ``..._to_be_null`` skip them, and ``mostly`` is judged on the
  rows left (``(nonnull - unexpected) / nonnull >= mostly``, vacuously true with none left);
  ``..._to_not_be_null`` and ``..._to_be_null`` judge on all rows.
* ``expect_column_values_to_be_unique`` flags *every* row of a repeated value within what GX
  is given. The kernel here judges one table (a batch of a streaming run, or a table handed to
  :meth:`~transforms.expectations.ExpectationSuite.evaluate`); a bounded run judges it on the
  whole input with a shuffle of the values (:mod:`transforms.gx_unique`).
* Regexes are searched (``re.search``), not anchored; a pattern (every pattern of a
  ``regex_list``) is compiled only when :mod:`transforms.gx_regex` can rewrite it for RE2
  with the same matches.
* Column pair / multicolumn expectations skip rows by ``ignore_row_if`` (defaults
  ``both_values_are_missing`` / ``all_values_are_missing``); a missing value left in compares
  unequal, and a sum with one is NaN.

Compiled only on types where pandas' behaviour is plain (int and float columns, strings,
dates for null/unique checks); kwargs GX would refuse (``min_value > max_value``), unknown
kwargs (``row_condition``) and bools, mixed types or numbers beyond 2**53 in value sets are
left to GX. Numbers are compared as float64, as pandas does once a column has a null; an
int64 column without nulls holding values beyond 2**53 is the one case where pandas compares
exactly and these kernels do not (the differential test draws ints up to 2**31).
``expect_column_values_to_be_of_type`` / ``..._in_type_list`` are compiled by
:mod:`transforms.gx_types` from the dtype pandas gives the column (float64 for ints with nulls,
``str`` in pandas 3, ``object`` checked row by row for dates); on a dtype GX lists no rows and
only ``success`` is reported (``CompiledCheck.verdict``).

``mostly``: GX lists every unexpected row in ``unexpected_index_list`` even when ``mostly``
makes the expectation succeed; the row *is* unexpected, ``mostly`` only tolerates a share of
them in the verdict. The validate step dead-letters every unexpected row, so whether a row is
accepted never depends on which other rows shared its batch; ``success`` is reported as GX
computes it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import rules
from transforms.gx_regex import to_re2
from transforms.gx_types import TYPE_CHECKS, compile_type_check

# kwargs every expectation may carry without changing which rows are unexpected.
_COMMON = frozenset(
    {"column", "mostly", "result_format", "catch_exceptions", "include_config", "meta",
     "batch_id", "severity", "description", "notes", "id", "rendered_content",
     "windows"}
)  # fmt: skip

_Kernel = Callable[[pa.Table], "tuple[np.ndarray, int]"]


@dataclass(frozen=True)
class CompiledCheck:
    """One expectation as Arrow kernels: ``unexpected(table)`` is (mask of unexpected rows,
    rows GX judges ``mostly`` on)."""

    expectation_type: str
    mostly: float
    unexpected: _Kernel
    # GX judges some expectations on the column's dtype, listing no rows (transforms.gx_types)
    verdict: Callable[[pa.Table], bool] | None = None

    def evaluate(self, table: pa.Table) -> tuple[np.ndarray, bool, int]:
        """(unexpected row positions, success by GX's rule, unexpected count)."""
        if self.verdict is not None:
            return np.empty(0, np.int64), self.verdict(table), 0
        mask, considered = self.unexpected(table)
        rows = np.flatnonzero(mask)
        count = len(rows)
        success = considered == 0 or (considered - count) / considered >= self.mostly
        return rows, bool(success), count


def _kind(t: pa.DataType) -> str | None:
    """The pandas behaviour class of an Arrow type, or None for types not compiled."""
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_date(t):
        return "date"
    return None


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _missing(column: pa.ChunkedArray) -> np.ndarray:
    """pandas' ``isnull``: null, and NaN in float columns."""
    return _np(pc.is_null(column, nan_is_null=True))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rule_kernel(rule: rules.Rule, *, nulls_count: bool = False) -> _Kernel:
    """A native rule's failures as GX unexpected rows: missing values are skipped (and
    ``mostly`` judged on the rest) unless ``nulls_count``."""

    def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
        failed = _np(rule.failures(table))
        if nulls_count:
            return failed, table.num_rows
        missing = _missing(table.column(rule.field))
        return failed & ~missing, int(table.num_rows - missing.sum())

    return kernel


def _map_kernel(column: str, condition: Callable[[pa.ChunkedArray], Any]) -> _Kernel:
    """A column map kernel from an Arrow ``condition`` that is true where a value is
    unexpected; missing values are skipped."""

    def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
        values = table.column(column)
        missing = _missing(values)
        return _np(condition(values)) & ~missing, int(table.num_rows - missing.sum())

    return kernel


# -- per expectation type: (kwargs, Arrow types of the columns) -> kernel or None -----------


def _not_null(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    rule = rules.NotNull(id="", field=kw["column"], nan_is_null=True)
    return _rule_kernel(rule, nulls_count=True)


def _null(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    column = kw["column"]

    def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
        return ~_missing(table.column(column)), table.num_rows  # judged on every row

    return kernel


def _bounds_fit(kind: str | None, low: object, high: object) -> bool:
    if low is None and high is None:
        return False
    given = [v for v in (low, high) if v is not None]
    if kind in ("int", "float"):
        ok = all(_number(v) for v in given)
    else:
        return False
    return ok and not (low is not None and high is not None and low > high)


def _between(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    low, high = kw.get("min_value"), kw.get("max_value")
    if not _bounds_fit(kinds[kw["column"]], low, high):
        return None
    rule = rules.Between(
        id="",
        field=kw["column"],
        min=low,
        max=high,
        allow_nan=True,  # NaN is missing to GX: skipped below
        exclusive_min=bool(kw.get("strict_min")),
        exclusive_max=bool(kw.get("strict_max")),
    )
    return _rule_kernel(rule)


def _length_rule(column: str, low: float | None, high: float | None, kw: Mapping) -> rules.Rule:
    """GX's strict bounds on integer lengths are the native rule's inclusive bounds ± 1."""
    lo = None if low is None else int(low) + (1 if kw.get("strict_min") else 0)
    hi = None if high is None else int(high) - (1 if kw.get("strict_max") else 0)
    return rules.Length(id="", field=column, min=lo, max=hi)


def _integral(value: object) -> bool:
    return value is None or (_number(value) and float(value).is_integer())


def _lengths_between(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    low, high = kw.get("min_value"), kw.get("max_value")
    # GX's model makes the bounds ints (2.5 becomes 2): only integral bounds are compiled
    if not (_bounds_fit("int", low, high) and _integral(low) and _integral(high)):
        return None
    return _rule_kernel(_length_rule(kw["column"], low, high, kw))


def _lengths_equal(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    value = kw.get("value")
    if value is None or not _integral(value):
        return None
    return _rule_kernel(_length_rule(kw["column"], value, value, {}))


def _value_set(kind: str | None, values: object) -> pa.Array | None:
    """The value set as an Arrow array comparable with the column, or None when pandas'
    ``isin`` would mix types in ways not reproduced here."""
    if not isinstance(values, list):
        return None
    exact = 2.0**53  # beyond it float64 rounds: an int64 column without nulls would differ
    if kind in ("int", "float") and all(_number(v) and abs(v) <= exact for v in values):
        # pandas compares numbers by value (1 == 1.0) and -0.0 with 0.0: compare as float64
        return pc.add(pa.array(values, pa.float64()), 0.0)
    if kind == "string" and all(isinstance(v, str) for v in values):
        return pa.array(values, pa.string())
    return None


def _as_set_key(values: pa.ChunkedArray, value_set: pa.Array) -> pa.ChunkedArray:
    if pa.types.is_floating(value_set.type):
        return pc.add(pc.cast(values, pa.float64()), 0.0)
    return pc.cast(values, value_set.type)


def _in_set(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    value_set = _value_set(kinds[kw["column"]], kw.get("value_set"))
    if value_set is None:
        return None
    return _map_kernel(
        kw["column"], lambda v: pc.invert(pc.is_in(_as_set_key(v, value_set), value_set))
    )


def _not_in_set(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    value_set = _value_set(kinds[kw["column"]], kw.get("value_set"))
    if value_set is None:
        return None
    return _map_kernel(kw["column"], lambda v: pc.is_in(_as_set_key(v, value_set), value_set))


def _regex(negate: bool, *, many: bool = False) -> Callable[..., _Kernel | None]:
    """match_regex / not_match_regex, or with ``many`` their ``_list`` forms: a row matches
    a list when any (``match_on: any``, and always for not_match) or all of its patterns
    match."""

    def build(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
        patterns = kw.get("regex_list") if many else [kw.get("regex")]
        match_on = kw.get("match_on", "any") if many and not negate else "any"
        if not isinstance(patterns, list) or not patterns or match_on not in ("any", "all"):
            return None
        if not all(isinstance(p, str) for p in patterns):
            return None
        translated = [to_re2(p) for p in patterns]
        if any(t is None or not re2_compiles(t) for t in translated):
            return None
        combine = pc.or_ if match_on == "any" else pc.and_

        def condition(values: pa.ChunkedArray) -> Any:
            found = pc.match_substring_regex(values, translated[0])
            for pattern in translated[1:]:
                found = combine(found, pc.match_substring_regex(values, pattern))
            return found if negate else pc.invert(found)

        return _map_kernel(kw["column"], condition)

    return build


@functools.lru_cache(maxsize=4096)
def re2_compiles(pattern: str) -> bool:
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _unique(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    return _rule_kernel(rules.Unique(id="", field=kw["column"], every_duplicate=True))


def _pair_equal(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    a, b = kw["column_A"], kw["column_B"]
    numeric = {"int", "float"}
    if not (kinds[a] in numeric and kinds[b] in numeric or kinds[a] == kinds[b] == "string"):
        return None
    ignore = kw.get("ignore_row_if", "both_values_are_missing")
    if ignore not in ("both_values_are_missing", "either_value_is_missing", "neither"):
        return None

    def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
        left, right = table.column(a), table.column(b)
        miss_a, miss_b = _missing(left), _missing(right)
        if kinds[a] != kinds[b]:
            left, right = pc.cast(left, pa.float64()), pc.cast(right, pa.float64())
        equal = _np(pc.equal(left, right)) & ~miss_a & ~miss_b
        skip = {
            "both_values_are_missing": miss_a & miss_b,
            "either_value_is_missing": miss_a | miss_b,
            "neither": np.zeros(table.num_rows, bool),
        }[ignore]
        return ~equal & ~skip, int(table.num_rows - skip.sum())

    return kernel


def _multicolumn_sum(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    """pandas adds a row's values block by block (all int columns, then all float ones), not
    left to right, so float rounding can differ by order: compiled are sums whose order
    cannot matter, of two columns or of int columns only."""
    columns, total = kw["column_list"], kw.get("sum_total")
    if not columns or not all(kinds[c] in ("int", "float") for c in columns):
        return None
    if not _number(total) or (len(columns) > 2 and any(kinds[c] == "float" for c in columns)):
        return None
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore not in ("all_values_are_missing", "any_value_is_missing", "never"):
        return None

    def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
        arrays = [table.column(c) for c in columns]
        missing = np.stack([_missing(a) for a in arrays])
        if all(pa.types.is_integer(a.type) and not a.null_count for a in arrays):
            values = [pc.cast(a, pa.int64()) for a in arrays]  # exact (and wrapping) as numpy
        else:  # a null makes pandas hold the column as float64
            values = [pc.fill_null(pc.cast(a, pa.float64()), math.nan) for a in arrays]
        total_sum = values[0]
        for more in values[1:]:
            total_sum = pc.add(total_sum, more)
        equal = _np(pc.equal(total_sum, float(total)))
        skip = {
            "all_values_are_missing": missing.all(axis=0),
            "any_value_is_missing": missing.any(axis=0),
            "never": np.zeros(table.num_rows, bool),
        }[ignore]
        return ~equal & ~skip, int(table.num_rows - skip.sum())

    return kernel


def _type_check(kw: Mapping[str, Any], kinds: Mapping[str, str | None]) -> _Kernel | None:
    """Never called: type checks need the Arrow type itself, not its kind, and
    compile_expectation hands them to transforms.gx_types."""
    raise AssertionError("type checks are compiled by _compile_type_check")


_BUILDERS: dict[str, tuple[frozenset[str], Callable[..., _Kernel | None], frozenset[str]]] = {
    # type: (extra kwargs understood, builder, column kinds it accepts)
    "expect_column_values_to_not_be_null": (
        frozenset(),
        _not_null,
        frozenset({"int", "float", "string", "date"}),
    ),
    "expect_column_values_to_be_null": (
        frozenset(),
        _null,
        frozenset({"int", "float", "string", "date"}),
    ),
    "expect_column_values_to_be_between": (
        frozenset({"min_value", "max_value", "strict_min", "strict_max"}),
        _between,
        frozenset({"int", "float"}),  # GX's model refuses string bounds
    ),
    "expect_column_value_lengths_to_be_between": (
        frozenset({"min_value", "max_value", "strict_min", "strict_max"}),
        _lengths_between,
        frozenset({"string"}),
    ),
    "expect_column_value_lengths_to_equal": (
        frozenset({"value"}),
        _lengths_equal,
        frozenset({"string"}),
    ),
    "expect_column_values_to_be_in_set": (
        frozenset({"value_set"}),
        _in_set,
        frozenset({"int", "float", "string"}),
    ),
    "expect_column_values_to_not_be_in_set": (
        frozenset({"value_set"}),
        _not_in_set,
        frozenset({"int", "float", "string"}),
    ),
    "expect_column_values_to_match_regex": (
        frozenset({"regex"}),
        _regex(False),
        frozenset({"string"}),
    ),
    "expect_column_values_to_not_match_regex": (
        frozenset({"regex"}),
        _regex(True),
        frozenset({"string"}),
    ),
    "expect_column_values_to_match_regex_list": (
        frozenset({"regex_list", "match_on"}),
        _regex(False, many=True),
        frozenset({"string"}),
    ),
    "expect_column_values_to_not_match_regex_list": (
        frozenset({"regex_list"}),
        _regex(True, many=True),
        frozenset({"string"}),
    ),
    "expect_column_values_to_be_unique": (
        frozenset(),
        _unique,
        frozenset({"int", "float", "string", "date"}),
    ),
    "expect_column_pair_values_to_be_equal": (
        frozenset({"column_A", "column_B", "ignore_row_if"}),
        _pair_equal,
        frozenset({"int", "float", "string"}),
    ),
    "expect_multicolumn_sum_to_equal": (
        frozenset({"column_list", "sum_total", "ignore_row_if"}),
        _multicolumn_sum,
        frozenset({"int", "float"}),
    ),
    "expect_column_values_to_be_of_type": (
        frozenset({"type_"}),
        _type_check,
        frozenset({"int", "float", "string", "date"}),
    ),
    "expect_column_values_to_be_in_type_list": (
        frozenset({"type_list"}),
        _type_check,
        frozenset({"int", "float", "string", "date"}),
    ),
}

COMPILED_TYPES = frozenset(_BUILDERS)


def _columns(kwargs: Mapping[str, Any]) -> list[str]:
    names = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    return names + list(kwargs.get("column_list", ()))


def may_compile(expectation_type: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether the expectation can be compiled on some schema: a known type, known kwargs
    and a valid ``mostly``. Decides without a schema whether a suite may need GX at all."""
    entry = _BUILDERS.get(expectation_type)
    if entry is None or not set(kwargs) <= _COMMON | entry[0]:
        return False
    mostly = kwargs.get("mostly", 1.0)
    return _number(mostly) and 0.0 <= mostly <= 1.0


def compile_expectation(
    expectation_type: str, kwargs: Mapping[str, Any], schema: pa.Schema
) -> CompiledCheck | None:
    """Arrow kernels for the expectation on tables of ``schema``, or None: run it in GX."""
    if not may_compile(expectation_type, kwargs):
        return None
    allowed, build, accepted = _BUILDERS[expectation_type]
    names = _columns(kwargs)
    if any(name not in schema.names for name in names):
        return None  # GX reports the missing column
    kinds = {name: _kind(schema.field(name).type) for name in names}
    if not all(kind in accepted for kind in kinds.values()):
        return None
    if expectation_type in TYPE_CHECKS:
        return _compile_type_check(expectation_type, kwargs, schema)
    kernel = build(kwargs, kinds)
    if kernel is None:
        return None
    return CompiledCheck(expectation_type, float(kwargs.get("mostly", 1.0)), kernel)


def _compile_type_check(
    expectation_type: str, kwargs: Mapping[str, Any], schema: pa.Schema
) -> CompiledCheck | None:
    column = kwargs["column"]
    compiled = compile_type_check(expectation_type, kwargs, schema.field(column).type)
    if compiled is None:
        return None
    verdict, every_value_unexpected = compiled
    mostly = float(kwargs.get("mostly", 1.0))
    if verdict is not None:
        return CompiledCheck(expectation_type, mostly, _map_kernel(column, pc.is_null), verdict)
    # per row: every non-null value is (or none is) of the types
    condition = pc.is_valid if every_value_unexpected else pc.is_null
    return CompiledCheck(expectation_type, mostly, _map_kernel(column, condition))
