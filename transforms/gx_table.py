"""Table-level GX expectations judged once, on the whole dataset, from mergeable partials.

GX judges ``expect_table_row_count_to_be_between`` or ``expect_column_mean_to_be_between`` on
the DataFrame it is given; in a pipeline that is one batch, which is not what the suite's
author meant. Here each batch only adds to a :class:`Partial` (counts, sums, Welford moments,
min/max, distinct values, a value sample for the median); partials merge in any order, and
:func:`judge` gives GX's verdict on the merged whole once per run.

Observed values follow GX's pandas metrics: nulls and NaN are skipped; ``stdev`` is the
sample standard deviation (``ddof=1``); the median of an even count is the mean of the two
middle values; bounds are inclusive unless ``strict_min`` / ``strict_max``; an observed value
that does not exist (the mean of no values) fails.

The median is exact while the dataset has at most :data:`MEDIAN_EXACT_VALUES` non-null values
in the column. Beyond that each partial is compressed to that many weighted points at evenly
spaced ranks, and the median is the weighted median of the points: its rank is off by at most
``n / MEDIAN_EXACT_VALUES`` per compression (reported as ``"approximate": true``).
Distinct counts are exact up to :data:`MAX_DISTINCT` values; past that the expectation fails
with an error saying so rather than guess.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MEDIAN_EXACT_VALUES = 200_000
MAX_DISTINCT = 100_000

_BETWEEN = frozenset({"min_value", "max_value", "strict_min", "strict_max"})
_IGNORED = frozenset(
    {"result_format", "catch_exceptions", "include_config", "meta", "batch_id", "severity",
     "description", "notes", "id", "rendered_content", "windows"}
)  # fmt: skip

# type -> (metric, extra kwargs it understands)
_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "expect_table_row_count_to_be_between": ("row_count", _BETWEEN),
    "expect_table_row_count_to_equal": ("row_count", frozenset({"value"})),
    "expect_column_mean_to_be_between": ("mean", _BETWEEN | {"column"}),
    "expect_column_median_to_be_between": ("median", _BETWEEN | {"column"}),
    "expect_column_min_to_be_between": ("min", _BETWEEN | {"column"}),
    "expect_column_max_to_be_between": ("max", _BETWEEN | {"column"}),
    "expect_column_sum_to_be_between": ("sum", _BETWEEN | {"column"}),
    "expect_column_stdev_to_be_between": ("stdev", _BETWEEN | {"column"}),
    "expect_column_unique_value_count_to_be_between": ("distinct", _BETWEEN | {"column"}),
    "expect_column_proportion_of_unique_values_to_be_between": (
        "distinct",
        _BETWEEN | {"column"},
    ),
    "expect_column_distinct_values_to_be_in_set": ("distinct", frozenset({"column", "value_set"})),
    "expect_column_distinct_values_to_contain_set": (
        "distinct",
        frozenset({"column", "value_set"}),
    ),
    "expect_column_distinct_values_to_equal_set": ("distinct", frozenset({"column", "value_set"})),
}

DATASET_TYPES = frozenset(_TYPES)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def supported(expectation_type: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether the expectation is judged here: a known type with plain numeric bounds (dates
    and suite parameters stay with GX, per batch)."""
    entry = _TYPES.get(expectation_type)
    if entry is None or not set(kwargs) <= entry[1] | _IGNORED:
        return False
    if entry[0] != "row_count" and not isinstance(kwargs.get("column"), str):
        return False
    if "value_set" in entry[1]:  # GX refuses an empty set
        return isinstance(kwargs.get("value_set"), list) and bool(kwargs["value_set"])
    if "value" in entry[1]:
        return _number(kwargs.get("value"))
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    return all(v is None or _number(v) for v in (low, high)) and not (
        low is not None and high is not None and low > high
    )


