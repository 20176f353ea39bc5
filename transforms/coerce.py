"""Vectorised type coercion that finds the bad values instead of failing the batch.

Sources hand over whatever the data holds: CSV gives strings, JSON gives numbers and sometimes
``"amount": "abc"``. The validate step casts each declared field to its type; a value that
cannot be cast is a row-level rejection, never a crash. The common case (everything casts)
is one ``pyarrow.compute.cast``; only when that fails do we find the offending values, with a
regex pre-filter for numeric text and, as the last resort, a per-value cast.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}

_INT_TEXT = r"^\s*[+-]?\d+\s*$"
_FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|(?i:inf|infinity|nan))\s*$"
_EPOCH = dt.date(1970, 1, 1).toordinal()
_FIRST_DAY = dt.date.min.toordinal() - _EPOCH  # days from the epoch, as date32 counts
_LAST_DAY = dt.date.max.toordinal() - _EPOCH
_MS_PER_DAY = 86_400_000
_FIRST_SECOND, _LAST_SECOND = _FIRST_DAY * 86_400, _LAST_DAY * 86_400 + 86_399
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_BOOL_TRUE = ["true", "1", "yes", "t", "y"]
_BOOL_FALSE = ["false", "0", "no", "f", "n"]


def type_name(arrow_type: pa.DataType) -> str:
    """A short, user-facing name for an Arrow type (``int64``, ``string``, ``struct``...)."""
    for name, t in ARROW_TYPES.items():
        if t == arrow_type:
            return name
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_struct(arrow_type):
        return "object"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "array"
    if pa.types.is_large_string(arrow_type):
        return "string"
    return str(arrow_type)


def coerce(
    column: pa.ChunkedArray | pa.Array, target: pa.DataType
) -> tuple[pa.Array, pa.Array | None]:
    """Cast ``column`` to ``target``.

    Returns the cast values (null where a value could not be cast) and a boolean mask of the
    values that failed, or ``None`` when every value cast cleanly. Nulls are never failures.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    values, failed = _cast(column, target)
    outside = out_of_range(values)
    if outside is None or not pc.any(outside).as_py():
        return values, failed
    values = pc.if_else(outside, pa.scalar(None, values.type), values)
    return values, outside if failed is None else pc.or_(failed, outside)


def out_of_range(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """Where a date or timestamp lies outside years 1 to 9999; None for other types.

    Arrow stores such values (``0000-01-01`` parses, a Parquet int64 holds year 300,000), but
    Python's ``datetime`` cannot hold them, so every consumer that converts (``to_pylist``,
    the lineage profiler, downstream readers) fails on the whole batch. One integer
    comparison per value, on the column's physical representation.
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        per_second = _PER_SECOND[kind.unit]
        low, high = _FIRST_SECOND * per_second, (_LAST_SECOND + 1) * per_second - 1
        ints = pc.cast(column, pa.int64())
    elif pa.types.is_date32(kind):
        low, high, ints = _FIRST_DAY, _LAST_DAY, pc.cast(column, pa.int32())
    elif pa.types.is_date64(kind):
        low, high = _FIRST_DAY * _MS_PER_DAY, (_LAST_DAY + 1) * _MS_PER_DAY - 1
        ints = pc.cast(column, pa.int64())
    else:
        return None
    low, high = max(low, _INT64_MIN), min(high, _INT64_MAX)  # nanoseconds span fewer years
    return pc.fill_null(pc.or_(pc.less(ints, low), pc.greater(ints, high)), False)


def _cast(column: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """``coerce`` before the range check: the cast values and the mask of failed casts."""
    if column.type == target:
        return column, None
    try:
        return pc.cast(column, target, safe=True), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        castable = _castable_text(column, target)
        if castable is not None:
            try:
                if pa.types.is_boolean(target):
                    values = _text_to_bool(column, castable)
                else:
                    values = pc.cast(
                        pc.if_else(castable, column, pa.scalar(None, column.type)), target
                    )
                failed = pc.and_(pc.invert(castable), pc.is_valid(column))
                return values, pc.fill_null(failed, False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # e.g. integer overflow: fall through to the per-value path
    return _per_value(column, target)


def _castable_text(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    if pa.types.is_integer(target):
        return pc.fill_null(pc.match_substring_regex(column, _INT_TEXT), False)
    if pa.types.is_floating(target):
        return pc.fill_null(pc.match_substring_regex(column, _FLOAT_TEXT), False)
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        return pc.fill_null(pc.is_in(lowered, pa.array(_BOOL_TRUE + _BOOL_FALSE)), False)
    return None


def _text_to_bool(column: pa.Array, castable: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    truth = pc.is_in(lowered, pa.array(_BOOL_TRUE))
    return pc.if_else(castable, truth, pa.scalar(None, pa.bool_()))


def _per_value(column: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """Last resort: cast value by value, so one bad value costs one row, not the batch."""
    values: list[object] = []
    failed: list[bool] = []
    for scalar in column:
        if not scalar.is_valid:
            values.append(None)
            failed.append(False)
            continue
        try:
            values.append(scalar.cast(target, safe=True).as_py())
            failed.append(False)
        except (
            pa.ArrowInvalid,
            pa.ArrowNotImplementedError,
            pa.ArrowTypeError,
            ValueError,
            OverflowError,  # a date Python cannot hold, such as year 0
        ):
            values.append(None)
            failed.append(True)
    return pa.array(values, target), pa.array(failed, pa.bool_())
