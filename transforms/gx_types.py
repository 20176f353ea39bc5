"""``expect_column_values_to_be_of_type`` / ``..._in_type_list`` compiled from the Arrow type.

GX's pandas engine judges these on the pandas dtype of the column, which beamwright makes with
``Table.to_pandas(ignore_metadata=True)`` (pandas 3, pyarrow defaults):

* int columns: the same-width numpy int dtype, but ``float64`` in a batch with a null;
* float columns: the same-width numpy float dtype;
* string columns: ``StringDtype(na_value=nan)``, whose ``.type`` is ``str``;
* date columns: ``object`` holding ``datetime.date`` values.

For any dtype but ``object`` (and for ``object`` with ``type_`` object / None) GX decides on
the dtype alone: success or not, *no unexpected rows* (``_validate_pandas``). For an object
column it runs the map metric, ``isinstance(value, types)`` on each non-null value; every value
of a date column is a ``datetime.date``, so one check decides every row.

GX resolves a type name with ``np.dtype(name)`` and falls back to pandas attributes when numpy
refuses it; only names numpy accepts are compiled (the pandas fallback stays in GX, and so
does ``..._in_type_list`` on strings: there the extension dtype's own ``==`` decides).
Membership is computed with numpy's own equality, as GX computes it, so no rule of numpy's
dtype comparison is re-implemented here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

TYPE_CHECKS = frozenset(
    {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}
)
_OBJECT_NAMES = ("object", "object_", "O")
_NATIVE: dict[str, tuple[type, ...]] = {  # GX's native_type_type_map, keyed by lower case
    "none": (type(None),), "bool": (bool,), "int": (int,), "long": (int,),
    "float": (float,), "bytes": (bytes,), "complex": (complex,), "str": (str,),
    "string_types": (str,), "list": (list,), "dict": (dict,),
}  # fmt: skip


def _numpy_type(name: object) -> np.dtype | None:
    """``np.dtype(name)`` when numpy accepts the name; None when GX would go on to pandas
    (or fail)."""
    if not isinstance(name, str):
        return None
    try:
        return np.dtype(name)
    except Exception:  # noqa: BLE001 - any refusal leaves the expectation to GX
        return None


def _comp_types(names: list[str], *, with_dtypes: bool) -> list[Any] | None:
    """GX's ``comp_types`` for the names (``with_dtypes``: in_type_list's ``_validate_pandas``
    also lists the dtype itself), or None when one needs pandas to resolve."""
    out: list[Any] = []
    for name in names:
        dtype = _numpy_type(name)
        if dtype is None:
            return None
        out.append(dtype.type)
        if with_dtypes:
            out.append(dtype)
        out.extend(_NATIVE.get(name.lower(), ()))
    return out


def _pandas_dtype(arrow_type: pa.DataType, *, has_nulls: bool) -> Any:
    """The dtype pandas gives the column (``str`` standing for pandas' StringDtype)."""
    if pa.types.is_integer(arrow_type):
        return np.dtype(np.float64) if has_nulls else np.dtype(arrow_type.to_pandas_dtype())
    if pa.types.is_floating(arrow_type):
        return np.dtype(arrow_type.to_pandas_dtype())
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return str
    return np.dtype(object)  # dates: datetime.date objects


def compile_type_check(
    exp_type: str, kwargs: Mapping[str, Any], arrow_type: pa.DataType
) -> tuple[Callable[[pa.Table], bool] | None, bool] | None:
    """(verdict from the batch's dtype, or None for the per-row path; whether every non-null
    value is unexpected on the per-row path), or None: leave it to GX."""
    column = kwargs["column"]
    of_type = exp_type == "expect_column_values_to_be_of_type"
    names = [kwargs.get("type_")] if of_type else kwargs.get("type_list")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    is_date = pa.types.is_date(arrow_type)
    is_string = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if not (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)) and not (
        is_date or is_string
    ):
        return None
    if is_string and not of_type:
        return None  # StringDtype's own == decides: not modelled
    if is_date and not (of_type and names[0] in _OBJECT_NAMES):
        per_row = _comp_types(names, with_dtypes=False)
        if per_row is None:
            return None
        return None, not isinstance(dt.date(2024, 1, 1), tuple(per_row))
    comp = _comp_types(names, with_dtypes=not of_type)
    if comp is None:
        return None
    outcome = {}
    for has_nulls in (False, True):
        dtype = _pandas_dtype(arrow_type, has_nulls=has_nulls)
        # be_of_type compares the dtype's scalar type, in_type_list the dtype itself
        found = (dtype if dtype is str else dtype.type) in comp if of_type else dtype in comp
        outcome[has_nulls] = bool(found)

    def verdict(table: pa.Table) -> bool:
        return outcome[table.column(column).null_count > 0]

    return verdict, False