class Partial:
    """What the batches seen so far say about the columns a suite's table expectations use.

    Plain JSON-able state (:meth:`to_json` / :meth:`from_json`) so bundles on any runner can
    write it and the driver can merge it.
    """

    def __init__(self, metrics: Mapping[str, Iterable[str]]) -> None:
        self.rows = 0
        self.metrics = {column: sorted(set(names)) for column, names in metrics.items()}
        self.columns: dict[str, dict[str, Any]] = {c: _empty() for c in self.metrics}

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for column, names in self.metrics.items():
            if column not in table.column_names:
                self.columns[column].setdefault("error", f"column {column!r} is missing")
                continue
            _add_column(self.columns[column], table.column(column), names)

    def merge(self, other: Partial) -> None:
        self.rows += other.rows
        for column, theirs in other.columns.items():
            _merge(self.columns.setdefault(column, _empty()), theirs)

    def to_json(self) -> dict[str, Any]:
        columns = {}
        for name, m in self.columns.items():
            out = {k: v for k, v in m.items() if k not in ("values", "weights", "distinct")}
            if "values" in m:
                out["values"] = _pack(m["values"])
                out["weights"] = _pack(m["weights"])
            if "distinct" in m:
                out["distinct"] = None if m["distinct"] is None else sorted(m["distinct"], key=repr)
            columns[name] = out
        return {"rows": self.rows, "metrics": self.metrics, "columns": columns}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Partial:
        partial = cls(data["metrics"])
        partial.rows = int(data["rows"])
        for name, m in data["columns"].items():
            m = dict(m)
            if "values" in m:
                m["values"], m["weights"] = _unpack(m["values"]), _unpack(m["weights"])
            if "distinct" in m:
                m["distinct"] = None if m["distinct"] is None else set(m["distinct"])
            partial.columns[name] = m
        return partial


def metrics_needed(expectations: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, set[str]]:
    """Column -> metrics the table-level expectations need (row count needs no column)."""
    needed: dict[str, set[str]] = {}
    for exp_type, kwargs in expectations:
        metric = _TYPES[exp_type][0]
        if metric != "row_count":
            needed.setdefault(kwargs["column"], set()).add(metric)
    return needed


def _empty() -> dict[str, Any]:
    return {"count": 0, "distinct": set()}


def _pack(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, "<f8").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f8").copy()


_VALUE_METRICS = frozenset({"mean", "median", "min", "max", "sum", "stdev"})


def _add_column(m: dict[str, Any], column: pa.ChunkedArray, names: list[str]) -> None:
    kind = column.type
    present = pc.drop_null(column)
    if pa.types.is_floating(kind):
        present = pc.filter(present, pc.invert(pc.is_nan(present)))
    batch: dict[str, Any] = {"count": len(present)}
    if _VALUE_METRICS & set(names):
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            batch["error"] = f"column of type {kind} has no numeric {'/'.join(names)}"
        elif len(present):
            values = pc.cast(present, pa.float64()).to_numpy()
            batch["sum"] = float(values.sum())
            batch["wmean"] = batch["sum"] / len(values)  # Welford's running mean, for m2
            batch["m2"] = float(((values - batch["wmean"]) ** 2).sum())
            batch["min"], batch["max"] = float(values.min()), float(values.max())
            if "median" in names:
                batch["values"], batch["weights"] = values, np.ones(len(values))
    if "distinct" in names:
        unique = pc.unique(present)
        if pa.types.is_temporal(kind):
            unique = unique.cast(pa.string())  # JSON-able; GX compares dates to strings too
        batch["distinct"] = set(unique.to_pylist())
    _merge(m, batch)


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Fold ``other``'s column metrics into ``into`` (Chan et al.'s parallel variance)."""
    if "error" in other:
        into.setdefault("error", other["error"])
    n_a, n_b = into.get("count", 0), other.get("count", 0)
    into["count"] = n_a + n_b
    if "wmean" in other:
        if "wmean" not in into:  # nothing to combine with (0 * inf would make a NaN)
            into["wmean"], into["m2"], into["sum"] = other["wmean"], other["m2"], other["sum"]
        else:
            delta = other["wmean"] - into["wmean"]
            into["wmean"] += delta * n_b / (n_a + n_b)
            into["m2"] += other["m2"] + delta * delta * n_a * n_b / (n_a + n_b)
            into["sum"] += other["sum"]
        for key, pick in (("min", min), ("max", max)):
            into[key] = other[key] if into.get(key) is None else pick(into[key], other[key])
    if "values" in other:
        values = np.concatenate([into.get("values", np.empty(0)), other["values"]])
        weights = np.concatenate([into.get("weights", np.empty(0)), other["weights"]])
        approximate = into.get("approximate", False) or other.get("approximate", False)
        if len(values) > MEDIAN_EXACT_VALUES:
            values, weights = _compress(values, weights)
            approximate = True
        into["values"], into["weights"], into["approximate"] = values, weights, approximate
    if "distinct" in other:
        mine, theirs = into.get("distinct", set()), other["distinct"]
        if mine is None or theirs is None:
            into["distinct"] = None
        else:
            merged = mine | theirs
            into["distinct"] = merged if len(merged) <= MAX_DISTINCT else None


def _compress(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half as many weighted points at evenly spaced ranks, same total weight."""
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights)
    points = MEDIAN_EXACT_VALUES // 2
    total = cumulative[-1]
    ranks = (np.arange(points) + 0.5) * total / points
    picked = values[np.searchsorted(cumulative, ranks)]
    return picked, np.full(points, total / points)


