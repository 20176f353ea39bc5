"""GX's own verdict on one expectation through GX's metric functions: ~0.3-2.5 ms, not ~25.

A full GX validation costs ~25 ms an expectation (context, batch, metric graph, result
formatting), which caps a differential test at a few hundred random cases per type. What GX
actually *decides* is small: for a map expectation, the pandas condition function of its metric
provider (``ColumnValuesBetween._pandas`` and friends: the function GX registered for the
pandas engine, unwrapped from the decorator that fetches and filters the column) applied to
the column as GX's pandas engine hands it over, then
``ColumnMapExpectation._validate``'s ``mostly`` rule. :func:`verdict` calls exactly those
functions of the installed GX, with the kwargs as GX's expectation model coerces and defaults
them, on the pandas frame beamwright gives GX (``Table.to_pandas(ignore_metadata=True)``), and
replays only the glue around them:

* column map metrics run on the non-null rows (``df[df[col].notnull()]``) unless the metric
  class sets ``filter_column_isnull = False`` (the null / not-null metrics);
* success is ``(considered - unexpected) / considered >= mostly``, vacuously true with nothing
  considered; ``considered`` is the non-null rows, all rows for the null / not-null
  expectations, the rows ``ignore_row_if`` keeps for pair / multicolumn expectations
  (``dropna(how="all"|"any", subset=...)``, as ``PandasExecutionEngine.get_domain_records``);
* ``..._to_be_of_type`` / ``..._in_type_list`` take the map path only for an ``object`` column
  (and, for ``..._of_type``, a type other than object), and otherwise judge the column's dtype (``table.column_types``
  is ``df.dtypes``) with the expectation's own ``_validate_pandas``, listing no rows.

That glue is what could drift from GX, so ``tests/test_gx_differential.py`` also checks this
module against full GX validations (``ExpectationSuite.evaluate(compiled=False)``) for every
compiled type.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

_OBJECT_TYPES = ("object", "object_", "O", None)
# their own _validate judges mostly on every row, not on the non-null ones
_ALL_ROWS = ("expect_column_values_to_be_null", "expect_column_values_to_not_be_null")


@dataclass(frozen=True)
class Verdict:
    """What GX reports: unexpected row positions (ascending), their count, and success."""

    rows: list[int]
    unexpected_count: int
    success: bool


@cache
def _metric(map_metric: str) -> tuple[type, Any]:
    """The provider class GX registered for a map metric's pandas condition, and the condition
    function as written (under the decorator that fetches and null-filters the column)."""
    from great_expectations.expectations.registry import _registered_metrics

    provider, fn = _registered_metrics[f"{map_metric}.condition"]["providers"][
        "PandasExecutionEngine"
    ]
    return provider, inspect.unwrap(fn)


@cache
def _impl(exp_type: str) -> type:
    from great_expectations.expectations.registry import get_expectation_impl

    return get_expectation_impl(exp_type)


def success_kwargs(exp_type: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The success kwargs as GX's expectation model holds them: each given value coerced by
    its pydantic field (``min_value=2.0`` of a length expectation becomes ``2``), each missing
    one at the field's default (``mostly=1``, ``strict_min=False``, ``match_on="any"``...)."""
    impl = _impl(exp_type)
    out: dict[str, Any] = {}
    for key in impl.success_keys:
        field = impl.__fields__[key]
        if key in kwargs:
            value, error = field.validate(kwargs[key], {}, loc=key, cls=impl)
            if error:
                raise ValueError(f"GX refuses {key}={kwargs[key]!r}: {error}")
            out[key] = value
        else:
            out[key] = field.default
    return out


def _default(exp_type: str, key: str) -> Any:
    field = _impl(exp_type).__fields__.get(key)
    return None if field is None else field.default


def _condition(metric: type, condition: Any, series: Any, values: dict[str, Any]) -> Any:
    """The metric's pandas condition (True = meets the expectation) on ``series``."""
    metrics: dict[str, Any] = {}
    if metric.condition_metric_name.startswith("column_values.value_length."):
        # the length metric it depends on, on the same null-filtered column
        length = _metric_function("column_values.value_length")
        metrics["column_values.value_length.map"] = (length(metric, series), None, None)
    return condition(metric, series, **values, _metrics=metrics)


@cache
def _metric_function(name: str) -> Any:
    from great_expectations.expectations.registry import _registered_metrics

    _provider, fn = _registered_metrics[f"{name}.map"]["providers"]["PandasExecutionEngine"]
    return inspect.unwrap(fn)