def _median(m: Mapping[str, Any]) -> float | None:
    values, weights = m.get("values"), m.get("weights")
    if values is None or not len(values):
        return None
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    if not m.get("approximate"):
        n = len(values)
        return float(values[n // 2]) if n % 2 else float((values[n // 2 - 1] + values[n // 2]) / 2)
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, cumulative[-1] / 2)])


def observed(exp_type: str, kwargs: Mapping[str, Any], partial: Partial) -> Any:
    """The value GX would observe for the expectation on the whole dataset (None: none)."""
    metric = _TYPES[exp_type][0]
    if metric == "row_count":
        return partial.rows
    m = partial.columns[kwargs["column"]]
    if "error" in m:
        raise ValueError(m["error"])
    count = m.get("count", 0)
    if metric == "mean":  # the sum over the count, as pandas (an infinity stays one)
        return m["sum"] / count if count else None
    if metric == "sum":
        return m.get("sum", 0.0)
    if metric in ("min", "max"):
        return m.get(metric)
    if metric == "stdev":
        return math.sqrt(m["m2"] / (count - 1)) if count > 1 and "m2" in m else None
    if metric == "median":
        return _median(m)
    distinct = m.get("distinct")
    if distinct is None:
        raise ValueError(f"more than {MAX_DISTINCT} distinct values: not counted exactly")
    if exp_type == "expect_column_unique_value_count_to_be_between":
        return len(distinct)
    if exp_type == "expect_column_proportion_of_unique_values_to_be_between":
        return len(distinct) / count if count else 0.0  # GX observes 0 for no values
    return sorted(distinct, key=repr)


def _between(value: Any, kwargs: Mapping[str, Any]) -> bool:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and (value <= low if kwargs.get("strict_min") else value < low):
        return False
    return not (high is not None and (value >= high if kwargs.get("strict_max") else value > high))


def judge(exp_type: str, kwargs: Mapping[str, Any], partial: Partial) -> dict[str, Any]:
    """``{"success", "observed_value", "error"?, "approximate"?}`` for one expectation."""
    try:
        value = observed(exp_type, kwargs, partial)
    except ValueError as exc:
        return {"success": False, "observed_value": None, "error": str(exc)}
    if isinstance(value, float) and math.isnan(value):
        value = None  # a NaN metric (a sum of +inf and -inf) is no value to GX either
    out: dict[str, Any] = {"observed_value": value}
    if exp_type.startswith("expect_column_median") and partial.columns[kwargs["column"]].get(
        "approximate"
    ):
        out["approximate"] = True
    if value is None:
        out["success"] = False
    elif exp_type == "expect_table_row_count_to_equal":
        out["success"] = value == kwargs["value"]
    elif exp_type.startswith("expect_column_distinct_values"):
        wanted = set(kwargs["value_set"])
        seen = set(value)
        out["success"] = {
            "expect_column_distinct_values_to_be_in_set": seen <= wanted,
            "expect_column_distinct_values_to_contain_set": wanted <= seen,
            "expect_column_distinct_values_to_equal_set": seen == wanted,
        }[exp_type]
    else:
        out["success"] = _between(value, kwargs)
    return out