def _mostly(considered: int, unexpected: int, mostly: float) -> bool:
    return considered == 0 or (considered - unexpected) / considered >= mostly


def verdict(exp_type: str, kwargs: Mapping[str, Any], frame: pd.DataFrame) -> Verdict:
    """GX's verdict on ``frame`` (a fresh RangeIndex: labels are positions)."""
    return verdicts(exp_type, [kwargs], frame, [0, len(frame)])[0]


def verdicts(
    exp_type: str, each: list[Mapping[str, Any]], frame: pd.DataFrame, bounds: list[int]
) -> list[Verdict]:
    """GX's verdict on each of the tables stacked in ``frame``, table ``i`` being rows
    ``bounds[i]:bounds[i + 1]`` with kwargs ``each[i]`` (the same but for ``mostly``): one
    condition call for all of them (the call, not the rows, is what costs), each verdict from
    its own rows and ``mostly``. Only for expectations that judge rows one by one (not
    uniqueness), on tables to which pandas gives the same dtypes on their own: the stacked
    frame must be, table by table, what GX would see."""
    unexpected, considered, dtype_success = masks(exp_type, each[0], frame)
    out = []
    for kwargs, a, b in zip(each, bounds, bounds[1:], strict=False):
        if dtype_success is not None:
            out.append(Verdict([], 0, dtype_success))
            continue
        rows = np.flatnonzero(unexpected[a:b]).tolist()
        judged = int(considered[a:b].sum())
        out.append(Verdict(rows, len(rows), success(exp_type, kwargs, judged, len(rows))))
    return out


def success(exp_type: str, kwargs: Mapping[str, Any], considered: int, unexpected: int) -> bool:
    """GX's ``mostly`` rule for ``kwargs`` given its considered and unexpected row counts."""
    return _mostly(considered, unexpected, gx_mostly(exp_type, kwargs.get("mostly")))


@cache
def gx_mostly(exp_type: str, mostly: float | None) -> float:
    """``mostly`` as GX's model coerces it (1 when not given); cached, the model is slow."""
    given = {} if mostly is None else {"mostly": mostly}
    return success_kwargs(exp_type, given).get("mostly", 1.0)


def masks(
    exp_type: str, kwargs: Mapping[str, Any], frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, bool | None]:
    """(unexpected rows, rows ``mostly`` is judged on, success when GX judged the dtype and
    listed no rows), each a boolean mask over ``frame``."""
    impl = _impl(exp_type)
    values = success_kwargs(exp_type, kwargs)
    values.pop("mostly", None)
    metric, condition = _metric(impl.map_metric)
    # a domain kwarg, not a success one: it picks the rows (below)
    ignore = kwargs.get("ignore_row_if", _default(exp_type, "ignore_row_if"))
    # GX hands the condition only its metric's value kwargs
    values = {k: v for k, v in values.items() if k in metric.condition_value_keys}
    unexpected = np.zeros(len(frame), bool)
    if "column" in kwargs:
        column = frame[kwargs["column"]]
        if "type_" in values or "type_list" in values:
            wanted = values.get("type_", values.get("type_list"))
            if column.dtype.type.__name__ != "object_" or (
                "type_" in values and wanted in _OBJECT_TYPES
            ):
                # GX's aggregate path: the column's dtype decides, no row is listed
                check = impl._validate_pandas(None, column.dtype, wanted)
                return unexpected, unexpected, bool(check["success"])
        present = column.notnull().to_numpy()
        if getattr(metric, "filter_column_isnull", True):
            column = column[present]
        meets = np.asarray(_condition(metric, condition, column, values), dtype=bool)
        unexpected[column.index[~meets]] = True
        # ColumnMapExpectation judges mostly on the non-null rows, the null ones on all rows
        considered = np.ones(len(frame), bool) if exp_type in _ALL_ROWS else present
        return unexpected, considered, None
    names = [kwargs["column_A"], kwargs["column_B"]] if "column_A" in kwargs else None
    names = names or list(kwargs["column_list"])
    how = {"both_values_are_missing": "all", "all_values_are_missing": "all",
           "either_value_is_missing": "any", "any_value_is_missing": "any"}.get(ignore)  # fmt: skip
    data = frame if how is None else frame.dropna(axis=0, how=how, subset=names)
    if "column_A" in kwargs:
        meets = condition(metric, data[names[0]], data[names[1]], **values, _metrics={})
    else:
        meets = condition(metric, data[names], **values, _metrics={})
    unexpected[data.index[~np.asarray(meets, dtype=bool)]] = True
    considered = np.zeros(len(frame), bool)
    considered[data.index] = True
    return unexpected, considered, None
